import numba as nb


@nb.njit(parallel=True, cache=True)
def copy_kernel(src, dst):
    for i in nb.prange(src.size):
        dst[i] = src[i]
