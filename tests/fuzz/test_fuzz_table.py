"""Table-driven fuzz over the public entry points (cases.py defines the outcomes), on
both CPU backends, every case in a worker subprocess: a crash or a hang is a failure of
that case, not of the test run."""

import json
import os
import subprocess
import sys

import pytest

from tests.fuzz.cases import build_cases

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BAD = {"unclear", "silent", "crash", "hang"}
TIMEOUT = 120


def run_worker(backend, names=(), timeout=TIMEOUT):
    """{case: (outcome, error)}; a case started but unreported is 'crash' or 'hang'.
    After a crash the remaining cases are run again in a fresh worker."""
    results, todo = {}, list(names)
    while True:
        env = dict(os.environ, PYTHONFAULTHANDLER="1")
        try:
            r = subprocess.run([sys.executable, "-m", "tests.fuzz.worker", backend, *todo],
                               capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                               env=env)
            out, died = r.stdout, r.returncode != 0
            kind = "crash"
        except subprocess.TimeoutExpired as err:
            out = err.stdout.decode() if isinstance(err.stdout, bytes) else (err.stdout or "")
            died, kind = True, "hang"
        started = None
        for line in out.splitlines():
            msg = json.loads(line)
            if "start" in msg:
                started = msg["start"]
            else:
                results[msg["case"]] = (msg["outcome"], msg["error"])
                started = None
        if not died:
            return results
        if started is None:
            results["<worker>"] = (kind, out[-500:])
            return results
        results[started] = (kind, f"process died (rc or timeout) running {started!r}")
        every = [n for n, _, _ in build_cases()] if not todo else todo
        todo = [n for n in every if n not in results]
        if not todo:
            return results


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_fuzz_table(backend):
    results = run_worker(backend)
    n_cases = len(build_cases())
    assert len(results) == n_cases, sorted(set(n for n, _, _ in build_cases()) - set(results))
    bad = {k: v for k, v in results.items() if v[0] in BAD}
    counts = {}
    for outcome, _ in results.values():
        counts[outcome] = counts.get(outcome, 0) + 1
    print(f"\nfuzz table [{backend}]: {n_cases} cases, {counts}")
    assert not bad, "\n".join(f"{k}: {v[0]} ({v[1]})" for k, v in sorted(bad.items()))
