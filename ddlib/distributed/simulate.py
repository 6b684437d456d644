"""Beyond two cores, by simulation (Sec. 3.7.2): asynchronous workers and a cost model.

Nothing here starts Ray or a thread; every number comes from a seeded model.

**Asynchronous workers** (``simulate_async``).  K workers share one parameter vector held
by a server, as in ``ps.train_async``, but time is simulated: worker i needs
``base_i * exp(jitter * z - jitter**2 / 2)`` time units for a gradient (``z ~ N(0, 1)``
drawn per gradient, so the mean is ``base_i``; ``base_i`` is 1, or ``slowdown`` for the
``round(stragglers * K)`` highest-numbered workers).  An event queue (``heapq``, ordered by
finishing time, then worker number) applies each gradient when its worker finishes.  A
worker reads the server's current weights when it starts, so its gradient is the one of
the version it started from; it is computed at that moment and held until the finishing
time, which is the same as keeping that version's weights and computing later.  The
staleness of an update is the number of updates the server applied between the read and
the write.  Batches are the consecutive batches of one ``train.MinibatchSampler(n,
batch_size, seed=seed)`` stream, in the order the gradients are started; the net is
``layers.mlp(sizes, rng=seed)`` and the rule plain SGD, so with ``workers=1`` the run is
exactly ``train.fit`` (a test checks it bit for bit).

**Synchronous workers** (``simulate_sync``): every step the K workers each take a part of a
batch of ``K * batch_size`` examples and the server waits for the slowest of the K draws;
the update is the one ``train.fit`` makes with that batch (no staleness, more waiting).

**Cost of a synchronous step** (``CostModel``): ``t(K) = compute / K + comm(K)`` with
``compute`` the time one worker needs for the gradient of the whole global batch, and
``m = params * bytes_per_param / bandwidth`` the time one copy of the parameters takes on
one link.  Two topologies:

* ``"ps"``: a parameter server whose one link carries the K gradients in and the K
  parameter copies out: ``comm(K) = 2 (latency + K m)``.  Best K: ``sqrt(compute / (2 m))``.
* ``"ring"``: ring all-reduce, where each worker sends and receives ``2 (K - 1) / K`` of the
  parameters in ``2 (K - 1)`` messages: ``comm(K) = 2 (K - 1) (latency + m / K)``.  Best K:
  ``sqrt((compute - 2 m) / (2 latency))``; 1 if ``compute <= 2 m``, none (the time keeps
  falling) if the latency is 0.

The speed-up is ``compute / t(K)``, against one process that communicates nothing.
``t`` is convex in K, so the best whole number of workers is the floor or the ceiling of
the closed form (a test checks it against a numeric argmin).

Example::

    from ddlib.distributed import simulate
    run = simulate.simulate_async(16, updates=300, seed=0)
    run.loss[-1], run.staleness.mean()
    cm = simulate.CostModel(compute=0.2, params=25_000_000, bandwidth=1.25e9, latency=1e-4)
    cm.best_workers(), cm.speedup([1, 2, 4, 8])
"""

from __future__ import annotations

import heapq
import math
import numbers
from dataclasses import dataclass, field

import numpy as np

from ..errors import DivergenceError, check_int, check_positive

__all__ = ["AsyncRun", "CostModel", "TOPOLOGIES", "mlp_params", "simulate_async",
           "simulate_sync", "step_compute_time", "worker_bases"]

TOPOLOGIES = ("ps", "ring")
DIGITS_SIZES = (64, 32, 10)


# ---------------------------------------------------------------- the speed model


def worker_bases(workers, stragglers=0.0, slowdown=4.0):
    """Mean time per gradient of each worker: 1, or ``slowdown`` for the
    ``round(stragglers * workers)`` highest-numbered ones (shape ``(workers,)``)."""
    workers = check_int("workers", workers)
    stragglers = _check_fraction("stragglers", stragglers)
    slowdown = check_positive("slowdown", slowdown)
    if slowdown < 1:
        raise ValueError(f"slowdown must be >= 1 (a straggler is slower), got {slowdown!r}")
    base = np.ones(workers)
    n_slow = int(round(stragglers * workers))
    if n_slow:
        base[workers - n_slow:] = slowdown
    return base


def _check_fraction(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number in [0, 1], got {value!r}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value!r}")
    return float(value)


class _Clock:
    """Draws the time each gradient takes, from its own seeded stream."""

    def __init__(self, bases, jitter, seed):
        self.bases = bases
        self.jitter = jitter
        self.rng = np.random.default_rng([seed, 31337])

    def draw(self, worker):
        z = self.rng.standard_normal()
        return float(self.bases[worker] * math.exp(self.jitter * z - 0.5 * self.jitter ** 2))


