"""Hyperparameter parallelism on Ray Tune (Sec. 3.7.2): the same points as the serial
searchers, ASHA's early stopping, and a trial whose process dies."""

import math
import os
import sys

import pytest

from ddlib import tuning

tune_mod = pytest.importorskip("ddlib.distributed.tune")
ray = pytest.importorskip("ray")

# the objectives below run in Ray's worker processes: send them by value (the workers
# need not import this test module)
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

SPACE = [tuning.Real("x", -2.0, 2.0), tuning.Real("lr", 1e-3, 1.0, log=True),
         tuning.Choice("c", ["a", "b"])]


def bowl(p):
    return (p["x"] - 1) ** 2 + abs(math.log10(p["lr"]) + 1) + (0.1 if p["c"] == "a" else 0.0)


def dies_once(marker):
    """An objective whose first call (in whichever trial runs first) kills its process."""
    def objective(p):
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return bowl(p)
        os.close(fd)
        os._exit(1)
    return objective


def test_random_sweep_survives_a_dying_trial_and_matches_the_serial_search(ray_session,
                                                                           tmp_path):
    serial = tuning.random_search(bowl, SPACE, 6, seed=4)
    par = tune_mod.tune_search(dies_once(str(tmp_path / "died")), SPACE, 6, method="random",
                               seed=4, max_failures=1, storage_path=str(tmp_path / "tune"))
    assert (tmp_path / "died").exists()          # one trial did die ...
    assert par.failed == []                      # ... and was retried
    assert [r["loss"] for r in par] == [r["loss"] for r in serial]
    assert [r["x"] for r in par] == [r["x"] for r in serial]
    assert par.method == "tune_random"


def test_without_retries_only_the_dying_trial_is_lost(ray_session, tmp_path):
    serial = tuning.grid_search(bowl, SPACE, 8)
    par = tune_mod.tune_search(dies_once(str(tmp_path / "died")), SPACE, 8, method="grid",
                               max_failures=0, storage_path=str(tmp_path / "tune"))
    assert len(serial) == 8 and len(par.failed) == 1 and len(par) == 7
    lost_params, err = par.failed[0]
    assert err and err != "None"                 # the trial's error is reported
    kept = [r for r in serial if {k: r[k] for k in ("x", "lr", "c")} != lost_params]
    assert [r["loss"] for r in par] == [r["loss"] for r in kept]


def asha_objective(p, report):
    for epoch in range(1, 10):
        report(bowl(p) + 1.0 / epoch)


def test_asha_stops_poor_trials_early(ray_session, tmp_path):
    t = tune_mod.tune_search(asha_objective, SPACE, 9, method="random", seed=1,
                             scheduler="asha", max_resource=9, grace_period=1,
                             reduction_factor=3, storage_path=str(tmp_path / "tune"))
    assert len(t) == 9 and t.failed == []
    used = [r["resource"] for r in t]
    assert set(used) <= {1, 3, 9} and sum(used) < 9 * 9     # some trials were cut short
    for r in t:
        params = {k: r[k] for k in ("x", "lr", "c")}
        assert r["loss"] == pytest.approx(bowl(params) + 1.0 / r["resource"])
        assert r["final"] == (r["resource"] == 9)


def test_tpe_proposes_points_inside_the_space(ray_session, tmp_path):
    t = tune_mod.tune_search(bowl, SPACE, 4, method="tpe", seed=0, max_concurrent=2,
                             storage_path=str(tmp_path / "tune"))
    assert len(t) == 4 and t.failed == []
    for r in t:
        assert -2.0 <= r["x"] <= 2.0 and 1e-3 <= r["lr"] <= 1.0 and r["c"] in ("a", "b")
        assert r["loss"] == pytest.approx(bowl(r))


@pytest.mark.parametrize("kw,word", [
    (dict(method="bayes"), "method"),
    (dict(scheduler="hyperband"), "scheduler"),
    (dict(max_failures=-1), "max_failures"),
    (dict(scheduler="asha", grace_period=10, max_resource=9), "grace_period"),
    (dict(max_concurrent=0), "max_concurrent"),
])
def test_bad_arguments_are_named(kw, word):
    with pytest.raises(ValueError, match=word):
        tune_mod.tune_search(bowl, SPACE, 4, **kw)
