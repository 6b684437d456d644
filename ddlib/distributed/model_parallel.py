"""Model parallelism (Sec. 3.7.2): one hidden layer split across Ray actors.

A net x -> act(x W1 + b1) -> a W2 + b2 has two matrices that grow with the hidden width
h.  Split the h hidden units into K blocks: actor k holds the columns of W1 and b1 for
its units and the matching rows of W2 (a block of each matrix), so no actor ever holds a
whole one.  One training step then needs only these messages:

* forward: the batch x goes to every actor; each returns its partial output
  ``z_k = act(x W1[:, k] + b1[k]) W2[k, :]`` (n x d_out numbers), and the driver adds
  them up with b2: ``z = sum_k z_k + b2``;
* backward: the driver computes the loss and dz = dL/dz and sends dz to every actor,
  which has all it needs for its block's gradients (``a_k^T dz`` for W2's rows,
  ``x^T ((dz W2[k, :]^T) * act'(.))`` for W1's columns) and applies its own update;
  b2's update stays with the driver.

The hidden activations never leave their actor; what travels grows with the batch and
the input and output widths, not with h.  ``ModelParallelNet.comm`` counts the bytes of
arrays each actor receives (``sent``: x and dz, once per actor, as they would cross the
network to actors on different machines) and sends back (``received``: the partial
outputs).  Every block is updated by the same rule a single-process net
would use (each ``Optimizer`` sees only its block), so K actors compute what one
process computes (a test compares them).  Each actor is a plain ddlib ``Sequential``
(a Linear, the activation, a bias-free Linear) on the numpy backend in float64.
"""

from __future__ import annotations

import numpy as np

from ..errors import check_int
from .engine import require_ray


class _Block:
    """An actor's share: Linear(d_in, h_k) -> act -> Linear(h_k, d_out, no bias)."""

    def __init__(self, W1, b1, W2, activation, rule_name, lr):
        from .. import layers, optim

        lin1 = layers.Linear(W1.shape[0], W1.shape[1], dtype=np.float64)
        lin2 = layers.Linear(W2.shape[0], W2.shape[1], bias=False, dtype=np.float64)
        lin1.params["W"][...], lin1.params["b"][...] = W1, b1
        lin2.params["W"][...] = W2
        self.net = layers.Sequential([lin1, layers.ACTIVATION_LAYERS[activation](), lin2])
        self.opt = optim.Optimizer(self.net, getattr(optim, rule_name)(lr), fused=False)

    def forward(self, x):
        from ..backend import use_backend

        with use_backend("numpy"):
            return self.net.forward(x, train=True)

    def backward_and_step(self, dz):
        from ..backend import use_backend

        with use_backend("numpy"):
            self.net.backward(dz, need_dx=False)
            self.opt.step()
        return True

    def weights(self):
        lin1, _, lin2 = self.net.layers
        return (np.array(lin1.params["W"]), np.array(lin1.params["b"]),
                np.array(lin2.params["W"]))


def _nbytes(*arrays):
    return int(sum(np.asarray(a).nbytes for a in arrays))


