"""Data parallelism with a parameter server (Sec. 3.7.2), on Ray actors.

``ParameterServer`` (an actor) holds the one copy of the weights and a ddlib
``optim.Optimizer``; ``DataWorker`` actors hold a replica of the net and compute
gradients of their share of a mini-batch at the weights they are sent.

* ``train_sync``: every step the mini-batch of ``K * batch_size`` examples is split in K
  parts, the K gradients are averaged (weighted by part size) and applied once: the same
  update as a single-process step on the whole batch (a test checks it against
  ``ddlib.train.fit``).  Batch ``v`` of the run is always the v-th batch of one
  ``MinibatchSampler`` stream, whatever happened before, so a run that loses steps redoes
  them on the same examples.
* ``train_async``: each worker is handed the current weights and a batch; whichever
  finishes first (``ray.wait``) has its gradient applied at once, although the weights
  moved since it started; the staleness (server version now minus the version the
  gradient was computed at) is recorded per update.
* ``quantize="int8"``: gradients travel as 8-bit integers with one scale per array, and
  each worker keeps the rounding error and adds it to its next gradient (error
  feedback), the chapter's reduced-precision communication.

Faults (tested in ``tests/distributed/test_faults.py``):

* **A data worker dies** (``kill_worker_at=``; workers are never restarted).  Sync: its
  part of the step is re-issued to a surviving worker at the same weights, and the step
  is applied once, when all parts are in.  The parts and their order do not change, so
  the run ends bit for bit where the uninterrupted one does; only the wall time differs.
  Async: the worker is dropped and the others carry on until the requested number of
  updates is applied; the gradient it had in flight is lost (``ray.kill`` ends it
  mid-computation), never applied (one it had already finished when the kill came was
  no longer in flight: its result is kept and applied).  If every worker dies the
  drivers raise.
* **The server dies** (``kill_server_at=``, or any crash) with ``max_restarts >= 1`` and
  ``checkpoint_dir`` / ``checkpoint_every=N``: it saves weights, optimizer state, version
  and staleness record every N updates with ``ddlib.checkpoint`` (an ``.npz`` read with
  ``allow_pickle=False`` and a SHA-256 digest: a restarted server never unpickles a file
  from a shared folder, and a torn or foreign file raises ``CheckpointError`` instead of
  loading wrong weights).  Ray restarts the actor (``__init__`` runs again and loads the
  checkpoint) and re-runs the calls that were pending on it (``max_task_retries=-1``).
  **Lost:** every update after the last checkpoint (at most N - 1 of them), and every
  gradient computed at the weights of the process that died (the step in flight, in
  sync): each server life has its
  own token, stamped on the weights it hands out, and ``apply`` refuses a gradient with
  another token (so nothing computed on lost weights is applied, even when the version
  numbers coincide).  **Redone:** the drivers count progress by the server's version, so
  the lost updates are computed again (sync: on the same batches, so the run ends where
  the uninterrupted one does, up to the int8 residuals the workers keep, which are not
  rolled back; async: on fresh batches, so it ends within noise of an uninterrupted run).
  The drivers report ``restarts``, ``redone`` (updates lost and redone) and ``rejected``
  (gradients refused).
"""

from __future__ import annotations

import os
import time
import uuid

import numpy as np

from ..errors import check_int
from .engine import require_ray

CHECKPOINT_FILE = "ps.npz"

# ---------------------------------------------------------------- plain helpers


def make_net(sizes, seed=0):
    from .. import layers

    return layers.mlp(list(sizes), activation="relu", rng=seed, dtype=np.float64)


def get_weights(net):
    return {name: np.array(layer.params[k]) for name, layer, k in net.named_parameters()}


def set_weights(net, weights):
    for name, layer, k in net.named_parameters():
        layer.params[k][...] = weights[name]


