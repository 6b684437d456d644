"""The race widget in a real ipykernel, its messages sent on a kernel subshell as JupyterLab
4.6 sends them by default: observers may run on the subshell's thread, draws must not.

This is the scene of the FT_Load_Glyph failure reported in issue 19: with the widget's
messages on a subshell, ipykernel 7.4 runs a widget's observers on that subshell's thread
from the widget's second message on, while the first messages of other widgets (and the
notebook's cells) run on the main thread, so two redraws of the race's one figure ran at
the same time; matplotlib's mathtext and FreeType faces are not safe against that.
"""

import pathlib
import sys
import time

import pytest

jupyter_client = pytest.importorskip("jupyter_client")

from jupyter_client.manager import start_new_kernel  # noqa: E402

SETUP = """
import threading, matplotlib
matplotlib.use("Agg")
from ddlib.notebook import race as race_ui
drawn, observed = [], []
_draw = race_ui.race_figure
def _traced(*a, **k):
    drawn.append(threading.current_thread().name)
    return _draw(*a, **k)
race_ui.race_figure = _traced
ui = race_ui.optimizer_race("rosenbrock", rules=("sgd", "adam"))
for c in (ui.race.surface, ui.race.beta):
    c.observe(lambda ch: observed.append(threading.current_thread().name), "value")
print(ui.race.surface.comm.comm_id, ui.race.beta.comm.comm_id,
      list(ui.race.surface.options).index("ellipse"))
"""


ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture
def kernel():
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        yield kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def _run(kc, code, timeout=120):
    """Execute ``code`` in the kernel's main shell; its stdout, or the error's traceback."""
    msg_id = kc.execute(code)
    out = []
    while True:
        m = kc.get_iopub_msg(timeout=timeout)
        if m["parent_header"].get("msg_id") != msg_id:
            continue
        if m["msg_type"] == "stream" and m["content"]["name"] == "stdout":
            out.append(m["content"]["text"])
        elif m["msg_type"] == "error":
            raise AssertionError("\n".join(m["content"]["traceback"]))
        elif m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
            return "".join(out)


def test_widget_messages_on_a_subshell_are_drawn_on_the_main_thread(kernel):
    kc = kernel
    kc.kernel_info()
    info = kc.get_shell_msg(timeout=30)["content"]
    if "kernel subshells" not in info.get("supported_features", []):
        pytest.skip("this ipykernel has no subshells")
    surface_id, beta_id, ellipse = _run(kc, f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
                                        + SETUP).split()
    kc.control_channel.send(kc.session.msg("create_subshell_request", {}))
    subshell = kc.control_channel.get_msg(timeout=30)["content"]["subshell_id"]

    def send(comm_id, state):  # a widget update from the browser, on the subshell
        m = kc.session.msg("comm_msg", {"comm_id": comm_id, "data": {
            "method": "update", "state": state, "buffer_paths": []}})
        m["header"]["subshell_id"] = subshell
        kc.shell_channel.send(m)

    def wait_for(n):
        deadline = time.monotonic() + 120
        while int(_run(kc, "print(len(drawn))")) < n and time.monotonic() < deadline:
            time.sleep(0.1)

    send(beta_id, {"value": 0.8})                # beta's first message: the main thread ...
    wait_for(2)
    send(beta_id, {"value": 0.7})                # ... its next ones: the subshell's thread,
    send(surface_id, {"index": int(ellipse)})    # while the dropdown's first is on main
    send(beta_id, {"value": 0.6})
    wait_for(5)
    drawn, observed = (eval(_run(kc, f"print({v})")) for v in ("drawn", "observed"))
    assert len(drawn) == 5, drawn                   # built + 4 changes: one draw each
    assert set(drawn) == {"MainThread"}, drawn
    assert _run(kc, "print(ui.race.lr.value, ui.race.beta.value)").split() == ["0.15", "0.6"]
    if not any(name.startswith("subshell") for name in observed):
        pytest.skip(f"no observer ran on a subshell thread ({observed}): nothing to keep apart "
                    f"with this ipykernel on {sys.platform}")
