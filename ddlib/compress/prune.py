"""Magnitude pruning with masks that survive retraining (Sec. 3.7.3; Han et al. 2015).

Names follow ``torch.nn.utils.prune``: ``l1_unstructured`` prunes the entries of one
parameter with the smallest magnitude, ``global_unstructured`` ranks several parameters
together, ``remove`` makes a pruning permanent (the mask goes, the zeros stay).  ``amount``
is a fraction in [0, 1] of the entries still alive, or an integer count of them, as in
PyTorch (pruning twice prunes among the survivors).  ``threshold`` is Han et al.'s rule:
drop |w| < quality x std(w).

A mask lives on its layer (``layer.masks[name]``, a boolean array, True = kept).  The
optimizer knows nothing of it; ``attach(opt)`` wraps ``opt.step`` so that before each step
the masked gradients are zeroed and after it the masked weights are set back to exactly
0 (the model's parameters and, for Nesterov-type rules, the optimizer's iterate).  Any
rule's state (momentum, Adam's moments, delta-bar-delta's rates) may still hold values at
pruned positions from before the pruning; they can move a weight during the step, never
past it, so a pruned weight reads 0 whenever a step has finished.

>>> import numpy as np
>>> from ddlib.layers import Linear
>>> layer = Linear(4, 5, rng=0)
>>> mask = l1_unstructured(layer, "W", amount=0.75)
>>> int(mask.sum()), int((layer.params["W"] != 0).sum())
(5, 5)
"""

from __future__ import annotations

import numpy as np

from ..backend.arrays import is_device


def _check_host(layer, name):
    if name not in layer.params:
        raise ValueError(f"{layer.name} has no parameter {name!r}; it has {sorted(layer.params)}")
    if is_device(layer.params[name]):
        raise TypeError(f"{layer.name}.{name} lives on the GPU; prune on the host "
                        "(numpy or cpu backend) and move the model afterwards")


def get_mask(layer, name="W"):
    """The layer's mask for ``name`` (True = kept), or None when it is not pruned."""
    return getattr(layer, "masks", {}).get(name)


def _n_to_prune(amount, alive):
    if isinstance(amount, bool) or not isinstance(amount, (int, float, np.integer, np.floating)):
        raise TypeError(f"amount must be a fraction in [0, 1] or an integer count, got {amount!r}")
    if isinstance(amount, (int, np.integer)):
        if not 0 <= amount <= alive:
            raise ValueError(f"amount={amount} (a count) must lie in [0, {alive}], the "
                             "entries still unpruned")
        return int(amount)
    if not 0.0 <= amount <= 1.0:
        raise ValueError(f"amount={amount!r} (a fraction) must lie in [0, 1]")
    return int(round(amount * alive))


def _set_mask(layer, name, mask):
    if not hasattr(layer, "masks"):
        layer.masks = {}
    layer.masks[name] = mask
    w = layer.params[name]
    w[~mask] = 0.0
    return mask


def l1_unstructured(layer, name="W", amount=0.5):
    """Prune ``amount`` of the still-unpruned entries of ``layer.params[name]`` with the
    smallest |w| (ties broken by position); returns the new mask (True = kept)."""
    _check_host(layer, name)
    w = layer.params[name]
    old = get_mask(layer, name)
    alive = np.ones(w.shape, bool) if old is None else old.copy()
    k = _n_to_prune(amount, int(alive.sum()))
    flat = np.flatnonzero(alive)
    order = np.argsort(np.abs(w.ravel()[flat]), kind="stable")
    mask = alive.ravel()
    mask[flat[order[:k]]] = False
    return _set_mask(layer, name, mask.reshape(w.shape))


def global_unstructured(parameters, amount=0.5):
    """Prune ``amount`` of the unpruned entries of several parameters ranked together.

    parameters: (layer, name) pairs, as in PyTorch.  Returns the masks, in order.
    """
    parameters = list(parameters)
    if not parameters:
        raise ValueError("parameters must list at least one (layer, name) pair")
    for layer, name in parameters:
        _check_host(layer, name)
    alive = []
    for layer, name in parameters:
        old = get_mask(layer, name)
        alive.append(np.ones(layer.params[name].shape, bool) if old is None else old.copy())
    mags = np.concatenate([np.abs(layer.params[name]).ravel()[a.ravel()]
                           for (layer, name), a in zip(parameters, alive)])
    k = _n_to_prune(amount, mags.size)
    owner = np.concatenate([np.full(int(a.sum()), i) for i, a in enumerate(alive)])
    where = np.concatenate([np.flatnonzero(a) for a in alive])
    drop = np.argsort(mags, kind="stable")[:k]
    out = []
    for i, ((layer, name), a) in enumerate(zip(parameters, alive)):
        m = a.ravel()
        m[where[drop[owner[drop] == i]]] = False
        out.append(_set_mask(layer, name, m.reshape(a.shape)))
    return out


