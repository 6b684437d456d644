"""The reference backend: every kernel written as its equation in plain NumPy."""

import numpy as np

name = "numpy"


def asarray(x, dtype=None):
    """A NumPy array of ``x`` (no copy when it already is one of that dtype)."""
    return np.asarray(x, dtype=dtype)


def to_numpy(x):
    """``x`` as a NumPy array."""
    return np.asarray(x)


def empty(shape, dtype=np.float64):
    return np.empty(shape, dtype=dtype)


def zeros(shape, dtype=np.float64):
    return np.zeros(shape, dtype=dtype)


def is_native(x) -> bool:
    return isinstance(x, np.ndarray)


def synchronize():
    """Nothing to wait for on the host."""
