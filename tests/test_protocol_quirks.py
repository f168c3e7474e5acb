"""The non-reward rules of protocol section 8 ("Quirks found by running the reference code"), one test each.

Every numbered rule has a test here named ``test_s8_<group>_<n>_*``. Where an older test already
pinned the rule, it stays where it is and is listed below; the test here adds the cases it lacked.
A rule our code does not follow in its reference-compatible mode is an ``xfail(strict=True)`` test
whose reason says why.

Rule -> tests (besides the ``test_s8_*`` test of this file):

* Multi-object reward 1-8, single-object rewards 1-6: ``tests/training/test_rewards_protocol.py``
  (``test_s8_multi_N_*``, ``test_s8_single_N_*``), with the wider tables of
  ``tests/training/test_rewards.py`` (``test_segzero_table``, ``test_soft_keys``, ``test_vr_accuracy_table``,
  ``test_vr_cap_after_comprehension``, ``test_vr_format_table``, ``test_vr_format_float_summation_order``,
  ``test_vr_non_repeat_table``).
* Parsing 1 (rounding): ``tests/test_frame.py::test_half_up_rounding_matches_reference``,
  ``::test_segzero_rounding_truncates_then_bankers_rounds``,
  ``::test_reference_rounding_kept_for_finite_in_range_values``.
* Parsing 2 (no ``<answer>``): ``tests/test_parsing.py::test_truncated_think`` (status ``no_answer``),
  ``tests/eval/test_eval_metrics.py::test_failure_counts_intersection_zero_and_union_gt``.
* Parsing 3 (think extraction): ``tests/test_parsing.py::test_think_with_angle_bracket_kept`` (our parser is
  more robust, as section 8 allows), ``tests/test_model_text_total.py::test_linear_tag_helpers_equal_the_regexes``
  (the reference helpers equal the reference regexes).
* Prompts 1: ``tests/test_prompts.py::test_visionreasoner_prompt_exact``, ``::test_segzero_prompt_exact``.
* Prompts 2: ``tests/test_prompts.py::test_question_normalisation``, ``::test_strip_chars_override``.
* Prompts 3: ``tests/training/test_data.py`` (rows built from ``build_prompt``).
* gIoU/cIoU 1: ``tests/eval/test_eval_metrics.py::test_giou_ciou_skip_convention``, ``::test_sample_iou_conventions``.
* gIoU/cIoU 2: ``tests/eval/test_eval_metrics.py::test_failure_counts_intersection_zero_and_union_gt``.
* gIoU/cIoU 3: ``tests/eval/test_eval_metrics.py::test_summarize_overall_short_long_and_box_accuracy``
  (``invalid_gt`` records excluded).
* gIoU/cIoU 4: ``tests/eval/test_eval_metrics.py::test_all_skipped_gives_nan_giou_and_zero_ciou``.
* gIoU/cIoU 5: ``tests/eval/test_eval_metrics.py::test_summarize_overall_short_long_and_box_accuracy`` (cIoU).
* gIoU/cIoU 6: ``tests/eval/test_eval_metrics.py::test_box_iou_has_no_plus_one``.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segzero_tool.eval.metrics import IoUAccumulator, box_iou, sample_iou, summarize
from segzero_tool.frame import ReasoningFrame
from segzero_tool.parsing import (
    ParseStatus,
    parse_output,
    reference_answer_block,
    reference_first_brace_object,
    reference_sentence_fragments,
)
from segzero_tool.prompts import (
    EVAL_STRIP_CHARS,
    SEGZERO_TEMPLATE,
    TRAIN_STRIP_CHARS,
    VISIONREASONER_TEMPLATE,
    PromptFormat,
    build_prompt,
    normalize_question,
)

# --- parsing / back-projection -------------------------------------------------------------------


def test_s8_parsing_1_multi_rounding_half_up_truncates_negatives_no_clamp():
    f = ReasoningFrame((420, 420))  # factor 0.5
    # int(v * f + 0.5): half-up for positive values ...
    assert f.point_to_image((3, 5), clamp=False) == (2, 3)  # 1.5 -> 2, 2.5 -> 3
    # ... truncation toward zero for negative ones: -3 -> int(-1.0) = -1, -4 -> int(-1.5) = -1 (not -2)
    assert f.point_to_image((-3, -4), clamp=False) == (-1, -1)
    assert f.point_to_image((-5, -6), clamp=False) == (-2, -2)
    # no clamping in the reference: beyond the image stays beyond
    assert f.box_to_image((-3, -4, 900, 1000), clamp=False) == (-1, -1, 450, 500)
    # in-range coordinates back-project identically with or without clamping
    for v in (0, 1, 2, 419, 836, 837):  # 838 and 839 give 420, past the last column
        assert f.point_to_image((v, v)) == f.point_to_image((v, v), clamp=False) == (int(v * 0.5 + 0.5),) * 2


def test_s8_parsing_1_single_rounding_truncates_then_bankers():
    f = ReasoningFrame((420, 420), rounding="segzero")  # round(int(v) * f)
    assert f.point_to_image((5.9, 7.9), clamp=False) == (2, 4)  # int -> 5, 7; 2.5 -> 2, 3.5 -> 4
    assert f.point_to_image((1, 3), clamp=False) == (0, 2)  # 0.5 -> 0, 1.5 -> 2
    assert f.point_to_image((-5.9, -3), clamp=False) == (-2, -2)  # int(-5.9) = -5 -> -2.5 -> -2; -1.5 -> -2


@settings(max_examples=300, deadline=None)
@given(st.integers(-2000, 2000), st.integers(1, 4000))
def test_s8_parsing_1_rounding_property(v, w):
    half_up = ReasoningFrame((w, w)).point_to_image((v, v), clamp=False)
    assert half_up == (int(v * (w / 840) + 0.5),) * 2
    single = ReasoningFrame((w, w), rounding="segzero").point_to_image((v + 0.75, v), clamp=False)
    assert single == (round(int(v + 0.75) * (w / 840)), round(v * (w / 840)))


def test_s8_parsing_2_no_answer_is_a_failure_not_an_exception():
    from segzero_tool.eval.runner import FAILED_PARSE_STATUSES

    for text in ("<think>x</think>", "", "plain words", "<think>x</think><answer>"):
        p = parse_output(text)  # the reference raises UnboundLocalError; ours returns a status
        assert p.status in (ParseStatus.NO_ANSWER, ParseStatus.INVALID_JSON)
        assert p.status in FAILED_PARSE_STATUSES
    assert reference_answer_block("<think>x</think>") is None
    # ... and the evaluation scores a failure as the reference's penalty: I = 0, U = |GT|
    acc = IoUAccumulator("skip")
    assert acc.add(7, 9, failed=True) == 0.0 and (acc.sum_intersection, acc.sum_union) == (0, 9)


def test_s8_parsing_3_think_extraction():
    ref = re.compile(r"<think>([^<]+)</think>")
    # the reference regex loses a think text with "<" and an empty think ...
    assert ref.search("<think>a < b</think>") is None and ref.search("<think></think>") is None
    # ... our parser keeps them (section 8 allows a more robust inference parser)
    assert parse_output("<think>a < b</think><answer>[]</answer>").think == "a < b"
    assert parse_output("<think></think><answer>[]</answer>").think == ""
    # a missing think does not stop the answer from being read (the single-object script raises there)
    p = parse_output('<answer>{"bbox": [1,2,3,4], "points_1": [1,2], "points_2": [2,3]}</answer>')
    assert p.status is ParseStatus.OK and p.think == "" and not p.format_ok
    # the reference extraction helpers equal the reference expressions
    for text in ("<think>{a}</think><answer>{b}</answer>", "{}{x}", "{", "x{y}z{w}"):
        m = re.search(r"{[^}]+}", text)
        assert reference_first_brace_object(text) == (m.group(0) if m else None)
    for text in ("A. B.. C", "10.5", " . ", "<think>A. A.</think>"):
        assert reference_sentence_fragments(text) == [s.strip() for s in text.split(".") if s.strip()]


# --- prompts -----------------------------------------------------------------------------------------


def test_s8_prompts_1_sentences_joined_without_spaces():
    for fmt, joint in ((PromptFormat.SEGZERO, "points.Compare"), (PromptFormat.VISIONREASONER, "points.Compare")):
        p = build_prompt("cup", fmt)
        assert joint in p
        assert "one.Output" in p or "object(s).Output" in p
        assert "tags.Output" in p and "format.i.e., <think>" in p
        assert ". " not in p.split("<answer>")[0].replace("i.e., ", "")
    assert "one.Output the thinking" in SEGZERO_TEMPLATE
    assert "object(s).Output the thinking" in VISIONREASONER_TEMPLATE


def test_s8_prompts_2_question_normalisation():
    assert TRAIN_STRIP_CHARS == "." and EVAL_STRIP_CHARS == '."?!'
    # every variant lowercases; training / inference strip "." only, the VisionReasoner eval '."?!'
    assert normalize_question("The CUP?!") == "the cup?!"
    assert normalize_question("The CUP?!", EVAL_STRIP_CHARS) == "the cup"
    assert build_prompt("Cup?").startswith('Please find "cup?" with')
    assert build_prompt("Cup?", strip_chars=EVAL_STRIP_CHARS).startswith('Please find "cup" with')
    assert build_prompt("Cup.", PromptFormat.SEGZERO).startswith("Please find 'cup' with")
    # strip() does not remove whitespace, so the period inside survives
    assert normalize_question("  x. ") == "  x. "
    assert build_prompt("  x. ").startswith('Please find "  x. " with')
    # 'İ'.lower() is two code points
    assert normalize_question("İ") == "i\u0307" and len(normalize_question("İ")) == 2


def test_s8_prompts_3_quoting():
    assert build_prompt("cup", PromptFormat.SEGZERO).startswith("Please find 'cup' with bbox and points.")
    assert build_prompt("cup", PromptFormat.VISIONREASONER).startswith('Please find "cup" with bboxs and points.')
    # the quote characters are not escaped: a query quote stays as typed
    assert build_prompt('a "b"', PromptFormat.VISIONREASONER).startswith('Please find "a "b"" with')


def _grpo_row(kind: str) -> dict:
    pytest.importorskip("PIL")
    from PIL import Image

    from segzero_tool.training.data import to_grpo_row

    return to_grpo_row(Image.new("RGB", (8, 8)), "The cup.", "[]", kind, frame_size=8)


def test_s8_prompts_3_training_prompt_single_object_image_first():
    # reference "<image>" + prompt: the image part directly followed by the prompt text
    parts = _grpo_row("segzero")["prompt"][0]["content"]
    assert parts[0] == {"type": "image"}
    assert parts[1]["text"] == build_prompt("The cup.", PromptFormat.SEGZERO)


def test_s8_prompts_3_training_prompt_multi_object_newline_after_image():
    parts = _grpo_row("visionreasoner")["prompt"][0]["content"]
    assert parts[0] == {"type": "image"}
    assert parts[1]["text"] == "\n" + build_prompt("The cup.", PromptFormat.VISIONREASONER)


# --- gIoU / cIoU ----------------------------------------------------------------------------------


def test_s8_giou_1_empty_union_skipped_from_both():
    acc = IoUAccumulator("skip")
    assert acc.add(2, 4) == 0.5
    assert acc.add(0, 0) is None  # compute_iou returns int 0, the unpack raises, the sample is skipped
    assert (acc.counted, acc.skipped) == (1, 1)
    assert acc.giou == 0.5 and acc.ciou == 0.5  # in neither gIoU nor cIoU
    assert sample_iou(0, 0) is None


def test_s8_giou_2_parse_failure_is_counted_even_with_empty_gt():
    acc = IoUAccumulator("skip")
    assert acc.add(3, 5, failed=True) == 0.0  # I = 0, U = |GT|
    assert acc.add(0, 0, failed=True) == 0.0  # empty GT: union 0 -> IoU 0, counted
    assert acc.counted == 2 and acc.giou == 0.0 and (acc.sum_intersection, acc.sum_union) == (0, 5)


def test_s8_giou_3_invalid_ground_truth_is_skipped_without_penalty():
    # a shape mismatch (gt vs image) skips the sample: it is in no metric
    records = [
        {"id": "a", "status": "ok", "intersection": 1, "union": 2},
        {"id": "b", "status": "invalid_gt", "intersection": None, "union": None},
    ]
    o = summarize(records)["overall"]
    assert (o["samples"], o["counted"], o["invalid_gt"], o["giou"], o["ciou"]) == (2, 1, 1, 0.5, 0.5)


# gIoU/cIoU 3, segmenter and image errors: in reference mode (the default of ``run_evaluation``) the
# multi-object formats skip the sample and the run goes on, the ``segzero`` format penalises it. Pinned end
# to end in ``tests/eval/test_eval_runner.py::test_reference_mode_skips_segmenter_errors_and_goes_on`` and
# ``::test_reference_mode_penalises_segmenter_errors_in_the_segzero_format``; here through ``evaluate_batch``.
@pytest.mark.parametrize(("prompt_format", "status"), [("visionreasoner", "skipped"), ("segzero", "error")])
def test_s8_giou_3_segmentation_error_skips_or_penalises_the_sample(prompt_format, status):
    from scripted import BoxSegmenter, ScriptedReasoner

    from segzero_tool import SegZeroPipeline
    from segzero_tool.eval.datasets import EvalSample
    from segzero_tool.eval.runner import evaluate_batch

    text = {"visionreasoner": '<think>t</think><answer>[{"bbox_2d": [0, 0, 839, 839], "point_2d": [9, 9]}]</answer>',
            "segzero": '<think>t</think><answer>{"bbox": [0, 0, 839, 839], "points_1": [5, 5], '
                       '"points_2": [9, 9]}</answer>'}[prompt_format]

    class Failing(BoxSegmenter):
        def segment(self, *args, **kwargs):
            raise RuntimeError("segmentation failed")

    sample = EvalSample(id="s", query="cup", image=np.zeros((4, 4, 3), np.uint8), gt_mask=np.ones((4, 4), bool))
    pipe = SegZeroPipeline(ScriptedReasoner(text), Failing(), prompt_format=prompt_format)
    records = evaluate_batch(pipe, [(0, sample)], strip_chars=EVAL_STRIP_CHARS, compat="reference")
    assert records[0]["status"] == status
    counted = summarize(records)["overall"]["counted"]
    if status == "skipped":
        assert counted == 0  # in neither gIoU nor cIoU, no penalty
    else:
        assert counted == 1 and (records[0]["intersection"], records[0]["union"]) == (0, 16)
    # repair mode: the error stops the run (resumable), as before
    with pytest.raises(RuntimeError, match="segmentation failed"):
        evaluate_batch(pipe, [(0, sample)], strip_chars=EVAL_STRIP_CHARS, compat="repair")


def test_s8_giou_4_degenerate_aggregates():
    with pytest.warns(RuntimeWarning):
        assert math.isnan(float(np.mean([])))  # what the reference computes
    acc = IoUAccumulator("skip")
    acc.add(0, 0)
    assert math.isnan(acc.giou) and acc.ciou == 0
    # no records at all (the reference prints a message and returns None): no number is made up
    o = summarize([])["overall"]
    assert o["samples"] == 0 and math.isnan(o["giou"]) and o["ciou"] == 0.0


def test_s8_giou_5_ciou_is_cumulative_intersection_over_cumulative_union():
    acc = IoUAccumulator("skip")
    acc.add(1, 2)
    acc.add(9, 10)
    assert acc.ciou == pytest.approx(10 / 12)  # 77f9ea5's cIoU
    assert acc.giou == pytest.approx((0.5 + 0.9) / 2)


def test_s8_giou_6_bbox_iou_has_no_plus_one():
    assert box_iou([0, 0, 2, 2], [1, 1, 3, 3]) == pytest.approx(1 / 7)  # +1 would give 4 / 14
    assert box_iou([5, 5, 5, 5], [5, 5, 5, 5]) == 0.0  # zero area: no +1 and no division by zero
