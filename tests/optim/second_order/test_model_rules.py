"""Second-order rules on models: Optimizer.step(closure), L-BFGS, Hessian-free, SecondOrder."""

import numpy as np
import pytest
import scipy.optimize

import ddlib
from ddlib.errors import DivergenceError
from ddlib.layers import Linear, Sequential, mlp
from ddlib.losses import SoftmaxCrossEntropy
from ddlib.optim import Optimizer, chain, clip_by_norm, sgd
from ddlib.optim.second_order import (
    LBFGS,
    Flattener,
    HessianFree,
    SecondOrder,
    closure,
    hessian_free_rule,
    lbfgs_rule,
    minimize_rule,
)


def _data(n=60, d=5, k=3, seed=0):
    g = np.random.default_rng(seed)
    X = g.normal(size=(n, d))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int) + (X[:, 2] > 1)
    return X, y


def _flat(net):
    return Flattener(net.params).flatten(net.params)


def test_step_needs_a_closure_and_the_rules_do_not_chain():
    net = mlp([5, 4, 3], rng=0)
    opt = LBFGS(net)
    with pytest.raises(TypeError, match="closure"):
        opt.step()
    with pytest.raises(ValueError, match="cannot be chained"):
        chain(clip_by_norm(1.0), lbfgs_rule())
    with pytest.raises(TypeError, match="closure must be callable"):
        opt.step(closure=3)


def test_a_first_order_rule_accepts_a_closure_as_in_torch():
    X, y = _data()
    a, b = mlp([5, 4, 3], rng=1), mlp([5, 4, 3], rng=1)
    loss = SoftmaxCrossEntropy()
    c = closure(a, loss, X, y)
    got = Optimizer(a, sgd(0.1)).step(c)
    want = c.__class__(b, SoftmaxCrossEntropy(), X, y)()
    Optimizer(b, sgd(0.1)).step()
    assert got == want
    np.testing.assert_array_equal(_flat(a), _flat(b))


def test_lbfgs_on_logistic_regression_reaches_scipys_minimum():
    X, y = _data(seed=2)
    net = Sequential(Linear(5, 3, rng=0))
    loss = SoftmaxCrossEntropy()
    c = closure(net, loss, X, y)
    fl = Flattener(net.params)
    lam = 1e-2

    # an L2 penalty makes the minimum unique: add it in the closure, as a user would
    def penalized():
        f = c()
        for _, layer, k in net.named_parameters():
            layer.grads[k] += lam * layer.params[k]
        return f + 0.5 * lam * sum(float((p ** 2).sum()) for p in net.params.values())
    penalized.curvature = c.curvature

    w0 = _flat(net)

    def fg(w):
        fl.assign(net.params, w)
        f = penalized()
        return f, fl.flatten(net.grads)

    ref = scipy.optimize.minimize(fg, w0, jac=True, method="L-BFGS-B",
                                  options={"maxcor": 10, "gtol": 1e-10, "ftol": 1e-15})
    fl.assign(net.params, w0)
    opt = LBFGS(net, m=10, max_iter=50, tolerance_grad=1e-10, tolerance_change=1e-14)
    for _ in range(5):
        last = opt.step(penalized)
    assert abs(last - ref.fun) <= 1e-9 * abs(ref.fun)
    np.testing.assert_allclose(_flat(net), ref.x, atol=1e-5)


def test_lbfgs_resumes_bit_for_bit_from_its_state_dict():
    X, y = _data(seed=3)
    loss = SoftmaxCrossEntropy()
    a = mlp([5, 6, 3], activation="tanh", rng=4)
    opt = LBFGS(a, max_iter=5)
    ca = closure(a, loss, X, y)
    opt.step(ca)
    saved_model, saved_opt = a.state_dict(), opt.state_dict()
    opt.step(ca)
    opt.step(ca)
    b = mlp([5, 6, 3], activation="tanh", rng=99)
    b.load_state_dict(saved_model)
    opt_b = LBFGS(b, max_iter=5)
    opt_b.load_state_dict(saved_opt)
    cb = closure(b, loss, X, y)
    opt_b.step(cb)
    opt_b.step(cb)
    np.testing.assert_array_equal(_flat(a), _flat(b))


