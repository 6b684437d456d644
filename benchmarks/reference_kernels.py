"""The cpu backend's kernels called directly: the same MLP step with no layer, loss or optimizer objects.

This is the yardstick for ddlib's own overhead.  It runs the very kernels a
``Sequential`` training step runs (fused linear + activation, fused activation backward
+ bias gradient, softmax cross-entropy, momentum), in a straight line of Python with
every buffer prepared in advance.  The gap between it and ``train_step`` is what the
object structure (layers, loss, optimizer, checks) costs; the gap between it and the
matrix products alone is what the non-BLAS work costs.
"""

import numpy as np

from ddlib.backend import get_backend


class KernelsMLP:
    def __init__(self, sizes, seed=0, dtype=np.float32, lr=1e-3, beta=0.9):
        rng = np.random.default_rng(seed)
        self.W = [rng.normal(0, np.sqrt(2.0 / a), size=(a, b)).astype(dtype)
                  for a, b in zip(sizes[:-1], sizes[1:])]
        self.b = [np.zeros(b, dtype=dtype) for b in sizes[1:]]
        self.params = self.W + self.b
        self.vel = [np.zeros_like(p) for p in self.params]
        self.grads = [np.zeros_like(p) for p in self.params]
        self.lr, self.beta = lr, beta
        self.be = get_backend("cpu")

    def step(self, x, y):
        be, L = self.be, len(self.W)
        gW, gb = self.grads[:L], self.grads[L:]
        hs, zs = [x], []
        for i in range(L - 1):
            z, h = be.linear_act("relu", hs[-1], self.W[i], self.b[i])
            zs.append(z)
            hs.append(h)
        scores = be.linear(hs[-1], self.W[-1], self.b[-1])
        loss, p = be.softmax_xent(scores, y)
        g = be.softmax_xent_backward(p, y)
        be.col_sum(g, out=gb[-1])
        for i in range(L - 1, -1, -1):
            be.matmul(hs[i].T, g, out=gW[i])
            if i > 0:
                g, _ = be.act_backward_colsum("relu", zs[i - 1], hs[i], be.matmul(g, self.W[i].T),
                                              db=gb[i - 1])
        for w, v, gr in zip(self.params, self.vel, self.grads):
            be.momentum_step(w, v, gr, self.lr, self.beta)
        return loss
