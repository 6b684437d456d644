"""Mimic models (Sec. 3.7.3): a small student trained on a trained teacher's outputs.

The teacher labels a transfer set (inputs that need no labels of their own) and the
student learns those outputs instead of, or as well as, the hard 0/1 labels.  Two ways,
after the chapter's sources:

- soft targets at temperature T (Hinton, Vinyals and Dean 2015): teacher and student
  scores are both divided by T before the softmax, which lifts the small probabilities
  the teacher gives to wrong classes; the student minimizes the cross-entropy between
  the two softened distributions (``SoftTargetCrossEntropy``).  The gradient of that
  cross-entropy shrinks like 1/T^2 as T grows, so it is multiplied by T^2 to keep the
  step size comparable across temperatures and when it is mixed with the hard-label
  loss;
- regression on the teacher's logits (Ba and Caruana 2014): squared error between the
  student's and the teacher's pre-softmax scores (``LogitRegression``).

``distill`` runs either: it computes the teacher's scores on the transfer set once and
trains the student with ``ddlib.train.fit``.

The losses follow ddlib's protocol (``forward(scores, targets) -> mean loss``,
``backward() -> d loss / d scores``) and compute on the host: use the numpy or cpu
backend.

>>> import numpy as np
>>> from ddlib.losses import SoftmaxCrossEntropy
>>> scores = np.array([[2.0, 0.5, -1.0], [0.0, 1.0, 0.0]])
>>> onehot = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])      # a teacher that is sure
>>> soft = SoftTargetCrossEntropy(T=1.0, targets="probs")
>>> bool(np.isclose(soft(scores, onehot), SoftmaxCrossEntropy()(scores, np.array([0, 2]))))
True
"""

from __future__ import annotations

import numpy as np

from ..backend.arrays import is_device
from ..errors import check_finite, check_positive
from ..losses import MSE, Loss, _check_scores

TARGETS = ("logits", "probs")
METHODS = ("soft", "logits")


def _log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def pack_targets(teacher, labels):
    """The targets ``SoftTargetCrossEntropy(alpha < 1)`` expects: the teacher's (n, k)
    outputs with the integer hard labels (n,) appended as a last column, (n, k + 1).

    One array keeps the two together through ``fit``'s shuffled batches.

    >>> pack_targets(np.zeros((2, 3)), np.array([2, 0]))
    array([[0., 0., 0., 2.],
           [0., 0., 0., 0.]])
    """
    teacher = np.asarray(teacher, dtype=np.float64)
    labels = np.asarray(labels)
    if teacher.ndim != 2:
        raise ValueError(f"teacher must be an (n, k) array of teacher outputs, got shape "
                         f"{teacher.shape}")
    if labels.ndim != 1 or labels.shape[0] != teacher.shape[0]:
        raise ValueError(f"labels must have shape ({teacher.shape[0]},) to match teacher, "
                         f"got {labels.shape}")
    if labels.dtype.kind not in "iu":
        raise TypeError(f"labels must hold integer class indices, got dtype {labels.dtype}")
    k = teacher.shape[1]
    if labels.size and (labels.min() < 0 or labels.max() >= k):
        raise ValueError(f"labels must lie in [0, {k}) for {k} classes, got values from "
                         f"{labels.min()} to {labels.max()}")
    return np.column_stack([teacher, labels.astype(np.float64)])


