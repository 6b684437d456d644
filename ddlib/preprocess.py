"""Feature preprocessing (Sec. 3.3.2): centering, scaling and PCA whitening, fit/transform style.

Each transformer learns its statistics with ``fit(X)`` (optionally on a random sample of
the rows, as the chapter suggests for large data) and applies them with ``transform(X)``,
which works through the rows in chunks so a large matrix is never copied whole into a
float64 temporary.  The names follow scikit-learn's:

* ``MeanCenter``: subtract the column means;
* ``Standardize``: subtract the means and divide by the standard deviations;
* ``MinMaxScale``: (x - min_j) / (max_j - min_j) into [0, 1] (Eq. 3.35);
* ``ShiftNonNegative``: add |most negative entry| of each column, so every value is >= 0;
* ``PCAWhiten``: project the centred data on the top-k eigenvectors of its covariance and
  divide each coordinate by the square root of its eigenvalue (Eqs. 3.36-3.37).

>>> import numpy as np
>>> X = np.random.default_rng(0).normal(size=(500, 3)) @ np.array([[3., 0, 0], [1, 1, 0], [0, 0, .1]])
>>> Z = PCAWhiten().fit_transform(X)
>>> np.allclose(Z.T @ Z / len(Z), np.eye(3))
True
"""

from __future__ import annotations

import numpy as np

from .errors import check_finite, check_int, check_positive
from .init import as_rng

__all__ = [
    "Transformer",
    "MeanCenter",
    "Standardize",
    "MinMaxScale",
    "ShiftNonNegative",
    "PCAWhiten",
    "PREPROCESSORS",
]


def _as_matrix(name, X):
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (n_samples, n_features), got shape {X.shape}")
    if X.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold numbers, got dtype {X.dtype}")
    check_finite(name, X)
    return X


class Transformer:
    """Base class: ``fit`` learns statistics, ``transform`` applies them chunk by chunk."""

    def __init__(self, chunk_size=4096):
        self.chunk_size = check_int("chunk_size", chunk_size)
        self.n_features_ = None

    # subclasses implement these two
    def _fit(self, X):
        raise NotImplementedError

    def _transform(self, X):
        raise NotImplementedError

    def fit(self, X, sample_size=None, seed=None):
        """Learn the statistics from X, or from ``sample_size`` rows drawn from it at random."""
        X = _as_matrix("X", X)
        if sample_size is not None:
            sample_size = check_int("sample_size", sample_size)
            if sample_size < len(X):
                X = X[np.sort(as_rng(seed).choice(len(X), sample_size, replace=False))]
        if len(X) < 2:
            raise ValueError(f"fit needs at least 2 rows to estimate statistics, got {len(X)}")
        self.n_features_ = X.shape[1]
        self._fit(X.astype(np.float64, copy=False))
        return self

    def transform(self, X, out_dtype=None):
        """Apply the fitted statistics to X (any number of rows), ``chunk_size`` rows at a time."""
        if self.n_features_ is None:
            raise RuntimeError(f"{type(self).__name__}: call fit before transform")
        X = _as_matrix("X", X)
        if X.shape[1] != self.n_features_:
            raise ValueError(
                f"X has {X.shape[1]} features but {type(self).__name__} was fitted on "
                f"{self.n_features_}"
            )
        dtype = out_dtype or (X.dtype if X.dtype.kind == "f" else np.float64)
        outs = [self._transform(X[i:i + self.chunk_size].astype(np.float64, copy=False))
                for i in range(0, len(X), self.chunk_size)]
        if not outs:
            return np.empty((0, self.n_out_), dtype=dtype)
        return np.vstack(outs).astype(dtype, copy=False)

    def transform_chunks(self, chunks):
        """Yield the transform of each array in an iterable (for data that never fits in memory)."""
        for chunk in chunks:
            yield self.transform(chunk)

    def fit_transform(self, X, **kw):
        return self.fit(X, **kw).transform(X)

    @property
    def n_out_(self):
        return self.n_features_


class MeanCenter(Transformer):
    """x - mean_j: removes the additive offset of every column."""

    def _fit(self, X):
        self.mean_ = X.mean(axis=0)

    def _transform(self, X):
        return X - self.mean_

    def inverse_transform(self, Z):
        return np.asarray(Z) + self.mean_


class Standardize(Transformer):
    """(x - mean_j) / std_j: zero mean and unit variance per column.

    A column with zero variance cannot be scaled; it is only centred (``std_`` set to 1).
    """

    def _fit(self, X):
        self.mean_ = X.mean(axis=0)
        std = X.std(axis=0)
        self.constant_ = std == 0
        self.std_ = np.where(self.constant_, 1.0, std)

    def _transform(self, X):
        return (X - self.mean_) / self.std_

    def inverse_transform(self, Z):
        return np.asarray(Z) * self.std_ + self.mean_


