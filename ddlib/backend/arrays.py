"""Where an array lives, and how to move or copy it: the one place that knows.

A host array is a ``numpy.ndarray``; a device array is a numba CUDA device array (or the
CUDA simulator's stand-in, which also speaks NumPy's protocols, so the test is "has
``copy_to_host`` and is not an ndarray").  Everything in ddlib that must tell the two
apart, copy one, or walk a tree of them (optimizer state, a ``state_dict``) uses these
functions instead of its own ``hasattr`` probe.

Trees are dicts, lists, tuples and NamedTuples nested in any way; leaves that are not
arrays (step counters, floats, None) pass through untouched.

>>> import numpy as np
>>> where(np.zeros(3))
'numpy'
>>> tree_leaves({"a": np.zeros(2), "b": (1, np.ones(3))})[1].shape
(3,)
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "is_device",
    "is_array",
    "where",
    "to_host",
    "copy",
    "assign",
    "zeros",
    "full_like",
    "fill",
    "tree_map",
    "tree_leaves",
    "tree_to_host",
    "tree_copy_into",
]


def is_device(x) -> bool:
    """True for a GPU (or simulated GPU) array, False for NumPy arrays and anything else."""
    return hasattr(x, "copy_to_host") and not isinstance(x, np.ndarray)


def is_array(x) -> bool:
    """True for a host or a device array."""
    return isinstance(x, np.ndarray) or is_device(x)


def where(x) -> str:
    """'cuda' for a device array, 'numpy' for anything on the host."""
    return "cuda" if is_device(x) else "numpy"


def _cuda():
    from . import get_backend

    return get_backend("cuda")


def to_host(x) -> np.ndarray:
    """A NumPy array with x's values: a copy from the device, or ``np.asarray`` on the host."""
    return x.copy_to_host() if is_device(x) else np.asarray(x)


def copy(x):
    """A new array equal to ``x``, on the same side (host or device) as ``x``."""
    if is_device(x):
        return _cuda().asarray(x.copy_to_host())
    return np.array(x, copy=True)


def assign(dst, src) -> None:
    """``dst[...] = src`` in place, whichever side each of the two lives on.

    ``src`` must have dst's shape (a ValueError names both shapes otherwise); its values
    are cast to dst's dtype.
    """
    if tuple(np.shape(src)) != tuple(dst.shape):
        raise ValueError(f"assign: source has shape {tuple(np.shape(src))}, "
                         f"destination {tuple(dst.shape)}")
    if is_device(dst):
        if is_device(src) and src.dtype == dst.dtype:
            dst.copy_to_device(src)  # device to device, nothing through the host
            return
        dst.copy_to_device(np.ascontiguousarray(to_host(src), dtype=dst.dtype))
    else:
        dst[...] = to_host(src)


def zeros(shape, dtype=np.float64, like=None):
    """A zero array of ``shape`` and ``dtype`` on the same side as ``like`` (host when None)."""
    if is_device(like):
        return _cuda().zeros(shape, dtype)
    return np.zeros(shape, dtype=dtype)


def full_like(x, value=0.0):
    """An array shaped and typed like ``x``, every entry ``value``, on x's side."""
    if is_device(x):
        be = _cuda()
        out = be.zeros(x.shape, x.dtype)
        if value:
            be.fill(out, value)
        return out
    return np.full_like(x, value)


def fill(x, value) -> None:
    """Set every entry of ``x`` to ``value`` in place (a kernel launch on the device)."""
    if is_device(x):
        _cuda().fill(x, value)
    else:
        x[...] = value


def tree_map(fn, tree):
    """The same tree with every array leaf replaced by ``fn(leaf)``."""
    if isinstance(tree, dict):
        return {k: tree_map(fn, v) for k, v in tree.items()}
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        return type(tree)(*(tree_map(fn, v) for v in tree))
    if isinstance(tree, (tuple, list)):
        return type(tree)(tree_map(fn, v) for v in tree)
    if is_array(tree):
        return fn(tree)
    return tree


def tree_leaves(tree) -> list:
    """Every array leaf of ``tree``, in order (dicts in insertion order)."""
    out = []
    tree_map(out.append, tree)
    return out


def tree_to_host(tree):
    """A deep host copy of ``tree``: every array a new NumPy array, scalars as they are."""
    return tree_map(lambda a: a.copy_to_host() if is_device(a) else a.copy(), tree)


def tree_copy_into(like, src, path="state", strict_dtype=False):
    """A new tree shaped like ``like`` with ``src``'s values, each array on like's side.

    Arrays keep like's dtype; a leaf whose shape differs, or a tree whose structure
    differs (keys, lengths), raises a ValueError that names the path to it.  With
    ``strict_dtype`` a leaf of another dtype than like's raises a TypeError (naming the
    path) instead of being cast.  Nothing is written into ``like``: a tree that fails
    leaves it as it was.
    """
    if isinstance(like, dict):
        if not isinstance(src, dict) or set(src) != set(like):
            got = sorted(src) if isinstance(src, dict) else type(src).__name__
            raise ValueError(f"{path}: expected keys {sorted(like)}, got {got}")
        return {k: tree_copy_into(like[k], src[k], f"{path}[{k!r}]", strict_dtype)
                for k in like}
    if isinstance(like, (tuple, list)):
        if not isinstance(src, (tuple, list)) or len(src) != len(like):
            n = len(src) if isinstance(src, (tuple, list)) else type(src).__name__
            raise ValueError(f"{path}: expected {len(like)} entries, got {n}")
        vals = [tree_copy_into(a, b, f"{path}[{i}]", strict_dtype)
                for i, (a, b) in enumerate(zip(like, src))]
        return type(like)(*vals) if hasattr(like, "_fields") else type(like)(vals)
    if is_array(like):
        if not (is_array(src) or np.isscalar(src) or isinstance(src, (list, tuple))):
            raise ValueError(f"{path}: expected an array of shape {tuple(like.shape)}, "
                             f"got {type(src).__name__}")
        host = to_host(src)
        if host.shape != like.shape:
            raise ValueError(f"{path}: expected shape {like.shape}, got {host.shape}")
        if strict_dtype and host.dtype != like.dtype:
            raise TypeError(f"{path}: expected dtype {like.dtype}, got {host.dtype}")
        if is_device(like):
            return _cuda().asarray(np.ascontiguousarray(host, dtype=like.dtype))
        return np.array(host, dtype=like.dtype, copy=True)
    return src
