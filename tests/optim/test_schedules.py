"""Learning-rate schedules of Sec. 3.5.1."""

import math

import numpy as np
import pytest

from ddlib import optim


def test_exponential_and_inverse_decay_follow_the_formulas():
    e = optim.exponential_decay(0.5, k=0.3, steps_per_epoch=10)
    i = optim.inverse_decay(0.5, k=0.3, steps_per_epoch=10)
    for step in (0, 7, 10, 55):
        t = step / 10
        assert e(step) == pytest.approx(0.5 * math.exp(-0.3 * t), rel=1e-15)
        assert i(step) == pytest.approx(0.5 / (1 + 0.3 * t), rel=1e-15)
    s = optim.exponential_decay(0.5, k=0.3, steps_per_epoch=10, staircase=True)
    assert s(19) == s(10) != s(9)


def test_step_decay_halves_every_five_epochs():
    s = optim.step_decay(0.8, step_size=5, gamma=0.5, steps_per_epoch=4)
    rates = [s(step) for step in range(0, 4 * 15, 4)]  # first step of epochs 0..14
    assert rates == [0.8] * 5 + [0.4] * 5 + [0.2] * 5
    assert s(19) == 0.8 and s(20) == 0.4


def test_schedules_are_monotone_and_positive():
    for s in (optim.exponential_decay(1.0, 0.1), optim.inverse_decay(1.0, 0.1),
              optim.step_decay(1.0, 3)):
        r = np.array([s(t) for t in range(200)])
        assert (r > 0).all() and (np.diff(r) <= 0).all() and r[-1] < r[0]


def test_reduce_on_plateau():
    s = optim.ReduceOnPlateau(0.1, factor=0.5, patience=2)
    assert s(0) == 0.1
    for loss in (1.0, 0.9, 0.8):
        assert s.step(loss) == 0.1
    assert s.step(0.85) == 0.1  # one bad epoch
    assert s.step(0.81) == 0.1  # two
    assert s.step(0.80) == 0.05  # the third exceeds patience: cut
    assert s(12345) == 0.05  # the optimizer sees the current rate at any step
    assert s.step(0.5) == 0.05  # improvement resets the count
    saved = s.state_dict()
    s.step(0.6), s.step(0.6), s.step(0.6)
    assert s.lr == 0.025
    s.load_state_dict(saved)
    assert s.lr == 0.05 and s.bad_epochs == 0


def test_plateau_respects_min_lr_and_cooldown():
    s = optim.ReduceOnPlateau(0.1, factor=0.1, patience=0, min_lr=0.005, cooldown=1)
    s.step(1.0)
    assert s.step(1.0) == pytest.approx(0.01)
    assert s.step(1.0) == pytest.approx(0.01)  # cooling down
    assert s.step(1.0) == pytest.approx(0.005)  # floored at min_lr


def test_plateau_drives_a_rule():
    s = optim.ReduceOnPlateau(0.1, factor=0.5, patience=0)
    rule = optim.sgd(s)
    w = {"w": np.ones(3)}
    state = rule.init(w)
    u1, state = rule.update({"w": np.ones(3)}, state, w)
    s.step(1.0)
    s.step(2.0)
    u2, state = rule.update({"w": np.ones(3)}, state, w)
    np.testing.assert_allclose(u2["w"], 0.5 * u1["w"])


@pytest.mark.parametrize("make,param", [
    (lambda: optim.exponential_decay(0.0, 0.1), "lr0"),
    (lambda: optim.inverse_decay(0.1, -1.0), "k"),
    (lambda: optim.step_decay(0.1, 0), "step_size"),
    (lambda: optim.step_decay(0.1, 2, gamma=1.5), "gamma"),
    (lambda: optim.ReduceOnPlateau(0.1, factor=1.0), "factor"),
    (lambda: optim.ReduceOnPlateau(-0.1), "lr0"),
])
def test_bad_schedule_arguments(make, param):
    with pytest.raises(ValueError, match=param):
        make()


def test_plateau_rejects_nonfinite_loss():
    with pytest.raises(ValueError, match="val_loss"):
        optim.ReduceOnPlateau(0.1).step(float("nan"))
