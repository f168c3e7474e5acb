"""`segzero inspect / refine / select` on saved result folders, and `SegmentationResult.save/load` of
the objects' low-resolution logits (``logits.npz``), with the scripted BoxSegmenter.

The chain prompt -> inspect -> refine -> select runs in-process (``cli.main``); a refine in a new process
gives exactly what ``refine_object`` gives in memory on the original result (the logits round-trip through
``logits.npz``); every bad input is one line on stderr, exit 2, and no model loads; ``segzero select``
runs as installed (``python -m segzero_tool``) too."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_support import assert_one_line as _one_line
from cli_support import run_main as _main
from cli_support import scripted_segmenter_args as _seg
from PIL import Image
from scripted import BoxSegmenter

from segzero_tool.errors import PromptError
from segzero_tool.images import load_image
from segzero_tool.result import SegmentationResult
from segzero_tool.steer import refine_object, segment_by_prompts

REPO = Path(__file__).resolve().parents[1]
COFFEE = str(REPO / "examples" / "coffee.png")  # 600x400
OBJECTS = [{"box": [10, 20, 100, 120], "label": "cup"}, {"box": [200, 100, 300, 200]}, {"points": [[400, 300]]}]
FILES = {"result.json", "mask_0.png", "mask_1.png", "mask_2.png", "mask_union.png", "overlay.png", "logits.npz"}


@pytest.fixture
def saved(tmp_path) -> Path:
    """A result folder of OBJECTS on the coffee picture, written without the CLI."""
    result = segment_by_prompts(BoxSegmenter(), COFFEE, OBJECTS)
    result.save(tmp_path / "r1")
    return tmp_path / "r1"


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGZERO_")}
    env.update({"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
                "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])})
    return env


def _mask_png(folder: Path, i: int | str) -> np.ndarray:
    return np.asarray(Image.open(folder / f"mask_{i}.png")) > 0


# --- the chain --------------------------------------------------------------------------------------


def test_prompt_inspect_refine_select_chain(tmp_path, capsys):
    r1, r2, final = tmp_path / "r1", tmp_path / "r2", tmp_path / "final"
    code, _, err = _main(capsys, "prompt", COFFEE, "--objects", json.dumps(OBJECTS), *_seg(tmp_path), "--out", r1)
    assert code == 0, err
    assert {p.name for p in r1.iterdir()} == FILES
    with np.load(r1 / "logits.npz") as npz:
        assert sorted(npz.files) == ["obj_0", "obj_1", "obj_2"] and npz["obj_0"].dtype == np.float32

    code, out, err = _main(capsys, "inspect", r1, "--image", COFFEE)
    assert code == 0, err
    assert (r1 / "inspection.png").read_bytes().startswith(b"\x89PNG")
    assert "#0 box [10, 20, 100, 120]" in out and "#2 " in out and f"wrote {r1 / 'inspection.png'}" in out
    assert "loading" not in err

    code, out, err = _main(capsys, "refine", r1, "--image", COFFEE, "--index", "0", "--remove", "50,60",
                           "--add", "30,40", *_seg(tmp_path), "--out", r2, "--inspect")
    assert code == 0, err
    assert "loading segmenter" in err and "no logits" not in err
    assert {p.name for p in r2.iterdir()} == FILES | {"inspection.png"}
    data = json.loads((r2 / "result.json").read_text())
    obj = data["objects"][0]
    assert obj["box"] == [10, 20, 100, 120] and obj["label"] == "cup"
    assert obj["points"] == [[30, 40]] and obj["negative_points"] == [[50, 60]]
    assert not _mask_png(r2, 0)[59:62, 49:52].any()  # the removed click's square
    assert _mask_png(r1, 0)[59:62, 49:52].all()
    assert data["objects"][1:] == json.loads((r1 / "result.json").read_text())["objects"][1:]
    assert "wrote" in out and "inspection.png" in out

    code, out, err = _main(capsys, "select", r2, "--indices", "2,0", "--out", final, "--image", COFFEE, "--json")
    assert code == 0, err
    printed = json.loads(out)
    assert [o["box"] for o in printed["objects"]] == [None, [10, 20, 100, 120]]
    assert {p.name for p in final.iterdir()} == FILES - {"mask_2.png"}
    assert json.loads((final / "result.json").read_text())["objects"] == printed["objects"]
    assert np.array_equal(_mask_png(final, 1), _mask_png(r2, 0))
    assert np.array_equal(_mask_png(final, "union"), _mask_png(r2, 0) | _mask_png(r2, 2))
    with np.load(final / "logits.npz") as a, np.load(r2 / "logits.npz") as b:
        assert np.array_equal(a["obj_0"], b["obj_2"]) and np.array_equal(a["obj_1"], b["obj_0"])
    # the photo is under the overlay with --image, a grey background without
    photo = np.asarray(Image.open(final / "overlay.png"))
    code, _, err = _main(capsys, "select", r2, "--indices", "2,0", "--out", tmp_path / "grey")
    assert code == 0, err
    grey = np.asarray(Image.open(tmp_path / "grey" / "overlay.png"))
    assert grey[5, 590].tolist()[:3] == [40, 40, 40] and photo[5, 590].tolist() != grey[5, 590].tolist()
    # the source folders are left as they were
    assert {p.name for p in r2.iterdir()} == FILES | {"inspection.png"}


def test_inspect_options(saved, tmp_path, capsys):
    out = tmp_path / "pics" / "two.png"
    code, stdout, err = _main(capsys, "inspect", saved, "--indices", "2,0", "--no-crops", "--max-side", "300",
                              "--out", out)
    assert code == 0, err
    assert not (saved / "inspection.png").exists()
    assert max(Image.open(out).size) == 300
    assert "#0 " in stdout and "#2 " in stdout and "#1 " not in stdout and "crop" not in stdout.lower()


def test_select_nothing_keeps_no_object(saved, tmp_path, capsys):
    code, out, err = _main(capsys, "select", saved, "--indices", "", "--out", tmp_path / "none", "--json")
    assert code == 0, err
    assert json.loads(out)["objects"] == []
    assert not (tmp_path / "none" / "logits.npz").exists()


# --- refinement across processes is exact ----------------------------------------------------------


def test_refine_in_a_new_process_is_exactly_the_in_memory_refinement(saved, tmp_path):
    image = load_image(COFFEE).array
    original = segment_by_prompts(BoxSegmenter(), image, OBJECTS)
    expected = refine_object(BoxSegmenter(), original, 0, add_points=[[30, 40]], remove_points=[[50, 60]])
    # the logits matter: without them the refined mask differs (BoxSegmenter ORs the upsampled mask_input)
    without = refine_object(BoxSegmenter(), SegmentationResult.load(saved, image=image, logits=False), 0,
                            add_points=[[30, 40]], remove_points=[[50, 60]])
    assert not np.array_equal(without.objects[0].mask, expected.objects[0].mask)

    (tmp_path / "seg").mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "segzero_tool", "refine", str(saved), "--image", COFFEE, "--index", "0",
         "--add", "30,40", "--remove", "50,60", "--segmenter-backend", "scripted:BoxSegmenter", "--segmenter",
         str(tmp_path / "seg"), "--out", str(tmp_path / "r2")],
        capture_output=True, text=True, env=_env(tmp_path), timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    got = SegmentationResult.load(tmp_path / "r2")
    assert np.array_equal(got.masks, expected.masks)
    assert np.array_equal(got.scores, expected.scores)
    for a, b in zip(got.objects, expected.objects, strict=True):
        assert np.array_equal(a.low_res_logits, b.low_res_logits)
        assert (a.box, a.points, a.negative_points) == (b.box, b.points, b.negative_points)
    assert np.array_equal(_mask_png(tmp_path / "r2", 0), expected.objects[0].mask)


def test_refine_without_logits_starts_from_the_prompt(saved, tmp_path, capsys):
    (saved / "logits.npz").unlink()
    code, _, err = _main(capsys, "refine", saved, "--image", COFFEE, "--index", "1", "--remove", "210,110",
                         *_seg(tmp_path), "--out", tmp_path / "r2")
    assert code == 0, err
    assert "no logits" in err
    image = load_image(COFFEE).array
    expected = refine_object(BoxSegmenter(), SegmentationResult.load(saved, image=image), 1,
                             remove_points=[[210, 110]])
    assert np.array_equal(SegmentationResult.load(tmp_path / "r2").masks, expected.masks)


def test_select_runs_as_installed(saved, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "segzero_tool", "select", str(saved), "--indices", "1",
                           "--out", str(tmp_path / "one")],
                          capture_output=True, text=True, env=_env(tmp_path), timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert "1 object(s) in 600x400 image" in proc.stdout and "logits.npz" in proc.stdout
    data = json.loads((tmp_path / "one" / "result.json").read_text())
    assert [o["box"] for o in data["objects"]] == [[200, 100, 300, 200]]
    proc = subprocess.run([sys.executable, "-m", "segzero_tool", "select", str(saved), "--indices", "7",
                           "--out", str(tmp_path / "bad")],
                          capture_output=True, text=True, env=_env(tmp_path), timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2
    _one_line(proc.stderr, "--indices: object 7 is out of range: the result has 3 object(s) (#0 to #2)")


# --- bad input: one line, exit 2, no model loads ---------------------------------------------------


def _small_png(tmp_path: Path) -> str:
    path = tmp_path / "small.png"
    Image.new("RGB", (60, 40)).save(path)
    return str(path)


@pytest.mark.parametrize(("argv", "message"), [
    (["refine", "{missing}", "--image", COFFEE, "--index", "0", "--add", "1,1", "--out", "{out}"], "does not exist"),
    (["refine", "{saved}", "--image", COFFEE, "--index", "3", "--add", "1,1", "--out", "{out}"],
     "--index: object 3 is out of range: the result has 3 object(s)"),
    (["refine", "{saved}", "--image", COFFEE, "--index", "-1", "--add", "1,1", "--out", "{out}"], "out of range"),
    (["refine", "{saved}", "--image", "{small}", "--index", "0", "--add", "1,1", "--out", "{out}"],
     "is 60x40, but the result in"),
    (["refine", "{saved}", "--image", COFFEE, "--index", "0", "--add", "1,1", "--out", "{saved}"],
     "results are never modified"),
    (["refine", "{saved}", "--image", COFFEE, "--index", "0", "--out", "{out}"], "nothing to refine"),
    (["refine", "{saved}", "--image", COFFEE, "--index", "0", "--add", "1", "--out", "{out}"], "--add must be x,y"),
    (["refine", "{saved}", "--image", COFFEE, "--index", "0", "--box", "5000,5000,6000,6000", "--out", "{out}"],
     "--box [5000, 5000, 6000, 6000] lies entirely outside"),
    (["refine", "{saved}", "--image", COFFEE, "--index", "a", "--add", "1,1", "--out", "{out}"],
     "argument --index: invalid int value"),
    (["refine", "{saved}", "--image", COFFEE, "--index", "0", "--add", "1,1", "--out", "{out}",
      "--dtype", "float8"], "--dtype must be auto"),
    (["refine", "{saved}", "--image", COFFEE, "--index", "0", "--add", "1,1"], "--out"),
    (["select", "{missing}", "--indices", "0", "--out", "{out}"], "does not exist"),
    (["select", "{saved}", "--indices", "a,b", "--out", "{out}"], "--indices must be object numbers"),
    (["select", "{saved}", "--indices", "0,0", "--out", "{out}"], "--indices repeats object 0"),
    (["select", "{saved}", "--indices", "0,5", "--out", "{out}"], "--indices: object 5 is out of range"),
    (["select", "{saved}", "--indices", "0", "--out", "{saved}"], "give a new --out"),
    (["select", "{saved}", "--indices", "0", "--out", "{saved}/../r1"], "results are never modified"),
    (["select", "{saved}", "--indices", "0", "--out", "{out}", "--image", "{small}"], "is 60x40"),
    (["inspect", "{missing}"], "does not exist"),
    (["inspect", "{saved}", "--indices", "9"], "--indices: object 9 is out of range"),
    (["inspect", "{saved}", "--indices", "x"], "--indices must be object numbers"),
    (["inspect", "{saved}", "--max-side", "0"], "--max-side must be at least 1"),
    (["inspect", "{saved}", "--out", "{saved}"], "is a folder"),
    (["inspect", "{saved}", "--image", "{small}"], "is 60x40"),
    (["inspect", "{saved}", "--image", COFFEE, "--max-pixels", "10"], "(or raise --max-pixels)"),
])
def test_bad_input_is_one_line_exit_2_before_loading(saved, tmp_path, capsys, no_loading, argv, message):
    values = {"saved": str(saved), "missing": str(tmp_path / "nope"), "out": str(tmp_path / "out"),
              "small": _small_png(tmp_path)}
    code, _, err = _main(capsys, *(a.format(**values) for a in argv))
    assert code in (2, 3), err
    _one_line(err, message)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", [["inspect"], ["select", "--indices", "0", "--out", "OUT"],
                                     ["refine", "--image", COFFEE, "--index", "0", "--add", "1,1", "--out", "OUT"]])
@pytest.mark.parametrize(("content", "message"), [
    (None, "holds no result.json"),
    (b"{not json", "is not a readable result (JSONDecodeError"),
    (b"[1, 2]", "is not a readable result"),
    (b'{"query": "q"}', "is not a readable result (KeyError"),
    (b"\xff\xfe", "is not a readable result"),
])
def test_bad_result_json_is_one_line(saved, tmp_path, capsys, no_loading, command, content, message):
    if content is None:
        (saved / "result.json").unlink()
    else:
        (saved / "result.json").write_bytes(content)
    argv = [command[0], str(saved), *(str(tmp_path / "out") if a == "OUT" else a for a in command[1:])]
    code, _, err = _main(capsys, *argv)
    assert code == 2, err
    _one_line(err, message)


def test_corrupt_logits_stop_refine_and_select_but_not_inspect(saved, tmp_path, capsys, no_loading):
    (saved / "logits.npz").write_bytes(b"PK\x03\x04 not a zip")
    code, _, err = _main(capsys, "refine", saved, "--image", COFFEE, "--index", "0", "--add", "1,1",
                         "--out", tmp_path / "out")
    assert code == 2
    _one_line(err, "logits.npz' is unreadable")
    code, _, err = _main(capsys, "select", saved, "--indices", "0", "--out", tmp_path / "out")
    assert code == 2 and "delete it to refine from the objects' prompts alone" in err
    code, _, err = _main(capsys, "inspect", saved)
    assert code == 0, err


# --- SegmentationResult.save / load ------------------------------------------------------------------


def test_load_round_trip_with_logits_and_image(saved):
    image = load_image(COFFEE).array
    original = segment_by_prompts(BoxSegmenter(), image, OBJECTS)
    back = SegmentationResult.load(saved)
    assert back.image is None and back.image_size == (600, 400) and back.prompt_format == "prompts"
    assert np.array_equal(back.masks, original.masks) and np.array_equal(back.scores, original.scores)
    for a, b in zip(back.objects, original.objects, strict=True):
        assert a.low_res_logits.dtype == np.float32 and np.array_equal(a.low_res_logits, b.low_res_logits)
        assert (a.box, a.points, a.label) == (b.box, b.points, b.label)
    with_image = SegmentationResult.load(saved, image=image)
    assert with_image.image is image
    assert all(o.low_res_logits is None for o in SegmentationResult.load(saved, logits=False).objects)
    with pytest.raises(PromptError, match="the image is 60x40 but the result was made from a 600x400 image"):
        SegmentationResult.load(saved, image=np.zeros((40, 60, 3), np.uint8))
    with pytest.raises(PromptError, match=r"must be an \(H, W, 3\) uint8 RGB array"):
        SegmentationResult.load(saved, image=image.astype(np.float32))
    with pytest.raises(PromptError, match="does not exist"):
        SegmentationResult.load(saved / "nope")
    with pytest.raises(PromptError, match="is a file, not a result folder"):
        SegmentationResult.load(saved / "result.json")


def test_logits_of_an_object_that_is_not_in_result_json_are_refused(saved):
    np.savez_compressed(saved / "logits.npz", obj_0=np.zeros((256, 256), np.float32),
                        obj_3=np.zeros((256, 256), np.float32))
    with pytest.raises(PromptError, match="holds 'obj_3', which is no object of its result.json"):
        SegmentationResult.load(saved)
    np.savez_compressed(saved / "logits.npz", obj_0=np.zeros(5, np.float32))
    with pytest.raises(PromptError, match="obj_0 is not 2-D float logits"):
        SegmentationResult.load(saved)


def test_only_objects_with_logits_are_saved_and_stale_logits_are_removed(saved, tmp_path):
    result = SegmentationResult.load(saved)
    result.objects[1].low_res_logits = None
    written = result.save(tmp_path / "partial")
    assert "logits" in written
    with np.load(tmp_path / "partial" / "logits.npz") as npz:
        assert sorted(npz.files) == ["obj_0", "obj_2"]
    back = SegmentationResult.load(tmp_path / "partial")
    assert [o.low_res_logits is None for o in back.objects] == [False, True, False]
    # a result without logits written over a folder that has some: the old file goes
    plain = SegmentationResult.load(saved, logits=False)
    written = plain.save(saved)
    assert "logits" not in written and not (saved / "logits.npz").exists()
    assert all(o.low_res_logits is None for o in SegmentationResult.load(saved).objects)
    # logits=False writes none either
    shutil.rmtree(tmp_path / "partial")
    written = SegmentationResult.load(tmp_path / "r1").save(tmp_path / "partial", logits=False)
    assert "logits" not in written and not (tmp_path / "partial" / "logits.npz").exists()
    assert not list(saved.glob("*.tmp")) and not list(saved.glob(".*"))
