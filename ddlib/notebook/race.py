"""The optimizer race drawn and wired: contour plots, loss curves and the ipywidgets Tab.

The numbers come from ``ddlib.chapter.race``; everything here only draws them, so it can
be called and tested without a browser:

* ``plot_race(surface, paths)`` draws every path on the contour plot beside the loss curves;
  ``race_figure(...)`` builds the rules, runs and draws them (one redraw of the widget);
* ``plot_mlp_race`` draws the digits race's loss against epoch;
* ``optimizer_race()`` wires both into an ipywidgets Tab (``OptimizerRace``), and
  ``momentum_race()`` offers three of the rules on four surfaces (``SurfaceRace``, the
  surface tab on its own).

Example::

    fig, paths = race_figure("rosenbrock", ["sgd", "momentum", "adam"], lr=1e-3,
                             adaptive_lr=0.02, steps=300)
"""

from __future__ import annotations

import functools

import ipywidgets as w
import numpy as np
from IPython.display import display
from matplotlib.figure import Figure  # not pyplot's: never shown again at the end of a cell

from ..chapter import surfaces
from ..chapter.race import RACE_RULES, SURFACE_DEFAULTS, mlp_race, race, race_rules
from .controls import Redraw, ladder_slider

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
FIVE = ("sgd", "momentum", "nesterov", "rmsprop", "adam")
MOMENTUM_SURFACES = ("local_minima", "ellipse", "rosenbrock", "bowl")
_STYLE = {"description_width": "90px"}


def _slider(cls, value, lo, hi, step, description, **kw):
    # continuous_update off: a redraw costs a few tenths of a second, so the kernel hears
    # where a drag ends rather than queueing one redraw per value the handle crossed
    return cls(value=value, min=lo, max=hi, step=step, description=description, style=_STYLE,
               continuous_update=False, **kw)


class SurfaceRace(w.VBox):
    """The race on one 2-D surface as widgets: the controls above, the figure below.

    ``rules`` are the rules drawn (``self.rules``, a SelectMultiple; pass ``rules_picker``
    to share one with other tabs); ``names`` the surfaces offered; ``columns`` the controls
    shown, column by column, by attribute name (the others keep their values).  Choosing a
    surface loads its rates and steps (``SURFACE_DEFAULTS``), its start and its box.  Every
    action, from building the widget to a new surface, a rule or a slider let go, is one
    call of ``draw()``; every default is a value its control can show exactly
    (``controls.browser_value``).

    Example: ``SurfaceRace("saddle", ["sgd", "adam"])`` (a notebook displays it).
    """

    COLUMNS = (("surface", "lr", "adaptive_lr", "steps"), ("beta", "rho", "x0", "y0"))

    def __init__(self, surface="rosenbrock", rules=FIVE, names=None, columns=COLUMNS,
                 rules_picker=None):
        s = surfaces.get(surface)
        d = SURFACE_DEFAULTS[s.name]
        names = list(surfaces.SURFACES) if names is None else list(names)
        lrs = [v["lr"] for v in SURFACE_DEFAULTS.values()]
        alrs = [v["adaptive_lr"] for v in SURFACE_DEFAULTS.values()]
        self.rules = rules_picker or w.SelectMultiple(
            options=RACE_RULES, value=tuple(rules), rows=len(RACE_RULES), description="rules",
            style=_STYLE)
        self.surface = w.Dropdown(options=names, value=s.name, description="surface", style=_STYLE)
        self.lr = ladder_slider(d["lr"], "lr", 1e-4, 3.0, extra=lrs, style=_STYLE)
        self.adaptive_lr = ladder_slider(d["adaptive_lr"], "adaptive lr", 1e-4, 1.0, extra=alrs,
                                       style=_STYLE)
        self.steps = _slider(w.IntSlider, d["steps"], 10, 1000, 10, "steps")
        self.beta = _slider(w.FloatSlider, 0.9, 0.0, 0.99, 0.01, "beta")
        self.rho = _slider(w.FloatSlider, 0.9, 0.0, 0.999, 0.001, "rho", readout_format=".3f")
        # a 0.01 grid holds every surface's start (the saddle's y = 0.01 among them)
        self.x0 = _slider(w.FloatSlider, float(s.start[0]), *s.xlim, 0.01, "start x")
        self.y0 = _slider(w.FloatSlider, float(s.start[1]), *s.ylim, 0.01, "start y")
        self.out = w.Output()
        self._fig = None
        super().__init__(children=[
            w.HBox([w.VBox([getattr(self, n) for n in col]) for col in columns]), self.out])
        self.redraw = Redraw(lambda: self.draw())
        self.redraw.on_change(self.surface, self._load_surface)
        self.redraw.watch(self.rules, self.lr, self.adaptive_lr, self.steps, self.beta, self.rho,
                          self.x0, self.y0)
        self.redraw.request()

    def _load_surface(self, change):
        new = surfaces.get(change["new"])
        d = SURFACE_DEFAULTS[new.name]
        with self.redraw.hold():
            for sl, (lo, hi), v in ((self.x0, new.xlim, new.start[0]),
                                    (self.y0, new.ylim, new.start[1])):
                with sl.hold_sync():  # one message to the browser: range and value together
                    # widen first, so neither the old range clamps the new value nor the
                    # new range the old one
                    sl.min, sl.max = min(sl.min, lo), max(sl.max, hi)
                    sl.value = float(v)
                    sl.min, sl.max = lo, hi
            self.lr.value, self.adaptive_lr.value = d["lr"], d["adaptive_lr"]
            self.steps.value = d["steps"]
            self.redraw.request()  # the surface itself changed, even if no setting did

    def draw(self):
        """Run the chosen rules with the controls' settings and show the race (one redraw)."""
        with self.out:
            self.out.clear_output(wait=True)
            if not self.rules.value:
                print("pick at least one rule")
                return
            if self._fig is None:
                self._fig = Figure(figsize=(10, 4))
            race_figure(self.surface.value, self.rules.value, self.lr.value,
                        self.adaptive_lr.value, self.beta.value, self.rho.value,
                        (self.x0.value, self.y0.value), self.steps.value, fig=self._fig)
            display(self._fig)


