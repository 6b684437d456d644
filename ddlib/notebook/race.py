"""The optimizer race drawn and wired: contour plots, loss curves and the ipywidgets Tab.

The numbers come from ``ddlib.chapter.race``; everything here only draws them, so it can
be called and tested without a browser:

* ``plot_race(surface, paths)`` draws every path on the contour plot beside the loss curves;
  ``race_figure(...)`` builds the rules, runs and draws them (one redraw of the widget);
* ``plot_mlp_race`` draws the digits race's loss against epoch;
* ``optimizer_race()`` wires both into an ipywidgets Tab.

Example::

    fig, paths = race_figure("rosenbrock", ["sgd", "momentum", "adam"], lr=1e-3,
                             adaptive_lr=0.02, steps=300)
"""

from __future__ import annotations

import functools

import numpy as np

from ..chapter import surfaces
from ..chapter.race import RACE_RULES, SURFACE_DEFAULTS, mlp_race, race, race_rules

_COLORS = dict(zip(RACE_RULES, ("#1f77b4", "#ff7f0e", "#2ca02c", "#8c564b", "#9467bd",
                                "#d62728", "#e377c2", "#7f7f7f", "#17becf")))


def view_limits(surface, paths, max_zoom_out=3.0):
    """The plotting box: the surface's own, widened to show where the paths went.

    Widening stops at ``max_zoom_out`` times the box's size, so a path thrown far away
    (a cliff, a divergence) leaves the picture rather than shrinking everything else.
    """
    s = surfaces.get(surface)
    lims = []
    for (lo, hi), axis in ((s.xlim, 0), (s.ylim, 1)):
        half, mid = (hi - lo) / 2, (hi + lo) / 2
        pts = [p.points[:, axis] for p in paths.values() if len(p.points)]
        if pts:
            v = np.concatenate(pts)
            lo = max(min(lo, v.min() - 0.05 * half), mid - max_zoom_out * half)
            hi = min(max(hi, v.max() + 0.05 * half), mid + max_zoom_out * half)
        lims.append((float(lo), float(hi)))
    return lims[0], lims[1]


@functools.lru_cache(maxsize=64)
def _grid(name, formula, xlim, ylim, n):
    s = surfaces.get(name) if name in surfaces.SURFACES else None
    if s is None or s.formula != formula:
        return None
    X, Y, Z = s.grid(n, xlim, ylim)
    return X, Y, Z, s.levels(Z, 14)


def _contour(ax, s, xlim, ylim, n=120):
    """Contours of ``s`` on ``ax``; the grid of a registered surface is cached."""
    key = (s.name, s.formula, tuple(round(v, 9) for v in xlim), tuple(round(v, 9) for v in ylim))
    cached = _grid(*key, n)
    if cached is None:
        X, Y, Z = s.grid(n, xlim, ylim)
        levels = s.levels(Z, 14)
    else:
        X, Y, Z, levels = cached
    ax.contour(X, Y, Z, levels=levels, cmap="viridis", linewidths=0.6)
    for m in s.minima:
        ax.plot(*m, marker="*", color="k", ms=10, ls="none", zorder=5)


def plot_race(surface, paths, fig=None, title=None):
    """Draw each Trajectory of ``paths`` on the contour plot (left) and its loss (right).

    Losses are shown as loss - min on a log scale where the surface has a known minimum,
    and on a symmetric-log scale otherwise (saddle, degenerate).  A diverged path ends in an
    'x' and its legend entry names the step.  Returns the figure.
    """
    import matplotlib.pyplot as plt

    s = surfaces.get(surface)
    if fig is None:
        fig = plt.figure(figsize=(10, 4))
    fig.clf()
    ax_c, ax_l = fig.subplots(1, 2, gridspec_kw=dict(width_ratios=[1.1, 1]))
    xlim, ylim = view_limits(s, paths)
    _contour(ax_c, s, xlim, ylim)
    start = next((p.points[0] for p in paths.values() if len(p.points)), s.start)
    ax_c.plot(*start, "o", color="k", ms=6, zorder=5)
    for name, p in paths.items():
        color = _COLORS.get(name)
        pts = p.points
        label = f"{name}: {p.status}" if p.diverged else name
        # dots mark the steps while they can still be told apart; long paths are lines only
        ax_c.plot(pts[:, 0], pts[:, 1], ".-" if len(pts) <= 120 else "-", color=color, lw=1.2,
                  ms=2.5, label=name)
        steps = np.arange(len(p.losses))
        if s.floor is not None:
            y = np.maximum(p.losses - s.floor, 1e-16)
        else:
            y = p.losses
        ax_l.plot(steps, y, color=color, lw=1.4, label=label)
        if p.diverged and len(pts):
            ax_c.plot(*pts[-1], "x", color=color, ms=10, mew=2)
            ax_l.plot(steps[-1], y[-1], "x", color=color, ms=10, mew=2)
    ax_c.set_xlim(*xlim)
    ax_c.set_ylim(*ylim)
    ax_c.set_xlabel("x")
    ax_c.set_ylabel("y")
    ax_c.set_title(title or f"{s.name}: L = {s.formula}", fontsize=9)
    if s.floor is not None:
        ax_l.set_yscale("log")
        ax_l.set_ylabel("loss - minimum")
    else:
        ax_l.set_yscale("symlog", linthresh=1e-2)
        ax_l.set_ylabel("loss")
    ax_l.set_xlabel("step")
    ax_l.legend(fontsize=8, loc="best")
    # fixed margins: tight_layout would cost about a third of a redraw
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.13, top=0.92, wspace=0.22)
    return fig


