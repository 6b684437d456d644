"""Runs fuzz cases in this process and prints one JSON line per case as it finishes
(``python -m tests.fuzz.worker BACKEND [case names...]``).  The parent reads the lines;
a case that started but did not report is a crash (the process died) or a hang."""

import json
import sys
import warnings


def main():
    backend, names = sys.argv[1], set(sys.argv[2:])
    import ddlib
    from tests.fuzz.cases import build_cases, classify

    warnings.simplefilter("ignore")
    with ddlib.use_backend(backend):
        for name, call, expect in build_cases():
            if names and name not in names:
                continue
            print(json.dumps({"start": name}), flush=True)
            try:
                result, error = call(), None
            except Exception as err:   # noqa: BLE001 - classified, not hidden
                result, error = None, err
            out = classify(expect, result, error)
            print(json.dumps({"case": name, "outcome": out,
                              "error": None if error is None else
                              f"{type(error).__name__}: {error}"[:300]}), flush=True)


if __name__ == "__main__":
    main()
