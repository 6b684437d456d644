"""Activation layers (Sec. 3.2.5, Table 3.1): elementwise f with backward g * f'(x)."""

from ..backend import get_backend
from .base import Layer, check_input


def activation_forward(kind, x, alpha=0.01, be=None):
    """y = f(x); returns (y, cache)."""
    be = be or get_backend()
    y = be.act_forward(kind, x, alpha)
    return y, (x, y)


def activation_backward(kind, g, cache, alpha=0.01, be=None):
    """dx = g * f'(x) (the derivative is read off the cached input and output)."""
    be = be or get_backend()
    x, y = cache
    return be.act_backward(kind, x, y, g, alpha)


class Activation(Layer):
    """An elementwise activation named ``kind`` (one of ``backend ACTIVATIONS``)."""

    kind = "identity"

    def __init__(self, kind=None, alpha=0.01, name=None):
        super().__init__(name)
        if kind is not None:
            self.kind = kind
        from ..backend.numpy_ref.core import ACTIVATIONS

        if self.kind not in ACTIVATIONS:
            raise ValueError(f"kind={self.kind!r}: expected one of {ACTIVATIONS}")
        self.alpha = alpha
        self._cache = None

    def forward(self, x, train=True):
        check_input(self, x)
        y, self._cache = activation_forward(self.kind, x, self.alpha)
        return y

    def _backward(self, g, need_dx=True):
        return activation_backward(self.kind, g, self._cache, self.alpha)

    # R-operator passes (see ``Linear.r_forward``); an activation has no parameters

    def r_forward(self, cache, rx, v):
        """R{y} = f'(z) R{z}; None when the input does not depend on the parameters."""
        if rx is None:
            return None, None
        z, y = cache
        return get_backend().act_backward(self.kind, z, y, rx, self.alpha), rx

    def r_backward(self, cache, rcache, g, rg, v, hv, need_dx=True, gauss_newton=False):
        """R{dz} = f'(z) R{g} + g f''(z) R{z} (the second term dropped for Gauss-Newton,
        and zero for the piecewise-linear activations)."""
        if not need_dx:
            return None
        be = get_backend()
        z, y = cache
        rdz = be.act_backward(self.kind, z, y, rg, self.alpha)
        if not gauss_newton and rcache is not None and self.kind in _CURVED:
            be.axpy(rdz, 1.0, be.act_second(self.kind, z, y, g, rcache, self.alpha))
        return rdz

    def __repr__(self):
        return f"{self.name}()"


#: activations with a nonzero second derivative (the others are piecewise linear)
_CURVED = frozenset({"sigmoid", "tanh"})


class Identity(Activation):
    kind = "identity"


class Sigmoid(Activation):
    """sigma(x) = 1 / (1 + e^-x); derivative o (1 - o)."""

    kind = "sigmoid"


class Tanh(Activation):
    """tanh(x); derivative 1 - o^2."""

    kind = "tanh"


class ReLU(Activation):
    """max(0, x); passes the gradient where x > 0."""

    kind = "relu"


class LeakyReLU(Activation):
    """x for x > 0, alpha x otherwise (Sec. 3.4.3.1)."""

    kind = "leaky_relu"

    def __init__(self, alpha=0.01, name=None):
        super().__init__(alpha=alpha, name=name)


class HardTanh(Activation):
    """max(min(x, 1), -1); passes the gradient where -1 < x < 1."""

    kind = "hardtanh"


ACTIVATION_LAYERS = {
    "identity": Identity,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "hardtanh": HardTanh,
}
