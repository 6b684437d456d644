"""Starting and stopping Ray safely (Sec. 3.7.2's engine): loopback only, no home files.

With no ``address`` a private local Ray is started:

* bound to 127.0.0.1 only.  Ray 2.60 listens on all interfaces and advertises the
  machine's external address by default (even with ``_node_ip_address='127.0.0.1'``);
  ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` in the environment before Ray starts makes it
  use 127.0.0.1 for everything.  ``listening_addresses()`` lists what its processes
  listen on, so a test can check it;
* dashboard off, usage statistics off, ``RAY_AUTH_MODE=disabled`` (no login token file);
* its temporary folder (logs, sockets, spilled objects) under the checkout's git-ignored
  ``.state/ray`` when that path is short enough for a unix socket path (107 bytes on
  Linux, with Ray's ``session_<date>_<pid>/sockets/plasma_store`` after it), else under
  ``/tmp/ddlib-ray-<uid>``; ``temp_dir()`` says which.  Ray Tune's results go to
  ``state_dir()/tune``, never ``~/ray_results``.

With ``address="HOST:PORT"`` (or ``"auto"``) it joins an existing cluster instead, started
on the head node with ``ray start --head --port=6379`` and on each other node with
``ray start --address=HEAD:6379``; the cluster's own settings then apply.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from pathlib import Path

INSTALL_HINT = ("ddlib.distributed needs Ray with its Tune extra: "
                "pip install -e '.[distributed]' (or pip install 'ray[tune]')")

#: environment set before a local Ray starts (inherited by every Ray process)
SAFE_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",   # 127.0.0.1 for every server, advertised too
    "RAY_AUTH_MODE": "disabled",                 # no token file in the home directory
    "RAY_USAGE_STATS_ENABLED": "0",              # no usage report, no ~/.ray config read
    "RAY_DEDUP_LOGS": "0",
    # on a busy machine the metrics agent can take longer than the default to register,
    # and the raylet then gives up; two minutes is plenty and costs nothing when idle
    "RAY_agent_register_timeout_ms": "120000",
}

# the longest tail Ray appends to its temp dir for a socket:
# "/session_2026-12-03_08-49-39_123456_1234567/sockets/plasma_store"
_SOCKET_TAIL = 72
_UNIX_PATH_MAX = 107

_started_here = False


def require_ray():
    """Import and return ``ray``, or raise ImportError saying how to install it."""
    try:
        import ray
    except ImportError as e:   # pragma: no cover - exercised by a monkeypatched test
        raise ImportError(INSTALL_HINT) from e
    return ray


def checkout_root() -> Path | None:
    """The source checkout ddlib runs from (it has pyproject.toml), or None if installed."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").exists() else None


def state_dir() -> Path:
    """The git-ignored ``.state`` folder of the checkout (or a /tmp folder if none)."""
    root = checkout_root()
    base = root / ".state" if root is not None else Path(tempfile.gettempdir()) / f"ddlib-{os.getuid()}"
    base.mkdir(parents=True, exist_ok=True)
    return base


def temp_dir() -> Path:
    """Ray's temporary folder: ``state_dir()/ray`` if socket paths fit, else /tmp."""
    inside = state_dir() / "ray"
    if len(str(inside)) + _SOCKET_TAIL <= _UNIX_PATH_MAX:
        return inside
    return Path("/tmp") / f"ddlib-ray-{os.getuid()}"


def tune_storage() -> Path:
    """Where Ray Tune writes trial results (instead of ``~/ray_results``)."""
    p = state_dir() / "tune"
    p.mkdir(parents=True, exist_ok=True)
    return p


#: (module, original function) while ``start(quiet=True)`` has rerouted Ray's reports
_quiet_patch = None


