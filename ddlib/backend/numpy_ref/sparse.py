"""Kernels for compressed weights (Sec. 3.7.3): a sparse-times-dense product for pruned
layers and the two index kernels of the hashing trick.

``csr_matmul`` multiplies a batch by a weight matrix kept in compressed sparse row (CSR)
form.  The stored matrix A is (m, d) with its rows the layer's *output* units, so it is
the transpose of ``Linear``'s W (d, m): ``out = x A^T + b`` equals ``x W + b``.  Row o of
A lists the inputs that unit o still reads after pruning: ``indices[indptr[o]:indptr[o+1]]``
are their column numbers and ``data`` the same slice holds the weights.

HashedNets (Chen et al. 2015) keeps K real weights w and builds a virtual matrix from
them through two fixed index arrays of the virtual shape: ``bucket`` (which real weight)
and ``sign`` (+1 or -1).  ``hash_expand`` builds V = sign * w[bucket]; ``hash_reduce``
is its adjoint, the gradient of the real weights, gw[k] = sum of sign * gV over the
positions whose bucket is k (the shared-weight rule of Sec. 3.2.9 with a sign).

Index arrays are integer (int32 or int64); the float arrays of one call share a dtype.
"""

import numpy as np

from .. import checks as ck

__all__ = ["csr_matmul", "csr_chain", "hash_expand", "hash_reduce"]


def _need_index(who, name, a, ndim=1):
    if len(a.shape) != ndim:
        raise ValueError(f"{who}: {name} must be a {ndim}-D integer array, got shape "
                         f"{tuple(a.shape)}")
    if np.dtype(a.dtype).kind not in ("i", "u"):
        raise TypeError(f"{who}: {name} must be an integer index array (int32 or int64), "
                        f"got dtype {a.dtype}")


def check_csr(who, indptr, indices, data, x, b=None, out=None):
    """The structure checks every backend's ``csr_matmul`` makes (attribute reads only):
    returns (n, m, d).

    At batch 1 these checks cost as much as the product, so the common case (everything
    right) is one chain of compares; only a mismatch runs the checks that word the error.
    """
    xs = x.shape
    if (len(xs) == 2 and len(indptr.shape) == 1 and len(data.shape) == 1
            and indices.shape == data.shape and indptr.shape[0] >= 1
            and indptr.dtype.kind in "iu" and indices.dtype.kind in "iu"
            and x.dtype in ck.FLOATS and data.dtype == x.dtype):
        m = indptr.shape[0] - 1
        if ((b is None or (b.shape == (m,) and b.dtype == x.dtype))
                and (out is None or (out.shape == (xs[0], m) and out.dtype == x.dtype))):
            return xs[0], m, xs[1]
    _need_index(who, "indptr", indptr)
    _need_index(who, "indices", indices)
    if len(data.shape) != 1:
        raise ValueError(f"{who}: data must be a 1-D array (one weight per stored entry), "
                         f"got shape {tuple(data.shape)}")
    ck.need_2d(who, "x", x)
    ck.need_float(who, x=x, data=data, b=b, out=out)
    ck.need_same_dtype(who, "x", x, data=data, b=b, out=out)
    if indptr.shape[0] < 1:
        raise ValueError(f"{who}: indptr must hold at least one entry (m + 1 for m rows), "
                         "got an empty array")
    ck.need_shape(who, "indices", indices, data.shape,
                  " (one column number per stored weight in data)")
    n, d = x.shape
    m = indptr.shape[0] - 1
    ck.need_shape(who, "b", b, (m,), " (one bias per row of the sparse matrix)")
    ck.need_shape(who, "out", out, (n, m), " (batch rows x sparse-matrix rows)")
    return n, m, d


