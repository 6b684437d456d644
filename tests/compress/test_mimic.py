"""Mimic models (Sec. 3.7.3): the soft-target loss with its T^2 scaling, logit
regression, and distillation of a small student from a larger teacher on the digits."""

import doctest

import numpy as np
import pytest

from ddlib import optim
from ddlib.compress import mimic
from ddlib.compress.mimic import LogitRegression, SoftTargetCrossEntropy, pack_targets
from ddlib.data import load_digits
from ddlib.gradcheck import numerical_gradient, relative_error
from ddlib.layers import mlp
from ddlib.losses import SoftmaxCrossEntropy
from ddlib.train import evaluate, fit, predict


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _center(a):
    return a - a.mean(axis=1, keepdims=True)


def test_doctests():
    assert doctest.testmod(mimic).failed == 0


def test_one_hot_teacher_at_T1_is_ordinary_cross_entropy(backend):
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(7, 4)) * 3
    labels = rng.integers(0, 4, size=7)
    onehot = np.eye(4)[labels]
    soft = SoftTargetCrossEntropy(T=1.0, alpha=1.0, targets="probs")
    ce = SoftmaxCrossEntropy()
    if backend.name == "cuda":
        with pytest.raises(TypeError, match="host"):
            soft(backend.asarray(scores), onehot)
        return
    assert soft(scores, onehot) == pytest.approx(ce(scores, labels), rel=1e-12)
    np.testing.assert_allclose(soft.backward(), backend.to_numpy(ce.backward()), atol=1e-14)
    # alpha = 0 is the hard-label loss alone, whatever the teacher says
    hard = SoftTargetCrossEntropy(T=3.0, alpha=0.0)
    junk = rng.normal(size=(7, 4))
    assert hard(scores, pack_targets(junk, labels)) == pytest.approx(ce(scores, labels))
    np.testing.assert_allclose(hard.backward(), backend.to_numpy(ce.backward()), atol=1e-14)


def test_logits_and_probs_targets_agree():
    rng = np.random.default_rng(1)
    s, t = rng.normal(size=(5, 6)), rng.normal(size=(5, 6)) * 2
    for T in (0.5, 1.0, 3.0):
        a = SoftTargetCrossEntropy(T, targets="logits")
        b = SoftTargetCrossEntropy(T, targets="probs")
        np.testing.assert_allclose(a.soften(t), _softmax(t / T), atol=1e-14)
        np.testing.assert_allclose(b.soften(_softmax(t)), _softmax(t / T), atol=1e-12)
        assert a(s, t) == pytest.approx(b(s, _softmax(t)), rel=1e-12)
        # the value is T^2 times the cross-entropy of the softened distributions
        q, logp = _softmax(t / T), np.log(_softmax(s / T))
        assert a(s, t) == pytest.approx(T * T * float(-(q * logp).sum(axis=1).mean()))


@pytest.mark.parametrize("T,alpha", [(1.0, 1.0), (3.0, 1.0), (0.7, 0.4), (4.0, 0.0)])
def test_soft_target_gradient_matches_finite_differences(T, alpha):
    rng = np.random.default_rng(2)
    s = rng.normal(size=(6, 5))
    t = rng.normal(size=(6, 5)) * 2
    y = rng.integers(0, 5, size=6)
    targets = pack_targets(t, y) if alpha < 1 else t
    loss = SoftTargetCrossEntropy(T, alpha)
    loss(s, targets)
    g = loss.backward()
    est = numerical_gradient(lambda: loss.forward(s, targets), s)
    assert relative_error(g, est, floor=1e-6).max() < 1e-6
    # the closed form: (alpha T (p_T - q) + (1 - alpha)(p_1 - e_y)) / n
    want = (alpha * T * (_softmax(s / T) - _softmax(t / T))
            + (1 - alpha) * (_softmax(s) - np.eye(5)[y])) / 6
    np.testing.assert_allclose(g, want, atol=1e-14)
    # the Hessian product agrees with the finite difference of the gradient
    loss(s, targets)
    r = rng.normal(size=s.shape)
    hv = loss.hvp_scores(r)
    eps = 1e-6
    loss(s + eps * r, targets)
    up = loss.backward()
    loss(s - eps * r, targets)
    down = loss.backward()
    assert relative_error(hv, (up - down) / (2 * eps), floor=1e-6).max() < 1e-6