def quantize_int8(g):
    """(int8 array, scale): g ~ q * scale with |q| <= 127."""
    m = float(np.max(np.abs(g))) if g.size else 0.0
    scale = m / 127.0 if m > 0 else 1.0
    return np.clip(np.rint(g / scale), -127, 127).astype(np.int8), scale


def dequantize(q, scale):
    return q.astype(np.float64) * scale


def payload_bytes(grads):
    """Bytes a gradient message carries (arrays only)."""
    total = 0
    for v in grads.values():
        total += v[0].nbytes + 8 if isinstance(v, tuple) else v.nbytes
    return total


# ---------------------------------------------------------------- the actors


class _Worker:
    """Gradient of a batch of rows of (X, y) at given weights (numpy backend)."""

    def __init__(self, sizes, X, y, quantize=None, seed=0):
        from .. import losses

        self.net = make_net(sizes, seed)
        self.loss = losses.SoftmaxCrossEntropy()
        self.X, self.y = X, y
        self.quantize = quantize
        self.residual = None

    def pid(self):
        return os.getpid()

    def gradient(self, weights, idx, delay=0.0):
        """(grads, loss, n, stamp) at ``weights = (arrays, stamp)``; the stamp (the
        server's version, or (token, version) from ``snapshot``) is passed back as is."""
        from ..backend import use_backend

        weights, stamp = weights

        if delay:
            time.sleep(delay)
        with use_backend("numpy"):
            set_weights(self.net, weights)
            out = self.net.forward(self.X[idx], train=True)
            value = float(self.loss.forward(out, self.y[idx]))
            self.net.backward(self.loss.backward(), need_dx=False)
        grads = {name: np.array(layer.grads[k]) for name, layer, k in self.net.named_parameters()}
        if self.quantize == "int8":
            if self.residual is None:
                self.residual = {n: np.zeros_like(g) for n, g in grads.items()}
            sent = {}
            for n, g in grads.items():
                c = g + self.residual[n]
                q, s = quantize_int8(c)
                self.residual[n] = c - dequantize(q, s)
                sent[n] = (q, s)
            grads = sent
        return grads, value, len(idx), stamp

    def die(self):
        os._exit(1)


class _Server:
    """The weights, a ddlib Optimizer over them, a version counter and checkpoints."""

    def __init__(self, sizes, rule_name="sgd", lr=0.1, seed=0, checkpoint_dir=None,
                 checkpoint_every=0):
        from .. import checkpoint, optim

        self.net = make_net(sizes, seed)
        self.opt = optim.Optimizer(self.net, getattr(optim, rule_name)(lr), fused=False)
        self.version = 0
        self.staleness = []
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every
        self.restored_from = None
        self.token = uuid.uuid4().hex      # this life of the server; a restart gets another
        if checkpoint_dir and os.path.exists(self._ckpt_path()):
            checkpoint.load(self._ckpt_path(), model=self.net, optimizer=self.opt,
                            extra={"server": self})
            self.restored_from = self.version

    # the server's own counters, as a checkpoint ``extra`` object
    def state_dict(self):
        return dict(version=self.version, staleness=list(self.staleness))

    def load_state_dict(self, state):
        version, staleness = state["version"], state["staleness"]
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise ValueError(f"server version must be an int >= 0, got {version!r}")
        self.version, self.staleness = version, [int(s) for s in staleness]

    def _ckpt_path(self):
        return os.path.join(self.checkpoint_dir, CHECKPOINT_FILE)

    def _save(self):
        from .. import checkpoint

        os.makedirs(self.checkpoint_dir, exist_ok=True)
        # written to a temporary file and renamed: a kill never leaves half a checkpoint
        checkpoint.save(self._ckpt_path(), model=self.net, optimizer=self.opt,
                        extra={"server": self})

    def pid(self):
        return os.getpid()

    def weights(self):
        return get_weights(self.net), self.version

    def snapshot(self):
        """(weights, (token, version)): what the drivers hand to the workers."""
        return get_weights(self.net), (self.token, self.version)

    def info(self):
        return dict(version=self.version, restored_from=self.restored_from,
                    staleness=list(self.staleness), token=self.token, pid=os.getpid())

    def _stamp(self, stamp):
        return stamp if isinstance(stamp, tuple) else (self.token, stamp)

    def apply(self, *results, expect=None):
        """Average the (grads, loss, n, stamp) results by n and take one step.

        Returns (version, loss, token); loss is None and nothing changes when a result
        was computed at weights of another server life (another token) or when
        ``expect`` is given and differs from the current version."""
        from ..backend import use_backend

        stamps = [self._stamp(r[3]) for r in results]
        if any(tok != self.token for tok, _ in stamps) or (
                expect is not None and expect != self.version):
            return self.version, None, self.token
        total = sum(r[2] for r in results)
        names = [n for n, _, _ in self.net.named_parameters()]
        avg = {}
        for n in names:
            parts = [(dequantize(*r[0][n]) if isinstance(r[0][n], tuple) else r[0][n]) * r[2]
                     for r in results]
            avg[n] = sum(parts) / total
        for name, layer, k in self.net.named_parameters():
            layer.grads[k][...] = avg[name]
        with use_backend("numpy"):
            self.opt.step()
        self.staleness.extend(self.version - v for _, v in stamps)
        self.version += 1
        if self.checkpoint_dir and self.checkpoint_every and self.version % self.checkpoint_every == 0:
            self._save()
        loss = sum(r[1] * r[2] for r in results) / total
        return self.version, loss, self.token

    def die(self):
        os._exit(1)


