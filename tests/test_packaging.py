"""Every Python folder is declared in pyproject.toml, so a built wheel holds the whole package."""

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")


def test_all_package_folders_are_declared():
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    declared = set(cfg["packages"])
    roots = {"segzero_tool": "segzero_tool", **{k: v for k, v in cfg["package-dir"].items()}}
    found = set()
    for name, folder in roots.items():
        base = REPO / folder
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base)
            found.add(".".join([name, *rel.parts]) if rel.parts else name)
    assert found == declared, f"declare in pyproject: {sorted(found - declared)}; stale: {sorted(declared - found)}"
    for name in declared:
        folder = REPO / roots.get(name, name.replace(".", "/"))
        if name in roots:
            assert (folder / "__init__.py").exists()


def test_console_script_declared():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["segzero"] == "segzero_tool.cli:main"
