"""The optimizer-race redraw (issue target: one 2-D redraw <= 1 s).

One redraw is what the widget does when a slider moves: build the rules, run each for the
given steps on the surface, draw contours, paths and loss curves, and render the figure
(Agg canvas, the same work a notebook does before it sends the PNG).  Measured for 5 rules
x 200 steps on Rosenbrock, and for all 9 rules x 500 steps as a harder case.
"""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from ddlib.chapter import race
from ddlib.notebook import race as race_ui  # noqa: E402

from .timing import bench  # noqa: E402

FIVE = ("sgd", "momentum", "nesterov", "rmsprop", "adam")


def _redraw(rules, steps, surface="rosenbrock"):
    fig = plt.figure(figsize=(10, 4), dpi=72)  # the notebooks' dpi (ddlib.notebook.notebook_setup)

    def once():
        race_ui.race_figure(surface, rules, steps=steps, fig=fig)
        fig.canvas.draw()

    return once, fig


def _compute(rules, steps, surface="rosenbrock"):
    def once():
        race.race(surface, race.race_rules(rules, 1e-3, 0.02), steps=steps)

    return once


def run():
    rows = []
    for rules, steps in ((FIVE, 200), (race.RACE_RULES, 500)):
        name = f"race redraw {len(rules)} rules x {steps} steps"
        t_run = bench(_compute(rules, steps), repeat=5, min_time=0.1)
        rows.append(dict(workload=name, variant="trajectories only", seconds=t_run))
        once, fig = _redraw(rules, steps)
        t = bench(once, repeat=5, number=1)
        plt.close(fig)
        rows.append(dict(workload=name, variant="run + plot + render (Agg)", seconds=t,
                         target="<= 1 s", ok=t <= 1.0, note="rosenbrock, 72 dpi figure"))
    return rows
