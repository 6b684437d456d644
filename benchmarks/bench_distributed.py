"""Parallel and distributed training (Sec. 3.7.2): Hogwild's speed-up, the parameter
server's synchronous step overhead, asynchronous throughput with 2 workers against 1.

* Hogwild on sparse least squares (200,000 rows, 10,000 features, 10 nonzeros a row):
  one thread runs ``EPOCHS`` epochs and reaches loss L; two lock-free threads run until
  their loss is within 1% of L (``target_loss``).  The ratio is the one-thread training
  time over the two-thread time to that loss (target from the issue: >= 1.7); the loss
  evaluations between epochs are not counted.  The learning rate keeps the loss falling
  fast at epoch ``EPOCHS`` (far from the noise floor), so "equal loss" is not hiding a
  plateau.  Best of ``ROUNDS`` rounds, interleaved (interference only adds time).  The
  note gives the process's CPU time over wall time during the two-thread run: well below
  2 means the second core was taken by something else and the ratio says little.
* Parameter server, synchronous, digits MLP 64-64-10, 2 workers of 64 examples each:
  wall milliseconds per step against the compute per step, measured in this process
  with the same worker and server code (one worker's gradient, since the two run side by
  side, plus the server's update); the difference is Ray's round trips and copies.
  A step waits on four Ray hops one after another (weights from the server, the two
  gradients side by side and fetched, the update sent, its reply), so the bare round trip of one actor call is
  reported too.
* Parameter server, asynchronous: updates per second with 2 workers against 1.
* Hyperparameter parallelism: the same 16 random-search trials of a fixed digits
  training (``search_studies.digits_objective``), one after another in this process
  against ``tune.tune_search`` on 2 Ray workers (Tune's set-up and every trial's
  start-up included; Ray's own start, paid once per session, is reported apart).  The
  losses must agree row for row (to 1e-6: BLAS threads differ between the processes).

Every Ray start goes through ``ddlib.distributed.session`` (loopback only), which shuts
Ray down at the end; the actors are released after each measurement.
"""

import time

import numpy as np

import ddlib.distributed.hogwild as hw
from ddlib import distributed
from ddlib.data import load_digits
from ddlib.distributed import ps

N, D, NNZ = 200_000, 10_000, 10
EPOCHS = 3
LR = 0.005
ROUNDS = 3

SIZES = (64, 64, 10)
BATCH = 64
SYNC_STEPS = 60
ASYNC_UPDATES = 200


def hogwild_rows():
    X, y, _ = hw.make_sparse_problem(N, D, nnz_per_row=NNZ, seed=0)
    hw.hogwild(X, y, threads=2, epochs=1, lr=LR, seed=0)        # compile, warm caches
    best1, best2 = np.inf, np.inf
    for r in range(ROUNDS):
        _, h1 = hw.hogwild(X, y, threads=1, epochs=EPOCHS, lr=LR, seed=r)
        loss1 = h1["loss"][-1]
        _, h2 = hw.hogwild(X, y, threads=2, epochs=4 * EPOCHS, lr=LR, seed=r,
                           target_loss=1.01 * loss1)
        if h2["loss"][-1] > 1.01 * loss1:
            raise RuntimeError(f"hogwild: 2 threads never reached loss {loss1:.4g} "
                               f"(got {h2['loss'][-1]:.4g})")
        if h1["seconds"][-1] < best1:
            best1, e1, l1 = h1["seconds"][-1], len(h1["seconds"]), loss1
        if h2["seconds"][-1] < best2:
            best2, e2, l2 = h2["seconds"][-1], len(h2["seconds"]), h2["loss"][-1]
            cores = h2["cpu_seconds"][-1] / h2["seconds"][-1]
    wl = f"hogwild sparse LS {N // 1000}k x {D // 1000}k"
    ratio = best1 / best2
    return [
        dict(workload=wl, variant="1 thread (serial SGD)", seconds=best1,
             note=f"{e1} epochs, loss {l1:.4f}"),
        dict(workload=wl, variant="2 threads lock-free", seconds=best2, reference=
             "1 thread (serial SGD)", ratio=ratio, target=">= 1.7", ok=bool(ratio >= 1.7),
             note=f"{e2} epochs to loss {l2:.4f} (within 1% of serial); "
                  f"{cores:.2f} cores busy on average"),
    ]


def _compute_per_step(X, y):
    """One worker's gradient on BATCH rows plus the server's update, in this process."""
    worker = ps._Worker(SIZES, X, y)
    server = ps._Server(SIZES, "sgd", 0.1, 0)
    rng = np.random.default_rng(0)
    idx = [rng.choice(len(X), BATCH, replace=False) for _ in range(SYNC_STEPS)]
    snap = server.snapshot()
    for i in idx[:5]:                       # warm-up
        server.apply(worker.gradient(snap, i), worker.gradient(snap, i))
    t_grad = t_apply = 0.0
    for i in idx:
        snap = server.snapshot()
        t0 = time.perf_counter()
        r = worker.gradient(snap, i)
        t1 = time.perf_counter()
        server.apply(r, r)
        t2 = time.perf_counter()
        t_grad += t1 - t0
        t_apply += t2 - t1
    return t_grad / len(idx), t_apply / len(idx)


