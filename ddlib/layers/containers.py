"""Sequential: layers applied in order, gradients passed back in reverse."""

import numpy as np

from ..backend import get_backend
from ..backend.arrays import assign, is_array, to_host, tree_to_host
from ..init import as_rng
from .activations import ACTIVATION_LAYERS, Activation
from .base import Layer, check_input
from .linear import Linear, linear_backward

#: Activation layer classes a preceding Linear fuses with (exact types, not subclasses).
_FUSABLE = frozenset(ACTIVATION_LAYERS.values()) | {Activation}


def _overridden(layer):
    """True when forward or backward was replaced on the instance (e.g. by a monitor)."""
    d = layer.__dict__
    return "forward" in d or "backward" in d


class Sequential(Layer):
    """Chain of layers; parameter names are '<index>.<name>' as in PyTorch ('0.W', '2.b').

    A ``Linear`` followed by an activation layer runs as one fused step (``fuse=True``,
    the default): the bias add and the activation share one pass over the batch, and the
    activation's backward rule shares one with the bias gradient (backend kernels
    ``linear_act`` and ``act_backward_colsum``).  Both layers still hold exactly the
    caches and gradients they would hold on their own, and the numbers are the same bits;
    only the memory traffic shrinks.  A layer whose ``forward``/``backward`` was replaced on
    the instance (a monitor's wrapper, say) is never fused, so the replacement runs.

    >>> import numpy as np
    >>> net = mlp([4, 8, 3], activation="relu", rng=0)
    >>> net(np.zeros((2, 4))).shape
    (2, 3)
    """

    def __init__(self, *layers, name=None, fuse=True):
        super().__init__(name)
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"Sequential: item {i} is a {type(layer).__name__}, not a Layer")
        self.layers = list(layers)
        self.fuse = bool(fuse)
        for i, layer in enumerate(self.layers):
            layer.check_finite = i == 0

    def _pair(self, i):
        """True when layers i, i + 1 are a plain Linear (with bias) and a plain activation."""
        if i + 1 >= len(self.layers):
            return False
        lin, act = self.layers[i], self.layers[i + 1]
        return (type(lin) is Linear and lin.use_bias and type(act) in _FUSABLE
                and not _overridden(lin) and not _overridden(act))

    def forward(self, x, train=True):
        layers, n, i = self.layers, len(self.layers), 0
        while i < n:
            if self.fuse and self._pair(i):
                lin, act = layers[i], layers[i + 1]
                check_input(lin, x, lin.d_in)
                W = lin.params["W"]
                z, y = get_backend().linear_act(act.kind, x, W, lin.params["b"], act.alpha)
                lin._cache, act._cache = (x, W), (z, y)  # what each layer's forward keeps
                x, i = y, i + 2
            else:
                x, i = layers[i].forward(x, train=train), i + 1
        return x

    def backward(self, g, need_dx=True):
        layers, i = self.layers, len(self.layers) - 1
        while i >= 0:
            if (self.fuse and i > 0 and self._pair(i - 1)
                    and layers[i]._cache is not None and layers[i - 1]._cache is not None):
                lin, act = layers[i - 1], layers[i]
                z, y = act._cache
                dz, _ = get_backend().act_backward_colsum(act.kind, z, y, g, act.alpha,
                                                          db=lin.grads["b"])
                g, _, _ = linear_backward(dz, lin._cache, dW=lin.grads["W"],
                                          need_dx=need_dx or i > 1, with_bias=False)
                i -= 2
            else:
                g, i = layers[i].backward(g, need_dx=need_dx or i > 0), i - 1
        return g

    def children(self):
        return tuple(self.layers)

    def named_parameters(self, prefix=""):
        out = []
        for i, layer in enumerate(self.layers):
            out.extend(layer.named_parameters(f"{prefix}{i}."))
        return out

    @property
    def params(self):
        return {n: layer.params[k] for n, layer, k in self.named_parameters()}

    @params.setter
    def params(self, value):  # Layer.__init__ assigns an empty dict
        if value:
            raise AttributeError("Sequential.params is derived from its layers")

    @property
    def grads(self):
        return {n: layer.grads[k] for n, layer, k in self.named_parameters()}

    @grads.setter
    def grads(self, value):
        if value:
            raise AttributeError("Sequential.grads is derived from its layers")

    def to(self, backend):
        for layer in self.layers:
            layer.to(backend)
        return self

    def zero_grad(self):
        for layer in self.layers:
            layer.zero_grad()

    def named_buffers(self, prefix=""):
        """(qualified name, layer, key) for non-trained state such as BN's running statistics."""
        out = []
        for i, layer in enumerate(self.layers):
            if isinstance(layer, Sequential):
                out.extend(layer.named_buffers(f"{prefix}{i}."))
            else:
                out.extend((f"{prefix}{i}.{k}", layer, k) for k in getattr(layer, "buffers", {}))
        return out

    def _entries(self):
        return ([(n, layer.params, k) for n, layer, k in self.named_parameters()]
                + [(n, layer.buffers, k) for n, layer, k in self.named_buffers()])

    def state_dict(self):
        """Host copies of every parameter and buffer, keyed by qualified name."""
        return {n: tree_to_host(store[k]) for n, store, k in self._entries()}

    def load_state_dict(self, state):
        """Copy parameters and buffers from ``state`` (names and shapes must match)."""
        entries = self._entries()
        names = {n for n, _, _ in entries}
        missing, extra = names - set(state), set(state) - names
        if missing or extra:
            raise KeyError(f"load_state_dict: missing {sorted(missing)}, unexpected {sorted(extra)}")
        # check every entry before assigning any, so a bad state changes nothing
        values = []
        for n, store, k in entries:
            cur = store[k]
            v = to_host(state[n]) if is_array(state[n]) else np.asarray(state[n])
            if v.shape != tuple(cur.shape):
                raise ValueError(f"load_state_dict: {n} has shape {v.shape}, expected {tuple(cur.shape)}")
            want = np.dtype(cur.dtype).kind
            if np.dtype(v.dtype).kind != want and not (want == "f" and v.dtype.kind in "iu"):
                raise TypeError(f"load_state_dict: {n} has dtype {v.dtype}, expected "
                                f"{cur.dtype} (or another {'float' if want == 'f' else 'integer'}"
                                f" dtype, cast on assignment)")
            values.append((cur, v))
        for cur, v in values:
            assign(cur, v)
        return self

    def __len__(self):
        return len(self.layers)

    def __getitem__(self, i):
        return self.layers[i]

    def __repr__(self):
        inner = ",\n  ".join(repr(layer) for layer in self.layers)
        return f"Sequential(\n  {inner}\n)"


def check_mlp_args(sizes, activation, init):
    """Validate an MLP's widths and activation; return ``init`` or its default for them
    (He/Kaiming for ReLU-like activations, Xavier otherwise)."""
    if len(sizes) < 2:
        raise ValueError(f"sizes must list at least an input and an output width, got {sizes}")
    if activation not in ACTIVATION_LAYERS:
        raise ValueError(f"activation={activation!r}: expected one of {sorted(ACTIVATION_LAYERS)}")
    if init is None:
        init = "kaiming_normal" if activation in ("relu", "leaky_relu") else "xavier_normal"
    return init


def mlp(sizes, activation="relu", init=None, rng=None, dtype=np.float64, alpha=0.01):
    """A fully connected net: Linear layers of ``sizes`` with ``activation`` between them.

    ``init`` defaults to He/Kaiming for ReLU-like activations and Xavier otherwise.
    """
    init = check_mlp_args(sizes, activation, init)
    rng = as_rng(rng)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Linear(a, b, init=init, rng=rng, dtype=dtype))
        if i < len(sizes) - 2:
            cls = ACTIVATION_LAYERS[activation]
            layers.append(cls(alpha=alpha) if activation == "leaky_relu" else cls())
    return Sequential(layers)
