"""Shared weights (Sec. 3.2.9): a tied-weight autoencoder whose decoder uses W^T.

One matrix W (d_in, d_hidden) appears twice: the encoder computes h = f(x W + b) and the
decoder x_hat = g(h W^T + c).  Backpropagation treats the two appearances as if they
were separate weights and adds their gradients:

    dL/dW = x^T delta_enc  +  (h^T delta_dec)^T

where the first term is the encoder copy's gradient and the second the decoder copy's
(transposed back to W's shape).  ``grad_copies`` keeps both terms from the last
backward pass, so the sum can be checked and shown.

The matrix products run on the current backend through ``linear_forward`` /
``linear_backward``; on the cuda backend the final sum of the two copies is done on the
host (``be.to_numpy`` / ``be.asarray``), as there is no elementwise-add kernel.
"""

import numpy as np

from ..backend import get_backend
from ..errors import check_int
from ..init import as_rng, initialize
from .activations import ACTIVATION_LAYERS
from .base import Layer, check_input
from .containers import Sequential
from .linear import Linear, linear_backward, linear_forward

__all__ = ["TiedAutoencoder"]


def _activation(kind):
    if kind not in ACTIVATION_LAYERS:
        raise ValueError(f"activation {kind!r}: expected one of {sorted(ACTIVATION_LAYERS)}")
    return ACTIVATION_LAYERS[kind]()


class TiedAutoencoder(Layer):
    """x -> f(x W + b) -> [code layers] -> g(h W^T + c), with one W shared by both halves.

    Parameters: W (d_in, d_hidden), b (d_hidden,), c (d_in,).  ``code_layers`` are layers
    applied to the code h before decoding (for example a ``HiddenLoss`` sparsity tap); they
    must keep h's shape.  Output shape equals input shape, so train it with ``MSE`` against
    the input itself.

    >>> import numpy as np
    >>> ae = TiedAutoencoder(6, 2, rng=0)
    >>> ae(np.ones((3, 6))).shape
    (3, 6)
    >>> sorted(ae.params)
    ['W', 'b', 'c']
    """

    def __init__(self, d_in, d_hidden, activation="sigmoid", out_activation="identity",
                 code_layers=(), init="xavier_uniform", rng=None, dtype=np.float64, name=None):
        super().__init__(name)
        self.d_in = check_int("d_in", d_in)
        self.d_hidden = check_int("d_hidden", d_hidden)
        rng = as_rng(rng)
        self.params["W"] = initialize(init, (d_in, d_hidden), rng, dtype)
        self.params["b"] = np.zeros(d_hidden, dtype=dtype)
        self.params["c"] = np.zeros(d_in, dtype=dtype)
        for k, v in self.params.items():
            self.grads[k] = np.zeros_like(v)
        self.encoder_act = _activation(activation)
        self.decoder_act = _activation(out_activation)
        for i, layer in enumerate(code_layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"{self.name}: code_layers[{i}] is a {type(layer).__name__}, "
                                "not a Layer")
        self.code_layers = list(code_layers)
        self.grad_copies = {}
        self._cache = None

    def children(self):
        """The parameter-free layers inside (so ``hidden_losses`` finds the code taps)."""
        return (self.encoder_act, *self.code_layers, self.decoder_act)

    def encode(self, x, train=True):
        """The code h = f(x W + b), (n, d_hidden)."""
        check_input(self, x, self.d_in)
        a, enc_cache = linear_forward(x, self.params["W"], self.params["b"])
        h = self.encoder_act.forward(a, train=train)
        for layer in self.code_layers:
            h = layer.forward(h, train=train)
        if tuple(h.shape) != (x.shape[0], self.d_hidden):
            raise ValueError(f"{self.name}: code layers changed the code's shape to "
                             f"{tuple(h.shape)}, expected {(x.shape[0], self.d_hidden)}")
        return h, enc_cache

    def decode(self, h, train=True):
        """The reconstruction g(h W^T + c), (n, d_in); returns it and the decoder cache."""
        a, dec_cache = linear_forward(h, self.params["W"].T, self.params["c"])
        return self.decoder_act.forward(a, train=train), dec_cache

    def forward(self, x, train=True):
        h, enc_cache = self.encode(x, train=train)
        out, dec_cache = self.decode(h, train=train)
        self._cache = (enc_cache, dec_cache)
        return out

    def _backward(self, g, need_dx=True):
        enc_cache, dec_cache = self._cache
        n = enc_cache[0].shape[0]
        if tuple(g.shape) != (n, self.d_in):
            raise ValueError(f"{self.name}: upstream gradient has shape {tuple(g.shape)}, "
                             f"expected the reconstruction's shape {(n, self.d_in)}")
        be = get_backend()
        g = self.decoder_act.backward(g)
        # the decoder copy of W is W^T: its gradient has W^T's shape (d_hidden, d_in)
        dh, dW_dec, _ = linear_backward(g, dec_cache, db=self.grads["c"])
        for layer in reversed(self.code_layers):
            dh = layer.backward(dh)
        dh = self.encoder_act.backward(dh)
        dx, dW_enc, _ = linear_backward(dh, enc_cache, db=self.grads["b"], need_dx=need_dx)
        if be.name == "cuda":
            enc, dec = be.to_numpy(dW_enc), be.to_numpy(dW_dec).T
            self.grads["W"] = be.asarray(enc + dec)
        else:
            enc, dec = dW_enc, dW_dec.T
            np.add(enc, dec, out=self.grads["W"])
        self.grad_copies = {"encoder": enc, "decoder": dec}
        return dx

    def zero_grad(self):
        super().zero_grad()
        self.grad_copies = {}

    def untied(self):
        """An equivalent ``Sequential`` whose decoder holds its own copy of W^T.

        Same outputs as this model; the gradients of its two weight matrices are the two
        copies whose sum is this model's dL/dW.  Only for host (numpy/cpu) parameters.
        """
        be = get_backend()
        W = be.to_numpy(self.params["W"]) if be.name == "cuda" else self.params["W"]
        d_in, d_h = W.shape
        enc = Linear(d_in, d_h, dtype=W.dtype)
        dec = Linear(d_h, d_in, dtype=W.dtype)
        enc.params["W"][...] = W
        dec.params["W"][...] = W.T
        for layer, key in ((enc, "b"), (dec, "c")):
            v = self.params[key]
            layer.params["b"][...] = be.to_numpy(v) if be.name == "cuda" else v
        act_e = type(self.encoder_act)()
        act_d = type(self.decoder_act)()
        return Sequential(enc, act_e, *self.code_layers, dec, act_d)

    def __repr__(self):
        return (f"{self.name}(d_in={self.d_in}, d_hidden={self.d_hidden}, "
                f"{self.encoder_act.name} / {self.decoder_act.name}, W shared)")
