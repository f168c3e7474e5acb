"""``segzero track`` as users run it: a subprocess, tiny models from ``segzero make-tiny-models``, a scripted
reasoner through the public plugin flag; killed with SIGKILL mid-run and run again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from segzero_tool.testing.synthetic_video import moving_shapes, write_clip, write_frame_folder

REPO = Path(__file__).resolve().parents[2]
ANSWER = '<think>x</think><answer>[{"bbox_2d":[52,210,210,420],"point_2d":[131,315]}]</answer>'


def _env(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGZERO_")}
    env.update({"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
                "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])})
    return env


def _segzero(*args, tmp_path, timeout=600):
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "segzero_tool", *map(str, args)], capture_output=True, text=True,
                          env=_env(tmp_path), timeout=timeout)
    return proc, time.monotonic() - t0


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-track")
    proc, _ = _segzero("make-tiny-models", root / "tiny", "--only", "sam2-video", tmp_path=root)
    assert proc.returncode == 0, proc.stderr
    assert "segzero track VIDEO QUERY --segmenter" in proc.stdout
    script = root / "script"
    script.mkdir()
    (script / "script.json").write_text(json.dumps([ANSWER]))
    clip = write_clip(root / "shapes.mp4", moving_shapes(16), fps=10)
    models = ["--reasoner-backend", "scripted:ScriptedReasoner", "--reasoner", script,
              "--segmenter", root / "tiny" / "segmenter-sam2-video", "--device", "cpu"]
    return root, clip, models


def test_killed_mid_run_then_resumed(setup, tmp_path):
    root, clip, models = setup
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "segzero_tool", "track", str(clip), "the red rectangle", "--out", str(out),
           *map(str, models)]
    proc = subprocess.Popen(cmd, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    frames = out / "frames.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if frames.exists() and len(frames.read_bytes().splitlines()) >= 4:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = frames.read_text().splitlines(keepends=True)
    assert 4 <= len(written) < 16
    assert not (out / "overlay.mp4").exists()
    again, _ = _segzero("track", clip, "the red rectangle", "--out", out, *models, tmp_path=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "track(s) for 'the red rectangle' over 16 frame(s) (1 key frame(s))" in again.stdout
    assert "wrote frames.jsonl, tracks.json, track.json, timeline.png and overlay.mp4" in again.stdout
    assert "Traceback" not in again.stderr and (out / "overlay.mp4").stat().st_size > 0
    final = frames.read_text().splitlines(keepends=True)
    complete = [line for line in written if line.endswith("\n")]
    assert final[:len(complete)] == complete  # what was written stays as it was
    assert [json.loads(line)["frame"] for line in final] == list(range(16))  # every frame once
    assert json.loads((out / "track.json").read_text())["status"] == "complete"


def test_a_frame_folder_with_fps(setup, tmp_path):
    root, _, models = setup
    folder = write_frame_folder(tmp_path / "frames", moving_shapes(6))
    proc, _ = _segzero("track", folder, "the red rectangle", "--out", tmp_path / "run", "--fps", "2",
                       "--key-frames", "every:1s", "--no-overlay", "--json", *models, tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    body = json.loads(proc.stdout)
    assert body["frames_done"] == 6 and body["key_frames"] == [0, 2, 4]
    assert not (tmp_path / "run" / "overlay.mp4").exists()


@pytest.mark.parametrize("args,code,message", [
    (["missing.mp4", "x"], 3, "missing.mp4"),
    (["{clip}", "x", "--key-frames", "often"], 2, "every:N"),
    (["{clip}", "  "], 2, "query"),
    (["{clip}", "x", "--match-iou", "2"], 2, "--match-iou"),
    (["{clip}", "x", "--max-frames", "0"], 2, "--max-frames"),
    (["{garbage}", "x"], 3, "garbage.mp4"),
    (["{clip}", "x", "--reasoner", "none"], 2, "--reasoner none"),
    (["{folder}", "x", "--key-frames", "every:2s"], 2, "--fps"),
])
def test_bad_input_is_one_line_before_any_model_loads(setup, tmp_path, args, code, message):
    root, clip, models = setup
    (tmp_path / "garbage.mp4").write_bytes(os.urandom(3000))
    folder = write_frame_folder(tmp_path / "frames", moving_shapes(2))
    args = [a.format(clip=clip, garbage=tmp_path / "garbage.mp4", folder=folder) for a in args]
    # models: the scripted reasoner, and a segmenter folder that does not exist (loading it would fail)
    proc, _ = _segzero("track", *args, "--out", tmp_path / "run", "--reasoner-backend", "scripted:ScriptedReasoner",
                       *([] if "--reasoner" in args else ["--reasoner", root / "script"]),
                       "--segmenter", tmp_path / "no-such-model", tmp_path=tmp_path)
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("segzero: error:") and message in lines[0], proc.stderr
    assert "loading models" not in proc.stderr


def test_out_holding_another_run_is_refused_before_models_load_then_restarted(setup, tmp_path):
    root, clip, models = setup
    out = tmp_path / "run"
    first, _ = _segzero("track", clip, "the red rectangle", "--out", out, "--max-frames", "3", "--no-overlay",
                        *models, tmp_path=tmp_path)
    assert first.returncode == 0, first.stderr
    other, _ = _segzero("track", clip, "the blue circle", "--out", out, "--max-frames", "3", "--no-overlay",
                              "--key-frames", "every:2", *models, tmp_path=tmp_path)
    assert other.returncode == 2 and "other settings (query, key_frames)" in other.stderr, other.stderr
    assert "--restart" in other.stderr and "loading models" not in other.stderr
    again, _ = _segzero("track", clip, "the blue circle", "--out", out, "--max-frames", "3", "--no-overlay",
                        "--restart", *models, tmp_path=tmp_path)
    assert again.returncode == 0, again.stderr
    assert json.loads((out / "track.json").read_text())["settings"]["query"] == "the blue circle"
