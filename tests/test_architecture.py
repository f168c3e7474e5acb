"""The import direction, read from the source with ``ast`` (nothing here imports the project).

Layers (everything installs under ``segzero_tool``; the adapter folders at the repository root are
its sub-packages ``segzero_tool.mcp_server``, ``segzero_tool.agents`` and ``segzero_tool.training``):

* the core (``segzero_tool/``) imports no adapter and none of the adapters' frameworks (MCP SDK,
  LangChain, LangGraph, TRL);
* ``mcp_server/`` and ``agents/`` import neither each other nor ``training/``;
* ``training/`` may import the core (``segzero_tool.eval`` included) but not ``mcp_server/`` or ``agents/``;
* the core's modules import each other without cycles at module level (imports inside functions and
  under ``if TYPE_CHECKING:`` run later, so they do not count there).

Every ``import`` / ``from ... import`` counts for the direction rules, wherever it is: at module level,
inside functions, under ``TYPE_CHECKING``. So do the submodules named in a ``lazy_exports`` table and
``importlib.import_module("...")`` calls with a literal name. Relative imports are resolved against
the file's installed package.

The tests folder is checked too: test modules never import ``conftest`` by name (several folders have
one, and which one ``import conftest`` finds depends on the collection order), and helper modules have
unique names (the tests folders are not packages, so two helpers with one name would clash).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "segzero_tool"
#: folder -> installed package name (pyproject ``[tool.setuptools.package-dir]``)
PACKAGE_DIRS = {
    "segzero_tool": PACKAGE,
    "mcp_server": f"{PACKAGE}.mcp_server",
    "agents": f"{PACKAGE}.agents",
    "training": f"{PACKAGE}.training",
}
ADAPTERS = {f"{PACKAGE}.mcp_server": "mcp_server", f"{PACKAGE}.agents": "agents", f"{PACKAGE}.training": "training"}
#: the adapter folders' names as top-level modules: they only exist as ``segzero_tool.<name>`` once installed
BARE_ADAPTERS = ("mcp_server", "agents", "training")
ADAPTER_FRAMEWORKS = ("mcp", "langchain*", "langgraph*", "trl")

#: layer -> module patterns it must not import (``x`` matches ``x`` and ``x.*``; ``x*`` any name starting so)
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "core": (f"{PACKAGE}.mcp_server", f"{PACKAGE}.agents", f"{PACKAGE}.training", *ADAPTER_FRAMEWORKS,
             *BARE_ADAPTERS),
    "mcp_server": (f"{PACKAGE}.agents", f"{PACKAGE}.training", *BARE_ADAPTERS),
    "agents": (f"{PACKAGE}.mcp_server", f"{PACKAGE}.training", *BARE_ADAPTERS),
    "training": (f"{PACKAGE}.mcp_server", f"{PACKAGE}.agents", *BARE_ADAPTERS),
}

#: module-level import cycles among the core's modules that are known and accepted: frozenset of
#: the modules in the cycle -> why it is kept. Empty: there are none today; add one only with a reason.
KNOWN_CORE_CYCLES: dict[frozenset[str], str] = {}


# --- reading the source ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Import:
    """One imported module: ``target`` (absolute), where it was written, and whether it runs at import time."""

    source: str
    target: str
    path: Path
    line: int
    module_level: bool


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    is_package: bool

    @property
    def package(self) -> str:
        """The package relative imports are resolved against."""
        return self.name if self.is_package else self.name.rpartition(".")[0]


def _modules() -> dict[str, Module]:
    mods: dict[str, Module] = {}
    for folder, package in PACKAGE_DIRS.items():
        root = REPO / folder
        for path in sorted(root.rglob("*.py")):
            rel = path.relative_to(root)
            if any(part == "__pycache__" for part in rel.parts):
                continue
            parts = list(rel.with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            name = ".".join([package, *parts])
            mods[name] = Module(name, path, is_package)
    return mods


MODULES = _modules()


def _layer(module: str) -> str:
    for package, layer in ADAPTERS.items():
        if module == package or module.startswith(package + "."):
            return layer
    return "core"


def _resolve(module: Module, level: int, name: str | None) -> str:
    """The absolute name of ``from <level dots><name> import ...`` written in ``module``."""
    if level == 0:
        assert name, f"{module.path}: 'from import' without a module"
        return name
    base = module.package.split(".")
    if level - 1 >= len(base):
        raise AssertionError(f"{module.path}: relative import beyond the top-level package")
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _literal_exports(tree: ast.Module) -> dict[str, list[str]]:
    """Module-level ``NAME = {"public": "submodule", ...}`` dict literals of strings."""
    tables: dict[str, list[str]] = {}
    for node in tree.body:
        target, value = None, None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign):
            target, value = node.target, node.value
        if isinstance(target, ast.Name) and isinstance(value, ast.Dict):
            subs = [v.value for v in value.values if isinstance(v, ast.Constant) and isinstance(v.value, str)]
            tables[target.id] = subs
    return tables


def _imports(module: Module) -> Iterator[Import]:
    tree = ast.parse(module.path.read_text(encoding="utf-8"), filename=str(module.path))
    tables = _literal_exports(tree)

    def found(target: str, node: ast.AST, module_level: bool) -> Import:
        return Import(module.name, target, module.path, getattr(node, "lineno", 0), module_level)

    def visit(node: ast.AST, module_level: bool) -> Iterator[Import]:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield found(alias.name, node, module_level)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, node.level, node.module)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                # ``from pkg import submodule`` imports the submodule; ``from pkg import name``, pkg
                yield found(sub if sub in MODULES else base, node, module_level)
        elif isinstance(node, ast.Call):
            func = node.func
            callee = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            args = node.args
            if callee in ("import_module", "__import__") and args and isinstance(args[0], ast.Constant) \
                    and isinstance(args[0].value, str):
                name = args[0].value
                if name.startswith("."):  # import_module(".x", package=__name__): assume this package
                    level = len(name) - len(name.lstrip("."))
                    name = _resolve(module, level, name.lstrip(".") or None)
                yield found(name, node, False)
            if callee == "lazy_exports" and len(args) >= 3 and isinstance(args[2], ast.Name):
                # lazy_exports(__name__, globals(), TABLE): each submodule is imported on first use
                for sub in tables.get(args[2].id, ()):
                    yield found(f"{module.package}.{sub}", node, False)
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                yield from visit(child, False)
            for child in node.orelse:
                yield from visit(child, module_level)
            return
        inner = module_level and not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            yield from visit(child, inner)

    yield from visit(tree, True)


ALL_IMPORTS: list[Import] = [imp for mod in MODULES.values() for imp in _imports(mod)]


def _matches(target: str, pattern: str) -> bool:
    if pattern.endswith("*"):
        return target.startswith(pattern[:-1])
    return target == pattern or target.startswith(pattern + ".")


def _where(imp: Import) -> str:
    return f"{imp.path.relative_to(REPO)}:{imp.line}: {imp.source} imports {imp.target}"


# --- the reader itself -----------------------------------------------------------------------------


def test_every_package_folder_is_read():
    names = set(MODULES)
    for package in PACKAGE_DIRS.values():
        assert package in names, f"{package}/__init__.py not found"
    assert f"{PACKAGE}.eval.runner" in names and f"{PACKAGE}.agents.planner" in names
    assert len(ALL_IMPORTS) > 100


def _fake(name: str, is_package: bool, source: str, tmp_path: Path) -> list[Import]:
    path = tmp_path / "fake.py"
    path.write_text(source, encoding="utf-8")
    return list(_imports(Module(name, path, is_package)))


def test_the_reader_resolves_relative_imports_and_tells_module_level_apart(tmp_path):
    src = (
        "from __future__ import annotations\n"
        "import os.path\n"
        "from typing import TYPE_CHECKING\n"
        "from . import store\n"
        "from .. import errors\n"
        "from ..eval import runner\n"
        "from .settings import Settings\n"
        "if TYPE_CHECKING:\n"
        "    from ..agents import tool\n"
        "else:\n"
        "    import json\n"
        "class A:\n"
        "    import re\n"
        "def f():\n"
        "    from ..training import rewards\n"
        "    return importlib.import_module('langchain_core.tools')\n"
    )
    got = {(i.target, i.module_level) for i in _fake(f"{PACKAGE}.mcp_server.fake", False, src, tmp_path)}
    assert got == {
        ("__future__", True), ("os.path", True), ("typing", True),
        (f"{PACKAGE}.mcp_server.store", True), (f"{PACKAGE}.errors", True), (f"{PACKAGE}.eval.runner", True),
        (f"{PACKAGE}.mcp_server.settings", True), (f"{PACKAGE}.agents.tool", False), ("json", True),
        ("re", True), (f"{PACKAGE}.training.rewards", False), ("langchain_core.tools", False),
    }
    # in a package's __init__, "." is the package itself
    got = {i.target for i in _fake(f"{PACKAGE}.agents", True, "from .tool import X\nfrom .. import lazy\n", tmp_path)}
    assert got == {f"{PACKAGE}.agents.tool", f"{PACKAGE}.lazy"}
    with pytest.raises(AssertionError, match="beyond"):
        _fake(PACKAGE, True, "from .. import x\n", tmp_path)


def test_the_reader_sees_lazy_export_tables(tmp_path):
    src = "from .lazy import lazy_exports\nT = {'A': 'a', 'B': 'b.c'}\n__getattr__, __dir__ = lazy_exports(__name__, globals(), T)\n"
    got = {(i.target, i.module_level) for i in _fake(f"{PACKAGE}.agents", True, src, tmp_path)}
    assert (f"{PACKAGE}.agents.a", False) in got and (f"{PACKAGE}.agents.b.c", False) in got


# --- the direction rules ---------------------------------------------------------------------------


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_import_direction(layer):
    bad = [_where(imp) for imp in ALL_IMPORTS if _layer(imp.source) == layer
           and any(_matches(imp.target, pattern) for pattern in FORBIDDEN[layer])]
    assert not bad, f"{layer} must not import {', '.join(FORBIDDEN[layer])}:\n" + "\n".join(bad)


def test_the_rules_catch_a_violation(tmp_path):
    imps = _fake(f"{PACKAGE}.eval.fake", False, "def f():\n    from ..mcp_server import server\n    import langgraph.graph\n",
                 tmp_path)
    assert [i.target for i in imps if any(_matches(i.target, p) for p in FORBIDDEN["core"])] == [
f"{PACKAGE}.mcp_server.server", "langgraph.graph"]
    assert _layer(f"{PACKAGE}.training.rewards") == "training" and _layer(f"{PACKAGE}.eval.runner") == "core"
    assert not _matches(f"{PACKAGE}.mcp_server", "mcp") and _matches("mcp.types", "mcp")
    assert _matches("langchain_core.tools", "langchain*") and not _matches("trlx", "trl")


# --- no cycles in the core ------------------------------------------------------------------------


def _core_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES if _layer(m) == "core"}
    for imp in ALL_IMPORTS:
        if imp.module_level and imp.source in graph and imp.target in graph and imp.target != imp.source:
            graph[imp.source].add(imp.target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = set()
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    comp.add(top)
                    if top == node:
                        break
                if len(comp) > 1:
                    found.append(frozenset(comp))
    return found


def _describe(cycle: Iterable[str], graph: dict[str, set[str]]) -> str:
    members = set(cycle)
    edges = sorted(f"{a} -> {b}" for a in members for b in graph[a] if b in members)
    return "{" + ", ".join(sorted(members)) + "}: " + "; ".join(edges)


def test_cycle_finder():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"f"}, "f": {"e"}, "g": set()}
    assert sorted(map(sorted, _cycles(graph))) == [["a", "b", "c"], ["e", "f"]]


def test_no_module_level_import_cycles_in_the_core():
    graph = _core_graph()
    cycles = _cycles(graph)
    unexpected = [c for c in cycles if c not in KNOWN_CORE_CYCLES]
    assert not unexpected, "module-level import cycles in the core:\n" + "\n".join(
        _describe(c, graph) for c in unexpected)
    stale = [sorted(c) for c in KNOWN_CORE_CYCLES if c not in cycles]
    assert not stale, f"known cycles that are gone (remove them from KNOWN_CORE_CYCLES): {stale}"


def test_eval_report_does_not_import_the_runner():
    """``runner`` imports ``report`` (lazily, to write the report); ``report`` never imports ``runner``
    at run time (only its types, under ``TYPE_CHECKING``)."""
    report = f"{PACKAGE}.eval.report"
    runner = f"{PACKAGE}.eval.runner"
    assert not [_where(i) for i in ALL_IMPORTS if i.source == report and i.target == runner and i.module_level]
    assert [i for i in ALL_IMPORTS if i.source == runner and i.target == report]


# --- the tests folder -----------------------------------------------------------------------------


def _test_files() -> list[Path]:
    return sorted(p for p in (REPO / "tests").rglob("*.py") if "__pycache__" not in p.parts)


def test_no_test_module_imports_a_conftest():
    bad = []
    for path in _test_files():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(n == "conftest" or n.startswith("conftest.") for n in names):
                bad.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not bad, ("import shared test helpers from a module with a unique name, not from conftest "
                     "(which conftest 'conftest' is depends on the collection order):\n" + "\n".join(bad))


def test_test_helper_modules_have_unique_names():
    by_name: dict[str, list[str]] = {}
    for path in _test_files():
        if path.name != "conftest.py" and (REPO / "tests") in path.parents:
            by_name.setdefault(path.stem, []).append(str(path.relative_to(REPO)))
    clashes = {name: paths for name, paths in by_name.items() if len(paths) > 1}
    assert not clashes, f"tests/ is not a package: modules with one name clash on import: {clashes}"
