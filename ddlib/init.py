"""Weight initializers (Sec. 3.3.3), each drawing from an explicit ``numpy.random.Generator``.

Every initializer takes ``(shape, rng, dtype)`` for a weight matrix of shape
(fan_in, fan_out) = (r_in, r_out) and returns a new array.  ``dtype`` must be float32 or
float64 (integer, boolean or complex weights would be truncated, float16 is not computed
by every backend: each is a TypeError naming ``dtype``), and the fan-in must be at least
one (a ValueError naming the shape):

    >>> import numpy as np
    >>> W = xavier_normal((784, 512), np.random.default_rng(0))
    >>> round(float(W.std()), 3)   # sqrt(2 / (784 + 512))
    0.039
"""

import numpy as np

from .errors import check_float_dtype, check_positive

__all__ = [
    "INITIALIZERS",
    "constant",
    "zeros",
    "normal",
    "fan_in_normal",
    "fan_in_uniform",
    "xavier_normal",
    "xavier_uniform",
    "kaiming_normal",
    "kaiming_uniform",
    "get_initializer",
    "initialize",
    "as_rng",
]


def as_rng(rng=None):
    """A Generator from a Generator, an int seed, or None (fresh OS entropy)."""
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        if rng < 0:
            raise ValueError(f"rng must be a non-negative integer seed, a "
                             f"numpy.random.Generator or None, got {rng!r}")
        return np.random.default_rng(rng)
    if rng is None:
        return np.random.default_rng()
    raise TypeError(f"rng must be a numpy.random.Generator, an int seed or None, got {type(rng).__name__}")


def _fans(shape):
    if len(shape) < 1:
        raise ValueError(f"shape must have at least one dimension, got {shape}")
    fan_in = shape[0]
    fan_out = shape[1] if len(shape) > 1 else shape[0]
    if fan_in < 1:
        raise ValueError(f"shape {tuple(shape)} has fan-in {fan_in}; a fan-in-scaled "
                         "initializer needs at least one input (shape[0] >= 1)")
    return fan_in, fan_out


def constant(shape, rng=None, dtype=np.float64, value=0.5):
    """Every weight equal: the symmetry problem of Sec. 3.3.3 (hidden units stay identical)."""
    dtype = check_float_dtype("dtype", dtype)
    return np.full(shape, value, dtype=dtype)


def zeros(shape, rng=None, dtype=np.float64):
    """All zeros (the usual choice for biases)."""
    dtype = check_float_dtype("dtype", dtype)
    return np.zeros(shape, dtype=dtype)


def normal(shape, rng=None, dtype=np.float64, std=0.01):
    """N(0, std^2) with a fixed small std, whatever the layer's size."""
    dtype = check_float_dtype("dtype", dtype)
    check_positive("std", std)
    return as_rng(rng).normal(0.0, std, size=shape).astype(dtype)


def fan_in_normal(shape, rng=None, dtype=np.float64):
    """N(0, 1/r) with r the fan-in: the output variance no longer grows with r."""
    dtype = check_float_dtype("dtype", dtype)
    fan_in, _ = _fans(shape)
    return as_rng(rng).normal(0.0, np.sqrt(1.0 / fan_in), size=shape).astype(dtype)


def fan_in_uniform(shape, rng=None, dtype=np.float64):
    """U(-1/sqrt(r), 1/sqrt(r)) with r the fan-in."""
    dtype = check_float_dtype("dtype", dtype)
    fan_in, _ = _fans(shape)
    a = 1.0 / np.sqrt(fan_in)
    return as_rng(rng).uniform(-a, a, size=shape).astype(dtype)


def xavier_normal(shape, rng=None, dtype=np.float64):
    """Glorot/Xavier: N(0, 2/(r_in + r_out)); PyTorch's ``xavier_normal_``."""
    dtype = check_float_dtype("dtype", dtype)
    fan_in, fan_out = _fans(shape)
    return as_rng(rng).normal(0.0, np.sqrt(2.0 / (fan_in + fan_out)), size=shape).astype(dtype)


def xavier_uniform(shape, rng=None, dtype=np.float64):
    """Glorot/Xavier uniform: U(+-sqrt(6/(r_in + r_out))), the same variance as the normal form."""
    dtype = check_float_dtype("dtype", dtype)
    fan_in, fan_out = _fans(shape)
    a = np.sqrt(6.0 / (fan_in + fan_out))
    return as_rng(rng).uniform(-a, a, size=shape).astype(dtype)


def kaiming_normal(shape, rng=None, dtype=np.float64):
    """He/Kaiming for ReLU: N(0, 2/r_in), making up for the half of the units a ReLU zeroes."""
    dtype = check_float_dtype("dtype", dtype)
    fan_in, _ = _fans(shape)
    return as_rng(rng).normal(0.0, np.sqrt(2.0 / fan_in), size=shape).astype(dtype)


def kaiming_uniform(shape, rng=None, dtype=np.float64):
    """He/Kaiming uniform: U(+-sqrt(6/r_in))."""
    dtype = check_float_dtype("dtype", dtype)
    fan_in, _ = _fans(shape)
    a = np.sqrt(6.0 / fan_in)
    return as_rng(rng).uniform(-a, a, size=shape).astype(dtype)


INITIALIZERS = {
    "constant": constant,
    "zeros": zeros,
    "normal": normal,
    "fan_in_normal": fan_in_normal,
    "fan_in_uniform": fan_in_uniform,
    "xavier_normal": xavier_normal,
    "glorot_normal": xavier_normal,
    "xavier_uniform": xavier_uniform,
    "glorot_uniform": xavier_uniform,
    "kaiming_normal": kaiming_normal,
    "he_normal": kaiming_normal,
    "kaiming_uniform": kaiming_uniform,
    "he_uniform": kaiming_uniform,
}


def get_initializer(name):
    """The initializer called ``name`` (or ``name`` itself when it is callable)."""
    if callable(name):
        return name
    try:
        return INITIALIZERS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"init={name!r} is not a known initializer; choose one of {sorted(INITIALIZERS)}"
        ) from None


def initialize(name, shape, rng=None, dtype=np.float64, **kwargs):
    """Draw an array of ``shape`` with the initializer called ``name``.

    ``dtype`` must be float32 or float64 (checked here too, for a custom callable).
    """
    init = get_initializer(name)
    dtype = check_float_dtype("dtype", dtype)
    return init(tuple(shape), as_rng(rng), dtype, **kwargs)
