"""Errors and input checks shared by every public entry point."""

import math
import numbers

import numpy as np


class DivergenceError(FloatingPointError):
    """Training produced a non-finite or exploding loss; carries the step and the loss."""

    def __init__(self, step, loss, where="training"):
        self.step = step
        self.loss = loss
        super().__init__(
            f"{where} diverged at step {step}: loss = {loss!r}. "
            "Try a smaller learning rate, gradient clipping, or standardized inputs."
        )


def check_positive(name, value, allow_zero=False):
    """Raise ValueError unless ``value`` is a finite number > 0 (or >= 0)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        need = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {need}, got {value!r}")
    return float(value)


def check_unit_interval(name, value):
    """Raise ValueError unless 0 <= value < 1 (decay rates such as beta and rho)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    if not (0.0 <= value < 1.0):
        raise ValueError(f"{name} must lie in [0, 1), got {value!r}")
    return float(value)


def check_int(name, value, minimum=1):
    """Raise unless ``value`` is an integer >= minimum."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


def check_finite(name, x):
    """Raise ValueError if a host array holds NaN or infinity (device arrays are skipped)."""
    if isinstance(x, np.ndarray) and x.dtype.kind == "f" and not np.isfinite(x).all():
        bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
        raise ValueError(f"{name} contains {bad} non-finite value(s) (NaN or inf)")
    return x


def check_labels(name, labels, n_rows, n_classes):
    """Integer labels of shape (n_rows,) in [0, n_classes)."""
    y = np.asarray(labels)
    if y.ndim != 1 or y.shape[0] != n_rows:
        raise ValueError(f"{name} must have shape ({n_rows},) to match the batch, got {y.shape}")
    if y.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer class indices, got dtype {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(
            f"{name} must lie in [0, {n_classes}) for {n_classes} classes, "
            f"got values from {y.min()} to {y.max()}"
        )
    return y.astype(np.int64, copy=False)


#: the dtypes parameters and batches may have: every backend computes in these two
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_float_dtype(name, dtype):
    """The ``np.dtype`` of ``dtype`` when it is float32 or float64; a clear error otherwise.

    Integer, boolean and complex dtypes would make weights (or a batch) that cannot hold
    the chapter's real-valued quantities; float16 is not computed by every backend.

    >>> check_float_dtype("dtype", "float32")
    dtype('float32')
    >>> check_float_dtype("dtype", int)
    Traceback (most recent call last):
    ...
    TypeError: dtype must be float32 or float64, got int64 (an integer dtype cannot hold real-valued weights)
    """
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{name} must be float32 or float64, got {dtype!r}") from None
    if dt in FLOAT_DTYPES:
        return dt
    why = {"i": "an integer dtype cannot hold real-valued weights",
           "u": "an integer dtype cannot hold real-valued weights",
           "b": "a boolean dtype cannot hold real-valued weights",
           "c": "complex values are not supported",
           "f": "only float32 and float64 are supported on every backend"}.get(dt.kind)
    raise TypeError(f"{name} must be float32 or float64, got {dt}" + (f" ({why})" if why else ""))


def check_float_array(who, name, x):
    """Raise TypeError unless the array ``x`` (host or device) has dtype float32 or float64.

    ``who`` is the entry point (a layer or loss name) the message starts with.
    """
    dt = getattr(x, "dtype", None)
    if dt is None or np.dtype(dt) not in FLOAT_DTYPES:
        raise TypeError(f"{who}: {name} must be a float32 or float64 array, got "
                        f"{'dtype ' + str(dt) if dt is not None else type(x).__name__}"
                        + (" (convert it first, e.g. x.astype(np.float64))"
                           if dt is not None and np.dtype(dt).kind in "iubf" else ""))
    return x
