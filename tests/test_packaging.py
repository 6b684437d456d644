"""The project's set-up files agree with each other and with the layout the README promises."""

import pathlib
import re
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _name(req):
    return re.split(r"[<>=!~;\[ ]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _environment_packages():
    names = set()
    in_deps = False
    for line in (ROOT / "environment.yml").read_text().splitlines():
        if line and not line[0].isspace():
            in_deps = line.startswith("dependencies:")
            continue
        item = line.split("#", 1)[0].strip()
        if not in_deps or not item.startswith("- "):
            continue
        item = item[2:].strip()
        if not item or item.endswith(":") or item.startswith("-e") or item.startswith("-"):
            continue
        names.add(_name(item))
    return names - {"python", "pip"}


def test_environment_yml_lists_the_same_packages_as_pyproject():
    proj = _pyproject()["project"]
    wanted = {_name(r) for r in proj["dependencies"]}
    for extra in ("dev", "distributed"):      # what `make setup` installs
        wanted |= {_name(r) for r in proj["optional-dependencies"][extra]}
    have = _environment_packages()
    assert have == wanted, (
        f"only in pyproject.toml: {sorted(wanted - have)}; only in environment.yml: {sorted(have - wanted)}"
    )


def test_numba_cuda_is_not_required_on_macos():
    deps = _pyproject()["project"]["dependencies"]
    (cuda,) = [d for d in deps if _name(d) == "numba-cuda"]
    assert "sys_platform" in cuda and "darwin" not in cuda


def test_top_level_layout():
    for path in ["notebooks", "ddlib", "tests", "benchmarks", "environment.yml", "README.md",
                 "Makefile", "pyproject.toml", ".ci/run"]:
        assert (ROOT / path).exists(), path


def test_ci_script_runs_make_test_strictly():
    text = (ROOT / ".ci" / "run").read_text()
    assert "set -euo pipefail" in text and "make test" in text


def test_makefile_keeps_tool_state_inside_the_repo():
    text = (ROOT / "Makefile").read_text()
    for var in ["NUMBA_CACHE_DIR", "MPLCONFIGDIR", "JUPYTER_CONFIG_DIR", "JUPYTER_RUNTIME_DIR"]:
        assert re.search(rf"export {var}\s*:=\s*\$\(CURDIR\)|export {var}\s*:=\s*\$\(STATE\)", text), var
    gitignore = (ROOT / ".gitignore").read_text()
    assert ".state/" in gitignore and ".cache/" in gitignore


def test_notebook_names_sort_in_chapter_order():
    names = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert names, "no notebooks"

    def key(name):
        return tuple(int(part) for part in name.split("-", 1)[0].split("."))

    assert names == sorted(names, key=key)


def test_gpu_script_parses_and_runs_the_cuda_tests_and_benchmark():
    import subprocess

    script = ROOT / "benchmarks" / "run_gpu.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    text = script.read_text()
    assert "set -uo pipefail" in text
    assert '-m "(cuda or gpu) and not ptx"' in text and "-m benchmarks.gpu" in text


def test_make_lab_prints_the_address_with_the_token_it_gives_the_server():
    # an address without the token only reaches JupyterLab's login page
    text = (ROOT / "Makefile").read_text()
    recipe = text[text.index("\nlab:"):].split("\n\n", 1)[0]
    shown = re.search(r'echo ".*http://localhost:\$\(PORT\)/lab\?token=\$\$\(cat \$\((\w+)\)\)', recipe)
    assert shown, recipe
    assert re.search(rf'JUPYTER_TOKEN="\$\$\(cat \$\({shown.group(1)}\)\)" \$\(VENV\)/bin/jupyter lab',
                     recipe), recipe
    assert "--port=$(PORT)" in recipe and "port_retries=0" in recipe  # no silent move to a port not shown
    assert re.search(rf"^\$\({shown.group(1)}\):", text, re.M)          # the token file is made
    assert f"{shown.group(1)} := $(STATE)/" in text                      # ... inside .state/


def test_license_is_an_spdx_expression_the_build_backend_reads():
    proj = _pyproject()
    assert proj["project"]["license"] == "MIT"  # not the deprecated table form
    (req,) = [r for r in proj["build-system"]["requires"] if _name(r) == "setuptools"]
    floor = tuple(int(p) for p in re.search(r">=\s*([\d.]+)", req).group(1).split("."))
    assert floor >= (77,), req  # setuptools 77 is the first to accept the string form