def _remote(cls, **options):
    ray = require_ray()
    return ray.remote(**options)(cls)


def make_server(sizes, rule="sgd", lr=0.1, seed=0, checkpoint_dir=None, checkpoint_every=0,
                max_restarts=0):
    """A ParameterServer actor (num_cpus=0: it mostly waits).  With ``max_restarts >= 1``
    Ray restarts it after a crash and re-runs the calls pending on it; with
    ``checkpoint_dir`` and ``checkpoint_every=N`` it then resumes from its last
    checkpoint (see the module's docstring for what is lost and redone)."""
    check_int("checkpoint_every", checkpoint_every, minimum=0)
    check_int("max_restarts", max_restarts, minimum=0)
    if checkpoint_every and not checkpoint_dir:
        raise ValueError(f"make_server: checkpoint_every={checkpoint_every} needs a "
                         "checkpoint_dir")
    if checkpoint_dir is not None:
        checkpoint_dir = os.fspath(checkpoint_dir)
    cls = _remote(_Server, num_cpus=0, max_restarts=max_restarts,
                  max_task_retries=-1 if max_restarts else 0)
    return cls.remote(sizes, rule, lr, seed, checkpoint_dir, checkpoint_every)


def make_workers(k, sizes, X, y, quantize=None):
    ray = require_ray()
    check_int("k", k)
    if quantize not in (None, "int8"):
        raise ValueError(f"make_workers: quantize must be None or 'int8', got {quantize!r}")
    Xr, yr = ray.put(np.ascontiguousarray(X)), ray.put(np.asarray(y))
    cls = _remote(_Worker, num_cpus=1)
    workers = [cls.remote(sizes, Xr, yr, quantize) for _ in range(k)]
    ray.get([w.pid.remote() for w in workers])     # all up before any clock starts
    return workers


def release(*actors):
    """Kill these actors now (their CPUs are free at once, not when Python collects
    the handles)."""
    ray = require_ray()
    for a in actors:
        ray.kill(a, no_restart=True)


def kill_server(server, timeout=60.0):
    """Kill the server process from outside (``ray.kill(no_restart=False)``) and wait
    until Ray has restarted it; returns the new process id.  Raises ``RayActorError``
    when the server cannot be restarted (``max_restarts`` spent or 0)."""
    ray = require_ray()
    old = ray.get(server.pid.remote())
    ray.kill(server, no_restart=False)
    deadline = time.monotonic() + timeout
    while True:
        # a call that lands on the old process before the kill does returns its pid;
        # one that lands after waits for the restart (max_task_retries=-1)
        pid = ray.get(server.pid.remote())
        if pid != old:
            return pid
        if time.monotonic() > deadline:
            raise TimeoutError(f"kill_server: server pid {old} still alive after {timeout} s")
        time.sleep(0.01)


