"""The curvature family (the non-matrix parts of R-operator Hessian-vector products).

Two kinds of test: the reference itself against finite differences of the kernels it
differentiates (``act_backward``, ``softmax_xent_backward``, ``batchnorm_forward`` and
``batchnorm_backward``) and against the explicit softmax Hessian; then every backend
against the reference in float32 and float64, with and without output buffers.
"""

import numpy as np
import pytest

from ddlib.backend.numpy_ref import batchnorm as ref_bn
from ddlib.backend.numpy_ref import core as ref_core
from ddlib.backend.numpy_ref import curvature as ref
from ddlib.backend.numpy_ref.core import ACTIVATIONS
from tests.conftest import SIMULATOR, tol

# (n, d): widths that are not multiples of a warp; the host-only larger one crosses the cpu
# elementwise threshold (1 << 18 elements)
SHAPES = [(1, 3), (5, 7), (9, 33)] if SIMULATOR else [(1, 3), (5, 7), (9, 33), (520, 513)]
BN_SHAPES = [(2, 3), (5, 7), (9, 33)] if SIMULATOR else [(2, 3), (5, 7), (9, 33), (300, 257)]
H = 1e-6  # central-difference step (float64)


def rand(shape, dtype=np.float64, seed=0, loc=0.0, scale=1.0):
    return np.random.default_rng(seed).normal(loc, scale, size=shape).astype(dtype)


