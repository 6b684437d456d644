"""Property-based fuzz (hypothesis) over the entry points the table fuzz samples by hand.

Each property draws inputs, calls one public entry point and accepts exactly two outcomes:
a correct result (checked against a plain NumPy computation) or an error of the expected
type whose message names the offending argument.  Anything else (another exception, a
message that names nothing, a wrong or non-finite result) fails the property, and
hypothesis shrinks it to a small example.

``python -m tests.fuzz.properties BACKEND NAME`` runs one property in this process and
prints ``PASSED NAME <examples>``; ``test_fuzz_properties.py`` starts one such process per
(property, backend), so a crash in compiled code is a failed test, not a dead run.
Examples are derandomized (the same on every run and machine) and nothing is stored.
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))

shapes = st.tuples(st.integers(1, 9), st.integers(1, 7))
any_shape = st.one_of(shapes, st.tuples(st.integers(1, 60)),
                      st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(1, 3)))
float_dtypes = st.sampled_from([np.float32, np.float64])


def _data(shape, dtype, seed):
    return np.random.default_rng(seed).normal(size=shape).astype(dtype)


def _expect_error(err, types, *words):
    assert isinstance(err, types), f"{type(err).__name__}: {err}"
    msg = str(err).lower()
    missing = [w for w in words if w.lower() not in msg]
    assert not missing, f"message {str(err)!r} does not name {missing}"


# ----------------------------------------------------------------------- the properties


def activation_backward():
    from ddlib import layers

    kinds = [layers.ReLU, layers.Sigmoid, layers.Tanh, layers.LeakyReLU, layers.Identity,
             layers.HardTanh]

    @SETTINGS
    @given(st.sampled_from(kinds), shapes, any_shape, float_dtypes, st.integers(0, 99))
    def prop(cls, x_shape, g_shape, dtype, seed):
        x, g = _data(x_shape, dtype, seed), _data(g_shape, dtype, seed + 1)
        layer = cls()
        layer.forward(x)
        try:
            dx = layer.backward(g)
        except Exception as err:  # noqa: BLE001 - classified by _expect_error
            assert g_shape != x_shape, f"refused a matching gradient: {err}"
            _expect_error(err, ValueError, "shape")
            return
        assert g_shape == x_shape, f"accepted g {g_shape} for x {x_shape}"
        ref = cls()
        with _numpy():
            ref.forward(x)
            want = ref.backward(g)
        assert dx.shape == x.shape and np.all(np.isfinite(dx))
        np.testing.assert_allclose(dx, want, rtol=1e-5 if dtype == np.float32 else 1e-12,
                                   atol=1e-6 if dtype == np.float32 else 1e-12)

    prop()


def optimizer_load_state_dict():
    from ddlib import layers, optim

    rules = {"momentum": lambda: optim.momentum(0.1, 0.9), "adam": lambda: optim.adam(1e-3),
             "sgd": lambda: optim.sgd(0.1), "rmsprop": lambda: optim.rmsprop(1e-3)}
    widths = st.lists(st.integers(1, 6), min_size=2, max_size=4)

    @SETTINGS
    @given(widths, widths, st.sampled_from(sorted(rules)), st.sampled_from(sorted(rules)),
           st.booleans())
    def prop(src_w, dst_w, src_rule, dst_rule, drop_key):
        src_net, dst_net = layers.mlp(src_w, rng=0), layers.mlp(dst_w, rng=1)
        src = optim.Optimizer(src_net, rules[src_rule]())
        src_net.forward(np.ones((2, src_w[0])))
        for _, layer, k in src_net.named_parameters():
            layer.grads[k][...] = 0.5
        src.step()
        sd = src.state_dict()
        if drop_key:   # a required key ("rule" is optional: older states lack it)
            sd = dict(sd)
            sd.pop(min(k for k in sd if k != "rule"))
        dst = optim.Optimizer(dst_net, rules[dst_rule]())
        before = {n: np.array(layer.params[k]) for n, layer, k in dst_net.named_parameters()}
        before_sd = dst.state_dict()
        same = src_w == dst_w and src_rule == dst_rule and not drop_key
        try:
            dst.load_state_dict(sd)
        except Exception as err:  # noqa: BLE001
            assert not same, f"refused a matching state: {err}"
            _expect_error(err, (ValueError, TypeError, KeyError), "state")
            # refused before changing anything
            assert _tree_equal(dst.state_dict(), before_sd)
            for n, layer, k in dst_net.named_parameters():
                np.testing.assert_array_equal(layer.params[k], before[n])
            return
        assert same, f"accepted {src_rule} {src_w} (drop={drop_key}) for {dst_rule} {dst_w}"
        assert _tree_equal(dst.state_dict(), src.state_dict())
        for _, layer, k in dst_net.named_parameters():
            layer.grads[k][...] = 0.5
        dst.step()          # the loaded state drives a normal step
        for _, layer, k in dst_net.named_parameters():
            assert np.all(np.isfinite(layer.params[k]))

    prop()


def losses_inputs():
    from ddlib import losses

    kinds = st.sampled_from(["int64", "int32", "float32", "float64", "bool"])
    poison = st.sampled_from([None, np.nan, np.inf, -np.inf])

    @SETTINGS
    @given(st.integers(0, 6), st.integers(2, 5), kinds, poison, st.integers(0, 99),
           st.booleans())
    def prop(n, c, kind, bad, seed, xent):
        rng = np.random.default_rng(seed)
        scores = (rng.normal(size=(n, c)) * 3).astype(kind)
        if bad is not None and n:
            scores = scores.astype(np.float64)
            scores[rng.integers(n), rng.integers(c)] = bad
        if xent:
            loss, target = losses.SoftmaxCrossEntropy(), rng.integers(0, c, size=n)
        else:
            loss, target = losses.MSE(), rng.normal(size=(n, c))
        try:
            value = loss.forward(scores, target)
        except Exception as err:  # noqa: BLE001
            if n == 0:
                _expect_error(err, ValueError, "empty")
            elif bad is not None:
                _expect_error(err, (ValueError, FloatingPointError), "finite")
            elif kind == "bool":
                _expect_error(err, (ValueError, TypeError), "dtype")
            else:
                raise AssertionError(f"refused valid {kind} scores: {err}") from err
            return
        assert n > 0 and bad is None, f"accepted n={n}, poison={bad}"
        s = scores.astype(np.float64)
        if xent:
            z = s - s.max(axis=1, keepdims=True)
            logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
            want = -logp[np.arange(n), target].mean()
        else:
            want = float(np.mean(np.sum((s - target) ** 2, axis=1)) / 2)
        assert np.isfinite(value)
        tol = 1e-5 if kind == "float32" else 1e-10
        assert abs(value - want) <= tol * max(1.0, abs(want)), (value, want)
        g = loss.backward()
        assert np.issubdtype(np.asarray(g).dtype, np.floating) and np.all(np.isfinite(g))

    prop()


def one_hot_labels():
    from ddlib import data

    @SETTINGS
    @given(st.lists(st.integers(-3, 12), min_size=0, max_size=20), st.integers(1, 10))
    def prop(labels, c):
        lab = np.asarray(labels, dtype=np.int64)
        try:
            out = data.one_hot(lab, c)
        except Exception as err:  # noqa: BLE001
            assert lab.size and (lab.min() < 0 or lab.max() >= c), f"refused {labels}: {err}"
            _expect_error(err, ValueError, "label")
            return
        assert not lab.size or (lab.min() >= 0 and lab.max() < c), f"accepted {labels}, c={c}"
        want = np.zeros((lab.size, c))
        want[np.arange(lab.size), lab] = 1.0
        np.testing.assert_array_equal(out, want)

    prop()


def linear_forward_inputs():
    from ddlib import layers

    @SETTINGS
    @given(shapes, st.integers(1, 5), st.sampled_from(["int64", "float32", "float64",
                                                        "complex128", "bool"]),
           float_dtypes, st.booleans(), st.integers(0, 99))
    def prop(x_shape, d_out, kind, wdtype, transpose, seed):
        n, d_in = x_shape
        layer = layers.Linear(d_in, d_out, rng=seed, dtype=wdtype)
        x = (np.random.default_rng(seed).normal(size=(d_in, n) if transpose else (n, d_in))
             * 4).astype(kind)
        if transpose:
            x = x.T          # a non-contiguous view of the right shape
        try:
            out = layer.forward(x)
        except Exception as err:  # noqa: BLE001
            assert kind in ("int64", "complex128", "bool"), f"refused {kind}: {err}"
            _expect_error(err, (TypeError, ValueError), "dtype")
            return
        want = x.astype(np.float64) @ layer.params["W"].astype(np.float64) \
            + layer.params["b"].astype(np.float64)
        assert kind not in ("complex128", "bool"), f"accepted {kind} input"
        tol = 1e-4 if wdtype == np.float32 else 1e-10
        np.testing.assert_allclose(out, want, rtol=tol, atol=tol)

    prop()


PROPERTIES = {f.__name__: f for f in (activation_backward, optimizer_load_state_dict,
                                       losses_inputs, one_hot_labels, linear_forward_inputs)}


# ------------------------------------------------------------------------------ helpers


def _numpy():
    import ddlib

    return ddlib.use_backend("numpy")


def _tree_equal(a, b):
    if isinstance(a, dict):
        return isinstance(b, dict) and set(a) == set(b) and all(_tree_equal(a[k], b[k])
                                                                for k in a)
    if isinstance(a, (list, tuple)):
        return (isinstance(b, (list, tuple)) and len(a) == len(b)
                and all(_tree_equal(x, y) for x, y in zip(a, b)))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (np.shape(a) == np.shape(b)
                and np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True))
    return a == b or (a != a and b != b)


def main():
    import ddlib

    backend, name = sys.argv[1], sys.argv[2]
    warnings.simplefilter("ignore")
    with ddlib.use_backend(backend):
        PROPERTIES[name]()
    print(f"PASSED {name} {SETTINGS.max_examples}")


if __name__ == "__main__":
    main()
