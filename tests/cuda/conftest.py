"""Fixtures for the cuda tests: the cuda backend, and a counter of host <-> device copies."""

import pytest

from tests.conftest import SIMULATOR


@pytest.fixture
def cuda_be():
    """The cuda backend made current (skips where it cannot run)."""
    import ddlib
    from ddlib.backend import cuda_unavailable_reason

    reason = cuda_unavailable_reason()
    if reason is not None:
        pytest.skip(f"cuda backend unavailable: {reason}")
    with ddlib.use_backend("cuda") as be:
        yield be


class Transfers:
    """Counts copies between host and device made while the fixture is active."""

    def __init__(self):
        self.to_host = 0
        self.to_device = 0

    def reset(self):
        self.to_host = self.to_device = 0


@pytest.fixture
def transfers(monkeypatch):
    """Patch the simulator's copy functions to count calls (skips on a real GPU)."""
    if not SIMULATOR:
        pytest.skip("transfer counting patches the CUDA simulator's arrays")
    from numba import cuda
    from numba.cuda.simulator.cudadrv import devicearray as sim

    t = Transfers()
    to_host, copy_to_device, to_device = (sim.FakeCUDAArray.copy_to_host,
                                          sim.FakeCUDAArray.copy_to_device, cuda.to_device)

    def counted_to_host(self, *a, **k):
        t.to_host += 1
        return to_host(self, *a, **k)

    def counted_copy_to_device(self, ary, *a, **k):
        if not hasattr(ary, "copy_to_host"):  # device-to-device copies are not transfers
            t.to_device += 1
        return copy_to_device(self, ary, *a, **k)

    def counted_to_device(*a, **k):
        t.to_device += 1
        return to_device(*a, **k)

    monkeypatch.setattr(sim.FakeCUDAArray, "copy_to_host", counted_to_host)
    monkeypatch.setattr(sim.FakeCUDAArray, "copy_to_device", counted_copy_to_device)
    monkeypatch.setattr(cuda, "to_device", counted_to_device)
    return t
