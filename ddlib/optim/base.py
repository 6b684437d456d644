"""The optimizer seam: update rules as (init, update) pairs with explicit state (optax style).

A rule is a ``Transform``: ``init(params) -> state`` and
``update(grads, state, params) -> (updates, state)``, where ``updates`` are added to the
parameters (W <- W + update).  State is a small NamedTuple a reader can print and plot.
Rules ``chain`` left to right, e.g. clipping then momentum.

Two optional pieces sit beside ``update``:

* ``fused(be, params, grads, state, point=None) -> (state, bad_names)`` does the same
  arithmetic in one pass through a backend kernel, in place.  ``Optimizer`` prefers it, and
  the tests hold it equal to the explicit ``update``.  A gradient-only transform
  (``kind='grad'``, e.g. clipping) rewrites ``grads`` in place instead of ``params``.
* ``lookahead(params, state) -> dict`` names the point where the *next* gradient must be
  evaluated.  Nesterov-type rules need the gradient at W + beta V rather than at W
  (Sec. 3.5.2.1); whoever computes gradients (``Optimizer``, ``trajectory``) asks the rule
  for that point first.  Rules without it evaluate at W itself.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import numpy as np

from ..backend import get_backend
from ..errors import check_positive


def on_device(x):
    """True for numba device arrays (and the CUDA simulator's stand-ins), False for ndarrays."""
    return hasattr(x, "copy_to_host") and not isinstance(x, np.ndarray)


class Transform(NamedTuple):
    """One update rule: ``init``/``update`` plus optional ``fused`` kernel and ``lookahead``."""

    init: Callable[[dict], Any]
    update: Callable[[dict, Any, dict], tuple]
    fused: Callable | None = None  # (be, params, grads, state, point=None) -> (state, bad)
    name: str = "transform"
    lookahead: Callable | None = None  # (params, state) -> dict: where to take the gradient
    kind: str = "rule"  # 'rule' moves the parameters; 'grad' only reshapes the gradient


class NonFiniteGradient(FloatingPointError):
    """A gradient held NaN or inf; names the parameter and the optimizer step.

    No parameter entry ever becomes NaN through the update: the explicit equations check
    every gradient before touching anything, and a fused kernel leaves each entry whose
    gradient is NaN or inf as it was.  A fused kernel does update the finite entries of
    that step in place, though, so after this error treat the model as diverged (reload
    a checkpoint, lower the rate) rather than as the model before the step.
    """

    def __init__(self, name, step):
        self.param = name
        self.step = step
        super().__init__(
            f"non-finite gradient in parameter {name!r} at optimizer step {step}; "
            "training stopped here (lower the learning rate or clip the gradients)"
        )


def lr_at(lr, step, name="lr"):
    """The learning rate at ``step``: a constant, or a schedule ``step -> rate``.

    A schedule that returns a non-finite or non-positive rate raises ValueError.
    """
    if callable(lr):
        value = lr(step)
        try:
            ok = math.isfinite(value) and value > 0
        except TypeError:
            ok = False
        if not ok:
            raise ValueError(
                f"{name} schedule gave {value!r} at step {step}; expected a finite rate > 0"
            )
        return float(value)
    return lr


def check_lr(lr, name="lr"):
    """Validate a constant rate (> 0); schedules are checked each time they are called."""
    if callable(lr):
        return lr
    return check_positive(name, lr)


def chain(*transforms, name=None):
    """Apply ``transforms`` in order, each seeing the previous one's updates.

    Example: ``chain(clip_by_norm(1.0), momentum(0.1, 0.9))`` clips, then steps.  The chain
    has a fused kernel when every member has one and only the last moves the parameters
    (gradient transforms first, one rule last).  At most one member may need a lookahead.
    """
    for t in transforms:
        if not isinstance(t, Transform):
            raise TypeError(f"chain expects Transforms, got {type(t).__name__}")
    looks = [i for i, t in enumerate(transforms) if t.lookahead is not None]
    if len(looks) > 1:
        raise ValueError("chain: at most one member may evaluate gradients at a lookahead point")

    def init(params):
        return tuple(t.init(params) for t in transforms)

    def update(grads, state, params=None):
        new_state = []
        for t, s in zip(transforms, state, strict=True):
            grads, s = t.update(grads, s, params)
            new_state.append(s)
        return grads, tuple(new_state)

    lookahead = None
    if looks:
        i = looks[0]

        def lookahead(params, state):
            return transforms[i].lookahead(params, state[i])

    fusable = (
        len(transforms) > 0
        and all(t.fused is not None for t in transforms)
        and all(t.kind == "grad" for t in transforms[:-1])
    )
    fused = None
    if fusable:

        def fused(be, params, grads, state, point=None):
            new_state, bad = [], []
            for t, s in zip(transforms, state, strict=True):
                s, b = t.fused(be, params, grads, s, point)
                new_state.append(s)
                bad.extend(n for n in b if n not in bad)
                if bad:  # a gradient transform already found NaN/inf: go no further
                    new_state.extend(state[len(new_state):])
                    break
            return tuple(new_state), bad

    kind = transforms[-1].kind if transforms else "grad"
    return Transform(
        init, update, fused, name or " -> ".join(t.name for t in transforms), lookahead, kind
    )


class Optimizer:
    """Runs a rule over a model's parameters: ``zero_grad()``, ``step()``, ``state_dict()``.

    ``model`` is anything with ``named_parameters()`` (a Layer or Sequential).  With
    ``fused='auto'`` the rule's single-pass kernel runs when it has one; ``fused=False``
    runs the explicit equations (NumPy arrays only).

    For a rule with a ``lookahead`` (Nesterov), the model's parameters hold the lookahead
    point W + beta V between steps, so any training loop differentiates at the point the
    chapter asks for; the iterate W itself lives in ``self.iterate`` (see ``iterate_params``
    and ``swap_iterate``).  At convergence V -> 0 and the two coincide.

    Example::

        opt = Optimizer(net, adam(1e-3))
        for xb, yb in batches:
            train_step(net, loss, opt, xb, yb)   # forward, backward, opt.step()
        snapshot = opt.state_dict()
    """

    def __init__(self, model, rule: Transform, fused="auto"):
        if not isinstance(rule, Transform):
            raise TypeError(f"rule must be a ddlib.optim Transform, got {type(rule).__name__}")
        if fused not in ("auto", True, False):
            raise ValueError(f"fused must be 'auto', True or False, got {fused!r}")
        if fused is True and rule.fused is None:
            raise ValueError(f"rule {rule.name!r} has no fused kernel; use fused='auto' or False")
        self.model = model
        self.rule = rule
        self.use_fused = rule.fused is not None and fused is not False
        self._named = model.named_parameters()
        self.iterate = None
        if rule.lookahead is not None:
            self.iterate = {n: _copy(p) for n, p in self.params().items()}
        self.state = rule.init(self._w())
        self.steps = 0

    def params(self):
        """The model's parameter arrays by qualified name (what gradients are taken at)."""
        return {n: layer.params[k] for n, layer, k in self._named}

    def grads(self):
        return {n: layer.grads[k] for n, layer, k in self._named}

    def _w(self):
        return self.iterate if self.iterate is not None else self.params()

    def iterate_params(self):
        """The iterate W (for lookahead rules this differs from the model's W + beta V)."""
        return self._w()

    def zero_grad(self):
        be = get_backend()
        for _, layer, k in self._named:
            be.fill(layer.grads[k], 0.0)

    def step(self):
        """One update from the gradients held in the model; raises NonFiniteGradient."""
        params, grads = self.params(), self.grads()
        w = params if self.iterate is None else self.iterate
        if self.use_fused:
            point = params if self.iterate is not None else None
            self.state, bad = self.rule.fused(get_backend(), w, grads, self.state, point)
            if bad:
                raise NonFiniteGradient(bad[0], self.steps)
        else:
            for n, g in grads.items():
                if on_device(g):
                    raise TypeError(
                        f"rule {self.rule.name!r} without a fused kernel runs on host arrays "
                        "only; use the numpy or cpu backend"
                    )
                if not np.isfinite(g).all():
                    raise NonFiniteGradient(n, self.steps)
            updates, self.state = self.rule.update(grads, self.state, w)
            for n, u in updates.items():
                w[n] += u
            if self.iterate is not None:
                for n, p in self.rule.lookahead(w, self.state).items():
                    params[n][...] = p
        self.steps += 1

    def swap_iterate(self):
        """Context manager: put the iterate W into the model (e.g. to evaluate), then restore."""
        import contextlib

        @contextlib.contextmanager
        def cm():
            if self.iterate is None:
                yield
                return
            params = self.params()
            saved = {n: _copy(p) for n, p in params.items()}
            for n, p in params.items():
                _assign(p, self.iterate[n])
            try:
                yield
            finally:
                for n, p in params.items():
                    _assign(p, saved[n])

        return cm()

    def state_dict(self):
        """A deep host copy of the step count, the rule's state and (lookahead rules) W."""
        sd = {"steps": self.steps, "state": _to_host(self.state)}
        if self.iterate is not None:
            sd["iterate"] = _to_host(self.iterate)
        return sd

    def load_state_dict(self, sd):
        """Restore a ``state_dict``; training then continues exactly as it would have."""
        self.steps = int(sd["steps"])
        self.state = _copy_into(self.state, sd["state"])
        if self.iterate is not None:
            if "iterate" not in sd:
                raise ValueError("state_dict has no 'iterate'; it was saved for another rule")
            for n in self.iterate:
                _assign(self.iterate[n], np.asarray(sd["iterate"][n]))


def _copy(p):
    if on_device(p):
        return get_backend("cuda").asarray(p.copy_to_host())
    return np.array(p, copy=True)


def _assign(dst, src):
    """dst[...] = src for host or device arrays (src may live on either)."""
    if on_device(dst):
        host = src.copy_to_host() if on_device(src) else np.asarray(src, dst.dtype)
        dst.copy_to_device(np.ascontiguousarray(host))
    else:
        dst[...] = src.copy_to_host() if on_device(src) else src


def _to_host(tree):
    if isinstance(tree, dict):
        return {k: _to_host(v) for k, v in tree.items()}
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        return type(tree)(*(_to_host(v) for v in tree))
    if isinstance(tree, (tuple, list)):
        return type(tree)(_to_host(v) for v in tree)
    if isinstance(tree, np.ndarray):
        return tree.copy()
    if hasattr(tree, "copy_to_host"):
        return tree.copy_to_host()
    return tree


def _copy_into(like, src):
    """Rebuild a state tree shaped like ``like`` from ``src``, keeping array placement."""
    if isinstance(like, dict):
        return {k: _copy_into(like[k], src[k]) for k in like}
    if isinstance(like, tuple) and hasattr(like, "_fields"):
        return type(like)(*(_copy_into(a, b) for a, b in zip(like, src, strict=True)))
    if isinstance(like, (tuple, list)):
        return type(like)(_copy_into(a, b) for a, b in zip(like, src, strict=True))
    if isinstance(like, np.ndarray):
        return np.array(src, dtype=like.dtype, copy=True)
    if hasattr(like, "copy_to_host"):
        return get_backend("cuda").asarray(np.asarray(src, dtype=like.dtype))
    return src


def zeros_like_tree(params, fill=0.0):
    """Arrays shaped like each parameter (zeros, or ``fill``), on the parameter's backend."""
    out = {}
    for n, p in params.items():
        if on_device(p):
            be = get_backend("cuda")
            out[n] = be.zeros(p.shape, p.dtype)
            if fill:
                be.fill(out[n], fill)
        else:
            out[n] = np.full_like(p, fill)
    return out
