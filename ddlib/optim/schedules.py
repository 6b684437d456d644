"""Learning-rate schedules (Sec. 3.5.1): callables ``step -> rate`` that any rule accepts as lr.

The chapter writes the decays per epoch t; ``steps_per_epoch`` converts the optimizer's step
count into epochs (t = step / steps_per_epoch, or its floor with ``staircase=True``).
PyTorch names: ``step_decay`` is StepLR, ``ReduceOnPlateau`` is ReduceLROnPlateau.
"""

from __future__ import annotations

import math

from ..errors import check_int, check_positive


def _check_factor(name, value):
    value = check_positive(name, value)
    if value >= 1:
        raise ValueError(f"{name} must lie in (0, 1) so the rate shrinks, got {value!r}")
    return value


class _Schedule:
    def __init__(self, lr0, k, steps_per_epoch, staircase):
        self.lr0 = check_positive("lr0", lr0)
        self.k = check_positive("k", k, allow_zero=True)
        self.steps_per_epoch = check_int("steps_per_epoch", steps_per_epoch)
        self.staircase = bool(staircase)

    def epoch(self, step):
        t = step / self.steps_per_epoch
        return math.floor(t) if self.staircase else t

    def __repr__(self):
        return (f"{type(self).__name__}(lr0={self.lr0:g}, k={self.k:g}, "
                f"steps_per_epoch={self.steps_per_epoch}, staircase={self.staircase})")


class exponential_decay(_Schedule):
    """alpha_t = lr0 exp(-k t) (Sec. 3.5.1, exponential decay), t in epochs.

    Example: ``adam(exponential_decay(1e-2, k=0.1, steps_per_epoch=50))``.
    """

    def __init__(self, lr0, k, steps_per_epoch=1, staircase=False):
        super().__init__(lr0, k, steps_per_epoch, staircase)

    def __call__(self, step):
        return self.lr0 * math.exp(-self.k * self.epoch(step))


class inverse_decay(_Schedule):
    """alpha_t = lr0 / (1 + k t) (Sec. 3.5.1, inverse decay), t in epochs.

    Example: ``sgd(inverse_decay(0.5, k=0.2, steps_per_epoch=50))``.
    """

    def __init__(self, lr0, k, steps_per_epoch=1, staircase=False):
        super().__init__(lr0, k, steps_per_epoch, staircase)

    def __call__(self, step):
        return self.lr0 / (1.0 + self.k * self.epoch(step))


class step_decay:
    """alpha = lr0 * gamma ** (epoch // step_size): multiply by gamma every few epochs (StepLR).

    The chapter's example, halve the rate every 5 epochs, is ``step_decay(lr0, 5, 0.5, n)``.
    """

    def __init__(self, lr0, step_size, gamma=0.5, steps_per_epoch=1):
        self.lr0 = check_positive("lr0", lr0)
        self.step_size = check_int("step_size", step_size)
        self.gamma = _check_factor("gamma", gamma)
        self.steps_per_epoch = check_int("steps_per_epoch", steps_per_epoch)

    def __call__(self, step):
        epoch = step // self.steps_per_epoch
        return self.lr0 * self.gamma ** (epoch // self.step_size)

    def __repr__(self):
        return (f"step_decay(lr0={self.lr0:g}, step_size={self.step_size}, gamma={self.gamma:g},"
                f" steps_per_epoch={self.steps_per_epoch})")


class ReduceOnPlateau:
    """Cut the rate by ``factor`` when the validation loss stops improving (ReduceLROnPlateau).

    Call ``sched.step(val_loss)`` once per epoch; the rules call ``sched(step)``, which
    returns the current rate whatever the step.  A loss improves when it is below
    best * (1 - threshold); after ``patience`` epochs without improvement the rate is
    multiplied by ``factor`` (never below ``min_lr``) and ``cooldown`` epochs pass before
    counting again.  ``state_dict``/``load_state_dict`` save and restore it.

    Example::

        sched = ReduceOnPlateau(0.1, factor=0.5, patience=2)
        opt = Optimizer(net, momentum(sched, 0.9))
        fit(net, loss, opt, X, y, epochs=20, X_val=Xv, y_val=yv,
            callback=lambda e, h: sched.step(h.val_loss[-1]))
    """

    def __init__(self, lr0, factor=0.5, patience=2, threshold=1e-4, min_lr=0.0, cooldown=0):
        self.lr0 = check_positive("lr0", lr0)
        self.factor = _check_factor("factor", factor)
        self.patience = check_int("patience", patience, minimum=0)
        self.threshold = check_positive("threshold", threshold, allow_zero=True)
        self.min_lr = check_positive("min_lr", min_lr, allow_zero=True)
        self.cooldown = check_int("cooldown", cooldown, minimum=0)
        self.lr = self.lr0
        self.best = math.inf
        self.bad_epochs = 0
        self.cooldown_left = 0
        self.history = []  # (validation loss, rate after the call) per .step

    def step(self, val_loss):
        """Record one validation loss; returns the (possibly reduced) rate."""
        val_loss = float(val_loss)
        if not math.isfinite(val_loss):
            raise ValueError(f"val_loss must be finite, got {val_loss!r}")
        if val_loss < self.best * (1 - self.threshold) or self.best == math.inf:
            self.best = val_loss
            self.bad_epochs = 0
        elif self.cooldown_left > 0:
            self.cooldown_left -= 1
        else:
            self.bad_epochs += 1
            if self.bad_epochs > self.patience:
                self.lr = max(self.lr * self.factor, self.min_lr)
                self.bad_epochs = 0
                self.cooldown_left = self.cooldown
        self.history.append((val_loss, self.lr))
        return self.lr

    def __call__(self, step):
        return self.lr

    def state_dict(self):
        return {k: getattr(self, k) for k in ("lr", "best", "bad_epochs", "cooldown_left")} | {
            "history": list(self.history)}

    def load_state_dict(self, sd):
        """Restore a ``state_dict``: the keys and the values' kinds are checked first."""
        need = {"lr", "best", "bad_epochs", "cooldown_left", "history"}
        if not isinstance(sd, dict) or set(sd) != need:
            got = sorted(sd) if isinstance(sd, dict) else type(sd).__name__
            raise ValueError(f"ReduceOnPlateau state_dict: expected keys {sorted(need)}, "
                             f"got {got}")
        lr, best = sd["lr"], sd["best"]
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
            raise ValueError(f"state_dict['lr'] must be a rate > 0, got {lr!r}")
        if isinstance(best, bool) or not isinstance(best, (int, float)) or math.isnan(best):
            raise ValueError(f"state_dict['best'] must be a number, got {best!r}")
        for k in ("bad_epochs", "cooldown_left"):
            v = sd[k]
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"state_dict[{k!r}] must be a non-negative integer, got {v!r}")
        history = [tuple(float(x) for x in h) for h in sd["history"]]
        self.lr, self.best = float(lr), float(best)
        self.bad_epochs, self.cooldown_left = int(sd["bad_epochs"]), int(sd["cooldown_left"])
        self.history = history

    def __repr__(self):
        return (f"ReduceOnPlateau(lr={self.lr:g}, best={self.best:.4g}, factor={self.factor:g},"
                f" patience={self.patience})")


ReduceLROnPlateau = ReduceOnPlateau