# ---------------------------------------------------------------- the simulated runs


@dataclass
class AsyncRun:
    """What a simulated run recorded (time is in units of one average gradient).

    ``loss[j]``: training loss after ``evaluated_at[j]`` updates (``evaluated_at[0] == 0``,
    the starting loss); per update u (0-based): ``staleness[u]``, ``time[u]`` (when it was
    applied), ``batch_loss[u]`` (its batch's loss at the weights its gradient was computed
    at) and ``worker[u]``; ``net``: the trained net; ``diverged_at``: the update whose
    loss broke ``max_loss`` when the run was stopped there (``on_divergence="stop"``).
    """

    workers: int
    mode: str
    loss: np.ndarray
    evaluated_at: np.ndarray
    staleness: np.ndarray
    time: np.ndarray
    batch_loss: np.ndarray
    worker: np.ndarray
    net: object = field(repr=False, default=None)
    diverged_at: int | None = None

    @property
    def updates(self):
        return int(self.staleness.size)

    def loss_at_time(self, t):
        """The training loss at simulated time ``t`` (the last evaluation at or before it)."""
        applied = np.searchsorted(self.time, t, side="right")      # updates done by then
        j = np.searchsorted(self.evaluated_at, applied, side="right") - 1
        return float(self.loss[max(j, 0)])


def _check_common(workers, updates, batch_size, lr, sizes, jitter, seed, eval_every,
                  max_loss, on_divergence, data):
    workers = check_int("workers", workers)
    updates = check_int("updates", updates)
    batch_size = check_int("batch_size", batch_size)
    lr = check_positive("lr", lr)
    jitter = check_positive("jitter", jitter, allow_zero=True)
    seed = check_int("seed", seed, minimum=0)
    eval_every = check_int("eval_every", eval_every)
    max_loss = check_positive("max_loss", max_loss)
    if on_divergence not in ("raise", "stop"):
        raise ValueError(f"on_divergence must be 'raise' or 'stop', got {on_divergence!r}")
    sizes = tuple(sizes)
    if len(sizes) < 2 or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool)
                                 and s >= 1 for s in sizes):
        raise ValueError(f"sizes must be at least two layer widths >= 1, got {sizes!r}")
    if data is None:
        from ..data import load_digits

        split = load_digits(seed=0)
        X, y = split.X_train, split.y_train
    else:
        try:
            X, y = data
        except (TypeError, ValueError):
            raise TypeError("data must be a pair (X, y) of training inputs and labels") from None
        X, y = np.asarray(X, dtype=np.float64), np.asarray(y)
    if X.ndim != 2 or X.shape[1] != sizes[0]:
        raise ValueError(f"data: X must have shape (n, {sizes[0]}) to match sizes[0], "
                         f"got {X.shape}")
    if y.shape != (X.shape[0],):
        raise ValueError(f"data: y must have shape ({X.shape[0]},), got {y.shape}")
    if batch_size > X.shape[0]:
        raise ValueError(f"batch_size={batch_size} exceeds the {X.shape[0]} examples")
    return workers, updates, batch_size, lr, sizes, jitter, seed, eval_every, max_loss, X, y


class _Trainer:
    """The server's net and SGD, gradients at its current weights, training loss."""

    def __init__(self, sizes, lr, seed, X, y):
        from .. import layers, losses, optim

        self.net = layers.mlp(list(sizes), activation="relu", rng=seed, dtype=np.float64)
        self.opt = optim.Optimizer(self.net, optim.sgd(lr), fused=False)
        self.loss = losses.SoftmaxCrossEntropy()
        self.named = self.net.named_parameters()
        self.X, self.y = X, y

    def gradient(self, idx):
        """(copied gradients, batch loss) at the current weights."""
        out = self.net.forward(self.X[idx], train=True)
        value = float(self.loss.forward(out, self.y[idx]))
        self.net.backward(self.loss.backward(), need_dx=False)
        return [np.array(layer.grads[k]) for _, layer, k in self.named], value

    def apply(self, grads):
        for (_, layer, k), g in zip(self.named, grads):
            layer.grads[k][...] = g
        self.opt.step()

    def train_loss(self):
        return float(self.loss.forward(self.net.forward(self.X, train=False), self.y))


def _batches(n, batch_size, seed):
    from ..train import MinibatchSampler

    sampler = MinibatchSampler(n, batch_size, seed=seed)
    while True:
        yield from sampler          # epoch after epoch, as train.fit draws them


