"""Reference mode (``compat="reference"``) against a literal transcription of the reference scripts'
parsing and back-projection (protocol sections 1.6, 1.8, 8), and repair mode beside it.

The transcription below is the test oracle: it runs the reference expressions with the reference
regular expressions; an exception means the reference scripts could not read the answer.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scripted import BoxSegmenter, ScriptedReasoner

from segzero_tool import ParseStatus, SegZeroPipeline
from segzero_tool.frame import ReasoningFrame, rounding_for_format
from segzero_tool.parsing import REFERENCE_THINK_RE, parse_output, reference_think
from segzero_tool.pipeline import project_objects
from segzero_tool.reference_parse import read_like_reference
from segzero_tool.registry import MODELS, resolve_model
from segzero_tool.result import SegmentationResult
from segzero_tool.segmenters.base import Segmenter, SegmenterOutput
from segzero_tool.settings import PipelineSettings, SettingsError

FAILED = (ParseStatus.NO_ANSWER, ParseStatus.INVALID_JSON, ParseStatus.INVALID_OBJECTS)


# --- the oracle: the reference scripts' parsing, transcribed -----------------------------------------


def oracle_single(text, xf, yf):
    """Seg-Zero evaluation.py: (box, [p1, p2]) in original pixels, or an exception."""
    data = json.loads(re.search(r"{[^}]+}", text).group(0))
    box = points = None
    bbox_key = next((key for key in data.keys() if "bbox" in key.lower()), None)
    if bbox_key and len(data[bbox_key]) == 4:
        c = data[bbox_key]
        box = [round(int(c[0]) * xf), round(int(c[1]) * yf), round(int(c[2]) * xf), round(int(c[3]) * yf)]
    keys = [key for key in data.keys() if "points" in key.lower()][:2]
    if len(keys) == 2:
        p1, p2 = data[keys[0]], data[keys[1]]
        points = [[round(int(p1[0]) * xf), round(int(p1[1]) * yf)], [round(int(p2[0]) * xf), round(int(p2[1]) * yf)]]
    re.search(r"<think>([^<]+)</think>", text).group(1)  # think_text unbound otherwise
    if box is None or points is None:
        raise UnboundLocalError("content_bbox / points")
    return [(box, points)]


def oracle_multi(text, xf, yf):
    """evaluation_visionreasoner.py: [(box, [point]), ...] in original pixels, or an exception."""
    data = json.loads(re.search(r"<answer>\s*(.*?)\s*</answer>", text, re.DOTALL).group(1))
    boxes = [[int(item["bbox_2d"][0] * xf + 0.5), int(item["bbox_2d"][1] * yf + 0.5),
              int(item["bbox_2d"][2] * xf + 0.5), int(item["bbox_2d"][3] * yf + 0.5)] for item in data]
    points = [[int(item["point_2d"][0] * xf + 0.5), int(item["point_2d"][1] * yf + 0.5)] for item in data]
    return [(b, [p]) for b, p in zip(boxes, points, strict=True)]


def oracle(text, fmt, wh):
    xf, yf = wh[0] / 840, wh[1] / 840
    try:
        return (oracle_single if fmt == "segzero" else oracle_multi)(text, xf, yf)
    except Exception:  # noqa: BLE001 - the reference: a penalty / an empty reading
        return None


class RecordingSegmenter(Segmenter):
    """Records every prompt exactly as received; empty masks."""

    def __init__(self):
        self.prompts = []

    def segment(self, image, prompts):
        h, w = image.shape[:2]
        self.prompts.extend(prompts)
        return SegmenterOutput(np.zeros((len(prompts), h, w), bool), np.zeros(len(prompts), np.float32))


class FailingSegmenter(BoxSegmenter):
    """BoxSegmenter that raises for images of one width."""

    def __init__(self, bad_width):
        super().__init__()
        self.bad_width = bad_width

    def segment(self, image, prompts):
        if image.shape[1] == self.bad_width:
            raise RuntimeError("CUDA error: simulated")
        return super().segment(image, prompts)


def _prompted(seg):
    return [(list(p.box), [list(q) for q in p.points]) for p in seg.prompts]


# --- strategies: answers near the reference grammar, with its pitfalls --------------------------------

_value = st.one_of(
    st.integers(-900, 2000).map(str),
    st.floats(-900, 2000, allow_nan=False).map(repr),
    st.sampled_from(['"12"', '" 7"', '"3.5"', '"x"', "true", "false", "null", "NaN", "Infinity", "-Infinity",
                     "1e400", "[1]", "{}", "0", "-0.5", "839.5", "840"]),
)


def _list(n):
    return st.lists(_value, min_size=n, max_size=n).map(lambda v: "[" + ", ".join(v) + "]")


_coords4 = st.one_of(_list(4), _list(3), _list(5), st.just('"1234"'), st.just("7"))
_coords2 = st.one_of(_list(2), _list(1), _list(3))


@st.composite
def _segzero_answer(draw):
    keys = draw(st.sampled_from([
        ("bbox", "points_1", "points_2"), ("BBox", "Points_a", "points_b"), ("bbox", "point_1", "point_2"),
        ("box", "points_1", "points_2"), ("bbox", "points_1", "points_2", "points_3"), ("bbox", "points_1"),
    ]))
    parts = [f'"{keys[0]}": {draw(_coords4)}'] + [f'"{k}": {draw(_coords2)}' for k in keys[1:]]
    obj = "{" + ", ".join(draw(st.permutations(parts))) + "}"
    if draw(st.booleans()):
        obj = obj.replace('"', "'")  # the prompt's own example: single quotes
    think = draw(st.sampled_from(["<think>fine</think>", "<think>a < b</think>", "<think></think>", "", "<think>x"]))
    return think + draw(st.sampled_from(["<answer>", "", " <answer>\n"])) + obj + draw(st.sampled_from(["</answer>", ""]))


@st.composite
def _vr_answer(draw):
    items = []
    for _ in range(draw(st.integers(0, 3))):
        keys = draw(st.sampled_from([("bbox_2d", "point_2d"), ("bbox", "point_2d"), ("bbox_2d", "points"),
                                     ("bbox_2d",)]))
        parts = [f'"{keys[0]}": {draw(_coords4)}'] + [f'"{k}": {draw(_coords2)}' for k in keys[1:]]
        items.append("{" + ", ".join(parts) + "}")
    body = "[" + ", ".join(items) + "]"
    body = draw(st.sampled_from([body, body[1:-1] if len(items) == 1 else body, body + " trailing", "```json\n" +
                                 body + "\n```", body.replace('"', "'")]))
    tags = draw(st.sampled_from([("<answer>", "</answer>"), ("<answer> ", "\n</answer>"), ("", ""), ("<answer>", "")]))
    return "<think>t</think>" + tags[0] + body + tags[1]


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.one_of(_segzero_answer().map(lambda t: ("segzero", t)), _vr_answer().map(lambda t: ("visionreasoner", t))),
       st.sampled_from([(1225, 815), (64, 48), (840, 840), (2000, 30)]))
def test_reference_mode_reads_and_prompts_exactly_as_the_reference(case, wh):
    fmt, text = case
    expected = oracle(text, fmt, wh)
    reading = read_like_reference(text, fmt, wh[0] / 840, wh[1] / 840)
    assert reading.ok == (expected is not None)
    seg = RecordingSegmenter()
    pipe = SegZeroPipeline(ScriptedReasoner(text), seg, prompt_format=fmt, compat="reference")
    res = pipe.segment(np.zeros((wh[1], wh[0], 3), np.uint8), "q")
    assert res.compat == "reference"
    if expected is None:
        assert res.parse_status in FAILED and res.objects == [] and seg.prompts == []
        assert res.parse_issues[0].startswith("reference mode: the reference scripts cannot read this answer")
    else:
        assert res.parse_status in (ParseStatus.OK, ParseStatus.NO_OBJECTS)
        assert _prompted(seg) == [(list(b), p) for b, p in expected]
        json.dumps(res.to_dict("rle"), allow_nan=False)


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.sampled_from(["<think>", "</think>", "<", "a", " ", "\n", "think>", "</think"]), max_size=12)
       .map("".join))
def test_reference_think_equals_the_regex(text):
    m = REFERENCE_THINK_RE.search(text)
    assert reference_think(text) == (m.group(1) if m else None)


def test_reference_think_is_linear():
    import time

    for text in ("<think>" * 200_000, "<think>a" * 150_000, "<think>" + "a" * 1_000_000):
        t0 = time.perf_counter()
        assert reference_think(text) is None
        assert time.perf_counter() - t0 < 1.0


# --- the four differences, one by one ----------------------------------------------------------------

OUTSIDE = '<think>t</think><answer>[{"bbox_2d": [100, 100, 200, 200], "point_2d": [300, 150]}]</answer>'


def test_a_point_outside_its_box_is_passed_in_reference_mode_and_dropped_in_repair_mode():
    img = np.zeros((420, 1680, 3), np.uint8)  # x * 2, y * 0.5
    ref, rep = RecordingSegmenter(), RecordingSegmenter()
    SegZeroPipeline(ScriptedReasoner(OUTSIDE), ref, compat="reference").segment(img, "q")
    res = SegZeroPipeline(ScriptedReasoner(OUTSIDE), rep).segment(img, "q")
    assert _prompted(ref) == [([200, 50, 400, 100], [[600, 75]])]
    assert _prompted(rep) == [([200, 50, 400, 100], [])]
    assert any("outside its box" in s for s in res.parse_issues)


def test_reference_mode_gives_sam2_unclamped_uninverted_coordinates_and_keeps_the_result_in_the_image():
    text = '<think>t</think><answer>[{"bbox_2d": [900, -20, 100, 50], "point_2d": [-10, 30]}]</answer>'
    img = np.zeros((420, 1680, 3), np.uint8)
    seg = RecordingSegmenter()
    res = SegZeroPipeline(ScriptedReasoner(text), seg, compat="reference").segment(img, "q")
    # int(v * f + 0.5): -20 * 0.5 + 0.5 = -9.5 -> -9 (toward zero), as the reference
    assert _prompted(seg) == [([1800, -9, 200, 25], [[-19, 15]])]
    obj = res.objects[0]
    assert obj.box == (200, 0, 1679, 25) and obj.points == ((0, 15),)
    assert obj.segmenter_prompt == ((1800, -9, 200, 25), ((-19, 15),))
    d = res.to_dict("none")
    assert d["compat"] == "reference" and d["objects"][0]["prompt"] == {"box": [1800, -9, 200, 25], "points": [[-19, 15]]}
    back = SegmentationResult.from_dict(json.loads(json.dumps(d)))
    assert back.compat == "reference" and back.objects[0].segmenter_prompt == obj.segmenter_prompt
    # a result written before compat existed reads back as repair mode, without a prompt
    old = {k: v for k, v in SegZeroPipeline(ScriptedReasoner(text), seg).segment(img, "q").to_dict("none").items()
           if k != "compat"}
    back = SegmentationResult.from_dict(old)
    assert back.compat == "repair" and back.objects[0].prompt_box is None and "prompt" not in old["objects"][0]


@pytest.mark.parametrize(("text", "fmt", "status"), [
    ("<think>t</think><answer>[{'bbox_2d': [1, 2, 30, 40], 'point_2d': [5, 6]}]</answer>", "visionreasoner",
     ParseStatus.INVALID_JSON),  # single quotes
    ('<think>t</think>[{"bbox_2d": [1, 2, 30, 40], "point_2d": [5, 6]}]', "visionreasoner", ParseStatus.NO_ANSWER),
    ('<think>t</think><answer>{"bbox_2d": [1, 2, 30, 40], "point_2d": [5, 6]}</answer>', "visionreasoner",
     ParseStatus.INVALID_OBJECTS),  # a bare object: iterating it yields its keys
    ('<think>t</think><answer>[{"bbox_2d": [1, 2, 30, 40]}]</answer>', "visionreasoner", ParseStatus.INVALID_OBJECTS),
    ('<think>t</think><answer>[{"bbox_2d": [1, 2, 30, 40], "point_2d": [5, 6]}] and more</answer>', "grounding",
     ParseStatus.INVALID_JSON),
    ('<answer>{"bbox": [1, 2, 30, 40], "points_1": [5, 6], "points_2": [7, 8]}</answer>', "segzero",
     ParseStatus.INVALID_OBJECTS),  # no <think>: the single-object script raises
    ('<think>a<b</think><answer>{"bbox": [1, 2, 30, 40], "points_1": [5, 6], "points_2": [7, 8]}</answer>', "segzero",
     ParseStatus.INVALID_OBJECTS),  # a '<' in the think text
    ('<think>t</think><answer>{"bbox": [1, 2, 30, 40], "point_1": [5, 6], "point_2": [7, 8]}</answer>', "segzero",
     ParseStatus.INVALID_OBJECTS),  # point_1 keys contain no "points"
    ("<think>t</think><answer>{'bbox': [1, 2, 30, 40], 'points_1': [5, 6], 'points_2': [7, 8]}</answer>", "segzero",
     ParseStatus.INVALID_JSON),
])
def test_answers_the_reference_cannot_read_fail_in_reference_mode_and_are_recovered_in_repair_mode(text, fmt, status):
    img = np.zeros((840, 840, 3), np.uint8)
    ref = SegZeroPipeline(ScriptedReasoner(text), BoxSegmenter(), prompt_format=fmt, compat="reference").segment(img, "q")
    assert ref.parse_status is status and ref.objects == [] and not ref.union_mask.any()
    assert "reference mode: the reference scripts cannot read this answer" in ref.parse_issues[0]
    assert "repair mode would have used" in ref.parse_issues[0]
    rep = SegZeroPipeline(ScriptedReasoner(text), BoxSegmenter(), prompt_format=fmt).segment(img, "q")
    assert rep.parse_status is ParseStatus.OK and rep.objects and rep.compat == "repair"
    # a per-call override
    again = SegZeroPipeline(ScriptedReasoner(text), BoxSegmenter(), prompt_format=fmt).segment(img, "q", compat="reference")
    assert again.parse_status is status


def test_reference_mode_reads_the_first_four_and_two_values_and_int_casts_segzero_values():
    img = np.zeros((840, 840, 3), np.uint8)
    seg = RecordingSegmenter()
    text = '<think>t</think><answer>[{"bbox_2d": [1, 2, 30, 40, 99], "point_2d": [5, 6, 7]}]</answer>'
    SegZeroPipeline(ScriptedReasoner(text), seg, compat="reference").segment(img, "q")
    assert _prompted(seg) == [([1, 2, 30, 40], [[5, 6]])]
    seg = RecordingSegmenter()
    text = ('<think>t</think><answer>{"bbox": ["10", 20.9, 300, 400], "points_1": [" 50", 60.7], '
            '"points_2": [70, 80], "points_3": [1, 1]}</answer>')
    SegZeroPipeline(ScriptedReasoner(text), seg, prompt_format="segzero", compat="reference").segment(img, "q")
    assert _prompted(seg) == [([10, 20, 300, 400], [[50, 60], [70, 80]])]


# --- parsing: the lenient parser reads like the reference where the reference reads ------------------


def test_parse_output_uses_the_first_four_and_two_values():
    p = parse_output('<think>t</think><answer>[{"bbox_2d": [1, 2, 3, 4, 5], "point_2d": [6, 7, 8]}]</answer>')
    assert p.ok and p.objects[0].box == (1, 2, 3, 4) and p.objects[0].points == ((6, 7),)
    assert any("used the first 4" in s for s in p.issues) and any("used the first 2" in s for s in p.issues)


def test_parse_output_takes_segzero_points_from_the_first_two_points_keys():
    p = parse_output('<think>t</think><answer>{"bbox": [1, 2, 30, 40], "points_1": [5, 6], "point_x": [9, 9], '
                     '"points_2": [7, 8], "points_3": [1, 1]}</answer>')
    assert p.objects[0].points == ((5, 6), (7, 8))
    assert any("ignored 'points_3'" in s for s in p.issues)
    # no key containing "points": repair mode still reads "point" keys (the reference cannot)
    p = parse_output('<think>t</think><answer>{"bbox": [1, 2, 30, 40], "point_1": [5, 6], "point_2": [7, 8]}</answer>')
    assert p.objects[0].points == ((5, 6), (7, 8))


# --- rounding follows the prompt format ---------------------------------------------------------------

SEGZERO = '<think>t</think><answer>{"bbox": [1, 1, 3, 3], "points_1": [1, 1], "points_2": [3, 3]}</answer>'


def test_rounding_follows_the_prompt_format_whatever_the_model_source():
    img = np.zeros((420, 420, 3), np.uint8)  # factor 0.5: round(1 * .5) = 0 (banker's), int(.5 + .5) = 1
    for pipe in (SegZeroPipeline(ScriptedReasoner(SEGZERO), RecordingSegmenter(), prompt_format="segzero"),
                 SegZeroPipeline.from_pretrained(ScriptedReasoner(SEGZERO), RecordingSegmenter(),
                                                 prompt_format="segzero")):
        assert pipe.rounding is None and pipe.effective_rounding() == "segzero"
        for compat in ("repair", "reference"):
            res = pipe.segment(img, "q", compat=compat)
            assert res.objects[0].box == (0, 0, 2, 2) and res.objects[0].points == ((0, 0), (2, 2))
    vr = SegZeroPipeline(ScriptedReasoner(SEGZERO), RecordingSegmenter())
    assert vr.effective_rounding() == "half_up" and vr.effective_rounding("segzero") == "segzero"
    assert vr.segment(img, "q", prompt_format="segzero").objects[0].box == (0, 0, 2, 2)
    over = SegZeroPipeline(ScriptedReasoner(SEGZERO), RecordingSegmenter(), prompt_format="segzero", rounding="half_up")
    assert over.segment(img, "q").objects[0].box == (1, 1, 2, 2)
    assert rounding_for_format("segzero") == "segzero" and rounding_for_format("grounding") == "half_up"
    assert MODELS["seg-zero-7b"].rounding == "segzero" and MODELS["visionreasoner-7b"].rounding == "half_up"
    with pytest.raises(ValueError, match="rounding"):
        SegZeroPipeline(ScriptedReasoner(SEGZERO), None, rounding="floor")
    with pytest.raises(ValueError, match="compat"):
        SegZeroPipeline(ScriptedReasoner(SEGZERO), None, compat="exact")


def test_unregistered_models_get_no_rounding_of_their_own(tmp_path):
    assert resolve_model(str(tmp_path), "reasoner").rounding == "half_up"  # no format known: half_up


# --- settings ---------------------------------------------------------------------------------------


def test_settings_validate_compat_and_rounding():
    s = PipelineSettings.resolve(environ={"SEGZERO_COMPAT": "Reference", "SEGZERO_ROUNDING": "segzero"})
    assert s.normalised("compat") == "reference" and s.normalised("rounding") == "segzero"
    assert PipelineSettings().compat is None and PipelineSettings().rounding is None
    with pytest.raises(SettingsError, match="SEGZERO_COMPAT must be one of reference, repair, got 'exact'"):
        PipelineSettings.resolve(environ={"SEGZERO_COMPAT": "exact"})
    with pytest.raises(SettingsError, match="--rounding must be one of half_up, segzero"):
        PipelineSettings.resolve(environ={}, overrides={"rounding": "floor"})


def test_settings_build_repair_pipelines_unless_told(tmp_path):
    folder = tmp_path / "scripted"
    folder.mkdir()
    (folder / "script.json").write_text(json.dumps([SEGZERO]))
    base = {"reasoner": str(folder), "reasoner_backend": "scripted:ScriptedReasoner"}
    pipe = PipelineSettings(**base).build_pipeline(with_segmenter=False)
    assert pipe.compat == "repair" and pipe.rounding is None and pipe.effective_rounding() == "half_up"
    pipe = PipelineSettings(**base, prompt_format="segzero").build_pipeline(with_segmenter=False)
    assert pipe.effective_rounding() == "segzero"
    pipe = PipelineSettings(**base, compat="reference", rounding="half_up",
                            prompt_format="segzero").build_pipeline(with_segmenter=False)
    assert pipe.compat == "reference" and pipe.effective_rounding() == "half_up"


# --- totality: reference mode never raises on model text ---------------------------------------------


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.text(alphabet='<>/thinkaswer{}[]"\':,0123456789.-eNIfbox_pt ', max_size=200),
       st.sampled_from(["segzero", "visionreasoner"]))
def test_reference_mode_is_total(text, fmt):
    res = SegZeroPipeline(ScriptedReasoner(text), RecordingSegmenter(), prompt_format=fmt,
                          compat="reference").segment(np.zeros((30, 40, 3), np.uint8), "q")
    assert isinstance(res.parse_status, ParseStatus)
    json.dumps(res.to_dict("rle"), allow_nan=False)
    parsed = parse_output(text)
    objects, _ = project_objects(parsed, ReasoningFrame((40, 30)), compat="reference")
    for o in objects:
        assert 0 <= o.box[0] <= o.box[2] <= 39 if o.box else True


# --- the command line ---------------------------------------------------------------------------------


def _segment_cli(tmp_path, answer, *flags):
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    folder = tmp_path / "scripted"
    folder.mkdir(exist_ok=True)
    (folder / "script.json").write_text(json.dumps([answer]))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGZERO_")}
    env.update({"HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join([str(repo), str(repo / "tests")])})
    proc = subprocess.run([sys.executable, "-m", "segzero_tool", "segment", str(repo / "examples" / "coffee.png"), "q",
                           "--reasoner-backend", "scripted:ScriptedReasoner", "--reasoner", str(folder), "--no-masks",
                           "--json", *flags], capture_output=True, text=True, env=env, timeout=300)
    return proc


def test_segment_cli_compat_and_rounding(tmp_path):
    proc = _segment_cli(tmp_path, OUTSIDE)
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert d["compat"] == "repair" and d["objects"][0]["points"] == []
    proc = _segment_cli(tmp_path, OUTSIDE, "--compat", "reference")
    d = json.loads(proc.stdout)
    assert d["compat"] == "reference" and len(d["objects"][0]["points"]) == 1
    w, h = d["image_size"]["width"], d["image_size"]["height"]
    # --prompt-format segzero with a plugin reasoner: Seg-Zero rounding; --rounding overrides it
    ans = '<think>t</think><answer>{"bbox": [2.9, 2.9, 30.9, 30.9], "points_1": [3, 3], "points_2": [9, 9]}</answer>'
    seg = json.loads(_segment_cli(tmp_path, ans, "--prompt-format", "segzero").stdout)
    half = json.loads(_segment_cli(tmp_path, ans, "--prompt-format", "segzero", "--rounding", "half_up").stdout)
    box = (2.9, 2.9, 30.9, 30.9)
    assert seg["objects"][0]["box"] == [round(int(v) * f) for v, f in zip(box, (w / 840, h / 840) * 2, strict=True)] == [1, 1, 21, 14]
    assert half["objects"][0]["box"] == [int(v * f + 0.5) for v, f in zip(box, (w / 840, h / 840) * 2, strict=True)] == [2, 1, 22, 15]
    bad = _segment_cli(tmp_path, ans, "--rounding", "floor")
    assert bad.returncode == 2 and "--rounding" in bad.stderr and "'floor'" in bad.stderr