def check_csr_content(who, indptr, indices, nnz, d):
    """The content checks (one pass over the index arrays): indptr starts at 0, never
    decreases and ends at nnz; every column number lies in [0, d)."""
    if int(indptr[0]) != 0 or int(indptr[-1]) != nnz:
        raise ValueError(f"{who}: indptr must start at 0 and end at len(data) = {nnz}, got "
                         f"{int(indptr[0])} ... {int(indptr[-1])}")
    if indptr.shape[0] > 1 and np.any(np.diff(indptr) < 0):
        raise ValueError(f"{who}: indptr must be non-decreasing (row o's entries are "
                         "indptr[o]:indptr[o+1])")
    if nnz and (int(indices.min()) < 0 or int(indices.max()) >= d):
        bad = int(indices.min()) if int(indices.min()) < 0 else int(indices.max())
        raise ValueError(f"{who}: indices must lie in [0, {d}) (columns of x), got {bad}")


def csr_matmul(indptr, indices, data, x, b=None, out=None):
    """out = x A^T (+ b) for A (m, d) in CSR form: ``Linear``'s x W + b with W = A^T.

    out[i, o] = b[o] + sum over k in indptr[o]:indptr[o+1] of data[k] * x[i, indices[k]].

    indptr (m + 1,), indices (nnz,) and data (nnz,) describe A; x is (n, d), b (m,) or
    None, out an optional (n, m) buffer.

    >>> A = np.array([[0.0, 2.0, 0.0], [1.0, 0.0, -1.0]])  # 2 rows (outputs), 3 inputs
    >>> indptr, indices, data = np.array([0, 1, 3]), np.array([1, 0, 2]), np.array([2.0, 1.0, -1.0])
    >>> csr_matmul(indptr, indices, data, np.array([[1.0, 2.0, 3.0]]))
    array([[ 4., -2.]])
    >>> np.array([[1.0, 2.0, 3.0]]) @ A.T
    array([[ 4., -2.]])
    """
    who = "csr_matmul"
    n, m, d = check_csr(who, indptr, indices, data, x, b, out)
    check_csr_content(who, indptr, indices, data.shape[0], d)
    rows = np.repeat(np.arange(m), np.diff(indptr))
    A = np.zeros((m, d), dtype=x.dtype)
    np.add.at(A, (rows, indices), data)  # a repeated column adds, as a sum over k would
    res = x @ A.T
    if b is not None:
        res = res + b
    res = res.astype(x.dtype, copy=False)
    if out is not None:
        out[...] = res
        return out
    return res


def check_hash(who, bucket, sign, ref_name, ref):
    """Structure checks shared by the hashing kernels: bucket an integer array, sign a
    float array of bucket's shape and of the dtype of ``ref`` (w or g)."""
    if np.dtype(bucket.dtype).kind not in ("i", "u"):
        raise TypeError(f"{who}: bucket must be an integer array (int32 or int64), got "
                        f"dtype {bucket.dtype}")
    ck.need_same_shape(who, "bucket", bucket, sign=sign)
    ck.need_float(who, **{ref_name: ref, "sign": sign})
    ck.need_same_dtype(who, ref_name, ref, sign=sign)


def check_expand_args(who, w, bucket, sign, out):
    """What every backend's ``hash_expand`` checks first: w 1-D, bucket/sign as
    ``check_hash`` wants them, out (if given) shaped like bucket with w's dtype."""
    need_real_weights(who, w)
    check_hash(who, bucket, sign, "w", w)
    ck.need_same_shape(who, "bucket", bucket, out=out)
    ck.need_same_dtype(who, "w", w, out=out)


def check_reduce_args(who, g, bucket, sign, k, out):
    """What every backend's ``hash_reduce`` checks first; returns k as an int."""
    k = need_k(who, k)
    check_hash(who, bucket, sign, "g", g)
    ck.need_same_shape(who, "bucket", bucket, g=g)
    ck.need_shape(who, "out", out, (k,), " (one entry per real weight)")
    ck.need_same_dtype(who, "g", g, out=out)
    return k


def need_real_weights(who, w):
    if len(w.shape) != 1:
        raise ValueError(f"{who}: w must be a 1-D array (one entry per real weight), "
                         f"got shape {tuple(w.shape)}")


def check_buckets(who, bucket, k):
    """Every bucket number lies in [0, k) (one pass over bucket)."""
    if bucket.size:
        lo, hi = int(bucket.min()), int(bucket.max())
        if lo < 0 or hi >= k:
            raise ValueError(f"{who}: bucket entries must lie in [0, {k}) for {k} real "
                             f"weights, got {lo if lo < 0 else hi}")


