"""What every kernel wrapper checks before compiled code touches memory (issue 13).

A numba kernel indexes its buffers without bounds checks, so a caller's wrong shape
would read or write past them.  Each backend's wrapper (numpy_ref, cpu, cuda) calls the
helpers here first; they compare shape tuples, dtypes and contiguity flags only (no pass
over the data), so the cost is a few attribute reads per call.  A mismatch raises one
ValueError (shape, length) or TypeError (dtype, layout) naming the kernel, the argument
and what was expected.

Works on NumPy arrays and numba device arrays alike (both have ``shape``, ``dtype``).
"""

import numpy as np

__all__ = [
    "need_same_shape",
    "need_shape",
    "need_2d",
    "need_rows",
    "need_float",
    "need_dtype",
    "need_same_dtype",
    "need_contiguous",
    "need_counter",
    "need_labels",
    "need_matmul",
    "need_step",
    "need_clip",
]

#: the dtypes every backend's kernels compute in (float16 is not one of them)
FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _shape(x):
    return tuple(x.shape)


def need_shape(who, name, x, shape, why=""):
    """x (when not None) has exactly ``shape``."""
    if x is not None and _shape(x) != tuple(shape):
        raise ValueError(f"{who}: {name} must have shape {tuple(shape)}{why}, "
                         f"got {_shape(x)}")


def need_same_shape(who, ref_name, ref, **arrays):
    """Every non-None array in ``arrays`` has the shape of ``ref``."""
    s = ref.shape
    for name, x in arrays.items():
        if x is not None and x.shape != s:
            raise ValueError(f"{who}: {name} must have shape {_shape(ref)} (the shape of "
                             f"{ref_name}), got {_shape(x)}")


def need_2d(who, name, x):
    if len(x.shape) != 2:
        raise ValueError(f"{who}: {name} must be a 2-D array (rows, columns), "
                         f"got shape {_shape(x)}")


def need_rows(who, name, x, n, ref="the batch"):
    """A 1-D array of n entries (one per row of the batch)."""
    need_shape(who, name, x, (n,), f" (one entry per row of {ref})")


def need_float(who, **arrays):
    for name, x in arrays.items():
        if x is not None and np.dtype(x.dtype) not in FLOATS:
            raise TypeError(f"{who}: {name} must be a float32 or float64 array, "
                            f"got dtype {x.dtype}")


def need_dtype(who, name, x, dtype):
    if x is not None and x.dtype != np.dtype(dtype):
        raise TypeError(f"{who}: {name} must have dtype {np.dtype(dtype)}, got {x.dtype}")


def need_same_dtype(who, ref_name, ref, **arrays):
    d = ref.dtype
    for name, x in arrays.items():
        if x is not None and x.dtype != d:
            raise TypeError(f"{who}: {name} must have dtype {d} (the dtype of {ref_name}), "
                            f"got {x.dtype}")


def _c_contig(x):
    if isinstance(x, np.ndarray):
        return x.flags.c_contiguous
    test = getattr(x, "is_c_contiguous", None)  # numba device arrays
    if callable(test):
        return bool(test())
    f = x.flags  # the simulator's arrays: NumPy's flags object, or a dict of them
    return f["C_CONTIGUOUS"] if isinstance(f, dict) else f.c_contiguous


def need_contiguous(who, **arrays):
    """Arrays a kernel writes in place through a flat view must be C-contiguous."""
    for name, x in arrays.items():
        if x is not None and not _c_contig(x):
            raise TypeError(f"{who}: {name} must be C-contiguous (it is updated in place "
                            f"through a flat view); got a strided array of shape {_shape(x)}")


def need_counter(who, bad, name="bad"):
    """A counter the kernel adds into: a (1,) integer array (or None)."""
    if bad is None:
        return
    if not hasattr(bad, "shape"):
        raise TypeError(f"{who}: {name} must be a (1,) integer array, "
                        f"got {type(bad).__name__}")
    if _shape(bad) != (1,):
        raise ValueError(f"{who}: {name} must be a counter of shape (1,), got {_shape(bad)}")
    if np.dtype(bad.dtype).kind not in ("i", "u"):
        raise TypeError(f"{who}: {name} must be an integer counter, got dtype {bad.dtype}")


