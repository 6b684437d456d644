"""The layer protocol: ``forward``/``backward`` over named parameters and gradients.

A layer holds ``params`` and ``grads`` (dicts of arrays with equal shapes) and caches
what its backward pass needs during ``forward``.  ``backward(g)`` receives the gradient
of the loss with respect to the layer's output, fills ``grads`` and returns the gradient
with respect to its input (Eq. 3.24's g_i = J^T g_{i+1} for a layer with Jacobian J).
"""

import numpy as np

from ..backend import get_backend
from ..backend.arrays import to_host


class Layer:
    """Base class: subclasses set ``params``/``grads`` and implement forward/backward."""

    def __init__(self, name=None):
        self.name = name or type(self).__name__
        self.params: dict = {}
        self.grads: dict = {}
        self.training = True
        # Sequential turns this off for all but its first layer: one finiteness pass per
        # batch at the model's input is enough, and it is not free.
        self.check_finite = True

    #: what ``forward`` keeps for the backward pass; None until a forward pass has run
    _cache = None
    #: added to the error raised when backward runs without a cache
    _no_cache_hint = ""

    def forward(self, x, train=True):
        raise NotImplementedError

    def backward(self, g, need_dx=True):
        """The gradient with respect to the input; fills ``grads`` on the way.

        Checks that a forward pass left its cache, then runs the subclass's ``_backward``.
        """
        if self._cache is None:
            raise RuntimeError(f"{self.name}: backward called before forward{self._no_cache_hint}")
        return self._backward(g, need_dx)

    def _backward(self, g, need_dx):
        raise NotImplementedError(f"{type(self).__name__} has no backward pass")

    def children(self):
        """The layers directly inside this one (none for a plain layer)."""
        return ()

    def modules(self):
        """This layer and every layer inside it, depth first, in network order (as
        PyTorch's ``Module.modules``); ``[m for m in net.modules() if not m.children()]``
        lists the leaf layers a batch flows through."""
        yield self
        for child in self.children():
            yield from child.modules()

    def __call__(self, x, train=True):
        return self.forward(x, train=train)

    def named_parameters(self, prefix=""):
        """(qualified name, layer, key) for every parameter, e.g. ('0.W', layer, 'W')."""
        return [(f"{prefix}{k}", self, k) for k in self.params]

    def to(self, backend):
        """Move parameters and gradients to ``backend``'s arrays ('numpy', 'cpu', 'cuda')."""
        be = get_backend(backend)
        for d in (self.params, self.grads):
            for k, v in d.items():
                d[k] = be.asarray(to_host(v))
        return self

    def zero_grad(self):
        be = get_backend()
        for v in self.grads.values():
            be.fill(v, 0.0)

    def __repr__(self):
        shapes = ", ".join(f"{k}{tuple(v.shape)}" for k, v in self.params.items())
        return f"{self.name}({shapes})"


def check_input(layer, x, width=None):
    """Raise a clear error for a batch that is not 2-D, has the wrong width, is not a
    float array, or (on the host) holds NaN or inf.

    Integer, boolean, complex and float16 batches are rejected (a TypeError naming the
    layer), not converted: the kernels would truncate them (an integer sigmoid is all
    zeros) and a silent copy would hide the cost from the caller.  Convert first, e.g.
    ``x.astype(np.float64)`` (or the layer's parameter dtype).
    """
    if not hasattr(x, "shape") or len(x.shape) != 2:
        shape = getattr(x, "shape", None)
        raise ValueError(
            f"{layer.name}: expected a 2-D batch of shape (n, {width if width else 'd'}), "
            f"got {'shape ' + str(shape) if shape is not None else type(x).__name__}"
        )
    if width is not None and x.shape[1] != width:
        raise ValueError(
            f"{layer.name}: input has {x.shape[1]} features per row (shape {tuple(x.shape)}) "
            f"but the layer expects {width}"
        )
    from ..errors import check_float_array

    check_float_array(layer.name, "the input batch", x)
    if (getattr(layer, "check_finite", True) and isinstance(x, np.ndarray)
            and x.dtype.kind == "f" and not np.isfinite(x).all()):
        raise ValueError(f"{layer.name}: input batch contains NaN or inf")
