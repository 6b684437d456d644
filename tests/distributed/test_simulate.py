"""The simulated asynchronous workers and the cost model of a synchronous step (Sec. 3.7.2):
no Ray, no threads, every number from a seeded model."""

import math

import numpy as np
import pytest

from ddlib import data, layers, losses, optim, train
from ddlib.backend import use_backend
from ddlib.distributed import simulate as sim
from ddlib.errors import DivergenceError


@pytest.fixture(scope="module")
def digits():
    split = data.load_digits(seed=0)
    return split.X_train, split.y_train


def fit_reference(X, y, steps, batch_size, seed, lr=0.1, sizes=(64, 32, 10)):
    with use_backend("numpy"):
        net = layers.mlp(list(sizes), rng=seed)
        opt = optim.Optimizer(net, optim.sgd(lr))
        hist = train.fit(net, losses.SoftmaxCrossEntropy(), opt, X, y, epochs=None,
                         max_steps=steps, batch_size=batch_size, seed=seed)
        final = float(losses.SoftmaxCrossEntropy()(net.forward(X, train=False), y))
    return net, hist, final


def same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(np.array_equal(sa[k], sb[k]) for k in sa)


# ---------------------------------------------------------------- asynchronous workers


@pytest.mark.parametrize("seed", [0, 3])
def test_one_async_worker_is_plain_sequential_sgd_bit_for_bit(digits, seed):
    X, y = digits
    # 100 steps of 32 cross an epoch boundary (1348 examples): the stream continues as in fit
    run = sim.simulate_async(1, 100, batch_size=32, seed=seed, data=(X, y))
    net, hist, final = fit_reference(X, y, 100, 32, seed)
    assert np.array_equal(run.batch_loss, hist.step_loss)
    assert same_weights(run.net, net)
    assert run.loss[-1] == final
    assert np.all(run.staleness == 0) and np.all(run.worker == 0)


@pytest.mark.parametrize("workers", [1, 3])
def test_sync_workers_equal_one_process_with_k_times_the_batch(digits, workers):
    X, y = digits
    run = sim.simulate_sync(workers, 40, batch_size=16, seed=2, data=(X, y))
    net, hist, _ = fit_reference(X, y, 40, workers * 16, 2)
    assert np.array_equal(run.batch_loss, hist.step_loss)
    assert same_weights(run.net, net)
    assert np.all(run.staleness == 0)


def test_sync_step_waits_for_the_slowest_worker():
    one = sim.simulate_sync(1, 50, jitter=0.3, seed=1, eval_every=50)
    many = sim.simulate_sync(8, 50, jitter=0.3, seed=1, eval_every=50)
    steps = np.diff(np.concatenate([[0.0], many.time]))
    assert np.all(steps >= 1.0 * math.exp(-0.3 * 5))     # every draw is positive
    assert many.time[-1] > one.time[-1]                  # the max of 8 draws exceeds one draw
    even = sim.simulate_sync(4, 10, jitter=0.0, seed=1)
    assert np.allclose(even.time, np.arange(1, 11))


def test_runs_are_deterministic_and_the_seed_matters():
    a = sim.simulate_async(8, 60, seed=5, stragglers=0.25)
    b = sim.simulate_async(8, 60, seed=5, stragglers=0.25)
    c = sim.simulate_async(8, 60, seed=6, stragglers=0.25)
    for f in ("loss", "staleness", "time", "batch_loss", "worker"):
        assert np.array_equal(getattr(a, f), getattr(b, f))
    assert not np.array_equal(a.time, c.time)
    assert same_weights(a.net, b.net)


