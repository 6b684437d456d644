"""ddlib.notebook.controls: the browser's slider snapping, exact ladders, and Redraw's one draw
per action on one thread; then every default of every widget checked against its control."""

import ast
import asyncio
import json
import pathlib
import threading
import time

import ipywidgets as w
import pytest

from ddlib.notebook.controls import Redraw, browser_value, ladder, ladder_slider
from tests.notebook.helpers import value_controls

ROOT = pathlib.Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- the browser's snapping rule
def test_browser_value_snaps_a_float_slider_to_its_step_grid():
    # the saddle: start y = 0.01 on a slider stepping by 0.05 shows 0
    assert browser_value(w.FloatSlider(value=0.01, min=-2, max=2, step=0.05)) == 0.0
    assert browser_value(w.FloatSlider(value=0.04, min=-2, max=2, step=0.05)) == pytest.approx(0.05)
    # the grid starts at min, not at 0
    assert browser_value(w.FloatSlider(value=0.32, min=0, max=2, step=0.1)) == pytest.approx(0.3)
    assert browser_value(w.FloatSlider(value=0.32, min=0.05, max=2, step=0.1)) == pytest.approx(0.35)
    # the top of the range is reachable even off the grid (noUiSlider keeps 100 %)
    assert browser_value(w.FloatSlider(value=1.95, min=0, max=1.95, step=0.1)) == 1.95


def test_browser_value_snaps_the_exponent_of_a_log_slider():
    # the ellipse rate: 0.15 on exponents -4 ... 0.5 by 0.05 becomes 10 ** -0.8
    v = browser_value(w.FloatLogSlider(value=0.15, base=10, min=-4, max=0.5, step=0.05))
    assert v == pytest.approx(10 ** -0.8) and v == pytest.approx(0.1585, abs=1e-4)
    assert browser_value(w.FloatLogSlider(value=1e-3, base=10, min=-4, max=0, step=0.05)) == \
        pytest.approx(1e-3, rel=1e-12)
    # base 2, and the exponent clamped to the range first
    assert browser_value(w.FloatLogSlider(value=3.0, base=2, min=0, max=4, step=1)) == 4.0
    assert browser_value(w.FloatLogSlider(value=100.0, base=10, min=-1, max=1, step=0.5)) == 10.0


def test_browser_value_rounds_an_int_slider_like_javascript():
    assert browser_value(w.IntSlider(value=135, min=20, max=1348, step=20)) == 140
    assert browser_value(w.IntSlider(value=129, min=20, max=1348, step=20)) == 120
    # Math.round takes halves up, towards +inf, where Python's round takes them to even:
    # 5 is 2.5 steps of 2 above 0, and -5 is 2.5 steps above -10
    assert browser_value(w.IntSlider(value=5, min=0, max=20, step=2)) == 6
    assert browser_value(w.IntSlider(value=-5, min=-10, max=10, step=2)) == -4
    assert browser_value(w.IntSlider(value=7, min=0, max=10)) == 7


def test_exact_controls_show_what_they_hold():
    s = w.SelectionSlider(options=[0.1, 0.15, 0.2], value=0.15)
    assert browser_value(s) == 0.15
    assert browser_value(w.Dropdown(options=["a", "b"], value="b")) == "b"


def test_ladder_is_exact_decimal_rungs_plus_extras():
    rungs = ladder(1e-3, 1.0)
    assert rungs[0] == 1e-3 and rungs[-1] == 1.0
    assert {0.0015, 0.002, 0.003, 0.005, 0.007, 0.15, 0.5} <= set(rungs)
    assert rungs == sorted(rungs) and len(rungs) == 3 * 6 + 1
    assert 0.8 in ladder(0.01, 3.0, extra=[0.8]) and 0.8 not in ladder(0.01, 3.0)
    s = ladder_slider(0.15, "lr", 1e-4, 3.0)
    assert s.value == 0.15 and s.label == "0.15" and s.continuous_update is False
    assert ladder_slider(0.8, "lr", 0.01, 3.0).value == 0.8  # a default off the ladder joins it


# ---------------------------------------------------------------- Redraw
def _counted():
    calls = []
    return calls, lambda: calls.append(threading.current_thread())


def test_redraw_draws_once_per_change_and_once_per_hold():
    calls, draw = _counted()
    a, b = w.IntSlider(0, 0, 10), w.IntSlider(0, 0, 10)
    r = Redraw(draw)
    r.watch(a, b)
    a.value = 1
    assert len(calls) == 1
    with r.hold():
        a.value, b.value = 2, 3
        with r.hold():  # holds nest
            a.value = 4
        assert len(calls) == 1
    assert len(calls) == 2
    with r.hold():
        pass  # nothing asked: nothing drawn
    assert len(calls) == 2


def test_redraw_handler_batches_its_settings_into_one_draw():
    calls, draw = _counted()
    pick, a, b = w.Dropdown(options=["x", "y"]), w.IntSlider(0, 0, 10), w.IntSlider(0, 0, 10)
    r = Redraw(draw)
    r.watch(a, b)

    def load(change):
        with r.hold():
            a.value, b.value = 5, 6
            r.request()

    r.on_change(pick, load)
    pick.value = "y"
    assert len(calls) == 1 and (a.value, b.value) == (5, 6)