def race_figure(surface="rosenbrock", rules=("sgd", "momentum", "nesterov", "rmsprop", "adam"),
                lr=None, adaptive_lr=None, beta=0.9, rho=0.9, start=None, steps=None, fig=None):
    """Build the rules, run them on ``surface`` and draw the race: one widget redraw.

    ``lr``, ``adaptive_lr`` and ``steps`` default to the surface's ``SURFACE_DEFAULTS``.
    Returns (figure, {name: Trajectory}).
    """
    s = surfaces.get(surface)
    d = SURFACE_DEFAULTS.get(s.name, dict(lr=0.01, adaptive_lr=0.01, steps=200))
    lr = d["lr"] if lr is None else lr
    adaptive_lr = d["adaptive_lr"] if adaptive_lr is None else adaptive_lr
    steps = d["steps"] if steps is None else steps
    paths = race(s, race_rules(rules, lr, adaptive_lr, beta, rho), start, steps)
    return plot_race(s, paths, fig), paths


def plot_mlp_race(results, fig=None):
    """Training and test loss against epoch for each rule of ``results`` (from ``mlp_race``)."""
    import matplotlib.pyplot as plt

    if fig is None:
        fig = plt.figure(figsize=(10, 3.6))
    fig.clf()
    ax_tr, ax_te = fig.subplots(1, 2, sharey=True)
    for name, r in results.items():
        color = _COLORS.get(name)
        ep = np.arange(1, len(r.train_loss) + 1)
        acc = f" (test acc {r.test_acc[-1]:.3f})" if r.test_acc else ""
        label = name + (acc if r.status == "ok" else f": {r.status}")
        ax_tr.plot(ep, r.train_loss, "o-", color=color, ms=3, label=label)
        ax_te.plot(ep, r.test_loss, "o-", color=color, ms=3, label=label)
    ax_tr.set_title("training loss", fontsize=9)
    ax_te.set_title("test loss", fontsize=9)
    from matplotlib.ticker import MaxNLocator

    for ax in (ax_tr, ax_te):
        ax.set_xlabel("epoch")
        ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_tr.set_ylabel("cross-entropy")
    ax_te.legend(fontsize=8)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- the widget wiring
