"""The self-check loop: the verifier prompt (pinned, and as the README shows it), the verdict parser
(total), and the loop with scripted verifiers: keep, drop, none, retry then keep, retry exhausted,
garbage, exceptions."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scripted import ScriptedReasoner

from segzero_tool.inspect_view import render_inspection
from segzero_tool.parsing import ParseStatus
from segzero_tool.reasoners.base import Reasoner, ReasonerOutput
from segzero_tool.result import SegmentationResult, SegmentedObject
from segzero_tool.verify import (
    TEXT_RECORD_CHARS,
    VERIFIER_PROMPT,
    Verdict,
    build_verifier_prompt,
    parse_verdict,
    run_verification,
)

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")

EXPECTED_PROMPT = (
    'You are checking the result of an image segmentation. The request was:\n'
    '"{query}"\n'
    '\n'
    "The picture shows the image with {n_objects} candidate object(s), numbered 0 to {last_index}. Each "
    "object's mask is outlined and lightly filled in its own colour, and its number is written on a label of "
    "the same colour. An object without a mask shows its box instead.\n"
    "\n"
    "Decide which numbered objects answer the request. An object answers it when its mask covers the "
    "thing the request asks for. A mask on the wrong thing does not, nor one that covers only a small part "
    "of the right thing, nor one that spills far over other things.\n"
    "\n"
    "Think briefly inside <think> </think>, then give one answer inside <answer> </answer>, as JSON, in one "
    "of these forms:\n"
    '<answer>{"keep": [0, 2]}</answer> lists the numbers of the objects that answer the request (all of '
    "them if all do).\n"
    '<answer>{"keep": []}</answer> says that no object answers the request.\n'
    '<answer>{"retry": "hint"}</answer> says that no object answers the request but another attempt could '
    "find it; the hint says in a few words what the right object is and where it is in the image.\n"
)


# --- the prompt ------------------------------------------------------------------------------------


def test_the_prompt_is_pinned_byte_for_byte():
    assert VERIFIER_PROMPT == EXPECTED_PROMPT


def test_the_readme_shows_the_prompt_verbatim():
    marker = "The verifier's prompt (`segzero_tool.verify.VERIFIER_PROMPT`), verbatim:"
    assert marker in README
    block = re.search(r"```text\n(.*?)^```", README[README.index(marker):], re.DOTALL | re.MULTILINE)
    assert block is not None and block.group(1) == VERIFIER_PROMPT


def test_the_prompt_is_filled_in_one_pass():
    text = build_verifier_prompt('the cup {n_objects} "left" {query}', 3)
    assert '"the cup {n_objects} "left" {query}"' in text
    assert "with 3 candidate object(s), numbered 0 to 2." in text
    assert "{" + '"keep": [0, 2]}' in text and "{last_index}" not in text


# --- the verdict parser ----------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "n", "kind", "keep", "hint"), [
    ('<think>0 is the mug.</think><answer>{"keep": [0, 2]}</answer>', 3, "keep", (0, 2), None),
    ('<answer>{"keep": [2, 0, 2]}</answer>', 3, "keep", (0, 2), None),
    ('<answer>{"keep": []}</answer>', 3, "none", (), None),
    ('<answer>{"retry": "the red mug on the left"}</answer>', 3, "retry", (), "the red mug on the left"),
    ('<answer>{"retry": "   "}</answer>', 3, "none", (), None),
    ('<answer>{"keep": [], "retry": "the mug"}</answer>', 3, "retry", (), "the mug"),
    ('<answer>{"keep": [1], "retry": "the mug"}</answer>', 3, "keep", (1,), None),
    ('<answer>[1]</answer>', 3, "keep", (1,), None),
    ("<answer>{'keep': [1, '#2']}</answer>", 3, "keep", (1, 2), None),
    ('<answer>```json\n{"keep": [0]}\n```</answer>', 3, "keep", (0,), None),
    ('{"keep": [1]}', 3, "keep", (1,), None),
    ('<think>I would say <answer>{"keep": [0]}</answer> but</think><answer>{"keep": [1]}</answer>', 3, "keep", (1,), None),
    ('<answer>{"keep": [0, 2]}', 3, "keep", (0, 2), None),
    ('<answer>keep: [0, 1]</answer>', 3, "keep", (0, 1), None),
    ('<answer>{"keep": [0, 7]}</answer>', 3, "keep", (0,), None),
    ('<answer>{"keep": [7]}</answer>', 3, "unparsed", (), None),
    ('<answer>{"keep": [-1, true, 1.5]}</answer>', 3, "unparsed", (), None),
    ('<answer>{"keep": [2.0]}</answer>', 3, "keep", (2,), None),
    ('<answer>{"keep": "1"}</answer>', 3, "keep", (1,), None),
    ('<answer>{"keep": {"a": 1}}</answer>', 3, "unparsed", (), None),
    ('<answer>{"none": true}</answer>', 3, "none", (), None),
    ("I like turtles", 3, "unparsed", (), None),
    ("", 3, "unparsed", (), None),
    ("<answer></answer>", 3, "unparsed", (), None),
    ("<think>no closing", 3, "unparsed", (), None),
    ('<answer>{"keep": [0]}</answer>', 0, "unparsed", (), None),
])
def test_parse_verdict(text, n, kind, keep, hint):
    v = parse_verdict(text, n)
    assert (v.kind, v.keep, v.hint) == (kind, keep, hint)
    if kind == "unparsed":
        assert v.issues


def test_out_of_range_and_bad_entries_are_reported():
    v = parse_verdict('<answer>{"keep": [0, 7, "x"]}</answer>', 3)
    assert v.keep == (0,)
    assert any("7: out of range (the objects are #0 to #2)" in s for s in v.issues)
    assert any("'x'" in s for s in v.issues)


def test_a_long_hint_is_cut():
    v = parse_verdict('<answer>{"retry": "' + "left " * 400 + '"}</answer>', 2)
    assert v.kind == "retry" and len(v.hint) <= 500


def test_non_text_is_unparsed():
    assert parse_verdict(None, 3).kind == "unparsed"
    assert parse_verdict(b'{"keep": [0]}', 3).kind == "unparsed"


_PIECES = st.sampled_from([
    "<think>", "</think>", "<answer>", "</answer>", "{", "}", "[", "]", '"keep"', '"retry"', "keep", ":", ",",
    " ", "0", "1", "2", "-1", "99", "1e309", "NaN", "true", "null", '"hint"', "'", '"', "```", "#", "1.0", "\n",
    "9" * 30, "[" * 50, "{" * 50,
])


@settings(max_examples=400, deadline=None)
@given(text=st.one_of(st.text(max_size=300), st.lists(_PIECES, max_size=40).map("".join)),
       n=st.integers(min_value=-2, max_value=6))
def test_parse_verdict_is_total_and_in_range(text, n):
    v = parse_verdict(text, n)
    assert isinstance(v, Verdict)
    assert v.kind in ("keep", "none", "retry", "unparsed")
    assert all(0 <= i < max(0, n) for i in v.keep)
    assert list(v.keep) == sorted(set(v.keep))
    assert (v.kind == "keep") == bool(v.keep)
    assert (v.kind == "retry") == (v.hint is not None)


# --- the loop --------------------------------------------------------------------------------------


def _rect(h, w, x1, y1, x2, y2):
    m = np.zeros((h, w), bool)
    m[y1 : y2 + 1, x1 : x2 + 1] = True
    return m


def _result(n=3, query="the cups", w=320, h=240, tag="first"):
    objs = [SegmentedObject(box=(10 + 90 * k, 20, 80 + 90 * k, 100), points=(), score=0.9,
                            mask=_rect(h, w, 10 + 90 * k, 20, 80 + 90 * k, 100), label=f"{tag}{k}") for k in range(n)]
    return SegmentationResult(query, "visionreasoner", "thinking", "raw", ParseStatus.OK, (w, h), objs,
                              timings={"total": 5.0}, image=np.full((h, w, 3), 90, np.uint8), reasoner="scripted")


def _ans(payload: str) -> str:
    return f"<think>Looking at the numbers.</think><answer>{payload}</answer>"


class Reruns:
    def __init__(self, *results):
        self.results = list(results)
        self.hints: list[str] = []

    def __call__(self, hint: str) -> SegmentationResult:
        self.hints.append(hint)
        return self.results[len(self.hints) - 1]


def test_keep_drops_the_others_and_records_everything():
    result = _result()
    verifier = ScriptedReasoner([_ans('{"keep": [0, 2]}')])
    out = run_verification(result, verifier=verifier, query="the cups")
    assert [o.label for o in out.objects] == ["first0", "first2"]
    assert out.objects[1] is result.objects[2]
    assert len(result.objects) == 3 and result.verification is None  # the input is untouched
    v = out.verification
    assert v["status"] == "kept" and v["kept"] == [0, 2] and v["verifier"] == "scripted" and v["max_rounds"] == 2
    [r] = v["rounds"]
    assert r["round"] == 1 and r["verdict"] == "keep" and r["kept"] == [0, 2] and r["objects"] == 3
    assert r["text"] == _ans('{"keep": [0, 2]}') and r["hint"] is None
    assert set(r["timings_ms"]) == {"render", "verify"} and v["timings_ms"]["total"] >= 0
    assert out.timings["verify"] == v["timings_ms"]["total"] and out.timings["total"] == 5.0
    assert out.parse_issues[-1] == ("verification: the verifier kept #0, #2 of 3 object(s) and dropped #1; the kept "
                                    "objects are renumbered from #0")
    # what the verifier got: the inspection picture and our prompt
    [[request]] = verifier.calls
    assert request.prompt == build_verifier_prompt("the cups", 3)
    assert request.image.size == render_inspection(result, crops=True).image.size
    assert request.max_new_tokens == 1024


def test_keeping_all_adds_no_issue():
    out = run_verification(_result(), verifier=ScriptedReasoner([_ans('{"keep": [0, 1, 2]}')]))
    assert len(out.objects) == 3 and out.parse_issues == ()
    assert out.verification["status"] == "kept" and out.verification["note"] == "the verifier kept all 3 object(s)"


def test_the_query_defaults_to_the_results():
    verifier = ScriptedReasoner([_ans('{"keep": [0]}')])
    run_verification(_result(query="the mug"), verifier=verifier)
    assert '"the mug"' in verifier.calls[0][0].prompt


def test_none_empties_the_result_and_says_so():
    out = run_verification(_result(), verifier=ScriptedReasoner([_ans('{"keep": []}')]))
    assert out.objects == [] and not out.ok
    assert out.verification["status"] == "none" and out.verification["kept"] == []
    assert out.parse_issues[-1] == ("verification: the verifier judged that none of the 3 object(s) answers the "
                                    "query; they were dropped")
    assert out.union_mask.sum() == 0


def test_retry_then_keep():
    second = _result(n=2, tag="second")
    rerun = Reruns(second)
    verifier = ScriptedReasoner([_ans('{"retry": "the blue mug on the right"}'), _ans('{"keep": [1]}')])
    out = run_verification(_result(), verifier=verifier, query="the cups", rerun=rerun)
    assert rerun.hints == ["the blue mug on the right"]
    assert [o.label for o in out.objects] == ["second1"]
    v = out.verification
    assert v["status"] == "kept" and v["kept"] == [1]
    assert [r["verdict"] for r in v["rounds"]] == ["retry", "keep"]
    assert v["rounds"][0]["hint"] == "the blue mug on the right" and "rerun" in v["rounds"][0]["timings_ms"]
    assert [r["objects"] for r in v["rounds"]] == [3, 2]
    assert verifier.calls[1][0].prompt == build_verifier_prompt("the cups", 2)


def test_retry_exhausted_returns_the_last_result_with_a_note():
    second = _result(n=2, tag="second")
    rerun = Reruns(second, _result(n=1, tag="third"))
    verifier = ScriptedReasoner([_ans('{"retry": "left"}'), _ans('{"retry": "more left"}')])
    out = run_verification(_result(), verifier=verifier, rerun=rerun, max_rounds=2)
    assert rerun.hints == ["left"]  # one retry in two rounds
    assert [o.label for o in out.objects] == ["second0", "second1"]
    v = out.verification
    assert v["status"] == "exhausted" and v["kept"] is None
    assert [r["verdict"] for r in v["rounds"]] == ["retry", "retry"]
    assert "after the last of 2 round(s)" in v["note"] and "more left" in v["note"]
    assert out.parse_issues[-1].startswith("verification: the verifier asked for a retry after the last of 2 round(s)")


def test_retry_without_rerun_and_with_one_round():
    verifier = ScriptedReasoner([_ans('{"retry": "left"}')])
    out = run_verification(_result(), verifier=verifier, rerun=None)
    assert len(out.objects) == 3 and out.verification["status"] == "exhausted"
    assert "not available" in out.verification["note"]
    rerun = Reruns(_result(n=1))
    out = run_verification(_result(), verifier=ScriptedReasoner([_ans('{"retry": "left"}')]), rerun=rerun, max_rounds=1)
    assert rerun.hints == [] and out.verification["status"] == "exhausted" and len(out.verification["rounds"]) == 1


def test_a_retry_that_finds_nothing_is_returned_as_is():
    rerun = Reruns(_result(n=0))
    verifier = ScriptedReasoner([_ans('{"retry": "left"}'), _ans('{"keep": [0]}')])
    out = run_verification(_result(), verifier=verifier, rerun=rerun)
    assert out.objects == [] and len(verifier.calls) == 1
    assert out.verification["status"] == "no_objects"
    assert [r["verdict"] for r in out.verification["rounds"]] == ["retry", "skipped"]
    assert out.parse_issues[-1] == "verification: the retry found no object"


def test_garbage_keeps_everything_and_records_the_problem():
    out = run_verification(_result(), verifier=ScriptedReasoner(["I like turtles"]))
    assert len(out.objects) == 3
    v = out.verification
    assert v["status"] == "unparsed" and v["kept"] == [0, 1, 2]
    assert v["rounds"][0]["verdict"] == "unparsed" and v["rounds"][0]["issues"]
    assert "could not be read" in out.parse_issues[-1]


def test_an_out_of_range_answer_is_dropped_with_an_issue():
    out = run_verification(_result(), verifier=ScriptedReasoner([_ans('{"keep": [1, 5]}')]))
    assert [o.label for o in out.objects] == ["first1"]
    assert any("5: out of range" in s for s in out.verification["rounds"][0]["issues"])


class Broken(Reasoner):
    name = "broken"

    def __init__(self, exc=None, output=None):
        self.exc, self.output, self.calls = exc, output, 0

    def generate(self, requests):
        self.calls += 1
        if self.exc is not None:
            raise self.exc
        return self.output


@pytest.mark.parametrize(("verifier", "error"), [
    (Broken(RuntimeError("CUDA out of memory")), "RuntimeError: CUDA out of memory"),
    (Broken(output=[]), "IndexError"),
    (Broken(output=[ReasonerOutput(text=None)]), "TypeError"),
])
def test_a_failing_verifier_never_raises_and_the_result_is_unverified(verifier, error):
    result = _result()
    out = run_verification(result, verifier=verifier)
    assert [o.label for o in out.objects] == ["first0", "first1", "first2"]
    v = out.verification
    assert v["status"] == "error" and v["rounds"][0]["error"].startswith(error)
    assert out.parse_issues[-1].startswith("verification failed (") and "unverified" in out.parse_issues[-1]
    json.dumps(out.to_dict())


def test_a_failing_render_or_rerun_never_raises():
    def bad_render(*a, **k):
        raise MemoryError("too big")

    out = run_verification(_result(), verifier=ScriptedReasoner([_ans('{"keep": [0]}')]), render=bad_render)
    assert len(out.objects) == 3 and out.verification["status"] == "error"

    def bad_rerun(hint):
        raise RuntimeError("reasoner gone")

    out = run_verification(_result(), verifier=ScriptedReasoner([_ans('{"retry": "x"}')]), rerun=bad_rerun)
    assert len(out.objects) == 3 and out.verification["status"] == "error"
    assert out.verification["rounds"][0]["error"].startswith("rerun failed: RuntimeError: reasoner gone")


def test_an_empty_result_is_not_sent_to_the_verifier():
    verifier = ScriptedReasoner([_ans('{"keep": [0]}')])
    out = run_verification(_result(n=0), verifier=verifier)
    assert verifier.calls == [] and out.objects == [] and out.parse_issues == ()
    assert out.verification["status"] == "no_objects"


def test_the_recorded_text_is_bounded():
    long = "<think>" + "hmm " * 5000 + '</think><answer>{"keep": [0]}</answer>'
    out = run_verification(_result(), verifier=ScriptedReasoner([long]))
    text = out.verification["rounds"][0]["text"]
    assert len(text) == TEXT_RECORD_CHARS and text.endswith("…")
    assert out.verification["status"] == "kept"


# --- serialisation ---------------------------------------------------------------------------------


def test_verification_is_serialised_only_when_set_and_round_trips():
    result = _result()
    assert "verification" not in result.to_dict() and '"verification"' not in result.to_json()
    out = run_verification(result, verifier=ScriptedReasoner([_ans('{"keep": [1]}')]))
    d = json.loads(out.to_json())
    assert d["verification"]["status"] == "kept" and d["verification"]["kept"] == [1]
    back = SegmentationResult.from_dict(d)
    assert back.verification == out.verification
    assert list(d)[-1] == "verification"
