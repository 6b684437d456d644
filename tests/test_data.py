"""The offline data sets."""

import numpy as np
import pytest

from ddlib import data


def test_digits_split_is_seeded_and_scaled():
    a = data.load_digits(seed=0)
    b = data.load_digits(seed=0)
    c = data.load_digits(seed=1)
    np.testing.assert_array_equal(a.y_train, b.y_train)
    assert not np.array_equal(a.y_train, c.y_train)
    assert a.X_train.shape[1] == 64 and len(a.X_train) + len(a.X_test) == 1797
    assert a.X_train.min() >= 0 and a.X_train.max() <= 1
    s = data.load_digits(scale="standard")
    np.testing.assert_allclose(s.X_train.mean(0), 0, atol=1e-12)
    assert data.load_digits(n_train=100).X_train.shape == (100, 64)
    assert data.load_digits(dtype=np.float32).X_train.dtype == np.float32


@pytest.mark.parametrize("kw, match", [(dict(test_size=1.5), "test_size"), (dict(scale="log"), "scale")])
def test_digits_bad_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        data.load_digits(**kw)


def test_one_hot_and_spirals():
    np.testing.assert_array_equal(data.one_hot([2, 0], 3), [[0, 0, 1], [1, 0, 0]])
    X, y = data.make_spirals(n_per_class=10, n_classes=3, seed=0)
    assert X.shape == (30, 2) and set(y) == {0, 1, 2}
