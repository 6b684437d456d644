"""The hypothesis properties of ``properties.py``, each in its own interpreter per backend:
a crash or a hang of compiled code fails that case instead of killing the test run."""

import os
import subprocess
import sys

import pytest

from tests.fuzz.properties import PROPERTIES

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
@pytest.mark.parametrize("name", sorted(PROPERTIES))
def test_property(name, backend):
    env = dict(os.environ, PYTHONFAULTHANDLER="1")
    try:
        r = subprocess.run([sys.executable, "-m", "tests.fuzz.properties", backend, name],
                           capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{name} [{backend}] hung (no result in 300 s)")
    out = r.stdout + r.stderr
    assert r.returncode == 0, f"{name} [{backend}] failed (rc {r.returncode}):\n{out[-4000:]}"
    assert f"PASSED {name}" in r.stdout, out[-2000:]
