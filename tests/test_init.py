"""ddlib.init: every initializer's distribution against Sec. 3.3.3's formulas, seeding, errors."""

import doctest

import numpy as np
import pytest

from ddlib import init
from ddlib.init import INITIALIZERS, as_rng, get_initializer, initialize

SHAPE = (400, 250)  # 100,000 draws: sample std within ~0.5% of the true value


def test_docstring_examples():
    assert doctest.testmod(init).failed == 0


@pytest.mark.parametrize("name, std", [
    ("normal", 0.01),
    ("fan_in_normal", np.sqrt(1 / 400)),
    ("fan_in_uniform", np.sqrt(1 / 400) / np.sqrt(3)),  # U(+-a) has std a / sqrt(3)
    ("xavier_normal", np.sqrt(2 / 650)),
    ("xavier_uniform", np.sqrt(2 / 650)),
    ("kaiming_normal", np.sqrt(2 / 400)),
    ("kaiming_uniform", np.sqrt(2 / 400)),
])
def test_standard_deviation_follows_the_formula(name, std):
    W = initialize(name, SHAPE, rng=0)
    assert W.shape == SHAPE
    assert abs(W.mean()) < 4 * std / np.sqrt(W.size)
    assert W.std() == pytest.approx(std, rel=0.015)


@pytest.mark.parametrize("name, bound", [
    ("fan_in_uniform", 1 / np.sqrt(400)),
    ("xavier_uniform", np.sqrt(6 / 650)),
    ("kaiming_uniform", np.sqrt(6 / 400)),
])
def test_uniform_bounds(name, bound):
    W = initialize(name, SHAPE, rng=1)
    assert np.abs(W).max() <= bound
    assert np.abs(W).max() > 0.99 * bound  # the whole interval is used


def test_fan_in_scaling_keeps_output_variance_independent_of_fan_in():
    """Sec. 3.3.3: with N(0, 1/r) the pre-activation variance no longer grows with r."""
    rng = np.random.default_rng(0)
    for r in (2, 100, 1000):
        x = rng.normal(size=(2000, r))
        out_scaled = x @ initialize("fan_in_normal", (r, 50), rng)
        assert out_scaled.var() == pytest.approx(1.0, rel=0.08)
    # the fixed small std does grow with r: variance r * 1e-4
    x = rng.normal(size=(2000, 1000))
    assert (x @ initialize("normal", (1000, 50), rng)).var() == pytest.approx(0.1, rel=0.08)


def test_constant_and_zeros():
    np.testing.assert_array_equal(initialize("constant", (3, 2)), np.full((3, 2), 0.5))
    np.testing.assert_array_equal(initialize("constant", (2,), value=-1.0), [-1.0, -1.0])
    np.testing.assert_array_equal(initialize("zeros", (4,)), np.zeros(4))


def test_seeding_through_a_generator():
    a = initialize("xavier_normal", (5, 4), rng=7)
    b = initialize("xavier_normal", (5, 4), rng=np.random.default_rng(7))
    c = initialize("xavier_normal", (5, 4), rng=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    state = np.random.get_state()[1].copy()
    initialize("kaiming_uniform", (5, 4), rng=0)
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # global state untouched


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype(dtype):
    for name in INITIALIZERS:
        assert initialize(name, (3, 4), rng=0, dtype=dtype).dtype == dtype


def test_aliases_are_the_same_functions():
    assert INITIALIZERS["glorot_normal"] is INITIALIZERS["xavier_normal"]
    assert INITIALIZERS["he_uniform"] is INITIALIZERS["kaiming_uniform"]
    assert get_initializer(init.zeros) is init.zeros


def test_unknown_name_lists_the_choices():
    with pytest.raises(ValueError, match=r"init='xavier' is not a known initializer; choose one of"):
        initialize("xavier", (2, 2))


def test_bad_rng_and_std():
    with pytest.raises(TypeError, match="rng must be a numpy.random.Generator"):
        as_rng("seed")
    with pytest.raises(ValueError, match="std must be a finite number > 0"):
        initialize("normal", (2, 2), std=-1.0)
    with pytest.raises(ValueError, match="at least one dimension"):
        initialize("fan_in_normal", ())