@pytest.mark.parametrize("kind", ["gauss-newton", "hessian"])
def test_hessian_free_decreases_the_loss_every_step(kind):
    X, y = _data(n=80, seed=5)
    net = mlp([5, 8, 3], activation="tanh", rng=6)
    opt = HessianFree(net, damping=1.0, curvature=kind)
    c = closure(net, SoftmaxCrossEntropy(), X, y)
    losses = [opt.step(c) for _ in range(8)]
    assert all(b <= a for a, b in zip(losses, losses[1:]))
    assert losses[-1] < 0.5 * losses[0]
    s = opt.state
    assert s.cg_iters >= 1 and s.total_cg_iters >= 8 and np.abs(s.previous).max() > 0
    # one product per CG iteration, plus one per step for the warm start's residual
    assert c.n_products == s.total_cg_iters + s.count


def test_hessian_free_adapts_the_damping_by_the_reduction_ratio():
    X, y = _data(n=80, seed=7)
    net = mlp([5, 8, 3], activation="tanh", rng=8)
    opt = HessianFree(net, damping=10.0)
    c = closure(net, SoftmaxCrossEntropy(), X, y)
    for _ in range(4):
        before = opt.state.damping
        opt.step(c)
        s = opt.state
        if s.rho > 0.75:
            assert s.damping < before
        elif s.rho < 0.25:
            assert s.damping > before
        else:
            assert s.damping == before


def test_hessian_free_needs_the_batch_for_its_curvature():
    X, y = _data()
    net = mlp([5, 4, 3], rng=0)
    loss = SoftmaxCrossEntropy()
    c = closure(net, loss, X, y)
    w0 = _flat(net)
    with pytest.raises(TypeError, match="second_order.closure"):
        HessianFree(net).step(lambda: c())
    np.testing.assert_array_equal(_flat(net), w0)   # nothing moved


def test_a_failing_evaluation_loses_nothing():
    X, y = _data()
    net = mlp([5, 4, 3], activation="tanh", rng=1)
    c = closure(net, SoftmaxCrossEntropy(), X, y)
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("evaluation failed")
        return c()

    w0 = _flat(net)
    opt = LBFGS(net)
    with pytest.raises(RuntimeError, match="evaluation failed"):
        opt.step(flaky)
    np.testing.assert_array_equal(_flat(net), w0)
    assert opt.steps == 0


def test_a_non_finite_loss_stops_with_the_step_and_the_loss():
    net = mlp([5, 4, 3], rng=1)
    opt = HessianFree(net)
    with pytest.raises(DivergenceError, match="step 0.*nan"):
        opt.step(lambda: float("nan"))


def test_second_order_runs_minimize_methods_on_a_model():
    X, y = _data(n=40, seed=9)
    loss = SoftmaxCrossEntropy()
    for method in ("bfgs", "polak-ribiere", "newton"):
        net = mlp([5, 3, 3], activation="tanh", rng=2)
        opt = SecondOrder(net, method, max_iter=10)
        c = closure(net, loss, X, y)
        first = opt.step(c)
        second = opt.step(c)
        assert second < first, method
    net = mlp([5, 3, 3], activation="tanh", rng=2)
    opt = SecondOrder(net, "bfgs", max_iter=3)
    opt.step(closure(net, loss, X, y))
    G = opt.state.hess_inv
    assert G.shape == (Flattener(net.params).size,) * 2 and not np.allclose(G, np.eye(len(G)))
    with pytest.raises(ValueError, match="dense Hessian"):
        minimize_rule("saddle-free-newton")


@pytest.mark.parametrize("bad, match", [
    (dict(damping=0.0), "damping"), (dict(max_cg=0), "max_cg"), (dict(decay=1.0), "decay"),
    (dict(curvature="exact"), "curvature"), (dict(boost=1.0), "boost"),
])
def test_hessian_free_rejects_bad_options(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        hessian_free_rule(**bad)


@pytest.mark.parametrize("bad, match", [
    (dict(m=0), "m"), (dict(lr=-1.0), "lr"), (dict(line_search="armijo"), "line_search"),
    (dict(max_iter=0), "max_iter"),
])
def test_lbfgs_rejects_bad_options(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        lbfgs_rule(**bad)


def test_float32_models_train_with_lbfgs_and_hessian_free():
    X, y = _data(seed=11)
    loss = SoftmaxCrossEntropy()
    for make in (lambda n: LBFGS(n, max_iter=5), lambda n: HessianFree(n)):
        net = mlp([5, 6, 3], activation="tanh", rng=3, dtype=np.float32)
        with ddlib.use_backend("cpu"):
            opt = make(net)
            c = closure(net, loss, X, y)
            a = opt.step(c)
            b = opt.step(c)
        assert b < a
        assert all(p.dtype == np.float32 for p in net.params.values())
