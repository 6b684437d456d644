"""Parallel and distributed training (Sec. 3.7.2) on Ray.

``start`` / ``session`` / ``shutdown`` run a private local Ray bound to 127.0.0.1 (or
join a cluster with ``address=``); see ``engine``.  ``ps`` holds the parameter server
(data parallelism, synchronous and asynchronous, with 8-bit gradients as an option),
``hogwild`` lock-free shared-memory SGD from numba threads (no Ray), ``model_parallel`` a
hidden layer split across actors, ``simulate`` K asynchronous workers and a cost model
of synchronous scaling (no Ray), ``tune`` hyperparameter
parallelism on Ray Tune (``ddlib.tuning``'s spaces, ASHA, retried trials).
Importing this package does not import Ray; the functions that
need it do, and a missing Ray raises an ImportError saying how to install it.
"""

import importlib

from .engine import INSTALL_HINT, require_ray, session, shutdown, start, state_dir, temp_dir

__all__ = ["INSTALL_HINT", "require_ray", "session", "shutdown", "start", "state_dir",
           "temp_dir", "engine", "hogwild", "model_parallel", "ps", "simulate", "tune"]

_SUBMODULES = {"engine", "hogwild", "model_parallel", "ps", "simulate", "tune"}


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'ddlib.distributed' has no attribute {name!r}")
