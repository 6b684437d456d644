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


def assert_product_close(got, want, a, b, bias=None):
    """``got`` and ``want`` both hold ``a @ b (+ bias)``, summed in possibly different orders.

    Rounding theory bounds each by |fl(a b) - a b| <= gamma_k |a| |b| entry by entry, with
    gamma_k = k u / (1 - k u), k the inner dimension and u the unit round-off, whatever the
    order of the k additions or the use of fused multiply-adds.  Two such results may so
    differ by twice that.  Where the sum cancels (a small entry made of large terms) this
    is far more than a relative tolerance allows, and it is why a GPU's order of summation
    can miss ``tol`` on one entry in a thousand.  Any indexing or staging mistake is off by
    a whole term, orders of magnitude above the bound.
    """
    dt = np.dtype(got.dtype)
    k = a.shape[1] + (0 if bias is None else 1)
    u = np.finfo(dt).eps / 2
    gamma = k * u / (1 - k * u)
    size = np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64))
    if bias is not None:
        size = size + np.abs(bias.astype(np.float64))
    t = tol(dt)
    bound = t["atol"] + t["rtol"] * np.abs(want) + 2 * gamma * size
    err = np.abs(got.astype(np.float64) - want.astype(np.float64))
    assert np.all(err <= bound), (
        f"{np.sum(err > bound)} of {err.size} entries beyond the round-off bound; worst "
        f"excess {np.max(err - bound):.3g} at {np.unravel_index(np.argmax(err - bound), err.shape)}")


def pytest_collection_modifyitems(config, items):
    # tests that need a real GPU skip everywhere else (the simulator is not a GPU)
    try:
        real_gpu = not SIMULATOR and _cuda_reason() is None
    except Exception:
        real_gpu = False
    if real_gpu:
        # import the cuda backend before any test makes a CUDA context, as an application
        # would, so that ddlib's caching allocator (ddlib.backend.cuda.pool) is in place
        import ddlib.backend.cuda  # noqa: F401
    skip = pytest.mark.skip(reason="needs a real NVIDIA GPU")
    for item in items:
        if "gpu" in item.keywords and not real_gpu:
            item.add_marker(skip)