@pytest.mark.parametrize("workers", [2, 5, 16])
def test_even_workers_take_turns_and_are_k_minus_1_updates_stale(workers):
    run = sim.simulate_async(workers, 4 * workers, jitter=0.0, seed=0)
    assert run.updates == 4 * workers
    # the first round finishes together; ties go to the lower worker number
    assert list(run.worker) == list(range(workers)) * 4
    assert list(run.staleness[:workers]) == list(range(workers))
    assert np.all(run.staleness[workers:] == workers - 1)
    assert np.allclose(run.time, np.repeat(np.arange(1, 5), workers))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_staleness_counts_the_updates_applied_since_the_worker_read(seed):
    """A worker reads right after its previous update was applied (or at the start), so
    its next update's staleness is the number of updates between the two."""
    run = sim.simulate_async(12, 200, jitter=0.5, stragglers=0.25, seed=seed, eval_every=50)
    last = {}
    for u, (w, s) in enumerate(zip(run.worker, run.staleness)):
        read = last[w] + 1 if w in last else 0
        assert s == u - read
        last[w] = u
    assert np.all(np.diff(run.time) >= 0)
    assert set(run.worker) == set(range(12))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stragglers_deliver_fewer_and_staler_gradients(seed):
    run = sim.simulate_async(20, 400, stragglers=0.2, slowdown=4.0, seed=seed, eval_every=400)
    slow = run.worker >= 16                      # the 4 highest-numbered workers
    assert np.array_equal(sim.worker_bases(20, 0.2, 4.0) > 1, np.arange(20) >= 16)
    per_slow = slow.sum() / 4
    per_fast = (~slow).sum() / 16
    assert 2.5 < per_fast / per_slow < 6.0       # about the slowdown
    assert run.staleness[slow].mean() > 2.5 * run.staleness[~slow].mean()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_throughput_grows_with_k_and_staleness_costs_convergence_per_update(seed):
    runs = {k: sim.simulate_async(k, 400, seed=seed, eval_every=400) for k in (1, 4, 64)}
    # K workers apply about K updates per unit of simulated time
    for k, r in runs.items():
        assert r.time[-1] == pytest.approx(400 / k, rel=0.25)
    # per update, a little staleness costs little and a lot of it costs much
    assert runs[4].loss[-1] < 1.5 * runs[1].loss[-1]
    assert runs[64].loss[-1] > 4 * runs[1].loss[-1]
    assert runs[64].staleness.mean() > 50


def test_loss_at_time_and_eval_every():
    run = sim.simulate_async(4, 50, seed=0, eval_every=10)
    assert list(run.evaluated_at) == [0, 10, 20, 30, 40, 50]
    assert run.loss_at_time(-1.0) == run.loss[0]
    assert run.loss_at_time(run.time[-1]) == run.loss[-1]
    assert run.loss_at_time(run.time[24]) == run.loss[2]      # 25 updates done: the 20th
    odd = sim.simulate_async(1, 7, seed=0, eval_every=3)
    assert list(odd.evaluated_at) == [0, 3, 6, 7]


def test_divergence_raises_with_the_update_or_stops_when_asked():
    with pytest.raises(DivergenceError, match="simulated async training with 64 workers"):
        sim.simulate_async(64, 400, lr=3.0, seed=0, max_loss=50.0)
    run = sim.simulate_async(64, 400, lr=3.0, seed=0, max_loss=50.0, on_divergence="stop")
    assert run.diverged_at is not None and run.updates == run.diverged_at + 1
    ok = sim.simulate_async(2, 20, seed=0)
    assert ok.diverged_at is None


@pytest.mark.parametrize("kwargs, match", [
    (dict(workers=0), "workers must be >= 1"),
    (dict(workers=2.0), "workers must be an integer"),
    (dict(updates=0), "updates must be >= 1"),
    (dict(batch_size=0), "batch_size must be >= 1"),
    (dict(batch_size=5000), "batch_size=5000 exceeds"),
    (dict(lr=-1.0), "lr must be a finite number > 0"),
    (dict(jitter=-0.1), "jitter must be a finite number >= 0"),
    (dict(stragglers=1.5), r"stragglers must lie in \[0, 1\]"),
    (dict(slowdown=0.5), "slowdown must be >= 1"),
    (dict(seed=-1), "seed must be >= 0"),
    (dict(eval_every=0), "eval_every must be >= 1"),
    (dict(on_divergence="ignore"), "on_divergence must be"),
    (dict(sizes=(64,)), "sizes must be at least two"),
    (dict(sizes=(30, 10)), r"X must have shape \(n, 30\)"),
    (dict(data=(np.zeros((5, 64)), np.zeros(4, dtype=int))), r"y must have shape \(5,\)"),
    (dict(data=np.zeros(3)), "data must be a pair"),
])
def test_bad_arguments_name_the_parameter(kwargs, match):
    args = dict(workers=2, updates=5)
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        sim.simulate_async(args.pop("workers"), args.pop("updates"), **args)


def test_sync_needs_the_global_batch_to_fit_the_data():
    with pytest.raises(ValueError, match="workers \\* batch_size = 2048"):
        sim.simulate_sync(64, 5, batch_size=32)


# ---------------------------------------------------------------- the cost model