def test_logit_regression_gradient_and_value():
    rng = np.random.default_rng(3)
    s, t = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    loss = LogitRegression()
    assert loss(s, t) == pytest.approx(0.5 * float(((s - t) ** 2).sum(axis=1).mean()))
    g = loss.backward()
    est = numerical_gradient(lambda: loss.forward(s, t), s)
    assert relative_error(g, est, floor=1e-6).max() < 1e-6
    np.testing.assert_allclose(g, (s - t) / 4, atol=1e-15)


def test_T_squared_keeps_the_gradient_scale_across_temperatures():
    # For large T, p_T - q = (s_c - t_c) / (k T) + O(1/T^2) (s_c, t_c: scores centered per
    # row), so the cross-entropy's gradient (p_T - q) / (T n) shrinks like 1/T^2 while
    # T^2 times it tends to (s_c - t_c) / (k n), a limit free of T, with an O(1/T) error.
    rng = np.random.default_rng(4)
    n, k = 6, 5
    s, t = rng.normal(size=(n, k)) * 2, rng.normal(size=(n, k)) * 2
    limit = (_center(s) - _center(t)) / (k * n)

    def grad(T):
        loss = SoftTargetCrossEntropy(T)
        loss(s, t)
        return loss.backward()

    err = {T: np.linalg.norm(grad(T) - limit) / np.linalg.norm(limit)
           for T in (10.0, 100.0, 1000.0)}
    # error x T is about constant: the gradient reaches the limit, at first order in 1/T
    assert err[10.0] * 10 == pytest.approx(err[100.0] * 100, rel=0.05)
    assert err[100.0] * 100 == pytest.approx(err[1000.0] * 1000, rel=0.01)
    # without the T^2 factor the gradient would fall a hundredfold from T = 10 to 100
    unscaled = {T: np.linalg.norm(grad(T)) / T**2 for T in (10.0, 100.0)}
    assert unscaled[10.0] / unscaled[100.0] == pytest.approx(100.0, rel=0.05)


def test_loss_input_errors():
    s = np.zeros((3, 4))
    with pytest.raises(ValueError, match="T"):
        SoftTargetCrossEntropy(T=0.0)
    with pytest.raises(TypeError, match="T"):
        SoftTargetCrossEntropy(T="hot")
    with pytest.raises(ValueError, match="alpha"):
        SoftTargetCrossEntropy(alpha=1.5)
    with pytest.raises(TypeError, match="alpha"):
        SoftTargetCrossEntropy(alpha=None)
    with pytest.raises(ValueError, match="targets"):
        SoftTargetCrossEntropy(targets="labels")
    with pytest.raises(ValueError, match=r"shape \(3, 4\)"):
        SoftTargetCrossEntropy()(s, np.zeros((3, 5)))
    with pytest.raises(ValueError, match="pack_targets"):
        SoftTargetCrossEntropy(alpha=0.5)(s, np.zeros((3, 4)))
    with pytest.raises(ValueError, match="labels"):
        SoftTargetCrossEntropy(alpha=0.5)(s, np.column_stack([np.zeros((3, 4)),
                                                              [0, 1, 4]]))
    with pytest.raises(ValueError, match="sum to 1"):
        SoftTargetCrossEntropy(targets="probs")(s, np.full((3, 4), 0.3))
    with pytest.raises(ValueError, match=">= 0"):
        SoftTargetCrossEntropy(targets="probs")(s, np.tile([1.5, -0.5, 0, 0], (3, 1)))
    with pytest.raises(ValueError, match="non-finite"):
        SoftTargetCrossEntropy()(s, np.full((3, 4), np.nan))
    with pytest.raises(RuntimeError, match="before forward"):
        SoftTargetCrossEntropy().backward()
    with pytest.raises(ValueError, match="labels"):
        pack_targets(np.zeros((3, 4)), np.array([0, 1]))
    with pytest.raises(TypeError, match="labels"):
        pack_targets(np.zeros((3, 4)), np.array([0.0, 1.0, 2.0]))


