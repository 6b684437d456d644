"""ddlib: the executable companion to Chapter 3, "Training Deep Neural Networks".

Importing ddlib is cheap: numba and the kernels load on first use.  Submodules are
loaded lazily too, so ``ddlib.layers``, ``ddlib.optim`` and friends work after a plain
``import ddlib``.
"""

import importlib

from .backend import (
    BACKENDS,
    BackendUnavailable,
    available_backends,
    get_backend,
    set_backend,
    use_backend,
)

__version__ = "0.1.0"

__all__ = [
    "BACKENDS",
    "BackendUnavailable",
    "available_backends",
    "get_backend",
    "set_backend",
    "use_backend",
    "__version__",
]

_SUBMODULES = {
    "chapter",
    "checkpoint",
    "compress",
    "data",
    "device",
    "distributed",
    "errors",
    "exercises",
    "gradcheck",
    "init",
    "layers",
    "losses",
    "monitor",
    "notebook",
    "optim",
    "preprocess",
    "regularizers",
    "train",
    "tuning",
}


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'ddlib' has no attribute {name!r}")
