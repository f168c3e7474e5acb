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


def test_the_mcp_server_starts_without_numpy_or_the_pipeline():
    """What segzero-mcp imports before it answers initialize: the SDK and the server, nothing heavy (the
    pipeline, numpy, PIL and torch come with the background load)."""
    import subprocess
    import sys

    code = ("import sys; import segzero_tool.mcp_server.cli, segzero_tool.mcp_server.server, "
            "segzero_tool.mcp_server.service; from segzero_tool.mcp_server.settings import ServerSettings; "
            "ServerSettings.from_args([]); "
            "print(sorted(m for m in ('numpy', 'PIL', 'torch', 'transformers', 'segzero_tool.pipeline') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout
