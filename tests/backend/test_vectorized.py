"""The cpu backend's elementwise loops compile to SIMD code on the CPU the tests run on.

Reads the LLVM IR numba produces for the float32 loops (the rules' plain block loops,
the non-finite count that decides between the plain and the guarded loop, activations) (compiled afresh: numba cannot show
the IR of cached code) and asks for 8-wide or wider float vectors: ``<8 x float>`` on
AVX2, ``<16 x float>`` on AVX-512.  A change that makes a loop scalar again (a store
inside ``if isfinite`` in the plain loop, an int64 counter, a division without
``error_model='numpy'``)
fails here, whatever the machine.
"""

import re

import numba as nb
import numpy as np
import pytest

from ddlib.backend import elementwise as E
from ddlib.backend.cpu import elementwise as CE

WIDE = re.compile(r"<(8|16|32) x float>")


def _ir(dispatcher):
    (sig,) = dispatcher.signatures
    return dispatcher.inspect_llvm(sig)


def _rule_args(name, n, write_point):
    rule = E.RULES[name]
    t = np.float32
    arrays = [np.full(n, 0.5, t) for _ in range(1 + len(rule.state) + 1)]  # w, state, g
    scalars = [t(x) for x in rule.prepare(*([0.1] * len(rule.hyper)))]
    p = np.zeros(n, t) if write_point else arrays[0]
    return arrays, scalars, p


@pytest.mark.parametrize("name,write_point", [("adam", False), ("momentum", False),
                                              ("nesterov", True), ("sgd", False),
                                              ("rmsprop", False), ("adagrad", False)])
def test_float32_rule_loops_are_vectorized(name, write_point):
    k = CE.RuleKernel(name, write_point, cache=False)
    arrays, scalars, p = _rule_args(name, 1000, write_point)
    w, *rest = arrays
    k.plain(w, *rest, *scalars, p)
    assert WIDE.search(_ir(k.plain)), f"{name}: the plain loop has no 8-wide float vectors"


def test_the_nonfinite_count_is_vectorized():
    count = nb.njit(error_model="numpy")(CE.count_nonfinite.py_func)
    x = np.ones(100, np.float32)
    x[[3, 50]] = [np.nan, -np.inf]
    assert count(x) == 2
    assert WIDE.search(_ir(count))


@pytest.mark.parametrize("parallel", [False, True])
def test_a_nonfinite_gradient_leaves_its_entries_and_only_they_take_the_slow_path(parallel):
    n = 5 * CE.BLOCK + 7
    k = CE.RuleKernel("adam", False, cache=False)
    (w, f, a, g), scalars, p = _rule_args("adam", n, False)
    w[:] = np.linspace(-1, 1, n, dtype=np.float32)
    g[:] = 0.25
    bad_at = [0, CE.BLOCK + 8, n - 1]   # in the first, second and last block
    g[bad_at] = [np.nan, np.inf, -np.inf]
    before = w.copy(), f.copy(), a.copy()
    got = k.parallel(w, f, a, g, *scalars, w, 3) if parallel else k.serial(w, f, a, g,
                                                                          *scalars, w)
    assert got == 3
    # the reference result: the guarded loop over the whole array
    want = [x.copy() for x in before]
    k.guarded(*want, g, *scalars, want[0])
    for new, old, ref in zip((w, f, a), before, want):
        np.testing.assert_array_equal(new[bad_at], old[bad_at])
        np.testing.assert_array_equal(new, ref)
        assert (np.delete(new, bad_at) != np.delete(old, bad_at)).all()


@pytest.mark.parametrize("kind", ["identity", "relu", "leaky_relu", "hardtanh"])
def test_float32_activation_loops_are_vectorized(kind):
    # (sigmoid and tanh call libm's exp/tanh, which numba does not vectorize without SVML)
    _, _, loops = CE.activation_loops(cache=False)
    x = np.linspace(-2, 2, 1000, dtype=np.float32)
    y = np.empty_like(x)
    loops[f"_fwd_{kind}"](x, np.float32(0.1), y)
    loops[f"_bwd_{kind}"](x, y, np.ones_like(x), np.float32(0.1), y.copy())
    for d in (loops[f"_fwd_{kind}"], loops[f"_bwd_{kind}"]):
        assert WIDE.search(_ir(d)), f"{kind}: {d.__name__} has no 8-wide float vectors"
