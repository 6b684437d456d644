"""A straightforward NumPy MLP training step: the yardstick the ddlib backends are timed against.

Written the way a careful NumPy user would: matrix products through ``@``, elementwise
work as whole-array expressions, momentum SGD as two in-place updates per parameter.
"""

import numpy as np


class NumpyMLP:
    def __init__(self, sizes, seed=0, dtype=np.float32):
        rng = np.random.default_rng(seed)
        self.W = [(rng.normal(0, np.sqrt(2.0 / a), size=(a, b))).astype(dtype)
                  for a, b in zip(sizes[:-1], sizes[1:])]
        self.b = [np.zeros(b, dtype=dtype) for b in sizes[1:]]
        self.vW = [np.zeros_like(w) for w in self.W]
        self.vb = [np.zeros_like(b) for b in self.b]

    def step(self, x, y, lr=0.01, beta=0.9):
        # forward: ReLU hidden layers, softmax cross-entropy output
        hs = [x]
        zs = []
        h = x
        last = len(self.W) - 1
        for i, (W, b) in enumerate(zip(self.W, self.b)):
            z = h @ W + b
            zs.append(z)
            h = np.maximum(z, 0) if i < last else z
            hs.append(h)
        z = zs[-1]
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        p = e / e.sum(axis=1, keepdims=True)
        n = x.shape[0]
        loss = -np.log(p[np.arange(n), y]).mean()
        # backward
        g = p
        g[np.arange(n), y] -= 1
        g /= n
        for i in range(last, -1, -1):
            gW = hs[i].T @ g
            gb = g.sum(axis=0)
            if i > 0:
                g = (g @ self.W[i].T) * (zs[i - 1] > 0)
            # momentum: v <- beta v - lr grad; W <- W + v
            self.vW[i] *= beta
            self.vW[i] -= lr * gW
            self.W[i] += self.vW[i]
            self.vb[i] *= beta
            self.vb[i] -= lr * gb
            self.b[i] += self.vb[i]
        return float(loss)
