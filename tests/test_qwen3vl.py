"""Qwen3-VL reasoners: the 0-1000 relative grid, the qwen3vl prompt, its answers, and the backends."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from scripted import BoxSegmenter, ScriptedReasoner

from segzero_tool import ParseStatus, SegZeroPipeline
from segzero_tool.frame import (
    COORD_LIMIT,
    ReasoningFrame,
    aspect_frame_size,
    check_coords,
    coords_for_format,
)
from segzero_tool.parsing import parse_output
from segzero_tool.prompts import QWEN3VL_ANSWER_EXAMPLE, PromptFormat, build_prompt, uses_answer_tags
from segzero_tool.reasoners.structured import answer_grammar, answer_regex, schema_for_prompt
from segzero_tool.registry import MODELS, PRESETS, ModelEntry
from segzero_tool.settings import PipelineSettings, SettingsError

REPO = Path(__file__).resolve().parents[1]
COFFEE = REPO / "examples" / "coffee.png"

#: A Qwen3-VL-style answer on the 0-1000 grid: a fenced JSON list with labels, one object off the edge.
GRID_ANSWER = ('```json\n[\n  {"bbox_2d": [100, 200, 500, 750], "point_2d": [250, 500], "label": "cup"},\n'
               '  {"bbox_2d": [900, 0, 1000, 1000], "point_2d": [1000, 999], "label": "bottle"}\n]\n```')


# --- frame: both conventions ----------------------------------------------------------------------

def test_relative_grid_back_projection_is_x_times_w_over_1000():
    f = ReasoningFrame.for_image((3000, 2000), coords="relative1000")
    assert f.grid_wh == (1000, 1000) and f.x_factor == 3.0 and f.y_factor == 2.0
    assert f.box_to_image((100, 200, 500, 750)) == (300, 400, 1500, 1500)
    assert f.point_to_image((250, 500)) == (750, 1000)
    assert f.point_to_image((1000, 1000)) == (2999, 1999)  # clamped into the image
    assert f.point_to_image((1000, 1000), clamp=False) == (3000, 2000)
    assert f.box_to_image((500, 750, 100, 200)) == (300, 400, 1500, 1500)  # reordered
    assert f.box_to_frame((300, 400, 1500, 1500)) == (100, 200, 500, 750)


def test_relative_grid_ignores_the_frame_the_model_saw():
    a = ReasoningFrame((1225, 815), (64, 64), coords="relative1000")
    b = ReasoningFrame((1225, 815), (1216, 800), coords="relative1000")
    for v in (0, 1, 333, 500, 999, 1000):
        assert a.point_to_image((v, v), clamp=False) == b.point_to_image((v, v), clamp=False) == (
            int(v * 1225 / 1000 + 0.5), int(v * 815 / 1000 + 0.5))


def test_frame_convention_unchanged():
    f = ReasoningFrame.for_image((1225, 815))
    assert f.coords == "frame" and f.frame_wh == (840, 840) and f.grid_wh == (840, 840)
    assert f.point_to_image((420, 420), clamp=False) == (int(420 * (1225 / 840) + 0.5), int(420 * (815 / 840) + 0.5))
    assert ReasoningFrame.for_image((1225, 815), 420).frame_wh == (420, 420)


@settings(max_examples=500, deadline=None)
@given(st.floats(-1e12, 1e12), st.integers(1, 5000), st.integers(1, 5000))
def test_relative_rounding_for_finite_in_range_values(v, w, h):
    f = ReasoningFrame((w, h), (64, 64), coords="relative1000")
    assert f.point_to_image((v, v), clamp=False) == (int(v * w / 1000 + 0.5), int(v * h / 1000 + 0.5))
    s = ReasoningFrame((w, h), (64, 64), rounding="segzero", coords="relative1000")
    assert s.point_to_image((v, v), clamp=False) == (round(int(v) * w / 1000), round(int(v) * h / 1000))
    cx, cy = f.point_to_image((v, v))
    assert 0 <= cx < w and 0 <= cy < h


def test_relative_grid_huge_infinite_and_nan_values():
    f = ReasoningFrame((1225, 815), (64, 64), coords="relative1000")
    inf = float("inf")
    assert f.box_to_image((0, 0, 1.7e308, 5)) == (0, 0, 1224, int(5 * 815 / 1000 + 0.5))
    assert f.box_to_image((-inf, -1e300, inf, 10**400)) == (0, 0, 1224, 814)
    assert f.point_to_image((1e200, -1e200)) == (1224, 0)
    assert f.point_to_image((inf, 0), clamp=False) == (int(COORD_LIMIT * 1225 / 1000 + 0.5), 0)
    with pytest.raises(ValueError, match="NaN"):
        f.point_to_image((float("nan"), 1))
    with pytest.raises(ValueError, match="coords"):
        ReasoningFrame((10, 10), coords="normalized")  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 20000), st.integers(1, 20000), st.integers(64, 2000))
def test_aspect_frame_sizes(w, h, side):
    fw, fh = aspect_frame_size((w, h), side)
    assert fw % 32 == 0 and fh % 32 == 0 and fw >= 32 and fh >= 32
    assert fw * fh <= max(side * side, 32 * 32)
    if 1 / 4 <= w / h <= 4 and side >= 256:  # ordinary shapes keep their aspect ratio closely
        assert abs(fw / fh - w / h) / (w / h) < 0.25


def test_aspect_frame_examples():
    assert aspect_frame_size((3000, 2000)) == (1024, 672)  # 688,128 pixels <= 840**2
    assert aspect_frame_size((2000, 2000)) == (832, 832)
    assert aspect_frame_size((600, 400)) == (608, 384)  # under the cap: rounded to 32 (as Python rounds), not scaled
    assert aspect_frame_size((100, 50)) == (384, 192)  # scaled up to Qwen3-VL's 65,536-pixel floor
    f = ReasoningFrame.for_image((3000, 2000), coords="relative1000")
    assert f.frame_wh == (1024, 672)
    assert f.resize_image(Image.new("RGB", (3000, 2000))).size == (1024, 672)


def test_coords_follow_the_format():
    assert coords_for_format(PromptFormat.QWEN3VL) == "relative1000" and coords_for_format("qwen3-vl") == "relative1000"
    for fmt in ("visionreasoner", "segzero", "grounding", None):
        assert coords_for_format(fmt) == "frame"
    assert check_coords(" Relative1000 ") == "relative1000"
    with pytest.raises(ValueError):
        check_coords("pixels")


# --- prompt, parser, structured outputs -------------------------------------------------------------

def test_qwen3vl_prompt_text():
    text = build_prompt("What can I drink?.", "qwen3-vl")
    assert PromptFormat.parse("Qwen3_VL") is PromptFormat.QWEN3VL
    assert text == (
        'Find every object in the image that the request "what can i drink?" refers to; the request may name the '
        "objects or only describe what they are for. Answer with a JSON list holding one entry per object: its "
        'bounding box as "bbox_2d": [x1, y1, x2, y2], one point well inside the object as "point_2d": [x, y], and '
        'a short "label". Coordinates are relative, from 0 to 1000 across the width and the height of the image. '
        f"Output only the JSON, e.g. {QWEN3VL_ANSWER_EXAMPLE}; output [] when nothing matches."
    )
    assert "<answer>" not in text and "<think>" not in text
    assert not uses_answer_tags("qwen3vl") and uses_answer_tags("grounding")
    assert parse_output(QWEN3VL_ANSWER_EXAMPLE).status is ParseStatus.OK


@pytest.mark.parametrize("text, boxes, points, labels", [
    (GRID_ANSWER, [(100, 200, 500, 750), (900, 0, 1000, 1000)], [((250, 500),), ((1000, 999),)], ["cup", "bottle"]),
    ('[{"bbox_2d": [1, 2, 3, 4], "point_2d": [2, 3]}]', [(1, 2, 3, 4)], [((2, 3),)], [None]),
    ('The cup is here:\n```json\n[{"point_2d": [500, 500], "label": "cup"}]\n```', [None], [((500, 500),)], ["cup"]),
    ('```json\n{"bbox_2d": [10, 20, 30, 40], "label": "dog"}\n```', [(10, 20, 30, 40)], [()], ["dog"]),
])
def test_typical_qwen3vl_outputs_parse(text, boxes, points, labels):
    parsed = parse_output(text, answer_tags=False)
    assert parsed.status is ParseStatus.OK and parsed.issues == ()
    assert [o.box for o in parsed.objects] == boxes
    assert [o.points for o in parsed.objects] == points and [o.label for o in parsed.objects] == labels
    assert any("no <answer> tags" in s for s in parse_output(text).issues)  # tagged formats still say so


def test_qwen3vl_empty_and_truncated_outputs():
    assert parse_output("```json\n[]\n```", answer_tags=False).status is ParseStatus.NO_OBJECTS
    cut = parse_output('```json\n[{"bbox_2d": [1, 2, 3, 4], "point_2d": [2, 3]}, {"bbox_2d": [5, 6', answer_tags=False)
    assert cut.status is ParseStatus.OK and cut.truncated and len(cut.objects) == 1
    assert parse_output("I cannot see any cup.", answer_tags=False).status is ParseStatus.NO_ANSWER


def test_structured_outputs_force_the_bare_list_for_qwen3vl():
    import re

    assert schema_for_prompt(build_prompt("x", "qwen3vl")) == "json"
    assert schema_for_prompt(build_prompt("x", "grounding")) == "list"
    regex = answer_regex("json")
    assert re.fullmatch(regex, '[{"bbox_2d": [0, 20, 1000, 999], "point_2d": [5, 6]}]')
    assert re.fullmatch(regex, "[]")
    assert not re.fullmatch(regex, '<think>x</think><answer>[]</answer>')
    assert answer_grammar("json").startswith("root ::= answer\n") and "think" not in answer_grammar("json")


# --- registry and settings ----------------------------------------------------------------------------

def test_registry_entries():
    for size in ("2b", "4b", "8b"):
        e = MODELS[f"qwen3-vl-{size}-instruct"]
        assert e.kind == "reasoner" and e.hub_id == f"Qwen/Qwen3-VL-{size.upper()}-Instruct"
        assert e.prompt_format is PromptFormat.QWEN3VL and e.coords == "relative1000" and e.rounding == "half_up"
        assert e.max_new_tokens == 1024
    assert MODELS["visionreasoner-7b"].coords == "frame" and MODELS["qwen2.5-vl-3b-instruct"].coords == "frame"
    assert PRESETS["light"].reasoner == "qwen3-vl-2b-instruct"  # benchmarks/results/reasoner_cpu_presets.md
    assert ModelEntry("x", "reasoner", "o/x", PromptFormat.VISIONREASONER, coords="relative1000").coords == "relative1000"
    with pytest.raises(ValueError):
        ModelEntry("x", "reasoner", "o/x", PromptFormat.VISIONREASONER, coords="grid")  # type: ignore[arg-type]


def test_coords_setting():
    assert PipelineSettings(coords="relative1000").normalised("coords") == "relative1000"
    assert PipelineSettings(prompt_format="qwen3vl").prompt_format == "qwen3vl"
    assert PipelineSettings.from_env({"SEGZERO_COORDS": "frame"}).coords == "frame"
    with pytest.raises(SettingsError, match="coords must be one of frame, relative1000"):
        PipelineSettings(coords="pixels")
    with pytest.raises(SettingsError, match="SEGZERO_COORDS"):
        PipelineSettings.from_env({"SEGZERO_COORDS": "grid"})


# --- a scripted reasoner on the grid: exact pixels --------------------------------------------------------

@pytest.fixture
def big_image(tmp_path):
    path = tmp_path / "big.png"
    Image.new("RGB", (3000, 2000), (90, 120, 150)).save(path)
    return path


def test_scripted_grid_answers_give_exact_pixels(big_image):
    script = ScriptedReasoner(GRID_ANSWER)
    with SegZeroPipeline(script, BoxSegmenter(), prompt_format="qwen3vl") as pipe:
        assert pipe.effective_coords() == "relative1000"
        res = pipe.segment(big_image, "What can I drink?")
    assert res.parse_status is ParseStatus.OK and res.prompt_format == "qwen3vl"
    # 1000 is the far edge (x = W, one past the last pixel): clamped, as 840 is in the frame convention
    assert res.parse_issues == ("object 1: box clamped into the image", "object 1: point [1000.0, 999.0] clamped "
                                "into the image")
    assert [o.box for o in res.objects] == [(300, 400, 1500, 1500), (2700, 0, 2999, 1999)]
    assert [o.points for o in res.objects] == [((750, 1000),), ((2999, 1998),)]
    assert [o.label for o in res.objects] == ["cup", "bottle"]
    assert res.masks.shape == (2, 2000, 3000) and res.masks[0, 400:1501, 300:1501].all()
    [request] = script.calls[0]
    assert request.image.size == (1024, 672) and res.frame_size == (1024, 672)
    assert request.prompt == build_prompt("What can I drink?", "qwen3vl") and request.max_new_tokens == 2048


def test_coords_override_both_ways(big_image):
    # qwen3vl prompt read as frame pixels: the square frame, x * W / 840
    with SegZeroPipeline(ScriptedReasoner(GRID_ANSWER), None, prompt_format="qwen3vl", coords="frame") as pipe:
        res = pipe.segment(big_image, "q")
    assert res.frame_size == (840, 840)
    assert res.objects[0].box == (int(100 * (3000 / 840) + 0.5), int(200 * (2000 / 840) + 0.5),
                                  int(500 * (3000 / 840) + 0.5), int(750 * (2000 / 840) + 0.5))
    # a VisionReasoner-format answer on the grid
    tagged = '<think>t</think><answer>[{"bbox_2d": [100, 200, 500, 750], "point_2d": [250, 500]}]</answer>'
    with SegZeroPipeline(ScriptedReasoner(tagged), None, coords="relative1000") as pipe:
        res = pipe.segment(big_image, "q")
        assert pipe.segment(big_image, "q", prompt_format="segzero").frame_size == (1024, 672)
    assert res.objects[0].box == (300, 400, 1500, 1500) and res.prompt_format == "visionreasoner"
    with pytest.raises(ValueError, match="coords"):
        SegZeroPipeline(None, None, coords="grid")  # type: ignore[arg-type]


def test_reference_mode_reads_qwen3vl_answers(big_image):
    with SegZeroPipeline(ScriptedReasoner(GRID_ANSWER), None, prompt_format="qwen3vl", compat="reference") as pipe:
        res = pipe.segment(big_image, "q")
    assert res.parse_status is ParseStatus.OK and res.objects[0].box == (300, 400, 1500, 1500)


def test_registry_coords_reach_the_pipeline(tmp_path, monkeypatch, big_image):
    """An entry that sets coords (a VisionReasoner-format model on the grid) is read through from_pretrained."""
    folder = tmp_path / "script"
    folder.mkdir()
    tagged = '<think>t</think><answer>[{"bbox_2d": [100, 200, 500, 750], "point_2d": [250, 500]}]</answer>'
    (folder / "script.json").write_text(json.dumps([tagged]))
    entry = ModelEntry("grid-reasoner", "reasoner", str(folder), PromptFormat.VISIONREASONER, 64, coords="relative1000")
    monkeypatch.setitem(MODELS, "grid-reasoner", entry)
    pipe = SegZeroPipeline.from_pretrained("grid-reasoner", reasoner_backend="scripted:ScriptedReasoner",
                                           with_segmenter=False)
    assert pipe.coords == "relative1000" and pipe.max_new_tokens == 64
    assert pipe.segment(big_image, "q").objects[0].box == (300, 400, 1500, 1500)
    for kwargs in ({"coords": "frame"}, {"prompt_format": "visionreasoner"}):  # explicit settings win
        other = SegZeroPipeline.from_pretrained("grid-reasoner", reasoner_backend="scripted:ScriptedReasoner",
                                                with_segmenter=False, **kwargs)
        assert other.effective_coords() == "frame"


def test_cli_coords_flag_with_a_scripted_reasoner(tmp_path, capsys, big_image):
    from cli_support import run_main, scripted_segmenter_args

    folder = tmp_path / "script"
    folder.mkdir()
    (folder / "script.json").write_text(json.dumps([GRID_ANSWER]))
    base = ["segment", big_image, "what can I drink?", "--reasoner-backend", "scripted:ScriptedReasoner",
            "--reasoner", folder, *scripted_segmenter_args(tmp_path), "--prompt-format", "qwen3vl"]
    code, out, err = run_main(capsys, *base, "--out", tmp_path / "grid")
    assert code == 0, err
    data = json.loads((tmp_path / "grid" / "result.json").read_text())
    assert data["prompt_format"] == "qwen3vl" and data["frame_size"] == {"width": 1024, "height": 672}
    code, out, err = run_main(capsys, *base, "--coords", "frame", "--out", tmp_path / "frame")
    assert code == 0, err
    data = json.loads((tmp_path / "frame" / "result.json").read_text())
    assert data["frame_size"] == {"width": 840, "height": 840}
    code, out, err = run_main(capsys, *base, "--coords", "pixels")
    assert code == 2 and "--coords" in err


# --- the OpenAI-compatible backend: the loopback server ---------------------------------------------------

def test_openai_backend_sends_the_qwen3vl_prompt(tmp_path):
    sys.path.insert(0, str(Path(__file__).parent / "serving"))
    from fake_vllm import FakeVLLM

    image = tmp_path / "square.png"
    Image.new("RGB", (2000, 2000), (10, 20, 30)).save(image)
    answer = '[{"bbox_2d": [100, 200, 500, 750], "point_2d": [250, 500]}]'
    # the aspect-preserving frame of a square image is the 832x832 square (32-pixel steps), checked by the server
    with FakeVLLM(models=["qwen3-vl-8b-instruct", "Qwen/Qwen3-VL-8B-Instruct"], answer=answer, frame_size=832) as server:
        with SegZeroPipeline.from_pretrained("qwen3-vl-8b-instruct", BoxSegmenter(), reasoner_backend="openai",
                                             reasoner_kwargs={"base_url": server.url, "api_key_env": None}) as pipe:
            res = pipe.segment(image, "What can I drink?")
    [rec] = server.requests
    assert rec["model"] == "qwen3-vl-8b-instruct" and rec["max_tokens"] == 1024 and rec["image_size"] == (832, 832)
    assert rec["prompt"] == build_prompt("What can I drink?", "qwen3vl")
    assert rec["structured_outputs"] == {"regex": answer_regex("json")}  # vLLM: the bare list, no tags
    assert res.parse_status is ParseStatus.OK and res.objects[0].box == (200, 400, 1000, 1500)
    assert res.objects[0].points == ((500, 1000),)


# --- the tiny random Qwen3-VL through the public from_pretrained paths -------------------------------------

@pytest.fixture(scope="module")
def tiny_qwen3(tmp_path_factory):
    from segzero_tool.testing.tiny_qwen3 import build_tiny_qwen3_vl

    return build_tiny_qwen3_vl(tmp_path_factory.mktemp("tiny-qwen3") / "reasoner", seed=0)


@pytest.mark.slow
def test_tiny_qwen3_vl_end_to_end(tiny_qwen3):
    with SegZeroPipeline.from_pretrained(str(tiny_qwen3), BoxSegmenter(), device="cpu", prompt_format="qwen3vl",
                                         max_new_tokens=6) as pipe:
        assert type(pipe.reasoner.model).__name__ == "Qwen3VLForConditionalGeneration"
        results = pipe.segment_many([(COFFEE, "What can I have if I'm thirsty?"), (COFFEE, "the cup")],
                                    progress=False)
    for res in results:  # random weights: gibberish, but a well-formed result
        assert isinstance(res.parse_status, ParseStatus) and isinstance(res.raw_output, str)
        assert res.prompt_format == "qwen3vl" and res.image_size == (600, 400) and res.frame_size == (608, 384)
        assert res.timings["reason"] > 0


@pytest.mark.slow
def test_cli_segment_with_the_tiny_qwen3_vl_subprocess(tiny_qwen3, tmp_path):
    out = tmp_path / "res"
    seg = tmp_path / "seg"
    seg.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    proc = subprocess.run(
        [sys.executable, "-m", "segzero_tool", "segment", str(COFFEE), "What can I have if I'm thirsty?",
         "--reasoner", str(tiny_qwen3), "--segmenter-backend", "scripted:BoxSegmenter",  # format from config.json
         "--segmenter", str(seg), "--device", "cpu", "--out", str(out), "--max-new-tokens", "6"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads((out / "result.json").read_text())
    assert data["prompt_format"] == "qwen3vl" and data["frame_size"] == {"width": 608, "height": 384}


def test_unregistered_qwen3_vl_checkpoints_get_the_grid(tiny_qwen3, tmp_path):
    """A Qwen3-VL folder (config.json model_type) or hub id outside the registry speaks qwen3vl on the 0-1000
    grid; a Qwen2.5-VL folder, other hub ids and segmenters keep the pipeline's default."""
    from segzero_tool.registry import resolve_model
    from segzero_tool.testing.tiny_qwen import build_tiny_qwen2_5_vl

    entry = resolve_model(str(tiny_qwen3), "reasoner")
    assert (entry.prompt_format, entry.coords) == (PromptFormat.QWEN3VL, "relative1000")
    older = resolve_model(str(build_tiny_qwen2_5_vl(tmp_path / "q25")), "reasoner")
    assert (older.prompt_format, older.coords) == (None, "frame")
    assert resolve_model("Qwen/Qwen3-VL-30B-A3B-Instruct", "reasoner").coords == "relative1000"
    assert resolve_model("Qwen/Qwen2.5-VL-32B-Instruct", "reasoner").prompt_format is None
    assert resolve_model("someone/my-qwen3-vl-finetune", "reasoner").prompt_format is None  # name must start so
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    assert resolve_model(str(broken), "reasoner").prompt_format is None
    assert resolve_model(str(tiny_qwen3), "segmenter").prompt_format is None
