"""ddlib.chapter.graph: pathwise aggregation (Lemma 3.2.1) and dynamic programming (Eq. 3.8)."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ddlib.chapter import graph as G

ws = st.floats(min_value=-2.0, max_value=2.0, allow_nan=False).filter(lambda w: abs(w) > 1e-3)


def central(build, w, h=1e-6):
    """Finite-difference do/dw from rebuilding the graph at w +- h."""
    return (build(w + h).values["o"] - build(w - h).values["o"]) / (2 * h)


@settings(max_examples=30, deadline=None)
@given(w=ws)
def test_fig_3_1_chain_rule(w):
    g = G.fig_3_1(w)
    assert g.values["o"] == pytest.approx(math.cos(w * w))
    expected = -2 * w * math.sin(w * w)
    assert G.dp_derivative(g).value == pytest.approx(expected, rel=1e-12, abs=1e-14)
    pw = G.pathwise_derivative(g)
    assert pw.n_paths == 1
    assert pw.value == pytest.approx(expected, rel=1e-12, abs=1e-14)


@settings(max_examples=30, deadline=None)
@given(w=ws)
def test_fig_3_3_two_paths(w):
    g = G.fig_3_3(w)
    assert g.values["o"] == pytest.approx(math.cos(w * w) + math.sin(w * w))
    expected = -2 * w * math.sin(w * w) + 2 * w * math.cos(w * w)  # Fig. 3.3
    pw, dp = G.pathwise_derivative(g), G.dp_derivative(g)
    assert pw.n_paths == 2 == G.count_paths(g)
    assert pw.value == pytest.approx(expected, rel=1e-12, abs=1e-14)
    assert dp.value == pytest.approx(expected, rel=1e-12, abs=1e-14)


@pytest.mark.parametrize("w", [0.9, 1.05, -1.1])
def test_fig_3_4_thirty_two_paths_each_w31(w):
    g = G.fig_3_4(w)
    assert g.values["o"] == pytest.approx(w ** 32, rel=1e-13)
    paths = list(G.enumerate_paths(g))
    assert len(paths) == 32 == len(set(paths)) == G.count_paths(g)
    for p in paths:
        assert p[0] == "w" and p[-1] == "o" and len(p) == 7
        prod = math.prod(g.edges[e] for e in zip(p[:-1], p[1:]))
        assert prod == pytest.approx(w ** 31, rel=1e-13)
    assert G.pathwise_derivative(g).value == pytest.approx(32 * w ** 31, rel=1e-13)
    assert G.dp_derivative(g).value == pytest.approx(32 * w ** 31, rel=1e-13)


@pytest.mark.parametrize("n_layers", [1, 2, 3, 6])
def test_fig_3_4_general_depth(n_layers):
    w = 1.01
    g = G.fig_3_4(w, n_layers=n_layers)
    k = 2 ** n_layers
    assert G.count_paths(g) == k
    assert G.pathwise_derivative(g).value == pytest.approx(k * w ** (k - 1), rel=1e-12)
    assert G.dp_derivative(g).value == pytest.approx(k * w ** (k - 1), rel=1e-12)


@settings(max_examples=20, deadline=None)
@given(width=st.integers(1, 3), depth=st.integers(1, 5), seed=st.integers(0, 10 ** 6),
       density=st.sampled_from([1.0, 0.6]), w=st.floats(-1.5, 1.5))
def test_layered_dag_methods_agree_with_finite_differences(width, depth, seed, density, w):
    def build(v):
        return G.layered_dag(width, depth, w=v, density=density, seed=seed)

    g = build(w)
    pw, dp = G.pathwise_derivative(g), G.dp_derivative(g)
    assert pw.n_paths == G.count_paths(g) == len(list(G.enumerate_paths(g)))
    assert pw.value == pytest.approx(dp.value, rel=1e-10, abs=1e-13)
    assert dp.value == pytest.approx(central(build, w), rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("width,depth", [(2, 1), (2, 6), (3, 4), (1, 5)])
def test_operation_counts_exponential_vs_linear(width, depth):
    g = G.layered_dag(width, depth, seed=1)
    n_paths = width ** depth
    n_edges = width + width * width * (depth - 1) + width
    assert G.count_paths(g) == n_paths and g.n_edges == n_edges
    pw, dp = G.pathwise_derivative(g), G.dp_derivative(g)
    # each path has depth + 1 edges: depth multiplications, then n_paths - 1 additions
    assert (pw.multiplications, pw.additions) == (n_paths * depth, n_paths - 1)
    # one multiplication per edge; every node with successors adds (out-degree - 1) terms
    assert (dp.multiplications, dp.additions) == (n_edges, n_edges - (1 + width * depth))


def test_path_costs_rows_double_per_layer():
    rows = G.path_costs(range(2, 9), width=2, seed=0, timed=False)
    for a, b in zip(rows[:-1], rows[1:]):
        assert b["n_paths"] == 2 * a["n_paths"]
        assert b["pathwise_ops"] > 2 * a["pathwise_ops"]  # faster than doubling
        assert b["dp_ops"] - a["dp_ops"] == rows[1]["dp_ops"] - rows[0]["dp_ops"]  # linear
    for r in rows:
        assert r["pathwise"] == pytest.approx(r["dp"], rel=1e-10, abs=1e-14)
        assert "pathwise_s" not in r
    timed = G.path_costs([3], timed=True)[0]
    assert timed["pathwise_s"] >= 0 and timed["dp_s"] >= 0


def test_layered_dag_is_seeded():
    a = G.layered_dag(2, 4, seed=3)
    b = G.layered_dag(2, 4, seed=3)
    c = G.layered_dag(2, 4, seed=4)
    assert a.edges == b.edges and a.values == b.values
    assert a.edges != c.edges


def test_explicit_graph_like_fig_3_5():
    values = {"w": 1.0, "a": 2.0, "b": 3.0, "c": 0.5, "o": 4.0}
    edges = {("w", "a"): 2.0, ("w", "b"): -1.0, ("a", "c"): 0.5, ("b", "c"): 3.0,
             ("a", "o"): 1.5, ("c", "o"): -2.0}
    g = G.Graph(values, edges, "w", "o")
    # paths: w-a-o, w-a-c-o, w-b-c-o
    expected = 2 * 1.5 + 2 * 0.5 * -2 + -1 * 3 * -2
    assert G.count_paths(g) == 3
    assert G.pathwise_derivative(g).value == pytest.approx(expected)
    dp = G.dp_derivative(g)
    assert dp.value == pytest.approx(expected)
    assert dp.S["c"] == -2.0 and dp.S["a"] == pytest.approx(1.5 + 0.5 * -2)


def test_repeated_input_sums_partials():
    x = G.var(3.0, "x")
    g = G.Graph.from_output(G.mul(x, x, name="o"), x)  # x * x: d/dx = 2x
    assert G.dp_derivative(g).value == pytest.approx(6.0)


def test_cycle_is_reported_with_a_node_on_it():
    values = {"w": 1.0, "a": 1.0, "b": 1.0, "o": 1.0}
    edges = [("w", "a", 1.0), ("a", "b", 1.0), ("b", "a", 1.0), ("b", "o", 1.0)]
    with pytest.raises(G.GraphError, match=r"cycle through node '(a|b)'") as err:
        G.Graph(values, edges, "w", "o")
    assert "'a' -> 'b'" in str(err.value) or "'b' -> 'a'" in str(err.value)


def test_self_loop_is_a_cycle():
    with pytest.raises(G.GraphError, match="cycle through node 'a'"):
        G.Graph({"w": 0.0, "a": 0.0}, {("w", "a"): 1.0, ("a", "a"): 1.0}, "w", "a")


def test_bad_references_and_values():
    with pytest.raises(G.GraphError, match="refers to node 'zz'"):
        G.Graph({"w": 1.0, "o": 1.0}, {("w", "zz"): 1.0}, "w", "o")
    with pytest.raises(G.GraphError, match="output 'q' is not a node"):
        G.Graph({"w": 1.0, "o": 1.0}, {("w", "o"): 1.0}, "w", "q")
    with pytest.raises(G.GraphError, match="node 'o' has value nan"):
        G.Graph({"w": 1.0, "o": float("nan")}, {("w", "o"): 1.0}, "w", "o")
    with pytest.raises(G.GraphError, match=r"edge \('w', 'o'\) has z = inf"):
        G.Graph({"w": 1.0, "o": 1.0}, {("w", "o"): math.inf}, "w", "o")
    with pytest.raises(ValueError, match="density"):
        G.layered_dag(2, 3, density=0.0)
    with pytest.raises(ValueError, match="depth must be >= 1"):
        G.layered_dag(2, 0)
    with pytest.raises(TypeError, match="value must be a real number"):
        G.var("one")
    x, y = G.var(1.0, "x"), G.var(2.0, "y")
    with pytest.raises(G.GraphError, match="not an ancestor"):
        G.Graph.from_output(G.square(x), y)
    with pytest.raises(G.GraphError, match="both named 'x'"):
        G.Graph.from_output(G.add(x, G.var(2.0, "x")), x)


def test_unreachable_output_gives_zero_derivative():
    g = G.Graph({"w": 1.0, "a": 1.0, "o": 1.0}, {("a", "o"): 2.0}, "w", "o")
    assert G.count_paths(g) == 0
    assert G.pathwise_derivative(g).value == 0.0 == G.dp_derivative(g).value


def test_draw_has_one_circle_per_node():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle

    g = G.fig_3_4(1.1)
    path = next(G.enumerate_paths(g))
    ax = G.draw(g, highlight=path)
    assert sum(isinstance(p, Circle) for p in ax.patches) == len(g.values)
    labels = [t.get_text() for t in ax.texts]
    assert any(lbl.startswith("h(3,1)") for lbl in labels)
    plt.close(ax.figure)


def test_layers_follow_longest_distance():
    g = G.fig_3_4(1.0, n_layers=3)
    layer = g.layers()
    assert layer["w"] == 0 and layer["h(1,2)"] == 1 and layer["h(3,1)"] == 3 and layer["o"] == 4
    assert np.all([layer[j] > layer[i] for i, j in g.edges])
