"""The cpu backend: numba ``@njit`` kernels (``parallel=True`` where the work is large
enough to pay for the threads, ``cache=True`` so a warm process skips compilation).
Matrix products go to the BLAS that NumPy links; everything around them is fused."""

import os

# numba's OpenMP workers spin for a long time after each parallel region, and so do
# OpenBLAS's after each matrix product; on a 2-core machine the two pools then fight for
# the cores and a kernel that follows a matmul can take milliseconds instead of
# microseconds.  A short spin keeps back-to-back kernels fast and ends the fight.  It only
# takes effect if set before numba starts its thread pool (the first parallel kernel).
os.environ.setdefault("GOMP_SPINCOUNT", "1000")

from ..numpy_ref import asarray, empty, is_native, synchronize, to_numpy, zeros  # noqa: F401

name = "cpu"
