"""The house's one rule: library code never imports ``ddlib.chapter`` or ``ddlib.notebook``."""

import ast
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent / "ddlib"
SHOW = ("chapter", "notebook")


def _library_files():
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).parts
        if rel[0] not in SHOW:
            yield path


def _imported(path):
    """Absolute module names a file imports (relative imports resolved against ddlib)."""
    pkg = ["ddlib", *path.relative_to(ROOT).parent.parts]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = pkg[: len(pkg) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            yield mod
            for a in node.names:
                yield f"{mod}.{a.name}"


@pytest.mark.parametrize("path", list(_library_files()), ids=lambda p: str(p.relative_to(ROOT)))
def test_library_module_does_not_import_chapter_or_notebook(path):
    bad = [m for m in _imported(path) if m.split(".")[:2] in (["ddlib", s] for s in SHOW)]
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}; move the code or invert the dependency"


def test_the_checker_sees_a_forbidden_import(tmp_path):
    # the resolution of relative imports is what could go wrong: check it on a known case
    fake = ROOT / "optim" / "base.py"
    names = set(_imported(fake))
    assert "ddlib.backend.get_backend" in names


def test_import_ddlib_loads_neither_numba_nor_the_chapter():
    code = ("import sys, ddlib; bad = [m for m in sys.modules if m == 'numba' or "
            "m.startswith(('ddlib.chapter', 'ddlib.notebook'))]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_make_test_runs_every_modules_examples():
    """Each module's >>> examples run: the unit job over ddlib, the simulator job over the
    cuda backend (which conftest.py keeps out of the unit job)."""
    make = (ROOT.parent / "Makefile").read_text()
    unit = next(line for line in make.splitlines() if "pytest tests ddlib " in line)
    sim = next(line for line in make.splitlines() if "NUMBA_ENABLE_CUDASIM=1" in line
               and "pytest" in line)
    assert "--doctest-modules" in unit and "--doctest-modules" in sim
    assert "ddlib/backend/cuda" in sim
    with_examples = [p for p in ROOT.rglob("*.py") if ">>>" in p.read_text()]
    assert len(with_examples) >= 20


def test_the_lazy_registries_list_every_module():
    """``ddlib.<name>`` and ``ddlib.chapter.<name>`` load lazily from hand-kept sets; a new
    module missing from its set would not be reachable that way."""
    import ddlib
    import ddlib.chapter

    top = {p.stem for p in ROOT.glob("*.py") if p.stem != "__init__"}
    top |= {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"backend"}
    assert ddlib._SUBMODULES == top
    studies = {p.stem for p in (ROOT / "chapter").glob("*.py") if p.stem != "__init__"}
    assert ddlib.chapter._MODULES == studies
