"""Sparse inference for pruned layers (Sec. 3.7.3): a CSR container and a layer built on it.

After pruning (``prune``), most of a weight matrix is exactly zero, and a dense product
still multiplies by every zero.  Compressed sparse row (CSR) storage keeps only the
survivors: ``data`` holds them row by row, ``indices`` their column numbers and
``indptr[r]:indptr[r+1]`` the slice of row r.  A product then costs one multiply-add per
survivor instead of one per entry.

``CSR`` stores a matrix of shape (rows, cols).  For a layer it stores W^T, whose rows are
the layer's output units, so that ``SparseLinear`` computes ``x W + b`` as the backend
kernel ``csr_matmul`` (x A^T + b with A = W^T) does.  ``sparsify(model)`` returns a copy
of a model whose pruned ``Linear`` layers have become ``SparseLinear`` ones.  The sparse
layer is for inference: train (and retrain) the masked dense layer, then sparsify.

``sparsify(model, fuse=True)`` goes one step further for a plain chain of ``Linear`` and
activation layers: one ``SparseChain`` layer that runs the whole net as one backend call
(``csr_chain``).  At batch 1 a layer-by-layer forward spends more time passing between
layers than multiplying the few thousand surviving weights; the chain does not.

>>> import numpy as np
>>> from ddlib.layers import Linear
>>> from ddlib.compress import prune
>>> layer = Linear(4, 3, rng=0)
>>> _ = prune.l1_unstructured(layer, "W", amount=0.5)
>>> sl = SparseLinear.from_linear(layer)
>>> sl.csr.nnz, sl.csr.shape
(6, (3, 4))
>>> x = np.ones((2, 4))
>>> bool(np.allclose(sl(x), layer(x)))
True
"""

from __future__ import annotations

import copy

import numpy as np

from ..backend import get_backend
from ..backend.arrays import to_host
from ..backend.numpy_ref.sparse import check_csr_content, pack_chain
from ..layers.activations import ACTIVATION_LAYERS, Activation
from ..layers.base import Layer, check_input
from ..layers.linear import Linear
from .prune import get_mask

__all__ = ["CSR", "SparseLinear", "SparseChain", "sparsify"]


def _index_dtype(n):
    """int32 indices when every number fits (half the bytes), int64 otherwise."""
    return np.int32 if n < np.iinfo(np.int32).max else np.int64