def hash_expand(w, bucket, sign, out=None):
    """The virtual weights V = sign * w[bucket] (HashedNets' forward expansion).

    w (K,): the real weights; bucket, sign: arrays of the virtual shape (any shape);
    out an optional buffer of that shape.

    >>> hash_expand(np.array([1.0, 2.0]), np.array([[0, 1], [1, 1]]),
    ...             np.array([[1.0, -1.0], [1.0, 1.0]]))
    array([[ 1., -2.],
           [ 2.,  2.]])
    """
    who = "hash_expand"
    check_expand_args(who, w, bucket, sign, out)
    check_buckets(who, bucket, w.shape[0])
    res = (sign * w[bucket]).astype(w.dtype, copy=False)
    if out is not None:
        out[...] = res
        return out
    return res


def hash_reduce(g, bucket, sign, k, out=None):
    """The real weights' gradient gw[q] = sum of sign * g over positions with bucket q.

    g: the virtual matrix's gradient (any shape); bucket, sign: of g's shape; k: the
    number of real weights; out an optional (k,) buffer.  The adjoint of ``hash_expand``:
    sum(gw * w) equals sum(g * hash_expand(w, bucket, sign)).

    >>> hash_reduce(np.array([[1.0, 1.0], [1.0, 1.0]]), np.array([[0, 1], [1, 1]]),
    ...             np.array([[1.0, -1.0], [1.0, 1.0]]), 2)
    array([1., 1.])
    """
    who = "hash_reduce"
    k = check_reduce_args(who, g, bucket, sign, k, out)
    check_buckets(who, bucket, k)
    res = np.bincount(bucket.ravel(), weights=(sign * g).ravel().astype(np.float64),
                      minlength=k).astype(g.dtype)
    if out is not None:
        out[...] = res
        return out
    return res


def need_k(who, k):
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"{who}: k (the number of real weights) must be an integer >= 1, "
                         f"got {k!r}")
    return int(k)


# --- csr_chain: a whole pruned net in one call -----------------------------------------------


class ChainLayout:
    """The shape of a packed chain, checked once when it is built: ``dims`` = [d_in, m_1,
    ..., m_L], ``nnz`` the stored entries per layer, ``codes`` the activation after each
    layer (positions in ``core.ACTIVATIONS``) and ``alphas`` their slopes (leaky ReLU).

    Read-only host arrays; a backend's ``csr_chain`` compares the packed arrays' lengths
    with the totals below (a few attribute reads, which is what keeps a batch-1 call cheap).
    """

    __slots__ = ("dims", "nnz", "codes", "alphas", "n_layers", "n_ptr", "n_nnz", "n_bias",
                 "d_in", "d_out", "max_width", "_alphas_by_dtype")

    def __init__(self, dims, nnz, codes, alphas):
        from .core import ACTIVATIONS

        dims, nnz, codes = (np.array(a, dtype=np.int64).reshape(-1) for a in (dims, nnz, codes))
        alphas = np.array(alphas, dtype=np.float64).reshape(-1)
        n = codes.shape[0]
        if n < 1 or dims.shape[0] != n + 1 or nnz.shape[0] != n or alphas.shape[0] != n:
            raise ValueError(f"ChainLayout: a chain of {n} layers needs {n + 1} dims, {n} nnz "
                             f"and {n} alphas, got {dims.shape[0]}, {nnz.shape[0]} and "
                             f"{alphas.shape[0]}")
        if np.any(dims < 1) or np.any(nnz < 0):
            raise ValueError(f"ChainLayout: dims must be positive and nnz non-negative, got "
                             f"{dims.tolist()} and {nnz.tolist()}")
        if np.any((codes < 0) | (codes >= len(ACTIVATIONS))):
            raise ValueError(f"ChainLayout: codes must be activation codes in "
                             f"[0, {len(ACTIVATIONS)}) (positions in {ACTIVATIONS}), got "
                             f"{codes.tolist()}")
        for a in (dims, nnz, codes, alphas):
            a.flags.writeable = False
        self.dims, self.nnz, self.codes, self.alphas = dims, nnz, codes, alphas
        self.n_layers = n
        self.n_ptr = int(dims[1:].sum()) + n
        self.n_nnz = int(nnz.sum())
        self.n_bias = int(dims[1:].sum())
        self.d_in, self.d_out = int(dims[0]), int(dims[-1])
        self.max_width = int(dims.max())
        self._alphas_by_dtype = {}

    def alphas_as(self, dtype):
        """``alphas`` in the chain's float dtype (what an activation kernel computes with)."""
        a = self._alphas_by_dtype.get(dtype)
        if a is None:
            a = self.alphas.astype(dtype)
            a.flags.writeable = False
            self._alphas_by_dtype[dtype] = a
        return a

    def __repr__(self):
        return (f"ChainLayout(dims={self.dims.tolist()}, nnz={self.nnz.tolist()}, "
                f"codes={self.codes.tolist()})")


