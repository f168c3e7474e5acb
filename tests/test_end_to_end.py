"""Pipeline and CLI end to end on CPU with tiny random models loaded through the public paths."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scripted import ScriptedReasoner

from segzero_tool import ParseStatus, SegZeroPipeline
from segzero_tool.cli import main

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
COFFEE = REPO / "examples" / "coffee.png"
ANSWER = ('<think>The cup holds coffee.</think><answer>[{"bbox_2d": [168,126,588,672], "point_2d": [378,420]}, '
          '{"bbox_2d": [600,700,800,830], "point_2d": [700,760]}]</answer>')


@pytest.fixture(scope="module")
def tiny_pipe(tiny_models):
    return SegZeroPipeline.from_pretrained(str(tiny_models["reasoner"]), str(tiny_models["segmenter"]),
                                           device="cpu", max_new_tokens=8)


def test_tiny_models_run_end_to_end(tiny_pipe):
    res = tiny_pipe.segment(COFFEE, "What can I have if I'm thirsty?")
    # random weights: the text is garbage, but the result is well-formed
    assert res.parse_status in (ParseStatus.NO_ANSWER, ParseStatus.INVALID_JSON, ParseStatus.INVALID_OBJECTS,
                                ParseStatus.NO_OBJECTS)
    assert isinstance(res.raw_output, str) and res.image_size == (600, 400)
    assert res.objects == [] and res.union_mask.shape == (400, 600)
    assert res.timings["reason"] > 0


def test_scripted_reasoner_with_tiny_sam2(tiny_models):
    script = ScriptedReasoner(ANSWER)
    pipe = SegZeroPipeline.from_pretrained(script, str(tiny_models["segmenter"]), device="cpu")
    res = pipe.segment(COFFEE, "What can I have if I'm thirsty?")
    fx, fy = 600 / 840, 400 / 840
    assert [o.box for o in res.objects] == [
        (int(168 * fx + 0.5), int(126 * fy + 0.5), int(588 * fx + 0.5), int(672 * fy + 0.5)),
        (int(600 * fx + 0.5), int(700 * fy + 0.5), int(800 * fx + 0.5), int(830 * fy + 0.5)),
    ]
    assert res.objects[0].points == ((int(378 * fx + 0.5), int(420 * fy + 0.5)),)
    assert res.masks.shape == (2, 400, 600) and res.masks.dtype == bool
    assert all(np.isfinite(o.score) for o in res.objects)
    assert script.calls[0][0].image.size == (840, 840)
    # a repeated query on the same image reuses the cached embedding
    cache = pipe.segmenter.cache
    hits = cache.hits
    pipe.segment(COFFEE, "another question")
    assert cache.hits == hits + 1


def test_segment_many_with_tiny_models(tiny_pipe):
    img = np.asarray(Image.open(COFFEE).convert("RGB"))
    out = tiny_pipe.segment_many([(img, "a"), (img[:200], "b"), (COFFEE, "c")], progress=False)
    assert [r.query for r in out] == ["a", "b", "c"]
    assert out[1].image_size == (600, 200)


def _script_folder(tmp_path: Path, answer: str = ANSWER) -> Path:
    folder = tmp_path / "scripted-reasoner"
    folder.mkdir()
    (folder / "script.json").write_text(json.dumps([answer]))
    return folder


def test_cli_writes_results_with_scripted_reasoner(tiny_models, tmp_path, capsys):
    out = tmp_path / "results"
    rc = main(["segment", str(COFFEE), "What can I have if I'm thirsty?", "--out", str(out),
               "--reasoner", str(_script_folder(tmp_path)), "--reasoner-backend", "scripted:ScriptedReasoner",
               "--segmenter", str(tiny_models["segmenter"]), "--device", "cpu"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "The cup holds coffee." in printed and "2 object(s)" in printed
    files = sorted(p.name for p in out.iterdir())
    assert files == ["logits.npz", "mask_0.png", "mask_1.png", "mask_union.png", "overlay.png", "result.json"]
    data = json.loads((out / "result.json").read_text())
    assert data["parse_status"] == "ok" and len(data["objects"]) == 2
    assert data["objects"][0]["rle"]["size"] == [400, 600]
    assert Image.open(out / "overlay.png").size == (600, 400)
    union = np.asarray(Image.open(out / "mask_union.png")) > 0
    from segzero_tool.masks import rle_decode

    assert np.array_equal(union, rle_decode(data["union"]["rle"]))


def test_cli_json_output(tiny_models, tmp_path, capsys):
    rc = main(["segment", str(COFFEE), "thirsty", "--json", "--reasoner", str(_script_folder(tmp_path)),
               "--reasoner-backend", "scripted:ScriptedReasoner", "--segmenter", str(tiny_models["segmenter"]),
               "--mask-encoding", "polygons"])
    assert rc == 0
    data = json.loads(capsys.readouterr().out)
    assert "polygons" in data["objects"][0] and data["image_size"] == {"width": 600, "height": 400}


def test_cli_real_tiny_models_subprocess(tiny_models, tmp_path):
    """The README's offline main command, as a real process."""
    out = tmp_path / "res"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    proc = subprocess.run(
        [sys.executable, "-m", "segzero_tool", "segment", str(COFFEE), "What can I have if I'm thirsty?",
         "--reasoner", str(tiny_models["reasoner"]), "--segmenter", str(tiny_models["segmenter"]),
         "--out", str(out), "--max-new-tokens", "8"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "loading models" in proc.stderr
    assert (out / "result.json").exists() and (out / "overlay.png").exists()
    assert json.loads((out / "result.json").read_text())["image_size"]["width"] == 600


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["segment", "missing.png", "q"], 3, "no such file"),
        (["segment", "{corrupt}", "q"], 3, "not a recognised image"),
        (["segment", "{coffee}", "   "], 2, "query is empty"),
        (["segment", "{coffee}", "q", "--reasoner", "visionreasoner-8b"], 4, "Did you mean visionreasoner-7b"),
        (["segment", "{coffee}", "q", "--reasoner-backend", "nope"], 5, "unknown reasoner backend"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, capsys, args, code, message):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"not an image")
    args = [a.replace("{corrupt}", str(corrupt)).replace("{coffee}", str(COFFEE)) for a in args]
    if args[1] == "missing.png":
        args[1] = str(tmp_path / "missing.png")
    if "--reasoner-backend" in args:
        args += ["--reasoner", str(_script_folder(tmp_path))]
    rc = main(args)
    err = capsys.readouterr().err
    assert rc == code
    assert message in err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("segzero: error:")


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without a GPU")
def test_cli_cuda_without_gpu(capsys):
    assert main(["segment", str(COFFEE), "q", "--device", "cuda"]) == 6
    assert "no CUDA GPU" in capsys.readouterr().err


