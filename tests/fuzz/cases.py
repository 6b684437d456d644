"""Table of fuzz cases over the public entry points, and the outcome classifier.

Each case is ``(name, call, expect)``.  ``call()`` performs one call with bad (or good)
input.  ``expect`` is either ``Err(words)``: the call must raise an ``Exception`` whose
message contains every word in ``words`` (the offending argument's name or the expected
value), or ``Ok(check)``: the call must return and ``check(result)`` must be true.

Outcomes (``classify``):

* ``clear``   an error was expected and raised, its message naming every word in ``words``;
* ``correct`` a result was expected, returned, and passed its check;
* ``unclear`` an error was raised but its message does not name the offending argument
  or expected value (a word is missing), or an error came where a result was expected;
* ``silent``  a result came back where an error was expected (bad input accepted), or
  the result failed its check (silently wrong);
* ``crash``   the process died (signal, abort) while running the case;
* ``hang``    the process ran past the timeout.

The suite fails on unclear, silent, crash and hang.
"""

from __future__ import annotations

import numpy as np


class Err:
    def __init__(self, *words):
        self.words = words


class Ok:
    def __init__(self, check=lambda r: True):
        self.check = check


def classify(expect, result=None, error=None):
    if error is not None:
        if isinstance(expect, Err):
            msg = str(error).lower()
            return "clear" if all(w.lower() in msg for w in expect.words) else "unclear"
        return "unclear"
    if isinstance(expect, Err):
        return "silent"
    try:
        return "correct" if expect.check(result) else "silent"
    except Exception:
        return "silent"


