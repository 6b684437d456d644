"""The optimizer seam: update rules as (init, update) pairs with explicit state (optax style).

A rule is a ``Transform``: ``init(params) -> state`` and
``update(grads, state, params) -> (updates, state)``, where ``updates`` are added to the
parameters (W <- W + update).  State is a small NamedTuple a reader can print and plot.
Rules ``chain`` left to right, e.g. clipping then momentum.

Two optional pieces sit beside ``update``:

* ``fused(be, params, grads, state, bad, point=None) -> state`` does the same arithmetic
  in one pass through a backend kernel, in place.  ``Optimizer`` prefers it, and the tests
  hold it equal to the explicit ``update``.  A gradient-only transform (``kind='grad'``,
  e.g. clipping or weight decay) rewrites ``grads`` in place instead of ``params``.
  ``bad`` maps each parameter name to a one-entry integer counter on the arrays' side
  (see ``make_counters``); every kernel adds the number of NaN/inf gradient entries it
  met to its parameter's counter and leaves those entries alone.  Nothing is returned or
  read back, so on the GPU a step never waits; ``Optimizer.check_finite`` reads them.
* ``lookahead(params, state) -> dict`` names the point where the *next* gradient must be
  evaluated.  Nesterov-type rules need the gradient at W + beta V rather than at W
  (Sec. 3.5.2.1); whoever computes gradients (``Optimizer``, ``trajectory``) asks the rule
  for that point first.  Rules without it evaluate at W itself.

Rules that need more than the gradient (the second-order methods of Sec. 3.5.6 measure
the loss, search along a line and ask for curvature products) declare it in
``extra_args``, the keyword arguments their ``update`` takes beyond (grads, state,
params), as optax's ``GradientTransformationExtraArgs`` does:

* ``value``: the loss at ``params``;
* ``value_and_grad``: a function ``point -> (loss, grads)`` that evaluates the model's
  loss and gradient at another point (a dict like ``params``);
* ``value_at``: ``point -> loss`` alone (a forward pass, when the closure offers a
  ``value()`` method; otherwise the closure is called and its gradient ignored);
* ``curvature``: a function ``(exact) -> Curvature`` giving curvature products at
  ``params`` (``ddlib.optim.second_order.Curvature``).

``Optimizer.step(closure)`` supplies them from a closure that re-evaluates the loss (as
``torch.optim.LBFGS`` asks for); ``ddlib.optim.second_order.closure`` builds one that
also knows the batch, which ``curvature`` needs.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import numpy as np

from ..backend import get_backend
from ..backend.arrays import (
    assign,
    copy,
    fill,
    full_like,
    is_device,
    to_host,
    tree_copy_into,
    tree_leaves,
    tree_to_host,
    zeros,
)
from ..errors import check_positive

#: dtype of the non-finite counters (wide enough that an epoch of deferred checks on a
#: large model cannot wrap around)
COUNTER_DTYPE = np.int64


class Transform(NamedTuple):
    """One update rule: ``init``/``update`` plus optional ``fused`` kernel and ``lookahead``."""

    init: Callable[[dict], Any]
    update: Callable[[dict, Any, dict], tuple]
    fused: Callable | None = None  # (be, params, grads, state, bad, point=None) -> state
    name: str = "transform"
    lookahead: Callable | None = None  # (params, state) -> dict: where to take the gradient
    kind: str = "rule"  # 'rule' moves the parameters; 'grad' only reshapes the gradient
    #: keyword arguments ``update`` takes beyond (grads, state, params): see the module
    extra_args: tuple = ()


#: the extra arguments an Optimizer can supply to a rule (``Transform.extra_args``)
EXTRA_ARGS = ("value", "value_and_grad", "value_at", "curvature")


class NonFiniteGradient(FloatingPointError):
    """A gradient held NaN or inf; names the parameter and the optimizer step.

    With ``Optimizer.step()`` (``check=True``, the default) the step that raises loses
    nothing: the parameters, the iterate and the rule's state are restored to what they
    were before the step (see ``Optimizer.step``), so the model is the one the last good
    step left and training may go on after lowering the rate or reloading.  With
    ``step(check=False)`` no parameter entry ever becomes NaN through a NaN gradient (each
    kernel leaves the entries whose gradient is NaN or inf as they were), but the finite
    entries of the steps the deferred check covers have been updated in place.

    ``step`` is the last step the check covered; when checks were deferred
    (``Optimizer.step(check=False)``), ``first`` is the first step it covered, and the NaN
    arrived somewhere in between.
    """

    def __init__(self, name, step, first=None):
        self.param = name
        self.step = step
        self.first = step if first is None else first
        when = (f"at optimizer step {step}" if self.first >= step
                else f"between optimizer steps {self.first} and {step}")
        super().__init__(
            f"non-finite gradient in parameter {name!r} {when}; "
            "training stopped here (lower the learning rate or clip the gradients)"
        )


class NonFiniteParameter(NonFiniteGradient):
    """An update with finite gradients made a parameter NaN or inf (an overflow: a rate or
    a gradient far too large); names the parameter and the optimizer step.

    A subclass of ``NonFiniteGradient`` so that code catching that keeps working.  Raised
    by ``Optimizer.step()`` (``check=True``) after the parameters and the optimizer state
    have been restored to their values before the step.
    """

    def __init__(self, name, step):
        self.param = name
        self.step = step
        self.first = step
        FloatingPointError.__init__(
            self,
            f"parameter {name!r} became non-finite (NaN or inf) at optimizer step {step} "
            "although its gradient was finite (the update overflowed); the step was undone "
            "(lower the learning rate or clip the gradients)")


def all_finite(x) -> bool:
    """True when every entry of the array ``x`` is finite.

    A C-contiguous float array on the host is counted by the cpu backend's vectorized
    ``count_nonfinite`` (about 4x faster than NumPy's sum on the 784-512-512-10 MLP's
    weights, and no temporary).  Otherwise one summation is tried first (a NaN or inf
    entry always makes the sum non-finite; a finite sum proves every entry finite), and
    the exact entrywise test runs only when the sum is not finite (an overflowing sum of
    large finite values).  A device array is copied back to the host.
    """
    if is_device(x):
        x = to_host(x)
    if x.size == 0:
        return True
    if x.dtype in (np.float32, np.float64) and x.flags.c_contiguous and x.size < 2**31:
        from ..backend.cpu.elementwise import count_nonfinite

        return count_nonfinite(x.reshape(-1)) == 0
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.add.reduce(x, axis=None)
    if np.isfinite(total):
        return True
    return bool(np.isfinite(x).all())


def make_counters(params):
    """One non-finite counter per parameter, on the parameters' side (host or GPU).

    Returns ``(counts, views)``: ``counts`` an int64 array of shape (len(params),), and
    ``views`` a dict from each name to its one-entry slice ``counts[i:i + 1]``, which is
    what the kernels receive as ``bad``.  ``Optimizer`` makes and owns one pair.
    """
    names = list(params)
    like = next(iter(params.values()), None)
    counts = zeros((len(names),), COUNTER_DTYPE, like=like)
    return counts, {n: counts[i:i + 1] for i, n in enumerate(names)}


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

    The fused chain runs every member even when an earlier one counted NaN/inf entries
    (finding out would mean reading the counters back, a copy per step on the GPU); each
    kernel leaves those entries untouched, so they never reach the weights.
    """
    if not transforms:
        raise ValueError("chain needs at least one transform: an empty chain would add the "
                         "raw gradient to the weights (gradient ascent)")
    for t in transforms:
        if not isinstance(t, Transform):
            raise TypeError(f"chain expects Transforms, got {type(t).__name__}")
    if any(t.extra_args for t in transforms) and len(transforms) > 1:
        named = [t.name for t in transforms if t.extra_args]
        raise ValueError(f"chain: {', '.join(named)} evaluate the loss themselves (line "
                         "searches, curvature) and cannot be chained with other transforms")
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
        # Every member runs, whatever the counters say: reading them would cost a copy
        # back from the GPU at each step.  A NaN/inf gradient entry is therefore left
        # untouched and counted by each member in turn (the clipping kernels leave it out
        # of the norm), and the rule's kernel leaves the parameter entry as it was, so the
        # finite entries take a bounded step and the counters report the rest.
        def fused(be, params, grads, state, bad, point=None):
            return tuple(t.fused(be, params, grads, s, bad, point)
                         for t, s in zip(transforms, state, strict=True))

    kind = transforms[-1].kind if transforms else "grad"
    if len(transforms) == 1 and transforms[0].extra_args:
        return transforms[0]
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

    Non-finite gradients: the optimizer owns one counter per parameter (``self.nonfinite``,
    an int64 array on the parameters' side, in the order of ``self.names``).  The kernels
    add to them; ``step()`` then checks them (free on the host, one small copy on the
    GPU) and raises ``NonFiniteGradient``.  ``step(check=False)`` skips the check, so a
    GPU loop never waits, and ``check_finite()`` looks later, naming the first parameter
    whose counter rose and the steps it covers.

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
        unknown = [a for a in rule.extra_args if a not in EXTRA_ARGS]
        if unknown:
            raise ValueError(f"rule {rule.name!r} asks for extra argument(s) {unknown}; an "
                             f"Optimizer can supply {list(EXTRA_ARGS)}")
        self.model = model
        self.rule = rule
        self.use_fused = rule.fused is not None and fused is not False
        self._named = model.named_parameters()
        params = self.params()
        self.names = list(params)
        self.iterate = None
        if rule.lookahead is not None:
            self.iterate = {n: copy(p) for n, p in params.items()}
        self.state = rule.init(self._w())
        self.steps = 0
        self.nonfinite, self._bad = make_counters(params)
        self._checked = 0  # the first step the next check covers

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

    def step(self, closure=None, check=True):
        """One update from the gradients held in the model; returns the closure's loss.

        closure: optional, as in PyTorch: a function that zeroes the gradients, runs the
               forward and backward pass and returns the loss.  Called once before the
               update; rules with ``extra_args`` (line searches, second-order methods)
               need it and call it again at the points they try.
        check: look at the non-finite counters afterwards and raise ``NonFiniteGradient``
               (the default); ``False`` leaves that to a later ``check_finite()``.

        With ``check=True`` a step loses nothing.  Before the update the parameters, the
        iterate (lookahead rules) and every array of the rule's state are copied into
        buffers the optimizer keeps (no allocation after the first step); after it, the
        non-finite counters and every parameter's finiteness are checked (one summation
        per parameter, see ``all_finite``).  If a gradient held NaN/inf
        (``NonFiniteGradient``) or the update made a parameter non-finite although the
        gradients were finite (``NonFiniteParameter``: an overflow, e.g. lr = 1e308),
        everything is copied back and ``steps`` is not advanced before the error is raised:
        the model and the optimizer are those of the last good step.  The cost is one copy
        of the parameters and state and one read of the parameters per step (measured in
        the issue-13 report with ``python -m benchmarks optim mlp``).  On the GPU the
        snapshot is a copy on the device, the counters come back in one small copy, and
        the parameters are not read back: there an overflow of finite values shows up in
        the next loss (``fit`` stops on it) rather than as ``NonFiniteParameter``.

        With ``check=False`` (the deferred GPU path) none of that runs: a NaN/inf gradient
        entry still never reaches its weight (each kernel skips it and counts it, and
        ``check_finite()`` reports it later), but the finite entries of the covered steps
        have been applied, and an overflow of finite values is not detected until the
        loss shows it.  Reload a checkpoint in that case.
        """
        loss = None
        if closure is not None:
            if not callable(closure):
                raise TypeError(f"closure must be callable, got {type(closure).__name__}")
            loss = float(closure())
        if self.rule.extra_args:
            if closure is None:
                raise TypeError(
                    f"rule {self.rule.name!r} re-evaluates the loss: call step(closure) with "
                    "a function that zeroes the gradients, runs forward and backward and "
                    "returns the loss (ddlib.optim.second_order.closure(model, loss, X, y) "
                    "builds one)")
            self._extra_step(closure, loss)
            self.steps += 1
            self._checked = self.steps
            return loss
        self._gradient_step(check)
        return loss

    def _extra_step(self, closure, loss):
        """A step of a rule that evaluates the loss itself: it sees host copies of the
        point and the gradient, and evaluates elsewhere through ``value_and_grad``."""
        params = self.params()
        for p in params.values():
            if is_device(p):
                raise TypeError(f"rule {self.rule.name!r} runs on host arrays; use the "
                                "numpy or cpu backend")
        x0 = {n: np.array(p, copy=True) for n, p in params.items()}
        g0 = {n: np.array(g, copy=True) for n, g in self.grads().items()}

        def value_and_grad(point):
            for n, p in params.items():
                assign(p, point[n])
            value = float(closure())
            return value, {n: np.array(g, copy=True) for n, g in self.grads().items()}

        forward_only = getattr(closure, "value", None)

        def value_at(point):
            for n, p in params.items():
                assign(p, point[n])
            return float(forward_only() if callable(forward_only) else closure())

        def curvature(exact=False):
            for n, p in params.items():
                assign(p, x0[n])
            make = getattr(closure, "curvature", None)
            if make is None:
                raise TypeError(
                    f"rule {self.rule.name!r} needs curvature products: pass a closure made "
                    "by ddlib.optim.second_order.closure(model, loss, X, y), which knows "
                    "the batch")
            return make(exact=exact)

        extras = {"value": loss, "value_and_grad": value_and_grad, "value_at": value_at,
                  "curvature": curvature}
        try:
            updates, state = self.rule.update(
                g0, self.state, x0, **{k: extras[k] for k in self.rule.extra_args})
        except BaseException:
            for n, p in params.items():   # nothing is lost: back to the point of the step
                assign(p, x0[n])
            raise
        for n, p in params.items():
            assign(p, x0[n] + updates[n])
        self.state = state

    def _gradient_step(self, check):
        params, grads = self.params(), self.grads()
        w = params if self.iterate is None else self.iterate
        if params and is_device(self.nonfinite) != is_device(next(iter(params.values()))):
            # the model moved (host <-> GPU) after this optimizer was built: the counters
            # follow it, keeping what they had counted
            old = self.nonfinite
            self.nonfinite, self._bad = make_counters(params)
            assign(self.nonfinite, old)
        if not check:
            self._apply(params, grads, w)
            self.steps += 1
            return
        saved_state, start = self.state, self.steps
        saved = self._snapshot(params, saved_state)
        try:
            self._apply(params, grads, w)
            self.steps += 1
            self.check_finite()
            for n, p in params.items():
                if is_device(p):   # no copy of the weights to the host (see the docstring)
                    continue
                if not all_finite(p) or (w is not params and not all_finite(w[n])):
                    raise NonFiniteParameter(n, self.steps - 1)
        except BaseException:
            for src, buf in saved:   # the last good step: parameters and state as they were
                assign(src, buf)
            self.state = saved_state
            self.steps = self._checked = start
            raise

    def _apply(self, params, grads, w):
        if self.use_fused:
            point = params if self.iterate is not None else None
            self.state = self.rule.fused(get_backend(), w, grads, self.state, self._bad, point)
        else:
            self._explicit_step(params, grads, w)

    def _snapshot(self, params, state):
        """Copy the parameters, the iterate and the state's arrays into kept buffers;
        returns the (array, buffer) pairs (buffers are made again when the arrays change)."""
        arrays = list(params.values())
        if self.iterate is not None:
            arrays += list(self.iterate.values())
        arrays += tree_leaves(state)
        # the same array objects as last time (the buffers hold them alive, so an id is
        # never reused while cached): keep the buffers; anything new makes them again
        cached = getattr(self, "_snap_arrays", None)
        if (cached is None or len(cached) != len(arrays)
                or any(a is not c or a.shape != c_shape for a, c, c_shape in
                       zip(arrays, cached, self._snap_shapes))):
            self._snap_arrays = arrays
            self._snap_shapes = [a.shape for a in arrays]
            self._snap_bufs = [full_like(a, 0.0) for a in arrays]
        pairs = list(zip(arrays, self._snap_bufs))
        for a, buf in pairs:
            if is_device(a):
                assign(buf, a)
            else:
                np.copyto(buf, a)
        return pairs

    def _explicit_step(self, params, grads, w):
        """The rule's equations on host arrays; a NaN/inf gradient leaves everything as it
        was (nothing is touched) and is counted against its parameter."""
        found = False
        for i, g in enumerate(grads.values()):
            if is_device(g):
                raise TypeError(
                    f"rule {self.rule.name!r} without a fused kernel runs on host arrays "
                    "only; use the numpy or cpu backend"
                )
            ok = np.isfinite(g)
            if not ok.all():
                self.nonfinite[i] += ok.size - np.count_nonzero(ok)
                found = True
        if found:
            return
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow is reported by step
            updates, self.state = self.rule.update(grads, self.state, w)
            for n, u in updates.items():
                w[n] += u
        if self.iterate is not None:
            for n, p in self.rule.lookahead(w, self.state).items():
                params[n][...] = p

    def check_finite(self, counts=None):
        """Raise ``NonFiniteGradient`` if a kernel met a NaN/inf gradient since the last check.

        Reads ``self.nonfinite`` (a copy back on the GPU) unless ``counts``, a host copy
        of it taken by the caller (``DeviceTrainer`` packs it with the loss), is given.
        The error names the first parameter counted and the steps the check covers; the
        counters are reset to zero.
        """
        c = to_host(self.nonfinite) if counts is None else np.asarray(counts)
        first, self._checked = self._checked, self.steps
        if not c.any():
            return
        i = int(np.flatnonzero(c)[0])
        fill(self.nonfinite, 0)
        raise NonFiniteGradient(self.names[i], self.steps - 1, first=first)

    def swap_iterate(self):
        """Context manager: put the iterate W into the model (e.g. to evaluate), then restore."""
        import contextlib

        @contextlib.contextmanager
        def cm():
            if self.iterate is None:
                yield
                return
            params = self.params()
            saved = {n: copy(p) for n, p in params.items()}
            for n, p in params.items():
                assign(p, self.iterate[n])
            try:
                yield
            finally:
                for n, p in params.items():
                    assign(p, saved[n])

        return cm()

    def state_dict(self):
        """A deep host copy of the step count, the rule's state and (lookahead rules) W.

        ``rule`` records the rule's name, so that ``load_state_dict`` can refuse state
        saved for another rule.
        """
        sd = {"rule": self.rule.name, "steps": self.steps, "state": tree_to_host(self.state)}
        if self.iterate is not None:
            sd["iterate"] = tree_to_host(self.iterate)
        return sd

    def load_state_dict(self, sd):
        """Restore a ``state_dict``; training then continues exactly as it would have.

        Everything is checked before anything changes: the keys, the rule's name (when
        ``sd`` records one), the state tree's structure and every array's shape and dtype
        (the rule's kernels index the state by the parameters' shapes).  A mismatch
        raises a ValueError (TypeError for a dtype) naming the path, and leaves the
        optimizer as it was.
        """
        if not isinstance(sd, dict):
            raise TypeError(f"state_dict must be a dict, got {type(sd).__name__}")
        need = {"steps", "state"} | ({"iterate"} if self.iterate is not None else set())
        allowed = need | {"rule"}
        missing, extra = sorted(need - set(sd)), sorted(set(sd) - allowed)
        if missing or extra:
            hint = ""
            if "iterate" in missing or "iterate" in extra:
                hint = " (it was saved for another rule)"
            raise ValueError(f"state_dict for rule {self.rule.name!r}: expected keys "
                             f"{sorted(need)}, missing {missing}, unexpected {extra}{hint}")
        if "rule" in sd and sd["rule"] != self.rule.name:
            raise ValueError(f"state_dict was saved for rule {sd['rule']!r}, but this "
                             f"optimizer runs {self.rule.name!r}")
        steps = sd["steps"]
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
            raise ValueError(f"state_dict['steps'] must be a non-negative integer, got {steps!r}")
        state = tree_copy_into(self.state, sd["state"], "state_dict['state']",
                               strict_dtype=True)
        iterate = None
        if self.iterate is not None:
            iterate = tree_copy_into(self.iterate, sd["iterate"], "state_dict['iterate']",
                                     strict_dtype=True)
        # every check passed: now change things
        self.steps = int(steps)
        self._checked = self.steps
        self.state = state
        if iterate is not None:
            for n in self.iterate:
                assign(self.iterate[n], iterate[n])


def zeros_like_tree(params, fill=0.0):
    """Arrays shaped like each parameter (zeros, or ``fill``), on the parameter's backend."""
    return {n: full_like(p, fill) for n, p in params.items()}
