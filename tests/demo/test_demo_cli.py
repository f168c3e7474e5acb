"""``segzero demo`` as a user starts it: a subprocess that serves the page at once (models loading behind it), keeps
its downloads in a temporary folder it removes when stopped with Ctrl-C, and the README's defaults."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
README = (TESTS.parent / "README.md").read_text(encoding="utf-8")

pytest.importorskip("gradio")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serves_at_once_and_removes_its_temporary_folder_on_ctrl_c(tmp_path):
    sys.path.insert(0, str(TESTS))
    from slow_plugins import slow_folder

    port = _free_port()
    slow = slow_folder(tmp_path, "<answer>[]</answer>", load_s=30)  # the page must not wait for this
    seg = tmp_path / "seg"
    seg.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
           "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "segzero_tool", "demo", "--port", str(port), "--reasoner-backend",
                             "slow_plugins:SlowLoadingReasoner", "--reasoner", str(slow), "--segmenter-backend",
                             "scripted:BoxSegmenter", "--segmenter", str(seg)], env=env, stderr=subprocess.PIPE,
                            text=True)
    try:
        seen = []
        for _ in range(50):  # other libraries may print first
            line = proc.stderr.readline()
            seen.append(line)
            if "segzero demo on" in line or not line:
                break
        assert f"segzero demo on http://127.0.0.1:{port}" in line, "".join(seen)
        threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep the pipe drained
        folder = Path(re.search(r"downloads go to (.+) \(removed when the app stops\)", line).group(1))
        assert folder.is_dir()
        t0 = time.monotonic()
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert time.monotonic() - t0 < 25, "the page did not answer while the models were loading"
                time.sleep(0.2)
        assert time.monotonic() - t0 < 25  # well before the 30 s load ends
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        assert not folder.exists()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_the_readme_defaults_are_the_parsers():
    from segzero_tool.cli import build_parser
    from segzero_tool.demo.session import DEFAULT_VIEW_SIDE, MAX_UNDO

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    defaults = {a.dest: a.default for a in sub.choices["demo"]._actions}
    assert defaults["host"] == "127.0.0.1" and "It listens on `127.0.0.1` unless" in README
    assert defaults["port"] == 7860 and "`--port` (7860)" in README
    assert defaults["share"] is False and "only with\n  `--share`" in README
    assert defaults["view_side"] == DEFAULT_VIEW_SIDE == 1024 and "`--view-side`, 1024" in README
    assert MAX_UNDO == 50 and "up to 50 steps" in README
    assert defaults["max_file_mb"] == 50 and "an upload over `--max-file-mb` (50)" in README


def test_the_page_offers_the_example_photographs_only():
    from segzero_tool.cli_demo import EXAMPLES_DIR, examples

    assert [Path(p).name for p in examples()] == ["coffee.png", "chelsea.png"]
    assert all(Path(p).parent == EXAMPLES_DIR for p in examples())
    assert examples(TESTS) == []  # no IMAGES.md there