def test_mlp_params_and_compute_time():
    net = layers.mlp([64, 32, 10], rng=0)
    assert sim.mlp_params((64, 32, 10)) == sum(layer.params[k].size
                                               for _, layer, k in net.named_parameters())
    assert sim.step_compute_time(1000, 10, 6e4) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="flops_per_second"):
        sim.step_compute_time(10, 1, 0.0)


def test_cost_model_formulas():
    ps = sim.CostModel(compute=1.0, params=1000, bandwidth=4000.0, latency=0.01)   # m = 1
    assert ps.copy_time == 1.0
    assert ps.step_time(4) == pytest.approx(1.0 / 4 + 2 * (0.01 + 4 * 1.0))
    ring = sim.CostModel(compute=1.0, params=1000, bandwidth=4000.0, latency=0.01,
                         topology="ring")
    assert ring.step_time(4) == pytest.approx(1.0 / 4 + 2 * 3 * (0.01 + 1.0 / 4))
    assert ring.speedup(1) == 1.0                        # one ring member sends nothing
    assert ps.speedup(1) < 1.0                           # a separate server costs a round trip
    k = np.arange(1, 50)
    assert np.allclose(ps.speedup(k), 1.0 / ps.step_time(k))
    # a ring's traffic per worker approaches 2 copies, a server's link grows with K
    big = sim.CostModel(compute=10.0, params=10, bandwidth=1.0, latency=0.0, bytes_per_param=1,
                        topology="ring")
    assert big.comm_time(1000) == pytest.approx(2 * 999 / 1000 * 10.0)


def _numeric_best(cm, k_max):
    k = np.arange(1, k_max + 1)
    return int(k[np.argmin(cm.step_time(k))])


@pytest.mark.parametrize("topology", sim.TOPOLOGIES)
@pytest.mark.parametrize("seed", range(4))
def test_closed_form_best_workers_matches_the_numeric_argmin(topology, seed):
    rng = np.random.default_rng(seed)
    for _ in range(50):
        cm = sim.CostModel(compute=float(10 ** rng.uniform(-3, 1)),
                           params=int(10 ** rng.uniform(3, 8)),
                           bandwidth=float(10 ** rng.uniform(8, 11)),
                           latency=float(10 ** rng.uniform(-6, -3)),
                           bytes_per_param=int(rng.choice([1, 2, 4])), topology=topology)
        k_star = cm.optimal_workers()
        if k_star > 5000:
            continue
        best = cm.best_workers()
        assert best == _numeric_best(cm, 10_000), cm
        assert abs(best - k_star) < 1.0 or best == 1
        # the continuous optimum is a stationary point of t(K) (or the boundary K = 1)
        if k_star > 1:
            h = 1e-6 * k_star
            slope = (cm.step_time(k_star + h) - cm.step_time(k_star - h)) / (2 * h)
            assert abs(slope) < 1e-6 * cm.step_time(k_star) / k_star


def test_edge_cases_of_the_best_number_of_workers():
    # the parameters cost more to send than the compute saves: one worker is best
    ring = sim.CostModel(compute=1.0, params=1000, bandwidth=1000.0, latency=0.1,
                         topology="ring")
    assert ring.optimal_workers() == 1.0 and ring.best_workers() == 1
    # a ring with no latency keeps getting faster
    free = sim.CostModel(compute=1.0, params=10, bandwidth=1000.0, topology="ring")
    assert free.optimal_workers() == math.inf
    with pytest.raises(ValueError, match="give max_workers"):
        free.best_workers()
    assert free.best_workers(max_workers=64) == 64
    ps = sim.CostModel(compute=1.0, params=100, bandwidth=1e6)
    assert ps.best_workers(max_workers=3) == 3 < ps.best_workers()


@pytest.mark.parametrize("kwargs, match", [
    (dict(compute=0.0), "compute must be a finite number > 0"),
    (dict(params=0), "params must be >= 1"),
    (dict(bandwidth=-1.0), "bandwidth must be a finite number > 0"),
    (dict(latency=-1e-3), "latency must be a finite number >= 0"),
    (dict(bytes_per_param=0), "bytes_per_param must be >= 1"),
    (dict(topology="tree"), "topology must be one of"),
])
def test_cost_model_validates_its_parameters(kwargs, match):
    args = dict(compute=1.0, params=10, bandwidth=1.0)
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        sim.CostModel(**args)
    with pytest.raises(ValueError, match="workers must be numbers >= 1"):
        sim.CostModel(compute=1.0, params=10, bandwidth=1.0).step_time([1, 0])
