"""Host and GPU: explicit moves, and a training step that never leaves the GPU (Sec. 3.7.1).

Nothing in ddlib copies between host memory and the GPU behind your back.  Three
functions make every move visible:

* ``to_device(x)`` copies a NumPy array to the GPU (or moves a whole model's parameters
  and gradient buffers there) and returns it;
* ``to_host(x)`` copies a device array back to a NumPy array (or moves a model back);
* ``backend_of(x)`` says where an array lives ('cuda' or 'numpy'), or, for a model,
  where its parameters live ('cuda', 'numpy' or 'mixed').

The cuda kernels refuse host arrays with a TypeError that names the argument, so a
forgotten move fails loudly instead of costing a hidden copy on every call.

``DeviceTrainer`` runs forward pass, loss, backward pass and the optimizer's fused update
with the data already on the GPU.  A step launches kernels and returns; the only values
that ever come back are the loss and the optimizer's non-finite counters (one small
copy), and only when asked for.  Order of
set-up: move the model first, then build the optimizer, so its state (momentum buffers)
is allocated on the GPU too::

    import ddlib
    from ddlib import layers, losses, optim
    from ddlib.device import DeviceTrainer, to_device

    net = to_device(layers.mlp([784, 512, 512, 10], rng=0, dtype="float32"))
    with ddlib.use_backend("cuda"):
        opt = optim.Optimizer(net, optim.momentum(0.01, 0.9))
    trainer = DeviceTrainer(net, losses.SoftmaxCrossEntropy(), opt)
    X, y = trainer.put_data(X_train, y_train)      # validated on the host, copied once
    for epoch in range(5):
        print(trainer.fit_epoch(X, y, batch_size=1024, rng=rng))   # one copy per epoch

Device memory comes from a caching allocator (``memory_pool``): the arrays a step frees
are handed to the next step instead of going back to the driver.
"""

from __future__ import annotations

import numpy as np

from .backend import get_backend, use_backend
from .backend.arrays import is_device, tree_leaves, where
from .errors import check_labels

__all__ = ["to_device", "to_host", "backend_of", "DeviceTrainer", "memory_pool"]


def _is_model(x) -> bool:
    return hasattr(x, "named_parameters") and hasattr(x, "to")


def _require_device(who, **arrays):
    """A clear TypeError when a host array reaches a device-only entry point."""
    for name, x in arrays.items():
        if not is_device(x):
            shape = f" of shape {tuple(x.shape)}" if hasattr(x, "shape") else ""
            raise TypeError(f"{who}: {name} is a host {type(x).__name__}{shape}; move it "
                            f"to the GPU first with ddlib.device.to_device({name})")


def backend_of(x) -> str:
    """Where ``x`` lives: 'cuda' (GPU) or 'numpy' (host); a model may also be 'mixed'.

    >>> import numpy as np
    >>> backend_of(np.zeros(3))
    'numpy'
    """
    if _is_model(x):
        places = set()
        for _, layer, k in x.named_parameters():
            places.add(where(layer.params[k]))
            places.add(where(layer.grads[k]))
        if not places:
            return "numpy"
        return places.pop() if len(places) == 1 else "mixed"
    return where(x)


def to_device(x, dtype=None):
    """Copy an array to the GPU, or move a model (parameters and gradients) there.

    Arrays: returns a device array (a device array passes through unchanged; ``dtype``
    casts on the host before the copy).  Models: moves them in place and returns them.
    Raises ``BackendUnavailable`` (with the reason) on a machine without a usable GPU.
    """
    be = get_backend("cuda")
    if _is_model(x):
        if dtype is not None:
            raise TypeError("to_device(model, dtype=...): build the model with the dtype "
                            "you want; a model is moved, not cast")
        return x.to("cuda")
    if hasattr(x, "rule") and hasattr(x, "state"):
        raise TypeError("to_device(optimizer): move the model first, then build the "
                        "Optimizer; its state is then allocated on the GPU")
    if is_device(x):
        return be.asarray(x, dtype=dtype)
    return be.asarray(np.asarray(x), dtype=dtype)


