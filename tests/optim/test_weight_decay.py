"""Weight decay: add_decayed_weights (optax) and the rules' weight_decay= (PyTorch)."""

import numpy as np
import pytest

from ddlib import optim
from tests.optim.test_fused import SHAPES

STEPS = 5


def _w0(dtype=np.float64):
    rng = np.random.default_rng(11)
    return {k: rng.normal(size=s).astype(dtype) for k, s in SHAPES.items()}


def _grad(w):
    return {k: np.cos(v) + 0.5 * v for k, v in w.items()}


def _explicit(rule, steps=STEPS):
    w = {k: v.copy() for k, v in _w0().items()}
    state = rule.init(w)
    for _ in range(steps):
        at = rule.lookahead(w, state) if rule.lookahead else w
        upd, state = rule.update(_grad(at), state, w)
        w = {k: w[k] + upd[k] for k in w}
    return w


def _fused(be, rule, steps=STEPS):
    w = {k: be.asarray(v.copy()) for k, v in _w0().items()}
    point = {k: be.asarray(v.copy()) for k, v in _w0().items()} if rule.lookahead else None
    state = rule.init(w)
    counts, bad = optim.make_counters(w)
    for _ in range(steps):
        at = {k: be.to_numpy(v) for k, v in (point or w).items()}
        g = {k: be.asarray(v) for k, v in _grad(at).items()}
        state = rule.fused(be, w, g, state, bad, point)
    assert not be.to_numpy(counts).any()
    return {k: be.to_numpy(v) for k, v in w.items()}


def _no_bias(params):
    return {k: k != "b" for k in params}


DECAYED = {
    "decay+sgd": lambda: optim.chain(optim.add_decayed_weights(0.1), optim.sgd(0.05)),
    "sgd(weight_decay)": lambda: optim.sgd(0.05, weight_decay=0.1),
    "momentum(weight_decay)": lambda: optim.momentum(0.05, 0.9, weight_decay=0.2),
    "nesterov(weight_decay)": lambda: optim.nesterov(0.05, 0.9, weight_decay=0.2),
    "adagrad(weight_decay)": lambda: optim.adagrad(0.05, weight_decay=0.1),
    "rmsprop(weight_decay)": lambda: optim.rmsprop(0.01, weight_decay=0.1),
    "adam(weight_decay)": lambda: optim.adam(0.01, weight_decay=0.1),
    "masked decay+adam": lambda: optim.chain(optim.add_decayed_weights(0.3, mask=_no_bias),
                                             optim.adam(0.01)),
    "clip+decay+momentum": lambda: optim.chain(optim.clip_by_norm(0.5),
                                               optim.momentum(0.05, weight_decay=0.1)),
}


