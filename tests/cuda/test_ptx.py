"""Every numba.cuda kernel in ddlib compiles to PTX for a real GPU (sm_90), without a GPU.

Compiling needs NVIDIA's NVVM, which ``pip install 'numba-cuda[cu13]'`` provides (about
460 MB); without it these tests skip and say so.  They cannot run under the simulator
(which never compiles), so ``make ptx-check`` runs them in their own process.

Every kernel found in the cuda backend's modules must have argument types listed below
(or in its module's ``PTX_SIGNATURES``): a kernel added without them fails
``test_every_kernel_has_a_signature``, so none can slip past the check.
"""

import importlib
import pkgutil

import pytest

from tests.conftest import SIMULATOR

pytestmark = pytest.mark.ptx

CC = (9, 0)  # H100 / H200

# Argument codes: M float matrix, A float vector, S float scalar (all of the kernel's
# dtype), D float64 vector, d float64 scalar, I int32 vector, j int32 scalar,
# L int64 vector, i int64 scalar, B boolean.  "*" after a code list: dtype-independent (compiled once).
SIGNATURES = {
    "core._bias_add": "MAM",
    "core._fwd": "iASA",
    "core._bwd": "iAAASA",
    "core._bias_act": "iMASM",
    "core._bwd_colsum": "iMMMSMA",
    "core._softmax_rows": "MMLBD",
    "core._mean_into": "DdDDB*",
    "core._xent_grad": "MLSM",
    "core._col_sum": "MA",
    "core._mse_rows": "MMSMD",
    "core._fill": ["AS", "Ij*", "Li*"],
    "core._take_rows": "MLM",
    "core._take": ["ALA", "LLL*"],
    "core._pack_status": "DDLD*",
    "launch._whoami": "IIII*",
    "matmul._NAIVE": "MMM",
    "matmul._TILED": "MMM",
    "matmul._BLOCKED": "MMM",
    "matmul._TILED_TN": "MMM",
    "matmul._TILED_NT": "MMM",
    "matmul._BLOCKED_TN": "MMM",
    "matmul._BLOCKED_NT": "MMM",
    # the non-finite counters (``bad``) are int64: L; the update rules' generated kernels
    # list their own types in cuda/optim.py's PTX_SIGNATURES
    "optim._clip_value": "ASSLL",
    "optim._axpy": "ASAL",
    "optim._sum_squares": "AD",
    "optim._sum_squares_finite": "ADiL",
    "optim._scale": "AS",
    "optim._scale_by_norm": "ADidDB",
    "optim._ema": "AASS",
    # read from cuda/batchnorm.py (owned elsewhere): eps and momentum arrive as Python floats
    "batchnorm._stats": "MAA",
    "batchnorm._forward": "MAAdMAA",
    "batchnorm._backward": "MMAAAdiMAA",
    "batchnorm._infer": "MAAAAdM",
    "batchnorm._running": "AAAAdd",
}


def _modules():
    import ddlib.backend.cuda as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        yield info.name, importlib.import_module(f"{pkg.__name__}.{info.name}")


def _is_kernel(v):
    if type(v).__name__ != "CUDADispatcher":
        return False
    return not v.targetoptions.get("device", False)


def discover():
    """{'module.name' or 'module.name[dtype]': dispatcher} for every kernel (not device fn)."""
    found = {}
    for mname, mod in _modules():
        for name, v in vars(mod).items():
            if _is_kernel(v):
                found[f"{mname}.{name}"] = v
            elif isinstance(v, dict) and v and all(_is_kernel(k) for k in v.values()):
                for key, k in v.items():
                    found[f"{mname}.{name}[{key}]"] = k
    return found


def _types(codes, dtype_name):
    from numba import types

    f = getattr(types, dtype_name)
    table = {
        "M": types.Array(f, 2, "A"), "A": types.Array(f, 1, "A"), "S": f,
        "D": types.Array(types.float64, 1, "A"), "d": types.float64,
        "I": types.Array(types.int32, 1, "A"), "L": types.Array(types.int64, 1, "A"),
        "i": types.int64, "j": types.int32, "B": types.boolean,
    }
    return tuple(table[c] for c in codes)


def _signature_codes(key, mod_sigs):
    base = key.split("[")[0]
    entry = mod_sigs.get(base.split(".", 1)[1], SIGNATURES.get(base))
    if entry is None:
        return None
    return [entry] if isinstance(entry, str) else list(entry)


def cases():
    """(id, dispatcher, arg types) for every kernel and dtype to compile."""
    if SIMULATOR:
        return []
    out = []
    mods = dict(_modules())
    for key, k in sorted(discover().items()):
        mod_sigs = getattr(mods[key.split(".")[0]], "PTX_SIGNATURES", {})
        for codes in _signature_codes(key, mod_sigs) or []:
            fixed = codes.endswith("*")
            codes = codes.rstrip("*")
            if "[" in key:  # a per-dtype dict: compile each entry for its own dtype
                dtypes = [key.split("[")[1].rstrip("]")]
            else:
                dtypes = ["float64"] if fixed else ["float32", "float64"]
            for dt in dtypes:
                out.append(pytest.param(k, codes, dt, id=f"{key}-{codes}-{dt}"))
    return out


