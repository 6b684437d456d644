"""Hyperopt's TPE vs random search on the digits at equal budget (Sec. 3.3.1).

For each of 5 seeds both searchers get the same number of trials on the same objective
(``ddlib.chapter.search_studies.digits_objective``: a 64-32-10 ReLU MLP, SGD for 8 epochs on 600 digits,
validation cross-entropy; the search space is log lr in [1e-3, 10] and log l2 in
[1e-6, 1]).  The figure: how many trials TPE needs before its best loss is at least as
good as random search's final best, as a fraction of the budget (the hope: half).  A seed
where TPE never gets there counts as the whole budget.  TPE starts with ``N_STARTUP``
random trials (Hyperopt's default of 20 would be half of a 40-trial budget).

Quick mode (``DDLIB_BENCH_QUICK=1``): 2 seeds and 16 trials, only to see that it runs.
"""

import os
import time

import numpy as np

from ddlib import tuning
from ddlib.chapter import search_studies

SEEDS = 5
BUDGET = 40
N_STARTUP = 10
SPACE = tuning.Space([tuning.Real("lr", 1e-3, 10.0, log=True),
                      tuning.Real("l2", 1e-6, 1.0, log=True)])


def measure(seeds=SEEDS, budget=BUDGET, n_startup=N_STARTUP):
    """Per seed: random's final best, TPE's best, trials TPE needed to match random."""
    objective = search_studies.digits_objective()
    out = []
    for s in range(seeds):
        rnd = tuning.random_search(objective, SPACE, budget, seed=s)
        tpe = tuning.tpe_search(objective, SPACE, budget, seed=s, n_startup=n_startup)
        target = rnd.best["loss"]
        need = tpe.trials_to_reach(target)
        out.append({"seed": s, "random_best": target, "random_at": rnd.trials_to_reach(target),
                    "tpe_best": tpe.best["loss"], "tpe_needed": need})
    return out


def run():
    quick = os.environ.get("DDLIB_BENCH_QUICK") == "1"
    seeds, budget = (2, 16) if quick else (SEEDS, BUDGET)
    t0 = time.perf_counter()
    rows = measure(seeds, budget, min(N_STARTUP, budget // 2))
    elapsed = time.perf_counter() - t0
    needed = np.array([r["tpe_needed"] if r["tpe_needed"] is not None else budget for r in rows])
    frac = float(needed.mean() / budget)
    per_seed = ", ".join(
        f"s{r['seed']}: rnd {r['random_best']:.4f} (trial {r['random_at']}) "
        f"tpe {r['tpe_best']:.4f} needs {r['tpe_needed'] if r['tpe_needed'] else 'never'}"
        for r in rows)
    return [{
        "workload": f"TPE vs random, digits, {budget} trials x {seeds} seeds",
        "variant": "trials TPE needs / budget",
        "seconds": elapsed,
        "ratio": frac,
        "reference": "random search's final best at the same budget",
        "target": "<= 0.5",
        "ok": bool(frac <= 0.5),
        "note": f"mean {needed.mean():.1f} of {budget}; {per_seed}",
    }]


if __name__ == "__main__":
    for row in run():
        print(row)