class ModelParallelNet:
    """A one-hidden-layer net whose hidden units are split over ``k`` Ray actors.

    ``ModelParallelNet.from_net(net, k)`` splits an existing ``mlp([d_in, h, d_out])``;
    ``step(x, y)`` runs one training step (softmax cross-entropy) and returns the loss;
    ``to_net()`` gathers the blocks back into one ordinary net; ``comm`` holds the bytes
    sent to and received from the actors so far; ``release()`` stops the actors.
    """

    def __init__(self, W1, b1, W2, b2, k, activation="relu", rule="sgd", lr=0.1):
        from .. import losses, optim

        ray = require_ray()
        k = check_int("k", k)
        h = W1.shape[1]
        if k > h:
            raise ValueError(f"k={k} actors for {h} hidden units: each needs at least one")
        self.activation, self.rule, self.lr = activation, rule, lr
        self.blocks = np.array_split(np.arange(h), k)
        cls = ray.remote(num_cpus=0)(_Block)
        self.actors = [cls.remote(W1[:, idx], b1[idx], W2[idx, :], activation, rule, lr)
                       for idx in self.blocks]
        self.b2 = np.array(b2, dtype=np.float64)
        self._b2_grad = np.zeros_like(self.b2)
        holder = _Bias(self.b2, self._b2_grad)
        self._opt_b2 = optim.Optimizer(holder, getattr(optim, rule)(lr), fused=False)
        self.loss = losses.SoftmaxCrossEntropy()
        self.comm = {"sent": 0, "received": 0, "steps": 0}

    @classmethod
    def from_net(cls, net, k, rule="sgd", lr=0.1):
        from ..layers import Linear

        lins = [m for m in net.layers if isinstance(m, Linear)]
        acts = [m for m in net.layers if not isinstance(m, Linear)]
        if len(lins) != 2 or len(acts) != 1 or len(net.layers) != 3:
            raise ValueError("from_net needs a one-hidden-layer net: Linear, activation, "
                             f"Linear; got {[type(m).__name__ for m in net.layers]}")
        name = _activation_name(acts[0])
        l1, l2 = lins
        return cls(np.array(l1.params["W"], np.float64), np.array(l1.params["b"], np.float64),
                   np.array(l2.params["W"], np.float64), np.array(l2.params["b"], np.float64),
                   k, activation=name, rule=rule, lr=lr)

    def step(self, x, y):
        """One training step on (x, y); returns the batch loss."""
        from ..backend import use_backend

        ray = require_ray()
        x = np.ascontiguousarray(x, dtype=np.float64)
        x_ref = ray.put(x)          # one copy in the object store, read by every actor
        parts = ray.get([a.forward.remote(x_ref) for a in self.actors])
        self.comm["sent"] += len(self.actors) * _nbytes(x)   # every actor reads x
        self.comm["received"] += _nbytes(*parts)
        z = np.sum(parts, axis=0) + self.b2
        with use_backend("numpy"):
            value = self.loss.forward(z, y)
            dz = np.array(self.loss.backward())
        if not np.isfinite(value):
            from ..errors import DivergenceError

            raise DivergenceError(self.comm["steps"], value)
        dz_ref = ray.put(dz)
        ray.get([a.backward_and_step.remote(dz_ref) for a in self.actors])
        self.comm["sent"] += len(self.actors) * _nbytes(dz)
        self._b2_grad[...] = dz.sum(axis=0)
        with use_backend("numpy"):
            self._opt_b2.step()
        self.comm["steps"] += 1
        return float(value)

    def to_net(self):
        """The blocks gathered into one ``mlp([d_in, h, d_out])`` (float64)."""
        from .. import layers

        ray = require_ray()
        got = ray.get([a.weights.remote() for a in self.actors])
        W1 = np.concatenate([g[0] for g in got], axis=1)
        b1 = np.concatenate([g[1] for g in got])
        W2 = np.concatenate([g[2] for g in got], axis=0)
        net = layers.mlp([W1.shape[0], W1.shape[1], W2.shape[1]],
                         activation=self.activation, dtype=np.float64)
        net.layers[0].params["W"][...], net.layers[0].params["b"][...] = W1, b1
        net.layers[2].params["W"][...], net.layers[2].params["b"][...] = W2, self.b2
        return net

    def release(self):
        ray = require_ray()
        for a in self.actors:
            ray.kill(a, no_restart=True)
        self.actors = []


class _Bias:
    """b2 as a one-parameter model, so the driver's update uses the same Optimizer."""

    def __init__(self, b, g):
        self.params = {"b": b}
        self.grads = {"b": g}
        self.name = "output bias"

    def named_parameters(self):
        return [("b", self, "b")]


def _activation_name(layer):
    from ..layers import ACTIVATION_LAYERS

    for name, cls in ACTIVATION_LAYERS.items():
        if type(layer) is cls:
            return name
    raise ValueError(f"unknown activation layer {type(layer).__name__}")
