"""Plotting helpers shared by the notebooks (matplotlib only, modest dpi, no global state
beyond matplotlib's rcParams)."""

import numpy as np


def notebook_setup(seed=0, dpi=72):
    """Seed, print precision and figure defaults for a notebook; returns a Generator.

    Notebooks are re-run by nbval and compared with their stored outputs, so numbers are
    printed with four decimals and figures are small.
    """
    import matplotlib

    try:  # inside Jupyter, draw figures into the notebook whatever MPLBACKEND says
        from IPython import get_ipython

        shell = get_ipython()
        if shell is not None and type(shell).__name__ == "ZMQInteractiveShell":
            shell.run_line_magic("matplotlib", "inline")
    except ImportError:
        pass
    matplotlib.rcParams.update({
        "figure.dpi": dpi,
        "savefig.dpi": dpi,
        "figure.figsize": (6.4, 3.6),
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.spines.top": False,
        "axes.spines.right": False,
    })
    np.set_printoptions(precision=4, suppress=True)
    return np.random.default_rng(seed)


def loss_curve(ax, values, label=None, smooth=0, **kw):
    """Plot a loss per step; ``smooth`` > 1 adds a moving average of that width."""
    values = np.asarray(values, dtype=float)
    line = ax.plot(values, alpha=0.35 if smooth > 1 else 1.0, label=None if smooth > 1 else label, **kw)
    if smooth > 1 and len(values) >= smooth:
        k = np.ones(smooth) / smooth
        ax.plot(np.arange(smooth - 1, len(values)), np.convolve(values, k, mode="valid"),
                color=line[0].get_color(), label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    return ax
