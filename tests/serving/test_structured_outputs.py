"""The structured-output regex and grammar: what they accept parses, what they refuse is what should
not be generated, and they stay inside the regex subset vLLM's engines read."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segzero_tool.parsing import FORMAT_RE, ParseStatus, parse_output
from segzero_tool.prompts import VISIONREASONER_ANSWER_EXAMPLE, build_prompt
from segzero_tool.reasoners.structured import (
    MAX_WS,
    answer_grammar,
    answer_regex,
    schema_for_prompt,
    structured_outputs_field,
)

LIST = answer_regex("list")
SINGLE = answer_regex("single")


@pytest.mark.parametrize(
    "text",
    [
        "<think> thinking process here </think><answer>" + VISIONREASONER_ANSWER_EXAMPLE + "</answer>",
        '<think>The cup.</think>\n<answer>[{"bbox_2d": [168,126,588,672], "point_2d": [378,420]}]</answer>',
        '<think>x</think><answer>[{"bbox_2d":[0,0,839,839],"point_2d":[420,420]}]</answer>',
        '<think>\nmulti\nline\n</think> <answer> [\n  {"bbox_2d": [1, 2, 3, 4], "point_2d": [2, 3]},\n'
        '  {"bbox_2d": [5, 6, 7, 8], "point_2d": [6, 7]}\n] </answer>',
    ],
)
def test_list_regex_accepts_answers_that_parse(text):
    assert re.fullmatch(LIST, text)
    parsed = parse_output(text)
    assert parsed.status is ParseStatus.OK and parsed.format_ok and FORMAT_RE.fullmatch(text)
    assert len(parsed.objects) == len(json.loads(parsed.answer_text))
    assert all(o.box is not None and len(o.points) == 1 for o in parsed.objects)


def test_empty_list_is_allowed_and_parses_as_no_objects():
    text = "<think>nothing matches</think><answer>[]</answer>"
    assert re.fullmatch(LIST, text) and parse_output(text).status is ParseStatus.NO_OBJECTS


@pytest.mark.parametrize(
    "text",
    [
        '<answer>[{"bbox_2d": [1,2,3,4], "point_2d": [2,3]}]</answer>',  # no think
        'Sure! <think>x</think><answer>[]</answer>',  # text before <think>
        '<think>x</think><answer>[]</answer> done',  # text after </answer>
        '<think>a <b> c</think><answer>[]</answer>',  # '<' inside think (the reference regex refuses it too)
        '<think>x</think><answer>[{"bbox_2d": [1.5,2,3,4], "point_2d": [2,3]}]</answer>',  # float
        '<think>x</think><answer>[{"bbox_2d": [-1,2,3,4], "point_2d": [2,3]}]</answer>',  # negative
        '<think>x</think><answer>[{"bbox_2d": [01,2,3,4], "point_2d": [2,3]}]</answer>',  # leading zero
        '<think>x</think><answer>[{"bbox_2d": [12345,2,3,4], "point_2d": [2,3]}]</answer>',  # 5 digits
        '<think>x</think><answer>[{"bbox_2d": [1,2,3], "point_2d": [2,3]}]</answer>',  # 3 numbers
        '<think>x</think><answer>[{"point_2d": [2,3], "bbox_2d": [1,2,3,4]}]</answer>',  # key order
        '<think>x</think><answer>[{"bbox_2d": [1,2,3,4], "point_2d": [2,3], "label": "cup"}]</answer>',
        '<think>x</think><answer>{"bbox_2d": [1,2,3,4], "point_2d": [2,3]}</answer>',  # not a list
        "<think>x</think><answer>[{'bbox_2d': [1,2,3,4], 'point_2d': [2,3]}]</answer>",  # single quotes
        '<think>x</think><answer>```json\n[]\n```</answer>',  # code fence
        '<think>x</think>' + " " * (MAX_WS + 1) + "<answer>[]</answer>",  # runaway whitespace
        '<think>x</think><answer>[{"bbox_2d": [1,2,3,4], "point_2d": [2,3]},]</answer>',  # trailing comma
    ],
)
def test_list_regex_refuses(text):
    assert re.fullmatch(LIST, text) is None


def test_single_object_regex_for_seg_zero():
    text = '<think>the mug</think><answer>{"bbox": [10,100,200,210], "points_1": [30,110], "points_2": [35,180]}</answer>'
    assert re.fullmatch(SINGLE, text) and re.fullmatch(LIST, text) is None
    parsed = parse_output(text)
    assert parsed.status is ParseStatus.OK and parsed.objects[0].points == ((30, 110), (35, 180))
    assert re.fullmatch(SINGLE, text.replace(', "points_2": [35,180]', "")) is None


def test_max_objects_bound():
    one = '{"bbox_2d": [1,2,3,4], "point_2d": [2,3]}'
    bounded = answer_regex("list", max_objects=2)
    assert re.fullmatch(bounded, f"<think>x</think><answer>[{one}, {one}]</answer>")
    assert re.fullmatch(bounded, f"<think>x</think><answer>[{one}, {one}, {one}]</answer>") is None
    assert re.fullmatch(LIST, f"<think>x</think><answer>[{', '.join([one] * 60)}]</answer>")
    with pytest.raises(ValueError):
        answer_regex("list", max_objects=0)


_coord = st.integers(min_value=0, max_value=9999)
_ws = st.text(alphabet=" \t\n", max_size=MAX_WS)
_think = st.text(alphabet=st.characters(blacklist_characters="<", blacklist_categories=("Cs",)), max_size=80)


@st.composite
def answers(draw):
    objects = draw(st.lists(st.tuples(st.lists(_coord, min_size=4, max_size=4), st.lists(_coord, min_size=2, max_size=2)),
                            max_size=5))
    parts = []
    for box, point in objects:
        w = [draw(_ws) for _ in range(6)]
        parts.append(f'{{{w[0]}"bbox_2d"{w[1]}:{w[2]}{json.dumps(box)}{w[3]},{w[4]}"point_2d":{w[5]}{json.dumps(point)}}}')
    sep = draw(_ws) + "," + draw(_ws)
    text = f"<think>{draw(_think)}</think>{draw(_ws)}<answer>{draw(_ws)}[{sep.join(parts)}]{draw(_ws)}</answer>"
    return text, objects


@settings(max_examples=200, deadline=None)
@given(answers())
def test_every_matching_answer_parses_to_its_objects(sample):
    text, objects = sample
    assert re.fullmatch(LIST, text)
    parsed = parse_output(text, max_objects=100)
    assert parsed.status is (ParseStatus.OK if objects else ParseStatus.NO_OBJECTS)
    assert [(list(o.box), list(o.points[0])) for o in parsed.objects] == [(b, p) for b, p in objects]
    assert not parsed.issues


def test_portable_regex_subset():
    for pattern in (LIST, SINGLE, answer_regex("list", 50)):
        outside_classes = pattern.replace("[^", "[")
        for construct in ("\\d", "\\s", "\\w", "\\b", "(?", "^", "$", ".*", "+?", "*?"):
            assert construct not in outside_classes, construct
        re.compile(pattern)


def test_grammar_shape():
    for schema in ("list", "single"):
        grammar = answer_grammar(schema)
        rules = {line.split(" ::= ")[0] for line in grammar.strip().splitlines()}
        assert rules >= {"root", "think", "answer", "box", "point", "int", "ws"}
        assert "{" not in grammar.replace('"{"', "").replace('"}"', "")  # no {m,n} repetition
    assert '"\\"bbox_2d\\""' in answer_grammar("list") and '"\\"points_1\\""' in answer_grammar("single")


def test_schema_for_prompt_and_request_field():
    assert schema_for_prompt(build_prompt("the mug", "segzero")) == "single"
    assert schema_for_prompt(build_prompt("the mug", "visionreasoner")) == "list"
    assert schema_for_prompt(build_prompt("the mug", "grounding")) == "list"
    assert structured_outputs_field("regex", "list") == {"regex": LIST}
    assert structured_outputs_field("grammar", "single") == {"grammar": answer_grammar("single")}
    with pytest.raises(ValueError):
        structured_outputs_field("json", "list")  # type: ignore[arg-type]


def test_xgrammar_compiles_and_agrees():
    """vLLM's default structured-output engine, when installed (not a dependency)."""
    xgr = pytest.importorskip("xgrammar")
    accept = getattr(getattr(xgr, "testing", None), "_is_grammar_accept_string", None)
    if accept is None:
        pytest.skip("this xgrammar has no testing helper")
    good = '<think>The cup.</think>\n<answer>[{"bbox_2d": [168,126,588,672], "point_2d": [378,420]}]</answer>'
    bad = '<think>x</think><answer>[{"bbox_2d": [1.5,2,3,4], "point_2d": [2,3]}]</answer>'
    for grammar in (xgr.Grammar.from_regex(LIST), xgr.Grammar.from_ebnf(answer_grammar("list"))):
        assert accept(grammar, good) and not accept(grammar, bad)
    single = '<think>m</think><answer>{"bbox": [1,2,3,4], "points_1": [1,2], "points_2": [3,4]}</answer>'
    assert accept(xgr.Grammar.from_regex(SINGLE), single)
    assert accept(xgr.Grammar.from_ebnf(answer_grammar("single")), single)


def test_llguidance_accepts_both():
    """vLLM's other structured-output engine (guidance), when installed (not a dependency)."""
    llg = pytest.importorskip("llguidance")
    for schema in ("list", "single"):
        assert llg.LLMatcher.validate_grammar(llg.grammar_from("regex", answer_regex(schema))) == ""
        assert llg.LLMatcher.validate_grammar(llg.grammar_from("grammar", answer_grammar(schema))) == ""
