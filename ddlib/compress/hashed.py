"""The hashing trick for weight matrices (Sec. 3.7.3; HashedNets, Chen et al. 2015).

A ``HashedLinear`` layer behaves like a ``Linear`` of shape (d_in, d_out) whose
d_in x d_out *virtual* weights are drawn from only K real ones: a hash of the position
(i, j) picks the bucket k = h(i, j) mod K and a second hash a sign s(i, j) = +-1, and

    V[i, j] = s(i, j) * w[h(i, j) mod K],        out = x V + b.

Nothing but w (and the bias, kept ordinary) is stored: the index arrays are recomputed
from the hash.  Backpropagation treats every bucket as a weight shared by the positions
that hash to it (Sec. 3.2.9): dL/dw[k] sums s(i, j) dL/dV[i, j] over those positions,
which is the backend kernel ``hash_reduce``.  The sign hash makes the collisions within
a bucket cancel on average instead of adding up (the inner products of hashed features
stay unbiased).

The hash is explicit integer arithmetic on uint64 (a splitmix64-style multiply-xorshift
finalizer of the packed key (i << 32) | j, mixed with a seed), so the same (i, j, seed)
gives the same bucket on every run and machine; Python's ``hash()`` is salted per process
and could not be used.

>>> import numpy as np
>>> layer = HashedLinear(6, 4, n_buckets=5, rng=0)
>>> layer.storage_fraction                  # K real weights for 24 virtual ones
0.20833333333333334
>>> layer(np.ones((2, 6))).shape
(2, 4)
"""

from __future__ import annotations

import numpy as np

from ..backend import get_backend
from ..backend.arrays import to_host
from ..errors import check_int
from ..init import as_rng, initialize
from ..layers.base import Layer, check_input

__all__ = ["HashedLinear", "hash_positions", "bucket_and_sign"]

_M1 = np.uint64(0xBF58476D1CE4E5B9)  # splitmix64's finalizer constants
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # seeds are spread by the golden-ratio increment
_SIGN_SALT = np.uint64(0xD6E8FEB86659FD93)  # a second, independent stream for the sign


