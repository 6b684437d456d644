"""The element-function table drives the compiled backends' update steps."""

import inspect

import numpy as np
import pytest

import ddlib
from ddlib.backend import elementwise as E
from ddlib.backend.numpy_ref import optim as ref_optim


@pytest.mark.parametrize("name", list(E.RULES))
def test_generated_steps_have_the_reference_signature(name):
    cpu = ddlib.get_backend("cpu")
    want = inspect.signature(getattr(ref_optim, f"{name}_step"))
    assert E.rule_signature(name) == want
    assert inspect.signature(getattr(cpu, f"{name}_step")) == want


@pytest.mark.parametrize("name", list(E.RULES))
def test_every_rule_row_steps_like_the_reference(name):
    rule = E.RULES[name]
    rng = np.random.default_rng(3)
    hyper = {"lr": 0.05, "lr_t": 0.01, "beta": 0.9, "rho": 0.9, "rho_f": 0.8,
             "eps": 1e-6, "kappa": 0.01, "phi": 0.2, "theta": 0.6}
    out = {}
    for be in (ddlib.get_backend("cpu"), ddlib.get_backend("numpy")):
        w = rng.normal(size=(9, 7))
        state = [np.abs(rng.normal(size=w.shape)) for _ in rule.state]
        g = rng.normal(size=w.shape)
        g[2, 3] = np.nan
        bad = np.zeros(1, np.int64)
        kw = {"point": np.zeros_like(w)} if rule.point else {}
        rng = np.random.default_rng(3)  # the same arrays for both backends
        getattr(be, f"{name}_step")(w, *state, g, *(hyper[h] for h in rule.hyper),
                                    bad=bad, **kw)
        out[be.name] = [w, *state, *kw.values(), bad]
    for got, want in zip(out["cpu"], out["numpy"]):
        np.testing.assert_allclose(got, want, rtol=1e-12)
    assert out["cpu"][-1][0] == 1


def test_bad_arguments_are_named():
    cpu = ddlib.get_backend("cpu")
    w = np.zeros(4)
    with pytest.raises(ValueError, match="g must have shape"):
        cpu.adam_step(w, np.zeros(4), np.zeros(4), np.zeros(5), 0.1, 0.9, 0.999, 1e-8)
    with pytest.raises(TypeError):
        cpu.adam_step(w, np.zeros(4), np.zeros(4), np.zeros(4), 0.1, 0.9)  # missing args