def test_cli_models_listing(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "visionreasoner-7b" in out and "sam2.1-hiera-tiny" in out and "light" in out
    assert main(["models", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {m["name"] for m in data["models"]} >= {"seg-zero-7b", "qwen2.5-vl-7b-instruct"}


def test_cli_make_tiny_models(tmp_path, capsys):
    assert main(["make-tiny-models", str(tmp_path / "tiny")]) == 0
    for folder, model_type in (("reasoner", "qwen2_5_vl"), ("segmenter", "sam2"), ("reasoner-qwen3vl", "qwen3_vl"),
                               ("segmenter-sam3", "sam3_tracker"), ("concept-sam3", "sam3")):
        config = json.loads((tmp_path / "tiny" / folder / "config.json").read_text())
        assert config["model_type"] == model_type, folder
    out = capsys.readouterr().out
    assert "segzero phrase IMAGE PHRASE --model" in out
    assert main(["make-tiny-models", str(tmp_path / "two"), "--only", "qwen3-vl,sam3"]) == 0
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["reasoner-qwen3vl", "segmenter-sam3"]
    assert main(["make-tiny-models", str(tmp_path / "bad"), "--only", "qwen9"]) == 2
    assert "unknown qwen9" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_cli_unreachable_model_is_one_line_exit_7(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    proc = subprocess.run(
        [sys.executable, "-m", "segzero_tool", "segment", str(COFFEE), "q", "--reasoner", "someorg/not-cached",
         "--no-masks"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 7, proc.stderr
    lines = proc.stderr.strip().splitlines()
    error = next(i for i, line in enumerate(lines) if line.startswith("segzero: error:"))
    assert lines[error].startswith("segzero: error: reasoner 'someorg/not-cached' is not in the local Hugging Face cache")
    assert all(line.startswith("  ") for line in lines[error + 1:]) and len(lines) - error <= 4  # what to do
    assert "Traceback" not in proc.stderr
