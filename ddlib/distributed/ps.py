"""Data parallelism with a parameter server (Sec. 3.7.2), on Ray actors.

``ParameterServer`` (an actor) holds the one copy of the weights and a ddlib
``optim.Optimizer``; ``DataWorker`` actors hold a replica of the net and compute
gradients of their share of a mini-batch at the weights they are sent.

* ``train_sync``: every step the mini-batch of ``K * batch_size`` examples is split in K
  parts, the K gradients are averaged (weighted by part size) and applied once: the same
  update as a single-process step on the whole batch (a test checks it against
  ``ddlib.train.fit``).  A worker that dies mid-step has its part re-issued to a
  surviving worker; the step is applied once, when all parts are in.
* ``train_async``: each worker is handed the current weights and a batch; whichever
  finishes first (``ray.wait``) has its gradient applied at once, although the weights
  moved since it started; the staleness (server version now minus the version the
  gradient was computed at) is recorded per update.  A worker that dies is dropped and
  the others carry on; its unfinished gradient is never applied.
* ``quantize="int8"``: gradients travel as 8-bit integers with one scale per array, and
  each worker keeps the rounding error and adds it to its next gradient (error
  feedback), the chapter's reduced-precision communication.
* ``checkpoint_dir`` / ``checkpoint_every``: the server saves weights and optimizer
  state every N updates and, restarted by Ray after a kill (``max_restarts``), resumes
  from the last checkpoint; updates after it are lost and redone, none applied twice.
"""

from __future__ import annotations

import os
import pickle
import time

import numpy as np

from .engine import require_ray

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
        """(grads, loss, n, version) at ``weights = (arrays, version)``."""
        from ..backend import use_backend

        weights, version = weights

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
        return grads, value, len(idx), version

    def die(self):
        os._exit(1)


class _Server:
    """The weights, a ddlib Optimizer over them, a version counter and checkpoints."""

    def __init__(self, sizes, rule_name="sgd", lr=0.1, seed=0, checkpoint_dir=None,
                 checkpoint_every=0):
        from .. import optim

        self.net = make_net(sizes, seed)
        self.opt = optim.Optimizer(self.net, getattr(optim, rule_name)(lr), fused=False)
        self.version = 0
        self.staleness = []
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every
        self.restored_from = None
        if checkpoint_dir and os.path.exists(self._ckpt_path()):
            with open(self._ckpt_path(), "rb") as f:
                ck = pickle.load(f)
            set_weights(self.net, ck["weights"])
            self.opt.load_state_dict(ck["opt"])
            self.version = ck["version"]
            self.staleness = ck["staleness"]
            self.restored_from = self.version

    def _ckpt_path(self):
        return os.path.join(self.checkpoint_dir, "ps.pkl")

    def _save(self):
        os.makedirs(self.checkpoint_dir, exist_ok=True)
        tmp = self._ckpt_path() + ".tmp"
        with open(tmp, "wb") as f:
            pickle.dump(dict(weights=get_weights(self.net), opt=self.opt.state_dict(),
                             version=self.version, staleness=self.staleness), f)
        os.replace(tmp, self._ckpt_path())   # atomic: a kill never leaves half a file

    def pid(self):
        return os.getpid()

    def weights(self):
        return get_weights(self.net), self.version

    def info(self):
        return dict(version=self.version, restored_from=self.restored_from,
                    staleness=list(self.staleness))

    def apply(self, *results):
        """Average the (grads, loss, n, version) results by n and take one step."""
        from ..backend import use_backend

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
        self.staleness.extend(self.version - r[3] for r in results)
        self.version += 1
        if self.checkpoint_dir and self.checkpoint_every and self.version % self.checkpoint_every == 0:
            self._save()
        loss = sum(r[1] * r[2] for r in results) / total
        return self.version, loss

    def die(self):
        os._exit(1)


def _remote(cls, **options):
    ray = require_ray()
    return ray.remote(**options)(cls)


