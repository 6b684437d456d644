"""ddlib.tuning: search spaces, the five searchers, the trials table, bad input."""

import doctest
import math

import numpy as np
import pytest

from ddlib import tuning
from ddlib.chapter import search_studies
from ddlib.tuning import (
    Choice,
    Integer,
    Real,
    Space,
    Trials,
    coarse_to_fine,
    grid_search,
    random_search,
    search,
    successive_halving,
    tpe_search,
)


def bowl(p):
    """Minimum 0 at lr = 1e-2, l2 = 1e-4 in log coordinates."""
    return (math.log10(p["lr"]) + 2) ** 2 + 0.5 * (math.log10(p["l2"]) + 4) ** 2


SPACE = Space([Real("lr", 1e-5, 1.0, log=True), Real("l2", 1e-7, 1e-1, log=True)])


def test_docstring_examples():
    assert doctest.testmod(tuning).failed == 0


# ---------------------------------------------------------------- dimensions and spaces


def test_log_dimension_samples_the_logarithm_uniformly():
    d = Real("lr", 1e-4, 1.0, log=True)
    rng = np.random.default_rng(0)
    vals = np.array([d.from_unit(u) for u in rng.uniform(size=20000)])
    assert vals.min() >= 1e-4 and vals.max() <= 1.0
    # each decade holds a quarter of the draws (a uniform scale would put 90% in the last)
    counts = np.histogram(np.log10(vals), bins=[-4, -3, -2, -1, 0])[0] / len(vals)
    np.testing.assert_allclose(counts, 0.25, atol=0.015)
    assert d.from_unit(0.5) == pytest.approx(1e-2)


def test_linear_dimension_and_round_trip():
    d = Real("momentum", 0.5, 0.99)
    for u in (0.0, 0.3, 1.0):
        assert d.to_unit(d.from_unit(u)) == pytest.approx(u)
    assert d.from_unit(0.0) == 0.5 and d.from_unit(1.0) == 0.99


def test_integer_dimension_covers_every_value_equally():
    d = Integer("hidden", 3, 6)
    rng = np.random.default_rng(1)
    vals = [d.from_unit(u) for u in rng.uniform(size=8000)]
    assert set(vals) == {3, 4, 5, 6}
    np.testing.assert_allclose(np.bincount(vals)[3:] / len(vals), 0.25, atol=0.02)
    assert all(isinstance(v, int) for v in vals)


def test_choice_dimension():
    d = Choice("act", ("relu", "tanh"))
    assert d.from_unit(0.1) == "relu" and d.from_unit(0.9) == "tanh"
    assert d.grid(7) == ["relu", "tanh"]


def test_space_sample_is_seeded():
    a = SPACE.sample(np.random.default_rng(3))
    b = SPACE.sample(np.random.default_rng(3))
    assert a == b and set(a) == {"lr", "l2"}


def test_grid_is_geometric_on_log_dimensions():
    pts = Space([Real("lr", 1e-4, 1.0, log=True)]).grid(5)
    np.testing.assert_allclose([p["lr"] for p in pts], [1e-4, 1e-3, 1e-2, 1e-1, 1.0])


def test_narrowed_box_is_smaller_centred_and_inside():
    box = SPACE.narrowed({"lr": 1e-2, "l2": 1e-7}, 0.5)
    lr, l2 = box["lr"], box["l2"]
    # lr: half of 5 decades around 1e-2 -> 10^(-2 +- 1.25)
    assert lr.low == pytest.approx(10 ** -3.25) and lr.high == pytest.approx(10 ** -0.75)
    # l2's best sits on the edge: the box slides back inside the original range
    assert l2.low == pytest.approx(1e-7) and l2.high == pytest.approx(10 ** -4)


@pytest.mark.parametrize("make, match", [
    (lambda: Real("lr", 1.0, 0.1), "low=1.0 must be below high=0.1"),
    (lambda: Real("lr", 0.0, 1.0, log=True), "log-scaled dimension needs positive bounds"),
    (lambda: Real("lr", -1.0, 1.0, log=True), "positive bounds"),
    (lambda: Integer("h", 8, 8), "must be below"),
    (lambda: Real("x", 0.0, float("inf")), "finite"),
    (lambda: Choice("c", ()), "options must not be empty"),
    (lambda: Space([]), "at least one dimension"),
    (lambda: Space([Real("a", 0, 1), Real("a", 1, 2)]), "unique"),
])
def test_invalid_spaces_raise_clear_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_integer_bounds_must_be_integers():
    with pytest.raises(TypeError, match="'h': low must be an integer"):
        Integer("h", 1.5, 8)


