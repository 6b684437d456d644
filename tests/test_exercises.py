"""ddlib.exercises.check: right answers pass, wrong ones fail, and no answer is revealed."""

import math

import numpy as np
import pytest

from ddlib import exercises as E


def sigmoid(v):
    return 1 / (1 + np.exp(-np.asarray(v, float)))


# answers derived by hand here, independently of the module's code
HAND = {
    1: (dict(x=1.0, y=2.0), 8.0),                      # d/dx of x^2 y + x y^2 = 2xy + y^2
    2: ({}, [15.0, 10.0]),
    3: ({}, [18.0, 16.0, 14.0, 12.0]),
    4: ({}, [0.0, 0.0, 8.0, 6.0]),
    5: (dict(v=[0.0, 1.0]), np.diag(sigmoid([0, 1]) * (1 - sigmoid([0, 1])))),
    6: (dict(start=(2.0, 2.0), lr=0.1, steps=1), [1.6, 2 - 0.1 * 10 * 2 ** 9]),
    7: (dict(d=6), 6),
    8: ({}, np.zeros(4)),
    9: ({}, [2 * (1 - math.tanh(0.5) ** 2), 3 * (1 - math.tanh(-1.0) ** 2)]),
}


@pytest.mark.parametrize("n", sorted(HAND))
def test_hand_answers_are_right(n):
    inputs, answer = HAND[n]
    v = E.check(n, answer, **inputs)
    assert v and v.correct and "right" in v.message


@pytest.mark.parametrize("n", sorted(HAND))
def test_perturbed_answers_are_wrong_and_not_revealed(n):
    inputs, answer = HAND[n]
    wrong = np.asarray(answer, float) + 0.5
    v = E.check(n, wrong, **inputs)
    assert not v
    for x in np.atleast_1d(np.asarray(answer, float)).ravel():
        if x != 0:
            assert f"{x:g}" not in v.message and f"{x}" not in v.message


def test_softmax_parts():
    v = np.array([0.2, -1.0, 0.5])
    o = np.exp(v) / np.exp(v).sum()
    J = np.array([[o[i] * ((i == j) - o[j]) for j in range(3)] for i in range(3)])
    assert E.check(10, J, v=v, part="a")
    y = np.eye(3)[2]
    assert E.check(10, o - y, v=v, label=2, part="b")
    assert not E.check(10, o, v=v, label=2, part="b")


def test_conjugate_directions_and_cg():
    H = E.spd_matrix(5, seed=3)
    V = np.random.default_rng(4).standard_normal((5, 5))
    Q = E.conjugate_from(H, V)
    G = Q @ H @ Q.T
    assert np.allclose(G - np.diag(np.diag(G)), 0, atol=1e-10 * np.abs(G).max())
    assert np.allclose(Q[0], V[0])
    assert E.check(11, Q, H=H, V=V)
    # CG's directions are conjugate too: the matrix of exercise 12 is diagonal
    Qc = E.cg_directions(H, np.ones(5))
    D = Qc @ H @ Qc.T
    assert np.allclose(D - np.diag(np.diag(D)), 0, atol=1e-10 * np.abs(D).max())


def test_ties_rule_for_exercise_4():
    assert E.check(4, [0, 2, 2, 0], x=(1, 2, 2, 1), dLdo=1)     # x2 x3 = 4 wins alone
    assert E.check(4, [0.5, 0.5, 0.5, 0.5], x=(1, 1, 1, 1), dLdo=1)
    assert E.check(4, [1, 1, 0, 0], x=(1, 1, 1, 1), dLdo=1, ties="first")


def test_bad_input():
    with pytest.raises(ValueError, match="1-12"):
        E.check(13, 0)
    with pytest.raises(TypeError, match="exercise 2 takes"):
        E.check(2, 0, z=1)
    assert "expected 2 numbers" in E.check(2, [1, 2, 3]).message
    assert not E.check(2, "fifteen")
    assert set(E.EXERCISES) == set(range(1, 13))
