"""Parameters as one flat vector and back (what jax calls ``ravel_pytree``).

The function-level methods (``minimize``, ``linear_cg``) work on vectors; a network keeps
its parameters as a dict of arrays by qualified name.  ``Flattener`` records the names,
shapes and dtypes once and converts both ways, always through host float64 vectors.

>>> import numpy as np
>>> f = Flattener({"0.W": np.zeros((2, 3)), "0.b": np.zeros(3)})
>>> f.size
9
>>> f.unflatten(np.arange(9.0))["0.b"]
array([6., 7., 8.])
"""

from __future__ import annotations

import numpy as np

from ...backend import get_backend
from ...backend.arrays import assign, is_array, is_device, to_host


class Flattener:
    """Converts between ``{name: array}`` trees shaped like ``params`` and flat vectors.

    params: a dict of arrays (host or device); only names, shapes and dtypes are kept.
    """

    def __init__(self, params: dict):
        if not isinstance(params, dict) or not params:
            raise ValueError("Flattener needs a non-empty dict of parameter arrays")
        self.names = list(params)
        self.shapes = [tuple(params[n].shape) for n in self.names]
        self.dtypes = [np.dtype(params[n].dtype) for n in self.names]
        self.device = is_device(next(iter(params.values())))
        sizes = [int(np.prod(s)) for s in self.shapes]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        self.size = int(self.offsets[-1])

    def flatten(self, tree: dict, dtype=np.float64) -> np.ndarray:
        """One host vector of ``dtype`` holding every array of ``tree`` in order."""
        self.check_tree(tree, "tree")
        out = np.empty(self.size, dtype=dtype)
        for i, n in enumerate(self.names):
            out[self.offsets[i]:self.offsets[i + 1]] = to_host(tree[n]).reshape(-1)
        return out

    def unflatten(self, vec, like=None) -> dict:
        """Arrays shaped like the parameters, in their dtypes, from a vector of ``size``.

        Host arrays, or device arrays when the parameters were on the GPU (or ``like``, a
        tree, says so)."""
        vec = self.check_vector(vec, "vector")
        device = self.device if like is None else is_device(next(iter(like.values())))
        out = {}
        for i, n in enumerate(self.names):
            a = vec[self.offsets[i]:self.offsets[i + 1]].reshape(self.shapes[i])
            a = np.ascontiguousarray(a, dtype=self.dtypes[i])
            out[n] = get_backend("cuda").asarray(a) if device else a
        return out

    def assign(self, tree: dict, vec) -> None:
        """Write the vector's entries into the arrays of ``tree`` in place."""
        vec = self.check_vector(vec, "vector")
        self.check_tree(tree, "tree")
        for i, n in enumerate(self.names):
            a = vec[self.offsets[i]:self.offsets[i + 1]].reshape(self.shapes[i])
            assign(tree[n], a)

    def check_vector(self, vec, name):
        if not is_array(vec) and not isinstance(vec, (list, tuple)):
            raise TypeError(f"{name} must be an array of {self.size} entries, "
                            f"got {type(vec).__name__}")
        v = to_host(vec) if is_device(vec) else np.asarray(vec)
        if v.ndim != 1 or v.size != self.size:
            raise ValueError(f"{name} must be a 1-D array of {self.size} entries (one per "
                             f"parameter entry), got shape {v.shape}")
        if v.dtype.kind not in "fiu":
            raise TypeError(f"{name} must hold real numbers, got dtype {v.dtype}")
        return v

    def check_tree(self, tree, name):
        if not isinstance(tree, dict):
            raise TypeError(f"{name} must be a dict keyed by {self.names}, got "
                            f"{type(tree).__name__}")
        missing, extra = set(self.names) - set(tree), set(tree) - set(self.names)
        if missing or extra:
            raise ValueError(f"{name}: missing {sorted(missing)}, unexpected {sorted(extra)}")
        for n, shape in zip(self.names, self.shapes):
            if tuple(tree[n].shape) != shape:
                raise ValueError(f"{name}[{n!r}] has shape {tuple(tree[n].shape)}, "
                                 f"expected {shape}")
