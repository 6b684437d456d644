"""Issue 13: every kernel wrapper checks the shapes, dtypes, layout and buffer lengths its
compiled code relies on, and raises one clear error before any kernel touches memory.

The calls that used to corrupt the heap (the cpu activation backward with a gradient of
another shape) run in a subprocess: if the check regressed, the test fails instead of
taking pytest down with it.  The rest run in-process on every backend (``backend``
fixture; cuda under the simulator with ``-m cuda``).
"""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import ddlib
from ddlib.backend.numpy_ref.core import ACTIVATIONS

STEP_STATE = {  # kernel -> (state argument names, scalar arguments after g)
    "sgd_step": ((), (0.1,)),
    "momentum_step": (("v",), (0.1, 0.9)),
    "nesterov_step": (("v",), (0.1, 0.9)),
    "delta_bar_delta_step": (("bar", "gain"), (0.1, 0.1, 0.5, 0.7)),
    "adagrad_step": (("a",), (0.1, 1e-8)),
    "rmsprop_step": (("a",), (0.1, 0.9, 1e-8)),
    "rmsprop_nesterov_step": (("v", "a"), (0.1, 0.9, 0.9, 1e-8)),
    "adadelta_step": (("a", "d"), (1.0, 0.9, 1e-6)),
    "adam_step": (("f", "a"), (1e-3, 0.9, 0.999, 1e-8)),
}


def _run_isolated(code):
    """Run ``code`` in a fresh interpreter on the cpu backend; return (rc, stdout+stderr)."""
    prog = "import numpy as np, ddlib\nddlib.set_backend('cpu')\n" + textwrap.dedent(code)
    r = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, timeout=300)
    return r.returncode, r.stdout + r.stderr


# --- the heap overrun of the issue, each case in its own process -------------------------


@pytest.mark.parametrize("x_shape,g_shape", [((2000, 4), (2, 2)), ((20, 4), (20, 5)),
                                             ((20, 4), (80,))])
def test_activation_backward_with_a_gradient_of_another_shape_is_refused(x_shape, g_shape):
    rc, out = _run_isolated(f"""
        from ddlib.layers import ReLU, Sigmoid, Tanh, LeakyReLU, Identity, HardTanh
        x = np.random.default_rng(0).normal(size={x_shape})
        for cls in (ReLU, Sigmoid, Tanh, LeakyReLU, Identity, HardTanh):
            layer = cls()
            layer.forward(x)
            try:
                layer.backward(np.ones({g_shape}))
            except ValueError as e:
                assert "shape" in str(e) and str({x_shape}) in str(e), str(e)
            else:
                raise SystemExit(f"{{cls.__name__}}: accepted g of shape {g_shape}")
        print("REFUSED")
    """)
    assert rc == 0 and "REFUSED" in out, out


def test_optimizer_with_state_from_a_smaller_net_is_refused_before_the_kernel_runs():
    rc, out = _run_isolated("""
        from ddlib.layers import mlp
        from ddlib.optim import Optimizer, adam
        small, big = mlp([4, 3, 2], rng=0), mlp([40, 30, 2], rng=0)
        s = Optimizer(small, adam(1e-3))
        b = Optimizer(big, adam(1e-3))
        try:
            b.load_state_dict(s.state_dict())
        except ValueError as e:
            print("REFUSED", e)
        else:
            raise SystemExit("accepted a smaller net's state")
    """)
    assert rc == 0 and "REFUSED" in out, out


# --- core kernels, every backend ---------------------------------------------------------


def _a(be, shape, dtype=np.float64, seed=0):
    return be.asarray(np.random.default_rng(seed).normal(size=shape).astype(dtype))


@pytest.mark.parametrize("kind", ACTIVATIONS)
def test_act_backward_checks_every_buffer(backend, kind):
    be = backend
    x = _a(be, (6, 4))
    y = be.act_forward(kind, x)
    for bad in ((2, 2), (6, 5), (24,)):
        with pytest.raises(ValueError, match=r"act_backward: g must have shape \(6, 4\)"):
            be.act_backward(kind, x, y, _a(be, bad))
    with pytest.raises(ValueError, match=r"act_backward: y must have shape"):
        be.act_backward(kind, x, _a(be, (3, 4)), _a(be, (6, 4)))
    with pytest.raises(ValueError, match=r"act_backward: out must have shape"):
        be.act_backward(kind, x, y, _a(be, (6, 4)), out=_a(be, (2, 4)))
    with pytest.raises(ValueError, match=r"act_forward: out must have shape \(6, 4\)"):
        be.act_forward(kind, x, out=_a(be, (3, 4)))
    be.act_backward(kind, x, y, _a(be, (6, 4)), out=_a(be, (6, 4)))  # the right shapes pass