class OptimizerRace(w.VBox):
    """The optimizer race: a rule picker above two tabs, 2-D surfaces and the digits MLP.

    ``self.race`` is the surface tab (a SurfaceRace); the MLP tab trains when its button is
    pressed (results are cached, so returning to earlier settings is instant) and reads
    beta and rho from the surface tab.
    """

    def __init__(self, surface="rosenbrock", rules=FIVE):
        self.race = SurfaceRace(surface, rules)
        self.rules = self.race.rules
        self.mlp_lr = ladder_slider(0.1, "lr", 1e-3, 1.0, style=_STYLE)
        self.mlp_adaptive_lr = ladder_slider(3e-3, "adaptive lr", 1e-4, 0.1, style=_STYLE)
        self.epochs = _slider(w.IntSlider, 5, 1, 20, 1, "epochs")
        self.hidden = _slider(w.IntSlider, 32, 8, 128, 8, "hidden")
        self.train = w.Button(description="train", button_style="primary")
        self.mlp_out = w.Output()
        self._trainer = Redraw(lambda: self.train_mlp())
        self._trainer.on_click(self.train)
        mlp = w.VBox([w.HBox([w.VBox([self.mlp_lr, self.mlp_adaptive_lr]),
                              w.VBox([self.epochs, self.hidden, self.train])]),
                      w.HTML("beta and rho are shared with the surface tab."), self.mlp_out])
        tabs = w.Tab(children=[self.race, mlp])
        tabs.set_title(0, "2-D surfaces")
        tabs.set_title(1, "digits MLP")
        super().__init__(children=[self.rules, tabs])

    def train_mlp(self):
        """Train the MLP with every chosen rule (cached) and draw the losses."""
        with self.mlp_out:
            self.mlp_out.clear_output(wait=True)
            rules = self.rules.value
            if not rules:
                print("pick at least one rule")
                return
            print(f"training {len(rules)} rule(s) ...")
            res = mlp_race(rules, self.mlp_lr.value, self.mlp_adaptive_lr.value,
                           self.race.beta.value, self.race.rho.value, self.epochs.value,
                           self.hidden.value)
            self.mlp_out.clear_output(wait=True)
            display(plot_mlp_race(res, fig=Figure(figsize=(10, 3.6))))


def optimizer_race(surface="rosenbrock", rules=FIVE):
    """The race as ipywidgets: a rule picker above two tabs (surfaces, digits MLP).

    Returns the top widget, an ``OptimizerRace``; its surface tab redraws once per action
    and loads each surface's defaults when it is chosen.
    """
    return OptimizerRace(surface, rules)


def momentum_race(surface="local_minima", names=MOMENTUM_SURFACES):
    """Plain descent, momentum and Nesterov side by side (Sec. 3.5.2), as widgets.

    A surface picker, the rate, the number of steps and beta; choosing a surface loads its
    default rate and steps, as the full race does.  Returns the ``SurfaceRace``.
    """
    return SurfaceRace(surface, ("sgd", "momentum", "nesterov"), names=names,
                       columns=(("surface", "lr", "steps"), ("beta",)))
