"""Shared fixtures: every backend-parametrized test runs on numpy, cpu and (when it can) cuda.

The cuda parametrization carries the ``cuda`` marker: ``make test-unit`` deselects it and
``make test-cudasim`` runs only it, with NUMBA_ENABLE_CUDASIM=1 set before numba loads.
"""

import os

import numpy as np
import pytest

SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


def _cuda_reason():
    from ddlib.backend import cuda_unavailable_reason

    return cuda_unavailable_reason()


BACKEND_PARAMS = [
    "numpy",
    "cpu",
    pytest.param("cuda", marks=pytest.mark.cuda),
]


@pytest.fixture(params=BACKEND_PARAMS)
def backend(request):
    """Each available backend in turn, made current for the test."""
    import ddlib

    name = request.param
    if name == "cuda":
        reason = _cuda_reason()
        if reason is not None:
            pytest.skip(f"cuda backend unavailable: {reason}")
    with ddlib.use_backend(name) as be:
        yield be


@pytest.fixture(params=[np.float32, np.float64], ids=["f32", "f64"])
def dtype(request):
    return np.dtype(request.param)


def tol(dtype):
    """Comparison tolerances for a dtype (float32 kernels may sum in another order)."""
    return dict(rtol=2e-5, atol=2e-6) if np.dtype(dtype) == np.float32 else dict(rtol=1e-10, atol=1e-12)


def pytest_collection_modifyitems(config, items):
    # tests that need a real GPU skip everywhere else (the simulator is not a GPU)
    try:
        real_gpu = not SIMULATOR and _cuda_reason() is None
    except Exception:
        real_gpu = False
    skip = pytest.mark.skip(reason="needs a real NVIDIA GPU")
    for item in items:
        if "gpu" in item.keywords and not real_gpu:
            item.add_marker(skip)
