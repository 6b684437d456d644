"""The Sec. 3.3.1 race: every searcher against random search on the digits at equal budget.

For each of ``SEEDS`` seeds every searcher gets ``BUDGET`` trials on the same objective
(``ddlib.chapter.search_studies.digits_objective``: a 64-32-10 ReLU MLP, SGD for 8 epochs on
600 digits, validation cross-entropy; log lr in [1e-3, 10], log l2 in [1e-6, 1]).  The
model-based searchers (Hyperopt's TPE, the Spearmint-style GP, the SMAC-style forest) start
from the same ``N_STARTUP`` random points as random search with the same seed.

The figure, per method: the trials it needs to reach random search's final best (median over
seeds), as a fraction of the trials random search itself needed to get there (median over
seeds).  A seed where a method never gets there within the budget counts as budget + 1, so
a fraction above budget / random's median reads "usually not within the budget".  The hope
for a model-based method is half of random's (<= 0.5).  The grid has no seed: its one run
is compared on every seed.

Time per suggestion: the time a searcher spends outside the objective (fitting its model,
maximizing its acquisition), divided by the trials it proposed after the random start;
random search's draw is the yardstick.

Quick mode (``DDLIB_BENCH_QUICK=1``): 2 seeds and 12 trials, only to see that it runs.
"""

import os
import time

import numpy as np

from ddlib import tuning
from ddlib.chapter import search_studies

SEEDS = 10
BUDGET = 30
N_STARTUP = 5
METHODS = search_studies.RACE_METHODS
SPACE = tuning.Space([tuning.Real("lr", 1e-3, 10.0, log=True),
                      tuning.Real("l2", 1e-6, 1.0, log=True)])


class _Timed:
    """The objective with a stopwatch: the time spent inside it is not the searcher's."""

    def __init__(self, objective):
        self.objective, self.seconds, self.calls = objective, 0.0, 0

    def __call__(self, params, **kw):
        t0 = time.perf_counter()
        try:
            return self.objective(params, **kw)
        finally:
            self.seconds += time.perf_counter() - t0
            self.calls += 1


def measure(seeds=SEEDS, budget=BUDGET, n_startup=N_STARTUP, methods=METHODS):
    """Best-so-far curves per method, and seconds per suggestion outside the objective."""
    objective = search_studies.digits_objective()
    curves, per_suggestion = {}, {}
    for m in methods:
        timed = _Timed(objective)
        t0 = time.perf_counter()
        curves.update(search_studies.race(timed, SPACE, budget, range(seeds), methods=(m,),
                                          n_startup=n_startup))
        overhead = time.perf_counter() - t0 - timed.seconds
        guided = timed.calls - (n_startup * seeds if m in tuning.MODEL_BASED else 0)
        per_suggestion[m] = overhead / max(guided, 1)
    return curves, per_suggestion


def run():
    quick = os.environ.get("DDLIB_BENCH_QUICK") == "1"
    seeds, budget = (2, 12) if quick else (SEEDS, BUDGET)
    n_startup = min(N_STARTUP, budget // 2)
    t0 = time.perf_counter()
    curves, per_suggestion = measure(seeds, budget, n_startup)
    elapsed = time.perf_counter() - t0
    needed = search_studies.trials_needed(curves)
    rnd = float(np.median(needed["random"]))
    rows = []
    for m in METHODS:
        frac = float(np.median(needed[m]) / rnd)
        model_based = m in tuning.MODEL_BASED
        final = curves[m][:, -1]
        rows.append({
            "workload": f"search race, digits, {budget} trials x {seeds} seeds",
            "variant": f"{m}: trials to random's best",
            "seconds": elapsed if m == "random" else None,
            "ratio": frac,
            "reference": "median trials random search needs to reach its own final best",
            "target": "<= 0.5" if model_based else "",
            "ok": bool(frac <= 0.5) if model_based else None,
            "note": (f"median {np.median(needed[m]):.1f} vs random's {rnd:.1f}; per seed "
                     f"{needed[m].tolist()} (budget + 1 = never); final best mean "
                     f"{final.mean():.4f}, sd {final.std():.4f}"),
        })
    base = per_suggestion["random"]
    for m in tuning.MODEL_BASED:
        rows.append({
            "workload": "search race, time per suggestion",
            "variant": f"{m}: model fit + acquisition",
            "seconds": per_suggestion[m],
            "ratio": per_suggestion[m] / base if base > 0 else None,
            "reference": f"random search's draw, {base * 1e6:.0f} us",
            "target": "",
            "ok": None,
            "note": f"{per_suggestion[m] * 1e3:.1f} ms per guided trial, outside the objective",
        })
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
