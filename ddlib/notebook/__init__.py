"""Notebook UI: plotting helpers and the ipywidgets wiring.

Nothing in the library imports this package; notebooks do.  ``notebook_setup`` seeds and
styles a notebook, ``loss_curve`` draws a loss per step, and ``ddlib.notebook.race`` holds
the optimizer race's plots and widgets.
"""

from .plots import loss_curve, notebook_setup

__all__ = ["notebook_setup", "loss_curve"]
