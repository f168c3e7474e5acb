"""The README's offline command lines run as written, in a shell, with no model hub.

* the variant of the first command for machines without the hub (from ``segzero make-tiny-models`` on:
  the test environment is the installed virtual environment);
* the agent example's offline line (``examples/agents/drink_agent.py ... --offline``), verbatim;
* the robot planner's demo line (``examples/agents/robot_planner.py --demo --yes``), verbatim.

Each runs in a fresh folder holding a link to ``examples/``, with ``HF_ENDPOINT`` at a closed port.
``SEGZERO_MAX_NEW_TOKENS`` only keeps the tiny random reasoner from writing its whole budget.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")

pytestmark = pytest.mark.slow


def _bash_lines() -> list[str]:
    return [line.strip() for block in re.findall(r"(?ms)^```bash\n(.*?)^```", README) for line in block.splitlines()]


def _run_in_fresh_folder(line: str, tmp_path: Path) -> subprocess.CompletedProcess:
    (tmp_path / "examples").symlink_to(REPO / "examples")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SEGZERO_", "HF_"))}
    env.update({
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        "HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": f"http://127.0.0.1:{closed}",
        "SEGZERO_MAX_NEW_TOKENS": "24", "PYTHONPATH": str(REPO),
    })
    return subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)


def test_offline_variant_of_the_first_command(tmp_path):
    line = next(line for line in _bash_lines() if "make-tiny-models .tiny && segzero segment" in line)
    assert line.startswith("python3 -m venv .venv && . .venv/bin/activate && pip install -e . && ")
    proc = _run_in_fresh_folder(line.split("pip install -e . && ", 1)[1], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("result.json", "mask_union.png", "overlay.png"):
        assert (tmp_path / "results" / name).exists(), name


def test_agent_example_offline_line(tmp_path):
    pytest.importorskip("langgraph")
    line = next(line for line in _bash_lines() if "drink_agent.py" in line and "--offline" in line)
    proc = _run_in_fresh_folder(line, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[agent] tool call segment_by_reasoning(" in proc.stdout, proc.stdout
    assert "[tools] " in proc.stdout
    assert proc.stdout.strip().splitlines()[-1].startswith("[agent] "), proc.stdout


def test_robot_planner_demo_line(tmp_path):
    pytest.importorskip("langgraph")
    line = next(line for line in _bash_lines() if "robot_planner.py" in line and "--demo" in line)
    proc = _run_in_fresh_folder(line, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "status: executed" in proc.stdout, proc.stdout
