"""The optimizer seam: update rules as (init, update) pairs with explicit state (optax style).

A rule is a ``Transform``: ``init(params) -> state`` and
``update(grads, state, params) -> (updates, state)``, where ``updates`` are added to the
parameters (W <- W + update).  State is a small NamedTuple a reader can print and plot.
Rules ``chain`` left to right, e.g. clipping then momentum.  A rule may also carry a
``fused`` apply function that does the same arithmetic in one pass through a backend
kernel; ``Optimizer`` prefers it, and the tests hold it equal to the explicit ``update``.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import numpy as np

from ..backend import backend_of, get_backend
from ..errors import check_positive


class Transform(NamedTuple):
    init: Callable[[dict], Any]
    update: Callable[[dict, Any, dict], tuple]
    fused: Callable | None = None  # (be, params, grads, state) -> (state, bad_names)
    name: str = "transform"


class NonFiniteGradient(FloatingPointError):
    """A gradient held NaN or inf; names the parameter and the optimizer step."""

    def __init__(self, name, step):
        self.param = name
        self.step = step
        super().__init__(
            f"non-finite gradient in parameter {name!r} at optimizer step {step}; "
            "the step was stopped (lower the learning rate or clip the gradients)"
        )


def lr_at(lr, step):
    """The learning rate at ``step``: a constant, or a schedule ``step -> rate``."""
    if callable(lr):
        value = lr(step)
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"lr schedule gave {value!r} at step {step}; expected a finite rate > 0")
        return float(value)
    return lr


def check_lr(lr, name="lr"):
    """Validate a constant rate (> 0); schedules are checked each time they are called."""
    if callable(lr):
        return lr
    return check_positive(name, lr)


def chain(*transforms, name=None):
    """Apply ``transforms`` in order, each seeing the previous one's updates."""

    def init(params):
        return tuple(t.init(params) for t in transforms)

    def update(grads, state, params=None):
        new_state = []
        for t, s in zip(transforms, state):
            grads, s = t.update(grads, s, params)
            new_state.append(s)
        return grads, tuple(new_state)

    return Transform(init, update, None, name or " -> ".join(t.name for t in transforms))


class Optimizer:
    """Runs a rule over a model's parameters: ``zero_grad()``, ``step()``, ``state_dict()``.

    ``model`` is anything with ``named_parameters()`` (a Layer or Sequential).  With
    ``fused='auto'`` the rule's single-pass kernel runs when it has one.
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
        self.state = rule.init(self.params())
        self.steps = 0

    def params(self):
        return {n: layer.params[k] for n, layer, k in self._named}

    def grads(self):
        return {n: layer.grads[k] for n, layer, k in self._named}

    def zero_grad(self):
        be = get_backend()
        for _, layer, k in self._named:
            be.fill(layer.grads[k], 0.0)

    def step(self):
        params, grads = self.params(), self.grads()
        if self.use_fused:
            self.state, bad = self.rule.fused(get_backend(), params, grads, self.state)
            if bad:
                raise NonFiniteGradient(bad[0], self.steps)
        else:
            for n, g in grads.items():
                if backend_of(g) != "cuda" and not np.isfinite(g).all():
                    raise NonFiniteGradient(n, self.steps)
            updates, self.state = self.rule.update(grads, self.state, params)
            for n, u in updates.items():
                params[n] += u
        self.steps += 1

    def state_dict(self):
        """A deep host copy of the step count and the rule's state."""
        return {"steps": self.steps, "state": _to_host(self.state)}

    def load_state_dict(self, sd):
        self.steps = int(sd["steps"])
        self.state = _copy_into(self.state, sd["state"])


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
        return type(like)(*(_copy_into(a, b) for a, b in zip(like, src)))
    if isinstance(like, (tuple, list)):
        return type(like)(_copy_into(a, b) for a, b in zip(like, src))
    if isinstance(like, np.ndarray):
        return np.array(src, dtype=like.dtype, copy=True)
    if hasattr(like, "copy_to_host"):
        return get_backend("cuda").asarray(np.asarray(src, dtype=like.dtype))
    return src


def zeros_like_tree(params):
    """Zero arrays shaped like each parameter, on the parameter's backend."""
    out = {}
    for n, p in params.items():
        if backend_of(p) == "cuda":
            out[n] = get_backend("cuda").zeros(p.shape, p.dtype)
        else:
            out[n] = np.zeros_like(p)
    return out
