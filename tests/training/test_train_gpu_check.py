"""benchmarks/train_gpu_check.py, the one command of the GPU check (training/README.md, 'GPU check'): its CPU proof
on the tiny architecture runs a training step and prints the measured and the estimated numbers; the 3B
architecture without CUDA is one line, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")
pytest.importorskip("peft")
pytest.importorskip("scipy")

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "train_gpu_check.py"


def _run(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *argv], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_the_tiny_cpu_proof_trains_and_reports_measured_and_estimated(tmp_path):
    # smaller than the script's defaults (4 prompts x 8, 256 tokens) so that it stays ~20 s on 2 cores
    done = _run("--arch", "tiny", "--cpu", "--steps", "1", "--no-write", "--prompts-per-step", "2",
                "--max-completion-length", "16", "--rows", "4")
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "recipe lora-24gb" in out and "= peak " in out  # the dry run of the same settings
    assert "(dry run exit 0)" in out
    assert "| step time, first (warm-up) |" in out
    assert "| peak RSS of the process (CPU; not comparable) |" in out
    assert "max_completion_length 16 (recipe: 1024)" in out  # the cap is said
    assert "Per step: 1: " in out
    assert not list((REPO / "benchmarks" / "results").glob("train_gpu_check_tiny_cpu.*"))  # --no-write


def test_the_3b_architecture_without_cuda_is_one_line_exit_2():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    done = _run("--arch", "3b", "--steps", "1", "--no-write", timeout=120)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs a CUDA GPU" in lines[0], done.stderr