def pack_chain(layers, kinds, d_in, alphas=None):
    """The packed form ``csr_chain`` reads, from per-layer ``(indptr, indices, data, b)``.

    ``d_in`` is the number of inputs of the first layer (a CSR matrix does not know its
    own number of columns); each later layer reads the previous one's outputs.
    Returns ``(indptr, indices, data, bias, layout)``: the layers' indptr arrays one after
    the other (each starting at 0, int64), their indices (int64) and data concatenated,
    their biases concatenated (zeros for a layer without one), and their ``ChainLayout``.
    Host NumPy arrays; move the first four to a backend with its ``asarray``.
    """
    from .core import activation_code

    layers, kinds = list(layers), list(kinds)
    if not layers:
        raise ValueError("pack_chain: layers must hold at least one (indptr, indices, data, b)")
    if len(kinds) != len(layers):
        raise ValueError(f"pack_chain: kinds must name one activation per layer "
                         f"({len(layers)}), got {len(kinds)}")
    alphas = [0.01] * len(layers) if alphas is None else [float(a) for a in alphas]
    if isinstance(d_in, bool) or not isinstance(d_in, (int, np.integer)) or d_in < 1:
        raise ValueError(f"pack_chain: d_in must be a positive integer, got {d_in!r}")
    dtype = np.asarray(layers[0][2]).dtype
    dims, ptrs, idx, dat, bias, nnz = [int(d_in)], [], [], [], [], []
    for li, (indptr, indices, data, b) in enumerate(layers):
        indptr, indices, data = np.asarray(indptr), np.asarray(indices), np.asarray(data)
        if data.dtype != dtype:
            raise TypeError(f"pack_chain: layer {li} has dtype {data.dtype}, layer 0 {dtype}; "
                            "one chain has one dtype")
        m = indptr.shape[0] - 1
        if indptr.ndim != 1 or m < 0:
            raise ValueError(f"pack_chain: layer {li}'s indptr must be 1-D with m + 1 entries")
        check_csr_content("pack_chain", indptr, indices, data.shape[0], dims[-1])
        dims.append(m)
        ptrs.append(indptr.astype(np.int64))
        idx.append(indices.astype(np.int64))
        dat.append(data)
        bias.append(np.zeros(m, dtype) if b is None else np.asarray(b, dtype=dtype))
        nnz.append(data.shape[0])
    layout = ChainLayout(dims, nnz, [activation_code(k) for k in kinds], alphas)
    return (np.concatenate(ptrs), np.concatenate(idx), np.concatenate(dat).astype(dtype),
            np.concatenate(bias), layout)