def _quiet_ray():
    """Ray's loggers to ERROR, and the reports its driver prints from a background thread
    (a worker that died, a task's output) to stderr instead of stdout.

    Those reports arrive at any moment, so in a notebook they land in whichever cell runs
    then, on stdout, where they would mix with the cell's results.  Ray has no public
    switch for this; the hook is ``ray._private.worker.print_to_stdstream`` (Ray 2.x).  If
    a Ray version lacks it, nothing is patched and the reports stay on stdout.
    """
    global _quiet_patch
    for name in ("ray", "ray.tune", "ray.train"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if _quiet_patch is not None:
        return
    try:
        import ray._private.worker as worker
    except ImportError:
        return
    original = getattr(worker, "print_to_stdstream", None)
    if original is None:
        return

    def to_stderr(data, ignore_prefix):
        return original(dict(data, is_err=True), ignore_prefix)

    worker.print_to_stdstream = to_stderr
    _quiet_patch = (worker, original)


def _unquiet_ray():
    global _quiet_patch
    if _quiet_patch is not None:
        worker, original = _quiet_patch
        worker.print_to_stdstream = original
        _quiet_patch = None


def start(num_cpus=None, address=None, quiet=False, **init_kwargs):
    """Start a private local Ray (no ``address``) or join a cluster; returns Ray's context.

    A Ray already initialized in this process is reused.  ``num_cpus`` caps the local
    Ray's worker slots (default: all cores).  ``quiet=True`` (for notebooks) drops Ray's
    start-up messages and its log records (when this call is the first to import Ray;
    errors still raise, and ddlib's own results name failed trials and lost workers), and
    sends the reports its driver prints later (a worker that died) to stderr, where
    warnings go, until ``shutdown``.
    ``init_kwargs`` go to ``ray.init``.
    """
    if quiet:
        # Ray binds its log handler to the sys.stderr of the moment it is first imported:
        # importing and starting it inside the redirect sends its log records nowhere
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            _quiet_ray()
            return _start(num_cpus, address, init_kwargs)
    return _start(num_cpus, address, init_kwargs)


def _start(num_cpus, address, init_kwargs):
    global _started_here
    if num_cpus is not None and (isinstance(num_cpus, bool) or not isinstance(num_cpus, int)
                                 or num_cpus < 1):
        raise ValueError(f"start: num_cpus must be an int >= 1 or None, got {num_cpus!r}")
    if address is None:
        # inherited by every Ray process started below; Ray reads the first one at import
        # (ray_constants.ENABLE_RAY_CLUSTER), so a Ray imported earlier is told directly
        os.environ.update(SAFE_ENV)
    ray = require_ray()
    if address is None:
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False
    if ray.is_initialized():
        return ray.get_runtime_context()
    if address is not None:
        ctx = ray.init(address=address, include_dashboard=False, log_to_driver=False,
                       logging_level="warning", **init_kwargs)
        _started_here = True
        return ctx
    tmp = temp_dir()
    tmp.mkdir(parents=True, exist_ok=True)
    ctx = ray.init(num_cpus=num_cpus, include_dashboard=False, _temp_dir=str(tmp),
                   _node_ip_address="127.0.0.1", log_to_driver=False,
                   logging_level="warning", configure_logging=True, **init_kwargs)
    _started_here = True
    return ctx


def shutdown():
    """Stop the Ray this process started (a no-op when none is running)."""
    global _started_here
    try:
        import ray
    except ImportError:
        return
    if ray.is_initialized():
        ray.shutdown()
    _started_here = False
    _unquiet_ray()


@contextlib.contextmanager
def session(num_cpus=None, address=None, quiet=False, **init_kwargs):
    """``with session(num_cpus=2): ...`` starts Ray (unless one runs) and stops what it
    started on the way out (``quiet`` as in ``start``)."""
    ray = require_ray()
    was = ray.is_initialized()
    ctx = start(num_cpus=num_cpus, address=address, quiet=quiet, **init_kwargs)
    try:
        yield ctx
    finally:
        if not was:
            shutdown()


def ray_processes():
    """The psutil Processes of this machine's Ray servers and workers started from here
    (children of this process whose command line names ray)."""
    import psutil

    me = psutil.Process()
    out = []
    for p in me.children(recursive=True):
        try:
            cmd = " ".join(p.cmdline())
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if "ray" in cmd or "raylet" in p.name() or "gcs_server" in p.name():
            out.append(p)
    return out


def listening_addresses(processes=None):
    """[(pid, name, ip, port)] of every TCP socket in LISTEN state held by ``processes``
    (default: ``ray_processes()`` plus this process)."""
    import psutil

    procs = list(processes) if processes is not None else ray_processes() + [psutil.Process()]
    rows = []
    for p in procs:
        try:
            conns = p.net_connections(kind="inet")
            name = p.name()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        for c in conns:
            if c.status == psutil.CONN_LISTEN:
                rows.append((p.pid, name, c.laddr.ip, c.laddr.port))
    return rows


def is_loopback(ip):
    """True for 127.0.0.0/8 and ::1."""
    import ipaddress

    addr = ipaddress.ip_address(ip.split("%")[0])
    mapped = getattr(addr, "ipv4_mapped", None)     # '::ffff:127.0.0.1'
    return (mapped or addr).is_loopback
