"""Timing helpers: best-of-k medians, measured in-process, plus this machine's bandwidth."""

import time

import numpy as np


def bench(fn, repeat=7, number=None, min_time=0.2, sync=None):
    """Median seconds per call of ``fn()`` over ``repeat`` rounds (after one warm-up call).

    ``number`` calls per round is chosen so a round lasts about ``min_time`` seconds.
    ``sync`` (e.g. a device synchronize) is called before reading the clock.
    """
    fn()
    if sync:
        sync()
    if number is None:
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        one = max(time.perf_counter() - t0, 1e-7)
        number = max(1, int(min_time / one))
    rounds = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        if sync:
            sync()
        rounds.append((time.perf_counter() - t0) / number)
    return float(np.median(rounds))


def stream_bandwidth(n_bytes=400_000_000):
    """Bytes per second of a large copy (read + write), numba-parallel over both cores.

    This is the yardstick for memory-bound kernels: a kernel that must move B bytes can
    at best take B / bandwidth seconds.
    """
    from ._stream import copy_kernel

    n = n_bytes // 8
    src = np.ones(n, dtype=np.float32)
    dst = np.empty_like(src)
    copy_kernel(src, dst)
    t = bench(lambda: copy_kernel(src, dst), repeat=5, number=3)
    return 2 * src.nbytes / t


def interleaved(fns, rounds=15, min_time=0.05):
    """Best seconds per call of each ``fns[name]()``, measured in alternating rounds.

    On a shared machine a burst of outside load slows whatever runs during it; alternating
    the variants round by round and keeping each one's fastest round compares them under
    the same conditions.  Returns {name: seconds}.
    """
    counts = {}
    for name, fn in fns.items():
        fn()
        t0 = time.perf_counter()
        fn()
        counts[name] = max(1, int(min_time / max(time.perf_counter() - t0, 1e-7)))
    best = {name: float("inf") for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            n = counts[name]
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            best[name] = min(best[name], (time.perf_counter() - t0) / n)
    return best
