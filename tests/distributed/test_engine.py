"""The engine: loopback only, no files in the home directory, a clear error without Ray."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ddlib import distributed
from ddlib.distributed import engine


def test_every_listening_socket_is_loopback(ray_session):
    ray = ray_session

    @ray.remote
    def pid():
        return os.getpid()

    ray.get([pid.remote() for _ in range(4)])   # workers up, so their sockets count too
    rows = engine.listening_addresses()
    names = {r[1] for r in rows}
    assert rows and any("raylet" in n for n in names) and any("gcs" in n for n in names)
    bad = [r for r in rows if not engine.is_loopback(r[2])]
    assert not bad, f"Ray listens beyond loopback: {bad}"
    assert ray.util.get_node_ip_address() == "127.0.0.1"


def test_temp_dir_is_under_state_or_short_tmp(ray_session):
    tmp = engine.temp_dir()
    assert len(str(tmp)) + engine._SOCKET_TAIL <= engine._UNIX_PATH_MAX
    root = engine.checkout_root()
    assert tmp.parent == root / ".state" or str(tmp).startswith("/tmp/")
    assert any(tmp.glob("session_*"))
    home = Path.home()
    assert not (home / ".ray").exists() or not any((home / ".ray").glob("auth*"))
    assert not (home / "ray_results").exists() or os.environ.get("DDLIB_ALLOW_HOME_RAY")


def test_loopback_addresses():
    assert engine.is_loopback("127.0.0.1") and engine.is_loopback("::1")
    assert engine.is_loopback("::ffff:127.0.0.1")
    assert not engine.is_loopback("0.0.0.0") and not engine.is_loopback("10.1.2.3")


def test_import_ddlib_does_not_import_ray():
    code = ("import sys, ddlib, ddlib.distributed; ddlib.distributed.engine; "
            "assert 'ray' not in sys.modules, 'ray imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_ray_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"pip install -e '\.\[distributed\]'"):
        distributed.require_ray()


def test_start_checks_num_cpus():
    with pytest.raises(ValueError, match="num_cpus"):
        distributed.start(num_cpus=0)


def test_quiet_sends_the_drivers_late_reports_to_stderr_until_shutdown(capsys):
    worker = pytest.importorskip("ray._private.worker")

    original = worker.print_to_stdstream
    engine._quiet_ray()
    try:
        assert worker.print_to_stdstream is not original
        report = {"lines": ["a worker died"], "pid": 123, "ip": "127.0.0.1", "is_err": False,
                  "task_name": "t", "actor_name": "", "job": "01"}
        worker.print_to_stdstream(report, ignore_prefix=True)
        out, err = capsys.readouterr()
        assert "a worker died" in err and "a worker died" not in out
        engine._quiet_ray()  # twice is harmless: one patch, one original kept
    finally:
        engine._unquiet_ray()
    assert worker.print_to_stdstream is original
