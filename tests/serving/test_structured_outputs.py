"""The structured-output regex and grammar: what they accept parses, what they refuse is what should
not be generated, and they stay inside the regex subset vLLM's engines read."""

from __future__ import annotations

import functools
import importlib
import json
import os
import re
from collections.abc import Callable
from typing import Any

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


#: Completions the list regex accepts (each parses).
ACCEPTED = [
    "<think> thinking process here </think><answer>" + VISIONREASONER_ANSWER_EXAMPLE + "</answer>",
    '<think>The cup.</think>\n<answer>[{"bbox_2d": [168,126,588,672], "point_2d": [378,420]}]</answer>',
    '<think>x</think><answer>[{"bbox_2d":[0,0,839,839],"point_2d":[420,420]}]</answer>',
    '<think>\nmulti\nline\n</think> <answer> [\n  {"bbox_2d": [1, 2, 3, 4], "point_2d": [2, 3]},\n'
    '  {"bbox_2d": [5, 6, 7, 8], "point_2d": [6, 7]}\n] </answer>',
]


@pytest.mark.parametrize("text", ACCEPTED)
def test_list_regex_accepts_answers_that_parse(text):
    assert re.fullmatch(LIST, text)
    parsed = parse_output(text)
    assert parsed.status is ParseStatus.OK and parsed.format_ok and FORMAT_RE.fullmatch(text)
    assert len(parsed.objects) == len(json.loads(parsed.answer_text))
    assert all(o.box is not None and len(o.points) == 1 for o in parsed.objects)


def test_empty_list_is_allowed_and_parses_as_no_objects():
    text = "<think>nothing matches</think><answer>[]</answer>"
    assert re.fullmatch(LIST, text) and parse_output(text).status is ParseStatus.NO_OBJECTS


#: Completions the list regex refuses (what constrained decoding must not produce).
REFUSED = [
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
]


@pytest.mark.parametrize("text", REFUSED)
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


# --- vLLM's structured-output engines --------------------------------------------------------------
# xgrammar (vLLM's default backend) and llguidance (its "guidance" backend) are in the dev extra, so CI
# runs these tests; elsewhere a test skips when its engine is not installed, but in CI (CI set) it fails.


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _unavailable(why: str) -> None:
    if _in_ci():
        pytest.fail(f"{why}; CI installs the dev extra (pip install -e '.[dev]'), which brings both engines")
    pytest.skip(why)


def _engine(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        _unavailable(f"{module} is not installed ({exc})")


class _ByteTokenizer:
    """One token per byte (plus EOS): llguidance then matches a text exactly, with no real tokenizer."""

    eos_token_id = 256
    bos_token_id = None
    tokens = [bytes([i]) for i in range(256)] + [b"<eos>"]

    def __call__(self, text: bytes | str) -> list[int]:
        return list(text if isinstance(text, bytes) else text.encode())


@functools.cache
def _matcher(engine: str) -> Callable[[str, str, str], bool]:
    """``accepts(kind, source, text)``: whether ``engine`` lets ``kind`` (regex / grammar) ``source``
    generate exactly ``text``."""
    if engine == "xgrammar":
        xgr = _engine("xgrammar")
        accept = getattr(getattr(xgr, "testing", None), "_is_grammar_accept_string", None)
        if accept is None:
            _unavailable("this xgrammar has no testing._is_grammar_accept_string")

        def accepts(kind: str, source: str, text: str) -> bool:
            grammar = xgr.Grammar.from_regex(source) if kind == "regex" else xgr.Grammar.from_ebnf(source)
            return bool(accept(grammar, text))

        return accepts
    llg = _engine("llguidance")
    tokenizer = llg.LLTokenizer(llg.TokenizerWrapper(_ByteTokenizer()))

    def accepts(kind: str, source: str, text: str) -> bool:
        matcher = llg.LLMatcher(tokenizer, llg.grammar_from(kind, source), log_level=0)
        matcher.consume_tokens(list(text.encode()))
        return not matcher.is_error() and matcher.is_accepting()

    return accepts


ENGINES = ["xgrammar", "llguidance"]
SINGLE_TEXT = ('<think>the mug</think><answer>{"bbox": [10,100,200,210], "points_1": [30,110], '
               '"points_2": [35,180]}</answer>')
_ONE = '{"bbox_2d": [1,2,3,4], "point_2d": [2,3]}'
#: (schema, max_objects, completion): every engine must judge these as Python's ``re.fullmatch`` does.
CASES = [
    *(("list", None, text) for text in [*ACCEPTED, *REFUSED, "<think></think><answer>[]</answer>",
                                        f"<think>x</think><answer>[{', '.join([_ONE] * 60)}]</answer>",
                                        "<think>x</think>\t\n <answer>\n[ ]\t</answer>",
                                        "<think>ünïcödé ✓ 杯子\n{}[]</think><answer>[]</answer>"]),
    ("single", None, SINGLE_TEXT),
    ("single", None, SINGLE_TEXT.replace(', "points_2": [35,180]', "")),
    ("single", None, ACCEPTED[1]),
    ("list", 2, f"<think>x</think><answer>[{_ONE}, {_ONE}]</answer>"),
    ("list", 2, f"<think>x</think><answer>[{_ONE}, {_ONE}, {_ONE}]</answer>"),
]


def _check_agreement(engine: str, schema: str, max_objects: int | None, text: str) -> None:
    accepts = _matcher(engine)
    regex = answer_regex(schema, max_objects)  # type: ignore[arg-type]
    expected = re.fullmatch(regex, text) is not None
    assert accepts("regex", regex, text) is expected, (engine, "regex", text)
    if max_objects is None:  # the grammar is the unbounded language
        assert accepts("grammar", answer_grammar(schema), text) is expected, (engine, "grammar", text)  # type: ignore[arg-type]


@pytest.mark.parametrize("engine", ENGINES)
def test_engine_reads_the_regex_and_the_grammar(engine):
    """Both forms compile in the engine (llguidance also validates them without warnings)."""
    _matcher(engine)
    sources = [("regex", answer_regex(s)) for s in ("list", "single")] + [("regex", answer_regex("list", 50))]
    sources += [("grammar", answer_grammar(s)) for s in ("list", "single")]
    if engine == "llguidance":
        llg = _engine("llguidance")
        for kind, source in sources:
            assert llg.LLMatcher.validate_grammar(llg.grammar_from(kind, source)) == "", (kind, source)
    else:
        xgr = _engine("xgrammar")
        for kind, source in sources:
            xgr.Grammar.from_regex(source) if kind == "regex" else xgr.Grammar.from_ebnf(source)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("schema", "max_objects", "text"), CASES)
def test_engine_agrees_with_python_re(engine, schema, max_objects, text):
    _check_agreement(engine, schema, max_objects, text)


@st.composite
def near_misses(draw):
    """A matching answer with one character inserted, deleted or replaced (mostly no longer matching)."""
    text, _ = draw(answers())
    i = draw(st.integers(min_value=0, max_value=len(text) - 1))
    ch = draw(st.sampled_from(list('<>[]{}",:0123456789-. \t\nx')))
    op = draw(st.sampled_from(["insert", "delete", "replace"]))
    if op == "insert":
        return text[:i] + ch + text[i:]
    return text[:i] + ("" if op == "delete" else ch) + text[i + 1:]


@pytest.mark.parametrize("engine", ENGINES)
@settings(max_examples=60, deadline=None)
@given(text=st.one_of(answers().map(lambda sample: sample[0]), near_misses()))
def test_engine_agrees_on_generated_completions(engine, text):
    _check_agreement(engine, "list", None, text)