def optimizer_race(surface="rosenbrock", rules=("sgd", "momentum", "nesterov", "rmsprop", "adam")):
    """The race as ipywidgets: a rule picker above two tabs (surfaces, digits MLP).

    Tab 1 redraws ``race_figure`` whenever a control moves; choosing a surface loads its
    default rates, steps and start point.  Tab 2 trains when its button is pressed (results
    are cached, so returning to earlier settings is instant).  Returns the top widget.
    """
    import ipywidgets as w
    from IPython.display import display
    from matplotlib.figure import Figure  # not pyplot's: the widget's figures are never
    # shown again by the notebook's inline backend when the cell ends

    d = SURFACE_DEFAULTS[surface]
    s = surfaces.get(surface)
    style = {"description_width": "90px"}
    rules_w = w.SelectMultiple(options=RACE_RULES, value=tuple(rules), rows=len(RACE_RULES),
                               description="rules", style=style)
    surf_w = w.Dropdown(options=list(surfaces.SURFACES), value=surface, description="surface",
                        style=style)
    lr_w = w.FloatLogSlider(value=d["lr"], base=10, min=-4, max=0.5, step=0.05,
                            description="lr", style=style, readout_format=".2g")
    alr_w = w.FloatLogSlider(value=d["adaptive_lr"], base=10, min=-4, max=0, step=0.05,
                             description="adaptive lr", style=style, readout_format=".2g")
    beta_w = w.FloatSlider(value=0.9, min=0.0, max=0.99, step=0.01, description="beta",
                           style=style)
    rho_w = w.FloatSlider(value=0.9, min=0.0, max=0.999, step=0.001, description="rho",
                          style=style, readout_format=".3f")
    x0_w = w.FloatSlider(value=s.start[0], min=s.xlim[0], max=s.xlim[1], step=0.05,
                         description="start x", style=style)
    y0_w = w.FloatSlider(value=s.start[1], min=s.ylim[0], max=s.ylim[1], step=0.05,
                         description="start y", style=style)
    steps_w = w.IntSlider(value=d["steps"], min=10, max=1000, step=10, description="steps",
                          style=style)
    out2d = w.Output()
    fig2d = {"fig": None}
    busy = {"loading": False}

    def redraw(*_):
        if busy["loading"]:
            return
        with out2d:
            out2d.clear_output(wait=True)
            if not rules_w.value:
                print("pick at least one rule")
                return
            if fig2d["fig"] is None:
                fig2d["fig"] = Figure(figsize=(10, 4))
            fig, _ = race_figure(surf_w.value, rules_w.value, lr_w.value, alr_w.value,
                                 beta_w.value, rho_w.value, (x0_w.value, y0_w.value),
                                 steps_w.value, fig=fig2d["fig"])
            display(fig)

    def load_surface(change):
        new = surfaces.get(change["new"])
        dd = SURFACE_DEFAULTS[new.name]
        busy["loading"] = True
        try:
            # widen the ranges first so the new values are never clamped by the old ones
            for sl, (lo, hi), v in ((x0_w, new.xlim, new.start[0]), (y0_w, new.ylim, new.start[1])):
                sl.min, sl.max = min(sl.min, lo), max(sl.max, hi)
                sl.value = float(v)
                sl.min, sl.max = lo, hi
            lr_w.value, alr_w.value, steps_w.value = dd["lr"], dd["adaptive_lr"], dd["steps"]
        finally:
            busy["loading"] = False
        redraw()

    surf_w.observe(load_surface, names="value")
    for c in (rules_w, lr_w, alr_w, beta_w, rho_w, x0_w, y0_w, steps_w):
        c.observe(redraw, names="value")
    tab1 = w.VBox([w.HBox([w.VBox([surf_w, lr_w, alr_w, steps_w]),
                           w.VBox([beta_w, rho_w, x0_w, y0_w])]), out2d])

    mlr_w = w.FloatLogSlider(value=0.1, base=10, min=-3, max=0, step=0.1, description="lr",
                             style=style, readout_format=".2g")
    malr_w = w.FloatLogSlider(value=3e-3, base=10, min=-4, max=-1, step=0.1,
                              description="adaptive lr", style=style, readout_format=".2g")
    ep_w = w.IntSlider(value=5, min=1, max=20, description="epochs", style=style)
    hid_w = w.IntSlider(value=32, min=8, max=128, step=8, description="hidden", style=style)
    go = w.Button(description="train", button_style="primary")
    out_mlp = w.Output()

    def train_mlp(*_):
        with out_mlp:
            out_mlp.clear_output(wait=True)
            if not rules_w.value:
                print("pick at least one rule")
                return
            print(f"training {len(rules_w.value)} rule(s) ...")
            res = mlp_race(rules_w.value, mlr_w.value, malr_w.value, beta_w.value, rho_w.value,
                           ep_w.value, hid_w.value)
            out_mlp.clear_output(wait=True)
            display(plot_mlp_race(res, fig=Figure(figsize=(10, 3.6))))

    go.on_click(train_mlp)
    tab2 = w.VBox([w.HBox([w.VBox([mlr_w, malr_w]), w.VBox([ep_w, hid_w, go])]),
                   w.HTML("beta and rho are shared with the surface tab."), out_mlp])
    tabs = w.Tab(children=[tab1, tab2])
    tabs.set_title(0, "2-D surfaces")
    tabs.set_title(1, "digits MLP")
    redraw()
    return w.VBox([rules_w, tabs])