class MinMaxScale(Transformer):
    """(x - min_j) / (max_j - min_j) (Eq. 3.35): the fitted sample lands in [0, 1].

    New data outside the fitted range maps outside [0, 1]; a constant column maps to 0.
    """

    def _fit(self, X):
        self.min_ = X.min(axis=0)
        span = X.max(axis=0) - self.min_
        self.span_ = np.where(span == 0, 1.0, span)

    def _transform(self, X):
        return (X - self.min_) / self.span_

    def inverse_transform(self, Z):
        return np.asarray(Z) * self.span_ + self.min_


class ShiftNonNegative(Transformer):
    """x + |min_j| for columns whose minimum is negative, so every fitted value is >= 0."""

    def _fit(self, X):
        self.shift_ = np.maximum(-X.min(axis=0), 0.0)

    def _transform(self, X):
        return X + self.shift_

    def inverse_transform(self, Z):
        return np.asarray(Z) - self.shift_


class PCAWhiten(Transformer):
    """PCA whitening (Eqs. 3.36-3.37): decorrelate, then scale every component to unit variance.

    Fitting computes the column means mu and the covariance C = D^T D / n of the centred
    sample D (Eq. 3.36), and its eigen-decomposition.  ``transform`` maps a row x to
    ((x - mu) P) / sqrt(lambda), where the k columns of P (d, k) are the kept eigenvectors
    (Eq. 3.37).  Which components are kept, and how small eigenvalues are treated:

    * ``threshold`` (default 1e-5): drop components whose eigenvalue is <= threshold times
      the largest one (so a rescaling of the data does not change the choice); the fitted
      sample's whitened covariance is then the identity;
    * ``regularizer`` (e.g. 1e-5): keep the components and divide by sqrt(lambda + eps)
      instead; the whitened variances become lambda / (lambda + eps) <= 1;
    * ``n_components``: keep at most the top k (after the threshold).

    A sample whose covariance is rank-deficient cannot be whitened on every axis; with
    ``threshold=0`` and no regularizer this raises an error that names the rank.

    Attributes after ``fit``: ``mean_`` (d,), ``eigenvalues_`` (all d, descending),
    ``components_`` P (d, k), ``scale_`` (k,) the divisors, ``n_components_`` k.
    """

    def __init__(self, threshold=1e-5, regularizer=0.0, n_components=None, chunk_size=4096):
        super().__init__(chunk_size)
        self.threshold = check_positive("threshold", threshold, allow_zero=True)
        self.regularizer = check_positive("regularizer", regularizer, allow_zero=True)
        self.n_components = None if n_components is None else check_int("n_components",
                                                                         n_components)

    def _fit(self, X):
        n, d = X.shape
        self.mean_ = X.mean(axis=0)
        D = X - self.mean_
        C = D.T @ D / n
        lam, vec = np.linalg.eigh(C)
        order = np.argsort(lam)[::-1]
        lam, vec = np.maximum(lam[order], 0.0), vec[:, order]
        self.eigenvalues_ = lam
        top = lam[0]
        if top <= 0:
            raise ValueError("cannot whiten: every column of the sample is constant "
                             "(the covariance is zero)")
        # rank by the usual numerical tolerance, independent of the user's threshold
        tiny = top * max(n, d) * np.finfo(np.float64).eps
        rank = int(np.count_nonzero(lam > tiny))
        if self.threshold == 0 and self.regularizer == 0 and rank < d:
            raise ValueError(
                f"cannot whiten on all {d} axes: the sample covariance is rank-deficient "
                f"(rank {rank} of {d}{'; fewer rows than features' if n <= d else ''}); "
                "set threshold > 0 to drop the null directions or regularizer > 0 to damp them"
            )
        keep = lam > max(self.threshold * top, tiny if self.regularizer == 0 else -1.0)
        k = int(np.count_nonzero(keep))
        if self.n_components is not None:
            if self.n_components > k:
                raise ValueError(
                    f"n_components={self.n_components} but only {k} of {d} components have "
                    f"eigenvalues above the threshold (sample rank {rank})"
                )
            k = self.n_components
        self.n_components_ = k
        self.components_ = vec[:, :k]
        self.scale_ = np.sqrt(lam[:k] + self.regularizer)

    def _transform(self, X):
        return (X - self.mean_) @ self.components_ / self.scale_

    def inverse_transform(self, Z):
        """Back to the original axes (exact only on the kept components' span)."""
        return (np.asarray(Z) * self.scale_) @ self.components_.T + self.mean_

    @property
    def n_out_(self):
        return self.n_components_


PREPROCESSORS = {
    "center": MeanCenter,
    "standardize": Standardize,
    "minmax": MinMaxScale,
    "nonnegative": ShiftNonNegative,
    "whiten": PCAWhiten,
}