def _run(mode, workers, updates, batch_size, lr, sizes, jitter, stragglers, slowdown, seed,
         eval_every, max_loss, on_divergence, data):
    from ..backend import use_backend

    (workers, updates, batch_size, lr, sizes, jitter, seed, eval_every, max_loss, X,
     y) = _check_common(workers, updates, batch_size, lr, sizes, jitter, seed, eval_every,
                        max_loss, on_divergence, data)
    n = X.shape[0]
    if mode == "sync" and workers * batch_size > n:
        raise ValueError(f"simulate_sync: workers * batch_size = {workers * batch_size} "
                         f"exceeds the {n} examples (lower workers={workers} or "
                         f"batch_size={batch_size})")
    clock = _Clock(worker_bases(workers, stragglers, slowdown), jitter, seed)
    who = f"simulated {mode} training with {workers} workers"
    with use_backend("numpy"), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        tr = _Trainer(sizes, lr, seed, X, y)
        losses, at = [tr.train_loss()], [0]
        stale, times, blosses, source = [], [], [], []
        diverged = None

        def record(u, s, t, bl, w):
            nonlocal diverged
            stale.append(s)
            times.append(t)
            blosses.append(bl)
            source.append(w)
            if (u + 1) % eval_every == 0 or u + 1 == updates:
                losses.append(tr.train_loss())
                at.append(u + 1)
                bad = losses[-1]
            else:
                bad = bl
            if not math.isfinite(bad) or bad > max_loss:
                if on_divergence == "raise":
                    raise DivergenceError(u, bad, who)
                diverged = u
            return diverged is None

        if mode == "async":
            batches = _batches(n, batch_size, seed)
            version = 0
            heap = []

            def start(worker, now):
                grads, bl = tr.gradient(next(batches))
                heapq.heappush(heap, (now + clock.draw(worker), worker, version, grads, bl))

            for w in range(min(workers, updates)):
                start(w, 0.0)
            while version < updates:
                t, w, read, grads, bl = heapq.heappop(heap)
                tr.apply(grads)
                version += 1
                if not record(version - 1, version - 1 - read, t, bl, w):
                    break
                if version + len(heap) < updates:      # a gradient still needed
                    start(w, t)
        else:
            batches = _batches(n, workers * batch_size, seed)
            now = 0.0
            for u in range(updates):
                grads, bl = tr.gradient(next(batches))
                now += max(clock.draw(w) for w in range(workers))
                tr.apply(grads)
                if not record(u, 0, now, bl, -1):
                    break
    return AsyncRun(workers=workers, mode=mode, loss=np.array(losses), evaluated_at=np.array(at),
                    staleness=np.array(stale, dtype=np.int64), time=np.array(times),
                    batch_loss=np.array(blosses), worker=np.array(source, dtype=np.int64),
                    net=tr.net, diverged_at=diverged)


def simulate_async(workers, updates, batch_size=32, lr=0.1, sizes=DIGITS_SIZES, jitter=0.25,
                   stragglers=0.0, slowdown=4.0, seed=0, eval_every=1, max_loss=1e3,
                   on_divergence="raise", data=None):
    """Simulate ``workers`` asynchronous workers training an MLP with SGD; an ``AsyncRun``.

    workers: K >= 1; updates: gradients the server applies; batch_size: examples per
        gradient; lr: the SGD step; sizes: the MLP's widths (``layers.mlp``, ReLU);
    jitter, stragglers, slowdown: the speed model (module docstring); with ``jitter=0``
        and no stragglers the workers finish in turn and the staleness is ``K - 1`` once
        all have started;
    seed: the net's initial weights, the batch stream and the speed draws;
    eval_every: the training loss is measured after every ``eval_every``-th update (and
        after the last);
    max_loss, on_divergence: a loss that is non-finite or above ``max_loss`` raises
        ``DivergenceError`` naming the update (``"raise"``) or ends the run there
        (``"stop"``, with ``diverged_at`` set);
    data: ``(X, y)`` to train on (default: ``data.load_digits(seed=0)``'s training split).
    """
    return _run("async", workers, updates, batch_size, lr, sizes, jitter, stragglers,
                slowdown, seed, eval_every, max_loss, on_divergence, data)


