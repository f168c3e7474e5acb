"""Model text to pixels is total: any string a model can return becomes a result with a status.

The whole path is driven: ``parse_output`` -> ``project_objects`` -> segmenter prompts ->
``SegmentationResult`` -> ``to_dict("rle")`` -> JSON, with huge and tiny floats, integers of hundreds
or thousands of digits, NaN/Infinity literals, deep nesting and repeated or unbalanced tags.
Speed figures live in benchmarks/parse_speed.py; here adversarial inputs must only terminate.
"""

import json
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scripted import BoxSegmenter, ScriptedReasoner

from segzero_tool import ParseStatus, SegZeroPipeline
from segzero_tool.frame import ReasoningFrame
from segzero_tool.parsing import (
    ANSWER_RE,
    FORMAT_RE,
    REFERENCE_BRACE_RE,
    THINK_RE,
    ParsedOutput,
    extract_think,
    format_matches,
    parse_output,
    reference_answer_block,
    reference_first_brace_object,
)
from segzero_tool.pipeline import project_objects
from segzero_tool.segmenters.base import ObjectPrompt

COFFEE = Path(__file__).resolve().parents[1] / "examples" / "coffee.png"
SIZES = [(1225, 815), (64, 48), (2000, 30), (840, 840), (1, 1)]

# --- strategies --------------------------------------------------------------------------------


def _json_float(v: float) -> str:
    if v != v:
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "Infinity" if v > 0 else "-Infinity"
    return repr(v)


_long_int = st.builds(
    lambda sign, n, d: sign + d[0].replace("0", "1") + d * n,
    st.sampled_from(["", "-"]),
    st.sampled_from([300, 308, 309, 400, 1000, 4300, 4301, 6000]),
    st.sampled_from(["9", "1", "0", "57"]),
)
_number = st.one_of(
    st.integers(-2000, 2000).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(_json_float),
    st.sampled_from(["1.7e308", "-1.7e308", "1e308", "1e309", "1e999", "-1e999", "5e-324", "1e-320", "-0.0",
                     "2.2250738585072014e-308", "NaN", "Infinity", "-Infinity", '"1e999"', '"nan"', '"12"',
                     "9" * 20, "1e12", "1e13", "true", "null"]),
    _long_int,
    st.text(alphabet="0123456789", min_size=1, max_size=400),
)


def _item(box: list[str] | None, point: list[str] | None, keys: tuple[str, str]) -> str:
    parts = []
    if box is not None:
        parts.append(f'"{keys[0]}": [{", ".join(box)}]')
    if point is not None:
        parts.append(f'"{keys[1]}": [{", ".join(point)}]')
    return "{" + ", ".join(parts) + "}"


_items = st.lists(
    st.builds(
        _item,
        st.one_of(st.none(), st.lists(_number, min_size=4, max_size=4)),
        st.one_of(st.none(), st.lists(_number, min_size=2, max_size=2)),
        st.sampled_from([("bbox_2d", "point_2d"), ("bbox", "points_1")]),
    ),
    max_size=4,
)
_answer = _items.map(lambda items: "[" + ", ".join(items) + "]")

