"""The one parser: a table of real-world outputs plus a property test that it never raises."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segzero_tool.parsing import FrameObject, ParsedOutput, ParseStatus, parse_output

VR = '<think>two drinks</think><answer>[{"bbox_2d": [10,100,200,210], "point_2d": [30,110]}, {"bbox_2d": [225,296,706,786], "point_2d": [302,410]}]</answer>'


@pytest.mark.parametrize(
    ("text", "status", "boxes", "points"),
    [
        # VisionReasoner list
        (VR, ParseStatus.OK, [(10, 100, 200, 210), (225, 296, 706, 786)], [((30, 110),), ((302, 410),)]),
        # single object instead of a list
        ('<think>t</think><answer>{"bbox_2d": [1,2,3,4], "point_2d": [2,3]}</answer>', ParseStatus.OK,
         [(1, 2, 3, 4)], [((2, 3),)]),
        # Seg-Zero keys, valid JSON
        ('<think>t</think><answer>{"bbox": [10,100,200,210], "points_1": [30,110], "points_2": [35,180]}</answer>',
         ParseStatus.OK, [(10, 100, 200, 210)], [((30, 110), (35, 180))]),
        # Seg-Zero keys, single quotes as in the prompt example
        ("<think>t</think><answer>{'bbox': [10,100,200,210], 'points_1': [30,110], 'points_2': [35,180]}</answer>",
         ParseStatus.OK, [(10, 100, 200, 210)], [((30, 110), (35, 180))]),
        # code fence inside the answer
        ('<think>t</think><answer>```json\n[{"bbox_2d": [1,2,3,4], "point_2d": [2,3]}]\n```</answer>',
         ParseStatus.OK, [(1, 2, 3, 4)], [((2, 3),)]),
        # trailing text after the JSON inside the answer
        ('<think>t</think><answer>[{"bbox_2d": [1,2,3,4]}] that is all</answer>', ParseStatus.OK,
         [(1, 2, 3, 4)], [()]),
        # no answer tags: base-model fenced JSON after the think block
        ('<think>t</think>\n```json\n[{"bbox_2d": [5,6,7,8], "label": "cup"}]\n```', ParseStatus.OK,
         [(5, 6, 7, 8)], [()]),
        # truncated mid-list: keep the complete objects
        ('<think>t</think><answer>[{"bbox_2d": [1,2,3,4], "point_2d": [2,3]}, {"bbox_2d": [5,6', ParseStatus.OK,
         [(1, 2, 3, 4)], [((2, 3),)]),
        # float and numeric-string coordinates
        ('<think>t</think><answer>[{"bbox_2d": [1.5,"2",3,4], "point_2d": [2,3]}]</answer>', ParseStatus.OK,
         [(1.5, 2, 3, 4)], [((2, 3),)]),
        # wrapper object
        ('<think>t</think><answer>{"objects": [{"bbox_2d": [1,2,3,4]}]}</answer>', ParseStatus.OK,
         [(1, 2, 3, 4)], [()]),
        # point only
        ('<think>t</think><answer>[{"point_2d": [2,3]}]</answer>', ParseStatus.OK, [None], [((2, 3),)]),
        # empty answer list
        ("<think>nothing here</think><answer>[]</answer>", ParseStatus.NO_OBJECTS, [], []),
        # garbage
        ("the cat sat on the mat", ParseStatus.NO_ANSWER, [], []),
        ("", ParseStatus.NO_ANSWER, [], []),
        # tags but broken JSON
        ("<think>t</think><answer>[{bbox_2d: oops</answer>", ParseStatus.INVALID_JSON, [], []),
        ("<think>t</think><answer>not json at all</answer>", ParseStatus.INVALID_JSON, [], []),
        # NaN / wrong lengths / strings
        ('<think>t</think><answer>[{"bbox_2d": [NaN,2,3,4]}]</answer>', ParseStatus.INVALID_OBJECTS, [], []),
        ('<think>t</think><answer>[{"bbox_2d": [1,2,3]}]</answer>', ParseStatus.INVALID_OBJECTS, [], []),
        ('<think>t</think><answer>["a", 5, null]</answer>', ParseStatus.INVALID_OBJECTS, [], []),
        ('<think>t</think><answer>"just a string"</answer>', ParseStatus.INVALID_JSON, [], []),
        ('<think>t</think><answer>[{"bbox_2d": [true,2,3,4]}]</answer>', ParseStatus.INVALID_OBJECTS, [], []),
    ],
)
def test_parse_table(text, status, boxes, points):
    p = parse_output(text)
    assert p.status is status, p.issues
    assert [o.box for o in p.objects] == boxes
    assert [o.points for o in p.objects] == points


def test_think_and_format():
    p = parse_output(VR)
    assert p.think == "two drinks"
    assert p.format_ok
    assert not p.truncated
    assert p.total_items == 2
    assert not parse_output(" " + VR).format_ok  # full match: leading text fails the reference grammar
    assert not parse_output(VR + "\n").format_ok


def test_think_with_angle_bracket_kept():
    p = parse_output("<think>a < b and c</think><answer>[]</answer>")
    assert p.think == "a < b and c"


def test_truncated_think():
    p = parse_output("<think>I was thinking about the cup and then")
    assert p.status is ParseStatus.NO_ANSWER
    assert p.truncated
    assert p.think.startswith("I was thinking")


def test_partial_invalid_items_reported():
    p = parse_output('<think>t</think><answer>[{"bbox_2d": [1,2,3,4]}, {"bbox_2d": "x"}, 7]</answer>')
    assert p.status is ParseStatus.OK
    assert len(p.objects) == 1
    assert any("item 1" in s for s in p.issues) and any("item 2" in s for s in p.issues)


def test_max_objects_cap():
    items = ", ".join('{"bbox_2d": [1,2,3,4]}' for _ in range(10))
    p = parse_output(f"<think>t</think><answer>[{items}]</answer>", max_objects=3)
    assert len(p.objects) == 3
    assert p.total_items == 10
    assert any("kept the first 3" in s for s in p.issues)


def test_label_and_answer_dict():
    p = parse_output('<think>t</think><answer>[{"bbox_2d": [1,2,3,4], "point_2d": [2,3], "label": "cup"}]</answer>')
    assert p.objects[0].label == "cup"
    assert p.objects[0].to_answer_dict() == {"bbox_2d": [1, 2, 3, 4], "point_2d": [2, 3]}


def test_message_is_human_readable():
    assert "no <answer>" in parse_output("garbage").message


def test_non_string_input():
    assert parse_output(None).status is ParseStatus.NO_ANSWER  # type: ignore[arg-type]


def test_deeply_nested_json_does_not_crash():
    text = "<think>t</think><answer>" + "[" * 5000 + "]" * 5000 + "</answer>"
    assert isinstance(parse_output(text), ParsedOutput)


_fragments = st.sampled_from([
    "<think>", "</think>", "<answer>", "</answer>", "[", "]", "{", "}", '"bbox_2d"', '"point_2d"', ":", ",",
    "1", "-5", "1e999", "NaN", "'", '"', "```json", "```", "null", "true", "bbox", "points_1", " ", "\n",
])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=300), st.lists(_fragments, max_size=60).map("".join)))
def test_parser_never_raises(text):
    p = parse_output(text)
    assert isinstance(p, ParsedOutput)
    assert isinstance(p.status, ParseStatus)
    for o in p.objects:
        assert isinstance(o, FrameObject)
        assert o.box is not None or o.points


def _cut_list_by_prefixes(s):
    """The former repair: the longest of the last 64 ``s[:pos + 1] + "]"`` (``s[pos] == "}"``) that decodes."""
    from segzero_tool.parsing import _DECODER

    pos = len(s)
    for _ in range(64):
        pos = s.rfind("}", 0, pos)
        if pos < 0:
            return None
        try:
            return _DECODER.decode(s[: pos + 1] + "]")
        except (ValueError, RecursionError):
            continue
    return None


_cut_fragments = st.sampled_from([
    '{"a":1}', '{"b":"}"}', "}", "{", ",", " ", "\n", "[", "]", "1", '"x', '"', "NaN", "{}", ', {"c":[1,2]}', "x",
])


@settings(max_examples=1000, deadline=None)
@given(st.lists(_cut_fragments, max_size=12).map(lambda parts: "[" + "".join(parts)))
def test_cut_list_repair_matches_the_prefix_rule(s):
    from segzero_tool.parsing import _cut_list_prefix

    assert _cut_list_prefix(s) == _cut_list_by_prefixes(s)


def test_cut_list_repair_limits():
    from segzero_tool.parsing import _cut_list_prefix

    objs = '{"a":1},' * 3
    assert _cut_list_prefix("[" + objs + "}" * 60) == [{"a": 1}] * 3
    assert _cut_list_prefix("[" + objs + "}" * 64) is None  # only the last 64 '}' were ever tried
