"""Scalar computational graphs (Secs. 3.2.1-3.2.2): path sums versus dynamic programming.

A graph is a DAG of scalar variables.  Node i holds its value y(i); the edge (i, j) holds
the local partial derivative z(i, j) = dy(j)/dy(i).  The derivative of the output o with
respect to the source w can be found two ways:

* ``pathwise_derivative``: Lemma 3.2.1 (Eq. 3.4) taken literally -- list every path from w
  to o, multiply the z's along it, add the products.  The number of paths, and so the cost,
  grows exponentially with depth.
* ``dp_derivative``: the dynamic programme of Eq. 3.8, S(i, o) = sum_j S(j, o) z(i, j),
  run backwards from S(o, o) = 1.  One multiply and one add per edge.

Graphs are built either from ``Node`` operations (micrograd style: each operation stores
its value and its local partials next to each other), or directly from values and edges
with ``Graph(values, edges, source, output)`` as in Fig. 3.5.

Backpropagation proper wants do/dx for *every* input x, not one source: ``gradients(graph)``
(or ``backward(output_node)`` on ``Node`` graphs) reads them all off a single backward
sweep, since the DP fills S(i, o) for every node anyway.  ``maximum`` is a max node whose
local partial is 1 on the winning input and 0 elsewhere (ties: see ``TIES``).

>>> g = fig_3_1(w=1.0)
>>> round(dp_derivative(g).value, 6), round(-2 * math.sin(1.0), 6)
(-1.682942, -1.682942)
"""

from __future__ import annotations

import math
import numbers
import time
from dataclasses import dataclass, field

from ..errors import check_int
from ..init import as_rng

__all__ = [
    "GraphError",
    "Node",
    "var",
    "square",
    "cos",
    "sin",
    "tanh",
    "add",
    "mul",
    "weighted_tanh",
    "maximum",
    "TIES",
    "Graph",
    "PathwiseResult",
    "DPResult",
    "enumerate_paths",
    "pathwise_derivative",
    "MAX_PATHS",
    "dp_derivative",
    "gradients",
    "backward",
    "count_paths",
    "fig_3_1",
    "fig_3_3",
    "fig_3_4",
    "layered_dag",
    "path_costs",
    "draw",
]


class GraphError(ValueError):
    """A malformed graph: a cycle, an edge to an unknown node, a bad value."""


# ------------------------------------------------------------------ nodes and operations


class Node:
    """A scalar variable y(i): its value, its input nodes and the local partials z(input, self).

    >>> w = var(3.0, "w")
    >>> y = square(w)
    >>> y.value, y.partials
    (9.0, (6.0,))
    """

    __slots__ = ("value", "inputs", "partials", "op", "name")

    def __init__(self, value, inputs=(), partials=(), op="input", name=None):
        self.value = float(value)
        self.inputs = tuple(inputs)
        self.partials = tuple(float(p) for p in partials)
        self.op = op
        self.name = name

    def __add__(self, other):
        return add(self, other)

    def __mul__(self, other):
        return mul(self, other)

    def __repr__(self):
        return f"Node({self.name or self.op}={self.value:.4g})"