def test_space_rejects_non_dimensions():
    with pytest.raises(TypeError, match="Real, Integer or Choice"):
        Space([("lr", 0, 1)])


# ---------------------------------------------------------------- searchers


def test_grid_search_tries_every_combination_within_budget():
    calls = []
    t = grid_search(lambda p: calls.append(p) or bowl(p), SPACE, budget=25)
    assert len(t) == 25 == len(calls)
    assert len({(r["lr"], r["l2"]) for r in t}) == 25
    np.testing.assert_allclose(sorted({r["lr"] for r in t}), np.logspace(-5, 0, 5))


def test_grid_search_with_a_choice():
    sp = Space([Real("lr", 1e-3, 1e-1, log=True), Choice("act", ("relu", "tanh"))])
    t = grid_search(lambda p: bowl({"lr": p["lr"], "l2": 1e-4}) + (p["act"] == "tanh"), sp, 6)
    assert len(t) == 6 and t.best["act"] == "relu" and t.best["lr"] == pytest.approx(1e-2)


def test_random_search_is_seeded_and_within_bounds():
    a = random_search(bowl, SPACE, 30, seed=5)
    b = random_search(bowl, SPACE, 30, seed=5)
    c = random_search(bowl, SPACE, 30, seed=6)
    assert [r["lr"] for r in a] == [r["lr"] for r in b]
    assert [r["lr"] for r in a] != [r["lr"] for r in c]
    lr = a.column("lr")
    assert lr.min() >= 1e-5 and lr.max() <= 1.0


def test_best_so_far_is_the_running_minimum():
    t = random_search(bowl, SPACE, 40, seed=0)
    np.testing.assert_array_equal(t.best_so_far(), np.minimum.accumulate(t.losses))
    assert t.best["loss"] == t.losses.min()


def test_coarse_to_fine_rounds_shrink_around_the_best():
    t = coarse_to_fine(bowl, SPACE, budget=60, rounds=3, shrink=0.4, seed=0)
    assert len(t) == 60
    stage = t.column("stage")
    assert list(np.bincount(stage.astype(int))) == [20, 20, 20]
    # spread of log lr shrinks round by round
    spread = [np.ptp(np.log10(t.column("lr")[stage == r])) for r in range(3)]
    assert spread[0] > spread[1] > spread[2]
    assert spread[2] <= 0.4 ** 2 * 5 + 1e-9
    # on this smooth bowl it beats plain random search with the same draws budget
    plain = random_search(bowl, SPACE, 60, seed=0)
    assert t.best["loss"] < plain.best["loss"]


