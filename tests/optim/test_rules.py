"""Each rule's explicit update against a scalar transcription of its equation (Sec. 3.5)."""

import math

import numpy as np
import pytest

from ddlib import optim

STEPS = 25


def _grad(w):
    # a gradient that depends on where it is taken, so lookahead points matter
    fns = {"a": lambda x: 3.0 * x - 1.0, "b": lambda x: np.sin(2.0 * x) + 0.5 * x**2}
    return {k: fns[k](x) for k, x in w.items()}


def _w0():
    rng = np.random.default_rng(1)
    return {"a": rng.normal(size=(3, 4)), "b": rng.normal(size=(5,))}


def _explicit(rule, steps=STEPS):
    w = {k: v.copy() for k, v in _w0().items()}
    state = rule.init(w)
    for _ in range(steps):
        at = rule.lookahead(w, state) if rule.lookahead else w
        upd, state = rule.update(_grad(at), state, w)
        for k in w:
            w[k] = w[k] + upd[k]
    return w, state


def _scalar(step_fn, n_state, lookahead=None, steps=STEPS):
    """Run a per-entry rule written with Python floats: step_fn(t, w, g, *s) -> (w, *s)."""
    out = {}
    for k, arr in _w0().items():
        flat = arr.ravel().copy()
        res = np.empty_like(flat)
        for i, wi in enumerate(flat):
            s = [0.0] * n_state
            for t in range(steps):
                at = lookahead(wi, *s) if lookahead else wi
                gi = float(_grad({k: np.array([at])})[k][0])
                wi, *s = step_fn(t, wi, gi, *s)
            res[i] = wi
        out[k] = res.reshape(arr.shape)
    return out


def _close(w, ref):
    for k in ref:
        np.testing.assert_allclose(w[k], ref[k], rtol=1e-12, atol=1e-13)


def test_sgd():
    _close(_explicit(optim.sgd(0.05))[0], _scalar(lambda t, w, g: (w - 0.05 * g,), 0))


def test_momentum():
    def step(t, w, g, v):
        v = 0.8 * v - 0.05 * g
        return w + v, v

    _close(_explicit(optim.momentum(0.05, 0.8))[0], _scalar(step, 1))


def test_nesterov_takes_gradient_at_lookahead():
    def step(t, w, g, v):
        v = 0.8 * v - 0.05 * g
        return w + v, v

    got = _explicit(optim.nesterov(0.05, 0.8))[0]
    _close(got, _scalar(step, 1, lookahead=lambda w, v: w + 0.8 * v))
    # and it is not plain momentum
    assert not np.allclose(got["a"], _explicit(optim.momentum(0.05, 0.8))[0]["a"])


def test_nesterov_matches_pytorch_form():
    """PyTorch: v <- beta v + g(p); p <- p - lr (g + beta v), with p our lookahead point."""
    lr, beta = 0.05, 0.8
    rule = optim.nesterov(lr, beta)
    w = _w0()
    state = rule.init(w)
    p = {k: v.copy() for k, v in w.items()}
    vt = {k: np.zeros_like(v) for k, v in w.items()}
    for _ in range(STEPS):
        g = _grad(p)
        for k in p:
            vt[k] = beta * vt[k] + g[k]
            p[k] = p[k] - lr * (g[k] + beta * vt[k])
        at = rule.lookahead(w, state)
        upd, state = rule.update(_grad(at), state, w)
        w = {k: w[k] + upd[k] for k in w}
    look = rule.lookahead(w, state)
    for k in p:
        np.testing.assert_allclose(look[k], p[k], rtol=1e-10, atol=1e-12)


def test_momentum_matches_pytorch_form():
    lr, beta = 0.05, 0.8
    w, _ = _explicit(optim.momentum(lr, beta))
    p = _w0()
    vt = {k: np.zeros_like(v) for k, v in p.items()}
    for _ in range(STEPS):
        g = _grad(p)
        for k in p:
            vt[k] = beta * vt[k] + g[k]
            p[k] = p[k] - lr * vt[k]
    _close(w, p)