def var(value, name=None):
    """An input node (the weight w of the chapter's figures)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"value must be a real number, got {type(value).__name__} {value!r}")
    return Node(value, op="input", name=name)


def square(x, name=None):
    """y = x^2, z(x, y) = 2x."""
    return Node(x.value ** 2, (x,), (2 * x.value,), "x^2", name)


def cos(x, name=None):
    """y = cos x, z(x, y) = -sin x."""
    return Node(math.cos(x.value), (x,), (-math.sin(x.value),), "cos", name)


def sin(x, name=None):
    """y = sin x, z(x, y) = cos x."""
    return Node(math.sin(x.value), (x,), (math.cos(x.value),), "sin", name)


def tanh(x, name=None):
    """y = tanh x, z(x, y) = 1 - y^2."""
    y = math.tanh(x.value)
    return Node(y, (x,), (1 - y * y,), "tanh", name)


def add(*xs, name=None):
    """y = x1 + x2 + ...; every local partial is 1."""
    return Node(sum(x.value for x in xs), xs, (1.0,) * len(xs), "+", name)


def mul(*xs, name=None):
    """y = x1 x2 ...; the partial for x_k is the product of the other inputs (Eq. 3.6)."""
    vals = [x.value for x in xs]
    partials = [math.prod(vals[:k] + vals[k + 1:]) for k in range(len(vals))]
    return Node(math.prod(vals), xs, partials, "*", name)


def weighted_tanh(xs, weights, name=None):
    """y = tanh(sum_k a_k x_k), z(x_k, y) = a_k (1 - y^2): one neuron with tanh activation."""
    a = sum(float(wk) * x.value for wk, x in zip(weights, xs))
    y = math.tanh(a)
    return Node(y, xs, [float(wk) * (1 - y * y) for wk in weights], "tanh(Σ)", name)


#: how ``maximum`` shares the derivative among inputs tied for the largest value
#: "split" (default): each of the k tied inputs gets 1/k.  The result is then a convex
#:   combination of the one-hot choices, so a valid subgradient of max; it does not depend on
#:   the order of the inputs; and it is the average of the left and right derivatives along
#:   the direction that moves all tied inputs together (torch.amax makes the same choice).
#: "first": the first tied input (in argument order) gets 1, as numpy.argmax picks it; also a
#:   subgradient, cheaper to route, but it favours whichever input was listed first.
TIES = ("split", "first")


def maximum(*xs, ties="split", name=None):
    """y = max(x1, x2, ...); z(x_k, y) = 1 for the winner, 0 for the others.

    Inputs tied for the maximum (exactly equal values) share the derivative according to
    ``ties`` (see ``TIES``): "split" gives each of k tied inputs 1/k, "first" gives all of
    it to the first of them.

    >>> a, b, c = var(1.0, "a"), var(3.0, "b"), var(3.0, "c")
    >>> maximum(a, b, c).partials, maximum(a, b, c, ties="first").partials
    ((0.0, 0.5, 0.5), (0.0, 1.0, 0.0))
    """
    if not xs:
        raise GraphError("maximum needs at least one input")
    if ties not in TIES:
        raise ValueError(f"ties must be one of {TIES}, got {ties!r}")
    vals = [x.value for x in xs]
    top = max(vals)
    winners = [k for k, v in enumerate(vals) if v == top]
    if ties == "first":
        winners = winners[:1]
    share = 1.0 / len(winners)
    partials = [share if k in winners else 0.0 for k in range(len(vals))]
    return Node(top, xs, partials, "max", name)


# ------------------------------------------------------------------------------ graph


class Graph:
    """A DAG with values y(i) on nodes and local derivatives z(i, j) on edges (Fig. 3.5).

    ``values`` maps node name -> y; ``edges`` maps (i, j) -> z(i, j) (or is a list of
    (i, j, z) triples); ``source`` is w and ``output`` is o.  Raises ``GraphError`` for
    an edge naming an unknown node, a non-finite value, or a cycle (naming its nodes).

    >>> g = Graph({"w": 2.0, "y": 4.0, "o": 4.0}, {("w", "y"): 4.0, ("y", "o"): 1.0}, "w", "o")
    >>> dp_derivative(g).value
    4.0
    """

    def __init__(self, values, edges, source, output, ops=None):
        self.values = {}
        for name, v in dict(values).items():
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
                raise GraphError(f"node {name!r} has value {v!r}; expected a finite number")
            self.values[name] = float(v)
        self.ops = dict(ops or {})
        triples = ((i, j, z) for (i, j), z in edges.items()) if isinstance(edges, dict) else edges
        self.edges = {}
        for i, j, z in triples:
            for end in (i, j):
                if end not in self.values:
                    raise GraphError(
                        f"edge ({i!r}, {j!r}) refers to node {end!r}, which is not in the "
                        f"graph (nodes: {sorted(map(str, self.values))})"
                    )
            if isinstance(z, bool) or not isinstance(z, numbers.Real) or not math.isfinite(z):
                raise GraphError(f"edge ({i!r}, {j!r}) has z = {z!r}; expected a finite number")
            self.edges[(i, j)] = self.edges.get((i, j), 0.0) + float(z)
        for role, name in (("source", source), ("output", output)):
            if name not in self.values:
                raise GraphError(f"{role} {name!r} is not a node of the graph")
        self.source, self.output = source, output
        self.succ = {n: [] for n in self.values}
        self.pred = {n: [] for n in self.values}
        for i, j in self.edges:
            self.succ[i].append(j)
            self.pred[j].append(i)
        self.order = self._topological_order()

    def _topological_order(self):
        """Depth-first topological sort; a back edge means a cycle, which is reported."""
        state, order = {}, []
        for start in self.values:
            if start in state:
                continue
            state[start] = 1
            stack, path = [(start, iter(self.succ[start]))], [start]
            while stack:
                node, it = stack[-1]
                nxt = next(it, None)
                if nxt is None:
                    stack.pop()
                    path.pop()
                    state[node] = 2
                    order.append(node)
                elif state.get(nxt) == 1:
                    cycle = path[path.index(nxt):] + [nxt]
                    raise GraphError(
                        f"the graph has a cycle through node {nxt!r}: "
                        + " -> ".join(map(repr, cycle))
                        + "; a computational graph must be acyclic"
                    )
                elif nxt not in state:
                    state[nxt] = 1
                    stack.append((nxt, iter(self.succ[nxt])))
                    path.append(nxt)
        return order[::-1]

    @classmethod
    def from_output(cls, output, source):
        """Trace a graph back from the ``Node`` ``output``; unnamed nodes get names n0, n1, ..."""
        if not isinstance(output, Node) or not isinstance(source, Node):
            raise TypeError("from_output expects Node objects for output and source")
        seen, stack = {}, [output]
        while stack:
            node = stack.pop()
            if id(node) in seen:
                continue
            seen[id(node)] = node
            stack.extend(node.inputs)
        if id(source) not in seen:
            raise GraphError(f"source {source!r} is not an ancestor of output {output!r}")
        names, taken, counter = {}, {n.name for n in seen.values()} - {None}, 0
        used = set()
        for node in reversed(list(seen.values())):
            if node.name is None:
                while f"n{counter}" in taken:
                    counter += 1
                node.name = f"n{counter}"
                taken.add(node.name)
            if node.name in used:
                raise GraphError(f"two different nodes are both named {node.name!r}")
            used.add(node.name)
            names[id(node)] = node.name
        values = {names[k]: n.value for k, n in seen.items()}
        ops = {names[k]: n.op for k, n in seen.items()}
        edges = []
        for k, n in seen.items():
            for inp, z in zip(n.inputs, n.partials):
                edges.append((names[id(inp)], names[k], z))
        return cls(values, edges, names[id(source)], names[id(output)], ops)

    @property
    def inputs(self):
        """Names of the nodes with no incoming edge (the graph's inputs), in topological order."""
        return [n for n in self.order if not self.pred[n]]

    @property
    def n_edges(self):
        return len(self.edges)

    def layers(self):
        """Node -> layer index: the longest distance from a node with no inputs."""
        depth = {}
        for n in self.order:
            depth[n] = max((depth[p] + 1 for p in self.pred[n]), default=0)
        return depth

    def __repr__(self):
        return (f"Graph({len(self.values)} nodes, {self.n_edges} edges, "
                f"source={self.source!r}, output={self.output!r})")


# ------------------------------------------------------------------ the two algorithms


@dataclass
class PathwiseResult:
    """Lemma 3.2.1's answer and what it cost: one product per path, then one sum."""

    value: float
    n_paths: int
    multiplications: int
    additions: int


@dataclass
class DPResult:
    """Eq. 3.8's answer, S(i, o) for every node, and what it cost (work per edge)."""

    value: float
    S: dict = field(repr=False)
    multiplications: int
    additions: int


def enumerate_paths(graph, source=None):
    """Yield every path from ``source`` (default w) to o as a tuple of node names (DFS)."""
    src = graph.source if source is None else source
    out, succ = graph.output, graph.succ
    path, stack = [src], [iter(succ[src])]
    if src == out:
        yield (src,)
        return
    while stack:
        nxt = next(stack[-1], None)
        if nxt is None:
            stack.pop()
            path.pop()
        elif nxt == out:
            yield tuple(path) + (out,)
        else:
            path.append(nxt)
            stack.append(iter(succ[nxt]))


#: the most paths ``pathwise_derivative`` enumerates unless told otherwise (``max_paths``):
#: 2^22, about four seconds; depth 20 of ``layered_dag(2, depth)`` (2^20 paths) still runs
MAX_PATHS = 2 ** 22


def pathwise_derivative(graph, source=None, max_paths=MAX_PATHS):
    """do/dw by Lemma 3.2.1 (Eq. 3.4): sum over all paths of the product of z(i, j) on it.

    Each path's product is formed from scratch, as in the chapter's exponential-time
    algorithm: a path with k edges costs k - 1 multiplications, and n paths cost n - 1
    additions.  Returns a ``PathwiseResult`` (value, n_paths, multiplications, additions).

    The paths are counted first (``count_paths``, linear time); a graph with more than
    ``max_paths`` of them (default ``MAX_PATHS`` = 2^22, a few seconds) is refused with
    a ``GraphError`` giving the count, since enumerating 2^40 paths would run for hours:
    ``dp_derivative`` computes the same derivative in one pass over the edges.  Pass a
    larger ``max_paths`` (or None for no limit) to enumerate anyway.

    >>> pathwise_derivative(layered_dag(2, 30, seed=0))
    Traceback (most recent call last):
    ...
    ddlib.chapter.graph.GraphError: the graph has 1073741824 paths from 'w' to 'o', more than max_paths=4194304: enumerating them would take too long; use dp_derivative(graph) (one pass over the edges), or pass a larger max_paths (None for no limit)
    """
    src = graph.source if source is None else source
    if src not in graph.values:
        raise GraphError(f"source {src!r} is not a node of the graph")
    if max_paths is not None:
        max_paths = check_int("max_paths", max_paths, minimum=1)
        n = count_paths(graph, src)
        if n > max_paths:
            raise GraphError(
                f"the graph has {n} paths from {src!r} to {graph.output!r}, more than "
                f"max_paths={max_paths}: enumerating them would take too long; use "
                "dp_derivative(graph) (one pass over the edges), or pass a larger "
                "max_paths (None for no limit)"
            )
    out = graph.output
    if src == out:
        return PathwiseResult(1.0, 1, 0, 0)
    # depth-first walk keeping the z's of the current path on a stack; at o the whole
    # stack is multiplied afresh (math.prod), so no partial product is ever reused
    succ = {i: [(j, graph.edges[(i, j)]) for j in js] for i, js in graph.succ.items()}
    total, n_paths, mults = 0.0, 0, 0
    zs, stack = [], [iter(succ[src])]
    while stack:
        nxt = next(stack[-1], None)
        if nxt is None:
            stack.pop()
            if zs:
                zs.pop()
        elif nxt[0] == out:
            zs.append(nxt[1])
            total += math.prod(zs)
            mults += len(zs) - 1
            n_paths += 1
            zs.pop()
        else:
            zs.append(nxt[1])
            stack.append(iter(succ[nxt[0]]))
    return PathwiseResult(total, n_paths, mults, max(n_paths - 1, 0))


def dp_derivative(graph, source=None):
    """do/dw by dynamic programming (Eq. 3.8): S(i, o) = sum_{j in A(i)} S(j, o) z(i, j).

    Runs once over the nodes in reverse topological order starting from S(o, o) = 1, so
    every edge is used once: one multiplication per edge and (k - 1) additions at a node
    with k outgoing edges.  ``S`` holds do/dy(i) for every node at no extra cost.
    """
    S = {n: 0.0 for n in graph.values}
    S[graph.output] = 1.0
    mults = adds = 0
    for i in reversed(graph.order):
        if i == graph.output or not graph.succ[i]:
            continue
        terms = [S[j] * graph.edges[(i, j)] for j in graph.succ[i]]
        mults += len(terms)
        adds += len(terms) - 1
        S[i] = math.fsum(terms) if len(terms) > 1 else terms[0]
    src = graph.source if source is None else source
    return DPResult(S[src], S, mults, adds)


def gradients(graph, wrt=None):
    """do/dx for every input x of ``graph`` (or for each name in ``wrt``) from ONE sweep.

    This is backpropagation as a reader expects it: ``dp_derivative`` already fills
    S(i, o) = do/dy(i) for every node in one pass over the edges, so the gradient with
    respect to all inputs costs the same as the derivative with respect to one.  Returns
    a dict name -> derivative (inputs in topological order).

    >>> x1, x2 = var(2.0, "x1"), var(3.0, "x2")
    >>> gradients(Graph.from_output(mul(x1, x2, name="o"), x1))
    {'x1': 3.0, 'x2': 2.0}
    """
    names = graph.inputs if wrt is None else list(wrt)
    for n in names:
        if n not in graph.values:
            raise GraphError(f"{n!r} is not a node of the graph")
    S = dp_derivative(graph).S
    return {n: S[n] for n in names}


def backward(output, seed=1.0):
    """Gradients of ``seed`` * output with respect to every input ``Node`` below ``output``.

    ``seed`` is dL/do (for example 5 in exercise 2 of Sec. 3.10); the chain rule scales
    every gradient by it.  Returns a dict input name -> dL/dx, from one backward sweep.

    >>> x1, x2 = var(2.0, "x1"), var(3.0, "x2")
    >>> backward(mul(x1, x2), seed=5.0)
    {'x1': 15.0, 'x2': 10.0}
    """
    if not isinstance(output, Node):
        raise TypeError(f"output must be a Node, got {type(output).__name__}")
    leaf = output
    while leaf.inputs:
        leaf = leaf.inputs[0]
    grads = gradients(Graph.from_output(output, leaf))
    return {n: float(seed) * g for n, g in grads.items()}


def count_paths(graph, source=None):
    """Number of paths from ``source`` (default w) to o, by the same DP with z = 1.

    N(i) = sum_{j in A(i)} N(j), N(o) = 1: exact integers, linear time, no enumeration.
    """
    N = {n: 0 for n in graph.values}
    N[graph.output] = 1
    for i in reversed(graph.order):
        if i != graph.output:
            N[i] = sum(N[j] for j in graph.succ[i])
    return N[graph.source if source is None else source]


# ------------------------------------------------------------------------- builders


def fig_3_1(w=1.0):
    """Fig. 3.1: o = cos(w^2) with two nodes; do/dw = -2w sin(w^2)."""
    x = var(w, "w")
    y = square(x, name="y=w²")
    return Graph.from_output(cos(y, name="o"), x)


def fig_3_3(w=1.0):
    """Figs. 3.2-3.3, Eq. 3.5: o = cos(w^2) + sin(w^2), two paths from w to o."""
    x = var(w, "w")
    y = square(x, name="y=w²")
    p = cos(y, name="p=cos y")
    q = sin(y, name="q=sin y")
    return Graph.from_output(add(p, q, name="o"), x)


def fig_3_4(w=1.0, n_layers=5):
    """Fig. 3.4: layers of two product nodes (Eq. 3.6); o = w^(2^L), 2^L paths.

    Layer 1 holds two copies of w; h(i, j) = h(i-1, 1) h(i-1, 2); o multiplies the last two.
    With the default five layers o = w^32 and the 32 paths each contribute w^31.
    """
    n_layers = check_int("n_layers", n_layers)
    x = var(w, "w")
    prev = [Node(x.value, (x,), (1.0,), "copy", f"h(1,{j})") for j in (1, 2)]
    for i in range(2, n_layers + 1):
        prev = [mul(prev[0], prev[1], name=f"h({i},{j})") for j in (1, 2)]
    return Graph.from_output(mul(prev[0], prev[1], name="o"), x)


def layered_dag(width, depth, w=0.5, density=1.0, seed=None):
    """A random layered DAG: w -> ``depth`` layers of ``width`` tanh neurons -> o = sum.

    Node (l, k) computes tanh(sum_i a_i y_i) over its inputs from layer l-1, with weights
    a_i ~ N(0, 1) from ``seed``.  With ``density`` = 1 consecutive layers are fully
    connected (width^depth paths); below 1 each edge is kept with that probability, but
    every node keeps at least one input.  The same seed gives the same weights for any
    ``w``, so the graph is a genuine function of w (finite differences can check it).
    """
    width = check_int("width", width)
    depth = check_int("depth", depth)
    if not 0 < density <= 1:
        raise ValueError(f"density must lie in (0, 1], got {density!r}")
    rng = as_rng(seed)
    x = var(w, "w")
    prev = [x]
    for layer in range(1, depth + 1):
        cur = []
        for k in range(width):
            keep = rng.random(len(prev)) < density
            keep[rng.integers(len(prev))] = True
            a = rng.standard_normal(len(prev))
            ins = [p for p, kp in zip(prev, keep) if kp]
            cur.append(weighted_tanh(ins, a[keep], name=f"({layer},{k})"))
        prev = cur
    return Graph.from_output(add(*prev, name="o"), x)


def path_costs(depths, width=2, seed=0, timed=True, max_paths=MAX_PATHS):
    """Cost of path enumeration vs dynamic programming on ``layered_dag(width, depth)``.

    Returns one dict per depth: n_paths (by counting), n_edges, the two derivatives, the
    operation counts (multiplications + additions) of each method and, with ``timed``,
    seconds per call of each (one run each; timings vary between machines and runs).
    ``max_paths`` is passed to ``pathwise_derivative`` (a deeper graph is refused).
    """
    rows = []
    for d in depths:
        g = layered_dag(width, d, seed=seed)
        t0 = time.perf_counter()
        pw = pathwise_derivative(g, max_paths=max_paths)
        t1 = time.perf_counter()
        dp = dp_derivative(g)
        t2 = time.perf_counter()
        row = dict(depth=d, n_paths=count_paths(g), n_edges=g.n_edges,
                   pathwise=pw.value, dp=dp.value,
                   pathwise_ops=pw.multiplications + pw.additions,
                   dp_ops=dp.multiplications + dp.additions)
        if timed:
            row.update(pathwise_s=t1 - t0, dp_s=t2 - t1)
        rows.append(row)
    return rows


# -------------------------------------------------------------------------- drawing


def draw(graph, ax=None, values=True, partials=True, highlight=None, node_size=0.32,
         fmt="{:.3g}"):
    """Draw ``graph`` left to right with matplotlib (no graphviz): nodes by layer, y(i) in
    each node, z(i, j) on each edge.  ``highlight`` is a path (node names) drawn in red.
    Returns the axes.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3))
    layer = graph.layers()
    by_layer = {}
    for n in graph.order:
        by_layer.setdefault(layer[n], []).append(n)
    pos = {}
    for lx, names in by_layer.items():
        for k, n in enumerate(names):
            pos[n] = (float(lx), (len(names) - 1) / 2 - k)
    hl = set(zip(highlight[:-1], highlight[1:])) if highlight else set()
    for (i, j), z in graph.edges.items():
        (x0, y0), (x1, y1) = pos[i], pos[j]
        on = (i, j) in hl
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops=dict(arrowstyle="-|>", color="tab:red" if on else "0.45",
                                    lw=2 if on else 1, shrinkA=14, shrinkB=14))
        if partials:
            ax.text(x0 + 0.6 * (x1 - x0), y0 + 0.6 * (y1 - y0) + 0.08, fmt.format(z),
                    fontsize=7, color="tab:blue", ha="center")
    for n, (x, y) in pos.items():
        edge = "tab:red" if n in (graph.source, graph.output) else "k"
        ax.add_patch(Circle((x, y), node_size, facecolor="white", edgecolor=edge, zorder=3))
        label = f"{n}\n{fmt.format(graph.values[n])}" if values else str(n)
        ax.text(x, y, label, ha="center", va="center", fontsize=7, zorder=4)
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    ax.set_xlim(min(xs) - 0.6, max(xs) + 0.6)
    ax.set_ylim(min(ys) - 0.6, max(ys) + 0.6)
    ax.set_aspect("equal")
    ax.axis("off")
    return ax