def test_successive_halving_spends_at_most_the_budget_and_promotes_the_best():
    seen = []

    def obj(p, resource):
        seen.append(resource)
        # more resource = closer to the true loss; noise shrinks with resource
        return bowl(p) + 1.0 / resource

    t = successive_halving(obj, SPACE, budget=10, min_resource=1, max_resource=9, eta=3, seed=0)
    assert sum(seen) <= 10 * 9
    res = t.column("resource")
    n0 = int(np.sum(res == 1))
    assert np.sum(res == 3) == n0 // 3 and np.sum(res == 9) == max(n0 // 9, 1)
    assert n0 > 10  # more configurations started than full runs would allow
    # the survivors of rung 0 are exactly its best third
    rung0 = [r for r in t if r["resource"] == 1]
    keep = sorted(rung0, key=lambda r: r["loss"])[: n0 // 3]
    rung1 = [r for r in t if r["resource"] == 3]
    assert {(r["lr"], r["l2"]) for r in keep} == {(r["lr"], r["l2"]) for r in rung1}
    # only full-resource runs count as results
    final = [r for r in t if r["resource"] == 9]
    assert t.best["loss"] == min(r["loss"] for r in final)
    assert np.isinf(t.best_so_far()[0])


def test_tpe_search_is_seeded_and_beats_random_on_a_smooth_bowl():
    a = tpe_search(bowl, SPACE, 40, seed=1, n_startup=10)
    b = tpe_search(bowl, SPACE, 40, seed=1, n_startup=10)
    assert [r["lr"] for r in a] == [r["lr"] for r in b]
    assert len(a) == 40 and a.method == "tpe"
    # the model-guided trials concentrate near the minimum: later trials are better
    losses = a.losses
    assert np.median(losses[25:]) < np.median(losses[:10])


def test_tpe_casts_integers_and_choices():
    sp = Space([Integer("h", 4, 64, log=True), Choice("act", ("relu", "tanh"))])
    t = tpe_search(lambda p: abs(p["h"] - 16) + (p["act"] == "tanh"), sp, 15, seed=0)
    assert all(isinstance(r["h"], int) and 4 <= r["h"] <= 64 for r in t)
    assert {r["act"] for r in t} <= {"relu", "tanh"}


def test_search_dispatches_by_name():
    t = search("random", bowl, SPACE, 5, seed=0)
    assert t.method == "random" and len(t) == 5
    with pytest.raises(ValueError, match="method='annealing' is not a searcher"):
        search("annealing", bowl, SPACE, 5)


@pytest.mark.parametrize("bad", [0, -3])
def test_budget_must_be_positive(bad):
    with pytest.raises(ValueError, match="budget must be >= 1"):
        random_search(bowl, SPACE, bad)


def test_objective_returning_nan_is_named():
    with pytest.raises(ValueError, match="returned NaN"):
        random_search(lambda p: float("nan"), SPACE, 3, seed=0)
    with pytest.raises(TypeError, match="must return a number"):
        random_search(lambda p: "bad", SPACE, 3, seed=0)


def test_coarse_to_fine_shrink_must_be_below_one():
    with pytest.raises(ValueError, match="shrink must be below 1"):
        coarse_to_fine(bowl, SPACE, 10, shrink=1.5)


# ---------------------------------------------------------------- table


def test_table_prints_every_row_and_trials_to_reach():
    t = Trials("demo", ["lr"])
    for lr, loss in [(0.1, 3.0), (0.01, 1.0), (0.2, 2.0)]:
        t.add({"lr": lr}, loss)
    text = t.table()
    assert text.splitlines()[0].split() == ["trial", "lr", "loss", "best"]
    assert len(text.splitlines()) == 4
    assert t.trials_to_reach(1.5) == 2 and t.trials_to_reach(0.5) is None
    assert "best loss 1" in repr(t)


# ---------------------------------------------------------------- the digits objective


def test_digits_objective_is_deterministic_and_sensible():
    f = search_studies.digits_objective(epochs=3, n_train=300)
    good = f({"lr": 0.5, "l2": 1e-4})
    assert good == f({"lr": 0.5, "l2": 1e-4})
    assert good < math.log(10)  # better than guessing
    assert f({"lr": 1e-4, "l2": 1e-4}) > good  # far too small a step learns little
    assert f({"lr": 1e3, "l2": 0.0}) == 5.0  # divergence scores the cap
    assert f({"lr": 0.5, "l2": 1e-4}, resource=1) > good  # fewer epochs, higher loss


def test_digits_objective_decays_only_the_weights_and_does_not_hide_bad_input():
    from ddlib import optim
    from ddlib.backend import use_backend
    from ddlib.layers import mlp
    from ddlib.losses import SoftmaxCrossEntropy
    from ddlib.train import evaluate, fit

    f = search_studies.digits_objective(epochs=2, n_train=200)
    d = f.data
    # the same run written out: L2 on the W's through the decoupled transform, none on b
    with use_backend("numpy"):
        net = mlp([d.X_train.shape[1], 32, d.n_classes], activation="relu", rng=0)
        rule = optim.chain(optim.add_decayed_weights(
            0.05, mask={n: n.endswith("W") for n, _, _ in net.named_parameters()}),
            optim.sgd(0.3))
        fit(net, SoftmaxCrossEntropy(), optim.Optimizer(net, rule), d.X_train, d.y_train,
            epochs=2, batch_size=64, seed=0, max_loss=1e3)
        want = evaluate(net, SoftmaxCrossEntropy(), d.X_test, d.y_test)[0]
    assert f({"lr": 0.3, "l2": 0.05}) == want
    assert f({"lr": 0.3, "l2": 0.05}) != f({"lr": 0.3, "l2": 0.0})
    with pytest.raises(ValueError, match="lr must be a finite number > 0"):
        f({"lr": -1.0})
    with pytest.raises(ValueError):
        f({"lr": 0.1, "hidden": 0})  # a bad architecture is an error, not a score
    assert np.isfinite(f({"lr": 0.1, "hidden": 4}))
