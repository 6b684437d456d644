"""What every ddlib widget needs from its controls: exact defaults and one redraw per action.

* ``browser_value(control)`` is the value a browser's slider shows, and sends back, for the
  control's value: ipywidgets' sliders snap to their step grid in the browser, not in the
  kernel, so a default off the grid silently becomes another number;
* ``ladder_slider(value, ...)`` picks a rate (or any value best moved in log scale) from
  a ladder of exact values, 1, 1.5, 2, 3, 5, 7 per decade plus the default, so 0.15 stays
  0.15;
* ``Redraw(draw)`` turns widget events into calls of ``draw()``: one per user action,
  never two at once, always on the thread that built the widget.

Example::

    lr = ladder_slider(0.15, "lr")
    redraw = Redraw(lambda: print("draw at", lr.value))
    redraw.watch(lr)
    lr.value = 0.2          # prints once
    with redraw.hold():     # a batch of changes: one draw when the block ends
        lr.value = 0.3
        lr.value = 0.5
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading

# a ladder of values even in log scale, every rung a short decimal
_MANTISSAS = ("1", "1.5", "2", "3", "5", "7")


def ladder(lo=1e-4, hi=3.0, extra=()):
    """Sorted values from ``lo`` to ``hi``: 1, 1.5, 2, 3, 5 and 7 times each power of ten.

    Each rung is parsed from its decimal (``float("1.5e-1") == 0.15``), so a default written
    as a literal compares equal to its rung.  ``extra`` values are added as rungs.
    """
    rungs = {float(f"{m}e{e}") for e in range(-12, 13) for m in _MANTISSAS}
    return sorted({v for v in rungs if lo <= v <= hi} | {float(v) for v in extra})


def ladder_slider(value, description="", lo=1e-4, hi=3.0, extra=(), **kw):
    """A SelectionSlider over ``ladder(lo, hi, extra + (value,))``, set to ``value``.

    For rates, ratios and other values best moved in log scale.  The browser sends the
    index of a rung, never a float of its own making, so every value offered reaches the
    kernel exactly.  ``continuous_update`` is off: the kernel hears where a drag ends, not
    every rung it crossed.
    """
    import ipywidgets as w

    rungs = ladder(lo, hi, tuple(extra) + (value,))
    kw.setdefault("continuous_update", False)
    return w.SelectionSlider(options=[(f"{v:g}", v) for v in rungs], value=float(value),
                             description=description, **kw)


def _js_round(x):
    """JavaScript's Math.round: the nearest integer, halves rounded up (towards +inf)."""
    r = math.floor(x)
    return r + 1 if x - r >= 0.5 else r


def _nouislider_snap(v, lo, hi, step):
    """Where noUiSlider 15 (ipywidgets 8's slider) puts ``v`` on the range [lo, hi] by ``step``.

    The same operations in the same order as its Spectrum: the value becomes a percentage of
    the range, the percentage is rounded to a whole number of steps (each step also a
    percentage), clamped to [0, 100] and turned back into a value.  The top of the range
    is always reachable, even when ``hi - lo`` is no multiple of ``step``.
    """
    width = hi - lo
    if v >= hi:
        return hi
    pct = ((v + abs(lo) if lo < 0 else v - lo) * 100) / width   # toStepping
    step_pct = (step * 100) / width                             # handleStepPoint
    pct = _js_round(pct / step_pct) * step_pct                  # getStep (closest)
    pct = max(min(pct, 100), 0)                                 # limit
    if pct >= 100:
        return hi
    return (pct * width) / 100 + lo                             # fromStepping