@pytest.fixture(scope="module")
def nvvm():
    if SIMULATOR:
        pytest.skip("the CUDA simulator never compiles; run `make ptx-check` (no simulator)")
    from numba import cuda

    def probe(x):
        x[0] = 1.0

    # numba compiles a kernel's *device functions* (cuda.jit(device=True)) for the current
    # device's compute capability, which needs a driver; with no GPU, report the target's
    import numba.cuda.dispatcher as disp

    class Target:
        compute_capability = CC

    mp = pytest.MonkeyPatch()
    mp.setattr(disp, "get_current_device", lambda: Target())
    try:
        from numba import float32

        cuda.compile_ptx(probe, (float32[:],), cc=CC)
    except Exception as exc:  # the exact error depends on what is missing
        mp.undo()
        pytest.skip(f"NVVM/NVRTC not found, so PTX cannot be compiled here ({type(exc).__name__}: "
                    f"{str(exc)[:120]}); install it with: pip install 'numba-cuda[cu13]'")
    yield cuda
    mp.undo()


@pytest.mark.skipif(SIMULATOR, reason="the simulator has no compiled kernels to find")
def test_every_kernel_has_a_signature():
    mods = dict(_modules())
    found = discover()
    assert "matmul._BLOCKED[float32]" in found and "core._fill" in found  # discovery works
    missing = [key for key in found
               if _signature_codes(key, getattr(mods[key.split(".")[0]], "PTX_SIGNATURES", {}))
               is None]
    assert not missing, (f"kernels without PTX argument types: {missing}; add them to "
                         "SIGNATURES in tests/cuda/test_ptx.py or to the module's PTX_SIGNATURES")


@pytest.mark.parametrize("kernel, codes, dtype", cases())
def test_kernel_compiles_to_ptx(nvvm, kernel, codes, dtype):
    import inspect

    n_params = len(inspect.signature(kernel.py_func).parameters)
    assert n_params == len(codes), (
        f"{kernel.py_func.__name__} takes {n_params} arguments but its PTX signature lists "
        f"{len(codes)} ({codes}); update the table")
    ptx, _ = nvvm.compile_ptx(kernel.py_func, _types(codes, dtype), cc=CC,
                              fastmath=kernel.targetoptions.get("fastmath", False))
    assert f".target sm_{CC[0]}{CC[1]}" in ptx and ".entry" in ptx


@pytest.mark.parametrize("table", ["_BLOCKED", "_BLOCKED_TN", "_BLOCKED_NT"])
def test_register_blocking_survives_compilation(nvvm, table):
    """The float32 register-blocked matmul keeps its 8 x 8 accumulators in registers, and
    its inner step is multiply-adds fed by vector loads.

    A per-thread array indexed by loop counters only lives in registers when the compiler
    unrolls those loops; otherwise it spills to (slow) local memory and register blocking
    buys nothing.  The PTX shows which happened: no local loads or stores, and the inner
    step's 64 multiply-adds written out one by one.
    """
    import re

    import numpy as np
    from numba import float32, types

    from ddlib.backend.cuda import matmul as mm

    cfg = mm.DEFAULT_CONFIG[np.dtype(np.float32)]
    M = types.Array(float32, 2, "C")
    kernel = getattr(mm, table)[np.dtype(np.float32)]
    ptx, _ = nvvm.compile_ptx(kernel.py_func, (M, M, M), cc=CC)
    assert not re.search(r"\b(ld|st)\.local", ptx), "accumulators spilled to local memory"
    assert len(re.findall(r"\bfma\.rn\.f32", ptx)) >= cfg.tm * cfg.tn
    # the inner step: a thread's 8 rows of A and 8 columns of B arrive as four 128-bit
    # shared loads (aligned tiles, adjacent rows/columns), and with unsigned indices no
    # negative-index guards remain, so integer work there is a handful of instructions
    i0 = ptx.index("fma.rn.f32")
    step = ptx[ptx.rfind("$L__BB", 0, i0):ptx.index("bar.sync", i0)]
    ops = re.findall(r"^\s+(?:@%p\d+\s+)?([a-z]+(?:\.[a-z0-9]+)*)", step, re.M)
    assert ops.count("fma.rn.f32") == cfg.tm * cfg.tn
    assert ops.count("ld.shared.v4.f32") == (cfg.tm + cfg.tn) // 4, ops
    integer = [op for op in ops if re.match(r"(add|sub|mul|shl|shr|and|selp|setp)\.", op)]
    assert len(integer) <= 16, f"{len(integer)} integer instructions per k step: {integer}"
