"""ddlib.notebook.race: the race's rule settings, runs, plots and widget wiring, without a browser."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from ddlib import optim
from ddlib.chapter import race, surfaces
from ddlib.notebook import race as race_ui  # noqa: E402

# what each race name must be, given lr=0.03, adaptive_lr=0.02, beta=0.5, rho=0.8
EXPECTED = {
    "sgd": lambda: optim.sgd(0.03),
    "momentum": lambda: optim.momentum(0.03, 0.5),
    "nesterov": lambda: optim.nesterov(0.03, 0.5),
    "delta_bar_delta": lambda: optim.delta_bar_delta(0.03),
    "adagrad": lambda: optim.adagrad(0.02),
    "rmsprop": lambda: optim.rmsprop(0.02, 0.8),
    "rmsprop_nesterov": lambda: optim.rmsprop_nesterov(0.02, 0.5, 0.8),
    "adadelta": lambda: optim.adadelta(1.0, 0.8),
    "adam": lambda: optim.adam(0.02, rho_f=0.5, rho=0.8),
}


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_every_race_rule_is_listed_and_known_to_optim():
    assert set(race.RACE_RULES) == set(EXPECTED) == set(optim.RULES)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_race_rules_wire_the_sliders_to_the_right_parameters(name):
    rule = race.race_rules([name], lr=0.03, adaptive_lr=0.02, beta=0.5, rho=0.8)[name]
    got = surfaces.run("ellipse", rule, steps=6).points
    want = surfaces.run("ellipse", EXPECTED[name](), steps=6).points
    np.testing.assert_array_equal(got, want)
    # and a different setting of a slider the rule reads changes its path
    other = race.race_rules([name], lr=0.06, adaptive_lr=0.04, beta=0.6, rho=0.9)[name]
    assert not np.array_equal(surfaces.run("ellipse", other, steps=6).points, got)


def test_race_rules_rejects_unknown_or_no_rules_and_bad_settings():
    with pytest.raises(ValueError, match="unknown rule.*'sgdd'"):
        race.race_rules(["sgdd"])
    with pytest.raises(ValueError, match="at least one"):
        race.race_rules([])
    with pytest.raises(ValueError, match="beta"):
        race.race_rules(["momentum"], beta=1.0)
    with pytest.raises(ValueError, match="lr"):
        race.race_rules(["sgd"], lr=-1.0)


def test_race_records_divergence_instead_of_stopping():
    paths = race.race("x2_y10", race.race_rules(["sgd", "adam"], 0.01, 0.05),
                         start=(2.0, 2.0), steps=50)
    assert paths["sgd"].diverged and paths["sgd"].diverged_at == 1
    assert not paths["adam"].diverged and len(paths["adam"].points) == 51


def test_view_limits_follow_the_paths_up_to_a_cap():
    s = surfaces.get("bowl")
    near = surfaces.run(s, optim.sgd(0.1), start=(1.9, 1.9), steps=1)
    far = near._replace(points=np.array([[0.0, 0.0], [100.0, -2.5]]))
    (x0, x1), (y0, y1) = race_ui.view_limits(s, {"a": near})
    assert (x0, x1, y0, y1) == (-2.0, 2.0, -2.0, 2.0)
    (x0, x1), (y0, y1) = race_ui.view_limits(s, {"a": far})
    assert x1 == pytest.approx(6.0)  # capped at 3 x the half-width around the centre
    assert y0 < -2.5 and x0 == -2.0


def test_plot_race_draws_every_path_and_names_divergence():
    paths = race.race("saddle", race.race_rules(["sgd", "adagrad"], 0.1, 0.05), steps=200)
    assert paths["sgd"].diverged and not paths["adagrad"].diverged
    fig = race_ui.plot_race("saddle", paths)
    ax_c, ax_l = fig.axes[:2]
    xs = [ln.get_xdata() for ln in ax_c.get_lines()]
    assert any(len(x) == len(paths["sgd"].points) for x in xs)
    assert any(len(x) == len(paths["adagrad"].points) for x in xs)
    labels = [t.get_text() for t in ax_l.get_legend().get_texts()]
    assert labels[0].startswith("sgd: diverged at step") and labels[1] == "adagrad"
    assert ax_l.get_yscale() == "symlog"  # the saddle has no floor


def test_plot_race_shows_loss_above_the_minimum_on_a_log_scale():
    fig, paths = race_ui.race_figure("rosenbrock", ["sgd", "adam"], steps=40)
    ax_l = fig.axes[1]
    assert ax_l.get_yscale() == "log"
    line = ax_l.get_lines()[0]
    np.testing.assert_allclose(line.get_ydata(), paths["sgd"].losses)  # floor is 0
    assert len(paths["sgd"].points) == 41


def test_race_figure_uses_the_surface_defaults_and_reuses_a_figure():
    fig = plt.figure()
    out, paths = race_ui.race_figure("ellipse", ["sgd"], fig=fig)
    assert out is fig
    d = race.SURFACE_DEFAULTS["ellipse"]
    assert len(paths["sgd"].points) == d["steps"] + 1
    want = surfaces.run("ellipse", optim.sgd(d["lr"]), steps=d["steps"]).points
    np.testing.assert_array_equal(paths["sgd"].points, want)
    race_ui.race_figure("bowl", ["sgd", "adam"], fig=fig)
    assert len(fig.axes) == 2  # redrawn in place, not stacked


def test_every_surface_has_defaults():
    assert set(race.SURFACE_DEFAULTS) == set(surfaces.SURFACES)


SMALL = dict(epochs=2, hidden=8, n_train=150, seed=0)


def test_mlp_race_trains_each_rule_and_caches_by_settings():
    race._mlp_run.cache_clear()
    res = race.mlp_race(["sgd", "adam"], lr=0.1, adaptive_lr=3e-3, **SMALL)
    assert race._mlp_run.cache_info().misses == 2
    for r in res.values():
        assert r.status == "ok" and len(r.train_loss) == 2 and len(r.test_loss) == 2
        assert r.train_loss[1] < r.train_loss[0]
    assert res["sgd"].train_loss != res["adam"].train_loss
    again = race.mlp_race(["adam", "sgd"], lr=0.1, adaptive_lr=3e-3, **SMALL)
    assert again["sgd"] is res["sgd"] and race._mlp_run.cache_info().misses == 2
    other = race.mlp_race(["sgd"], lr=0.05, adaptive_lr=3e-3, **SMALL)
    assert other["sgd"] != res["sgd"] and race._mlp_run.cache_info().misses == 3


def test_mlp_race_reports_divergence():
    res = race.mlp_race(["sgd"], lr=1e3, **SMALL)
    assert res["sgd"].status.startswith("diverged")


def test_plot_mlp_race_draws_both_losses_per_rule():
    res = race.mlp_race(["sgd", "adam"], lr=0.1, adaptive_lr=3e-3, **SMALL)
    fig = race_ui.plot_mlp_race(res)
    tr, te = fig.axes[:2]
    assert len(tr.get_lines()) == len(te.get_lines()) == 2
    np.testing.assert_allclose(te.get_lines()[1].get_ydata(), res["adam"].test_loss)


def test_optimizer_race_widget_wires_surface_choice_to_start_and_rates(capsys):
    ui = race_ui.optimizer_race("rosenbrock", rules=("sgd", "adam"))
    rules_w, tabs = ui.children
    assert rules_w.value == ("sgd", "adam") and len(tabs.children) == 2
    controls, _ = tabs.children[0].children
    left, right = controls.children
    surf_w, lr_w, alr_w, steps_w = left.children
    beta_w, rho_w, x0_w, y0_w = right.children
    surf_w.value = "cliff"
    cliff = surfaces.get("cliff")
    assert (x0_w.value, y0_w.value) == tuple(cliff.start)
    assert (x0_w.min, x0_w.max) == cliff.xlim
    d = race.SURFACE_DEFAULTS["cliff"]
    assert lr_w.value == pytest.approx(d["lr"]) and steps_w.value == d["steps"]