def _x(n=6, d=4, dtype=np.float64, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(dtype)


def build_cases():
    from ddlib import data, gradcheck, layers, losses, optim
    from ddlib.train import fit

    cases = []

    def add(name, call, expect):
        cases.append((name, call, expect))

    # layers: forward/backward with bad shapes and dtypes
    for kind in ("ReLU", "Sigmoid", "Tanh", "LeakyReLU"):
        act = getattr(layers, kind)

        def fwd_bwd(act=act, g_shape=(2, 2)):
            a = act()
            a.forward(_x(2000, 4))
            return a.backward(np.ones(g_shape))
        add(f"{kind}.backward wrong g shape", fwd_bwd, Err("shape"))
        add(f"{kind}.backward 1-D g", lambda act=act: fwd_bwd(act, (8000,)), Err("shape"))
        add(f"{kind}.backward wider g", lambda act=act: fwd_bwd(act, (2000, 5)), Err("shape"))
        add(f"{kind}.forward int", lambda act=act: act().forward(np.ones((3, 2), np.int64)),
            Err("dtype"))
        add(f"{kind}.forward ok", lambda act=act: act().forward(_x()),
            Ok(lambda r: r.shape == (6, 4) and np.isfinite(r).all()))
    add("Linear.forward wrong width", lambda: layers.Linear(4, 3, rng=0).forward(_x(6, 5)),
        Err("expects 4"))
    add("Linear.forward 3-D", lambda: layers.Linear(4, 3, rng=0).forward(np.ones((2, 2, 4))),
        Err("2-D"))
    add("Linear int dtype", lambda: layers.Linear(4, 3, rng=0, dtype=np.int64), Err("dtype"))
    add("Linear complex dtype", lambda: layers.Linear(4, 3, rng=0, dtype=np.complex128),
        Err("dtype"))
    add("mlp float16", lambda: layers.mlp([4, 3], rng=0, dtype=np.float16), Err("float16"))

    def lin_backward_bad():
        lin = layers.Linear(4, 3, rng=0)
        lin.forward(_x())
        return lin.backward(np.ones((6, 4)))
    add("Linear.backward wrong g", lin_backward_bad, Err("shape"))
    add("Linear.forward NaN", lambda: layers.Linear(4, 3, rng=0).forward(
        np.full((2, 4), np.nan)), Err("NaN"))

    # losses
    add("MSE int scores keep float targets", lambda: losses.MSE().forward(
        np.array([[1]]), np.array([[2.5]])), Ok(lambda r: abs(r - 1.125) < 1e-12
                                                or abs(r - 2.25) < 1e-12))
    add("xent NaN scores", lambda: losses.SoftmaxCrossEntropy().forward(
        np.array([[np.nan, 0.0]]), np.array([0])), Err("non-finite"))
    add("xent empty batch", lambda: losses.SoftmaxCrossEntropy().forward(
        np.zeros((0, 3)), np.zeros(0, np.int64)), Err("empty"))
    add("xent label out of range", lambda: losses.SoftmaxCrossEntropy().forward(
        np.zeros((2, 3)), np.array([0, 3])), Err("[0, 3)"))
    add("xent ok", lambda: losses.SoftmaxCrossEntropy().forward(np.zeros((2, 2)),
                                                                np.array([0, 1])),
        Ok(lambda r: abs(r - np.log(2)) < 1e-12))

    # optimizers: bad state, bad rates, divergence
    def load_small_state(rule):
        small = layers.mlp([2, 2], rng=0)
        big = layers.mlp([4, 8, 3], rng=0)
        sd = optim.Optimizer(small, rule()).state_dict()
        return optim.Optimizer(big, rule()).load_state_dict(sd)
    for r in ("momentum", "adam"):
        add(f"load_state_dict smaller net {r}",
            lambda r=r: load_small_state(optim.RULES[r]), Err("expected keys"))

    def load_other_rule():
        net = layers.mlp([2, 2], rng=0)
        sd = optim.Optimizer(net, optim.adam()).state_dict()
        optim.Optimizer(net, optim.momentum()).load_state_dict(sd)
    add("load_state_dict other rule", load_other_rule, Err("adam"))

    def load_missing_key():
        net = layers.mlp([2, 2], rng=0)
        opt = optim.Optimizer(net, optim.adam())
        sd = opt.state_dict()
        del sd["steps"]
        opt.load_state_dict(sd)
    add("load_state_dict missing steps", load_missing_key, Err("steps"))
    add("chain()", lambda: optim.chain(), Err("at least one"))
    add("sgd lr=-1", lambda: optim.sgd(-1.0), Err("lr"))
    add("sgd lr=nan", lambda: optim.sgd(float("nan")), Err("lr"))

    def huge_lr_step():
        net = layers.mlp([2, 2], rng=0)
        opt = optim.Optimizer(net, optim.sgd(1e308))
        for _, layer, k in net.named_parameters():
            layer.grads[k][...] = 10.0
        before = [p.copy() for p in opt.params().values()]
        try:
            opt.step()
        except FloatingPointError as err:
            same = all(np.array_equal(a, b) for a, b in zip(before, opt.params().values()))
            raise FloatingPointError(f"{err} [restored={same}]") from None
    add("Optimizer.step lr=1e308 finite grads", huge_lr_step, Err("0.W", "step 0",
                                                                  "restored=True"))

    def nan_grad_step():
        net = layers.mlp([2, 3, 2], rng=0)
        opt = optim.Optimizer(net, optim.adam())
        for _, layer, k in net.named_parameters():
            layer.grads[k][...] = 0.1
        net[0].grads["W"][0, 0] = np.nan
        before = [p.copy() for p in opt.params().values()]
        try:
            opt.step()
        except FloatingPointError as err:
            same = all(np.array_equal(a, b) for a, b in zip(before, opt.params().values()))
            raise FloatingPointError(f"{err} [restored={same}]") from None
    add("Optimizer.step NaN grad", nan_grad_step, Err("0.W", "restored=True"))

    def avg_bad_shape():
        a = optim.PolyakAverage(layers.mlp([2, 2], rng=0))
        sd = optim.PolyakAverage(layers.mlp([3, 2], rng=0)).state_dict()
        a.load_state_dict(sd)
    add("PolyakAverage.load_state_dict shape", avg_bad_shape, Err("shape"))

    # gradient checker
    def gc_transposed():
        x = np.arange(12.0).reshape(3, 4).T
        return x, gradcheck.numerical_gradient(lambda: float((x * x).sum()), x)
    add("numerical_gradient transposed view", gc_transposed,
        Ok(lambda r: np.allclose(r[1], 2 * r[0], atol=1e-5)))
    add("numerical_gradient eps=0", lambda: gradcheck.numerical_gradient(
        lambda: 0.0, np.zeros(3), eps=0), Err("eps"))
    add("numerical_gradient int array", lambda: gradcheck.numerical_gradient(
        lambda: 0.0, np.zeros(3, np.int64)), Err("float"))

    def gc_model(**kw):
        net = layers.mlp([3, 4, 2], rng=0)
        return gradcheck.check_model(net, losses.SoftmaxCrossEntropy(), _x(5, 3),
                                     np.array([0, 1, 0, 1, 1]), **kw)
    add("check_model n_samples=0", lambda: gc_model(n_samples=0), Err("n_samples"))
    add("check_model ok", lambda: gc_model(), Ok(lambda r: bool(r.passed)))

    # data helpers
    add("one_hot -1", lambda: data.one_hot(np.array([0, -1]), 3), Err("[0, 3)"))
    add("one_hot ok", lambda: data.one_hot(np.array([0, 2]), 3),
        Ok(lambda r: r.tolist() == [[1, 0, 0], [0, 0, 1]]))
    add("load_digits n_train=-1", lambda: data.load_digits(n_train=-1), Err("n_train"))

    # fit with bad arguments
    def fit_with(**kw):
        net = layers.mlp([4, 3], rng=0)
        opt = kw.pop("opt", None) or optim.Optimizer(net, optim.sgd(0.1))
        X = kw.pop("X", _x(12, 4))
        y = kw.pop("y", np.arange(12) % 3)
        return fit(net, losses.SoftmaxCrossEntropy(), opt, X, y, **kw)
    add("fit max_loss=nan", lambda: fit_with(max_loss=float("nan")), Err("max_loss"))
    add("fit max_loss=-1", lambda: fit_with(max_loss=-1), Err("max_loss"))
    add("fit epochs=0", lambda: fit_with(epochs=0), Err("epochs"))
    add("fit batch_size=0", lambda: fit_with(batch_size=0), Err("batch_size"))
    add("fit y too short", lambda: fit_with(y=np.zeros(5, np.int64)), Err("12", "5"))
    add("fit rule not optimizer", lambda: fit_with(opt=optim.sgd(0.1)), Err("optimizer"))
    add("fit optimizer of other model", lambda: fit_with(
        opt=optim.Optimizer(layers.mlp([4, 3], rng=1), optim.sgd(0.1))), Err("another model"))
    add("fit checkpoint without every", lambda: fit_with(checkpoint="x.npz"),
        Err("checkpoint_every"))
    add("fit resume from missing file", lambda: fit_with(resume_from="/nonexistent/x.npz"),
        Err("x.npz"))
    add("fit diverging lr", lambda: fit_with(opt=None, X=_x(12, 4) * 1e3), Ok())
    add("fit ok", lambda: fit_with(epochs=2, seed=0), Ok(lambda h: h.steps == 2))
    return cases


