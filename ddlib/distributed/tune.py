"""Hyperparameter parallelism (Sec. 3.7.2) on Ray Tune, with ``ddlib.tuning``'s spaces.

Trying hyperparameters is the easiest work to spread over machines: the trials do not
talk to each other.  ``tune_search`` runs the searches of ``ddlib.tuning`` (Sec. 3.3.1)
as Ray Tune trials, as many at once as Ray has CPUs for, and returns the same ``Trials``
table the one-process searchers return:

* ``method="random"`` and ``"grid"`` evaluate exactly the points ``tuning.random_search``
  and ``tuning.grid_search`` would (drawn here, from the same seed), so a parallel sweep
  and a serial one can be compared row by row;
* ``method="tpe"`` lets Tune's ``HyperOptSearch`` propose the points (Hyperopt's TPE,
  the same algorithm as ``tuning.tpe_search``; with several trials in flight it proposes
  without the results still running, so its path differs from the serial one);
* ``scheduler="asha"`` adds Tune's ``ASHAScheduler``: successive halving run
  asynchronously, so a poor trial is stopped at a rung without waiting for the others
  of its rung (Sec. 3.3.1's early termination, at scale).  The objective is then called
  as ``objective(params, report=report)`` and calls ``report(loss)`` after each unit of
  resource (an epoch); the row's ``resource`` is the number of reports it made.

A trial whose process dies (a crash, ``os._exit``, a killed worker) is retried up to
``max_failures`` times (Tune's ``FailureConfig``) without touching the other trials;
one that still fails is listed in ``Trials.failed`` with its error and left out of the
rows.  Tune's files go to ``engine.tune_storage()`` (the checkout's ``.state/tune``), not
``~/ray_results``.  A Ray already running is used; otherwise a private loopback-only one
is started with ``engine.start`` and stopped at the end.
"""

from __future__ import annotations

import math
import os
import uuid

from ..errors import check_int
from ..init import as_rng
from ..tuning import Choice, Trials, _as_space, _loss
from . import engine

METHODS = ("random", "grid", "tpe")
SCHEDULERS = (None, "asha")