class SoftTargetCrossEntropy(Loss):
    """Hinton et al.'s distillation loss: T^2 times the cross-entropy of softened outputs,
    optionally mixed with the ordinary cross-entropy on hard labels.

    With q = softmax(t / T) from the teacher's scores t and p_T = softmax(s / T) from the
    student's scores s, the mean over the batch of

        alpha T^2 (-sum_j q_j log p_T,j) + (1 - alpha) (-log softmax(s)_y)

    whose gradient with respect to s is (alpha T (p_T - q) + (1 - alpha)(p_1 - e_y)) / n
    (e_y: the one-hot row of the label, p_1: the softmax at T = 1).

    T:       the temperature, a finite number > 0 (T = 1 is the plain softmax)
    alpha:   the weight of the soft term in [0, 1]; 1 (the default) uses soft targets
             only, and then the transfer set needs no labels
    targets: what the teacher columns hold: ``'logits'`` (its pre-softmax scores t) or
             ``'probs'`` (its probabilities at T = 1; the loss softens them itself, as
             q proportional to p^(1/T), which equals softmax(log p / T) and allows zeros)

    ``forward(scores, targets)``: scores (n, k); targets (n, k) of teacher outputs, or
    with alpha < 1 (n, k + 1) with the hard label in the last column (``pack_targets``).
    """

    name = "soft_target_cross_entropy"

    def __init__(self, T=2.0, alpha=1.0, targets="logits"):
        self.T = check_positive("T", T)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating)):
            raise TypeError(f"alpha must be a number in [0, 1], got {alpha!r}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1] (the soft term's weight), got {alpha!r}")
        self.alpha = float(alpha)
        if targets not in TARGETS:
            raise ValueError(f"targets must be one of {TARGETS}, got {targets!r}")
        self.targets = targets
        self._cache = None

    def __repr__(self):
        return f"SoftTargetCrossEntropy(T={self.T}, alpha={self.alpha}, targets={self.targets!r})"

    def soften(self, teacher):
        """The teacher's distribution at temperature T, q (n, k), from its outputs."""
        teacher = np.asarray(teacher, dtype=np.float64)
        if self.targets == "logits":
            return np.exp(_log_softmax(teacher / self.T))
        if (teacher < 0).any():
            raise ValueError(f"{self.name}: targets='probs' needs probabilities >= 0, got a "
                             f"minimum of {teacher.min()!r}")
        sums = teacher.sum(axis=1)
        if not np.allclose(sums, 1.0, rtol=0, atol=1e-6):
            worst = sums[np.argmax(np.abs(sums - 1.0))]
            raise ValueError(f"{self.name}: targets='probs' needs rows that sum to 1, got a "
                             f"row summing to {worst!r}")
        # p^(1/T) renormalized, computed in logs so that a tiny p at a small T cannot
        # underflow every entry of a row to 0
        with np.errstate(divide="ignore"):
            logq = np.log(teacher) / self.T
        logq -= logq.max(axis=1, keepdims=True)
        q = np.exp(logq)
        return q / q.sum(axis=1, keepdims=True)

    def _split(self, scores, targets):
        if is_device(scores) or is_device(targets):
            raise TypeError(f"{self.name}: computes on the host; train on the numpy or cpu "
                            "backend")
        t = np.asarray(targets)
        if t.dtype.kind not in "iubf":
            raise TypeError(f"{self.name}: targets must be real numbers, got dtype {t.dtype}")
        n, k = scores.shape
        width = k + 1 if self.alpha < 1 else k
        if t.shape != (n, width):
            extra = (" (alpha < 1: the teacher's k columns and the hard label; see "
                     "pack_targets)" if self.alpha < 1 else "")
            raise ValueError(f"{self.name}: targets must have shape ({n}, {width}) for "
                             f"scores of shape {(n, k)}{extra}, got {t.shape}")
        check_finite(f"{self.name}: targets", t)
        if self.alpha == 1:
            return t, None
        y = t[:, k]
        if not np.all(y == np.round(y)) or y.min() < 0 or y.max() >= k:
            raise ValueError(f"{self.name}: the last column of targets must hold integer "
                             f"labels in [0, {k})")
        return t[:, :k], y.astype(np.int64)

    def forward(self, scores, targets):
        scores = _check_scores(self.name, scores)
        if scores.ndim != 2:
            raise ValueError(f"{self.name}: scores must be (n, classes), got shape "
                             f"{scores.shape}")
        teacher, labels = self._split(scores, targets)
        n, T, a = scores.shape[0], self.T, self.alpha
        s = scores.astype(np.float64)
        value = 0.0
        grad = np.zeros_like(s)
        p_T = q = p_1 = None
        if a > 0:
            q = self.soften(teacher)
            logp = _log_softmax(s / T)
            p_T = np.exp(logp)
            value += a * T * T * float(-(q * logp).sum() / n)
            # d/ds of T^2 H(q, p_T) is T^2 (1/T)(p_T - q) = T (p_T - q)
            grad += (a * T / n) * (p_T - q)
        if a < 1:
            logp1 = _log_softmax(s)
            p_1 = np.exp(logp1)
            rows = np.arange(n)
            value += (1 - a) * float(-logp1[rows, labels].sum() / n)
            hard = p_1.copy()
            hard[rows, labels] -= 1.0
            grad += ((1 - a) / n) * hard
        self._cache = (grad.astype(scores.dtype, copy=False), p_T, p_1)
        return value

    def _backward(self):
        return self._cache[0].copy()

    def _hvp_scores(self, r):
        # the Hessian of H(q, softmax(s/T)) in s is (diag p_T - p_T p_T^T) / T^2, so the
        # T^2 factor cancels: each term contributes (diag p - p p^T) r / n
        _, p_T, p_1 = self._cache
        r = np.asarray(r, dtype=np.float64)
        n = r.shape[0]
        out = np.zeros_like(r)
        for w, p in ((self.alpha, p_T), (1 - self.alpha, p_1)):
            if p is not None and w > 0:
                out += (w / n) * (p * r - p * (p * r).sum(axis=1, keepdims=True))
        return out.astype(self._cache[0].dtype, copy=False)


