"""The cuda backend: numba.cuda kernels, imported only when this backend is selected.

Arrays live on the device (numba device arrays).  ``asarray`` copies host data to the
device, ``to_numpy`` copies it back; kernels never move data across implicitly.  Under
``NUMBA_ENABLE_CUDASIM=1`` the same kernels run on numba's simulator, one Python thread
per CUDA thread, which is how CI tests them without a GPU.
"""

import numpy as np
from numba import cuda

from ..arrays import is_device
from . import pool as _pool

name = "cuda"

#: whether ddlib's caching allocator serves device memory ('installed'), or why not
POOL_STATUS = _pool.install()


#: device arrays (and the simulator's stand-ins) are this backend's arrays: the one test
#: of where an array lives, ``ddlib.backend.arrays.is_device``
is_native = is_device


def asarray(x, dtype=None):
    """A device array holding ``x`` (copied from the host unless it already lives here)."""
    if is_native(x):
        if dtype is not None and np.dtype(dtype) != x.dtype:
            raise TypeError(
                f"asarray: device array has dtype {x.dtype}, asked for {np.dtype(dtype)}; "
                "cast on the host before copying"
            )
        return x
    return cuda.to_device(np.ascontiguousarray(x, dtype=dtype))


def to_numpy(x):
    """Copy a device array back to a host NumPy array (host arrays pass through)."""
    if is_native(x):
        return x.copy_to_host()
    return np.asarray(x)


def empty(shape, dtype=np.float64):
    return cuda.device_array(shape, dtype=dtype)


def zeros(shape, dtype=np.float64):
    out = cuda.device_array(shape, dtype=dtype)
    from .core import fill

    fill(out, 0.0)
    return out


def synchronize():
    """Wait until every queued kernel has finished (for timing)."""
    cuda.synchronize()
