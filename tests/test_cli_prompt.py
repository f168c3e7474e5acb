"""`segzero prompt` (the segmenter alone, your own boxes and clicks) and `segzero segment --verify`,
run in-process with the scripted backends: written files, inspection, one-line errors with exit 2 before
any model loads, and `segment --reasoner none` pointing at `segzero prompt`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_support import assert_one_line as _one_line
from cli_support import run_main as _main
from cli_support import scripted_segmenter_args as _seg

REPO = Path(__file__).resolve().parents[1]
COFFEE = str(REPO / "examples" / "coffee.png")  # 600x400
TWO = ('<think>Two things.</think><answer>[{"bbox_2d": [168,126,588,672], "point_2d": [378,420]}, '
       '{"bbox_2d": [600,700,800,830], "point_2d": [700,760]}]</answer>')


def test_prompt_writes_the_result_masks_overlay_and_inspection(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SEGZERO_REASONER", raising=False)
    out = tmp_path / "out"
    code, stdout, err = _main(capsys, "prompt", COFFEE, "--box", "10,20,100,120", "--point", "50,60",
                              "--negative", "12,22", "--label", "cup", *_seg(tmp_path), "--out", str(out),
                              "--inspect", "--device", "cpu")
    assert code == 0, err
    assert {p.name for p in out.iterdir()} == {"result.json", "mask_0.png", "mask_union.png", "overlay.png",
                                                "logits.npz", "inspection.png"}
    data = json.loads((out / "result.json").read_text())
    assert data["prompt_format"] == "prompts" and data["reasoner"] is None
    [obj] = data["objects"]
    assert obj["box"] == [10, 20, 100, 120] and obj["label"] == "cup"
    assert (out / "inspection.png").read_bytes().startswith(b"\x89PNG")
    assert "#0 box [10, 20, 100, 120]" in stdout and "inspection.png" in stdout
    assert "loading segmenter" in err and "reason" not in err


def test_prompt_objects_json_and_file_and_json_output(tmp_path, capsys):
    objs = [{"box": [0, 0, 50, 50]}, {"points": [[300, 200]], "label": "dot"}]
    f = tmp_path / "objs.json"
    f.write_text(json.dumps(objs))
    for spec in (json.dumps(objs), "@" + str(f)):
        code, stdout, err = _main(capsys, "prompt", COFFEE, "--objects", spec, *_seg(tmp_path), "--json")
        assert code == 0, err
        data = json.loads(stdout)
        assert [o["box"] for o in data["objects"]][0] == [0, 0, 50, 50] and len(data["objects"]) == 2
    # --objects and --box together: the flags' object comes last
    code, stdout, _ = _main(capsys, "prompt", COFFEE, "--objects", json.dumps(objs[:1]), "--box", "5,5,9,9",
                            *_seg(tmp_path), "--json")
    assert code == 0 and [o["box"] for o in json.loads(stdout)["objects"]] == [[0, 0, 50, 50], [5, 5, 9, 9]]


@pytest.mark.parametrize(("argv", "message"), [
    (["--box", "10,10,a,100"], "--box must be x1,y1,x2,y2 (4 numbers"),
    (["--box", "1,2,3"], "--box must be x1,y1,x2,y2"),
    (["--point", "1"], "--point must be x,y"),
    ([], "nothing to segment"),
    (["--objects", "{not json"], "--objects is not valid JSON"),
    (["--objects", "@/no/such/file.json"], "the file cannot be read"),
    (["--objects", "[]"], "nothing to segment"),
    (["--objects", '"box"'], "--objects must be a JSON list"),
    (["--box", "5000,5000,6000,6000"], "objects[0].box [5000, 5000, 6000, 6000] lies entirely outside"),
    (["--negative", "5,5"], "objects[0] has only negative points"),
    (["--objects", '[{"box": [1, 2, 3, 4], "colour": 1}]'], "objects[0]"),
    (["--box", "1,1,9,9", "--max-objects", "0"], "--max-objects must be at least 1"),
    (["--box", "1,1,9,9", "--dtype", "float8"], "--dtype must be auto"),
    (["--box", "1,1,9,9", "--inspect"], "--inspect writes inspection.png into --out"),
    (["--box", "1,1,9,9", "--max-pixels", "10"], "(or raise --max-pixels)"),
])
def test_prompt_bad_input_is_one_line_exit_2_before_loading(tmp_path, capsys, no_loading, argv, message):
    code, _, err = _main(capsys, "prompt", COFFEE, *argv)
    assert code in (2, 3), err
    _one_line(err, message)


def test_prompt_max_objects_cap(tmp_path, capsys, no_loading):
    objs = json.dumps([{"box": [0, 0, 5, 5]}] * 3)
    code, _, err = _main(capsys, "prompt", COFFEE, "--objects", objs, "--max-objects", "2")
    assert code == 2
    _one_line(err, "over the cap of 2 objects")


def test_prompt_has_no_reasoner_flags(capsys):
    code, _, err = _main(capsys, "prompt", COFFEE, "--box", "1,1,9,9", "--reasoner", "x")
    assert code == 2 and "unrecognized arguments: --reasoner x" in err and len(err.strip().splitlines()) == 1


def test_segment_reasoner_none_is_refused_before_loading(capsys, no_loading):
    code, _, err = _main(capsys, "segment", COFFEE, "what can I drink?", "--reasoner", "none")
    assert code == 2
    _one_line(err, "use `segzero prompt IMAGE --box x1,y1,x2,y2`")


def test_segment_reasoner_none_from_the_environment_too(capsys, no_loading, monkeypatch):
    monkeypatch.setenv("SEGZERO_REASONER", "none")
    code, _, err = _main(capsys, "segment", COFFEE, "q")
    assert code == 2
    _one_line(err, "segzero prompt")


@pytest.mark.parametrize("rounds", ["0", "6", "-1"])
def test_segment_verify_rounds_checked_before_loading(capsys, no_loading, rounds):
    code, _, err = _main(capsys, "segment", COFFEE, "q", "--verify", "--verify-rounds", rounds)
    assert code == 2
    _one_line(err, f"--verify-rounds must be from 1 to 5, got {rounds}")


def test_segment_verify_runs_the_check(tmp_path, capsys):
    folder = tmp_path / "script"
    folder.mkdir()
    # the reasoner answers the query, then (as the verifier) keeps object #1 only
    folder.joinpath("script.json").write_text(json.dumps([TWO, '<think>k</think><answer>{"keep": [1]}</answer>']))
    argv = ["segment", COFFEE, "what can I drink?", "--reasoner-backend", "scripted:ScriptedReasoner",
            "--reasoner", str(folder), *_seg(tmp_path), "--json"]
    code, stdout, err = _main(capsys, *argv, "--verify")
    assert code == 0, err
    data = json.loads(stdout)
    assert data["query"] == "what can I drink?" and len(data["objects"]) == 1
    assert data["verification"]["status"] == "kept" and data["verification"]["kept"] == [1]
    code, stdout, err = _main(capsys, *argv)  # off by default
    assert code == 0 and "verification" not in json.loads(stdout) and len(json.loads(stdout)["objects"]) == 2