def test_fused_linear_kernels_check_the_bias_and_gradient(backend):
    be = backend
    x, W = _a(be, (5, 3)), _a(be, (3, 4))
    with pytest.raises(ValueError, match=r"linear_act: b must have shape \(4,\)"):
        be.linear_act("relu", x, W, _a(be, (2,)))
    with pytest.raises(ValueError, match=r"linear_act: inner dimensions"):
        be.linear_act("relu", x, _a(be, (4, 4)), _a(be, (4,)))
    with pytest.raises(ValueError, match=r"linear: b must have shape \(4,\)"):
        be.linear(x, W, _a(be, (7,)))
    z = _a(be, (5, 4))
    with pytest.raises(ValueError, match=r"act_backward_colsum: g must have shape \(5, 4\)"):
        be.act_backward_colsum("relu", z, z, _a(be, (5, 3)))
    with pytest.raises(ValueError, match=r"act_backward_colsum: db must have shape \(4,\)"):
        be.act_backward_colsum("relu", z, z, z, db=_a(be, (2,)))
    with pytest.raises(ValueError, match=r"act_backward_colsum: x must be a 2-D"):
        be.act_backward_colsum("relu", _a(be, (20,)), _a(be, (20,)), _a(be, (20,)))
    with pytest.raises(ValueError, match=r"bias_add: b must have shape \(4,\)"):
        be.bias_add(z, _a(be, (3,)))
    with pytest.raises(ValueError, match=r"bias_add: out must have shape \(5, 4\)"):
        be.bias_add(z, _a(be, (4,)), out=_a(be, (5, 3)))
    with pytest.raises(ValueError, match=r"col_sum: out must have shape \(4,\)"):
        be.col_sum(z, out=_a(be, (5,)))


@pytest.mark.parametrize("fn,trans", [("matmul", (False, False)), ("matmul_tn", (True, False)),
                                      ("matmul_nt", (False, True))])
def test_matmul_checks_out_and_inner_dimensions(backend, fn, trans):
    be = backend
    a = _a(be, (3, 5) if trans[0] else (5, 3))
    b = _a(be, (4, 3) if trans[1] else (3, 4))
    with pytest.raises(ValueError, match=fr"{fn}: out must have shape \(5, 4\)"):
        getattr(be, fn)(a, b, out=_a(be, (5, 3)))
    with pytest.raises(ValueError, match=fr"{fn}: inner dimensions differ"):
        getattr(be, fn)(a, _a(be, (6, 6)))
    assert tuple(getattr(be, fn)(a, b, out=_a(be, (5, 4))).shape) == (5, 4)


def test_softmax_xent_checks_labels(backend):
    be = backend
    logits = _a(be, (4, 3))
    good = be.asarray(np.array([0, 2, 1, 0], dtype=np.int64))
    with pytest.raises(ValueError, match=r"softmax_xent: labels must have shape \(4,\)"):
        be.softmax_xent(logits, be.asarray(np.zeros(5, dtype=np.int64)))
    with pytest.raises(ValueError, match=r"softmax_xent_backward: labels must have shape"):
        be.softmax_xent_backward(logits, be.asarray(np.zeros((4, 1), dtype=np.int64)))
    with pytest.raises(TypeError, match=r"labels must be integer"):
        be.softmax_xent(logits, be.asarray(np.zeros(4)))
    with pytest.raises(ValueError, match=r"softmax: x must be a 2-D"):
        be.softmax(_a(be, (12,)))
    with pytest.raises(ValueError, match=r"mse: targets must have shape \(4, 3\)"):
        be.mse(logits, _a(be, (4, 2)))
    loss, _ = be.softmax_xent(logits, good)
    assert np.isfinite(loss)


