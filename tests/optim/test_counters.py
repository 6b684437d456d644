"""Optimizer owns one non-finite counter per parameter: step() checks them, step(check=False)
defers, check_finite() reads later; the same on every backend, fused or explicit."""

import numpy as np
import pytest

import ddlib
from ddlib import optim


class _Model:
    """Two parameters whose gradients a test sets by hand."""

    def __init__(self, be, dtype=np.float64):
        rng = np.random.default_rng(5)
        self.be = be
        self.params = {"W": be.asarray(rng.normal(size=(3, 4)).astype(dtype)),
                       "b": be.asarray(rng.normal(size=5).astype(dtype))}
        self.grads = {k: be.zeros(v.shape, dtype) for k, v in self.params.items()}

    def named_parameters(self):
        return [(k, self, k) for k in self.params]

    def set_grads(self, nan_in=None):
        rng = np.random.default_rng(6)
        for k, p in self.params.items():
            g = rng.normal(size=p.shape)
            if k == nan_in:
                g.flat[1] = np.nan
            self.grads[k] = self.be.asarray(g.astype(p.dtype))

    def host(self):
        return {k: self.be.to_numpy(v).copy() for k, v in self.params.items()}


RULES = {
    "sgd": lambda: optim.sgd(0.1),
    "nesterov": lambda: optim.nesterov(0.05, 0.9),
    "clip_norm+adam": lambda: optim.chain(optim.clip_by_norm(0.5), optim.adam(0.01)),
    "clip_value+momentum": lambda: optim.chain(optim.clip_by_value(0.2), optim.momentum(0.1)),
    "decay+rmsprop": lambda: optim.rmsprop(0.01, weight_decay=0.1),
}


def test_counters_live_beside_the_parameters(backend):
    m = _Model(backend)
    opt = optim.Optimizer(m, optim.adam())
    assert backend.is_native(opt.nonfinite)
    assert opt.nonfinite.dtype == np.int64 and opt.nonfinite.shape == (2,)
    assert opt.names == ["W", "b"]


@pytest.mark.parametrize("name", list(RULES))
def test_step_raises_names_the_parameter_and_resets(backend, name):
    m = _Model(backend)
    opt = optim.Optimizer(m, RULES[name]())
    m.set_grads()
    opt.step()
    opt.step()
    m.set_grads(nan_in="b")
    before = m.host()
    with pytest.raises(optim.NonFiniteGradient, match="'b' at optimizer step 2") as err:
        opt.step()
    assert (err.value.param, err.value.step, err.value.first) == ("b", 2, 2)
    after = m.host()
    assert after["b"].flat[1] == before["b"].flat[1]  # the NaN entry left its weight alone
    assert all(np.isfinite(v).all() for v in after.values())
    assert backend.to_numpy(opt.nonfinite).tolist() == [0, 0]  # reset by the check
    m.set_grads()
    opt.step()  # training could go on (after reloading a checkpoint, say)


@pytest.mark.parametrize("fused", [True, False])
def test_deferred_check_covers_every_step_since_the_last(backend, fused):
    if not fused and backend.name == "cuda":
        pytest.skip("the explicit equations run on host arrays only")
    m = _Model(backend)
    opt = optim.Optimizer(m, optim.momentum(0.1, 0.9), fused=fused)
    m.set_grads()
    opt.step(check=False)
    opt.check_finite()  # nothing counted: no error
    m.set_grads(nan_in="W")
    opt.step(check=False)
    m.set_grads()
    opt.step(check=False)
    assert backend.to_numpy(opt.nonfinite)[0] > 0  # counted, not raised
    with pytest.raises(optim.NonFiniteGradient,
                       match="'W' between optimizer steps 1 and 2") as err:
        opt.check_finite()
    assert (err.value.first, err.value.step) == (1, 2)
    assert backend.to_numpy(opt.nonfinite).tolist() == [0, 0]
    opt.check_finite()  # reset: the next check is clean
    assert opt.steps == 3


def test_explicit_path_touches_nothing_at_a_non_finite_gradient():
    m = _Model(ddlib.get_backend("numpy"))
    opt = optim.Optimizer(m, optim.adam(0.01), fused=False)
    m.set_grads()
    opt.step()
    state, before = opt.state_dict(), m.host()
    m.set_grads(nan_in="b")
    with pytest.raises(optim.NonFiniteGradient, match="'b' at optimizer step 1"):
        opt.step()
    for k, v in m.host().items():
        np.testing.assert_array_equal(v, before[k])  # W too: the step was not taken
    assert opt.state.count == state["state"].count == 1


def test_check_finite_accepts_a_copy_taken_by_the_caller(backend):
    """DeviceTrainer packs the counters with its loss and passes that host copy."""
    m = _Model(backend)
    opt = optim.Optimizer(m, optim.sgd(0.1))
    m.set_grads(nan_in="b")
    opt.step(check=False)
    counts = backend.to_numpy(opt.nonfinite).astype(np.float64)
    with pytest.raises(optim.NonFiniteGradient, match="'b'"):
        opt.check_finite(counts)
    assert backend.to_numpy(opt.nonfinite).tolist() == [0, 0]
    opt.check_finite(np.zeros(2))


def test_a_clipped_chain_bounds_the_finite_entries_when_some_are_nan(backend):
    """The fused chain does not stop at a NaN (that would need the counters read back):
    clipping leaves the NaN entry out of the norm, so the finite entries' step stays
    bounded, and the NaN entry's weight is untouched."""
    m = _Model(backend)
    m.set_grads(nan_in="W")
    g = {k: backend.to_numpy(v) for k, v in m.grads.items()}
    for k in g:
        g[k] = np.where(np.isfinite(g[k]), 100 * g[k], g[k])  # far beyond the threshold
        m.grads[k] = backend.asarray(g[k])
    opt = optim.Optimizer(m, optim.chain(optim.clip_by_norm(1.0), optim.sgd(0.1)))
    before = m.host()
    opt.step(check=False)
    after = m.host()
    moved = np.sqrt(sum(float(np.sum((after[k] - before[k]) ** 2)) for k in after))
    assert 0 < moved <= 0.1 * (1 + 1e-9)
    assert after["W"].flat[1] == before["W"].flat[1]
    with pytest.raises(optim.NonFiniteGradient, match="'W'"):
        opt.check_finite()


def test_non_finite_gradient_message_forms():
    assert "at optimizer step 4" in str(optim.NonFiniteGradient("w", 4))
    err = optim.NonFiniteGradient("w", 9, first=5)
    assert "between optimizer steps 5 and 9" in str(err) and err.first == 5


@pytest.mark.cuda
def test_counters_follow_a_model_moved_after_the_optimizer_was_built():
    from ddlib.backend import cuda_unavailable_reason
    from ddlib.device import backend_of, to_device

    if cuda_unavailable_reason() is not None:
        pytest.skip(cuda_unavailable_reason())
    from ddlib import layers

    net = layers.mlp([3, 2], rng=0)
    opt = optim.Optimizer(net, optim.sgd(0.1))  # no state arrays: sgd survives a move
    opt.nonfinite[1] = 4  # counted before the move, not yet checked
    to_device(net)
    with ddlib.use_backend("cuda"):
        opt.step(check=False)
    assert backend_of(opt.nonfinite) == "cuda"
    with pytest.raises(optim.NonFiniteGradient, match="'0.b'"):
        opt.check_finite()