def simulate_sync(workers, steps, batch_size=32, lr=0.1, sizes=DIGITS_SIZES, jitter=0.25,
                  stragglers=0.0, slowdown=4.0, seed=0, eval_every=1, max_loss=1e3,
                  on_divergence="raise", data=None):
    """Simulate synchronous data parallelism: each step averages the gradients of K parts
    of a batch of ``workers * batch_size`` examples (the same update as ``train.fit`` with
    that batch) and lasts as long as the slowest of the K workers' draws.  Arguments as
    in ``simulate_async``; the staleness is 0 and ``worker`` is -1 for every step."""
    return _run("sync", workers, steps, batch_size, lr, sizes, jitter, stragglers, slowdown,
                seed, eval_every, max_loss, on_divergence, data)


# ---------------------------------------------------------------- the cost model


def mlp_params(sizes):
    """Number of weights and biases of ``layers.mlp(sizes)``."""
    sizes = [check_int("sizes[i]", s) for s in sizes]
    if len(sizes) < 2:
        raise ValueError(f"sizes must hold at least two widths, got {sizes!r}")
    return int(sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:])))


def step_compute_time(params, batch_size, flops_per_second):
    """Seconds for one gradient of a batch on one device, by the usual count of about
    6 floating-point operations per parameter per example (2 forward, 4 backward)."""
    params = check_int("params", params)
    batch_size = check_int("batch_size", batch_size)
    flops_per_second = check_positive("flops_per_second", flops_per_second)
    return 6.0 * params * batch_size / flops_per_second


def _check_k(k):
    arr = np.asarray(k, dtype=np.float64)
    if not np.all(np.isfinite(arr)) or np.any(arr < 1):
        raise ValueError(f"workers must be numbers >= 1, got {k!r}")
    return arr


@dataclass(frozen=True)
class CostModel:
    """Time of one synchronous data-parallel step on K workers (module docstring).

    compute: seconds one worker needs for the gradient of the whole global batch;
    params: parameters exchanged; bytes_per_param: 4 for float32, 1 for int8 gradients;
    bandwidth: bytes per second of one link; latency: seconds per message;
    topology: ``"ps"`` (one server's link carries K copies) or ``"ring"`` (all-reduce).
    """

    compute: float
    params: int
    bandwidth: float
    latency: float = 0.0
    bytes_per_param: int = 4
    topology: str = "ps"

    def __post_init__(self):
        check_positive("compute", self.compute)
        check_int("params", self.params)
        check_positive("bandwidth", self.bandwidth)
        check_positive("latency", self.latency, allow_zero=True)
        check_int("bytes_per_param", self.bytes_per_param)
        if self.topology not in TOPOLOGIES:
            raise ValueError(f"topology must be one of {TOPOLOGIES}, got {self.topology!r}")

    @property
    def copy_time(self):
        """m: seconds one copy of the parameters takes on one link."""
        return self.params * self.bytes_per_param / self.bandwidth

    def comm_time(self, workers):
        k, m, a = _check_k(workers), self.copy_time, self.latency
        if self.topology == "ps":
            return 2.0 * (a + k * m)
        return 2.0 * (k - 1.0) * (a + m / k)

    def step_time(self, workers):
        """t(K) = compute / K + comm(K), elementwise over an int or an array of K."""
        return self.compute / _check_k(workers) + self.comm_time(workers)

    def speedup(self, workers):
        """compute / t(K): against one process that sends nothing."""
        return self.compute / self.step_time(workers)

    def optimal_workers(self):
        """The real K >= 1 minimizing t(K) (closed form; ``inf`` when it keeps falling)."""
        c, m, a = self.compute, self.copy_time, self.latency
        if self.topology == "ps":
            return max(1.0, math.sqrt(c / (2.0 * m)))
        if c <= 2.0 * m:
            return 1.0
        if a == 0:
            return math.inf
        return max(1.0, math.sqrt((c - 2.0 * m) / (2.0 * a)))

    def best_workers(self, max_workers=None):
        """The whole number of workers in [1, max_workers] with the shortest step: the
        floor or the ceiling of ``optimal_workers()`` (t is convex in K).  ``max_workers``
        is required when no finite optimum exists (ring, zero latency)."""
        if max_workers is not None:
            max_workers = check_int("max_workers", max_workers)
        k = self.optimal_workers()
        if math.isinf(k):
            if max_workers is None:
                raise ValueError("best_workers: with topology='ring' and latency=0 the step "
                                 "time falls for every K; give max_workers")
            return max_workers
        cands = {max(1, math.floor(k)), max(1, math.ceil(k))}
        if max_workers is not None:
            cands = {min(c, max_workers) for c in cands}
        return min(sorted(cands), key=lambda c: float(self.step_time(c)))
