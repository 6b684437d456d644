"""A caching allocator for the cuda backend: device memory is reused, not freed.

A training step on the GPU allocates about twenty arrays (each layer's output, every
gradient) and drops them again at the end of the step.  numba's own allocator answers
every request with ``cuMemAlloc`` and hands every freed block back with ``cuMemFree``,
batched ten at a time.  Both calls are slow next to a small kernel, and ``cuMemFree``
waits for the whole GPU to go idle, so the host can never queue the next step's kernels
while the current ones run.

``PoolMemoryManager`` is a numba EMM plugin (External Memory Management) that keeps each
freed block in a free list keyed by its size (rounded up to ``GRAIN`` bytes) and hands
it out again for the next request of that size.  Steps of a training loop ask for the
same sizes every time, so after the first step no call reaches the driver at all.

What it buys, measured (benchmarks/results/gpu-nvidia-h200.json): on the 784-512-512-10
step at batch 1024 nothing measurable (3.86 ms with it, 3.87 ms without).  That step is
bound by the host, which spends ~16 us on each of its ~20 kernel launches plus the
Python of the layers, while the GPU's own work (products 0.59 ms) finishes sooner; the
driver's calls were not where the time went.  The pool still takes ``cuMemAlloc`` and
the GPU-wide waits of ``cuMemFree`` out of every steady-state loop, which pays where
steps are small and numerous or the host is the bottleneck for other reasons.

Safety rests on one fact: ddlib queues every kernel and copy on the default stream, so
work runs in the order it was queued, and a block handed out again is only written by
work queued after everything that read it in its previous life.

``install()`` (called when the cuda backend is first imported) makes it numba's memory
manager, as long as no CUDA context exists yet and the user has not chosen another
manager (``NUMBA_CUDA_MEMORY_MANAGER``); ``DDLIB_CUDA_POOL=0`` turns it off.  The pool
never returns memory on its own: ``ddlib.device.memory_pool(release=True)`` frees the
cached blocks, and an allocation that runs out of memory frees them and tries again.
"""

from __future__ import annotations

import os
import threading
import weakref

from .launch import SIMULATOR

#: requests are rounded up to a multiple of this many bytes (so near sizes share blocks)
GRAIN = 512


