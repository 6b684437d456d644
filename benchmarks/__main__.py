"""Run every ``benchmarks/bench_*.py`` workload, print one table, write JSON.

    python -m benchmarks                 # all workloads
    python -m benchmarks mlp adam        # only workloads whose module name contains these
    python -m benchmarks --json PATH     # where to write (default benchmarks/results/latest-cpu.json)

Each module defines ``run() -> list[dict]``; a row has ``workload``, ``variant``,
``seconds`` and, where the issue names a target, ``ratio`` (measured against the row's
``reference`` in the same run), ``target`` (a string such as '<= 0.8') and ``ok``.
"""

import argparse
import datetime as _dt
import importlib
import json
import os
import pathlib
import platform
import sys

HERE = pathlib.Path(__file__).parent


def _modules(filters):
    for path in sorted(HERE.glob("bench_*.py")):
        name = path.stem
        if filters and not any(f in name for f in filters):
            continue
        yield name, importlib.import_module(f"benchmarks.{name}")


def _fmt(row):
    sec = row.get("seconds")
    t = "" if sec is None else (f"{sec * 1e3:9.3f} ms" if sec < 1 else f"{sec:9.3f} s ")
    ratio = row.get("ratio")
    r = "" if ratio is None else f"{ratio:7.3f}"
    ok = {True: "ok", False: "MISS", None: ""}[row.get("ok")]
    return (f"{row['workload'][:34]:34s} {row['variant'][:30]:30s} {t:>12s} {r:>8s} "
            f"{row.get('target', ''):>10s} {ok:>4s}  {row.get('note', '')}")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks")
    ap.add_argument("filters", nargs="*")
    ap.add_argument("--json", default=str(HERE / "results" / "latest-cpu.json"))
    args = ap.parse_args(argv)
    rows = []
    print(f"{'workload':34s} {'variant':30s} {'time':>12s} {'ratio':>8s} {'target':>10s} {'':>4s}")
    for name, mod in _modules(args.filters):
        for row in mod.run():
            row.setdefault("module", name)
            rows.append(row)
            print(_fmt(row), flush=True)
    meta = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "numba_threads": int(os.environ.get("NUMBA_NUM_THREADS", os.cpu_count() or 1)),
    }
    try:
        import numba
        import numpy

        meta["numpy"] = numpy.__version__
        meta["numba"] = numba.__version__
    except ImportError:
        pass
    out = pathlib.Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(f"\nwrote {out}")
    missed = [r for r in rows if r.get("ok") is False]
    if missed:
        print(f"{len(missed)} target(s) missed")


if __name__ == "__main__":
    main()
