"""ddlib.preprocess: each transformer against its formula, whitening's identity covariance."""

import doctest

import numpy as np
import pytest

from ddlib import preprocess
from ddlib.data import load_digits
from ddlib.preprocess import (
    PREPROCESSORS,
    MeanCenter,
    MinMaxScale,
    PCAWhiten,
    ShiftNonNegative,
    Standardize,
)


@pytest.fixture
def X():
    rng = np.random.default_rng(0)
    A = np.array([[3.0, 0.0, 0.0], [2.0, 0.5, 0.0], [0.0, 0.3, 0.05]])
    return rng.normal(size=(400, 3)) @ A + np.array([10.0, -4.0, 0.5])


def test_docstring_examples():
    assert doctest.testmod(preprocess).failed == 0


def test_mean_center(X):
    Z = MeanCenter().fit_transform(X)
    np.testing.assert_allclose(Z.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(Z, X - X.mean(axis=0))


def test_standardize(X):
    Z = Standardize().fit_transform(X)
    np.testing.assert_allclose(Z.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(Z.std(axis=0), 1, rtol=1e-12)


def test_standardize_leaves_constant_columns_centred():
    X = np.c_[np.arange(5.0), np.full(5, 7.0)]
    Z = Standardize().fit_transform(X)
    np.testing.assert_array_equal(Z[:, 1], 0.0)
    assert np.all(np.isfinite(Z))


def test_min_max_is_equation_3_35(X):
    s = MinMaxScale().fit(X)
    Z = s.transform(X)
    np.testing.assert_allclose(Z, (X - X.min(0)) / (X.max(0) - X.min(0)))
    np.testing.assert_allclose(Z.min(0), 0, atol=1e-15)
    np.testing.assert_allclose(Z.max(0), 1)


def test_shift_non_negative():
    X = np.array([[-3.0, 2.0], [1.0, 5.0], [0.5, 3.0]])
    Z = ShiftNonNegative().fit_transform(X)
    np.testing.assert_allclose(Z, [[0.0, 2.0], [4.0, 5.0], [3.5, 3.0]])


@pytest.mark.parametrize("cls", [MeanCenter, Standardize, MinMaxScale, ShiftNonNegative, PCAWhiten])
def test_inverse_transform_round_trips(cls, X):
    t = cls().fit(X)
    np.testing.assert_allclose(t.inverse_transform(t.transform(X)), X, atol=1e-10)


def test_whitened_covariance_is_identity_on_kept_components(X):
    w = PCAWhiten().fit(X)
    Z = w.transform(X)
    C = Z.T @ Z / len(Z)
    assert w.n_components_ == 3
    assert np.max(np.abs(C - np.eye(3))) < 1e-6
    np.testing.assert_allclose(Z.mean(axis=0), 0, atol=1e-10)


def test_whitened_digits_drop_null_pixels_and_have_identity_covariance():
    X = load_digits(scale=None).X_train
    w = PCAWhiten(threshold=1e-5).fit(X)
    Z = w.transform(X)
    k = w.n_components_
    assert k < X.shape[1]  # some pixels never vary (and some are nearly collinear)
    assert np.all(w.eigenvalues_[k:] <= 1e-5 * w.eigenvalues_[0])
    assert np.all(w.eigenvalues_[:k] > 1e-5 * w.eigenvalues_[0])
    assert np.max(np.abs(Z.T @ Z / len(Z) - np.eye(k))) < 1e-6


def test_whitening_matches_equation_3_37(X):
    """U = D P, each column divided by sqrt(eigenvalue), with P the covariance's eigenvectors."""
    w = PCAWhiten().fit(X)
    D = X - X.mean(0)
    lam, P = np.linalg.eigh(D.T @ D / len(D))
    lam, P = lam[::-1], P[:, ::-1]
    U = D @ P / np.sqrt(lam)
    Z = w.transform(X)
    # eigenvectors are defined up to sign
    np.testing.assert_allclose(np.abs(Z), np.abs(U), atol=1e-9)
    np.testing.assert_allclose(w.eigenvalues_, lam, rtol=1e-10)


def test_regularized_whitening_damps_small_eigenvalues(X):
    eps = 1e-2
    w = PCAWhiten(threshold=0.0, regularizer=eps).fit(X)
    Z = w.transform(X)
    lam = w.eigenvalues_
    np.testing.assert_allclose(np.diag(Z.T @ Z / len(Z)), lam / (lam + eps), rtol=1e-9)
    C = Z.T @ Z / len(Z)
    assert np.max(np.abs(C - np.diag(np.diag(C)))) < 1e-9


def test_n_components_keeps_the_top_k(X):
    w = PCAWhiten(n_components=2).fit(X)
    assert w.transform(X).shape == (400, 2)
    np.testing.assert_allclose(w.scale_ ** 2, w.eigenvalues_[:2])


def test_fit_on_a_sample_then_transform_in_chunks(X):
    big = np.vstack([X] * 10)
    w = PCAWhiten(chunk_size=333).fit(big, sample_size=500, seed=0)
    Z = w.transform(big)
    ref = PCAWhiten().fit(big[np.sort(np.random.default_rng(0).choice(len(big), 500,
                                                                        replace=False))])
    np.testing.assert_allclose(Z, ref.transform(big), atol=1e-10)
    chunks = list(w.transform_chunks(np.array_split(big, 7)))
    np.testing.assert_allclose(np.vstack(chunks), Z, atol=1e-12)
    # the sample's statistics apply to the full set approximately
    assert np.max(np.abs(Z.T @ Z / len(Z) - np.eye(3))) < 0.3


def test_transform_keeps_float32(X):
    s = Standardize().fit(X)
    assert s.transform(X.astype(np.float32)).dtype == np.float32
    assert s.transform(X.astype(int)).dtype == np.float64


def test_rank_deficient_sample_is_named_when_no_threshold():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 2)) @ np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]])
    with pytest.raises(ValueError, match=r"rank-deficient \(rank 2 of 3"):
        PCAWhiten(threshold=0.0).fit(X)
    # the default threshold drops the null direction instead
    assert PCAWhiten().fit(X).n_components_ == 2