class CSR:
    """A (rows, cols) matrix in compressed sparse row form (host arrays).

    Built with ``CSR.from_dense(A)`` (the nonzero entries, or those a boolean ``mask``
    keeps) or ``CSR.from_linear(layer)`` (a layer's W^T, through its pruning mask when it
    has one).  The constructor checks the three arrays once, so kernels can trust them.

    >>> A = np.array([[0.0, 2.0, 0.0], [1.0, 0.0, -1.0]])
    >>> c = CSR.from_dense(A)
    >>> c.indptr, c.indices, c.data
    (array([0, 1, 3], dtype=int32), array([1, 0, 2], dtype=int32), array([ 2.,  1., -1.]))
    >>> c.nnz, c.density
    (3, 0.5)
    """

    def __init__(self, indptr, indices, data, shape):
        if (not isinstance(shape, tuple) or len(shape) != 2
                or not all(isinstance(s, (int, np.integer)) and s >= 0 for s in shape)):
            raise ValueError(f"CSR: shape must be a (rows, cols) tuple of integers >= 0, "
                             f"got {shape!r}")
        rows, cols = int(shape[0]), int(shape[1])
        indptr, indices, data = np.asarray(indptr), np.asarray(indices), np.asarray(data)
        for name, a in (("indptr", indptr), ("indices", indices)):
            if a.ndim != 1 or a.dtype.kind not in "iu":
                raise TypeError(f"CSR: {name} must be a 1-D integer array, got dtype "
                                f"{a.dtype} and shape {a.shape}")
        if data.ndim != 1 or data.dtype not in (np.float32, np.float64):
            raise TypeError(f"CSR: data must be a 1-D float32 or float64 array, got dtype "
                            f"{data.dtype} and shape {data.shape}")
        if indptr.shape != (rows + 1,):
            raise ValueError(f"CSR: indptr must have rows + 1 = {rows + 1} entries, got "
                             f"{indptr.shape[0]}")
        if indices.shape != data.shape:
            raise ValueError(f"CSR: indices must have one entry per stored value "
                             f"({data.shape[0]}), got {indices.shape[0]}")
        check_csr_content("CSR", indptr, indices, data.shape[0], cols)
        dt = _index_dtype(max(cols, data.shape[0]))
        self.indptr = np.ascontiguousarray(indptr, dtype=dt)
        self.indices = np.ascontiguousarray(indices, dtype=dt)
        self.data = np.ascontiguousarray(data)
        self.shape = (rows, cols)

    @classmethod
    def from_dense(cls, A, mask=None):
        """The entries of the 2-D float array A where ``mask`` is True (default: A != 0).

        A kept entry that happens to be 0 is still stored: the mask, not the value,
        decides the structure (as a pruning mask does)."""
        A = np.asarray(to_host(A))
        if A.ndim != 2:
            raise ValueError(f"CSR.from_dense: A must be a 2-D array, got shape {A.shape}")
        if mask is None:
            mask = A != 0
        else:
            mask = np.asarray(mask)
            if mask.shape != A.shape or mask.dtype != bool:
                raise ValueError(f"CSR.from_dense: mask must be a boolean array of A's shape "
                                 f"{A.shape}, got dtype {mask.dtype} and shape {mask.shape}")
        r, c = np.nonzero(mask)  # row-major order: each row's entries together, in order
        indptr = np.concatenate(([0], np.cumsum(mask.sum(axis=1))))
        return cls(indptr, c, A[r, c], A.shape)

    @classmethod
    def from_linear(cls, layer, name="W"):
        """W^T of a ``Linear``-like layer (rows = output units), through its mask if any."""
        if name not in getattr(layer, "params", {}):
            raise ValueError(f"CSR.from_linear: layer {getattr(layer, 'name', layer)!r} has "
                             f"no parameter {name!r}")
        W = to_host(layer.params[name])
        mask = get_mask(layer, name)
        return cls.from_dense(W.T, None if mask is None else mask.T)

    @property
    def nnz(self):
        """Stored entries."""
        return int(self.data.shape[0])

    @property
    def density(self):
        """Stored entries over rows x cols."""
        size = self.shape[0] * self.shape[1]
        return self.nnz / size if size else 0.0

    @property
    def nbytes(self):
        """Bytes of the three arrays (values, column numbers, row pointers)."""
        return int(self.data.nbytes + self.indices.nbytes + self.indptr.nbytes)

    def to_dense(self):
        """The (rows, cols) dense matrix."""
        A = np.zeros(self.shape, dtype=self.data.dtype)
        rows = np.repeat(np.arange(self.shape[0]), np.diff(self.indptr))
        A[rows, self.indices] = self.data
        return A

    def astype(self, dtype):
        """The same structure with the values in ``dtype``."""
        return CSR(self.indptr, self.indices, self.data.astype(dtype), self.shape)

    def __repr__(self):
        return (f"CSR(shape={self.shape}, nnz={self.nnz}, density={self.density:.3f}, "
                f"{self.nbytes} bytes)")


class _InferenceLayer(Layer):
    """What the CSR layers share: host arrays copied to a backend once, on first use there,
    no parameters to zero, and a backward pass that explains why there is none."""

    _INFERENCE = "is an inference layer and has no backward pass"

    def _host_arrays(self):
        raise NotImplementedError

    def _arrays(self, be):
        arrays = self._on.get(be.name)
        if arrays is None:
            arrays = tuple(None if a is None else be.asarray(a) for a in self._host_arrays())
            self._on[be.name] = arrays
        return arrays

    def backward(self, g, need_dx=True):
        raise RuntimeError(f"{self.name} {self._INFERENCE}")

    def to(self, backend):
        self._arrays(get_backend(backend))
        return self

    def zero_grad(self):
        pass


