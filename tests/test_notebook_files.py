"""Notebooks as files: committed executed, linked correctly, small, with a check cell."""

import json
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.fixture(params=NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def notebook(request):
    return request.param, json.loads(request.param.read_text())


def test_links_to_other_notebooks_resolve(notebook):
    path, nb = notebook
    for cell in nb["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        for target in re.findall(r"\]\(([^)#]+\.ipynb)", "".join(cell["source"])):
            assert (path.parent / target).exists(), f"{path.name} links to missing {target}"


def test_committed_executed_with_a_title_and_assertions(notebook):
    path, nb = notebook
    code = [c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]
    assert all(c.get("execution_count") for c in code), f"{path.name}: unexecuted cells"
    first = "".join(nb["cells"][0]["source"])
    section = path.name.split("-", 1)[0].lstrip("0")
    assert first.startswith("# ") and section.split(".")[0] in first
    assert any(re.search(r"^\s*assert ", "".join(c["source"]), re.M) for c in code), (
        f"{path.name}: no check cell with assertions")
    assert not any(o.get("output_type") == "error" for c in code for o in c.get("outputs", []))


def test_files_stay_small(notebook):
    path, _ = notebook
    assert path.stat().st_size < 1_500_000, f"{path.name} is {path.stat().st_size} bytes"
