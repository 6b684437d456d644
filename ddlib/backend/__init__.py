"""One kernel interface, three implementations.

``numpy_ref`` writes each kernel as the chapter's equation in plain NumPy; it is the
reference every other backend is tested against.  ``cpu`` runs numba ``@njit`` kernels
(parallel and cached), and ``cuda`` runs numba.cuda kernels on an NVIDIA GPU or, with
``NUMBA_ENABLE_CUDASIM=1`` set before numba is first imported, on numba's CUDA simulator.

Kernels are grouped in families (``core``: matmul, activations, softmax; ``optim``:
fused update rules and clipping; ``batchnorm``: normalization; ``loop``: the pieces of a
training loop that stay beside the data, such as a loss kept in a small array and a row
gather; ``curvature``: the non-matrix parts of exact Hessian-vector products;
``sparse``: compressed weights, a CSR-times-dense product and the hashing trick's
expansion and bucket sums), each a module inside every backend package.  A backend
object exposes every kernel of every family as an attribute::

    >>> import ddlib
    >>> be = ddlib.get_backend()          # the current one ("cpu" by default)
    >>> with ddlib.use_backend("numpy"):
    ...     ddlib.get_backend().name
    'numpy'

Arrays passed to a backend's kernels must be that backend's native arrays: NumPy arrays
for ``numpy`` and ``cpu``, numba device arrays for ``cuda``.  ``be.asarray`` and
``be.to_numpy`` move data in and out.

The contract: the reference backend's family modules list, in their ``__all__``, every
name a backend must provide (``contract()`` returns them).  Loading a backend checks its
modules against that list, and a backend that lacks a declared name, or exports one the
reference does not declare, is refused with a ``BackendContractError`` naming the backend,
the family and the names.  So a kernel is added to every backend, or to none.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from contextvars import ContextVar
from functools import lru_cache

from .arrays import where

BACKENDS = ("numpy", "cpu", "cuda")
FAMILIES = ("core", "optim", "batchnorm", "loop", "curvature", "sparse")
#: what every backend package itself provides (moving data in and out), beside the families
HELPERS = ("asarray", "to_numpy", "empty", "zeros", "is_native", "synchronize")
REFERENCE = "numpy_ref"  # the package whose families' __all__ lists are the contract
_MODULES = {"numpy": "numpy_ref", "cpu": "cpu", "cuda": "cuda"}
_ALIASES = {"numpy_ref": "numpy", "ref": "numpy", "numba": "cpu", "gpu": "cuda"}



def _backend_from_env(default="cpu"):
    """``DDLIB_BACKEND`` (canonical name), checked when ddlib is imported: a name that is
    neither a backend nor an alias is a ValueError naming the variable and the choices."""
    raw = os.environ.get("DDLIB_BACKEND")
    if raw is None:
        return default
    key = raw.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in BACKENDS:
        raise ValueError(
            f"environment variable DDLIB_BACKEND={raw!r} is not a backend; expected one of "
            f"{', '.join(BACKENDS)} (or an alias: "
            f"{', '.join(f'{a}={b}' for a, b in _ALIASES.items())}), or leave it unset "
            f"for {default!r}"
        )
    return key


DEFAULT_BACKEND = _backend_from_env()

_current: ContextVar[str] = ContextVar("ddlib_backend", default=DEFAULT_BACKEND)
_loaded: dict[str, Backend] = {}


class BackendUnavailable(RuntimeError):
    """The requested backend exists but cannot run on this machine."""


class BackendContractError(TypeError):
    """A backend package does not provide exactly the kernels the reference declares."""


def contract() -> dict[str, tuple[str, ...]]:
    """Every family's declared names, read from the reference backend's ``__all__`` lists.

    >>> "adam_step" in contract()["optim"] and "take_rows" in contract()["loop"]
    True
    """
    return dict(_declared())


@lru_cache(maxsize=None)
def _declared():
    return tuple(
        (family, tuple(importlib.import_module(f"{__name__}.{REFERENCE}.{family}").__all__))
        for family in FAMILIES
    )


def _check_contract(name: str, package, modules: dict) -> None:
    """Raise BackendContractError unless ``modules`` (family -> module or None) declare
    exactly the reference's names, each present, and ``package`` has every helper."""
    problems = []
    for family, declared in contract().items():
        mod = modules.get(family)
        exported = tuple(getattr(mod, "__all__", ())) if mod is not None else ()
        missing = [k for k in declared if k not in exported or not hasattr(mod, k)]
        extra = [k for k in exported if k not in declared]
        where = f"{package.__name__}.{family}"
        if mod is None:
            problems.append(f"family {family!r} is missing (no module {where}); it must "
                            f"define {', '.join(declared)}")
            continue
        if missing:
            problems.append(f"{where} lacks declared kernel(s) {', '.join(missing)}")
        if extra:
            problems.append(f"{where} exports undeclared name(s) {', '.join(extra)} (add them "
                            f"to {__name__}.{REFERENCE}.{family}.__all__ with a reference "
                            "version, or drop them from __all__)")
    lacking = [h for h in HELPERS if not hasattr(package, h)]
    if lacking:
        problems.append(f"package {package.__name__} lacks helper(s) {', '.join(lacking)}")
    if problems:
        raise BackendContractError(
            f"backend {name!r} breaks the kernel contract of {__name__}.{REFERENCE}: "
            + "; ".join(problems))


class Backend:
    """A named collection of kernels; attribute access returns a kernel function.

    Building one checks the package against the contract (``contract()``) and raises
    ``BackendContractError`` naming the backend and the offending names.
    """

    def __init__(self, name: str, package):
        self.name = name
        self.package = package
        self.kernels: dict[str, object] = {}
        modules = {family: _import_family(package.__name__, family) for family in FAMILIES}
        _check_contract(name, package, modules)
        for family, declared in contract().items():
            for kname in declared:
                self.kernels[kname] = getattr(modules[family], kname)
        for helper in HELPERS:
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
    """Make ``name`` the current backend for this thread/context and return it.

    The choice lives in a ``contextvars.ContextVar``, so it belongs to the calling thread
    (or asyncio task): a thread started afterwards begins with the process default
    (``DDLIB_BACKEND``, else "cpu"), not with the caller's choice.  To hand the choice to
    a worker thread, call ``set_backend``/``use_backend`` inside it, or run its target in
    a copy of the caller's context (``contextvars.copy_context().run(fn)``).
    """
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
    """Which backend an array lives on: 'cuda' for device arrays, else 'numpy'
    (``arrays.where``, the one test of where an array lives)."""
    return where(x)