class SparseLinear(_InferenceLayer):
    """Inference-only fully connected layer, out = x W + b, with W kept as CSR of W^T.

    Gives the outputs of the dense layer it was built from (to rounding: the sums run in
    another order).  It has no trainable parameters (``params`` is empty) and no backward
    pass: retrain the masked dense layer and build it again.  Works on every backend; the
    arrays are copied to a backend the first time a batch arrives there.
    """

    _INFERENCE = ("is an inference layer (a CSR copy of a pruned Linear) and has no "
                  "backward pass; train or retrain the masked dense Linear, then rebuild "
                  "it with sparsify() or SparseLinear.from_linear()")

    def __init__(self, csr, b=None, name=None):
        super().__init__(name)
        if not isinstance(csr, CSR):
            raise TypeError(f"SparseLinear: csr must be a CSR, got {type(csr).__name__}")
        self.csr = csr
        self.d_out, self.d_in = csr.shape
        if b is not None:
            b = np.ascontiguousarray(to_host(b))
            if b.shape != (self.d_out,) or b.dtype != csr.data.dtype:
                raise ValueError(f"SparseLinear: b must have shape ({self.d_out},) and dtype "
                                 f"{csr.data.dtype}, got {b.shape} and {b.dtype}")
        self.b = b
        self._on = {}  # backend name -> (indptr, indices, data, b) native to it

    @classmethod
    def from_linear(cls, layer, name=None):
        """The sparse copy of a (pruned) ``Linear``: its mask's survivors and its bias."""
        if not isinstance(layer, Linear):
            raise TypeError(f"SparseLinear.from_linear: expected a Linear layer, got "
                            f"{type(layer).__name__}")
        b = layer.params.get("b")
        return cls(CSR.from_linear(layer), None if b is None else to_host(b),
                   name=name or f"Sparse{layer.name}")

    @property
    def nbytes(self):
        """Bytes of the stored weights (CSR arrays) and bias."""
        return self.csr.nbytes + (0 if self.b is None else self.b.nbytes)

    def _host_arrays(self):
        c = self.csr
        return c.indptr, c.indices, c.data, self.b

    def forward(self, x, train=True):
        check_input(self, x, self.d_in)
        if x.dtype != self.csr.data.dtype:
            raise TypeError(f"{self.name}: input batch has dtype {x.dtype} but the layer's "
                            f"weights are {self.csr.data.dtype}; cast the batch (or build the "
                            "layer from a Linear of that dtype)")
        be = get_backend()
        indptr, indices, data, b = self._arrays(be)
        return be.csr_matmul(indptr, indices, data, x, b)

    def __repr__(self):
        return f"{self.name}({self.d_in} -> {self.d_out}, nnz={self.csr.nnz})"


def _flat_layers(layer):
    inner = getattr(layer, "layers", None)
    if isinstance(inner, list):
        for child in inner:
            yield from _flat_layers(child)
    else:
        yield layer