def to_host(x):
    """Copy a device array back to a NumPy array, or move a model back to host arrays.

    Host arrays pass through (as NumPy arrays); models are moved in place and returned.
    """
    if _is_model(x):
        return x.to("numpy")
    if is_device(x):
        return x.copy_to_host()
    return np.asarray(x)


def memory_pool(enabled: bool | None = None, release: bool = False) -> dict:
    """Inspect, switch or empty the cuda backend's caching allocator.

    ddlib installs it as numba's memory manager when the cuda backend is first imported
    (``ddlib.backend.cuda.pool`` explains why it pays and why it is safe).  It cannot be
    installed if a CUDA context already exists by then, if ``NUMBA_CUDA_MEMORY_MANAGER``
    names another manager, or with ``DDLIB_CUDA_POOL=0``; ``status`` says which.

    enabled: True or False switches where new allocations come from (the pool, or the
             driver exactly as numba does it); None leaves it as it is.
    release: free every cached block now (blocks in use stay).

    Returns a dict: status, enabled, hits and misses (requests served from the cache or
    the driver), cached_bytes, in_use_bytes, cached_blocks, and released_bytes.
    """
    if enabled is not None and not isinstance(enabled, bool):
        raise TypeError(f"memory_pool: enabled must be True, False or None, got {enabled!r}")
    get_backend("cuda")  # imports the backend, which installs the pool if it can
    from .backend.cuda import POOL_STATUS, pool

    if enabled is not None:
        pool.set_enabled(enabled)
    managers = pool.active_managers()
    released = sum(m.cache.release() for m in managers) if release else 0
    totals = dict(hits=0, misses=0, cached_bytes=0, in_use_bytes=0, cached_blocks=0)
    for m in managers:
        for k, v in m.cache.stats().items():
            totals[k] += v
    return dict(status=POOL_STATUS, enabled=pool.enabled(), released_bytes=released, **totals)