class LogitRegression(MSE):
    """Ba and Caruana's mimic loss: mean over the batch of 0.5 ||s - t||^2 between the
    student's scores s and the teacher's logits t (both before any softmax).

    The same numbers as ``ddlib.losses.MSE``, with targets that are the teacher's
    scores; its gradient is (s - t) / n.  Unlike cross-entropy on probabilities, it
    keeps the teacher's relative scores even where its softmax saturates.
    """

    name = "logit_regression"


def _scores(model, X):
    """``model``'s outputs on X in inference mode, as a float64 host array."""
    from ..train import predict

    return np.asarray(predict(model, X), dtype=np.float64)


def distill(student, teacher, X_transfer, y=None, method="soft", T=None, alpha=None,
            rule=None, epochs=10, batch_size=32, seed=None, **fit_kwargs):
    """Train ``student`` to mimic ``teacher`` on the transfer inputs; returns the History.

    The teacher's scores on ``X_transfer`` (n, d) are computed once, in inference mode
    (they must be pre-softmax scores, as ddlib's classifiers output).  Then ``fit`` trains
    the student on them with

    - ``method='soft'``: ``SoftTargetCrossEntropy(T, alpha)`` on the teacher's logits
      (T defaults to 2, alpha to 1); with alpha < 1 the hard labels ``y`` (n,) are
      mixed in (then ``y`` is required);
    - ``method='logits'``: ``LogitRegression`` onto the teacher's logits (it has no
      temperature and no label term: giving T or alpha is a ValueError).

    ``y`` is used only by the soft method with alpha < 1 (giving it otherwise is a
    ValueError, so that labels are never silently ignored).  ``rule`` is a
    ``ddlib.optim`` rule (default ``optim.adam(1e-2)``); ``epochs``, ``batch_size``,
    ``seed`` and ``fit_kwargs`` go to ``fit`` (note that ``X_val``/``y_val`` there are
    scored with the distillation loss, so their targets must be teacher outputs too).
    Student and teacher must give the same number of outputs.
    """
    from .. import optim
    from ..train import fit

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    X = np.asarray(X_transfer)
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError(f"X_transfer must be a non-empty (n, d) batch of inputs, got shape "
                         f"{X.shape}")
    if method == "soft":
        loss = SoftTargetCrossEntropy(2.0 if T is None else T, 1.0 if alpha is None else alpha)
    else:
        if T is not None or alpha is not None:
            raise ValueError(f"method='logits' regresses on the raw logits: it takes no "
                             f"temperature T or weight alpha (got T={T!r}, alpha={alpha!r})")
        loss = LogitRegression()
    wants_labels = method == "soft" and loss.alpha < 1
    if y is not None and not wants_labels:
        raise ValueError(f"y is used only by method='soft' with alpha < 1 (got "
                         f"method={method!r}, alpha={getattr(loss, 'alpha', None)!r}); "
                         "leave y=None")
    if wants_labels and y is None:
        raise ValueError(f"alpha={loss.alpha!r} < 1 mixes in the hard-label loss: give the "
                         "labels y of the transfer set")
    t = _scores(teacher, X)
    width = _scores(student, X[:1]).shape[1]
    if width != t.shape[1]:
        raise ValueError(f"the student gives {width} scores per example but the teacher "
                         f"gives {t.shape[1]}; they must match")
    targets = pack_targets(t, y) if wants_labels else t
    opt = optim.Optimizer(student, rule if rule is not None else optim.adam(1e-2))
    return fit(student, loss, opt, X, targets, epochs=epochs, batch_size=batch_size,
               seed=seed, **fit_kwargs)