class SparseChain(_InferenceLayer):
    """Inference-only: a whole pruned MLP as one ``csr_chain`` call.

    Holds, per linear layer, its CSR matrix (W^T, rows = output units), its bias and the
    activation that follows it (identity when none does), packed once
    (``numpy_ref.sparse.pack_chain``).  On the cpu backend a forward pass of a few rows is
    one compiled loop over all layers; a batch runs layer by layer (where the products
    dominate the calls between them).  Outputs equal those of the model it was built from
    to rounding.  Like ``SparseLinear`` it has no parameters and no backward pass.

    >>> import numpy as np
    >>> from ddlib.layers import mlp
    >>> from ddlib.compress import prune
    >>> net = mlp([4, 6, 3], activation="relu", rng=0)
    >>> masks = prune.prune_model(net, 0.5)
    >>> chain = SparseChain.from_model(net)
    >>> chain
    SparseChain(4 -> 6 relu -> 3, nnz=21)
    >>> x = np.ones((1, 4))
    >>> bool(np.allclose(chain(x), net(x)))
    True
    """

    def __init__(self, layers, kinds, d_in, alphas=None, name=None):
        super().__init__(name)
        layers = list(layers)
        for i, c in enumerate(layers):
            if not isinstance(c, SparseLinear):
                raise TypeError(f"SparseChain: layers[{i}] must be a SparseLinear, got "
                                f"{type(c).__name__}")
        for i, (a, b) in enumerate(zip(layers, layers[1:])):
            if b.d_in != a.d_out:
                raise ValueError(f"SparseChain: layer {i} has {a.d_out} outputs but layer "
                                 f"{i + 1} reads {b.d_in} inputs")
        if layers and layers[0].d_in != d_in:
            raise ValueError(f"SparseChain: d_in={d_in} but the first layer reads "
                             f"{layers[0].d_in} inputs")
        self.layers_sparse = layers
        self.kinds = tuple(kinds)
        self.d_in = d_in
        self.d_out = layers[-1].d_out if layers else 0
        self.dtype = layers[0].csr.data.dtype if layers else None
        self.packed = pack_chain([(c.csr.indptr, c.csr.indices, c.csr.data, c.b)
                                  for c in layers], self.kinds, d_in, alphas)
        self._on = {}

    @classmethod
    def from_model(cls, model, name=None):
        """The chain of a model made of linear layers (``Linear``, converted through its mask
        if it has one, or ``SparseLinear``), each followed by at most one activation layer;
        nested ``Sequential`` containers are flattened."""
        if not isinstance(model, Layer):
            raise TypeError(f"SparseChain.from_model: model must be a Layer, got "
                            f"{type(model).__name__}")
        flat = list(_flat_layers(model))
        sparse, kinds, alphas = [], [], []
        for layer in flat:
            if isinstance(layer, (Linear, SparseLinear)):
                sparse.append(layer if isinstance(layer, SparseLinear)
                              else SparseLinear.from_linear(layer))
                kinds.append("identity")
                alphas.append(0.01)
            elif type(layer) in _ACTIVATION_TYPES:
                if not sparse or kinds[-1] != "identity" or len(kinds) != len(sparse):
                    raise ValueError(f"SparseChain.from_model: activation {layer.name} must "
                                     "follow a linear layer directly (one activation per layer)")
                kinds[-1], alphas[-1] = layer.kind, float(getattr(layer, "alpha", 0.01))
            else:
                raise ValueError(f"SparseChain.from_model: {layer.name} "
                                 f"({type(layer).__name__}) is neither a linear layer nor a "
                                 "plain activation; sparsify(model) without fuse keeps such "
                                 "models layer by layer")
        if not sparse:
            raise ValueError("SparseChain.from_model: the model has no linear layer")
        return cls(sparse, kinds, sparse[0].d_in, alphas, name=name)

    @property
    def nnz(self):
        return self.packed[4].n_nnz

    @property
    def nbytes(self):
        """Bytes of the stored weights (CSR arrays) and biases, as the layers hold them."""
        return sum(c.nbytes for c in self.layers_sparse)

    _INFERENCE = ("is an inference layer (CSR copies of a pruned net) and has no backward "
                  "pass; retrain the masked dense model, then build the chain again")

    def _host_arrays(self):
        return self.packed[:4]

    def forward(self, x, train=True):
        xs = getattr(x, "shape", None)
        if xs is None or len(xs) != 2 or xs[1] != self.d_in or x.dtype != self.dtype:
            check_input(self, x, self.d_in)  # words the error (shape, width, kind)
            raise TypeError(f"{self.name}: input batch has dtype {x.dtype} but the chain's "
                            f"weights are {self.dtype}; cast the batch")
        # no separate NaN/inf scan: csr_chain rejects a non-finite batch itself (on the
        # cpu backend while copying it in, which at batch 1 saves a third of the call)
        be = get_backend()
        return be.csr_chain(*self._arrays(be), self.packed[4], x)

    def __repr__(self):
        parts = [str(self.d_in)]
        for c, k in zip(self.layers_sparse, self.kinds):
            parts.append(f"{c.d_out}" + ("" if k == "identity" else f" {k}"))
        return f"SparseChain({' -> '.join(parts)}, nnz={self.nnz})"


_ACTIVATION_TYPES = frozenset(ACTIVATION_LAYERS.values()) | {Activation}


def _is_pruned_linear(layer, only_pruned):
    return isinstance(layer, Linear) and (not only_pruned or get_mask(layer, "W") is not None)


def _replace(layer, only_pruned, count):
    if _is_pruned_linear(layer, only_pruned):
        count[0] += 1
        new = SparseLinear.from_linear(layer, name=f"Sparse{layer.name}")
        new.check_finite = layer.check_finite
        return new
    inner = getattr(layer, "layers", None)
    if isinstance(inner, list):
        layer.layers = [_replace(child, only_pruned, count) for child in inner]
    return layer


def sparsify(model, only_pruned=True, fuse=False):
    """A copy of ``model`` in which each pruned ``Linear`` is a ``SparseLinear``.

    With ``only_pruned=False`` every ``Linear`` is converted.  With ``fuse=True`` the
    result is one ``SparseChain`` (the model must then be a plain chain of linear and
    activation layers, every linear one converted).  The original model is left
    as it is (keep it for retraining); the copy is for inference (its sparse layers have
    no backward pass).  Containers are searched through their ``layers`` lists.  A model
    with nothing to convert is a ValueError (a silent dense copy would hide a mistake).
    """
    if not isinstance(model, Layer):
        raise TypeError(f"sparsify: model must be a Layer, got {type(model).__name__}")
    model = copy.deepcopy(model)
    count = [0]
    model = _replace(model, bool(only_pruned), count)
    if count[0] == 0:
        what = "pruned Linear layer (one with a mask on W)" if only_pruned else "Linear layer"
        raise ValueError(f"sparsify: the model has no {what} to convert; prune it first "
                         "(ddlib.compress.prune) or pass only_pruned=False")
    return SparseChain.from_model(model) if fuse else model