_TAGS = ["<think>", "</think>", "<answer>", "</answer>", "```json", "```", "[", "]", "{", "}", "'", '"', "\n"]
_noise = st.one_of(
    st.builds(lambda t, n: t * n, st.sampled_from(_TAGS), st.integers(0, 3000)),
    st.builds(lambda n: "[" * n + "{" * (n // 2), st.integers(0, 20_000)),
    st.builds(lambda n: "[" * n + "]" * n, st.integers(0, 20_000)),
    st.builds(lambda n: "9" * n, st.integers(0, 6000)),
    st.text(max_size=50),
)


@st.composite
def model_text(draw) -> str:
    """A model output: noise, tags (maybe missing, repeated or unbalanced) around a hostile answer."""
    think = draw(st.text(max_size=30))
    answer = draw(_answer)
    shape = draw(st.sampled_from(["full", "no_close", "no_tags", "fenced", "single_quotes", "cut"]))
    if shape == "full":
        body = f"<think>{think}</think><answer>{answer}</answer>"
    elif shape == "no_close":
        body = f"<think>{think}</think><answer>{answer}"
    elif shape == "no_tags":
        body = f"<think>{think}</think>{answer}"
    elif shape == "fenced":
        body = f"<think>{think}</think>```json\n{answer}\n```"
    elif shape == "single_quotes":
        body = f"<think>{think}</think><answer>{answer.replace(chr(34), chr(39))}</answer>"
    else:
        body = f"<think>{think}</think><answer>{answer}"[: draw(st.integers(0, len(answer) + 40))]
    return draw(_noise) + body + draw(_noise)


# --- the whole path ----------------------------------------------------------------------------


def _check_parsed(parsed: ParsedOutput) -> None:
    assert isinstance(parsed, ParsedOutput)
    assert isinstance(parsed.status, ParseStatus)
    assert isinstance(parsed.message, str)
    for o in parsed.objects:
        assert o.box is not None or o.points
        for v in (*(o.box or ()), *(c for p in o.points for c in p)):
            assert isinstance(v, float) and v == v and abs(v) != float("inf")


def _check_projected(objects, wh) -> None:
    w, h = wh
    for o in objects:
        if o.box is not None:
            x1, y1, x2, y2 = o.box
            assert all(isinstance(v, int) for v in o.box)
            assert 0 <= x1 <= x2 <= w - 1 and 0 <= y1 <= y2 <= h - 1
        for x, y in o.points:
            assert isinstance(x, int) and isinstance(y, int)
            assert 0 <= x <= w - 1 and 0 <= y <= h - 1


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(model_text(), st.sampled_from(SIZES), st.sampled_from(["half_up", "segzero"]))
def test_parse_and_project_are_total(text, wh, rounding):
    parsed = parse_output(text)
    _check_parsed(parsed)
    frame = ReasoningFrame(wh, rounding=rounding)
    objects, issues = project_objects(parsed, frame)
    assert all(isinstance(s, str) for s in issues)
    _check_projected(objects, wh)
    prompts = [ObjectPrompt(o.box, o.points) for o in objects]
    out = BoxSegmenter().segment(np.zeros((wh[1], wh[0], 3), np.uint8), prompts)
    assert out.masks.shape == (len(objects), wh[1], wh[0])


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(model_text(), st.sampled_from(SIZES[:3]))
def test_pipeline_result_serialises(text, wh):
    image = np.random.default_rng(0).integers(0, 255, (wh[1], wh[0], 3), dtype=np.uint8)
    res = SegZeroPipeline(ScriptedReasoner(text), BoxSegmenter()).segment(image, "q")
    assert isinstance(res.parse_status, ParseStatus)
    _check_projected(res.objects, wh)
    json.dumps(res.to_dict("rle"), allow_nan=False)


ADVERSARIAL = {
    "repeated <answer>": "<answer>" * 131_072,
    "repeated <think>": "<think>" * 149_797,
    "repeated </think><answer>": "<think>" + "</think><answer>" * 65_536,
    "unbalanced tags": "<think><answer></think></answer><answer>" * 26_000,
    "deep [ nesting": "<think>t</think><answer>" + "[" * 1_000_000,
    "deep [{ nesting in a short answer": "<think>t</think><answer>" + "[{" * 99_000 + "</answer>",
    "balanced deep nesting": "<answer>" + "[" * 99_000 + "]" * 99_000 + "</answer>",
    "run of {": "{" * 1_000_000,
    "long digit run": '<think>t</think><answer>[{"bbox_2d": [0, 0, ' + "9" * 199_000 + ", 5]}]</answer>",
    "long digit run, no tags": "[" + "9" * 1_000_000,
    "fences": "```" * 333_333,
    "quotes": "<answer>['" + "'" * 199_000 + "</answer>",
}


@pytest.mark.parametrize("name", list(ADVERSARIAL))
def test_adversarial_text_terminates_with_a_status(name):
    text = ADVERSARIAL[name]
    _check_parsed(parse_output(text))
    for f in (format_matches, reference_answer_block, reference_first_brace_object, extract_think):
        f(text)


@pytest.mark.parametrize("name", ["repeated <answer>", "long digit run", "deep [{ nesting in a short answer"])
def test_pipeline_end_to_end_on_adversarial_text(name):
    res = SegZeroPipeline(ScriptedReasoner(ADVERSARIAL[name]), BoxSegmenter()).segment(str(COFFEE), "q")
    assert isinstance(res.parse_status, ParseStatus)
    json.dumps(res.to_dict("rle"), allow_nan=False)


# --- the cases named in issue #11 --------------------------------------------------------------


def test_huge_finite_box_is_clamped_not_raised():
    parsed = parse_output('<think>t</think><answer>[{"bbox_2d": [0, 0, 1.7e308, 5]}]</answer>')
    assert parsed.ok and parsed.objects[0].box == (0, 0, 1.7e308, 5)
    objects, issues = project_objects(parsed, ReasoningFrame((1225, 815)))
    assert objects[0].box == (0, 0, 1224, int(5 * 815 / 840 + 0.5))
    assert any("clamped" in s for s in issues)
    res = SegZeroPipeline(ScriptedReasoner(f"<think>t</think><answer>{parsed.answer_text}</answer>"),
                          BoxSegmenter()).segment(str(COFFEE), "q")
    assert res.parse_status is ParseStatus.OK and res.objects[0].box[2] == res.image_size[0] - 1
    json.dumps(res.to_dict("rle"), allow_nan=False)


@pytest.mark.parametrize("digits", [309, 400, 4300, 4301, 10_000])
def test_long_integers_are_a_parse_issue(digits):
    big = "9" * digits
    parsed = parse_output(f'<think>t</think><answer>[{{"bbox_2d": [0, 0, {big}, 5], "point_2d": [1, 2]}}]</answer>')
    assert parsed.ok and parsed.objects[0].box is None and parsed.objects[0].points == ((1.0, 2.0),)
    assert any("too large for a float" in s for s in parsed.issues)
    only_box = parse_output(f'<think>t</think><answer>[{{"bbox_2d": [0, 0, {big}, 5]}}]</answer>')
    assert only_box.status is ParseStatus.INVALID_OBJECTS
    literal = parse_output(f"<think>t</think><answer>[{{'bbox_2d': [0, 0, {big}, 5]}}]</answer>")
    assert literal.status in (ParseStatus.INVALID_OBJECTS, ParseStatus.INVALID_JSON)


def test_long_integer_that_fits_a_float_keeps_its_value():
    v = "9" * 300
    parsed = parse_output(f'<think>t</think><answer>[{{"bbox_2d": [0, 0, {v}, 5]}}]</answer>')
    assert parsed.objects[0].box == (0.0, 0.0, float(int(v)), 5.0)


@pytest.mark.parametrize("lit", ["NaN", "Infinity", "-Infinity", "1e999", '"inf"'])
def test_non_finite_literals_drop_the_box(lit):
    parsed = parse_output(f'<think>t</think><answer>[{{"bbox_2d": [0, 0, {lit}, 5]}}]</answer>')
    assert parsed.status is ParseStatus.INVALID_OBJECTS
    assert any("finite" in s for s in parsed.issues)


# --- the linear replacements give the regexes' answers -----------------------------------------

_frag = st.lists(st.sampled_from([
    "<think>", "</think>", "<answer>", "</answer>", "<think", "answer>", "{", "}", "a", " ", "\n", "\x1c", "\u2003",
    "\x85", "\t",
]), max_size=14).map("".join)


@settings(max_examples=1500, deadline=None)
@given(_frag)
def test_linear_tag_helpers_equal_the_regexes(text):
    assert format_matches(text) == (FORMAT_RE.fullmatch(text) is not None)
    m = ANSWER_RE.search(text)
    assert reference_answer_block(text) == (m.group(1) if m else None)
    m = REFERENCE_BRACE_RE.search(text)
    assert reference_first_brace_object(text) == (m.group(0) if m else None)
    m = THINK_RE.search(text)
    if m:
        assert extract_think(text) == (m.group(1).strip(), False)
    else:
        assert extract_think(text)[1] == ("<think>" in text)
    assert re.compile(r"\s").fullmatch("\x1c")  # the whitespace set shared by \s and str.strip
