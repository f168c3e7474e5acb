"""``segzero batch`` as users run it: in this process for the outputs and the one-line errors (checked before any
model loads), and as a real subprocess killed with SIGKILL in the middle of a job and started again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from batch_support import (
    BOXES,
    SIZE,
    TESTS,
    box_answer,
    read_results,
    script_folder,
    write_images,
)
from cli_support import assert_one_line, run_main, scripted_segmenter_args

REPO = TESTS.parent


def _scripted(tmp_path: Path) -> list[str]:
    return ["--reasoner-backend", "scripted:ScriptedReasoner", "--reasoner", str(script_folder(tmp_path)),
            *scripted_segmenter_args(tmp_path), "--device", "cpu"]


def test_folder_job_prints_a_summary_and_writes_its_files(tmp_path, capsys):
    write_images(tmp_path / "in", 3)
    code, out, err = run_main(capsys, "batch", tmp_path / "in", "--query", "the squares", "--out", tmp_path / "out",
                              "--png-masks", *_scripted(tmp_path))
    assert code == 0, err
    assert "3 rows: 3 processed (0 found nothing), 0 errors; 6 objects" in out
    assert "wrote results.jsonl, coco.json, summary.json, masks/ in" in out
    assert "input " in err and "3 rows (folder)" in err
    assert len(read_results(tmp_path / "out")) == 3
    # the same command again: everything is resumed, nothing computed
    code, out, err = run_main(capsys, "batch", tmp_path / "in", "--query", "the squares", "--out", tmp_path / "out",
                              "--png-masks", "--json", *_scripted(tmp_path))
    assert code == 0, err
    summary = json.loads(out)
    assert summary["resumed"] == 3 and summary["computed"] == 0 and summary["objects"] == 6
    assert "resuming" in err


def test_table_with_a_category_column(tmp_path, capsys):
    write_images(tmp_path / "img", 2)
    table = tmp_path / "rows.csv"
    table.write_text("id,image,query,label\n"
                     "a,img/img-000.png,the cups,cup\n"
                     "b,img/img-000.png,the mugs,cup\n"
                     "c,img/img-001.png,the plates,plate\n")
    code, out, err = run_main(capsys, "batch", table, "--category", "label", "--out", tmp_path / "out",
                              *_scripted(tmp_path))
    assert code == 0, err
    coco = json.loads((tmp_path / "out" / "coco.json").read_text())
    assert [c["name"] for c in coco["categories"]] == ["cup", "plate"]
    assert len(coco["images"]) == 2 and len(coco["annotations"]) == 6


@pytest.mark.parametrize(("argv", "message"), [
    (["batch", "{in}", "--out", "{out}"], "--query"),
    (["batch", "{missing}", "--query", "q", "--out", "{out}"], "missing"),
    (["batch", "{in}", "--query", "q", "--out", "{out}", "--batch-size", "0"], "--batch-size must be at least 1"),
    (["batch", "{in}", "--query", "q", "--out", "{out}", "--prefetch", "0"], "--prefetch must be at least 1"),
    (["batch", "{in}", "--query", "q", "--out", "{out}", "--ray-address", "auto"], "add --engine ray"),
    (["batch", "{in}", "--query", "q", "--out", "{file}"], "is an existing file"),
    (["batch", "{in}", "--query", "q", "--out", "{in}/labels"], "lies inside the input folder"),
    (["batch", "{in}", "--query", "", "--out", "{out}"], "query"),
    (["batch", "{in}", "--query", "q", "--out", "{out}", "--reasoner", "none"], "--reasoner none"),
    (["batch", "{in}", "--query", "q", "--out", "{out}", "--engine", "ray", "--ray-segmenter-actors", "0"],
     "--ray-segmenter-actors must be at least 1"),
    (["batch", "{in}", "--query", "q", "--out", "{out}", "--engine", "ray", "--ray-reasoner-gpus", "nan"],
     "--ray-reasoner-gpus must be a number >= 0"),
])
def test_bad_invocations_are_one_line_before_any_model_loads(tmp_path, capsys, no_loading, argv, message):
    write_images(tmp_path / "in", 1)
    (tmp_path / "file").write_text("x")
    fill = {"in": tmp_path / "in", "out": tmp_path / "out", "missing": tmp_path / "missing", "file": tmp_path / "file"}
    code, _, err = run_main(capsys, *[a.format(**{k: str(v) for k, v in fill.items()}) for a in argv])
    assert code == 2, err
    assert_one_line(err, message)


def test_another_job_in_out_is_refused_before_the_models_load(tmp_path, capsys, monkeypatch):
    write_images(tmp_path / "in", 2)
    code, _, err = run_main(capsys, "batch", tmp_path / "in", "--query", "the squares", "--out", tmp_path / "out",
                            *_scripted(tmp_path))
    assert code == 0, err
    from segzero_tool.pipeline import SegZeroPipeline

    def boom(*a, **k):
        raise AssertionError("a model was loaded before the check")

    monkeypatch.setattr(SegZeroPipeline, "from_pretrained", classmethod(boom))
    code, _, err = run_main(capsys, "batch", tmp_path / "in", "--query", "the circles", "--out", tmp_path / "out",
                            *_scripted(tmp_path))
    assert code == 2
    assert_one_line(err, "input: other rows (their ids, images, queries or categories differ); query: 'the squares' then, 'the circles' now")


@pytest.mark.slow
def test_tiny_models_through_the_public_loading_path(tmp_path, capsys, tiny_models):
    """The real transformers backends (random weights answer garbage: the records say how it parsed)."""
    write_images(tmp_path / "in", 2)
    code, out, err = run_main(capsys, "batch", tmp_path / "in", "--query", "the squares", "--out", tmp_path / "out",
                              "--reasoner", tiny_models["reasoner"], "--segmenter", tiny_models["segmenter"],
                              "--device", "cpu", "--max-new-tokens", "8", "--batch-size", "2")
    assert code == 0, err
    recs = read_results(tmp_path / "out")
    assert [r["status"] for r in recs] == ["ok", "ok"]
    assert all(r["parse_status"] and r["raw_output"] is not None for r in recs)
    assert "2 rows: 2 processed" in out


def _cli(*args: object, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "segzero_tool", "batch", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_killed_with_sigkill_and_started_again(tmp_path):
    from slow_plugins import slow_folder

    write_images(tmp_path / "in", 12)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
           "HF_HUB_OFFLINE": "1"}
    answer = box_answer(BOXES, *SIZE)
    slow = slow_folder(tmp_path, answer, answer_s=0.4)
    args = ["--query", "the squares", "--batch-size", "1", "--reasoner-backend", "slow_plugins:SlowLoadingReasoner",
            "--reasoner", slow, *scripted_segmenter_args(tmp_path), "--device", "cpu", "--png-masks"]
    ref = _cli(tmp_path / "in", "--out", tmp_path / "ref", *args, env=env)
    assert ref.wait(timeout=120) == 0, ref.stderr.read()
    proc = _cli(tmp_path / "in", "--out", tmp_path / "out", *args, env=env)
    results = tmp_path / "out" / "results.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if results.exists() and len(results.read_text().splitlines()) >= 4:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    first = len(results.read_text().splitlines())
    assert 4 <= first < 12
    again = _cli(tmp_path / "in", "--out", tmp_path / "out", *args, env=env)
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    assert f"resuming {tmp_path / 'out'}: {first} of 12 rows already done" in err
    assert read_results(tmp_path / "out") == read_results(tmp_path / "ref")
    lines = results.read_text().splitlines()
    assert len(lines) == 12 == len({json.loads(x)["id"] for x in lines})
    assert sorted(os.listdir(tmp_path / "out" / "masks")) == sorted(os.listdir(tmp_path / "ref" / "masks"))
    assert json.loads((tmp_path / "out" / "coco.json").read_text())["annotations"] == \
        json.loads((tmp_path / "ref" / "coco.json").read_text())["annotations"]