def rounded(size: int) -> int:
    """The block size that serves a request of ``size`` bytes."""
    return -(-int(size) // GRAIN) * GRAIN


class BlockCache:
    """Free lists of device blocks by rounded size.

    ``alloc(nbytes) -> ptr`` and ``free(ptr)`` are the driver calls (injected, so the
    bookkeeping is tested without a GPU).  ``take`` reuses a cached block or allocates a
    new one; ``give`` puts a block back; ``release`` frees every cached block.
    """

    def __init__(self, alloc, free):
        self._alloc, self._free = alloc, free
        self._blocks: dict[int, list] = {}
        self._lock = threading.Lock()
        self.hits = 0  # requests served from the cache
        self.misses = 0  # requests that reached the driver
        self.cached_bytes = 0  # bytes sitting in free lists
        self.in_use_bytes = 0  # bytes handed out and not yet given back

    def take(self, size: int):
        """(ptr, nbytes) for a request of ``size`` bytes."""
        nbytes = rounded(size)
        with self._lock:
            free = self._blocks.get(nbytes)
            if free:
                self.hits += 1
                self.cached_bytes -= nbytes
                self.in_use_bytes += nbytes
                return free.pop(), nbytes
        ptr = self._alloc(nbytes)  # outside the lock: the driver call may be slow or raise
        with self._lock:
            self.misses += 1
            self.in_use_bytes += nbytes
        return ptr, nbytes

    def give(self, ptr, nbytes: int):
        with self._lock:
            self._blocks.setdefault(nbytes, []).append(ptr)
            self.cached_bytes += nbytes
            self.in_use_bytes -= nbytes

    def release(self) -> int:
        """Free every cached block; returns the bytes freed (blocks in use are kept)."""
        with self._lock:
            blocks, self._blocks = self._blocks, {}
            freed, self.cached_bytes = self.cached_bytes, 0
        for ptrs in blocks.values():
            for ptr in ptrs:
                self._free(ptr)
        return freed

    def stats(self) -> dict:
        with self._lock:
            return dict(hits=self.hits, misses=self.misses, cached_bytes=self.cached_bytes,
                        in_use_bytes=self.in_use_bytes,
                        cached_blocks=sum(len(v) for v in self._blocks.values()))


_manager_class = None


def manager_class():
    """The EMM plugin class (built on first use: it subclasses numba's driver classes,
    which the simulator does not have)."""
    global _manager_class
    if _manager_class is not None:
        return _manager_class
    from numba.cuda.cudadrv import driver as drv

    class PoolMemoryManager(drv.NumbaCUDAMemoryManager):
        """numba's own manager, with device allocations served from a ``BlockCache``
        while ``enabled`` (a class-wide switch: off, it allocates exactly as numba does)."""

        enabled = True
        instances: "weakref.WeakSet" = weakref.WeakSet()

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            # looked up at call time: touching drv.driver starts the driver, which numba's
            # set_memory_manager must not do (it builds a context-less instance to check)
            self.cache = BlockCache(lambda n: drv.driver.cuMemAlloc(n),
                                    lambda p: drv.driver.cuMemFree(p))
            if self.context is not None:
                PoolMemoryManager.instances.add(self)

        def memalloc(self, size):
            if not PoolMemoryManager.enabled or size <= 0:
                return super().memalloc(size)
            cache = self.cache

            def attempt():
                return cache.take(size)

            try:
                ptr, nbytes = self._attempt_allocation(attempt)
            except drv.CudaAPIError as exc:
                if exc.code != drv.binding.CUresult.CUDA_ERROR_OUT_OF_MEMORY:
                    raise
                cache.release()  # out of memory even after numba's own flush: drop the cache
                ptr, nbytes = self._attempt_allocation(attempt)

            # as in numba's own memalloc: the manager's ``allocations`` holds the pointer
            # object alive; the arrays hold counted references to it (``own()``), and when
            # the last one goes its finalizer runs: here, back into the cache
            allocations = self.allocations

            def give_back():
                allocations.pop(ptr, None)
                cache.give(ptr, nbytes)

            mem = drv.AutoFreePointer(weakref.proxy(self.context), ptr, size,
                                      finalizer=give_back)
            allocations[ptr] = mem
            return mem.own()

        def reset(self):
            super().reset()  # drops every allocation: their finalizers refill the cache
            self.cache.release()

        @property
        def interface_version(self):
            return 1

    _manager_class = PoolMemoryManager
    return PoolMemoryManager


def install() -> str:
    """Make the pool numba's memory manager if that is still possible; returns why not
    (or 'installed').  Called once when the cuda backend is imported."""
    if SIMULATOR:
        return "the CUDA simulator allocates host memory"
    if os.environ.get("DDLIB_CUDA_POOL", "1") == "0":
        return "DDLIB_CUDA_POOL=0"
    from numba.cuda.cudadrv import driver as drv

    chosen = drv.config.CUDA_MEMORY_MANAGER
    if chosen != "default":
        return f"NUMBA_CUDA_MEMORY_MANAGER={chosen} chose another manager"
    if drv._memory_manager is not None and drv._memory_manager is not manager_class():
        return "a CUDA context was created before ddlib's cuda backend was imported"
    drv.set_memory_manager(manager_class())
    return "installed"


def active_managers():
    """The pool managers of live CUDA contexts (empty when the pool is not in use)."""
    if _manager_class is None:
        return []
    return list(_manager_class.instances)


def set_enabled(flag: bool) -> None:
    """Serve allocations from the pool (True) or exactly as numba does (False)."""
    if _manager_class is not None:
        _manager_class.enabled = bool(flag)


def enabled() -> bool:
    return _manager_class is not None and _manager_class.enabled and bool(active_managers())