# ---------------------------------------------------------------- the training drivers


def _split(idx, k):
    return [p for p in np.array_split(idx, k) if len(p)]


def _check_at(name, value):
    if value is not None:
        check_int(name, value, minimum=0)


def train_sync(server, workers, n, batch_size, steps, seed=0, kill_worker_at=None,
               kill_server_at=None):
    """Synchronous data parallelism until the server holds ``steps`` updates, each on
    ``len(workers) * batch_size`` examples: update v uses the v-th batch of a
    ``MinibatchSampler(n, K * batch_size, seed=seed)`` (epochs follow each other as in
    ``train.fit``).  Fault demos: ``kill_worker_at=s`` kills the last worker just before
    its part of step s; ``kill_server_at=s`` kills the server before step s and waits
    for Ray to restart it (``kill_server``).  Returns a dict: ``loss`` and ``time`` per
    update (``loss[i]`` for the update that made version ``start + i + 1``, redone steps
    replacing lost ones), ``reissued`` parts, ``workers_left``, ``updates`` (the
    server's version), ``restarts``, ``redone`` and ``rejected``."""
    ray = require_ray()
    from ray.exceptions import RayActorError

    from ..train import MinibatchSampler

    check_int("steps", steps, minimum=0)
    check_int("batch_size", batch_size)
    check_int("n", n)
    _check_at("kill_worker_at", kill_worker_at)
    _check_at("kill_server_at", kill_server_at)
    if not workers:
        raise ValueError("train_sync: workers is empty")
    k = len(workers)
    alive = list(workers)
    sampler = MinibatchSampler(n, k * batch_size, seed=seed)
    schedule = []

    def batch(v):
        while len(schedule) <= v:
            schedule.extend(iter(sampler))        # one more epoch
        return schedule[v]

    info = ray.get(server.info.remote())
    start, version, token = info["version"], info["version"], info["token"]
    losses, times = [], []
    reissued = restarts = redone = rejected = 0
    t0 = time.perf_counter()
    while version < steps:
        if kill_server_at is not None and version == kill_server_at:
            kill_server(server)
            kill_server_at = None
        parts = _split(batch(version), k)
        w_ref = server.snapshot.remote()      # (weights, stamp), passed by reference
        if kill_worker_at is not None and version == kill_worker_at and len(alive) > 1:
            alive[-1].die.remote()            # runs before its gradient below
            kill_worker_at = None
        owner = [alive[i % len(alive)] for i in range(len(parts))]
        refs = [w.gradient.remote(w_ref, p) for w, p in zip(owner, parts)]
        results = [None] * len(parts)
        todo = list(range(len(parts)))
        while todo:
            i = todo.pop(0)
            try:
                results[i] = ray.get(refs[i])
            except RayActorError:
                if owner[i] in alive:
                    alive.remove(owner[i])
                if not alive:
                    raise RuntimeError("train_sync: every worker died") from None
                owner[i] = alive[i % len(alive)]
                refs[i] = owner[i].gradient.remote(w_ref, parts[i])
                reissued += 1
                todo.append(i)
        new_version, loss, new_token = ray.get(server.apply.remote(*results, expect=version))
        if new_token != token:                # the server restarted from a checkpoint
            restarts += 1
            token = new_token
        if loss is None:
            rejected += 1
            redone += version - new_version
            keep = max(new_version - start, 0)
            del losses[keep:], times[keep:]
            start = min(start, new_version)     # a checkpoint older than this call's start
            version = new_version
            continue
        version = new_version
        losses.append(loss)
        times.append(time.perf_counter() - t0)
    return dict(loss=losses, time=times, reissued=reissued, workers_left=len(alive),
                updates=version, restarts=restarts, redone=redone, rejected=rejected)


