"""Choosing a backend: names, aliases, the context manager, and clear errors."""

import pytest

import ddlib
from ddlib.backend import BackendUnavailable, cuda_unavailable_reason
from tests.conftest import SIMULATOR


def test_default_is_cpu_and_use_backend_restores():
    assert ddlib.get_backend().name == "cpu"
    with ddlib.use_backend("numpy") as be:
        assert be.name == "numpy"
        assert ddlib.get_backend().name == "numpy"
        with ddlib.use_backend("numba"):  # alias of cpu
            assert ddlib.get_backend().name == "cpu"
        assert ddlib.get_backend().name == "numpy"
    assert ddlib.get_backend().name == "cpu"


def test_set_backend_changes_the_current_one():
    try:
        ddlib.set_backend("numpy")
        assert ddlib.get_backend().name == "numpy"
    finally:
        ddlib.set_backend("cpu")


@pytest.mark.parametrize("bad", ["tpu", "", "numpyy"])
def test_unknown_backend_names_the_ones_that_exist(bad):
    with pytest.raises(ValueError, match="available backends are numpy, cpu, cuda"):
        ddlib.set_backend(bad)


def test_backend_name_must_be_a_string():
    with pytest.raises(TypeError, match="backend name must be a str"):
        ddlib.set_backend(3)


@pytest.mark.skipif(SIMULATOR, reason="the simulator makes cuda available")
def test_cuda_without_gpu_says_why():
    if cuda_unavailable_reason() is None:
        pytest.skip("a GPU is present")
    with pytest.raises(BackendUnavailable, match="NUMBA_ENABLE_CUDASIM=1"):
        ddlib.set_backend("cuda")
    assert "cuda" not in ddlib.available_backends()
    assert ddlib.get_backend().name == "cpu"  # a failed switch leaves the backend alone


def test_missing_kernel_is_a_clear_attribute_error():
    with pytest.raises(AttributeError, match="has no kernel 'warp_drive'"):
        ddlib.get_backend("numpy").warp_drive



def test_a_thread_started_later_begins_with_the_default_not_the_callers_choice():
    """set_backend is per thread (a ContextVar), as its docstring says; copy_context hands
    the caller's choice to a worker."""
    import contextvars
    import threading

    from ddlib.backend import DEFAULT_BACKEND, load_backend

    default = load_backend(DEFAULT_BACKEND).name
    other = "numpy" if default != "numpy" else "cpu"
    seen = {}

    def note(key):
        seen[key] = ddlib.get_backend().name

    with ddlib.use_backend(other):
        t = threading.Thread(target=note, args=("plain",))
        t.start()
        t.join()
        t = threading.Thread(target=contextvars.copy_context().run, args=(note, "copied"))
        t.start()
        t.join()
    assert seen == {"plain": default, "copied": other}