def browser_value(control, value=None):
    """The value a browser shows for ``control`` at ``value`` (its own value by default).

    For a FloatSlider or IntSlider that is the value snapped to ``min + k * step`` (and an
    integer for IntSlider); for a FloatLogSlider the exponent is snapped instead and the
    value is ``base ** exponent``.  The rule is read from ipywidgets 8's slider views
    (``packages/controls/src/widget_int.ts`` and ``widget_float.ts``) and noUiSlider 15.4,
    which they use.  Controls holding exact values (selection sliders, dropdowns, text
    boxes) show what they hold.  This is the number that comes back to the kernel if the
    browser sends the slider's position (on creation, when ``continuous_update`` is on, or
    at the first touch of the handle).
    """
    import ipywidgets as w

    v = control.value if value is None else value
    if isinstance(control, w.FloatLogSlider):
        base, lo, hi = control.base, control.min, control.max
        exponent = min(max(math.log(v) / math.log(base), lo), hi)          # logCalc
        return base ** _nouislider_snap(exponent, lo, hi, control.step)
    if isinstance(control, (w.FloatSlider, w.IntSlider)):
        snapped = _nouislider_snap(v, control.min, control.max, control.step)
        return _js_round(snapped) if isinstance(control, w.IntSlider) else snapped
    return v


def _running_loop():
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class Redraw:
    """Calls ``draw()`` once per user action, one call at a time, on the widget's own thread.

    * ``watch(*controls)``: moving any of them asks for one draw;
    * ``on_change(control, handler)``: ``handler(change)`` runs when it moves (a handler that
      sets several controls wraps the settings in ``hold()``); ``on_click(button)``: a click
      asks for one draw;
    * ``hold()``: requests inside the block only count; leaving it draws once if any came;
    * ``request()``: ask for a draw now (or at the end of the current hold).

    Why the thread matters: JupyterLab 4.6 (the version installed here) sends widget
    messages to a kernel subshell by default (Settings, Kernel, "Kernel Comms over
    subshells"), and ipykernel 7.4 then runs a widget's observers on that subshell's thread
    once it has heard from the widget there, while other widgets' observers and the
    notebook's cells still run on the main thread.  Two draws of one matplotlib figure, or a
    widget's draw and a cell's plot, could then run at the same time, and matplotlib's text
    rendering is not safe against that (one mathtext parser shared by all threads, FreeType
    faces read through Python file objects).  So a change that arrives on another thread is
    handed to the event loop of the thread that built the widget (the kernel's main
    thread); without a running loop there, a lock still keeps draws apart.
    """

    def __init__(self, draw):
        self._draw = draw
        self._held = 0
        self._wanted = False
        self._lock = threading.RLock()
        self._home = threading.current_thread()
        self._loop = _running_loop()

    def _at_home(self, fn, *args):
        """Run ``fn(*args)`` on the widget's thread (now, if this is it), never two at once."""
        loop = self._loop
        if threading.current_thread() is not self._home and loop is not None and loop.is_running():
            try:
                loop.call_soon_threadsafe(self._locked, fn, *args)
                return
            except RuntimeError:  # that loop is closed: run here, under the lock
                pass
        self._locked(fn, *args)

    def _locked(self, fn, *args):
        with self._lock:
            fn(*args)

    def request(self, *_):
        """Ask for a draw (an observer: the change itself is not needed)."""
        with self._lock:
            if self._held:
                self._wanted = True
            else:
                self._wanted = False
                self._draw()

    @contextlib.contextmanager
    def hold(self):
        """Count requests instead of drawing; draw once at the end if any came."""
        with self._lock:
            self._held += 1
            try:
                yield
            finally:
                self._held -= 1
            if not self._held and self._wanted:
                self.request()

    def watch(self, *controls):
        """A change of any control's value asks for one draw."""
        for c in controls:
            c.observe(lambda change: self._at_home(self.request), names="value")

    def on_change(self, control, handler):
        """``handler(change)`` runs, on the widget's thread, when ``control``'s value changes."""
        control.observe(lambda change: self._at_home(handler, change), names="value")

    def on_click(self, button):
        """A click of ``button`` asks for one draw."""
        button.on_click(lambda _: self._at_home(self.request))