def _round_trip(actor, n=200):
    import ray

    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        ray.get(actor.pid.remote())
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def ps_rows():
    d = load_digits()
    X, y = d.X_train, d.y_train
    t_grad, t_apply = _compute_per_step(X, y)
    compute = t_grad + t_apply
    rows = []
    with distributed.session(num_cpus=2):
        workers = ps.make_workers(2, SIZES, X, y)
        try:
            server = ps.make_server(SIZES, lr=0.1)
            ps.train_sync(server, workers, len(X), BATCH, steps=5)       # warm-up
            ps.release(server)
            server = ps.make_server(SIZES, lr=0.1)
            out = ps.train_sync(server, workers, len(X), BATCH, steps=SYNC_STEPS)
            per_step = out["time"][-1] / SYNC_STEPS
            rtt = _round_trip(server)
            ps.release(server)
            wl = "param server sync, digits 64-64-10"
            rows.append(dict(workload=wl, variant="compute per step (in-process)",
                             seconds=compute,
                             note=f"gradient {t_grad * 1e3:.2f} ms + update "
                                  f"{t_apply * 1e3:.2f} ms"))
            rows.append(dict(workload=wl, variant=f"Ray step, 2 workers x {BATCH}",
                             seconds=per_step, reference="compute per step (in-process)",
                             ratio=per_step / compute,
                             note=f"overhead {(per_step - compute) * 1e3:.2f} ms/step; "
                                  f"4 Ray hops in sequence a step"))
            rows.append(dict(workload=wl, variant="bare actor call round trip", seconds=rtt,
                             note="ray.get(server.pid.remote()), median of 200"))
            thr = {}
            for k in (1, 2):
                server = ps.make_server(SIZES, lr=0.05)
                ps.train_async(server, workers[:k], len(X), BATCH, updates=10)  # warm-up
                ps.release(server)
                server = ps.make_server(SIZES, lr=0.05)
                o = ps.train_async(server, workers[:k], len(X), BATCH, updates=ASYNC_UPDATES,
                                   seed=k)
                ps.release(server)
                thr[k] = ASYNC_UPDATES / o["time"][-1]
                stale = float(np.mean(o["staleness"]))
                rows.append(dict(workload="param server async, digits", variant=f"{k} worker(s)",
                                 seconds=1.0 / thr[k],
                                 note=f"{thr[k]:.0f} updates/s, mean staleness {stale:.2f}",
                                 **({} if k == 1 else dict(reference="1 worker(s)",
                                                           ratio=thr[2] / thr[1]))))
        finally:
            ps.release(*workers)
    return rows


def tune_rows(n_trials=16, epochs=240):
    import tempfile

    from ddlib import tuning
    from ddlib.chapter.search_studies import digits_objective
    from ddlib.distributed import tune

    space = [tuning.Real("lr", 1e-2, 1.0, log=True), tuning.Real("l2", 1e-5, 1e-2, log=True)]
    objective = digits_objective(epochs=epochs)
    t0 = time.perf_counter()
    serial = tuning.random_search(objective, space, n_trials, seed=0)
    t_serial = time.perf_counter() - t0
    workload = f"tune {n_trials} digits trials"
    t0 = time.perf_counter()
    with distributed.session(num_cpus=2), tempfile.TemporaryDirectory() as tmp:
        t_start = time.perf_counter() - t0
        t1 = time.perf_counter()
        par = tune.tune_search(objective, space, n_trials, method="random", seed=0,
                               storage_path=tmp)
        t_par = time.perf_counter() - t1
    # Ray gives each 1-CPU worker one BLAS thread, this process may use two: the sums in
    # a matrix product can then round differently, so equal means equal to 1e-6
    a, b = np.array([r["loss"] for r in par]), np.array([r["loss"] for r in serial])
    same = bool(a.shape == b.shape and np.allclose(a, b, rtol=1e-6, atol=0.0))
    return [
        dict(workload=workload, variant="one process, in turn", seconds=t_serial,
             note=f"{t_serial / n_trials:.2f} s a trial ({epochs} epochs)"),
        dict(workload=workload, variant="Ray Tune, 2 workers", seconds=t_par,
             ratio=t_serial / t_par, reference="one process", target=">= 1.6",
             ok=bool(t_serial / t_par >= 1.6 and same),
             note=f"speed-up; losses equal row for row (1e-6): {same}; Ray start {t_start:.1f} s "
                  "(once per session, not counted)"),
    ]


def run():
    return hogwild_rows() + ps_rows() + tune_rows()