def train_async(server, workers, n, batch_size, updates, seed=0, delays=None,
                kill_worker_at=None, kill_server_at=None):
    """Asynchronous data parallelism: each worker computes a gradient on its own batch
    at the weights it was last sent; the server applies each as it arrives
    (``ray.wait``), until it holds ``updates`` updates.  ``delays[i]`` seconds of extra
    sleep make worker i slow (a straggler).  Fault demos: ``kill_worker_at=u`` kills
    (``ray.kill``) the highest-numbered worker that has a gradient in flight once u
    updates are applied; ``kill_server_at=u`` kills the server then and waits for its
    restart.  Returns per-update ``loss``, ``time`` and ``source`` (the worker whose
    gradient it was), the server's ``staleness`` record, ``updates``, ``workers_left``,
    ``restarts``, ``redone`` and ``rejected``."""
    ray = require_ray()
    from ray.exceptions import RayActorError

    check_int("updates", updates, minimum=0)
    check_int("batch_size", batch_size)
    check_int("n", n)
    if batch_size > n:
        raise ValueError(f"train_async: batch_size={batch_size} exceeds n={n}")
    _check_at("kill_worker_at", kill_worker_at)
    _check_at("kill_server_at", kill_server_at)
    rng = np.random.default_rng(seed)
    workers = list(workers)
    if not workers:
        raise ValueError("train_async: workers is empty")
    delays = list(delays) if delays is not None else [0.0] * len(workers)
    if len(delays) != len(workers):
        raise ValueError(f"train_async: delays has {len(delays)} entries for "
                         f"{len(workers)} workers")

    def batch():
        return rng.choice(n, size=batch_size, replace=False)

    def issue(i):
        return workers[i].gradient.remote(server.snapshot.remote(), batch(), delays[i])

    info = ray.get(server.info.remote())
    start, version, token = info["version"], info["version"], info["token"]
    inflight = {issue(i): i for i in range(len(workers))} if version < updates else {}
    dead = set()
    losses, times, sources = [], [], []
    restarts = redone = rejected = 0
    t0 = time.perf_counter()
    while version < updates and inflight:
        done_here = version - start
        if kill_worker_at is not None and done_here >= kill_worker_at and len(inflight) > 1:
            victim = max(inflight.values())
            ray.kill(workers[victim], no_restart=True)   # ends it mid-gradient
            kill_worker_at = None
        if kill_server_at is not None and done_here >= kill_server_at:
            kill_server(server)
            kill_server_at = None
        done, _ = ray.wait(list(inflight), num_returns=1)
        ref = done[0]
        i = inflight.pop(ref)
        try:
            result = ray.get(ref)
        except RayActorError:
            dead.add(i)         # that worker is gone; its gradient is never applied
            continue
        new_version, loss, new_token = ray.get(server.apply.remote(result))
        if new_token != token:
            restarts += 1
            token = new_token
            lost = version - (new_version - (loss is not None))
            redone += lost
            keep = max(version - lost - start, 0)
            del losses[keep:], times[keep:], sources[keep:]
            start = min(start, version - lost)
        version = new_version
        if loss is None:
            rejected += 1       # computed at weights the restarted server never had
        else:
            losses.append(loss)
            times.append(time.perf_counter() - t0)
            sources.append(i)
        if version < updates:
            inflight[issue(i)] = i
    for ref in inflight:     # let the last ones finish; their results are dropped
        try:
            ray.get(ref)
        except RayActorError:
            pass
    if version < updates:
        raise RuntimeError(f"train_async: every worker died after {version} of {updates} "
                           "updates")
    info = ray.get(server.info.remote())
    return dict(loss=losses, time=times, source=sources, staleness=info["staleness"],
                updates=info["version"], workers_left=len(workers) - len(dead),
                restarts=restarts, redone=redone, rejected=rejected)
