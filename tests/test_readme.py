"""The README's notebook table lists every notebook, and the two set-up commands come first."""

import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_every_notebook_is_in_the_readme_table():
    readme = (ROOT / "README.md").read_text()
    missing = [p.name for p in sorted((ROOT / "notebooks").glob("*.ipynb"))
               if f"(notebooks/{p.name})" not in readme]
    assert not missing, f"add these notebooks to the README table: {missing}"


def test_readme_links_point_to_existing_notebooks():
    readme = (ROOT / "README.md").read_text()
    for part in readme.split("(notebooks/")[1:]:
        name = part.split(")", 1)[0]
        assert (ROOT / "notebooks" / name).exists(), name


def test_the_two_commands_come_before_anything_else_is_explained():
    readme = (ROOT / "README.md").read_text()
    first_block = readme.index("```")
    assert readme.index("make lab") < readme.index("## The notebooks")
    assert "make lab" in readme[first_block:first_block + 300]
    assert "make test" in readme[first_block:first_block + 300]