def test_delta_bar_delta():
    kappa, phi, theta, lr = 0.05, 0.2, 0.7, 0.02

    def step(t, w, g, bar, gain):
        if bar * g > 0:
            gain += kappa
        elif bar * g < 0:
            gain *= 1 - phi
        return w - lr * gain * g, (1 - theta) * g + theta * bar, gain

    def step0(t, w, g, bar, gain):  # gains start at 1
        return step(t, w, g, bar, 1.0 if t == 0 else gain)

    got, state = _explicit(optim.delta_bar_delta(lr, kappa, phi, theta))
    _close(got, _scalar(step0, 2))
    assert any((v != 1).any() for v in state.gain.values())


def test_adagrad_eq_3_40():
    def step(t, w, g, a):
        a = a + g * g
        return w - 0.1 * g / (math.sqrt(a) + 1e-8), a

    _close(_explicit(optim.adagrad(0.1))[0], _scalar(step, 1))


def test_rmsprop_eq_3_41():
    def step(t, w, g, a):
        a = 0.9 * a + 0.1 * g * g
        return w - 0.01 * g / (math.sqrt(a) + 1e-8), a

    _close(_explicit(optim.rmsprop(0.01, rho=0.9))[0], _scalar(step, 1))


def test_rmsprop_nesterov_eq_3_42():
    def step(t, w, g, v, a):
        a = 0.9 * a + 0.1 * g * g
        v = 0.8 * v - 0.01 * g / (math.sqrt(a) + 1e-8)
        return w + v, v, a

    got = _explicit(optim.rmsprop_nesterov(0.01, beta=0.8, rho=0.9))[0]
    _close(got, _scalar(step, 2, lookahead=lambda w, v, a: w + 0.8 * v))


def test_adadelta_eq_3_43():
    rho, eps = 0.95, 1e-6

    def step(t, w, g, a, d):
        a = rho * a + (1 - rho) * g * g
        dw = -math.sqrt(d + eps) / math.sqrt(a + eps) * g
        d = rho * d + (1 - rho) * dw * dw
        return w + dw, a, d

    _close(_explicit(optim.adadelta())[0], _scalar(step, 2))


def test_adadelta_leaves_zero():
    """With eps inside the numerator's root, the first step is not zero (Zeiler's form)."""
    w, state = _explicit(optim.adadelta(), steps=1)
    assert all(np.all(np.abs(w[k] - _w0()[k]) > 0) for k in w)
    assert all((d > 0).all() for d in state.mean_sq_delta.values())


@pytest.mark.parametrize("bias_correction", [True, False])
def test_adam_eqs_3_44_to_3_46(bias_correction):
    lr, rf, r, eps = 0.01, 0.9, 0.999, 1e-8

    def step(t, w, g, f, a):
        a = r * a + (1 - r) * g * g
        f = rf * f + (1 - rf) * g
        at = lr * math.sqrt(1 - r ** (t + 1)) / (1 - rf ** (t + 1)) if bias_correction else lr
        return w - at * f / (math.sqrt(a) + eps), f, a

    got = _explicit(optim.adam(lr, bias_correction=bias_correction))[0]
    _close(got, _scalar(step, 2))


def test_adam_matches_pytorch_form_up_to_eps():
    """PyTorch's corrected moments equal ours with eps scaled by sqrt(1 - rho^t)."""
    lr, rf, r = 0.01, 0.9, 0.999
    w, _ = _explicit(optim.adam(lr, eps=1e-30))
    p = _w0()
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v2 = {k: np.zeros_like(v) for k, v in p.items()}
    for t in range(1, STEPS + 1):
        g = _grad(p)
        for k in p:
            m[k] = rf * m[k] + (1 - rf) * g[k]
            v2[k] = r * v2[k] + (1 - r) * g[k] ** 2
            p[k] = p[k] - lr * (m[k] / (1 - rf**t)) / (np.sqrt(v2[k] / (1 - r**t)) + 1e-30)
    for k in p:
        np.testing.assert_allclose(w[k], p[k], rtol=1e-10)


