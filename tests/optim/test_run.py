"""trajectory(): any rule on a function given by its gradient."""

import numpy as np
import pytest

from ddlib import optim


def _bowl(w):
    return np.array([2.0 * w[0], 20.0 * w[1]])  # grad of x^2 + 10 y^2


def test_trajectory_shape_and_descent():
    for name, make in optim.RULES.items():
        rule = make(0.02) if name != "adadelta" else make()
        path = optim.trajectory(rule, _bowl, np.array([-1.0, 0.5]), 300)
        assert path.points.shape == (301, 2)
        np.testing.assert_array_equal(path.points[0], [-1.0, 0.5])
        f = path.points[:, 0] ** 2 + 10 * path.points[:, 1] ** 2
        assert f[-1] < 0.5 * f[0], name


def test_momentum_damps_zigzag_on_an_ellipse():
    """Fig. 3.11: at a rate where SGD zigzags across the narrow axis, momentum gets closer."""
    def valley(w):  # grad of 0.1 x^2 + 10 y^2: curvatures differ by 100x
        return np.array([0.2 * w[0], 20.0 * w[1]])

    x0 = np.array([-1.0, 0.5])
    sgd = optim.trajectory(optim.sgd(0.095), valley, x0, 60).points
    mom = optim.trajectory(optim.momentum(0.03, 0.9), valley, x0, 60).points
    assert np.all(np.sign(sgd[1:20, 1]) != np.sign(sgd[:19, 1]))  # y flips every step
    assert np.linalg.norm(mom[-1]) < 0.5 * np.linalg.norm(sgd[-1])


def test_record_state_and_nonfinite():
    path = optim.trajectory(optim.adam(0.1), _bowl, np.array([1.0, 1.0]), 5, record_state=True)
    assert len(path.states) == 5 and path.states[-1].count == 5

    def bad(w):
        return np.array([np.nan, 0.0]) if w[0] < 0.5 else _bowl(w)

    with pytest.raises(optim.NonFiniteGradient, match="step 2"):
        optim.trajectory(optim.sgd(0.2), bad, np.array([1.0, 1.0]), 10)
    path = optim.trajectory(optim.sgd(0.2), bad, np.array([1.0, 1.0]), 10, on_nonfinite="stop")
    assert path.diverged_at == 3 and len(path.points) == 3  # W_0..W_2; W_3 would need g(W_2)


def test_trajectory_rejects_bad_arguments():
    with pytest.raises(TypeError, match="rule"):
        optim.trajectory("sgd", _bowl, np.zeros(2), 3)
    with pytest.raises(ValueError, match="steps"):
        optim.trajectory(optim.sgd(), _bowl, np.zeros(2), -1)


def test_one_trajectory_type_records_losses_and_where_a_run_blew_up():
    from ddlib.chapter import surfaces

    assert surfaces.Trajectory is optim.Trajectory
    value = lambda pts: (pts ** 2).sum(axis=-1)  # noqa: E731
    path = optim.trajectory(optim.sgd(0.1), _bowl, np.array([1.0, 1.0]), 5, value=value)
    np.testing.assert_allclose(path.losses, value(path.points))
    assert not path.diverged and path.status == "ok" and path.rule == "sgd"
    # a rate above 2 / curvature: the loss grows by (1 - 2 lr)^2 = 9 per step
    blown = optim.trajectory(optim.sgd(2.0), lambda w: 2 * w, np.array([1.0]), 10,
                             value=lambda p: (p ** 2).sum(-1), max_loss=1e3, label="x^2")
    assert blown.diverged_at == 4 and blown.diverged_loss == pytest.approx(9.0 ** 4)
    assert len(blown.points) == 4 and blown.surface == "x^2"
    assert "diverged at step 4" in blown.status
    with pytest.raises(ValueError, match="steps_to needs the losses"):
        optim.trajectory(optim.sgd(0.1), _bowl, np.zeros(2), 2).steps_to(1e-3)