@pytest.mark.parametrize("backend_name", ["numpy", "cpu"])
def test_host_softmax_xent_refuses_a_label_out_of_range(backend_name):
    be = ddlib.get_backend(backend_name)
    logits = np.zeros((3, 4))
    for labels in ([0, 4, 1], [0, 1000000, 1], [-1, 0, 0]):
        labels = np.array(labels)
        with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\)"):
            be.softmax_xent(logits, labels)
        with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\)"):
            be.softmax_xent_backward(logits, labels)


# --- optimizer, clip, axpy, ema kernels --------------------------------------------------


def _step_args(be, names, shape, wrong=None, wrong_shape=(2,)):
    # non-negative values: the accumulators of squared gradients (a, d) are square-rooted
    return {n: be.asarray(np.abs(np.random.default_rng(i).normal(
                size=wrong_shape if n == wrong else shape)))
            for i, n in enumerate(("w",) + names + ("g",))}


@pytest.mark.parametrize("kernel", sorted(STEP_STATE))
def test_step_kernels_check_every_array_and_the_counter(backend, kernel):
    be = backend
    names, scalars = STEP_STATE[kernel]
    fn = getattr(be, kernel)

    def call(arrs, **kw):
        order = ("w",) + names + ("g",)
        return fn(*(arrs[n] for n in order), *scalars, **kw)

    for wrong in names + ("g",):
        arrs = _step_args(be, names, (3, 4), wrong=wrong)
        with pytest.raises(ValueError, match=fr"{kernel}: {wrong} must have shape \(3, 4\)"):
            call(arrs)
    counter = be.asarray(np.zeros(2, dtype=np.int64))
    for bad in (counter[0:0], counter[0:2]):
        with pytest.raises(ValueError, match=fr"{kernel}: bad must be a counter of shape \(1,\)"):
            call(_step_args(be, names, (3, 4)), bad=bad)
    if names:
        arrs = _step_args(be, names, (3, 4))
        arrs[names[0]] = be.asarray(np.zeros((3, 4), dtype=np.float32))
        with pytest.raises(TypeError, match=fr"{names[0]} must have dtype float64"):
            call(arrs)
    call(_step_args(be, names, (3, 4)), bad=counter[0:1])  # the right shapes pass


@pytest.mark.parametrize("backend_name", ["cpu"])
def test_cpu_step_kernels_refuse_a_strided_parameter(backend_name):
    be = ddlib.get_backend(backend_name)
    w = np.zeros((4, 3)).T
    with pytest.raises(TypeError, match=r"sgd_step: w must be C-contiguous"):
        be.sgd_step(w, np.zeros((3, 4)), 0.1)


def test_clip_axpy_ema_kernels_check_their_buffers(backend):
    be = backend
    g = [_a(be, (3, 4)), _a(be, (5,))]
    counters = be.asarray(np.zeros(4, dtype=np.int64))
    bad = [counters[0:1], counters[1:2]]
    with pytest.raises(ValueError, match=r"clip_values: 2 gradients need 2 counters"):
        be.clip_values(g, -1.0, 1.0, counters[2:3], bad[:1])
    with pytest.raises(ValueError, match=r"clip_values: clipped must be a counter of shape"):
        be.clip_values(g, -1.0, 1.0, counters[2:4], bad)
    with pytest.raises(ValueError, match=r"clip_values: bad\[1\] must be a counter of shape"):
        be.clip_values(g, -1.0, 1.0, counters[2:3], [bad[0], counters[1:3]])
    norms = be.asarray(np.zeros(3))
    with pytest.raises(ValueError, match=r"clip_norms: 2 gradients need 2 counters and 1 norms"):
        be.clip_norms(g, 1.0, [norms[0:1], norms[1:2]], bad)
    with pytest.raises(ValueError, match=r"clip_norms: norms\[0\] must have shape \(1,\)"):
        be.clip_norms(g, 1.0, [norms[0:2]], bad)
    with pytest.raises(ValueError, match=r"axpy: x must have shape \(3, 4\) \(the shape of y\)"):
        be.axpy(g[0], 0.1, _a(be, (4, 3)))
    with pytest.raises(ValueError, match=r"axpy: bad must be a counter"):
        be.axpy(g[0], 0.1, _a(be, (3, 4)), bad=counters[0:0])
    with pytest.raises(ValueError, match=r"ema_update: w must have shape \(5,\) \(the shape of avg\)"):
        be.ema_update(g[1], _a(be, (3,)), 0.5)
    be.clip_values(g, -1.0, 1.0, counters[2:3], bad)  # the right shapes pass
    be.clip_norms(g, 1.0, [norms[0:1]], bad)


