"""Parity table for the GRPO rewards (protocol 2.4, 2.5 and the section 8 quirks), hand-computed."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segzero_tool.masks import rle_encode
from segzero_tool.training import rewards as R


def wrap(answer: str, think: str = "x") -> str:
    return f"<think>{think}</think><answer>{answer}</answer>"


def conv(text: str) -> list[dict]:
    return [{"role": "assistant", "content": [{"type": "text", "text": text}]}]


def one(fn, text, **kw):
    """Score one completion in both string and conversational form; they must agree."""
    a = fn([text], **{k: [v] for k, v in kw.items()})
    b = fn([conv(text)], **{k: [v] for k, v in kw.items()})
    assert a == b
    assert len(a) == 1 and isinstance(a[0], float)
    return a[0]


# --- Seg-Zero single object ------------------------------------------------------------------------

GT = "<box>(10,10),(100,100)</box><points>(30,30),(60,60)</points>"
PERFECT = '{"bbox": [10,10,100,100], "points_1": [30,30], "points_2": [60,60]}'


SEG_CASES = [
    # (id, completion, solution, [thinking, strict format, iou, l1, point])
    ("perfect", wrap(PERFECT), GT, [1, 1, 1, 1, 1]),
    ("points swapped (order invariant)", wrap('{"bbox": [10,10,100,100], "points_1": [60,60], "points_2": [30,30]}'),
     GT, [1, 1, 1, 1, 1]),
    ("point values as numeric strings", wrap('{"bbox": [10,10,100,100], "points_1": ["30","30"], "points_2": [60,60]}'),
     GT, [1, 1, 1, 1, 1]),
    ("float point truncated by int()", wrap('{"bbox": [10,10,100,100], "points_1": [30.9,30.9], "points_2": [60,60]}'),
     GT, [1, 1, 1, 1, 1]),
    ("decimal string fails int()", wrap('{"bbox": [10,10,100,100], "points_1": ["30.5",30], "points_2": [60,60]}'),
     GT, [1, 1, 1, 1, 0]),
    ("point outside the predicted box", wrap('{"bbox": [10,10,50,50], "points_1": [30,30], "points_2": [60,60]}'),
     GT, [1, 1, 0, 0, 0]),
    # IoU 91*91 / (91*131) = 0.632 > 0.5, L1 = 40/4 = 10 -> not < 10
    ("L1 exactly 10", wrap('{"bbox": [10,10,100,140], "points_1": [30,30], "points_2": [60,60]}'),
     GT, [1, 1, 1, 0, 1]),
    # mean point distance: min(0+200, 42.4+231.9)/2 = 100 -> not < 100
    ("point distance exactly 100", wrap('{"bbox": [0,0,300,300], "points_1": [30,30], "points_2": [260,60]}'),
     GT, [1, 1, 0, 0, 0]),
    ("point distance 99.5", wrap('{"bbox": [0,0,300,300], "points_1": [30,30], "points_2": [259,60]}'),
     GT, [1, 1, 0, 0, 1]),
    # +1 areas: inter 10*10, union 10*20 -> IoU exactly 0.5 -> 0; L1 = 10/4
    ("IoU exactly 0.5", wrap('{"bbox": [0,0,9,19], "points_1": [5,5], "points_2": [5,5]}'),
     "<box>(0,0),(9,9)</box><points>(5,5),(5,5)</points>", [1, 1, 0, 1, 1]),
    ("IoU just above 0.5", wrap('{"bbox": [0,0,9,18], "points_1": [5,5], "points_2": [5,5]}'),
     "<box>(0,0),(9,9)</box><points>(5,5),(5,5)</points>", [1, 1, 1, 1, 1]),
    ("identical 1-pixel boxes: IoU 0 (strict intersection test)",
     wrap('{"bbox": [5,5,5,5], "points_1": [5,5], "points_2": [5,5]}'),
     "<box>(5,5),(5,5)</box><points>(5,5),(5,5)</points>", [1, 1, 0, 1, 1]),
    ("single quotes (the prompt's own example) fail json.loads",
     wrap("{'bbox': [10,10,100,100], 'points_1': [30,30], 'points_2': [60,60]}"), GT, [1, 0, 0, 0, 0]),
    ("first brace object is inside <think>", wrap(PERFECT, think="use {x} here"), GT, [1, 0, 0, 0, 0]),
    ("JSON outside any tags still scores", "I think " + PERFECT, GT, [0, 1, 1, 1, 1]),
    ("nested braces fail", wrap('{"bbox": [10,10,100,100], "m": {"a": 1}, "points_1": [30,30], "points_2": [60,60]}'),
     GT, [1, 0, 0, 0, 0]),
    ("strict does not check element types", wrap('{"bbox": ["a","b","c","d"], "points_1": [30,30], "points_2": [6,6]}'),
     GT, [1, 1, 0, 0, 0]),
    ("wrong key names fail strict", wrap('{"BBox": [10,10,100,100], "points_a": [30,30], "points_b": [60,60]}'),
     GT, [1, 0, 0, 0, 0]),
    # section 8 single-object 6: the GT's <box> and <points> are read separately, each by its own regex;
    # a part that does not match zeroes only the terms that need it
    ("GT box with a space does not match -> IoU and L1 0, points still scored", wrap(PERFECT),
     "<box>(10, 10),(100,100)</box><points>(30,30),(60,60)</points>", [1, 1, 0, 0, 1]),
    ("GT box with a negative number does not match -> IoU and L1 0, points still scored",
     wrap('{"bbox": [0,0,100,100], "points_1": [30,30], "points_2": [6,6]}'),
     "<box>(-1,0),(100,100)</box><points>(30,30),(60,60)</points>", [1, 1, 0, 0, 1]),
    ("GT points with a float do not match -> point 0, box terms still scored", wrap(PERFECT),
     "<box>(10,10),(100,100)</box><points>(30.5,30),(60,60)</points>", [1, 1, 1, 1, 0]),
    ("GT without <points> still earns IoU and L1", wrap(PERFECT), "<box>(10,10),(100,100)</box>", [1, 1, 1, 1, 0]),
    ("GT without <box> still earns the point term", wrap(PERFECT), "<points>(30,30),(60,60)</points>",
     [1, 1, 0, 0, 1]),
    ("empty GT", wrap(PERFECT), "", [1, 1, 0, 0, 0]),
    ("predicted box of 3 values: the point term is guarded", wrap('{"bbox": [10,10,100], "points_1": [30,30], '
                                                                  '"points_2": [60,60]}'), GT, [1, 0, 0, 0, 0]),
    ("predicted box of 5 values: no term reads it", wrap('{"bbox": [10,10,100,100,7], "points_1": [30,30], '
                                                         '"points_2": [60,60]}'), GT, [1, 0, 0, 0, 0]),
    ("predicted box missing", wrap('{"points_1": [30,30], "points_2": [60,60]}'), GT, [1, 0, 0, 0, 0]),
    ("point with 3 values: int() of the first two", wrap('{"bbox": [10,10,100,100], "points_1": [30,30,999], '
                                                         '"points_2": [60,60]}'), GT, [1, 0, 1, 1, 1]),
    ("point given as a 2-digit string: its characters are the coordinates",
     wrap('{"bbox": [0,0,100,100], "points_1": "35", "points_2": [60,60]}'), GT, [1, 0, 1, 1, 1]),
    ("point with one value", wrap('{"bbox": [10,10,100,100], "points_1": [30], "points_2": [60,60]}'),
     GT, [1, 0, 1, 1, 0]),
    ("trailing newline fails the full match", wrap(PERFECT) + "\n", GT, [0, 1, 1, 1, 1]),
    ("NaN in the box", wrap('{"bbox": [NaN,10,100,100], "points_1": [30,30], "points_2": [60,60]}'),
     GT, [1, 1, 0, 0, 0]),
]


@pytest.mark.parametrize("case", SEG_CASES, ids=[c[0] for c in SEG_CASES])
def test_segzero_table(case):
    _, text, solution, expected = case
    got = [one(R.thinking_format_reward, text), one(R.segzero_format_strict_reward, text),
           one(R.segzero_iou_reward, text, solution=solution), one(R.segzero_l1_reward, text, solution=solution),
           one(R.segzero_point_reward, text, solution=solution)]
    assert got == [float(v) for v in expected]


def test_segzero_set_sums_to_five():
    total = sum(f([wrap(PERFECT)], solution=[GT])[0] for f in R.SEGZERO_REWARDS)
    assert total == 5.0


def test_soft_keys():
    soft = wrap('{"BBox": [10,10,100,100], "points_a": [30,30], "points_b": [60,60]}')
    assert one(R.segzero_format_strict_reward, soft) == 0.0
    assert one(R.segzero_format_soft_reward, soft) == 1.0
    assert one(R.segzero_iou_soft_reward, soft, solution=GT) == 1.0
    assert one(R.segzero_l1_soft_reward, soft, solution=GT) == 1.0
    assert one(R.segzero_point_soft_reward, soft, solution=GT) == 1.0
    assert sum(f([soft], solution=[GT])[0] for f in R.SEGZERO_SOFT_REWARDS) == 5.0
    # the soft format counts keys containing "point", the soft point reward needs "points"
    singular = wrap('{"bbox": [10,10,100,100], "point_1": [30,30], "point_2": [60,60]}')
    assert one(R.segzero_format_soft_reward, singular) == 1.0
    assert one(R.segzero_point_soft_reward, singular, solution=GT) == 0.0
    assert one(R.segzero_format_strict_reward, singular) == 0.0
    # one point key only
    assert one(R.segzero_format_soft_reward, wrap('{"bbox": [1,2,3,4], "point": [1,2]}')) == 0.0


def test_segzero_iou_fixed_mode():
    text = wrap('{"bbox": [5,5,5,5], "points_1": [5,5], "points_2": [5,5]}')
    sol = "<box>(5,5),(5,5)</box><points>(5,5),(5,5)</points>"
    assert R.segzero_iou_reward([text], solution=[sol]) == [0.0]
    assert R.segzero_iou_reward([text], solution=[sol], mode="fixed") == [1.0]


# --- VisionReasoner multi object -------------------------------------------------------------------


def obj(box, point):
    return {"bbox_2d": box, "point_2d": point}


def vr(objs) -> str:
    return wrap(json.dumps(objs))


G1 = json.dumps([obj([0, 0, 9, 9], [5, 5])])
G100 = json.dumps([obj([0, 0, 99, 99], [50, 50])])
G2 = json.dumps([obj([0, 0, 99, 99], [50, 50]), obj([200, 200, 299, 299], [250, 250])])

ACC_CASES = [
    ("perfect", vr([obj([0, 0, 9, 9], [5, 5])]), G1, 3.0),
    ("IoU exactly 0.5 (+1 areas) -> 0", vr([obj([0, 0, 9, 19], [5, 5])]), G1, 2.0),
    ("IoU 100/190 > 0.5", vr([obj([0, 0, 9, 18], [5, 5])]), G1, 3.0),
    ("L1 exactly 10 -> 0", vr([obj([0, 0, 99, 139], [50, 50])]), G100, 2.0),
    ("point distance exactly 30 (18,24) -> 0", vr([obj([0, 0, 99, 99], [68, 74])]), G100, 2.0),
    ("point distance 29.2 -> 1", vr([obj([0, 0, 99, 99], [68, 73])]), G100, 3.0),
    ("point equal to gt but outside its own box", vr([obj([0, 0, 9, 9], [50, 50])]),
     json.dumps([obj([0, 0, 9, 9], [50, 50])]), 2.0),
    ("point on its own box edge (inclusive)", vr([obj([0, 0, 9, 9], [9, 9])]), json.dumps([obj([0, 0, 9, 9], [9, 9])]),
     3.0),
    ("identical 1-pixel boxes score (multi uses max(0, ...))", vr([obj([5, 5, 5, 5], [5, 5])]),
     json.dumps([obj([5, 5, 5, 5], [5, 5])]), 3.0),
    ("one extra object: / max(M, N)", vr([obj([0, 0, 9, 9], [5, 5]), obj([500, 500, 600, 600], [550, 550])]), G1, 1.5),
    ("one missing object: / max(M, N)", vr([obj([0, 0, 99, 99], [50, 50])]), G2, 1.5),
    ("Hungarian picks the best pairing", vr([obj([200, 200, 299, 299], [250, 250]), obj([0, 0, 99, 99], [50, 50])]),
     G2, 3.0),
    ("empty prediction", vr([]), G1, 0.0),
    ("empty prediction with empty gt -> 0", vr([]), "[]", 0.0),
    ("{} prediction", wrap("{}"), G1, 0.0),
    ("missing point_2d -> 0", vr([{"bbox_2d": [0, 0, 9, 9]}]), G1, 0.0),
    ("NaN never matches, no error", wrap('[{"bbox_2d": [NaN, 0, 9, 9], "point_2d": [5, 5]}]'), G1, 0.0),
    ("NaN point only", wrap('[{"bbox_2d": [0, 0, 9, 9], "point_2d": [NaN, 5]}]'), G1, 2.0),
    ("first <answer> block is used", vr([]) .replace("</answer>", "</answer><answer>" + G1 + "</answer>", 1), G1, 0.0),
    ("no answer block", "<think>x</think>", G1, 0.0),
    ("unparsable answer", wrap("[{bbox_2d: 1}]"), G1, 0.0),
    ("escaped key \\u005f and duplicate keys (last wins)",
     wrap('[{"bbox\\u005f2d": [50,50,60,60], "bbox_2d": [0,0,9,9], "point_2d": [5,5]}]'), G1, 3.0),
    ("booleans act as 0/1", wrap('[{"bbox_2d": [false, 0, 9, 9], "point_2d": [5, 5]}]'), G1, 3.0),
    ("single dict answer iterates keys -> 0", wrap(json.dumps(obj([0, 0, 9, 9], [5, 5]))), G1, 0.0),
]


@pytest.mark.parametrize("case", ACC_CASES, ids=[c[0] for c in ACC_CASES])
def test_vr_accuracy_table(case):
    _, text, solution, expected = case
    assert one(R.vr_accuracy_reward, text, solution=solution) == pytest.approx(expected, abs=1e-12)


def test_vr_cap_after_comprehension():
    good = obj([0, 0, 9, 9], [5, 5])
    preds = [good] * 130
    # 130 copies capped to 120: one matched / 120
    assert one(R.vr_accuracy_reward, vr(preds), solution=G1) == pytest.approx(3 / 120)
    # a KeyError in object 126 (beyond the cap) still zeroes the accuracy
    bad = list(preds)
    bad[125] = {"bbox_2d": [0, 0, 9, 9]}
    assert one(R.vr_accuracy_reward, vr(bad), solution=G1) == 0.0
    # but the format reward counts every object: 129 complete objects of 130 -> (129*2 + 1)/130
    assert one(R.vr_format_reward, vr(bad)) == pytest.approx(1 + (129 * 2 + 1) / 130, abs=1e-9)


def test_vr_accuracy_fixed_mode():
    assert R.vr_accuracy_reward([vr([])], solution=["[]"], mode="fixed") == [3.0]
    assert R.vr_accuracy_reward([vr([])], solution=[G1], mode="fixed") == [0.0]
    mixed = vr([obj([0, 0, 9, 9], [5, 5]), {"bbox_2d": [0, 0, 9, 9]}])
    assert R.vr_accuracy_reward([mixed], solution=[G1]) == [0.0]
    assert R.vr_accuracy_reward([mixed], solution=[G1], mode="fixed") == [1.5]
    single = wrap(json.dumps(obj([0, 0, 9, 9], [5, 5])))
    assert R.vr_accuracy_reward([single], solution=[G1], mode="fixed") == [3.0]
    with pytest.raises(ValueError, match="reference, fixed"):
        R.vr_accuracy_reward([single], solution=[G1], mode="sane")


OBJ = '{"bbox_2d": [1,2,3,4], "point_2d": [1,2]}'

FORMAT_CASES = [
    ("perfect", wrap(f"[{OBJ}, {OBJ}]"), 3.0),
    ("trailing newline: thinking 0", wrap(f"[{OBJ}]") + "\n", 2.0),
    ("leading space: thinking 0", " " + wrap(f"[{OBJ}]"), 2.0),
    ("two <answer> blocks still match", wrap(f"[{OBJ}]") + "<answer>[]</answer>", 3.0),
    ("partial sum [obj, obj, 5]", wrap(f"[{OBJ}, {OBJ}, 5]"), 1.0 + 2 / 3 + 2 / 3),
    ("missing point", wrap('[{"bbox_2d": [1,2,3,4]}]'), 2.0),
    ("point of length 3", wrap('[{"bbox_2d": [1,2,3,4], "point_2d": [1,2,3]}]'), 2.0),
    ("string item without the substring adds 0", wrap(f'["xx", {OBJ}]'), 1.0 + 1.0),
    ("string item containing 'bbox_2d' raises -> partial sum", wrap(f'["has bbox_2d", {OBJ}]'), 1.0),
    ("dict answer iterates its keys and raises", wrap(OBJ), 1.0),
    ("dict answer without matching keys", wrap('{"a": 1, "b": 2}'), 1.0),
    ("empty list", wrap("[]"), 1.0),
    ("scalar answer: len() raises", wrap("5"), 1.0),
    ("no answer", "<think>x</think>", 0.0),
    ("types not checked inside the lists", wrap('[{"bbox_2d": ["a","b","c","d"], "point_2d": [null, null]}]'), 3.0),
]


@pytest.mark.parametrize("case", FORMAT_CASES, ids=[c[0] for c in FORMAT_CASES])
def test_vr_format_table(case):
    _, text, expected = case
    assert one(R.vr_format_reward, text) == pytest.approx(expected, abs=1e-9)


def test_vr_format_float_summation_order():
    # seven objects: 7 additions of 2/7 in order, exactly as the reference sums them
    text = wrap("[" + ", ".join([OBJ] * 7) + "]")
    expected = 0.0
    for _ in range(7):
        expected += 2.0 / 7
    assert one(R.vr_format_reward, text) == 1.0 + expected


def test_vr_format_fixed_mode():
    assert R.vr_format_reward([wrap(f"[{OBJ}]") + "\n"], mode="fixed") == [3.0]
    assert R.vr_format_reward([wrap(f"[{OBJ}, {OBJ}, 5]")], mode="fixed") == [pytest.approx(1 + 4 / 3)]
    assert R.vr_format_reward([wrap('[{"bbox_2d": ["a","b","c","d"], "point_2d": [1, 2]}]')], mode="fixed") == [2.0]


NON_REPEAT_CASES = [
    ("no repeats", wrap("A. B. C"), 1.0),
    ("'A. A. A.' inside <think>: the first fragment carries the tag -> one repeat", wrap("[]", think="A. A. A."), 1.0),
    ("'A. A. A. A.' -> two repeats", wrap("[]", think="A. A. A. A."), 0.0),
    ("integer coordinates", wrap('[{"bbox_2d": [10,10,10,10]}]'), 1.0),
    ("float coordinates create repeating fragments", wrap('[{"bbox_2d": [10.5,10.5,10.5,10.5]}]'), 0.0),
    ("empty", "", 1.0),
    ("only dots", "....", 1.0),
]


@pytest.mark.parametrize("case", NON_REPEAT_CASES, ids=[c[0] for c in NON_REPEAT_CASES])
def test_vr_non_repeat_table(case):
    _, text, expected = case
    assert one(R.vr_non_repeat_reward, text) == expected


def test_visionreasoner_set_sums_to_seven():
    text = vr([obj([0, 0, 9, 9], [5, 5])])
    assert sum(f([text], solution=[G1])[0] for f in R.VISIONREASONER_REWARDS) == 7.0


# --- mask extension ---------------------------------------------------------------------------------


def test_mask_point_reward():
    mask = np.zeros((20, 20), bool)
    mask[:, :10] = True
    text = vr([obj([0, 0, 19, 19], [2, 5]), obj([0, 0, 19, 19], [15, 5])])
    assert one(R.mask_point_reward, text, mask=mask) == 0.5
    assert one(R.mask_point_reward, text, mask=rle_encode(mask)) == 0.5
    assert one(R.mask_point_reward, text, mask=json.dumps(rle_encode(mask))) == 0.5
    segzero = wrap('{"bbox": [0,0,19,19], "points_1": [3,3], "points_2": [9.9,19]}')
    assert one(R.mask_point_reward, segzero, mask=mask) == 1.0
    assert one(R.mask_point_reward, wrap("[]"), mask=mask) == 0.0
    assert one(R.mask_point_reward, vr([obj([0, 0, 9, 9], [500, 5])]), mask=mask) == 0.0
    assert one(R.mask_point_reward, text, mask="not a mask") == 0.0


# --- plumbing ----------------------------------------------------------------------------------------


def test_completion_forms():
    text = vr([obj([0, 0, 9, 9], [5, 5])])
    assert R.completion_text(text) == text
    assert R.completion_text([{"role": "assistant", "content": text}]) == text
    assert R.completion_text(conv(text)) == text
    assert R.completion_text([{"role": "user", "content": "q"}, {"role": "assistant", "content": text}]) == text
    assert R.completion_text([]) == ""
    assert R.vr_accuracy_reward([text, conv(text)], solution=[G1, G1]) == [3.0, 3.0]
    # a single solution string is broadcast
    assert R.vr_accuracy_reward([text, text], solution=G1) == [3.0, 3.0]


def test_get_reward_funcs():
    names = [f.__name__ for f in R.get_reward_funcs("segzero")]
    assert names == ["thinking_format_reward", "segzero_format_strict_reward", "segzero_iou_reward",
                     "segzero_l1_reward", "segzero_point_reward"]
    assert [f.__name__ for f in R.get_reward_funcs("segzero-soft")][1] == "segzero_format_soft_reward"
    vr_funcs = R.get_reward_funcs("visionreasoner", extra=("mask_point",))
    assert [f.__name__ for f in vr_funcs] == ["vr_format_reward", "vr_accuracy_reward", "vr_non_repeat_reward",
                                              "mask_point_reward"]
    fixed = R.get_reward_funcs("visionreasoner", mode="fixed")
    assert [f.__name__ for f in fixed] == ["vr_format_reward_fixed", "vr_accuracy_reward_fixed",
                                           "vr_non_repeat_reward"]
    assert fixed[1]([vr([])], solution=["[]"]) == [3.0]
    for set_name in R.REWARD_SETS:
        for mode in R.MODES:
            set_names = [f.__name__ for f in R.get_reward_funcs(set_name, extra=["mask_point"], mode=mode)]
            assert len(set(set_names)) == len(set_names)
    with pytest.raises(ValueError, match="segzero, segzero-soft, visionreasoner"):
        R.get_reward_funcs("nope")
    with pytest.raises(ValueError, match="mask_point"):
        R.get_reward_funcs("segzero", extra=("nope",))


def test_solution_parsers():
    assert R.parse_segzero_solution(GT) == ([10, 10, 100, 100], ([30, 30], [60, 60]))
    with pytest.raises(ValueError):
        R.parse_segzero_solution("<box>(10, 10),(100,100)</box><points>(30,30),(60,60)</points>")
    assert R.parse_visionreasoner_solution(G2)[1]["point_2d"] == [250, 250]
    for bad in ("{", "{}", '[{"bbox_2d": [1,2,3]}]', "[5]"):
        with pytest.raises(ValueError):
            R.parse_visionreasoner_solution(bad)


# --- never raise ----------------------------------------------------------------------------------------

_ALPHABET = st.sampled_from(["<think>", "</think>", "<answer>", "</answer>", "{", "}", "[", "]", '"bbox"',
                             '"bbox_2d"', '"point_2d"', '"points_1"', '"points_2"', ":", ",", "1", "10.5", "-3",
                             "NaN", "1e400", "99999999999999999999999", "true", "null", '"30"', " ", "\n", ".",
                             "A", "'"])
TEXTS = st.one_of(st.text(max_size=200), st.lists(_ALPHABET, max_size=60).map("".join))
SOLUTIONS = st.sampled_from([GT, G1, G2, "[]", "garbage", "<box>(1,1),(1,1)</box><points>(1,1),(1,1)</points>"])
ALL = [R.thinking_format_reward, R.segzero_format_strict_reward, R.segzero_format_soft_reward,
       R.segzero_iou_reward, R.segzero_l1_reward, R.segzero_point_reward, R.segzero_iou_soft_reward,
       R.segzero_l1_soft_reward, R.segzero_point_soft_reward, R.vr_format_reward, R.vr_accuracy_reward,
       R.vr_non_repeat_reward]
MAXIMA = {"vr_format_reward": 3.0, "vr_accuracy_reward": 3.0}


@settings(max_examples=200, deadline=None)
@given(text=TEXTS, solution=SOLUTIONS)
def test_rewards_never_raise(text, solution):
    mask = np.ones((840, 840), bool)
    for fn in ALL:
        for mode in (("reference", "fixed") if fn in R._MODE_AWARE else ("reference",)):
            kw = {"mode": mode} if mode != "reference" else {}
            (v,) = fn([text], solution=[solution], **kw)
            assert isinstance(v, float) and not math.isnan(v)
            assert 0.0 <= v <= MAXIMA.get(fn.__name__, 1.0) + 1e-9
    (v,) = R.mask_point_reward([text], mask=[mask])
    assert 0.0 <= v <= 1.0