def _points(space, method, budget, seed, points_per_dim):
    """The points the one-process searcher would try, in its order."""
    if method == "random":
        rng = as_rng(seed)
        return [space.sample(rng) for _ in range(budget)]
    n_ordered = sum(1 for d in space if not isinstance(d, Choice))
    n_choices = 1
    for d in space:
        if isinstance(d, Choice):
            n_choices *= len(d.options)
    if points_per_dim is None:
        per = max(budget // n_choices, 1)
        points_per_dim = max(int(math.floor(per ** (1.0 / max(n_ordered, 1)) + 1e-9)), 1)
    return space.grid(check_int("points_per_dim", points_per_dim))[:budget]


def tune_search(objective, space, budget, method="random", seed=None, scheduler=None,
                max_resource=9, grace_period=1, reduction_factor=3, max_concurrent=None,
                cpus_per_trial=1, max_failures=1, points_per_dim=None, storage_path=None):
    """Run a hyperparameter search as parallel Ray Tune trials; returns ``tuning.Trials``.

    objective: ``objective(params) -> validation loss`` (with ``scheduler="asha"``:
        ``objective(params, report=report)``, calling ``report(loss)`` once per epoch, at
        most ``max_resource`` times); it runs in Ray worker processes, so it must be
        picklable (a module-level function or a ``functools.partial`` of one)
    space, budget, seed: as in ``ddlib.tuning`` (``budget`` trials)
    method: "random", "grid" or "tpe"; scheduler: None or "asha" (with
        ``max_resource``, ``grace_period`` and ``reduction_factor``)
    max_concurrent: trials at once (default: as many as the CPUs allow)
    cpus_per_trial: CPUs Ray reserves for each trial
    max_failures: retries of a trial whose process dies
    storage_path: where Tune writes (default ``engine.tune_storage()``)

    Rows come in trial order (the serial searcher's order for random and grid).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if scheduler not in SCHEDULERS:
        raise ValueError(f"scheduler must be one of {SCHEDULERS}, got {scheduler!r}")
    if not callable(objective):
        raise TypeError(f"objective must be callable, got {objective!r}")
    space = _as_space(space)
    budget = check_int("budget", budget)
    max_failures = check_int("max_failures", max_failures, minimum=0)
    cpus_per_trial = check_int("cpus_per_trial", cpus_per_trial)
    if max_concurrent is not None:
        max_concurrent = check_int("max_concurrent", max_concurrent)
    if scheduler == "asha":
        max_resource = check_int("max_resource", max_resource)
        grace_period = check_int("grace_period", grace_period)
        reduction_factor = check_int("reduction_factor", reduction_factor, minimum=2)
        if grace_period > max_resource:
            raise ValueError(f"grace_period={grace_period} exceeds max_resource={max_resource}")

    engine.require_ray()
    with engine.session():
        from ray import tune

        points = None if method == "tpe" else _points(space, method, budget, seed,
                                                      points_per_dim)
        asha = scheduler == "asha"

        def trainable(config):
            params = space.cast(points[config["point"]] if points is not None else
                                {n: config[n] for n in space.names})
            if asha:
                def report(loss):
                    tune.report({"loss": float(loss)})

                objective(params, report=report)
            else:
                tune.report({"loss": _loss(objective, params)})

        if points is not None:
            param_space = {"point": tune.grid_search(list(range(len(points))))}
            search_alg, num_samples = None, 1
        else:
            from ray.tune.search import ConcurrencyLimiter
            from ray.tune.search.hyperopt import HyperOptSearch

            search_alg = HyperOptSearch(space.hyperopt(), metric="loss", mode="min",
                                        random_state_seed=0 if seed is None else seed)
            if max_concurrent is not None:
                search_alg = ConcurrencyLimiter(search_alg, max_concurrent=max_concurrent)
            param_space, num_samples = None, budget
        sched = None
        if asha:
            from ray.tune.schedulers import ASHAScheduler

            sched = ASHAScheduler(time_attr="training_iteration", max_t=max_resource,
                                  grace_period=grace_period,
                                  reduction_factor=reduction_factor)
        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": cpus_per_trial}),
            param_space=param_space,
            tune_config=tune.TuneConfig(
                metric="loss", mode="min", num_samples=num_samples, search_alg=search_alg,
                scheduler=sched, max_concurrent_trials=max_concurrent,
                reuse_actors=True),   # one worker process runs trial after trial
            run_config=tune.RunConfig(
                name=f"ddlib-{method}-{uuid.uuid4().hex[:8]}",
                storage_path=str(storage_path or engine.tune_storage()),
                failure_config=tune.FailureConfig(max_failures=max_failures),
                verbose=0),
        )
        # Tune's newer console output ignores verbose=0 and prints a table per run; the
        # classic reporter honours it (a user who set the variable keeps their choice)
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        grid = tuner.fit()
        return _to_trials(grid, space, method, points, asha, max_resource)


def _to_trials(grid, space, method, points, asha, max_resource):
    done, failed = [], []
    for result in grid:
        config = result.config or {}
        params = space.cast(points[config["point"]] if points is not None else
                            {n: config[n] for n in space.names})
        order = config["point"] if points is not None else _trial_number(result)
        if result.error is not None or not result.metrics or "loss" not in result.metrics:
            failed.append((order, params, repr(result.error)))
            continue
        iters = int(result.metrics.get("training_iteration", 1))
        done.append((order, params, float(result.metrics["loss"]), iters))
    trials = Trials(f"tune_{method}" + ("_asha" if asha else ""), space.names)
    for _, params, loss, iters in sorted(done, key=lambda t: t[0]):
        if asha:
            trials.add(params, loss, resource=iters, final=iters >= max_resource)
        else:
            trials.add(params, loss)
    trials.failed = [(params, err) for _, params, err in sorted(failed, key=lambda t: t[0])]
    return trials


def _trial_number(result):
    """Tune's trial ids end in the trial's creation index ('<experiment>_00003')."""
    tid = str((result.metrics or {}).get("trial_id", ""))
    tail = tid.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else 0
