"""Shared by the in-process CLI tests: run ``segzero`` in this process, the scripted segmenter's flags, and
the one-line error check."""

from __future__ import annotations

from pathlib import Path

from segzero_tool import cli


def scripted_segmenter_args(tmp_path: Path) -> list[str]:
    """Flags loading tests/scripted.py's BoxSegmenter through the public plugin path (a folder it ignores)."""
    folder = tmp_path / "seg"
    folder.mkdir(exist_ok=True)
    return ["--segmenter-backend", "scripted:BoxSegmenter", "--segmenter", str(folder)]


def run_main(capsys, *argv: object) -> tuple[int, str, str]:
    """``segzero ARGV`` in this process: (exit code, stdout, stderr)."""
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as exc:  # argparse
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line(err: str, message: str) -> None:
    """stderr is exactly one ``segzero: error: ...`` line containing ``message``."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("segzero: error:") and message in lines[0], lines[0]
