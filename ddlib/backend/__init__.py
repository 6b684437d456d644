"""One kernel interface, three implementations.

``numpy_ref`` writes each kernel as the chapter's equation in plain NumPy; it is the
reference every other backend is tested against.  ``cpu`` runs numba ``@njit`` kernels
(parallel and cached), and ``cuda`` runs numba.cuda kernels on an NVIDIA GPU or, with
``NUMBA_ENABLE_CUDASIM=1`` set before numba is first imported, on numba's CUDA simulator.

Kernels are grouped in families (``core``: matmul, activations, softmax; ``optim``:
fused update rules; ``batchnorm``: normalization), each a module inside every backend
package.  A backend object exposes every kernel of every family as an attribute::

    >>> import ddlib
    >>> be = ddlib.get_backend()          # the current one ("cpu" by default)
    >>> with ddlib.use_backend("numpy"):
    ...     ddlib.get_backend().name
    'numpy'

Arrays passed to a backend's kernels must be that backend's native arrays: NumPy arrays
for ``numpy`` and ``cpu``, numba device arrays for ``cuda``.  ``be.asarray`` and
``be.to_numpy`` move data in and out.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from contextvars import ContextVar

BACKENDS = ("numpy", "cpu", "cuda")
FAMILIES = ("core", "optim", "batchnorm")
_MODULES = {"numpy": "numpy_ref", "cpu": "cpu", "cuda": "cuda"}
_ALIASES = {"numpy_ref": "numpy", "ref": "numpy", "numba": "cpu", "gpu": "cuda"}

DEFAULT_BACKEND = os.environ.get("DDLIB_BACKEND", "cpu")

_current: ContextVar[str] = ContextVar("ddlib_backend", default=DEFAULT_BACKEND)
_loaded: dict[str, Backend] = {}


class BackendUnavailable(RuntimeError):
    """The requested backend exists but cannot run on this machine."""


class Backend:
    """A named collection of kernels; attribute access returns a kernel function."""

    def __init__(self, name: str, package):
        self.name = name
        self.package = package
        self.kernels: dict[str, object] = {}
        for family in FAMILIES:
            mod = _import_family(package.__name__, family)
            if mod is None:
                continue
            for kname in getattr(mod, "__all__", ()):
                self.kernels[kname] = getattr(mod, kname)
        for helper in ("asarray", "to_numpy", "empty", "zeros", "is_native", "synchronize"):
            self.kernels[helper] = getattr(package, helper)
        # plain instance attributes: ``be.matmul`` is then an ordinary (fast) lookup, and
        # ``__getattr__`` below only runs for names that are missing
        self.__dict__.update(self.kernels)

    def __getattr__(self, item):
        try:
            return self.__dict__["kernels"][item]
        except KeyError:
            raise AttributeError(
                f"backend {self.__dict__.get('name')!r} has no kernel {item!r}"
            ) from None

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self.kernels))

    def __repr__(self):
        return f"<ddlib backend {self.name!r}: {len(self.kernels)} kernels>"


def _import_family(package_name: str, family: str):
    modname = f"{package_name}.{family}"
    try:
        return importlib.import_module(modname)
    except ModuleNotFoundError as exc:
        if exc.name == modname:  # this family has not been written for the backend
            return None
        raise


def _canonical(name) -> str:
    if not isinstance(name, str):
        raise TypeError(f"backend name must be a str, got {type(name).__name__}")
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in BACKENDS:
        raise ValueError(
            f"unknown backend {name!r}; available backends are {', '.join(BACKENDS)}"
        )
    return key


def cuda_unavailable_reason() -> str | None:
    """Why the cuda backend cannot run here, or None when it can."""
    try:
        from numba import cuda
    except Exception as exc:  # pragma: no cover - numba is a hard dependency
        return f"numba.cuda failed to import ({exc})"
    sim_now = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
    from numba import config

    if config.ENABLE_CUDASIM:
        return None
    try:
        ok = cuda.is_available()
    except Exception as exc:  # pragma: no cover - depends on the driver
        return f"the CUDA driver could not be initialised ({exc})"
    if ok:
        return None
    hint = (
        "NUMBA_ENABLE_CUDASIM=1 was set after numba had been imported; set it before "
        "the first 'import numba' (e.g. before starting Python)"
        if sim_now
        else "set NUMBA_ENABLE_CUDASIM=1 before numba is first imported to use the CUDA simulator"
    )
    return f"no CUDA GPU or driver was found on this machine; {hint}"


def load_backend(name: str) -> Backend:
    """Import a backend by name (once) and return it; raise if it cannot run here."""
    key = _canonical(name)
    if key in _loaded:
        return _loaded[key]
    if key == "cuda":
        reason = cuda_unavailable_reason()
        if reason is not None:
            raise BackendUnavailable(
                f"backend 'cuda' is unavailable: {reason}. "
                f"Backends that run here: numpy, cpu"
            )
    package = importlib.import_module(f"{__name__}.{_MODULES[key]}")
    be = Backend(key, package)
    _loaded[key] = be
    return be


def available_backends() -> list[str]:
    """Names of the backends that can run on this machine."""
    names = ["numpy", "cpu"]
    if cuda_unavailable_reason() is None:
        names.append("cuda")
    return names


def get_backend(name: str | None = None) -> Backend:
    """The current backend, or the one named."""
    if name is None:
        be = _loaded.get(_current.get())  # the hot path: a kernel call's lookup
        if be is not None:
            return be
        name = _current.get()
    return load_backend(name)


def set_backend(name: str) -> Backend:
    """Make ``name`` the current backend for this thread/context and return it."""
    be = load_backend(name)
    _current.set(be.name)
    return be


@contextlib.contextmanager
def use_backend(name: str):
    """Context manager: run the block with ``name`` as the current backend."""
    be = load_backend(name)
    token = _current.set(be.name)
    try:
        yield be
    finally:
        _current.reset(token)


def backend_of(x) -> str:
    """Which backend an array lives on: 'cuda' for device arrays, else 'numpy'."""
    # device arrays (and the simulator's stand-ins, which also mimic NumPy's protocols)
    # copy back to the host; NumPy arrays do not
    import numpy as np

    if hasattr(x, "copy_to_host") and not isinstance(x, np.ndarray):
        return "cuda"
    return "numpy"