def run(be, fn, *args, **kw):
    moved = [be.asarray(a) if isinstance(a, np.ndarray) else a for a in args]
    kw = {k: be.asarray(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
    out = getattr(be, fn)(*moved, **kw)
    if isinstance(out, tuple):
        assert all(be.is_native(o) for o in out)
        return tuple(be.to_numpy(o) for o in out)
    assert be.is_native(out)
    return be.to_numpy(out)


def assert_close(got, want, dtype, scale=None):
    """Relative to the largest entry (``scale``): entries that sum terms which cancel are
    only as accurate as the terms are large."""
    t = tol(dtype)
    scale = float(np.abs(want).max()) if scale is None else scale
    np.testing.assert_allclose(got, want, rtol=t["rtol"] * 4,
                               atol=t["atol"] + t["rtol"] * 4 * scale)


def central(f, h=H):
    """(f(h) - f(-h)) / 2h for f returning an array or a tuple of arrays."""
    plus, minus = f(h), f(-h)
    if isinstance(plus, tuple):
        return tuple((p - m) / (2 * h) for p, m in zip(plus, minus))
    return (plus - minus) / (2 * h)


def bn_inputs(shape, dtype=np.float64, seed=0):
    n, d = shape
    x = rand(shape, dtype, seed, loc=2.0, scale=1.5)
    gamma = rand(d, dtype, seed + 1, loc=1.0, scale=0.5)
    beta = rand(d, dtype, seed + 2)
    vgamma, vbeta = rand(d, dtype, seed + 3), rand(d, dtype, seed + 4)
    rx, g, rg = (rand(shape, dtype, seed + k) for k in (5, 6, 7))
    return x, gamma, beta, vgamma, vbeta, rx, g, rg


# --- the reference against the definitions (float64) --------------------------------------


@pytest.mark.parametrize("kind", ACTIVATIONS)
def test_reference_act_second_is_the_derivative_of_act_backward(kind):
    # R{g f'(x)} along x -> x + t r, with g held fixed: d/dt g f'(x + t r) = g f''(x) r
    x = rand((6, 5), seed=1, scale=2.0)
    if kind in ("relu", "leaky_relu", "hardtanh"):  # stay clear of the kinks at 0 and +-1
        x = np.where(np.minimum(np.abs(x), np.abs(np.abs(x) - 1)) < 0.05, 0.5, x)
    g, r = rand(x.shape, seed=2), rand(x.shape, seed=3)

    def backward(t):
        xt = x + t * r
        return ref_core.act_backward(kind, xt, ref_core.act_forward(kind, xt, 0.1), g, 0.1)

    got = ref.act_second(kind, x, ref_core.act_forward(kind, x, 0.1), g, r, alpha=0.1)
    np.testing.assert_allclose(got, central(backward), rtol=1e-7, atol=1e-9)
    if kind in ("sigmoid", "tanh"):
        assert np.abs(got).max() > 0.1  # a real test: the term is not zero


def test_reference_softmax_xent_hvp_is_the_explicit_hessian_times_r():
    n, k = 4, 5
    z = rand((n, k), seed=4, scale=2.0)
    r = rand((n, k), seed=5)
    p = ref_core.softmax(z)
    want = np.stack([((np.diag(p[i]) - np.outer(p[i], p[i])) / n) @ r[i] for i in range(n)])
    got = ref.softmax_xent_hvp(p, r)
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)
    # and the Hessian is that of the loss: the gradient's derivative along r
    labels = np.array([0, 3, 1, 4])
    fd = central(lambda t: ref_core.softmax_xent_backward(ref_core.softmax(z + t * r), labels))
    np.testing.assert_allclose(got, fd, rtol=1e-7, atol=1e-9)
    assert float(np.sum(got * r)) >= 0  # r^T H r >= 0: positive semidefinite


def _fd_rel(got, want, rel=1e-7):
    np.testing.assert_allclose(got, want, rtol=rel, atol=rel * float(np.abs(want).max()))


@pytest.mark.parametrize("with_rx", [True, False], ids=["rx", "rx=None"])
def test_reference_batchnorm_rforward_is_the_derivative_of_the_forward(with_rx):
    x, gamma, beta, vgamma, vbeta, rx, _, _ = bn_inputs((7, 4), seed=10)
    eps = 1e-3
    dx = rx if with_rx else np.zeros_like(x)

    def forward(t):
        xt = x + t * dx
        out, mean, var = ref_bn.batchnorm_forward(xt, gamma + t * vgamma, beta + t * vbeta, eps)
        sigma = np.sqrt(var + eps)
        return out, (xt - mean) / sigma, sigma

    mean, var = ref_bn.batchnorm_stats(x)
    rout, rxhat, rsigma = ref.batchnorm_rforward(rx if with_rx else None, x, gamma, mean, var,
                                                 eps, vgamma, vbeta)
    fd_out, fd_xhat, fd_sigma = central(forward)
    _fd_rel(rout, fd_out)
    if with_rx:
        _fd_rel(rxhat, fd_xhat)
        _fd_rel(rsigma, fd_sigma)
    else:
        assert not rxhat.any() and not rsigma.any()


@pytest.mark.parametrize("with_rx", [True, False], ids=["rx", "rx=None"])
def test_reference_batchnorm_rbackward_is_the_derivative_of_the_backward(with_rx):
    x, gamma, _, vgamma, vbeta, rx, g, rg = bn_inputs((7, 4), seed=20)
    eps = 1e-3
    if not with_rx:
        rx = np.zeros_like(x)

    def backward(t):
        xt = x + t * rx
        mean, var = ref_bn.batchnorm_stats(xt)
        return ref_bn.batchnorm_backward(g + t * rg, xt, gamma + t * vgamma, mean, var, eps)

    mean, var = ref_bn.batchnorm_stats(x)
    _, rxhat, rsigma = ref.batchnorm_rforward(rx if with_rx else None, x, gamma, mean, var,
                                              eps, vgamma, vbeta)
    got = ref.batchnorm_rbackward(g, rg, rxhat, rsigma, x, gamma, mean, var, eps, vgamma)
    for a, b in zip(got, central(backward)):
        _fd_rel(a, b)


# --- every backend against the reference ---------------------------------------------------


@pytest.mark.parametrize("with_out", [False, True], ids=["new", "out"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", ACTIVATIONS)
def test_act_second_matches_the_reference(backend, dtype, kind, shape, with_out):
    if SIMULATOR and shape != (5, 7) and kind not in ("sigmoid", "tanh"):
        pytest.skip("the zero kinds need one shape on the simulator")
    x = rand(shape, dtype, 30, scale=2.0)
    y = ref_core.act_forward(kind, x, 0.1)
    g, r = rand(shape, dtype, 31), rand(shape, dtype, 32)
    want = ref.act_second(kind, x, y, g, r, alpha=0.1)
    if with_out:
        out = backend.asarray(np.full(shape, np.nan, dtype=dtype))
        res = backend.act_second(kind, *(backend.asarray(a) for a in (x, y, g, r)),
                                 alpha=0.1, out=out)
        assert res is out
        got = backend.to_numpy(out)
    else:
        got = run(backend, "act_second", kind, x, y, g, r, alpha=0.1)
    assert got.dtype == dtype and got.shape == shape
    assert_close(got, want, dtype)


@pytest.mark.parametrize("with_out", [False, True], ids=["new", "out"])
@pytest.mark.parametrize("shape", SHAPES)
def test_softmax_xent_hvp_matches_the_reference(backend, dtype, shape, with_out):
    p = ref_core.softmax(rand(shape, np.float64, 40, scale=2.0)).astype(dtype)
    r = rand(shape, dtype, 41)
    want = ref.softmax_xent_hvp(p, r)
    if with_out:
        out = backend.asarray(np.full(shape, np.nan, dtype=dtype))
        assert backend.softmax_xent_hvp(backend.asarray(p), backend.asarray(r), out=out) is out
        got = backend.to_numpy(out)
    else:
        got = run(backend, "softmax_xent_hvp", p, r)
    assert got.dtype == dtype and got.shape == shape
    # each entry is p_j (r_j - p . r) / n: compare on the size of p_j |r|_max / n
    assert_close(got, want, dtype, scale=float(np.abs(r).max()) / shape[0])


def _bn_case(shape, dtype, seed):
    x, gamma, beta, vgamma, vbeta, rx, g, rg = bn_inputs(shape, dtype, seed)
    mean, var = ref_bn.batchnorm_stats(x)
    return x, gamma, vgamma, vbeta, rx, g, rg, mean.astype(dtype), var.astype(dtype)


@pytest.mark.parametrize("with_rx", [True, False], ids=["rx", "rx=None"])
@pytest.mark.parametrize("shape", BN_SHAPES)
def test_batchnorm_rforward_matches_the_reference(backend, dtype, shape, with_rx):
    x, gamma, vgamma, vbeta, rx, _, _, mean, var = _bn_case(shape, dtype, 50)
    eps = 1e-3
    rx = rx if with_rx else None
    want = ref.batchnorm_rforward(rx, x, gamma, mean, var, eps, vgamma, vbeta)
    got = run(backend, "batchnorm_rforward", rx, x, gamma, mean, var, eps, vgamma, vbeta)
    for name, a, b in zip(("rout", "rxhat", "rsigma"), got, want):
        assert a.dtype == dtype and a.shape == b.shape, name
        assert_close(a, b, dtype)
    if not with_rx:
        assert not got[1].any() and not got[2].any()


@pytest.mark.parametrize("with_bufs", [False, True], ids=["new", "bufs"])
@pytest.mark.parametrize("shape", BN_SHAPES)
def test_batchnorm_rbackward_matches_the_reference(backend, dtype, shape, with_bufs):
    x, gamma, vgamma, vbeta, rx, g, rg, mean, var = _bn_case(shape, dtype, 60)
    eps = 1e-3
    _, rxhat, rsigma = ref.batchnorm_rforward(rx, x, gamma, mean, var, eps, vgamma, vbeta)
    args = (g, rg, rxhat, rsigma, x, gamma, mean, var, eps, vgamma)
    want = ref.batchnorm_rbackward(*args)
    d = shape[1]
    if with_bufs:
        rdg = backend.asarray(np.full(d, np.nan, dtype=dtype))
        rdb = backend.asarray(np.full(d, np.nan, dtype=dtype))
        moved = [backend.asarray(a) if isinstance(a, np.ndarray) else a for a in args]
        res = backend.batchnorm_rbackward(*moved, rdgamma=rdg, rdbeta=rdb)
        assert res[1] is rdg and res[2] is rdb
        got = tuple(backend.to_numpy(a) for a in res)
    else:
        got = run(backend, "batchnorm_rbackward", *args)
    for name, a, b in zip(("rdx", "rdgamma", "rdbeta"), got, want):
        assert a.dtype == dtype and a.shape == b.shape, name
        assert_close(a, b, dtype)


def test_cpu_parallel_paths_match_the_reference(monkeypatch):
    """The cpu kernels' threaded drivers (normally for large batches only) on a small one."""
    import ddlib
    from ddlib.backend.cpu import curvature as cpu

    monkeypatch.setattr(cpu, "PARALLEL_MIN", 1)
    monkeypatch.setattr(cpu, "_nblocks", lambda n, d: 3)
    be = ddlib.get_backend("cpu")
    x, gamma, vgamma, vbeta, rx, g, rg, mean, var = _bn_case((40, 200), np.float64, 70)
    y = ref_core.act_forward("tanh", x)
    np.testing.assert_allclose(be.act_second("tanh", x, y, g, rg),
                               ref.act_second("tanh", x, y, g, rg), rtol=1e-12)
    p = ref_core.softmax(x)
    np.testing.assert_allclose(be.softmax_xent_hvp(p, rg), ref.softmax_xent_hvp(p, rg),
                               rtol=1e-10, atol=1e-15)
    want = ref.batchnorm_rforward(rx, x, gamma, mean, var, 1e-3, vgamma, vbeta)
    got = be.batchnorm_rforward(rx, x, gamma, mean, var, 1e-3, vgamma, vbeta)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    args = (g, rg, want[1], want[2], x, gamma, mean, var, 1e-3, vgamma)
    for a, b in zip(be.batchnorm_rbackward(*args), ref.batchnorm_rbackward(*args)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)


# --- bad arguments ---------------------------------------------------------------------------


def _dev(be, *arrays):
    return [None if a is None else be.asarray(a) for a in arrays]


def test_act_second_refuses_bad_shapes_kinds_and_dtypes(backend):
    x, y, g, r = _dev(backend, *(rand((6, 4), seed=k) for k in range(4)))
    bad = backend.asarray(np.ones((4, 6)))
    for name in ("y", "g", "r", "out"):
        args = dict(y=y, g=g, r=r, out=None)
        args[name] = bad
        out = args.pop("out")
        with pytest.raises(ValueError, match=fr"act_second: {name} must have shape \(6, 4\)"):
            backend.act_second("tanh", x, **args, out=out)
    with pytest.raises(ValueError, match=r"kind='swish'"):
        backend.act_second("swish", x, y, g, r)
    ints = backend.asarray(np.ones((6, 4), dtype=np.int64))
    with pytest.raises(TypeError, match=r"act_second: .*(float32 or float64|arrays mix)"):
        backend.act_second("tanh", x, y, ints, r)


def test_softmax_xent_hvp_refuses_bad_shapes(backend):
    p, r = _dev(backend, np.full((3, 4), 0.25), np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"softmax_xent_hvp: r must have shape \(3, 4\)"):
        backend.softmax_xent_hvp(p, backend.asarray(np.ones((4, 3))))
    with pytest.raises(ValueError, match=r"softmax_xent_hvp: out must have shape \(3, 4\)"):
        backend.softmax_xent_hvp(p, r, out=backend.asarray(np.ones((3, 5))))
    with pytest.raises(ValueError, match=r"softmax_xent_hvp: probs must be a 2-D"):
        backend.softmax_xent_hvp(backend.asarray(np.ones(4)), backend.asarray(np.ones(4)))
    with pytest.raises(TypeError, match=r"softmax_xent_hvp: .*(float32 or float64|arrays mix)"):
        backend.softmax_xent_hvp(p, backend.asarray(np.ones((3, 4), dtype=np.int32)))


def test_batchnorm_rforward_refuses_bad_shapes(backend):
    x, gamma, _, vgamma, vbeta, rx, _, _ = bn_inputs((6, 4), seed=80)
    mean, var = ref_bn.batchnorm_stats(x)
    x, gamma, vgamma, vbeta, rx, mean, var = _dev(backend, x, gamma, vgamma, vbeta, rx, mean,
                                                  var)
    short = backend.asarray(np.ones(3))
    vecs = dict(gamma=gamma, mean=mean, var=var, vgamma=vgamma, vbeta=vbeta)
    for name in vecs:
        args = dict(vecs, **{name: short})
        with pytest.raises(ValueError, match=fr"batchnorm_rforward: {name} must have shape "
                                             r"\(4,\)"):
            backend.batchnorm_rforward(rx, x, args["gamma"], args["mean"], args["var"], 1e-3,
                                       args["vgamma"], args["vbeta"])
    with pytest.raises(ValueError, match=r"batchnorm_rforward: rx must have shape \(6, 4\)"):
        backend.batchnorm_rforward(backend.asarray(np.ones((6, 5))), x, gamma, mean, var, 1e-3,
                                   vgamma, vbeta)
    with pytest.raises(ValueError, match=r"batchnorm_rforward: x must be a 2-D"):
        backend.batchnorm_rforward(None, backend.asarray(np.ones(4)), gamma, mean, var, 1e-3,
                                   vgamma, vbeta)


def test_batchnorm_rbackward_refuses_bad_shapes(backend):
    x, gamma, _, vgamma, vbeta, rx, g, rg = bn_inputs((6, 4), seed=90)
    mean, var = ref_bn.batchnorm_stats(x)
    _, rxhat, rsigma = ref.batchnorm_rforward(rx, x, gamma, mean, var, 1e-3, vgamma, vbeta)
    names = ("g", "rg", "rxhat", "rsigma", "x", "gamma", "mean", "var", "vgamma")
    arrays = dict(zip(names, _dev(backend, g, rg, rxhat, rsigma, x, gamma, mean, var, vgamma)))

    def call(**change):
        a = dict(arrays, **change)
        bufs = {k: a.pop(k) for k in ("rdgamma", "rdbeta") if k in a}
        return backend.batchnorm_rbackward(a["g"], a["rg"], a["rxhat"], a["rsigma"], a["x"],
                                           a["gamma"], a["mean"], a["var"], 1e-3, a["vgamma"],
                                           **bufs)

    wide, short = backend.asarray(np.ones((6, 5))), backend.asarray(np.ones(3))
    for name in ("g", "rg", "rxhat"):
        with pytest.raises(ValueError, match=fr"batchnorm_rbackward: {name} must have shape "
                                             r"\(6, 4\)"):
            call(**{name: wide})
    for name in ("rsigma", "gamma", "mean", "var", "vgamma", "rdgamma", "rdbeta"):
        with pytest.raises(ValueError, match=fr"batchnorm_rbackward: {name} must have shape "
                                             r"\(4,\)"):
            call(**{name: short})
    with pytest.raises(ValueError, match=r"batchnorm_rbackward: x must be a 2-D"):
        call(x=backend.asarray(np.ones(4)))


@pytest.mark.parametrize("fn", ["batchnorm_rforward", "batchnorm_rbackward"])
def test_compiled_batchnorm_r_passes_refuse_integer_batches(backend, fn):
    if backend.name == "numpy":
        pytest.skip("the reference computes in whatever dtype NumPy promotes to")
    x = backend.asarray(np.arange(12).reshape(6, 2))
    v = backend.asarray(np.ones(2))
    with pytest.raises(TypeError, match=fr"{fn}: .*float32 or float64"):
        if fn == "batchnorm_rforward":
            backend.batchnorm_rforward(None, x, v, v, v, 1e-3, v, v)
        else:
            backend.batchnorm_rbackward(x, x, x, v, x, v, v, v, 1e-3, v)


@pytest.mark.cuda
def test_cuda_curvature_kernels_refuse_host_arrays():
    import ddlib
    from ddlib.backend import cuda_unavailable_reason

    reason = cuda_unavailable_reason()
    if reason is not None:
        pytest.skip(f"cuda backend unavailable: {reason}")
    be = ddlib.get_backend("cuda")
    p = np.full((2, 2), 0.5)
    with pytest.raises(TypeError, match=r"softmax_xent_hvp: r is a host ndarray"):
        be.softmax_xent_hvp(be.asarray(p), p)
    x = be.asarray(np.ones((3, 2)))
    with pytest.raises(TypeError, match=r"batchnorm_rforward: gamma is a host ndarray"):
        be.batchnorm_rforward(None, x, np.ones(2), *_dev(be, np.ones(2), np.ones(2)), 0.0,
                              *_dev(be, np.ones(2), np.ones(2)))
