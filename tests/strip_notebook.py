"""Tidy an executed notebook in place: drop per-run metadata that only adds diff noise."""

import json
import sys


def strip(path):
    with open(path) as f:
        nb = json.load(f)
    nb.get("metadata", {}).pop("widgets", None)
    for cell in nb.get("cells", []):
        md = cell.get("metadata", {})
        md.pop("execution", None)
        md.pop("ExecuteTime", None)
    with open(path, "w") as f:
        json.dump(nb, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    for p in sys.argv[1:]:
        strip(p)