def threshold(layer, name="W", quality=1.0):
    """Han et al.'s rule: prune the unpruned entries with |w| < quality * std(w), the
    standard deviation taken over the unpruned entries; returns the mask."""
    _check_host(layer, name)
    if not (isinstance(quality, (int, float, np.floating)) and quality >= 0):
        raise ValueError(f"quality must be a number >= 0, got {quality!r}")
    w = layer.params[name]
    old = get_mask(layer, name)
    alive = np.ones(w.shape, bool) if old is None else old
    cut = quality * float(np.std(w[alive]))
    return _set_mask(layer, name, alive & (np.abs(w) >= cut))


def remove(layer, name="W"):
    """Make the pruning of ``name`` permanent: the mask is dropped, the zeros stay."""
    if get_mask(layer, name) is None:
        raise ValueError(f"{layer.name}.{name} is not pruned (no mask to remove)")
    del layer.masks[name]


def weight_layers(model):
    """The (layer, 'W') pairs of every leaf layer that has a 2-D weight ``W``."""
    return [(m, "W") for m in model.modules()
            if not m.children() and "W" in m.params and m.params["W"].ndim == 2]


def prune_model(model, amount, scope="layer"):
    """``l1_unstructured`` on every weight matrix (``scope='layer'``: the same ``amount``
    in each) or ``global_unstructured`` over all of them (``scope='global'``)."""
    pairs = weight_layers(model)
    if scope == "layer":
        return [l1_unstructured(layer, name, amount) for layer, name in pairs]
    if scope == "global":
        return global_unstructured(pairs, amount)
    raise ValueError(f"scope must be 'layer' or 'global', got {scope!r}")


def apply_masks(model):
    """Set every masked weight of ``model`` to exactly 0."""
    for m in model.modules():
        for name, mask in getattr(m, "masks", {}).items():
            m.params[name][~mask] = 0.0


def sparsity(model):
    """Fraction of weight-matrix entries that are exactly 0."""
    pairs = weight_layers(model)
    total = sum(layer.params[n].size for layer, n in pairs)
    zero = sum(int((layer.params[n] == 0).sum()) for layer, n in pairs)
    return zero / total


def attach(opt):
    """Make ``opt`` respect the masks of the layers it updates; returns ``opt``.

    Wraps ``opt.step``: masked gradients are zeroed before the rule runs, masked weights
    (and the iterate of a lookahead rule) are re-zeroed after it.  Masks are read at each
    step, so pruning later (iterative schedules) needs no second ``attach``.
    """
    if getattr(opt, "_prune_attached", False):
        return opt
    inner = opt.step
    named = opt._named

    def step(closure=None, check=True):
        masked = [(n, layer, k, layer.masks[k]) for n, layer, k in named
                  if k in getattr(layer, "masks", {})]
        for _, layer, k, mask in masked:
            if is_device(layer.grads[k]):
                raise TypeError(f"{layer.name}.{k}: pruning masks are kept on the host; "
                                "train a pruned model on the numpy or cpu backend")
            layer.grads[k][~mask] = 0.0
        if closure is not None:
            user = closure

            def closure():  # the rule may call it again: mask every gradient it makes
                value = user()
                for _, layer, k, mask in masked:
                    layer.grads[k][~mask] = 0.0
                return value

            closure.value = getattr(user, "value", None)
            closure.curvature = getattr(user, "curvature", None)
        try:
            return inner(closure, check)
        finally:
            for n, layer, k, mask in masked:
                layer.params[k][~mask] = 0.0
                if opt.iterate is not None:
                    opt.iterate[n][~mask] = 0.0

    opt.step = step
    opt._prune_attached = True
    return opt
