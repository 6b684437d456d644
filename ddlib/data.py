"""Data sets that need no network: scikit-learn's bundled digits, and small synthetic sets."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import check_float_dtype, check_int
from .init import as_rng


@dataclass
class Split:
    """A train/test split; X arrays are (n, d), y arrays integer labels (n,)."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    n_classes: int

    @property
    def n_features(self):
        return self.X_train.shape[1]

    def __repr__(self):
        return (f"Split(train={self.X_train.shape}, test={self.X_test.shape}, "
                f"classes={self.n_classes}, dtype={self.X_train.dtype})")


def load_digits(test_size=0.25, seed=0, scale="unit", dtype=np.float64, n_train=None):
    """The 1,797 8x8 handwritten digits shipped with scikit-learn, split and scaled.

    ``scale='unit'`` maps the 0-16 pixel counts to [0, 1]; ``'standard'`` centers and
    scales each pixel with the training set's statistics; ``None`` leaves raw counts.
    ``n_train`` keeps only that many training examples (for small-sample studies); it
    must lie between 1 and the size of the training split, else a ValueError.  ``dtype``
    is the features' dtype and must be float32 or float64: scaled pixels are fractions,
    which an integer dtype would truncate, so any other dtype is a TypeError.
    """
    from sklearn.datasets import load_digits as _load

    if isinstance(test_size, bool) or not isinstance(test_size, (int, float, np.floating)):
        raise TypeError(f"test_size must be a number in (0, 1), got {test_size!r}")
    if not 0 < test_size < 1:
        raise ValueError(f"test_size must lie in (0, 1), got {test_size!r}")
    if scale not in ("unit", "standard", None):
        raise ValueError(f"scale must be 'unit', 'standard' or None, got {scale!r}")
    dtype = check_float_dtype("dtype", dtype)
    bunch = _load()
    X = bunch.data.astype(np.float64)
    y = bunch.target.astype(np.int64)
    idx = as_rng(seed).permutation(len(y))
    n_test = int(round(test_size * len(y)))
    test, train = idx[:n_test], idx[n_test:]
    if n_train is not None:
        n_train = check_int("n_train", n_train, minimum=1)
        if n_train > len(train):
            raise ValueError(
                f"n_train must be at most {len(train)} (the training split left by "
                f"test_size={test_size!r}), got {n_train}")
        train = train[:n_train]
    Xtr, Xte = X[train], X[test]
    if scale == "unit":
        Xtr, Xte = Xtr / 16.0, Xte / 16.0
    elif scale == "standard":
        mu, sd = Xtr.mean(0), Xtr.std(0)
        sd[sd == 0] = 1.0
        Xtr, Xte = (Xtr - mu) / sd, (Xte - mu) / sd
    return Split(Xtr.astype(dtype), y[train], Xte.astype(dtype), y[test], 10)


def one_hot(labels, n_classes):
    """(n,) integer labels -> (n, n_classes) indicator rows (float64).

    ``labels`` must be a 1-D array of integers in [0, n_classes) (a negative label is
    refused, not wrapped around to the last class).

    >>> one_hot([2, 0], 3)
    array([[0., 0., 1.],
           [1., 0., 0.]])
    """
    n_classes = check_int("n_classes", n_classes, minimum=1)
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be a 1-D array of class indices, got shape {labels.shape}")
    if labels.size == 0 and labels.dtype.kind == "f":
        labels = labels.astype(np.int64)  # [] arrives as float64
    if labels.dtype.kind not in "iu":
        raise TypeError(f"labels must hold integer class indices, got dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(
            f"labels must lie in [0, {n_classes}) for n_classes={n_classes}, "
            f"got values from {labels.min()} to {labels.max()}")
    out = np.zeros((labels.size, n_classes))
    out[np.arange(labels.size), labels] = 1.0
    return out


def make_spirals(n_per_class=100, n_classes=3, noise=0.2, seed=0):
    """Interleaved 2-D spirals: a small task no linear model can solve."""
    rng = as_rng(seed)
    X, y = [], []
    for c in range(n_classes):
        r = np.linspace(0.0, 1.0, n_per_class)
        t = np.linspace(c * 4, (c + 1) * 4, n_per_class) + rng.normal(0, noise, n_per_class)
        X.append(np.c_[r * np.sin(t), r * np.cos(t)])
        y.append(np.full(n_per_class, c))
    return np.vstack(X), np.concatenate(y).astype(np.int64)
