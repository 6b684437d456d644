"""Issue 13: every load_state_dict validates keys, rule, structure, shapes and dtypes and
refuses a mismatch before changing anything (a smaller net's state used to make the cpu
fused kernels write past their buffers)."""

import numpy as np
import pytest

from ddlib.backend.arrays import tree_leaves, tree_to_host
from ddlib.layers import BatchNorm, Linear, Sequential, mlp
from ddlib.optim import Optimizer, PolyakAverage, adam, chain, clip_by_norm, momentum, nesterov, sgd


def _trained(sizes, rule, steps=2, dtype=np.float64):
    net = mlp(sizes, rng=0, dtype=dtype)
    opt = Optimizer(net, rule)
    rng = np.random.default_rng(1)
    for _ in range(steps):
        for p, g in zip(opt.params().values(), opt.grads().values()):
            g[...] = rng.normal(size=p.shape)
        opt.step()
    return net, opt


def _snapshot(opt):
    return tree_to_host({"steps": opt.steps, "state": opt.state, "iterate": opt.iterate})


def _unchanged(opt, before):
    after = _snapshot(opt)
    assert after["steps"] == before["steps"]
    for a, b in zip(tree_leaves(after), tree_leaves(before)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("rule", [momentum(0.1, 0.9), adam(1e-3), nesterov(0.1, 0.9)],
                         ids=["momentum", "adam", "nesterov"])
@pytest.mark.parametrize("other", [[4, 3, 2], [4, 16, 2], [4, 5, 5, 2]],
                         ids=["smaller", "larger", "deeper"])
def test_state_from_another_net_is_refused_and_nothing_changes(rule, other):
    _, opt = _trained([4, 5, 2], rule)
    _, src = _trained(other, rule)
    before = _snapshot(opt)
    with pytest.raises(ValueError, match=r"state_dict\['(state|iterate)'\]"):
        opt.load_state_dict(src.state_dict())
    _unchanged(opt, before)
    opt.step()  # still usable


def test_state_from_another_rule_is_refused_by_name():
    _, opt = _trained([4, 5, 2], adam(1e-3))
    _, src = _trained([4, 5, 2], momentum(0.1, 0.9))
    before = _snapshot(opt)
    with pytest.raises(ValueError, match=r"saved for rule 'momentum'.*runs 'adam'"):
        opt.load_state_dict(src.state_dict())
    _unchanged(opt, before)


def test_state_from_another_rule_without_a_name_is_refused_by_structure():
    _, opt = _trained([4, 5, 2], adam(1e-3))
    _, src = _trained([4, 5, 2], chain(clip_by_norm(1.0), sgd(0.1)))
    sd = src.state_dict()
    del sd["rule"]  # an old checkpoint: the structure check still catches it
    with pytest.raises(ValueError, match=r"state_dict\['state'\]"):
        opt.load_state_dict(sd)


@pytest.mark.parametrize("key", ["steps", "state"])
def test_a_missing_key_is_named(key):
    _, opt = _trained([4, 5, 2], adam(1e-3))
    sd = opt.state_dict()
    del sd[key]
    with pytest.raises(ValueError, match=fr"missing \['{key}'\]"):
        opt.load_state_dict(sd)


def test_unexpected_and_lookahead_keys_are_named():
    _, opt = _trained([4, 5, 2], momentum(0.1, 0.9))
    _, nes = _trained([4, 5, 2], nesterov(0.1, 0.9))
    sd = opt.state_dict()
    sd["extra"] = 1
    with pytest.raises(ValueError, match=r"unexpected \['extra'\]"):
        opt.load_state_dict(sd)
    sd = nes.state_dict()
    del sd["iterate"], sd["rule"]
    with pytest.raises(ValueError, match=r"missing \['iterate'\].*another rule"):
        nes.load_state_dict(sd)


def test_a_wrong_dtype_or_steps_is_refused():
    _, opt = _trained([4, 5, 2], adam(1e-3))
    _, f32 = _trained([4, 5, 2], adam(1e-3), dtype=np.float32)
    before = _snapshot(opt)
    with pytest.raises(TypeError, match=r"state_dict\['state'\].*expected dtype float64, got float32"):
        opt.load_state_dict(f32.state_dict())
    for steps in (-1, 1.5, "3", None):
        sd = opt.state_dict()
        sd["steps"] = steps
        with pytest.raises(ValueError, match=r"steps"):
            opt.load_state_dict(sd)
    with pytest.raises(TypeError, match=r"must be a dict"):
        opt.load_state_dict([1, 2])
    _unchanged(opt, before)


@pytest.mark.parametrize("rule", [momentum(0.1, 0.9), adam(1e-3), nesterov(0.1, 0.9)],
                         ids=["momentum", "adam", "nesterov"])
def test_a_matching_state_round_trips(rule):
    _, opt = _trained([4, 5, 2], rule, steps=3)
    _, fresh = _trained([4, 5, 2], rule, steps=0)
    fresh.load_state_dict(opt.state_dict())
    assert fresh.steps == 3
    for a, b in zip(tree_leaves(_snapshot(fresh)), tree_leaves(_snapshot(opt))):
        np.testing.assert_array_equal(a, b)


def test_polyak_average_checks_before_assigning():
    net = mlp([4, 5, 2], rng=0)
    avg = PolyakAverage(net)
    avg.update()
    other = PolyakAverage(mlp([4, 3, 2], rng=0))
    other.update()
    before = tree_to_host(avg.average)
    with pytest.raises(ValueError, match=r"state_dict\['average'\].*expected shape"):
        avg.load_state_dict(other.state_dict())
    sd = avg.state_dict()
    del sd["denom"]
    with pytest.raises(ValueError, match=r"expected keys"):
        avg.load_state_dict(sd)
    sd = avg.state_dict()
    sd["average"] = {k: v.astype(np.float32) for k, v in sd["average"].items()}
    with pytest.raises(TypeError, match=r"expected dtype float64"):
        avg.load_state_dict(sd)
    for a, b in zip(tree_leaves(tree_to_host(avg.average)), tree_leaves(before)):
        np.testing.assert_array_equal(a, b)
    avg.load_state_dict(avg.state_dict())


def test_sequential_checks_every_entry_before_assigning_any():
    net = Sequential(Linear(4, 3, rng=0), BatchNorm(3), Linear(3, 2, rng=1))
    sd = net.state_dict()
    before = {k: np.array(v, copy=True) for k, v in sd.items()}
    bad = dict(sd)
    last = list(bad)[-1]
    bad = {k: np.zeros_like(v) for k, v in bad.items()}
    bad[last] = np.zeros(np.shape(sd[last])[:-1] + (7,)) if np.ndim(sd[last]) else np.zeros(7)
    with pytest.raises(ValueError, match=fr"{last} has shape"):
        net.load_state_dict(bad)
    bad = {k: np.zeros_like(v) for k, v in sd.items()}
    first = list(bad)[0]
    bad[first] = bad[first].astype(np.complex128)
    with pytest.raises(TypeError, match=fr"{first} has dtype complex128"):
        net.load_state_dict(bad)
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_device_state_from_a_smaller_net_is_refused(backend):
    net = mlp([4, 5, 2], rng=0).to(backend.name)
    opt = Optimizer(net, adam(1e-3))
    src = Optimizer(mlp([4, 3, 2], rng=0).to(backend.name), adam(1e-3))
    with pytest.raises(ValueError, match=r"state_dict\['state'\].*expected shape"):
        opt.load_state_dict(src.state_dict())
    fresh = Optimizer(mlp([4, 5, 2], rng=1).to(backend.name), adam(1e-3))
    fresh.load_state_dict(opt.state_dict())
    assert fresh.steps == 0