@pytest.mark.parametrize("name", list(DECAYED))
def test_explicit_and_fused_paths_agree(backend, name):
    want = _explicit(DECAYED[name]())
    got = _fused(backend, DECAYED[name]())
    for k in want:
        assert not np.allclose(want[k], _w0()[k])
        np.testing.assert_allclose(got[k], want[k], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("fused", [False, True])
def test_sgd_weight_decay_is_the_chain_and_the_hand_written_step(backend, fused):
    lr, wd = 0.05, 0.1
    run = (lambda r: _fused(backend, r)) if fused else _explicit
    keyword = run(optim.sgd(lr, weight_decay=wd))
    chained = run(optim.chain(optim.add_decayed_weights(wd), optim.sgd(lr)))
    w = _w0()
    for _ in range(STEPS):
        g = _grad(w)
        w = {k: w[k] - lr * (g[k] + wd * w[k]) for k in w}
    for k in w:
        np.testing.assert_allclose(keyword[k], w[k], rtol=1e-12, atol=1e-14)
        np.testing.assert_array_equal(keyword[k], chained[k])
    # and the decay changed something
    plain = run(optim.sgd(lr))
    assert not np.allclose(plain["W"], keyword["W"])


def test_adam_weight_decay_is_the_coupled_l2_form():
    """torch.optim.Adam(weight_decay=wd): g + wd W goes into both averages (3.44, 3.45)."""
    lr, wd, rf, r, eps = 0.01, 0.1, 0.9, 0.999, 1e-8
    got = _explicit(optim.adam(lr, weight_decay=wd))
    w = _w0()
    f = {k: np.zeros_like(v) for k, v in w.items()}
    a = {k: np.zeros_like(v) for k, v in w.items()}
    for t in range(1, STEPS + 1):
        g = _grad(w)
        for k in w:
            gk = g[k] + wd * w[k]
            a[k] = r * a[k] + (1 - r) * gk * gk
            f[k] = rf * f[k] + (1 - rf) * gk
            at = lr * np.sqrt(1 - r**t) / (1 - rf**t)
            w[k] = w[k] - at * f[k] / (np.sqrt(a[k]) + eps)
    for k in w:
        np.testing.assert_allclose(got[k], w[k], rtol=1e-12)


def test_every_rule_with_weight_decay_is_the_chain():
    for name, make in optim.RULES.items():
        keyword = _explicit(make(weight_decay=0.05))
        chained = _explicit(optim.chain(optim.add_decayed_weights(0.05), make()))
        for k in keyword:
            np.testing.assert_array_equal(keyword[k], chained[k], err_msg=name)


def test_zero_weight_decay_is_the_bare_rule():
    for name, make in optim.RULES.items():
        rule = make(weight_decay=0.0)
        assert rule.name == name
        assert type(rule.init(_w0())).__name__.endswith("State")
    decayed = optim.adam(weight_decay=0.01)
    assert decayed.name == "adam(weight_decay=0.01)" and decayed.kind == "rule"
    state = decayed.init(_w0())
    assert isinstance(state[0], optim.AddDecayedWeightsState) and isinstance(state[1],
                                                                            optim.AdamState)


def test_mask_leaves_the_unselected_parameters_alone():
    t = optim.add_decayed_weights(0.5, mask={"W": True, "b": False})
    w, g = _w0(), _grad(_w0())
    out, state = t.update(g, t.init(w), w)
    np.testing.assert_array_equal(out["b"], g["b"])
    np.testing.assert_allclose(out["W"], g["W"] + 0.5 * w["W"])
    assert state.count == 1 and t.kind == "grad"


@pytest.mark.parametrize("make", [
    lambda wd: optim.add_decayed_weights(wd),
    lambda wd: optim.sgd(0.1, weight_decay=wd),
    lambda wd: optim.momentum(0.1, weight_decay=wd),
    lambda wd: optim.nesterov(0.1, weight_decay=wd),
    lambda wd: optim.adagrad(0.1, weight_decay=wd),
    lambda wd: optim.rmsprop(0.1, weight_decay=wd),
    lambda wd: optim.adam(0.1, weight_decay=wd),
], ids=["add_decayed_weights", "sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"])
@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf")])
def test_bad_weight_decay_names_the_parameter(make, bad):
    with pytest.raises(ValueError, match="weight_decay must be a finite number >= 0"):
        make(bad)


def test_weight_decay_must_be_a_number_and_the_mask_must_fit():
    with pytest.raises(TypeError, match="weight_decay must be a real number"):
        optim.sgd(0.1, weight_decay="0.1")
    with pytest.raises(TypeError, match="mask must be None, a dict or a callable"):
        optim.add_decayed_weights(0.1, mask=[True])
    t = optim.add_decayed_weights(0.1, mask={"W": True})
    with pytest.raises(ValueError, match=r"mask must name every parameter \['W', 'b'\]"):
        t.init(_w0())
    t = optim.add_decayed_weights(0.1)
    with pytest.raises(ValueError, match="needs the parameters"):
        t.update(_grad(_w0()), t.init(_w0()))