def _mix(x):
    """splitmix64's finalizer: every input bit affects every output bit (uint64 array)."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def hash_positions(i, j, seed=0, salt=0):
    """The uint64 hash of positions (i, j) (broadcast arrays of integers >= 0, < 2**32).

    >>> int(hash_positions(0, 0)[()]) == int(hash_positions(0, 0)[()])
    True
    """
    i = np.asarray(i, dtype=np.int64)
    j = np.asarray(j, dtype=np.int64)
    if (i.size and i.min() < 0) or (j.size and j.min() < 0):
        raise ValueError("hash_positions: i and j must be integers >= 0")
    key = (i.astype(np.uint64) << np.uint64(32)) | j.astype(np.uint64)
    with np.errstate(over="ignore"):  # uint64 products wrap around by design
        s = (np.uint64(seed) + np.uint64(1)) * _GOLDEN
        return _mix(key ^ s ^ np.uint64(salt))


def bucket_and_sign(d_in, d_out, n_buckets, seed=0, dtype=np.float64):
    """The (d_in, d_out) bucket numbers (int64, in [0, n_buckets)) and signs (+-1.0 in
    ``dtype``) of every position.

    >>> b, s = bucket_and_sign(2, 3, 4, seed=0)
    >>> b.shape, set(s.ravel().tolist()) <= {-1.0, 1.0}
    ((2, 3), True)
    """
    i, j = np.meshgrid(np.arange(d_in), np.arange(d_out), indexing="ij")
    bucket = (hash_positions(i, j, seed) % np.uint64(n_buckets)).astype(np.int64)
    top = hash_positions(i, j, seed, salt=_SIGN_SALT) >> np.uint64(63)
    sign = np.where(top == 0, 1.0, -1.0).astype(dtype)
    return bucket, sign


class HashedLinear(Layer):
    """A fully connected layer whose (d_in, d_out) weights come from ``n_buckets`` real
    ones through a position hash with a sign (HashedNets).

    params: ``w`` (n_buckets,) the real weights and ``b`` (d_out,) an ordinary bias
    (``bias=False`` for none).  ``seed`` selects the hash (the same seed gives the same
    buckets everywhere); ``rng`` draws the initial weights.  The real weights start with
    the distribution ``init`` gives a (d_in, d_out) matrix, so the virtual weights start
    as a dense layer's would.  ``storage_fraction`` is K / (d_in d_out).
    """

    def __init__(self, d_in, d_out, n_buckets, init="xavier_uniform", bias=True, seed=0,
                 rng=None, dtype=np.float64, name=None):
        super().__init__(name)
        self.d_in = check_int("d_in", d_in)
        self.d_out = check_int("d_out", d_out)
        size = self.d_in * self.d_out
        if isinstance(n_buckets, bool) or not isinstance(n_buckets, (int, np.integer)) \
                or not 1 <= n_buckets <= size:
            raise ValueError(f"n_buckets must be an integer in [1, d_in * d_out = {size}], "
                             f"got {n_buckets!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed (the hash's) must be an integer >= 0, got {seed!r}")
        self.n_buckets = int(n_buckets)
        self.seed = int(seed)
        dtype = np.dtype(dtype)
        # K draws of a dense (d_in, d_out) initialization: the virtual weights are +- these
        self.params["w"] = np.ascontiguousarray(
            initialize(init, (self.d_in, self.d_out), as_rng(rng), dtype).ravel()[:n_buckets])
        self.grads["w"] = np.zeros_like(self.params["w"])
        if bias:
            self.params["b"] = np.zeros(self.d_out, dtype=dtype)
            self.grads["b"] = np.zeros_like(self.params["b"])
        self.use_bias = bool(bias)
        self._host_index = bucket_and_sign(self.d_in, self.d_out, self.n_buckets, self.seed,
                                           dtype)
        self._index_on = {}  # (backend name, dtype) -> (bucket, sign) native to it

    @property
    def storage_fraction(self):
        """Real weights over virtual weights, K / (d_in d_out) (the bias not counted)."""
        return self.n_buckets / (self.d_in * self.d_out)

    @property
    def bucket(self):
        """The (d_in, d_out) bucket number of every position (host, int64)."""
        return self._host_index[0]

    @property
    def sign(self):
        """The (d_in, d_out) sign of every position (host)."""
        return self._host_index[1]

    def _index(self, be, dtype):
        key = (be.name, np.dtype(dtype))
        idx = self._index_on.get(key)
        if idx is None:
            bucket, sign = self._host_index
            idx = (be.asarray(bucket), be.asarray(sign.astype(dtype, copy=False)))
            self._index_on[key] = idx
        return idx

    def virtual_weights(self):
        """V = sign * w[bucket] as a host (d_in, d_out) array."""
        be = get_backend()
        w = self.params["w"]
        return to_host(be.hash_expand(w, *self._index(be, w.dtype)))

    def forward(self, x, train=True):
        check_input(self, x, self.d_in)
        be = get_backend()
        w = self.params["w"]
        V = be.hash_expand(w, *self._index(be, w.dtype))
        out = be.linear(x, V, self.params["b"]) if self.use_bias else be.matmul(x, V)
        self._cache = (x, V)
        return out

    def _backward(self, g, need_dx=True):
        be = get_backend()
        x, V = self._cache
        w = self.params["w"]
        gV = be.matmul_tn(x, g)  # dL/dV = x^T g, as for a dense layer
        be.hash_reduce(gV, *self._index(be, w.dtype), self.n_buckets, out=self.grads["w"])
        if self.use_bias:
            be.col_sum(g, out=self.grads["b"])
        return be.matmul_nt(g, V) if need_dx else None

    def __repr__(self):
        return (f"{self.name}({self.d_in} -> {self.d_out}, {self.n_buckets} buckets, "
                f"storage {self.storage_fraction:.3f})")
