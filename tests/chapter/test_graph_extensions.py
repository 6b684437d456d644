"""ddlib.chapter.graph extensions: all-input gradients in one sweep, and the max node."""

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ddlib.chapter import graph as G

vals = st.floats(min_value=-3.0, max_value=3.0, allow_nan=False)


def pairwise(xs, combine):
    hidden = [G.mul(a, b, name=f"h{i}{j}") for (i, a), (j, b)
              in itertools.combinations(enumerate(xs, 1), 2)]
    return combine(*hidden, name="o")


def test_product_neuron_exercise_2():
    x1, x2 = G.var(2.0, "x1"), G.var(3.0, "x2")
    assert G.backward(G.mul(x1, x2), seed=5.0) == {"x1": 15.0, "x2": 10.0}


def test_pairwise_sum_exercise_3_matches_closed_form():
    xs = [G.var(float(v), f"x{i}") for i, v in enumerate((1, 2, 3, 4), 1)]
    grads = G.backward(pairwise(xs, G.add), seed=2.0)
    # d/dx_i of sum_{j<k} x_j x_k is the sum of the other three inputs
    assert grads == {f"x{i}": 2.0 * (10 - i) for i in range(1, 5)}


def test_pairwise_max_exercise_4_routes_to_the_winning_product():
    xs = [G.var(float(v), f"x{i}") for i, v in enumerate((1, 2, 3, 4), 1)]
    grads = G.backward(pairwise(xs, G.maximum), seed=2.0)
    assert grads == {"x1": 0.0, "x2": 0.0, "x3": 8.0, "x4": 6.0}


@settings(max_examples=40, deadline=None)
@given(v=st.lists(vals, min_size=2, max_size=6))
def test_gradients_equal_one_source_dp_and_paths_for_every_input(v):
    xs = [G.var(x, f"x{i}") for i, x in enumerate(v)]
    o = G.add(G.tanh(G.mul(*xs[:2])), G.sin(G.add(*xs)), G.square(xs[-1]), name="o")
    g = G.Graph.from_output(o, xs[0])
    grads = G.gradients(g)
    assert set(grads) == {x.name for x in xs}
    for name, d in grads.items():
        assert d == pytest.approx(G.dp_derivative(g, name).value, abs=1e-12)
        assert d == pytest.approx(G.pathwise_derivative(g, name).value, abs=1e-12)


def test_gradients_finite_differences_and_one_sweep_cost():
    def build(a, b, c):
        x, y, z = G.var(a, "x"), G.var(b, "y"), G.var(c, "z")
        return G.add(G.mul(x, y), G.cos(G.mul(y, z)), G.maximum(x, z), name="o"), (x, y, z)

    p, h = (0.3, -1.2, 0.8), 1e-6
    o, _ = build(*p)
    grads = G.backward(o)
    for k, name in enumerate("xyz"):
        up, dn = list(p), list(p)
        up[k] += h
        dn[k] -= h
        fd = (build(*up)[0].value - build(*dn)[0].value) / (2 * h)
        assert grads[name] == pytest.approx(fd, rel=1e-6, abs=1e-8)
    g = G.Graph.from_output(o, _[0])
    assert G.dp_derivative(g).multiplications == g.n_edges   # one sweep: one multiply per edge


def test_gradients_wrt_subset_and_errors():
    x1, x2 = G.var(2.0, "x1"), G.var(3.0, "x2")
    y = G.mul(x1, x2, name="y")
    g = G.Graph.from_output(G.square(y, name="o"), x1)
    assert G.gradients(g, wrt=["y"]) == {"y": 12.0}
    assert g.inputs == ["x1", "x2"] or g.inputs == ["x2", "x1"]
    with pytest.raises(G.GraphError, match="'nope'"):
        G.gradients(g, wrt=["nope"])
    with pytest.raises(TypeError, match="Node"):
        G.backward(3.0)


def test_max_without_ties_routes_to_the_winner():
    a, b, c = G.var(-1.0), G.var(4.0), G.var(2.0)
    m = G.maximum(a, b, c)
    assert m.value == 4.0 and m.partials == (0.0, 1.0, 0.0)
    assert G.maximum(a, b, c, ties="first").partials == (0.0, 1.0, 0.0)


@pytest.mark.parametrize("k", [2, 3, 4])
def test_max_ties_split_equally_or_go_to_the_first(k):
    xs = [G.var(1.0, f"t{i}") for i in range(k)] + [G.var(0.5, "low")]
    split = G.maximum(*xs)
    assert split.partials == tuple([1.0 / k] * k + [0.0])
    assert math.fsum(split.partials) == 1.0 or abs(math.fsum(split.partials) - 1) < 1e-15
    first = G.maximum(*xs, ties="first")
    assert first.partials == tuple([1.0] + [0.0] * k)
    # the split rule does not depend on argument order; the first rule does
    rev = G.maximum(*reversed(xs))
    assert rev.partials == tuple(reversed(split.partials))
    assert G.maximum(*reversed(xs), ties="first").partials[-1] == 0.0


def test_tie_split_is_a_subgradient_and_the_mean_of_one_sided_slopes():
    # max(x, y) at x = y: moving both together has slope 1 either way; along x alone the
    # right slope is 1 and the left slope is 0, whose mean is the split share 1/2
    f = max
    h = 1e-7
    right = (f(1 + h, 1) - f(1, 1)) / h
    left = (f(1, 1) - f(1 - h, 1)) / h
    x, y = G.var(1.0, "x"), G.var(1.0, "y")
    grads = G.backward(G.maximum(x, y, name="o"))
    assert grads["x"] == pytest.approx((left + right) / 2)
    assert grads["x"] + grads["y"] == 1.0
    # subgradient inequality max(u) >= max(v) + g.(u - v) at the tie, for random u
    import numpy as np
    rng = np.random.default_rng(0)
    for u in rng.normal(size=(200, 2)):
        assert max(u) >= 1.0 + grads["x"] * (u[0] - 1) + grads["y"] * (u[1] - 1) - 1e-12


def test_pairwise_max_with_tied_products():
    # x = (1, 2, 2, 1): products 2, 2, 1, 4, 2, 2 -> the unique winner is x2 x3 = 4
    xs = [G.var(float(v), f"x{i}") for i, v in enumerate((1, 2, 2, 1), 1)]
    assert G.backward(pairwise(xs, G.maximum)) == {"x1": 0.0, "x2": 2.0, "x3": 2.0, "x4": 0.0}
    # x = (1, 1, 1, 1): all six products tie at 1; each gets 1/6, and each input is in three
    xs = [G.var(1.0, f"x{i}") for i in range(1, 5)]
    grads = G.backward(pairwise(xs, G.maximum))
    assert all(v == pytest.approx(0.5) for v in grads.values())
    xs = [G.var(1.0, f"x{i}") for i in range(1, 5)]
    first = G.backward(pairwise(xs, lambda *h, name: G.maximum(*h, ties="first", name=name)))
    assert first == {"x1": 1.0, "x2": 1.0, "x3": 0.0, "x4": 0.0}


def test_max_rejects_bad_input():
    with pytest.raises(G.GraphError):
        G.maximum()
    with pytest.raises(ValueError, match="ties"):
        G.maximum(G.var(1.0), ties="random")