@pytest.fixture(scope="module")
def digits_teacher():
    d = load_digits(seed=0)
    teacher = mlp([64, 128, 10], rng=100)
    ce = SoftmaxCrossEntropy()
    fit(teacher, ce, optim.Optimizer(teacher, optim.adam(1e-2)), d.X_train, d.y_train,
        epochs=10, batch_size=64, seed=0)
    return d, teacher


def test_distill_trains_a_small_student(digits_teacher):
    d, teacher = digits_teacher
    ce = SoftmaxCrossEntropy()
    assert evaluate(teacher, ce, d.X_test, d.y_test)[1] > 0.9
    for kw in (dict(method="soft", T=2.0), dict(method="logits"),
               dict(method="soft", T=4.0, alpha=0.5, y=d.y_train)):
        student = mlp([64, 16, 10], rng=1)
        hist = mimic.distill(student, teacher, d.X_train, epochs=8, batch_size=64,
                             seed=1, **kw)
        assert hist.steps == 8 * 22
        acc = evaluate(student, ce, d.X_test, d.y_test)[1]
        # chance is 0.1; with 3 teacher x 3 student seeds of this set-up the students
        # reached 0.90-0.96 and agreed with the teacher on 0.91-0.97 of the test set
        assert acc > 0.8, (kw, acc)
        # and they learned the teacher's answers, not just the labels
        agree = np.mean(predict(student, d.X_test).argmax(1)
                        == predict(teacher, d.X_test).argmax(1))
        assert agree > 0.8


def test_distill_on_unlabelled_inputs_follows_the_teacher():
    # a linear teacher and a linear student: regression on the logits is then noiseless
    # least squares, which SGD solves exactly, so the student recovers the teacher's
    # scores on fresh inputs, with no label anywhere
    rng = np.random.default_rng(5)
    teacher = mlp([6, 3], rng=7)
    teacher.layers[0].params["b"][...] = [0.5, -1.0, 0.2]
    X = rng.normal(size=(400, 6))
    student = mlp([6, 3], rng=8)
    mimic.distill(student, teacher, X, method="logits", rule=optim.sgd(0.1), epochs=20,
                  batch_size=20, seed=0)
    Xnew = rng.normal(size=(50, 6))
    np.testing.assert_allclose(predict(student, Xnew), predict(teacher, Xnew), atol=1e-10)


def test_distill_argument_errors(digits_teacher):
    d, teacher = digits_teacher
    X = d.X_train[:40]
    student = mlp([64, 16, 10], rng=1)
    with pytest.raises(ValueError, match="method"):
        mimic.distill(student, teacher, X, method="kl")
    with pytest.raises(ValueError, match="y is used only"):
        mimic.distill(student, teacher, X, y=d.y_train[:40], method="logits")
    with pytest.raises(ValueError, match="y is used only"):
        mimic.distill(student, teacher, X, y=d.y_train[:40], method="soft", alpha=1.0)
    with pytest.raises(ValueError, match="takes no temperature"):
        mimic.distill(student, teacher, X, method="logits", T=3.0)
    with pytest.raises(ValueError, match="give the labels y"):
        mimic.distill(student, teacher, X, method="soft", alpha=0.5)
    with pytest.raises(ValueError, match="X_transfer"):
        mimic.distill(student, teacher, X[0])
    with pytest.raises(ValueError, match="must match"):
        mimic.distill(mlp([64, 16, 9], rng=1), teacher, X)
