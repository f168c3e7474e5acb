"""One test per reward rule of protocol section 8 ("Quirks found by running the reference code").

Rules already pinned by the hand-computed tables of ``test_rewards.py`` are pinned again here in
their smallest form, so that every rule has a test named after it (``test_s8_multi_N_*`` for the
multi-object reward rules 1-8, ``test_s8_single_N_*`` for the single-object rules 1-6). The tables
stay the wider net. The last part pins what ``mode="fixed"`` changes: it reads answers with the
library's parser, :func:`segzero_tool.parsing.parse_output`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segzero_tool.training import reward_segzero, reward_visionreasoner
from segzero_tool.training import rewards as R


def wrap(answer: str, think: str = "x") -> str:
    return f"<think>{think}</think><answer>{answer}</answer>"


def obj(box, point):
    return {"bbox_2d": box, "point_2d": point}


def vr(objs) -> str:
    return wrap(json.dumps(objs))


def acc(text: str, solution: str, **kw) -> float:
    return R.vr_accuracy_reward([text], solution=[solution], **kw)[0]


def fmt(text: str, **kw) -> float:
    return R.vr_format_reward([text], **kw)[0]


def seg(text: str, solution: str, **kw) -> list[float]:
    """[iou, l1, point] of the strict (``seg_restrict.py``) terms."""
    return [f([text], solution=[solution], **kw)[0]
            for f in (R.segzero_iou_reward, R.segzero_l1_reward, R.segzero_point_reward)]


def seg_soft(text: str, solution: str, **kw) -> list[float]:
    return [f([text], solution=[solution], **kw)[0]
            for f in (R.segzero_iou_soft_reward, R.segzero_l1_soft_reward, R.segzero_point_soft_reward)]


G1 = json.dumps([obj([0, 0, 9, 9], [5, 5])])
G100 = json.dumps([obj([0, 0, 99, 99], [50, 50])])
GT = "<box>(10,10),(100,100)</box><points>(30,30),(60,60)</points>"
PERFECT = '{"bbox": [10,10,100,100], "points_1": [30,30], "points_2": [60,60]}'


# --- multi-object reward (vision_reasoner.py) ------------------------------------------------------


def test_s8_multi_1_plus_one_boxes_and_strict_thresholds():
    # +1 areas: [0,0,9,9] vs [0,0,9,19] is 100 / 200 = 0.5 exactly -> the IoU term is 0
    assert acc(vr([obj([0, 0, 9, 19], [5, 5])]), G1) == 2.0
    assert acc(vr([obj([0, 0, 9, 18], [5, 5])]), G1) == 3.0  # 100 / 190
    # mean L1 exactly 10 -> 0
    assert acc(vr([obj([0, 0, 99, 139], [50, 50])]), G100) == 2.0
    # point distance exactly 30 (a 18-24-30 triangle) -> 0
    assert acc(vr([obj([0, 0, 99, 99], [68, 74])]), G100) == 2.0
    # intersection max(0, xB - xA + 1): touching in one column still overlaps (1 x 10 pixels)
    iou = reward_visionreasoner._batch_iou(np.array([[0, 0, 9, 9]]), np.array([[9, 0, 18, 9]]))
    assert iou[0, 0] == pytest.approx(10 / 190)


def test_s8_multi_2_point_checked_against_its_own_predicted_box():
    # the point equals the gt point but lies outside its own predicted box -> no point term
    assert acc(vr([obj([0, 0, 9, 9], [50, 50])]), json.dumps([obj([0, 0, 9, 9], [50, 50])])) == 2.0
    # inclusive edge
    assert acc(vr([obj([0, 0, 9, 9], [9, 9])]), json.dumps([obj([0, 0, 9, 9], [9, 9])])) == 3.0
    # a row mask: prediction 0's point lies in gt 1's box but outside prediction 0's own box
    g2 = json.dumps([obj([0, 0, 9, 9], [5, 5]), obj([100, 100, 109, 109], [105, 105])])
    preds = [obj([0, 0, 9, 9], [105, 105]), obj([100, 100, 109, 109], [105, 105])]
    assert acc(vr(preds), g2) == pytest.approx((2 + 3) / 2)
    # linear_sum_assignment maximises the summed scores: the listed order does not matter
    assert acc(vr(preds[::-1]), g2) == pytest.approx((2 + 3) / 2)


def test_s8_multi_3_normalised_by_max_m_n_and_capped_after_reading():
    g2 = json.dumps([obj([0, 0, 9, 9], [5, 5]), obj([100, 100, 109, 109], [105, 105])])
    assert acc(vr([obj([0, 0, 9, 9], [5, 5])]), g2) == 1.5  # a missing object
    assert acc(vr([obj([0, 0, 9, 9], [5, 5])] * 2), G1) == 1.5  # an extra object
    good = obj([0, 0, 9, 9], [5, 5])
    preds = [good] * 130
    assert acc(vr(preds), G1) == pytest.approx(3 / 120)  # capped to 120 after reading
    preds[125] = {"bbox_2d": [0, 0, 9, 9]}  # a KeyError in object 126, beyond the cap
    assert acc(vr(preds), G1) == 0.0
    # the format reward counts every object (data_cnt = 130)
    assert fmt(vr(preds)) == pytest.approx(1 + (129 * 2 + 1) / 130, abs=1e-9)


def test_s8_multi_4_empty_prediction_scores_zero_even_against_empty_gt():
    assert acc(wrap("[]"), "[]") == 0.0
    assert acc(wrap("{}"), "[]") == 0.0
    assert acc(wrap("[]"), G1) == 0.0
    assert acc(vr([obj([0, 0, 9, 9], [5, 5])]), "[]") == 0.0  # an empty gt raises as well


def test_s8_multi_5_partial_format_sums():
    o = '{"bbox_2d": [1,2,3,4], "point_2d": [1,2]}'
    assert fmt(wrap(f"[{o}, {o}, 5]")) == pytest.approx(1 + 4 / 3, abs=1e-9)  # 1.333 + thinking
    assert fmt(wrap(f'["xx", {o}]')) == 2.0  # a string item without the substring adds 0
    assert fmt(wrap(f'["has bbox_2d", {o}]')) == 1.0  # the substring test passes, indexing raises
    assert fmt(wrap(o)) == 1.0  # a dict answer iterates its keys: "bbox_2d" in "bbox_2d", then str index
    # float summation in the reference's order: n additions of 2/n
    for n, expected in ((6, 1.9999999999999998), (9, 2.0000000000000004)):
        assert fmt(wrap("[" + ", ".join([o] * n) + "]")) - 1.0 == pytest.approx(expected, abs=1e-9)
        total = 0.0
        for _ in range(n):
            total += 2 / n
        assert fmt(wrap("[" + ", ".join([o] * n) + "]")) == 1.0 + total


def test_s8_multi_6_format_thinking_fullmatch_and_first_answer_block():
    good = vr([obj([0, 0, 9, 9], [5, 5])])
    assert R.thinking_format_reward([good]) == [1.0]
    for bad in (" " + good, "\n" + good, good + "\n", good + " ", "x" + good):
        assert R.thinking_format_reward([bad]) == [0.0], repr(bad)
    two = good + "<answer>[]</answer>"
    assert R.thinking_format_reward([two]) == [1.0]
    # the accuracy reads the first <answer> block
    assert acc(wrap("[]") + f"<answer>{G1}</answer>", G1) == 0.0
    assert acc(two, G1) == 3.0


def test_s8_multi_7_non_repeat_splits_the_whole_completion_on_dots():
    nr = R.vr_non_repeat_reward
    assert nr([wrap("[]", think="A. A. A.")]) == [1.0]  # "<think>A" is the first fragment: one repeat
    assert nr([wrap("[]", think="A. A. A. A.")]) == [0.0]
    assert nr([wrap('[{"bbox_2d": [10,10,10,10]}]')]) == [1.0]
    assert nr([wrap('[{"bbox_2d": [10.5,10.5,10.5,10.5]}]')]) == [0.0]  # "5,10" repeats
    assert nr(["B. A. A. A"]) == [0.0]  # tags are not needed: it is a plain split


def test_s8_multi_8_lenient_json():
    assert acc(wrap('[{"bbox_2d": [NaN, 0, 9, 9], "point_2d": [5, 5]}]'), G1) == 0.0  # no error, no match
    assert acc(wrap('[{"bbox_2d": [0, 0, 9, 9], "point_2d": [NaN, 5]}]'), G1) == 2.0
    assert acc(wrap('[{"bbox_2d": [0, 0, 9, Infinity], "point_2d": [5, 5]}]'), G1) == 1.0  # the point still counts
    assert acc(wrap('[{"bbox\\u005f2d": [0, 0, 9, 9], "point_2d": [5, 5]}]'), G1) == 3.0  # escaped key
    assert acc(wrap('[{"bbox_2d": [50,50,60,60], "bbox_2d": [0,0,9,9], "point_2d": [5,5]}]'), G1) == 3.0  # last wins
    assert acc(wrap('[{"bbox_2d": [false, 0, 9, 9], "point_2d": [5, true]}]'), G1) == 3.0  # booleans are 0/1
    # a box number beyond int64 makes an object array, which still scores
    huge = wrap('[{"bbox_2d": [0,0,9,9], "point_2d": [5,5]}, {"bbox_2d": [0,0,9,99999999999999999999999], '
                '"point_2d": [5,5]}]')
    assert acc(huge, G1) == 1.5
    assert fmt(wrap('[{"bbox_2d": [NaN, Infinity, -Infinity, 1], "point_2d": [1, 2]}]')) == 3.0


# --- single-object rewards (seg_restrict.py / seg.py) ------------------------------------------------


def test_s8_single_1_strict_intersection_test():
    one_px = '{"bbox": [5,5,5,5], "points_1": [5,5], "points_2": [5,5]}'
    assert seg(wrap(one_px), "<box>(5,5),(5,5)</box><points>(5,5),(5,5)</points>")[0] == 0.0
    # adjacent boxes sharing one column: ix1 == ix2 -> no intersection
    shared = '{"bbox": [0,0,10,10], "points_1": [5,5], "points_2": [5,5]}'
    assert seg(wrap(shared), "<box>(10,0),(20,10)</box><points>(5,5),(5,5)</points>")[0] == 0.0
    # zero-width box (x2 = x1 - 1 gives a +1 area of 0): zero union -> ZeroDivisionError -> 0, no error
    zero = '{"bbox": [5,5,4,4], "points_1": [5,5], "points_2": [5,5]}'
    assert seg(wrap(zero), "<box>(5,5),(4,4)</box><points>(5,5),(5,5)</points>")[0] == 0.0
    assert seg(wrap(zero), "<box>(5,5),(4,4)</box><points>(5,5),(5,5)</points>", mode="fixed")[0] == 0.0
    # the +1 areas: [0,0,9,19] vs (0,0),(9,9) is exactly 0.5 -> 0
    assert seg(wrap('{"bbox": [0,0,9,19], "points_1": [5,5], "points_2": [5,5]}'),
               "<box>(0,0),(9,9)</box><points>(5,5),(5,5)</points>")[0] == 0.0


def test_s8_single_2_json_is_the_first_brace_object_anywhere():
    assert seg(wrap(PERFECT, think="like {this}"), GT) == [0.0, 0.0, 0.0]  # inside <think>
    assert seg("no tags at all " + PERFECT, GT) == [1.0, 1.0, 1.0]  # outside any tags
    assert seg(wrap(f"[{PERFECT}]"), GT) == [1.0, 1.0, 1.0]  # the first object of a list
    nested = '{"bbox": [10,10,100,100], "m": {"a": 1}, "points_1": [30,30], "points_2": [60,60]}'
    assert seg(wrap(nested), GT) == [0.0, 0.0, 0.0]
    brace_in_string = '{"note": "a}b", "bbox": [10,10,100,100], "points_1": [30,30], "points_2": [60,60]}'
    assert seg(wrap(brace_in_string), GT) == [0.0, 0.0, 0.0]
    assert R.segzero_format_strict_reward([wrap(brace_in_string)]) == [0.0]


def test_s8_single_3_prompt_example_single_quotes_fail():
    from segzero_tool.prompts import SEGZERO_ANSWER_EXAMPLE

    text = wrap(SEGZERO_ANSWER_EXAMPLE)
    gt = "<box>(10,100),(200,210)</box><points>(30,110),(35,180)</points>"
    total = sum(f([text], solution=[gt])[0] for f in R.SEGZERO_REWARDS)
    assert total == 1.0  # only the thinking point
    assert sum(f([text], solution=[gt])[0] for f in R.SEGZERO_SOFT_REWARDS) == 1.0


def test_s8_single_4_strict_vs_soft_keys():
    soft = wrap('{"BBox": [10,10,100,100], "points_a": [30,30], "points_b": [60,60]}')
    assert R.segzero_format_strict_reward([soft]) == [0.0]
    assert R.segzero_format_soft_reward([soft]) == [1.0]
    assert seg(soft, GT) == [0.0, 0.0, 0.0] and seg_soft(soft, GT) == [1.0, 1.0, 1.0]
    # strict does not check element types
    assert R.segzero_format_strict_reward([wrap('{"bbox": ["a",null,true,[]], "points_1": [1,2], '
                                                '"points_2": ["x","y"]}')]) == [1.0]
    # soft: the first key containing "bbox" (case-insensitive) is the box, even when it also says "point"
    first = wrap('{"BBOX_point": [10,10,100,100], "bbox": [0,0,1,1], "x_point": [30,30], "y_point": [60,60]}')
    assert R.segzero_format_soft_reward([first]) == [1.0]
    assert seg_soft(first, GT)[:2] == [1.0, 1.0]
    # soft format counts keys containing "point", the soft point reward needs "points"
    singular = wrap('{"bbox": [10,10,100,100], "point_1": [30,30], "point_2": [60,60]}')
    assert R.segzero_format_soft_reward([singular]) == [1.0]
    assert seg_soft(singular, GT) == [1.0, 1.0, 0.0]
    # soft format checks len() only: a 4-character string is a "box" and a 2-character string a "point"
    stringy = wrap('{"bbox": "abcd", "point_1": "ab", "point_2": [1,2]}')
    assert R.segzero_format_soft_reward([stringy]) == [1.0]
    assert R.segzero_format_strict_reward([stringy]) == [0.0]


def test_s8_single_5_point_values_and_threshold():
    def pt(p1, p2, box="[0,0,300,300]"):
        return R.segzero_point_reward([wrap(f'{{"bbox": {box}, "points_1": {p1}, "points_2": {p2}}}')],
                                      solution=[GT])[0]

    assert pt('["30","30"]', "[60,60]") == 1.0  # numeric strings accepted
    assert pt("[30.9,30.9]", "[60,60]") == 1.0  # floats truncated
    assert pt('["30.5",30]', "[60,60]") == 0.0  # int("30.5") raises
    assert pt("[60,60]", "[30,30]") == 1.0  # min over both pairings
    assert pt("[30,30]", "[260,60]") == 0.0  # mean distance exactly 100
    assert pt("[30,30]", "[259,60]") == 1.0  # 99.5
    # int() first: 60.7 truncates to 60, inside the box [0,0,60,60]
    assert pt("[60.7,60]", "[30,30]", box="[0,0,60,60]") == 1.0
    assert pt("[61,60]", "[30,30]", box="[0,0,60,60]") == 0.0  # outside the predicted box
    # the box must have exactly 4 values for the point term
    assert pt("[30,30]", "[60,60]", box="[0,0,300,300,1]") == 0.0
    assert pt("[30,30]", "[60,60]", box="[0,0,300]") == 0.0


def test_s8_single_6_ground_truth_regex_box_and_points_read_separately():
    text = wrap(PERFECT)
    assert seg(text, GT) == [1.0, 1.0, 1.0]
    assert seg(text, "<box>(10,10),(100,100)</box>") == [1.0, 1.0, 0.0]  # no <points>
    assert seg(text, "<points>(30,30),(60,60)</points>") == [0.0, 0.0, 1.0]  # no <box>
    assert seg(text, GT.replace("(10,10)", "(10, 10)")) == [0.0, 0.0, 1.0]  # a space
    assert seg(text, GT.replace("(30,30)", "(30, 30)")) == [1.0, 1.0, 0.0]
    assert seg(text, GT.replace("(10,10),", "(-10,10),")) == [0.0, 0.0, 1.0]  # a sign
    assert seg(text, GT.replace("(60,60)", "(60.0,60)")) == [1.0, 1.0, 0.0]  # a decimal
    assert seg(text, "  " + GT + "\n") == [1.0, 1.0, 1.0]  # a search, not a full match
    for bad in ("", "garbage", None, 5):
        assert seg(text, bad) == [0.0, 0.0, 0.0]  # 0, not an error
    assert seg_soft(text, "<box>(10,10),(100,100)</box>") == [1.0, 1.0, 0.0]
    assert seg_soft(text, "<points>(30,30),(60,60)</points>") == [0.0, 0.0, 1.0]
    assert R.segzero_gt_box(GT) == [10, 10, 100, 100] and R.segzero_gt_points(GT) == [[30, 30], [60, 60]]
    assert R.segzero_gt_box("<points>(1,2),(3,4)</points>") is None
    assert R.segzero_gt_points("<box>(1,2),(3,4)</box>") is None
    with pytest.raises(ValueError):  # the dataset loader needs both parts
        R.parse_segzero_solution("<box>(10,10),(100,100)</box>")


_COORD = st.integers(0, 839)


@settings(max_examples=150, deadline=None)
@given(box=st.lists(_COORD, min_size=4, max_size=4), pts=st.lists(_COORD, min_size=4, max_size=4),
       gbox=st.lists(_COORD, min_size=4, max_size=4), gpts=st.lists(_COORD, min_size=4, max_size=4),
       soft=st.booleans())
def test_s8_single_6_property_each_term_reads_only_its_own_gt_part(box, pts, gbox, gpts, soft):
    text = wrap(json.dumps({"bbox": box, "points_1": pts[:2], "points_2": pts[2:]}))
    gt_box = "<box>({},{}),({},{})</box>".format(*gbox)
    gt_points = "<points>({},{}),({},{})</points>".format(*gpts)
    full = seg_soft(text, gt_box + gt_points) if soft else seg(text, gt_box + gt_points)
    only_box = seg_soft(text, gt_box) if soft else seg(text, gt_box)
    only_points = seg_soft(text, gt_points) if soft else seg(text, gt_points)
    assert only_box == [full[0], full[1], 0.0]
    assert only_points == [0.0, 0.0, full[2]]


# --- fixed mode reads answers with the library's parser ------------------------------------------


def test_fixed_mode_reads_the_answer_with_parse_output(monkeypatch):
    import segzero_tool.parsing as parsing

    calls = []

    def spy(text, **kw):
        calls.append(text)
        return parsing.parse_output(text, **kw)

    monkeypatch.setattr(reward_segzero, "parse_output", spy)
    monkeypatch.setattr(reward_visionreasoner, "parse_output", spy)
    seg_text = wrap(PERFECT)
    vr_text = vr([obj([0, 0, 9, 9], [5, 5])])
    assert seg(seg_text, GT) == [1.0, 1.0, 1.0] and acc(vr_text, G1) == 3.0 and fmt(vr_text) == 3.0
    assert calls == []  # reference mode decodes as the reference does
    assert seg(seg_text, GT, mode="fixed") == [1.0, 1.0, 1.0]
    assert seg_soft(seg_text, GT, mode="fixed") == [1.0, 1.0, 1.0]
    assert acc(vr_text, G1, mode="fixed") == 3.0 and fmt(vr_text, mode="fixed") == 3.0
    assert len(calls) == 8 and set(calls) == {seg_text, vr_text}


def test_fixed_mode_never_decodes_model_json_itself(monkeypatch):
    class NoJson:
        @staticmethod
        def loads(*a, **k):
            raise AssertionError("fixed mode must not json.loads model text")

    monkeypatch.setattr(reward_segzero, "json", NoJson)
    assert seg(wrap(PERFECT), GT, mode="fixed") == [1.0, 1.0, 1.0]
    assert seg(wrap(PERFECT), GT) == [0.0, 0.0, 0.0]  # reference mode does (the error is swallowed)


def test_fixed_mode_accepts_what_the_parser_accepts():
    # the prompt's own single-quoted example: 0 in reference mode, read by the parser in fixed mode
    quoted = wrap("{'bbox': [10,10,100,100], 'points_1': [30,30], 'points_2': [60,60]}")
    assert seg(quoted, GT) == [0.0, 0.0, 0.0]
    assert seg(quoted, GT, mode="fixed") == [1.0, 1.0, 1.0]
    fenced = wrap('```json\n[{"bbox_2d": [0,0,9,9], "point_2d": [5,5]}]\n```')
    assert acc(fenced, G1) == 0.0 and acc(fenced, G1, mode="fixed") == 3.0
    assert fmt(fenced) == 1.0 and fmt(fenced, mode="fixed") == 3.0
    # fixed points are not int()-truncated: 60.7 is outside [0,0,60,60]
    text = wrap('{"bbox": [0,0,60,60], "points_1": [60.7,60], "points_2": [30,30]}')
    assert R.segzero_point_reward([text], solution=[GT]) == [1.0]
    assert R.segzero_point_reward([text], solution=[GT], mode="fixed") == [0.0]
    # the ground truth is read the same way in both modes (box and points separately)
    assert seg(wrap(PERFECT), "<box>(10,10),(100,100)</box>", mode="fixed") == [1.0, 1.0, 0.0]
    assert seg(wrap(PERFECT), "<points>(30,30),(60,60)</points>", mode="fixed") == [0.0, 0.0, 1.0]
    # a 5-value box: no term reads it in either mode (do not pin how the parser treats it)
    # empty vs empty, single object, unreadable answers
    assert acc(wrap("[]"), "[]", mode="fixed") == 3.0
    assert acc(wrap(json.dumps(obj([0, 0, 9, 9], [5, 5]))), G1, mode="fixed") == 3.0
    assert acc("<think>x</think>", "[]", mode="fixed") == 0.0
    assert acc(wrap("not json"), G1, mode="fixed") == 0.0
    assert fmt(wrap("[]"), mode="fixed") == 1.0
    assert fmt(wrap('[{"bbox_2d": [0,0,9,9], "point_2d": [5,5]}, {"bbox_2d": [1,2,3,4], "point_2d": [1,2]'),
               mode="fixed") == 1.0  # an unclosed list: truncated output earns no segmentation format


@settings(max_examples=100, deadline=None)
@given(objs=st.lists(st.tuples(st.lists(_COORD, min_size=4, max_size=4), st.lists(_COORD, min_size=2, max_size=2)),
                     min_size=1, max_size=5),
       gts=st.lists(st.tuples(st.lists(_COORD, min_size=4, max_size=4), st.lists(_COORD, min_size=2, max_size=2)),
                    min_size=1, max_size=5))
def test_fixed_mode_agrees_with_reference_on_canonical_answers(objs, gts):
    text = vr([obj(b, p) for b, p in objs])
    solution = json.dumps([obj(b, p) for b, p in gts])
    assert acc(text, solution, mode="fixed") == pytest.approx(acc(text, solution), abs=1e-12)
    assert fmt(text, mode="fixed") == pytest.approx(fmt(text), abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(box=st.lists(_COORD, min_size=4, max_size=4), pts=st.lists(_COORD, min_size=4, max_size=4),
       gbox=st.lists(_COORD, min_size=4, max_size=4), gpts=st.lists(_COORD, min_size=4, max_size=4))
def test_fixed_mode_agrees_with_reference_on_canonical_segzero_answers(box, pts, gbox, gpts):
    text = wrap(json.dumps({"bbox": box, "points_1": pts[:2], "points_2": pts[2:]}))
    gt = "<box>({},{}),({},{})</box><points>({},{}),({},{})</points>".format(*gbox, *gpts)
    ref, fixed = seg(text, gt), seg(text, gt, mode="fixed")
    assert fixed[1:] == ref[1:]
    assert fixed[0] >= ref[0]  # only touching boxes differ (<= instead of <)


# --- the split ----------------------------------------------------------------------------------


def test_reward_modules_are_small_and_rewards_reexports_them():
    import segzero_tool.training as training_pkg

    folder = Path(training_pkg.__file__).parent
    modules = sorted(folder.glob("reward*.py"))
    assert {p.name for p in modules} >= {"rewards.py", "reward_common.py", "reward_segzero.py",
                                          "reward_visionreasoner.py", "reward_mask.py"}
    for path in modules:
        assert len(path.read_text().splitlines()) < 400, path.name
    for name in R.__all__:
        assert hasattr(R, name), name
    assert R.segzero_iou_reward is reward_segzero.segzero_iou_reward
    assert R.vr_accuracy_reward is reward_visionreasoner.vr_accuracy_reward