def check_chain(who, indptr, indices, data, bias, layout, x):
    """The structure checks every backend's ``csr_chain`` makes (attribute reads only):
    returns the batch size.  The common case (everything right) is one chain of compares;
    only a mismatch runs the checks that word the error."""
    if not isinstance(layout, ChainLayout):
        raise TypeError(f"{who}: layout must be a ChainLayout (from pack_chain), got "
                        f"{type(layout).__name__}")
    xs = x.shape
    if (len(xs) == 2 and xs[1] == layout.d_in and x.dtype in ck.FLOATS
            and data.dtype == x.dtype and bias.dtype == x.dtype
            and indptr.shape == (layout.n_ptr,) and indices.shape == (layout.n_nnz,)
            and data.shape == (layout.n_nnz,) and bias.shape == (layout.n_bias,)
            and indptr.dtype.kind in "iu" and indices.dtype.kind in "iu"):
        return xs[0]
    ck.need_2d(who, "x", x)
    ck.need_float(who, x=x, data=data, bias=bias)
    ck.need_same_dtype(who, "x", x, data=data, bias=bias)
    if x.shape[1] != layout.d_in:
        raise ValueError(f"{who}: x has {x.shape[1]} columns but the chain's first layer "
                         f"reads {layout.d_in} inputs")
    for name, a, want in (("indptr", indptr, layout.n_ptr), ("indices", indices, layout.n_nnz),
                          ("data", data, layout.n_nnz), ("bias", bias, layout.n_bias)):
        if a.shape != (want,):
            raise ValueError(f"{who}: {name} must be 1-D of length {want} for {layout}, got "
                             f"shape {tuple(a.shape)}")
    _need_index(who, "indptr", indptr)
    _need_index(who, "indices", indices)
    raise AssertionError("unreachable")  # pragma: no cover


def chain_layers(indptr, indices, data, bias, layout):
    """Per layer, ``((indptr, indices, data, b), kind, alpha)`` of a packed chain (the
    arrays are views of whatever they are: host or device)."""
    from .core import ACTIVATIONS

    dims, nnz = layout.dims, layout.nnz
    p = z = c = 0
    for li in range(layout.n_layers):
        m, k = int(dims[li + 1]), int(nnz[li])
        yield ((indptr[p:p + m + 1], indices[z:z + k], data[z:z + k], bias[c:c + m]),
               ACTIVATIONS[int(layout.codes[li])], float(layout.alphas[li]))
        p, z, c = p + m + 1, z + k, c + m


def check_chain_input(who, x):
    """A host batch holding NaN or inf is a ValueError naming how many."""
    if not np.isfinite(x).all():
        raise ValueError(f"{who}: x contains {int(np.size(x) - np.isfinite(x).sum())} "
                         "NaN or inf value(s)")


def chain_by_layers(csr_matmul, act_forward, indptr, indices, data, bias, layout, x):
    """A packed chain run as a backend's ``csr_matmul`` then ``act_forward``, layer by
    layer (the reference's definition, the cpu backend's batch path, the cuda backend)."""
    for (ip, ix, dt, b), kind, alpha in chain_layers(indptr, indices, data, bias, layout):
        x = act_forward(kind, csr_matmul(ip, ix, dt, x, b), alpha)
    return x


def csr_chain(indptr, indices, data, bias, layout, x):
    """A pruned net's inference in one call: for each layer l, x <- f_l(x A_l^T + b_l).

    The layers come packed (``pack_chain``): one CSR matrix per layer (rows = output units,
    as in ``csr_matmul``), its bias, and the activation after it, described by a
    ``ChainLayout``.  Here it is what it means: one ``csr_matmul`` and one
    ``act_forward`` per layer.  A batch holding NaN or inf is a ValueError on the host
    backends (the cpu kernel finds it while copying the batch in); the cuda backend does not
    scan device inputs, as none of its kernels do.

    >>> layer1 = (np.array([0, 1, 3]), np.array([1, 0, 2]), np.array([2.0, 1.0, -1.0]), None)
    >>> layer2 = (np.array([0, 2]), np.array([0, 1]), np.array([1.0, 1.0]), np.array([0.5]))
    >>> packed = pack_chain([layer1, layer2], ["relu", "identity"], d_in=3)
    >>> csr_chain(*packed, np.array([[1.0, 2.0, 3.0]]))   # relu([4, -2]) = [4, 0]; 4 + 0 + 0.5
    array([[4.5]])
    """
    from .core import act_forward

    check_chain("csr_chain", indptr, indices, data, bias, layout, x)
    check_chain_input("csr_chain", x)
    return chain_by_layers(csr_matmul, act_forward, indptr, indices, data, bias, layout, x)