# --- batch normalization -----------------------------------------------------------------


def test_batchnorm_kernels_check_gamma_beta_and_x(backend):
    be = backend
    x = _a(be, (6, 4))
    gamma, beta = _a(be, (4,)), _a(be, (4,))
    with pytest.raises(ValueError, match=r"gamma must have shape \(4,\)"):
        be.batchnorm_forward(x, _a(be, (3,)), beta, 1e-5)
    with pytest.raises(ValueError, match=r"beta must have shape \(4,\)"):
        be.batchnorm_forward(x, gamma, _a(be, (5,)), 1e-5)
    with pytest.raises(ValueError, match=r"x must be a 2-D batch"):
        be.batchnorm_forward(_a(be, (24,)), gamma, beta, 1e-5)
    out, mean, var = be.batchnorm_forward(x, gamma, beta, 1e-5)
    with pytest.raises(ValueError, match=r"g has shape \(6, 3\)"):
        be.batchnorm_backward(_a(be, (6, 3)), x, gamma, mean, var, 1e-5)
    with pytest.raises(ValueError, match=r"mean must have shape \(4,\)"):
        be.batchnorm_infer(x, gamma, beta, _a(be, (2,)), var, 1e-5)
    if be.name != "numpy":
        with pytest.raises(ValueError, match=r"dx must .*shape \(6, 4\)"):
            be.batchnorm_backward(x, x, gamma, mean, var, 1e-5, dx=_a(be, (6, 3)))


def test_compiled_step_kernels_refuse_a_strided_array(backend):
    be = backend
    if be.name == "numpy":
        pytest.skip("NumPy needs no flat views")
    w = be.asarray(np.zeros((4, 6)))[:, ::2]
    with pytest.raises(TypeError, match=r"sgd_step: w must be C-contiguous"):
        be.sgd_step(w, be.asarray(np.zeros((4, 3))), 0.1)
    g = be.asarray(np.zeros((4, 6)))[:, ::2]
    with pytest.raises(TypeError, match=r"scale_inplace: g must be C-contiguous"):
        be.scale_inplace(g, 2.0)


@pytest.mark.cuda
def test_cuda_softmax_xent_makes_an_out_of_range_label_a_nan_loss():
    from ddlib.backend import cuda_unavailable_reason

    if cuda_unavailable_reason() is not None:
        pytest.skip(cuda_unavailable_reason())
    be = ddlib.get_backend("cuda")
    logits = be.asarray(np.zeros((3, 4)))
    loss, _ = be.softmax_xent(logits, be.asarray(np.array([0, 4, 1])))
    assert np.isnan(loss)
    loss, _ = be.softmax_xent(logits, be.asarray(np.array([0, 3, 1])))
    assert np.isclose(loss, np.log(4))


@pytest.mark.cuda
def test_cuda_take_rows_checks_out_and_never_reads_past_x():
    from ddlib.backend import cuda_unavailable_reason

    if cuda_unavailable_reason() is not None:
        pytest.skip(cuda_unavailable_reason())
    be = ddlib.get_backend("cuda")
    x = be.asarray(np.arange(12.0).reshape(4, 3))
    idx = be.asarray(np.array([3, 0]))
    with pytest.raises(ValueError, match=r"take_rows: out must have shape \(2, 3\)"):
        be.take_rows(x, idx, out=be.asarray(np.zeros((3, 3))))
    out = be.asarray(np.full((2, 3), -1.0))
    got = be.to_numpy(be.take_rows(x, be.asarray(np.array([1, 7])), out=out))
    np.testing.assert_array_equal(got, [[3, 4, 5], [-1, -1, -1]])


@pytest.mark.parametrize("name", ["numpy", "cpu"])
def test_float16_is_refused_as_the_message_says(name):
    """need_float and the step fast path accept exactly float32 and float64."""
    be = ddlib.get_backend(name)
    w = np.zeros(4, np.float16)
    with pytest.raises(TypeError, match="w must be a float32 or float64 array, got dtype float16"):
        be.sgd_step(w, np.ones(4, np.float16), 0.1)