def need_labels(who, labels, n, k=None):
    """Integer class labels of shape (n,); with ``k`` (host arrays only), each in [0, k).

    The range check reads the n labels once: n entries against the n x k logits the
    kernel reads, and without it a label >= k would index past a row.
    """
    need_rows(who, "labels", labels, n)
    if np.dtype(labels.dtype).kind not in ("i", "u"):
        raise TypeError(f"{who}: labels must be integer class indices, got dtype "
                        f"{labels.dtype}")
    if k is not None and n:
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= k:
            bad = lo if lo < 0 else hi
            raise ValueError(f"{who}: labels must lie in [0, {k}) for {k} classes, "
                             f"got {bad}")


def need_matmul(who, a, b, out=None, trans_a=False, trans_b=False, names=("a", "b")):
    """2-D operands with matching inner dimensions, and ``out`` of the product's shape."""
    an, bn = names
    need_2d(who, an, a)
    need_2d(who, bn, b)
    n, ka = (a.shape[1], a.shape[0]) if trans_a else (a.shape[0], a.shape[1])
    kb, m = (b.shape[1], b.shape[0]) if trans_b else (b.shape[0], b.shape[1])
    if ka != kb:
        ta = ".T" if trans_a else ""
        tb = ".T" if trans_b else ""
        raise ValueError(f"{who}: inner dimensions differ: {an}{ta} is ({n}, {ka}) and "
                         f"{bn}{tb} is ({kb}, {m})")
    need_shape(who, "out", out, (n, m), " (the product's shape)")


def _c_ok(x):
    return x.flags.c_contiguous if isinstance(x, np.ndarray) else _c_contig(x)


def need_step(who, w, g, bad=None, names=("w", "g"), contiguous=True, **state):
    """An optimizer step kernel's arrays: gradient and state of w's shape, state and w
    C-contiguous and of w's dtype, float arrays, and a (1,) counter.  ``names`` are what
    the kernel calls w and g (axpy's y and x, ema_update's avg and w).  numpy_ref passes
    ``contiguous=False``: NumPy needs no flat views.

    The common case (everything right) is one pass of attribute compares; only a
    mismatch goes through the detailed checks that word the error.
    """
    s, d = w.shape, w.dtype
    ok = g.shape == s and d in FLOATS and g.dtype in FLOATS
    if ok:
        for x in state.values():
            if x is not None and (x.shape != s or x.dtype != d):
                ok = False
                break
    if ok and contiguous:
        ok = _c_ok(w) and _c_ok(g) and all(x is None or _c_ok(x) for x in state.values())
    if ok and bad is not None:
        ok = getattr(bad, "shape", None) == (1,) and bad.dtype.kind in "iu"
    if not ok:
        _step_detail(who, w, g, bad, names, contiguous, state)


def _step_detail(who, w, g, bad, names, contiguous, state):
    wn, gn = names
    if g.shape != w.shape:
        raise ValueError(f"{who}: {gn} must have shape {_shape(w)} (the shape of {wn}), "
                         f"got {_shape(g)}")
    if state:
        need_same_shape(who, wn, w, **state)
        need_same_dtype(who, wn, w, **state)
        if contiguous:
            need_contiguous(who, **state)
    need_float(who, **{wn: w, gn: g})
    if contiguous:
        need_contiguous(who, **{wn: w, gn: g})
    if bad is not None:
        need_counter(who, bad)


def need_clip(who, grads, bad, outs, n_outs, out_name, contiguous=True):
    """A multi-gradient clip kernel: one (1,) counter per gradient, ``n_outs`` (1,) output
    arrays, each gradient a contiguous float array."""
    if len(bad) != len(grads) or len(outs) != n_outs:
        raise ValueError(f"{who}: {len(grads)} gradients need {len(grads)} counters and "
                         f"{n_outs} {out_name} array(s), got {len(bad)} and {len(outs)}")
    for i, (g, b) in enumerate(zip(grads, bad)):
        need_float(who, **{f"grads[{i}]": g})
        if contiguous:
            need_contiguous(who, **{f"grads[{i}]": g})
        need_counter(who, b, f"bad[{i}]")
    for i, o in enumerate(outs):
        if out_name == "clipped":  # one integer counter
            need_counter(who, o, out_name)
        else:  # one float (1,) array per norm
            need_shape(who, f"{out_name}[{i}]", o, (1,))
