#!/usr/bin/env bash
# The whole GPU check in one command, for a machine with an NVIDIA GPU and no network.
#
#   bash benchmarks/run_gpu.sh              # every cuda test on the real GPU, then the benchmark
#   BENCH_ARGS=--quick bash benchmarks/run_gpu.sh
#   SMOKE=1 RESULTS=/tmp/r bash benchmarks/run_gpu.sh   # no GPU: the same steps on the simulator
#   BENCH_FIRST=1 TEST_WORKERS=8 BENCH_TIMEOUT=300 TEST_TIMEOUT=200 bash benchmarks/run_gpu.sh
#                                           # a short lease: figures first, tests spread over
#                                           # 8 processes (pytest-xdist), each step time-boxed
#
# It installs nothing: the Python it runs (PY, default python3) must already hold numpy,
# numba, numba-cuda and pytest (the lent H100/H200 image does).  ddlib is used from this
# checkout (PYTHONPATH), so no `pip install -e .` is needed.  On a machine with network,
# `make bench-gpu` does the same inside the project's venv.
#
# NumPy 2.5 removed np.row_stack, which numba-cuda 0.30 still uses: on such a machine the
# preflight below fails at its first kernel.  Put NumPy 2.4 first on the path, e.g. from a
# wheel carried along: pip install --no-deps --target /tmp/site numpy-2.4.*.whl and
# PYTHONPATH=/tmp/site (that is how the committed H200 run was made).
#
# Results: benchmarks/results/gpu-<device>.json (commit it), plus a copy and the test log
# in $OUT when that is set.  Exit status: the tests' status, or the benchmark's if the
# tests passed.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
RESULTS=${RESULTS:-benchmarks/results}
mkdir -p "$RESULTS" .cache/numba .state/mpl
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export NUMBA_CACHE_DIR="$PWD/.cache/numba" MPLCONFIGDIR="$PWD/.state/mpl" MPLBACKEND=Agg
BENCH_ARGS=${BENCH_ARGS:-}
if [ "${SMOKE:-0}" = 1 ]; then  # checks this script's plumbing; its times mean nothing
    export NUMBA_ENABLE_CUDASIM=1
    BENCH_ARGS="--smoke --json $RESULTS/gpu-smoke.json"
else
    unset NUMBA_ENABLE_CUDASIM  # the simulator would make every timing meaningless
fi

"$PY" - <<'PYEOF'
import platform
from importlib.metadata import PackageNotFoundError, version

def v(name):
    try:
        return version(name)
    except PackageNotFoundError:
        return "missing"

print("python", platform.python_version(), "|",
      ", ".join(f"{p} {v(p)}" for p in ("numpy", "numba", "llvmlite", "numba-cuda", "pytest",
                                        "cupy-cuda13x", "cupy-cuda12x", "torch")))
PYEOF
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv

# 0. a one-line kernel first: if numba-cuda cannot reach the GPU (no NVVM, no driver), say
#    why at once instead of failing 300 tests one by one
preflight() {
"$PY" - <<'PYEOF'
import os
import numpy as np
from numba import config, cuda

@cuda.jit
def _twice(x):
    i = cuda.grid(1)
    if i < x.size:
        x[i] *= 2

x = cuda.to_device(np.arange(4, dtype=np.float32))
_twice[1, 32](x)
assert x.copy_to_host().tolist() == [0, 2, 4, 6]
print("numba.cuda kernel ok on", "the simulator" if config.ENABLE_CUDASIM
      else cuda.get_current_device().name, "| CUDA_HOME", os.environ.get("CUDA_HOME"))
PYEOF
}
if ! preflight; then  # numba-cuda may not look in the system toolkit for NVVM by itself
    if [ -z "${CUDA_HOME:-}" ] && [ -d /usr/local/cuda ]; then
        export CUDA_HOME=/usr/local/cuda
        echo "retrying with CUDA_HOME=$CUDA_HOME"
        preflight || { echo "numba.cuda cannot run a kernel here; stopping"; exit 3; }
    else
        echo "numba.cuda cannot run a kernel here; stopping"; exit 3
    fi
fi

# ddlib's caching allocator (ddlib.backend.cuda.pool) on a few arrays and training steps;
# if it fails here, the benchmark runs with numba's allocator (DDLIB_CUDA_POOL=0) so its
# figures still come back, and the pool's own tests report the failure
if [ "${SMOKE:-0}" != 1 ] && ! "$PY" - <<'PYEOF'
import gc
import numpy as np
import ddlib.backend.cuda  # before any context: installs the pool
from numba import cuda
import ddlib
from ddlib import layers, losses, optim
from ddlib.device import DeviceTrainer, memory_pool, to_device

for _ in range(3):
    a = cuda.to_device(np.arange(1000, dtype=np.float32))
    assert a.copy_to_host()[999] == 999
    del a
    gc.collect()
net = to_device(layers.mlp([20, 16, 5], rng=0, dtype=np.float32))
with ddlib.use_backend("cuda"):
    opt = optim.Optimizer(net, optim.adam(1e-2))
tr = DeviceTrainer(net, losses.SoftmaxCrossEntropy(), opt)
X, y = tr.put_data(np.random.default_rng(0).standard_normal((64, 20), dtype=np.float32),
                   np.arange(64) % 5)
print("memory pool ok:", [round(tr.step(X, y, return_loss=True), 4) for _ in range(3)], memory_pool())
PYEOF
then
    echo "ddlib's memory pool failed its preflight: benchmarking with DDLIB_CUDA_POOL=0"
    export DDLIB_CUDA_POOL=0
fi

# pytest-xdist, where installed, spreads the tests (mostly kernel compiles) over the cores
workers=()
if [ -n "${TEST_WORKERS:-}" ] && "$PY" -c "import xdist" 2>/dev/null; then
    workers=(-n "$TEST_WORKERS")
fi
run_tests() {  # every cuda-backend test (run on the simulator in CI) and the gpu-only tests
    timeout "${TEST_TIMEOUT:-1800}" "$PY" -m pytest tests -q -m "(cuda or gpu) and not ptx" \
        -p no:cacheprovider "${workers[@]}" 2>&1 | tee "$RESULTS/gpu-tests.log"
    tests=${PIPESTATUS[0]}
}
run_bench() {  # matmuls vs cuBLAS, copy bandwidth and fused Adam, the MLP step
    # shellcheck disable=SC2086
    timeout "${BENCH_TIMEOUT:-1800}" "$PY" -m benchmarks.gpu $BENCH_ARGS 2>&1 \
        | tee "$RESULTS/gpu-bench.log"
    bench=${PIPESTATUS[0]}
}
# BENCH_FIRST=1 measures before testing, for a lease too short to be sure of both
if [ "${BENCH_FIRST:-0}" = 1 ]; then run_bench; run_tests; else run_tests; run_bench; fi

if [ -n "${OUT:-}" ]; then
    cp "$RESULTS"/gpu-*.json "$RESULTS"/gpu-tests.log "$RESULTS"/gpu-bench.log "$OUT"/ 2>/dev/null
fi
echo "tests exit $tests, benchmark exit $bench"
[ "$tests" -ne 0 ] && exit "$tests"
exit "$bench"