def test_a_change_from_another_thread_is_drawn_on_the_widget_thread():
    """The FT_Load_Glyph cause: a kernel subshell thread delivering a widget change.

    The widget is built inside a running event loop (as a notebook cell runs inside the
    kernel's); a value set on a worker thread stands for a comm message that ipykernel
    handles on a subshell thread.  The draw must still run on the thread that built the
    widget, so that it can never overlap a draw or a cell on that thread.
    """
    calls, draw = _counted()
    home = threading.current_thread()

    async def main():
        a = w.IntSlider(0, 0, 10)
        r = Redraw(draw)
        r.watch(a)
        await asyncio.to_thread(setattr, a, "value", 3)
        for _ in range(200):  # the draw was handed to this loop; let it run
            if calls:
                break
            await asyncio.sleep(0.005)

    asyncio.run(main())
    assert calls == [home]


def test_without_an_event_loop_draws_from_two_threads_never_overlap():
    active, overlaps, calls = [0], [], []

    def slow_draw():
        active[0] += 1
        if active[0] > 1:
            overlaps.append(True)
        time.sleep(0.02)
        calls.append(1)
        active[0] -= 1

    a, b = w.IntSlider(0, 0, 100), w.IntSlider(0, 0, 100)
    r = Redraw(slow_draw)  # built outside any event loop: the lock keeps draws apart
    r.watch(a, b)

    def move(s):
        for v in range(1, 6):
            s.value = v

    threads = [threading.Thread(target=move, args=(s,)) for s in (a, b)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(calls) == 10 and not overlaps


# ---------------------------------------------------------------- every widget's defaults
def _assert_representable(control, where):
    got, want = browser_value(control), control.value
    if isinstance(want, float):
        # equal up to the last bits of the browser's own float arithmetic (0.9 comes back as
        # 0.9000000000000001); a snap moves a value by a sizeable part of a step
        assert got == pytest.approx(want, rel=1e-12, abs=1e-12), (where, control.description, want, got)
    else:
        assert got == want, (where, control.description, want, got)


def test_every_default_of_every_surface_is_shown_exactly_by_the_race(capsys):
    from ddlib.chapter import surfaces
    from ddlib.notebook import race as race_ui

    ui = race_ui.optimizer_race()
    for name in surfaces.SURFACES:
        ui.race.surface.value = name
        s = surfaces.get(name)
        assert (ui.race.x0.value, ui.race.y0.value) == tuple(s.start)
        for c in value_controls(ui):
            _assert_representable(c, name)
    for name in race_ui.MOMENTUM_SURFACES:
        m = race_ui.momentum_race(name)
        for c in value_controls(m):
            _assert_representable(c, f"momentum/{name}")


def test_every_slider_of_the_redrawn_widgets_reports_only_where_a_drag_ends(capsys):
    from ddlib.notebook import race as race_ui

    for ui in (race_ui.optimizer_race().race, race_ui.momentum_race()):
        for c in value_controls(ui):
            if hasattr(c, "continuous_update"):
                assert c.continuous_update is False, c.description


def _notebook_controls():
    """(notebook, cell, source, control) for every slider built from literals in a notebook."""
    kinds = {"FloatSlider", "FloatLogSlider", "IntSlider", "SelectionSlider"}
    found = []
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for i, cell in enumerate(json.loads(nb.read_text())["cells"]):
            if cell["cell_type"] != "code":
                continue
            src = "\n".join(line for line in "".join(cell["source"]).splitlines()
                            if not line.lstrip().startswith(("%", "!")))
            for node in ast.walk(ast.parse(src)):
                if not isinstance(node, ast.Call):
                    continue
                f = node.func
                name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)
                if name not in kinds:
                    continue
                try:
                    args = [ast.literal_eval(a) for a in node.args]
                    kw = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
                except ValueError:
                    continue  # built from variables: the widget decides, see the tests above
                found.append((nb.name, i, ast.unparse(node), getattr(w, name)(*args, **kw)))
    return found


NOTEBOOK_CONTROLS = _notebook_controls()
# (notebook, slider source) of defaults known to snap whose notebook cannot be re-executed
# yet; none at present.  Strict: an entry turns into a failure once its slider is fixed.
NOT_YET = set()


def test_the_scan_sees_the_notebooks_widgets():
    assert len(NOTEBOOK_CONTROLS) > 40
    assert {nb for nb, *_ in NOTEBOOK_CONTROLS} >= {"03.01-overview.ipynb",
                                                    "03.05.06-second-order-derivatives.ipynb"}


def _case(nb, cell, src, control):
    if (nb, src) in NOT_YET:
        return pytest.param(nb, cell, src, control, marks=pytest.mark.xfail(
            strict=True, reason="snapped default; the notebook cannot be re-executed yet"))
    return pytest.param(nb, cell, src, control)


@pytest.mark.parametrize("nb, cell, src, control", [_case(*f) for f in NOTEBOOK_CONTROLS],
                         ids=[f"{nb}-cell{cell}-{i}" for i, (nb, cell, *_) in
                              enumerate(NOTEBOOK_CONTROLS)])
def test_every_literal_slider_default_in_the_notebooks_is_shown_exactly(nb, cell, src, control):
    _assert_representable(control, f"{nb} cell {cell}: {src}")
