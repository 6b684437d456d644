"""The cpu backend: numba ``@njit`` kernels (``parallel=True`` where the work is large
enough to pay for the threads, ``cache=True`` so a warm process skips compilation).
Matrix products go to the BLAS that NumPy links; everything around them is fused."""

from ..numpy_ref import asarray, empty, is_native, synchronize, to_numpy, zeros  # noqa: F401

name = "cpu"
