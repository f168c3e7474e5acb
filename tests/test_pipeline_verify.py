"""The pipeline's self-check loop (``segment(..., verify=True)``) with scripted reasoners and verifiers:
keep / drop / none / retry (the retry's query wording pinned, the same image and cached embedding reused,
the user's query kept), timings, no objects, the pipeline's reasoner as default verifier, async, batches."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from scripted import BoxSegmenter, ScriptedReasoner

from segzero_tool import SegZeroPipeline
from segzero_tool.pipeline import MAX_VERIFY_ROUNDS, RETRY_QUERY, check_verify_rounds, retry_query
from segzero_tool.prompts import build_prompt

TWO = ('<think>t</think><answer>[{"bbox_2d": [84,84,420,420], "point_2d": [210,210]}, '
       '{"bbox_2d": [500,500,700,700], "point_2d": [600,600]}]</answer>')
ONE = '<think>t</think><answer>[{"bbox_2d": [100,100,300,300], "point_2d": [200,200]}]</answer>'
NONE = '<think>t</think><answer>[]</answer>'
KEEP_1 = '<think>ok</think><answer>{"keep": [1]}</answer>'
KEEP_ALL = '<think>ok</think><answer>{"keep": [0, 1]}</answer>'
DROP_ALL = '<think>no</think><answer>{"keep": []}</answer>'
RETRY = '<think>no</think><answer>{"retry": "the glass on the left"}</answer>'


def _image(w=840, h=840):
    return np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)


def _pipe(answers, verifier=None, segmenter=None):
    return SegZeroPipeline(ScriptedReasoner(answers), segmenter or BoxSegmenter(), verifier=verifier)


def test_retry_wording_is_pinned():
    assert RETRY_QUERY == "{query} (hint: {hint})"
    assert retry_query("what can I drink?", "the glass on the left") == "what can I drink? (hint: the glass on the left)"
    assert retry_query("q", "  a \n b ") == "q (hint: a b)"
    assert retry_query("q", "   ") == "q"
    long = retry_query("q" * 10, "h" * 100, max_chars=40)
    assert len(long) <= 40 and long.startswith("qqqqqqqqqq (hint: h") and long.endswith("…)")


def test_verify_off_by_default_and_keep_drops_others():
    verifier = ScriptedReasoner(KEEP_1)
    pipe = _pipe(TWO, verifier)
    plain = pipe.segment(_image(), "what can I drink?")
    assert plain.verification is None and not verifier.calls and len(plain.objects) == 2
    res = pipe.segment(_image(), "what can I drink?", verify=True)
    assert len(res.objects) == 1 and res.objects[0].box == (500, 500, 700, 700)
    assert res.verification["status"] == "kept" and res.verification["kept"] == [1]
    assert res.query == "what can I drink?"
    assert len(verifier.calls) == 1
    assert '"what can I drink?"' in verifier.calls[0][0].prompt
    assert any(s.startswith("verification") for s in res.parse_issues)


def test_verify_time_is_added_into_total():
    pipe = _pipe(TWO, ScriptedReasoner(KEEP_ALL))
    res = pipe.segment(_image(), "q", verify=True)
    assert res.timings["verify"] > 0
    assert res.timings["total"] > res.timings["verify"]  # the segmentation's total plus the loop's
    assert len(res.objects) == 2 and res.verification["status"] == "kept"


def test_verify_none_empties_the_result():
    res = _pipe(TWO, ScriptedReasoner(DROP_ALL)).segment(_image(), "q", verify=True)
    assert res.objects == [] and res.verification["status"] == "none"


def test_default_verifier_is_the_reasoner():
    reasoner = ScriptedReasoner([TWO, KEEP_1])  # answers the query, then the check
    pipe = SegZeroPipeline(reasoner, BoxSegmenter())
    assert pipe.verifier is None
    res = pipe.segment(_image(), "q", verify=True)
    assert len(reasoner.calls) == 2 and len(res.objects) == 1
    assert reasoner.calls[1][0].prompt.startswith("You are checking the result of an image segmentation.")


def test_retry_reruns_the_same_image_with_the_hint_and_keeps_the_query():
    reasoner = ScriptedReasoner([TWO, ONE])
    verifier = ScriptedReasoner([RETRY, '<answer>{"keep": [0]}</answer>'])
    seg = BoxSegmenter()
    img = _image()
    pipe = SegZeroPipeline(reasoner, seg, verifier=verifier)
    res = pipe.segment(img, "what can I drink?", verify=True)
    assert len(reasoner.calls) == 2
    assert reasoner.calls[1][0].prompt == build_prompt("what can I drink? (hint: the glass on the left)")
    assert res.query == "what can I drink?"
    assert [o.box for o in res.objects] == [(100, 100, 300, 300)]
    assert res.verification["status"] == "kept" and len(res.verification["rounds"]) == 2
    assert res.verification["rounds"][0]["hint"] == "the glass on the left"
    # the retry segments the very same loaded image (the segmenter's cache key is the same)
    assert len(seg.calls) == 2 and seg.calls[0][0] == seg.calls[1][0]
    assert res.image is not None and np.array_equal(res.image, img)
    assert res.timings["total"] >= res.timings["verify"]


def test_retry_reuses_the_cached_embedding_of_a_caching_segmenter():
    from segzero_tool.segmenters.base import image_key

    keys = []

    class KeySegmenter(BoxSegmenter):
        def segment(self, image, prompts):
            keys.append(image_key(image))
            return super().segment(image, prompts)

    pipe = SegZeroPipeline(ScriptedReasoner([TWO, ONE]), KeySegmenter(),
                           verifier=ScriptedReasoner([RETRY, KEEP_ALL]))
    pipe.segment(_image(), "q", verify=True)
    assert len(keys) == 2 and keys[0] == keys[1]


def test_retry_in_the_last_round_is_exhausted():
    pipe = _pipe([TWO, ONE], ScriptedReasoner(RETRY))
    res = pipe.segment(_image(), "q", verify=True, verify_rounds=1)
    assert res.verification["status"] == "exhausted" and len(pipe.reasoner.calls) == 1
    assert len(res.objects) == 2


def test_no_objects_skips_the_verifier():
    verifier = ScriptedReasoner(KEEP_1)
    res = _pipe(NONE, verifier).segment(_image(), "q", verify=True)
    assert res.objects == [] and res.verification is None and not verifier.calls


def test_verifier_exception_returns_unverified():
    class Broken(ScriptedReasoner):
        def generate(self, requests):
            raise RuntimeError("down")

    res = _pipe(TWO, Broken("x")).segment(_image(), "q", verify=True)
    assert len(res.objects) == 2 and res.verification["status"] == "error"


@pytest.mark.parametrize("rounds", [0, -1, MAX_VERIFY_ROUNDS + 1, 1.5, True, "2"])
def test_bad_rounds_are_refused_before_anything_runs(rounds):
    pipe = _pipe(TWO, ScriptedReasoner(KEEP_1))
    with pytest.raises(ValueError, match="verify_rounds must be an integer from 1 to"):
        pipe.segment(_image(), "q", verify=True, verify_rounds=rounds)
    assert not pipe.reasoner.calls
    with pytest.raises(ValueError):
        check_verify_rounds(rounds)


def test_segment_many_verifies_each_result():
    verifier = ScriptedReasoner([KEEP_1, DROP_ALL])
    pipe = _pipe(TWO, verifier)
    a, b = pipe.segment_many([(_image(), "a"), (_image(), "b")], verify=True, progress=False)
    assert len(a.objects) == 1 and b.objects == []
    assert (a.query, b.query) == ("a", "b")


def test_asegment_verifies():
    verifier = ScriptedReasoner([RETRY, KEEP_ALL])
    pipe = _pipe([TWO, ONE], verifier)
    res = asyncio.run(pipe.asegment(_image(), "q", verify=True, verify_rounds=2))
    assert res.query == "q" and len(res.objects) == 1 and res.verification["status"] == "kept"
    assert pipe.reasoner.calls[1][0].prompt == build_prompt("q (hint: the glass on the left)")


def test_from_pretrained_takes_a_verifier_instance(tmp_path):
    v = ScriptedReasoner(KEEP_1)
    pipe = SegZeroPipeline.from_pretrained(ScriptedReasoner(TWO), BoxSegmenter(), verifier=v)
    assert pipe.verifier is v
    with pytest.raises(TypeError, match="verifier must be a Reasoner instance"):
        SegZeroPipeline.from_pretrained(ScriptedReasoner(TWO), BoxSegmenter(), verifier=42)


def test_settings_verify_fields_are_validated():
    from segzero_tool.settings import PipelineSettings, SettingsError

    s = PipelineSettings.resolve(environ={"SEGZERO_VERIFY": "yes", "SEGZERO_VERIFY_ROUNDS": "3"})
    assert s.verify is True and s.verify_rounds == 3
    assert PipelineSettings().verify is False and PipelineSettings().verify_rounds == 2
    with pytest.raises(SettingsError, match="--verify-rounds must be from 1 to 5, got 0"):
        PipelineSettings.resolve(environ={}, overrides={"verify_rounds": 0})
    with pytest.raises(SettingsError, match="SEGZERO_VERIFY_ROUNDS must be from 1 to 5, got 6"):
        PipelineSettings.resolve(environ={"SEGZERO_VERIFY_ROUNDS": "6"})
    with pytest.raises(SettingsError, match="must be true or false"):
        PipelineSettings.resolve(environ={"SEGZERO_VERIFY": "maybe"})
