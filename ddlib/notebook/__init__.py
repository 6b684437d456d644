"""Notebook UI: plotting helpers and the ipywidgets wiring.

Nothing in the library imports this package; notebooks do.  ``notebook_setup`` seeds and
styles a notebook, ``loss_curve`` draws a loss per step, ``ddlib.notebook.race`` holds
the optimizer race's plots and widgets, and ``ddlib.notebook.controls`` what every widget
needs from its controls (defaults a browser shows exactly, one redraw per action).
"""

from .plots import loss_curve, notebook_setup

__all__ = ["notebook_setup", "loss_curve"]