def test_adam_first_step_has_size_lr():
    """Bias correction makes the first step lr g / (|g| + eps / sqrt(1 - rho)), about lr."""
    rule = optim.adam(0.01)
    w = _w0()
    g = _grad(w)
    upd, _ = rule.update(g, rule.init(w), w)
    for k in w:
        want = -0.01 * g[k] / (np.abs(g[k]) + 1e-8 / math.sqrt(1 - 0.999))
        np.testing.assert_allclose(upd[k], want, rtol=1e-12)
    rule = optim.adam(0.01, bias_correction=False)
    upd, _ = rule.update(g, rule.init(w), w)
    for k in w:
        want = -0.01 * 0.1 * g[k] / (math.sqrt(1 - 0.999) * np.abs(g[k]) + 1e-8)
        np.testing.assert_allclose(upd[k], want, rtol=1e-12)


def test_every_rule_accepts_a_schedule():
    sched = optim.exponential_decay(0.05, k=0.1)
    for name, make in optim.RULES.items():
        const, _ = _explicit(make(0.05), steps=1)
        w, state = _explicit(make(sched), steps=1)
        _close(w, const)  # at step 0 the schedule gives lr0
        assert state.count == 1, name


def test_schedule_changes_the_rate():
    seen = []

    def sched(step):
        seen.append(step)
        return 0.1 / (1 + step)

    w, _ = _explicit(optim.sgd(sched), steps=3)
    assert seen == [0, 1, 2]
    _close(w, _scalar(lambda t, w, g: (w - 0.1 / (1 + t) * g,), 0, steps=3))


def test_state_is_printable_namedtuple():
    for name, make in optim.RULES.items():
        rule = make()
        s = rule.init(_w0())
        assert hasattr(s, "_fields") and "count" in s._fields, name
        assert type(s).__name__ in repr(s)


@pytest.mark.parametrize("make,kw,param", [
    (optim.sgd, dict(lr=0.0), "lr"),
    (optim.sgd, dict(lr=-1.0), "lr"),
    (optim.momentum, dict(lr=float("nan")), "lr"),
    (optim.momentum, dict(beta=1.0), "beta"),
    (optim.nesterov, dict(beta=-0.1), "beta"),
    (optim.rmsprop, dict(rho=1.5), "rho"),
    (optim.rmsprop, dict(eps=0.0), "eps"),
    (optim.rmsprop_nesterov, dict(beta=1.0), "beta"),
    (optim.rmsprop_nesterov, dict(rho=1.0), "rho"),
    (optim.adagrad, dict(eps=-1e-8), "eps"),
    (optim.adadelta, dict(rho=1.0), "rho"),
    (optim.adadelta, dict(eps=0.0), "eps"),
    (optim.adam, dict(rho_f=1.0), "rho_f"),
    (optim.adam, dict(rho=-0.5), "rho"),
    (optim.adam, dict(eps=0.0), "eps"),
    (optim.adam, dict(lr=0), "lr"),
    (optim.delta_bar_delta, dict(phi=1.0), "phi"),
    (optim.delta_bar_delta, dict(theta=1.0), "theta"),
    (optim.delta_bar_delta, dict(kappa=-0.1), "kappa"),
])
def test_bad_hyperparameters_name_the_parameter(make, kw, param):
    with pytest.raises(ValueError, match=param):
        make(**kw)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 0.0, -0.1])
def test_schedule_giving_a_bad_rate_raises(value):
    rule = optim.adam(lambda step: value)
    w = _w0()
    with pytest.raises(ValueError, match="lr"):
        rule.update(_grad(w), rule.init(w), w)
