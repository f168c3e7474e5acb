"""benchmarks/video_speed.py and benchmarks/video_memory.py: CPU proof runs at tiny sizes, as the lead's full
measurements run them (subprocesses, --no-write), and their one-line refusals of bad arguments."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("av")

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SPEED = REPO / "benchmarks" / "video_speed.py"
MEMORY = REPO / "benchmarks" / "video_memory.py"
RESULTS = REPO / "benchmarks" / "results"


def _run(script: Path, *argv: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(script), *argv], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _stamps(*names: str) -> dict[str, float | None]:
    return {n: (RESULTS / n).stat().st_mtime if (RESULTS / n).exists() else None for n in names}


def test_video_speed_tiny_cpu_proof_reports_fps_and_the_encoder_share():
    before = _stamps("video_speed_cpu.md", "video_speed_cpu.json")
    done = _run(SPEED, "--archs", "tiny-video-test", "--objects", "1,3", "--frames", "1", "--warmup", "1",
                "--size", "160x120", "--threads", "1", "--no-write")
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "# Video tracking speed on CPU (fp32, 1 torch threads; random weights)" in out
    assert "Machine: " in out and "torch " in out and "transformers " in out
    for row in ("| **1 object: frames per second** | **", "| **3 objects: frames per second** | **",
                "|     of which image encoder | ", "|   frame 0 (encoder + objects added from masks) | "):
        assert row in out, row
    # frame 0 plus 1 warm-up plus 1 timed step, for each object count
    assert out.count("[3 obj] frame ") == 3 and out.count("[1 obj] frame ") == 3
    assert _stamps("video_speed_cpu.md", "video_speed_cpu.json") == before  # --no-write


@pytest.mark.parametrize("argv, message", [
    (["--archs", "hiera-huge"], "unknown video architecture"),
    (["--objects", "4"], "--objects: counts from 1 to 3"),
    (["--size", "10x10"], "--size must be at least 32x32"),
    (["--dtype", "bf16"], "--dtype bf16 is for CUDA only"),
])
def test_video_speed_refuses_bad_arguments_in_one_line(argv, message):
    done = _run(SPEED, *argv, "--no-write", timeout=120)
    assert done.returncode == 2
    assert message in done.stderr.strip().splitlines()[-1], done.stderr
    assert "Traceback" not in done.stderr


def test_video_memory_streams_a_clip_and_reports_rss_slope_and_tracker_sizes():
    before = _stamps("video_memory_cpu.md", "video_memory_cpu.json")
    # 30 frames prove the mechanics; the flatness claim is the 1,000-frame run's (here the allocator is still
    # warming up, so the bound is loosened)
    done = _run(MEMORY, "--frames", "30", "--sample-every", "3", "--size", "64x48", "--max-growth-mb", "64",
                "--no-write")
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "# Video tracking memory over 30 frames (CPU)" in out
    assert "**Flat**: within the bound." in out
    for frame in (3, 15, 30):  # 10%, 50% and 100% of the clip
        assert f"| RSS at frame {frame} | " in out
    assert "| RSS growth, frame 15 -> 30 | " in out  # baseline: min(200, 30 // 2)
    assert "| tracker: frames of pixels kept (max) | 1 |" in out
    assert "| key frames / reasoner calls | 1 / 1 |" in out
    assert "\nslope " in out and " MB per 100 frames; RSS growth frame 15 -> 30: " in out
    # the tiny model's 17-frame window: per-object outputs stop growing once it is full
    rows = [line.split(" | ") for line in out.splitlines() if line.startswith("| 30 | ")]
    assert rows and int(rows[0][3]) <= 18, rows
    assert _stamps("video_memory_cpu.md", "video_memory_cpu.json") == before  # --no-write


def test_video_memory_exits_1_when_rss_grows_past_the_bound():
    # a negative bound no run can meet: the check fires, says why, and the exit code says so
    done = _run(MEMORY, "--frames", "10", "--sample-every", "5", "--size", "64x48", "--no-overlay",
                "--max-growth-mb", "-1000", "--no-write")
    assert done.returncode == 1, done.stderr[-3000:]
    assert "**NOT flat**: RSS grew " in done.stdout
    assert done.stderr.strip().splitlines()[-1].startswith("memory NOT flat: RSS grew ")


def test_video_memory_refuses_a_bad_key_frame_policy_in_one_line():
    done = _run(MEMORY, "--key-frames", "sometimes", "--no-write", timeout=120)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "sometimes" in done.stderr.strip().splitlines()[-1]