def test_fewer_rows_than_features_is_named():
    X = np.random.default_rng(1).normal(size=(4, 6))
    with pytest.raises(ValueError, match="fewer rows than features"):
        PCAWhiten(threshold=0.0).fit(X)


def test_too_many_components_requested(X):
    with pytest.raises(ValueError, match="n_components=4 but only 3"):
        PCAWhiten(n_components=4).fit(X)


def test_constant_sample_cannot_be_whitened():
    with pytest.raises(ValueError, match="every column of the sample is constant"):
        PCAWhiten().fit(np.ones((10, 3)))


@pytest.mark.parametrize("bad, exc, match", [
    (np.ones(5), ValueError, "2-D array"),
    (np.array([[1.0, np.nan], [2.0, 3.0]]), ValueError, "non-finite"),
    (np.ones((1, 3)), ValueError, "at least 2 rows"),
])
def test_bad_inputs(bad, exc, match):
    with pytest.raises(exc, match=match):
        Standardize().fit(bad)


def test_transform_checks_width_and_fit(X):
    with pytest.raises(RuntimeError, match="call fit before transform"):
        MeanCenter().transform(X)
    with pytest.raises(ValueError, match="X has 2 features but PCAWhiten was fitted on 3"):
        PCAWhiten().fit(X).transform(X[:, :2])


def test_bad_parameters():
    with pytest.raises(ValueError, match="threshold must be a finite number >= 0"):
        PCAWhiten(threshold=-1.0)
    with pytest.raises(ValueError, match="regularizer"):
        PCAWhiten(regularizer=float("inf"))


def test_registry_names_every_transformer():
    assert set(PREPROCESSORS.values()) == {MeanCenter, Standardize, MinMaxScale,
                                           ShiftNonNegative, PCAWhiten}