def make_server(sizes, rule="sgd", lr=0.1, seed=0, checkpoint_dir=None, checkpoint_every=0,
                max_restarts=0):
    """A ParameterServer actor (num_cpus=0: it mostly waits)."""
    cls = _remote(_Server, num_cpus=0, max_restarts=max_restarts,
                  max_task_retries=-1 if max_restarts else 0)
    return cls.remote(sizes, rule, lr, seed, checkpoint_dir, checkpoint_every)


def make_workers(k, sizes, X, y, quantize=None):
    ray = require_ray()
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


# ---------------------------------------------------------------- the training drivers


def _split(idx, k):
    return [p for p in np.array_split(idx, k) if len(p)]


def train_sync(server, workers, n, batch_size, steps, seed=0, kill_worker_at=None):
    """Synchronous data parallelism: ``steps`` updates, each on ``len(workers) *
    batch_size`` examples drawn by a ``MinibatchSampler(n, K * batch_size, seed=seed)``
    (epochs follow each other as in ``train.fit``).  ``kill_worker_at=s`` kills the last
    worker during step s (a fault demo).  Returns a dict of the per-step loss, wall
    time, the parts re-issued, the workers left and the updates applied."""
    ray = require_ray()
    from ray.exceptions import RayActorError

    from ..train import MinibatchSampler

    k = len(workers)
    alive = list(workers)
    sampler = MinibatchSampler(n, k * batch_size, seed=seed)
    losses, times, reissued = [], [], 0
    t0 = time.perf_counter()
    batches, step = iter(()), 0
    while step < steps:
        idx = next(batches, None)
        if idx is None:
            batches = iter(sampler)
            continue
        w_ref = server.weights.remote()      # (weights, version), passed by reference
        parts = _split(idx, k)
        if kill_worker_at == step and len(alive) > 1:
            alive[-1].die.remote()
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
                    raise
                owner[i] = alive[i % len(alive)]
                refs[i] = owner[i].gradient.remote(w_ref, parts[i])
                reissued += 1
                todo.append(i)
        _, loss = ray.get(server.apply.remote(*results))   # once, with every part in
        losses.append(loss)
        times.append(time.perf_counter() - t0)
        step += 1
    return dict(loss=losses, time=times, reissued=reissued, workers_left=len(alive),
                updates=ray.get(server.info.remote())["version"])


def train_async(server, workers, n, batch_size, updates, seed=0, delays=None,
                kill_worker_at=None):
    """Asynchronous data parallelism: each worker computes a gradient on its own batch
    at the weights it was last sent; the server applies each as it arrives
    (``ray.wait``), until ``updates`` updates are applied.  ``delays[i]`` seconds of
    extra sleep make worker i slow (a straggler).  Returns per-update loss, wall time,
    staleness and the workers left."""
    ray = require_ray()
    from ray.exceptions import RayActorError

    rng = np.random.default_rng(seed)
    workers = list(workers)
    delays = list(delays) if delays is not None else [0.0] * len(workers)

    def batch():
        return rng.choice(n, size=batch_size, replace=False)

    def issue(i):
        return workers[i].gradient.remote(server.weights.remote(), batch(), delays[i])

    inflight = {issue(i): i for i in range(len(workers))}
    dead = set()
    losses, times, applied = [], [], 0
    t0 = time.perf_counter()
    while applied < updates and inflight:
        if kill_worker_at is not None and applied == kill_worker_at and len(inflight) > 1:
            victim = max(inflight.values())
            workers[victim].die.remote()
            kill_worker_at = None
        done, _ = ray.wait(list(inflight), num_returns=1)
        ref = done[0]
        i = inflight.pop(ref)
        try:
            result = ray.get(ref)
        except RayActorError:
            dead.add(i)         # that worker is gone; its gradient is never applied
            continue
        _, loss = ray.get(server.apply.remote(result))
        applied += 1
        losses.append(loss)
        times.append(time.perf_counter() - t0)
        if applied < updates:
            inflight[issue(i)] = i
    for ref in inflight:     # let the last ones finish; their results are dropped
        try:
            ray.get(ref)
        except RayActorError:
            pass
    info = ray.get(server.info.remote())
    return dict(loss=losses, time=times, staleness=info["staleness"], updates=info["version"],
                workers_left=len(workers) - len(dead))
