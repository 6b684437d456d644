"""The cuda backend's caching allocator: its bookkeeping everywhere, the real thing on a GPU."""

import gc

import numpy as np
import pytest

from ddlib.backend.cuda.pool import GRAIN, BlockCache, rounded
from tests.conftest import SIMULATOR


class FakeDriver:
    def __init__(self):
        self.next, self.live, self.allocs, self.frees = 0x1000, set(), 0, 0

    def alloc(self, nbytes):
        self.next += nbytes
        self.allocs += 1
        self.live.add(self.next)
        return self.next

    def free(self, ptr):
        self.live.remove(ptr)  # a double free would raise here
        self.frees += 1


def test_sizes_round_up_to_the_grain():
    assert [rounded(n) for n in (1, GRAIN, GRAIN + 1, 3 * GRAIN)] == [GRAIN, GRAIN, 2 * GRAIN,
                                                                      3 * GRAIN]


def test_a_freed_block_serves_the_next_request_of_its_size():
    drv = FakeDriver()
    cache = BlockCache(drv.alloc, drv.free)
    p, n = cache.take(1000)
    assert n == rounded(1000) and drv.allocs == 1
    cache.give(p, n)
    q, _ = cache.take(900)  # rounds to the same block size
    assert q == p and drv.allocs == 1
    r, _ = cache.take(5000)  # another size: the driver is asked
    assert r != p and drv.allocs == 2
    s = cache.stats()
    assert (s["hits"], s["misses"], s["in_use_bytes"], s["cached_bytes"]) == (1, 2, n + rounded(5000), 0)


def test_a_training_loop_reaches_the_driver_only_in_its_first_step():
    drv = FakeDriver()
    cache = BlockCache(drv.alloc, drv.free)
    sizes = [4096, 2048, 4096, 40, 2048, 4096]  # one "step": several arrays, repeated sizes
    for _ in range(5):
        held = [cache.take(n) for n in sizes]
        for ptr, n in held:
            cache.give(ptr, n)
    assert drv.allocs == len(sizes) and cache.stats()["hits"] == 4 * len(sizes)
    assert len({p for p, _ in held}) == len(sizes)  # live blocks are never shared


def test_release_frees_cached_blocks_only():
    drv = FakeDriver()
    cache = BlockCache(drv.alloc, drv.free)
    a, b = cache.take(100), cache.take(100)
    cache.give(*a)
    assert cache.release() == rounded(100) and drv.frees == 1
    assert drv.live == {b[0]} and cache.stats()["cached_blocks"] == 0
    cache.give(*b)
    cache.release()
    assert drv.live == set()


def test_install_respects_the_opt_out(monkeypatch):
    from ddlib.backend.cuda import pool

    monkeypatch.setenv("DDLIB_CUDA_POOL", "0")
    if SIMULATOR:
        assert pool.install() == "the CUDA simulator allocates host memory"
    else:
        assert pool.install() == "DDLIB_CUDA_POOL=0"


@pytest.mark.cuda
def test_memory_pool_checks_its_argument(cuda_be):
    from ddlib.device import memory_pool

    with pytest.raises(TypeError, match="enabled must be True, False or None"):
        memory_pool(enabled="yes")


@pytest.mark.gpu
def test_the_pool_serves_device_arrays_on_a_gpu():
    from numba import cuda

    from ddlib.device import memory_pool

    info = memory_pool()
    assert info["status"] == "installed" and info["enabled"], info
    a = cuda.device_array(1000, np.float32)
    ptr = a.device_ctypes_pointer.value
    del a
    gc.collect()
    before = memory_pool()["hits"]
    b = cuda.device_array(1000, np.float32)
    assert b.device_ctypes_pointer.value == ptr and memory_pool()["hits"] == before + 1
    # switched off, requests go to the driver as numba does it
    memory_pool(enabled=False)
    try:
        misses = memory_pool()["misses"]
        c = cuda.device_array(1000, np.float32)
        assert c.device_ctypes_pointer.value != ptr and memory_pool()["misses"] == misses
    finally:
        memory_pool(enabled=True)
    del b
    gc.collect()
    assert memory_pool(release=True)["released_bytes"] >= rounded(4000)


@pytest.mark.gpu
def test_training_steps_are_identical_with_and_without_the_pool():
    import ddlib
    from ddlib import layers, losses, optim
    from ddlib.device import DeviceTrainer, memory_pool, to_device

    rng = np.random.default_rng(0)
    X = rng.standard_normal((256, 20), dtype=np.float32)
    y = rng.integers(0, 5, size=256)

    def run():
        net = to_device(layers.mlp([20, 32, 5], activation="relu", rng=0, dtype=np.float32))
        with ddlib.use_backend("cuda"):
            opt = optim.Optimizer(net, optim.adam(1e-2))
        tr = DeviceTrainer(net, losses.SoftmaxCrossEntropy(), opt)
        Xd, yd = tr.put_data(X, y)
        losses_ = [tr.step(Xd, yd, return_loss=True) for _ in range(5)]
        return losses_, [p.copy_to_host() for p in opt.params().values()]

    memory_pool(enabled=True)
    with_pool = run()
    memory_pool(enabled=False)
    try:
        without = run()
    finally:
        memory_pool(enabled=True)
    assert with_pool[0] == without[0]
    for a, b in zip(with_pool[1], without[1]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.skipif(SIMULATOR, reason="the simulator has no driver classes")
def test_the_numba_plugin_hands_blocks_back_through_numbas_reference_counting(monkeypatch):
    """PoolMemoryManager against a fake driver: the pointer an array holds stays valid
    while the array lives, and returns to the cache (not to the driver) when it dies."""
    from cuda.bindings import driver as binding
    from numba.cuda.cudadrv import driver as drv

    from ddlib.backend.cuda import pool

    fake = FakeDriver()

    class Driver:
        def cuMemAlloc(self, n):
            return binding.CUdeviceptr(fake.alloc(n))

        def cuMemFree(self, p):
            fake.free(int(p))

    class Context:  # numba keeps a weak proxy to the context
        pass

    monkeypatch.setattr(drv, "driver", Driver())
    ctx = Context()
    mm = pool.manager_class()(context=ctx)
    owned = mm.memalloc(1000)
    gc.collect()
    first = int(owned.device_pointer)  # raises ReferenceError if the block was dropped
    assert owned.size == 1000 and fake.allocs == 1
    view = owned.view(0, 500)  # a view keeps the block alive too
    del owned
    gc.collect()
    assert mm.cache.stats()["cached_blocks"] == 0 and int(view.device_pointer) == first
    del view
    gc.collect()
    assert mm.cache.stats()["cached_blocks"] == 1 and fake.frees == 0
    again = mm.memalloc(900)
    assert int(again.device_pointer) == first and fake.allocs == 1
    del again
    gc.collect()
    mm.reset()
    assert fake.live == set() and fake.frees == 1
