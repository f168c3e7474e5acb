"""What the README claims about its own structure and about the code, checked against both.

* "The two commands" holds exactly two commands, and the second is the test line ``.ci/run`` runs;
* every link of the table of contents leads to a heading, and every section is listed;
* the exit-code table lists the codes the ``segzero`` command returns;
* the ``segzero segment`` synopsis names every backend and every option;
* the Extras table lists exactly what each extra of pyproject.toml installs;
* the Python version agrees with ``requires-python``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def _lines_outside_code(text: str) -> list[tuple[str, bool]]:
    """Each line with whether it lies inside a fenced code block (fences count as inside)."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            out.append((line, True))
            fenced = not fenced
            continue
        out.append((line, fenced))
    return out


def _headings(level: str | None = None) -> list[str]:
    marks = ("## ", "### ", "#### ") if level is None else (level + " ",)
    return [line.split(" ", 1)[1] for line, code in _lines_outside_code(README)
            if not code and line.startswith(marks)]


def _section(title: str) -> str:
    """The text under ``title`` down to the next heading of any level."""
    start = README.index(title + "\n") + len(title) + 1
    rest = _lines_outside_code(README[start:])
    body = []
    for line, code in rest:
        if not code and line.startswith("#"):
            break
        body.append(line)
    return "\n".join(body)


def _code_blocks(text: str) -> list[str]:
    return re.findall(r"(?ms)^```[a-z]*\n(.*?)^```", text)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _table(after: str) -> list[list[str]]:
    """The rows (cells stripped) of the first Markdown table after the text ``after``."""
    start = README.index(after)
    rows = []
    for line in README[start:].splitlines()[1:]:
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif rows:
            break
    return [r for r in rows[1:] if not set("".join(r)) <= set("-: ")]  # drop the header and the rule


# --- the two commands ---------------------------------------------------------------------------

def test_the_two_commands_are_two():
    blocks = _code_blocks(_section("## The two commands"))
    assert len(blocks) == 2, blocks
    main, tests = (b.strip() for b in blocks)
    assert "\n" not in main and "\n" not in tests
    assert main.startswith("python3 -m venv .venv") and "pip install -e . &&" in main
    assert 'segzero segment examples/coffee.png "What can I have if I\'m thirsty?" --out results/' in main
    assert tests.endswith("python -m pytest") and 'pip install -q -e ".[dev]"' in tests


def test_ci_runs_the_readme_test_command_verbatim():
    tests = _code_blocks(_section("## The two commands"))[1].strip()
    ci = (REPO / ".ci" / "run").read_text()
    runs = [line for line in ci.splitlines() if "python -m pytest" in line and not line.lstrip().startswith("#")]
    assert any(line.startswith(tests + " ") or line == tests for line in runs), (tests, runs)


def test_the_offline_variant_is_presented_as_a_variant():
    heading = next(h for h in _headings("###") if "Without the model hub" in h)
    assert "variant" in heading
    blocks = _code_blocks(_section("### " + heading))
    assert len(blocks) == 1 and "segzero make-tiny-models .tiny" in blocks[0]
    first = _code_blocks(_section("## The two commands"))[0].strip()
    assert blocks[0].strip().startswith(first.split(" && segzero segment")[0])  # the same install


# --- table of contents ----------------------------------------------------------------------------

def test_table_of_contents_links_resolve_and_cover_every_section():
    toc = _section("## Contents")
    links = re.findall(r"\[[^\]]+\]\(#([^)]+)\)", toc)
    anchors = {_slug(h) for h in _headings()}
    assert links, "no table of contents"
    assert [a for a in links if a not in anchors] == []
    sections = [_slug(h) for h in _headings("##") if h != "Contents"]
    assert links == sections  # every section, in order
    for anchor in re.findall(r"\]\(#([^)]+)\)", README):  # any other in-page link too
        assert anchor in anchors, anchor


# --- exit codes -----------------------------------------------------------------------------------

def _all_subclasses(cls: type) -> set[type]:
    out = set()
    for sub in cls.__subclasses__():
        out |= {sub} | _all_subclasses(sub)
    return out


def test_exit_code_table_matches_the_code():
    import importlib

    from segzero_tool.errors import SegZeroError

    for module in ("segzero_tool.settings", "segzero_tool.cancel", "segzero_tool.reasoners.openai_compat",
                   "segzero_tool.eval.datasets", "segzero_tool.eval.runner", "segzero_tool.eval.command",
                   "segzero_tool.hub", "segzero_tool.serve"):
        importlib.import_module(module)
    codes = {cls.exit_code for cls in _all_subclasses(SegZeroError) if cls.__module__.startswith("segzero_tool.")
             and not cls.__module__.startswith(("segzero_tool.mcp_server", "segzero_tool.training"))}
    codes |= {1, 130}  # an unexpected error; Ctrl-C
    table = {int(row[0]) for row in _table("Errors are one line on stderr")}
    assert table == codes


# --- synopsis -------------------------------------------------------------------------------------

def _synopsis() -> str:
    block = next(b for b in _code_blocks(_section("## Command line")) if b.startswith("segzero segment"))
    return block.split("\nsegzero models")[0]


@pytest.mark.parametrize(("flag", "table"), [("--reasoner-backend", "REASONER_BACKENDS"),
                                             ("--segmenter-backend", "SEGMENTER_BACKENDS")])
def test_synopsis_lists_every_backend(flag, table):
    from segzero_tool import backends

    listed = re.search(re.escape(flag) + r" ([^\]]+)\]", _synopsis()).group(1).split("|")
    assert listed == [*getattr(backends, table), "pkg.mod:Class"]


def test_synopsis_lists_every_segment_option():
    import argparse

    from segzero_tool.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["segment"]
    options = {s for a in sub._actions for s in a.option_strings if s.startswith("--")} - {"--help"}
    listed = set(re.findall(r"\[(--[a-z-]+)", _synopsis())) | set(re.findall(r"\|(--[a-z-]+)", _synopsis()))
    if "[-v|-vv]" in _synopsis():
        listed.add("--verbose")
    assert options - listed == set(), "options missing from the README synopsis"
    assert listed - options == set(), "the README synopsis names options that do not exist"


# --- extras ---------------------------------------------------------------------------------------

def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].strip().lower().replace("_", "-") for r in requirements}


def test_extras_table_lists_what_each_extra_installs():
    rows = {row[0]: row[1] for row in _table("## Extras")}
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert {name.strip("`") for name in rows if name != "*(none)*"} == set(extras)
    for name, installs in rows.items():
        listed = {n.lower().replace("_", "-") for n in re.findall(r"`([^`]+)`", installs)}
        wanted = _names(PYPROJECT["project"]["dependencies"] if name == "*(none)*" else extras[name.strip("`")])
        assert listed == wanted, name


def test_python_version_agrees_with_pyproject():
    assert PYPROJECT["project"]["requires-python"] == ">=3.10"
    assert "Python ≥ 3.10" in _section("## The two commands")
    assert PYPROJECT["tool"]["ruff"]["target-version"] == "py310"
