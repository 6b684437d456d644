"""ddlib.notebook.race: the race's rule settings, runs, plots and widget wiring, without a browser
(one redraw per user action, each surface's defaults, draws kept on the widget's thread)."""

import asyncio
import threading

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from ddlib import optim
from ddlib.chapter import race, surfaces
from ddlib.notebook import race as race_ui  # noqa: E402
from ddlib.notebook.controls import browser_value  # noqa: E402
from tests.notebook.helpers import value_controls  # noqa: E402

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


# ---------------------------------------------------------------- one user action, one redraw
@pytest.fixture
def draws(monkeypatch):
    """The surface of every SurfaceRace.draw call (the widget's one redraw), in order."""
    calls = []
    draw = race_ui.SurfaceRace.draw

    def counted(self):
        calls.append(self.surface.value)
        return draw(self)

    monkeypatch.setattr(race_ui.SurfaceRace, "draw", counted)
    return calls


def _browser_echo(widget):
    """What a browser sends back when the widget first appears: a slider whose position is
    reported while it updates (continuous_update) reports where its value was snapped to."""
    for c in value_controls(widget):
        if getattr(c, "continuous_update", False):
            c.value = browser_value(c)


def test_the_race_draws_once_when_it_first_appears(draws, capsys):
    ui = race_ui.optimizer_race("rosenbrock")
    assert draws == ["rosenbrock"]
    _browser_echo(ui)
    assert draws == ["rosenbrock"]
    m = race_ui.momentum_race()
    _browser_echo(m)
    assert draws == ["rosenbrock", "local_minima"]


def test_a_new_surface_is_one_redraw_with_that_surfaces_defaults(draws, capsys):
    ui = race_ui.optimizer_race("rosenbrock").race
    for name in [n for n in surfaces.SURFACES if n != "rosenbrock"] + ["rosenbrock"]:
        draws.clear()
        ui.surface.value = name
        assert draws == [name]
        s, d = surfaces.get(name), race.SURFACE_DEFAULTS[name]
        assert (ui.x0.value, ui.y0.value) == tuple(s.start)
        assert (ui.x0.min, ui.x0.max, ui.y0.min, ui.y0.max) == s.xlim + s.ylim
        assert (ui.lr.value, ui.adaptive_lr.value, ui.steps.value) == (d["lr"], d["adaptive_lr"],
                                                                        d["steps"])


def test_every_control_is_one_redraw_per_change(draws, capsys):
    ui = race_ui.optimizer_race("ellipse", rules=("sgd", "adam")).race
    moves = [(ui.rules, ("sgd", "momentum", "adam")), (ui.lr, 0.2), (ui.adaptive_lr, 0.05),
             (ui.steps, 150), (ui.beta, 0.8), (ui.rho, 0.95), (ui.x0, -1.5), (ui.y0, 0.5)]
    for control, value in moves:
        draws.clear()
        control.value = value
        assert draws == ["ellipse"], control.description
    draws.clear()
    ui.rules.value = ()
    assert draws == ["ellipse"]  # and the output says why there is no figure
    assert "pick at least one rule" in capsys.readouterr().out


def test_the_digits_tab_trains_once_per_click(monkeypatch, capsys):
    clicks = []
    monkeypatch.setattr(race_ui.OptimizerRace, "train_mlp", lambda self: clicks.append(1))
    ui = race_ui.optimizer_race()
    assert clicks == []  # nothing trains until asked
    ui.train.click()
    ui.train.click()
    assert clicks == [1, 1]


def test_the_momentum_widget_loads_each_surfaces_defaults(draws, capsys):
    m = race_ui.momentum_race()
    assert m.rules.value == ("sgd", "momentum", "nesterov")
    assert list(m.surface.options) == list(race_ui.MOMENTUM_SURFACES)
    assert m.lr.value == race.SURFACE_DEFAULTS["local_minima"]["lr"]
    for name in ["rosenbrock", "ellipse", "bowl", "local_minima"]:
        draws.clear()
        m.surface.value = name
        d = race.SURFACE_DEFAULTS[name]
        assert draws == [name] and (m.lr.value, m.steps.value) == (d["lr"], d["steps"])
    # the widget's settings on Rosenbrock: none of the three rules diverges, while the rate
    # it used to keep from the first surface (0.5) throws them all out at the first step
    m.surface.value = "rosenbrock"
    rules = race.race_rules(m.rules.value, m.lr.value, m.adaptive_lr.value, m.beta.value)
    paths = race.race("rosenbrock", rules, (m.x0.value, m.y0.value), m.steps.value)
    assert not any(p.diverged for p in paths.values())
    kept = race.race("rosenbrock", race.race_rules(m.rules.value, 0.5, beta=m.beta.value),
                     steps=m.steps.value)
    assert all(p.diverged_at == 1 for p in kept.values())


def test_a_change_delivered_on_a_kernel_thread_is_drawn_on_the_widget_thread(monkeypatch,
                                                                              capsys):
    """ipykernel 7 runs widget observers on a subshell thread once JupyterLab sends a widget's
    messages there; two draws of the widget's one figure must still never run at once."""
    seen = []
    draw = race_ui.SurfaceRace.draw

    def traced(self):
        seen.append(threading.current_thread())
        return draw(self)

    monkeypatch.setattr(race_ui.SurfaceRace, "draw", traced)

    async def cell():  # a notebook cell runs inside the kernel's event loop
        ui = race_ui.optimizer_race("ellipse", rules=("sgd",)).race
        await asyncio.to_thread(setattr, ui.beta, "value", 0.5)     # the subshell's message
        await asyncio.to_thread(setattr, ui.surface, "value", "bowl")
        for _ in range(400):
            if len(seen) == 3:
                break
            await asyncio.sleep(0.005)
        return ui

    ui = asyncio.run(cell())
    assert seen == [threading.current_thread()] * 3
    assert ui.lr.value == race.SURFACE_DEFAULTS["bowl"]["lr"]