class DeviceTrainer:
    """Training steps with model, data, loss and optimizer state all on the GPU.

    ``step(xb, yb)`` runs forward, softmax cross-entropy (Eqs. 3.20-3.22) kept on the
    device (the ``softmax_xent_device`` kernel), backward, and ``optimizer.step(check=False)``;
    it copies nothing back unless ``return_loss=True``, in which case one small array
    (the loss and the optimizer's non-finite counters, packed by ``pack_status``) comes
    back.  Non-finite gradients are counted on the GPU per parameter by the optimizer's
    kernels and reported (``NonFiniteGradient`` naming the parameter) whenever the status
    is read: by ``step(return_loss=True)``, ``check()`` or ``fit_epoch``.

    model:     a Layer/Sequential already moved with ``to_device``
    loss:      ``ddlib.losses.SoftmaxCrossEntropy`` (the loss the cuda backend fuses)
    optimizer: ``ddlib.optim.Optimizer`` built after the move, with a fused rule
    """

    def __init__(self, model, loss, optimizer):
        from .losses import SoftmaxCrossEntropy
        from .optim.base import Optimizer

        be = get_backend("cuda")
        where = backend_of(model)
        if where != "cuda":
            raise TypeError(f"DeviceTrainer: the model's parameters live on {where!r}; "
                            "call ddlib.device.to_device(model) before building the optimizer")
        if not isinstance(loss, SoftmaxCrossEntropy):
            raise TypeError(f"DeviceTrainer: loss must be SoftmaxCrossEntropy (the loss with a "
                            f"device kernel), got {type(loss).__name__}")
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"DeviceTrainer: optimizer must be a ddlib.optim.Optimizer, "
                            f"got {type(optimizer).__name__}")
        if not optimizer.use_fused:
            raise ValueError(f"DeviceTrainer: rule {optimizer.rule.name!r} has no fused kernel "
                             "(or fused=False was asked); on the GPU only fused rules run "
                             "without host copies")
        if optimizer.model is not model:
            raise ValueError("DeviceTrainer: the optimizer was built for a different model")
        on_host = [a for a in tree_leaves((optimizer.state, optimizer.nonfinite))
                   if not is_device(a)]
        if on_host:
            raise TypeError("DeviceTrainer: the optimizer's state holds host arrays; build the "
                            "Optimizer after to_device(model) so its state lives on the GPU")
        self.model, self.loss, self.optimizer = model, loss, optimizer
        self._be = be
        self.names = list(optimizer.names)
        self._last = be.zeros(1, np.float64)
        self._running = be.zeros(1, np.float64)
        self._status = be.empty(2 + len(self.names), np.float64)
        self.steps = 0  # steps run by this trainer
        self._running_steps = 0

    def step(self, xb, yb, return_loss=False):
        """One training step on a device batch; returns the loss only if ``return_loss``."""
        _require_device("DeviceTrainer.step", xb=xb, yb=yb)
        be = self._be
        with use_backend("cuda"):
            out = self.model.forward(xb, train=True)
            _, probs = be.softmax_xent_device(out, yb, self._last, self._running)
            self.model.backward(be.softmax_xent_backward(probs, yb), need_dx=False)
            self.optimizer.step(check=False)  # the counters are read with the status
        self.steps += 1
        self._running_steps += 1
        if return_loss:
            return self.check()
        return None

    def _read_status(self):
        """[last loss, running loss sum, counter per parameter], in one copy."""
        self._be.pack_status(self._last, self._running, self.optimizer.nonfinite, self._status)
        return self._status.copy_to_host()

    def check(self) -> float:
        """Copy the status back (one small array): raise ``NonFiniteGradient`` if any
        gradient held NaN/inf since the last check, else return the last batch loss."""
        status = self._read_status()
        self.optimizer.check_finite(status[2:])
        return float(status[0])

    def put_data(self, X, y):
        """Validate (X, y) on the host and copy both to the GPU once; returns device arrays."""
        X = np.asarray(X)
        if X.ndim != 2:
            raise ValueError(f"put_data: X must be 2-D (n, d), got shape {X.shape}")
        first = next(iter(self.optimizer.params().values()))
        if X.dtype != first.dtype:
            raise TypeError(f"put_data: X is {X.dtype} but the model is {first.dtype}; "
                            f"cast X (X.astype({str(first.dtype)!r})) before the copy")
        if not np.isfinite(X).all():
            raise ValueError("put_data: X contains NaN or inf")
        n_classes = _n_outputs(self.model)
        y = check_labels("y", y, X.shape[0], n_classes if n_classes else np.iinfo(np.int64).max)
        return to_device(X), to_device(y)

    def fit_epoch(self, X, y, batch_size, rng) -> float:
        """One shuffled pass over device-resident (X, y); returns the mean batch loss.

        The loop is ``train.fit``'s (one epoch, ``step_fn=self.step``).  Host traffic per
        epoch: the shuffled index order goes to the GPU once, and the status (loss sum and
        counters) comes back once at the end.  ``rng`` is a
        ``numpy.random.Generator`` (or a seed) that shuffles the order.
        """
        from .train import fit

        _require_device("fit_epoch", X=X, y=y)
        self._be.fill(self._running, 0.0)
        self._running_steps = 0
        with use_backend("cuda"):  # the loop of train.fit; each batch is cut on the GPU
            fit(self.model, self.loss, self.optimizer, X, y, epochs=1,
                batch_size=batch_size, seed=rng, step_fn=self.step)
        status = self._read_status()
        self.optimizer.check_finite(status[2:])
        return float(status[1]) / max(self._running_steps, 1)

    def running_loss(self) -> float:
        """Mean of the batch losses since the last ``fit_epoch`` began (one small copy)."""
        status = self._read_status()
        return float(status[1]) / max(self._running_steps, 1)


def _n_outputs(model):
    """Width of the model's last Linear layer (for label range checks), or None."""
    last = None
    for _, layer, k in model.named_parameters():
        if k == "W" and hasattr(layer, "d_out"):
            last = layer.d_out
    return last
