"""benchmarks/gpu.py: refuses politely without a GPU; its code paths run on the simulator."""

import json

import pytest

from tests.conftest import SIMULATOR


def test_import_touches_no_gpu_and_main_explains(capsys):
    import benchmarks.gpu as g  # importing must not need a GPU
    from ddlib.backend import cuda_unavailable_reason

    if not SIMULATOR and cuda_unavailable_reason() is None:
        pytest.skip("a GPU is present: the refusal path is not reachable")
    assert g.main([]) == 2
    err = capsys.readouterr().err
    assert "benchmarks.gpu:" in err and ("needs an NVIDIA GPU" in err or "simulator" in err)


def test_device_slug():
    from benchmarks.gpu import _slug

    assert _slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"
    assert _slug("???") == "gpu"


@pytest.mark.cuda
@pytest.mark.slow
def test_smoke_run_writes_every_section(cuda_be, tmp_path, capsys):
    import benchmarks.gpu as g

    if not SIMULATOR:
        pytest.skip("--smoke is the simulator's dry run; on a GPU, benchmarks/run_gpu.sh "
                    "runs the real benchmark")
    out = tmp_path / "gpu.json"
    assert g.main(["--smoke", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["meta"]["device"] == "CUDA simulator" and doc["meta"]["mode"].startswith("smoke")
    variants = [r["variant"] for r in doc["rows"]]
    for method in ("naive", "tiled", "blocked"):
        assert f"ddlib {method}" in variants
    assert "device-to-device copy" in variants
    assert sum(v.startswith("blocked bm,bn,bk=") for v in variants) == 2  # the sweep
    assert any(v.startswith("fused") and "DeviceTrainer" in v for v in variants)
    mlp = [r for r in doc["rows"] if r["workload"].startswith("mlp step")]
    assert len(mlp) == 5 and all(r["seconds"] > 0 for r in mlp)  # no pool on the simulator
    assert all(r.get("max_rel_err", 0) < 1e-5 for r in doc["rows"])


def test_cublas_reference_row_from_a_stand_in_binding():
    """The cuBLAS branch only runs on a GPU; a stand-in binding checks its bookkeeping."""
    import numpy as np

    from benchmarks.gpu import _cublas_reference

    a, b = np.ones((3, 4), np.float32), np.full((4, 5), 2.0, np.float32)
    calls = []

    def make(a, b):
        out = {}
        return (lambda: (calls.append(1), out.setdefault("c", a @ b))), (lambda: out["c"]), (lambda: None)

    rows = []
    t, c = _cublas_reference("stand-in", make, a, b, "w", lambda run: (run(), 0.5)[1], rows)
    assert t == 0.5 and np.array_equal(c, a @ b) and len(calls) == 2  # warm-up + timed
    assert rows == [dict(workload="w", variant="cuBLAS SGEMM (stand-in, TF32 off)", seconds=0.5,
                         tflops=2 * 3 * 4 * 5 / 0.5 / 1e12)]
    assert _cublas_reference(None, None, a, b, "w", None, rows) == (None, None) and len(rows) == 1
