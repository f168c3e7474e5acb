"""Metric parity with the protocol on hand-computed cases (section 3.2 / 3.3 and the section 8 quirks)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from segzero_tool.eval.metrics import (
    IoUAccumulator,
    box_hit,
    box_iou,
    intersection_union,
    sample_iou,
    summarize,
)


def _m(rows: list[str]) -> np.ndarray:
    return np.array([[c == "#" for c in r] for r in rows])


def test_intersection_union_by_hand():
    pred = _m(["##..", "##..", "....", "...."])
    gt = _m([".##.", ".##.", "....", "...."])
    assert intersection_union(pred, gt) == (2, 6)
    assert intersection_union(gt, gt) == (4, 4)
    assert intersection_union(np.zeros((3, 3), bool), np.zeros((3, 3), bool)) == (0, 0)
    with pytest.raises(ValueError, match="differ in shape"):
        intersection_union(pred, gt[:3])


# (intersection, union, failed): A, B ordinary; C a parse failure (I=0, U=|GT|=5); D both masks empty;
# E a parse failure on an empty ground truth (I=0, U=0).
CASES = [(2, 6, False), (3, 4, False), (0, 5, True), (0, 0, False), (0, 0, True)]


def test_giou_ciou_skip_convention():
    acc = IoUAccumulator("skip")
    got = [acc.add(i, u, failed=f) for i, u, f in CASES]
    assert got == [2 / 6, 3 / 4, 0.0, None, 0.0]  # D skipped; E counted as IoU 0 (protocol section 8 quirk 2)
    assert (acc.samples, acc.counted, acc.skipped, acc.failed) == (5, 4, 1, 2)
    assert acc.giou == pytest.approx((1 / 3 + 3 / 4 + 0 + 0) / 4) == pytest.approx(13 / 48)
    assert acc.ciou == pytest.approx((2 + 3) / (6 + 4 + 5 + 0)) == pytest.approx(1 / 3)


def test_giou_ciou_zero_convention():
    acc = IoUAccumulator("zero")
    got = [acc.add(i, u, failed=f) for i, u, f in CASES]
    assert got == [2 / 6, 3 / 4, 0.0, 0.0, 0.0]
    assert (acc.counted, acc.skipped) == (5, 0)
    assert acc.giou == pytest.approx(13 / 60)
    assert acc.ciou == pytest.approx(1 / 3)  # D adds 0 to both sums


def test_failure_counts_intersection_zero_and_union_gt():
    acc = IoUAccumulator()
    # a failure record carries U = |GT|; any intersection passed in is ignored
    assert acc.add(3, 7, failed=True) == 0.0
    assert (acc.sum_intersection, acc.sum_union) == (0, 7)
    assert acc.giou == 0.0 and acc.ciou == 0.0


def test_all_skipped_gives_nan_giou_and_zero_ciou():
    acc = IoUAccumulator("skip")
    for _ in range(3):
        assert acc.add(0, 0) is None
    assert math.isnan(acc.giou) and acc.ciou == 0.0 and acc.counted == 0
    empty = IoUAccumulator()
    assert math.isnan(empty.giou) and empty.ciou == 0.0


def test_sample_iou_conventions():
    assert sample_iou(1, 4) == 0.25
    assert sample_iou(0, 0, empty_union="skip") is None
    assert sample_iou(0, 0, empty_union="zero") == 0.0
    assert sample_iou(0, 0, failed=True, empty_union="skip") == 0.0
    with pytest.raises(ValueError):
        IoUAccumulator("maybe")  # type: ignore[arg-type]


def test_box_iou_has_no_plus_one():
    assert box_iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(50 / 150)
    # with the +1 convention this would be 4 / 14; without it 1 / 7
    assert box_iou([0, 0, 2, 2], [1, 1, 3, 3]) == pytest.approx(1 / 7)
    assert box_iou([0, 0, 0, 0], [0, 0, 0, 0]) == 0.0  # zero area, no division by zero
    assert box_iou([0, 0, 1, 1], [2, 2, 3, 3]) == 0.0


def test_box_hit_is_strict_and_any_box():
    gt = [0, 0, 1, 1]
    assert box_hit([[0, 0, 2, 1]], gt) is False  # IoU exactly 0.5 is not a hit
    assert box_hit([[50, 50, 60, 60], [0, 0, 1, 1]], gt) is True  # any predicted box
    assert box_hit([], gt) is False
    assert box_hit([[0, 0, 1, 1]], None) is None


def _rec(i, u, status="ok", sentence=None, hit=None, parse="ok", latency=10.0):
    return {"id": f"s{i}-{u}-{status}", "intersection": i, "union": u, "status": status, "is_sentence": sentence,
            "box_hit": hit, "parse_status": parse if status != "error" else None, "latency_ms": latency}


def test_summarize_overall_short_long_and_box_accuracy():
    records = [
        _rec(2, 6, sentence=False, hit=True),
        _rec(3, 4, sentence=True, hit=False),
        _rec(0, 5, status="failed", sentence=True, hit=False, parse="no_answer"),
        _rec(0, 0, sentence=False, hit=None, parse="no_objects"),
        _rec(0, 9, status="error", sentence=False, hit=None),
        {"id": "bad", "status": "invalid_gt", "intersection": None, "union": None, "is_sentence": True},
    ]
    s = summarize(records, "skip")
    assert list(s) == ["overall", "short", "long"]
    o = s["overall"]
    assert (o["samples"], o["counted"], o["skipped_empty_union"], o["failed"], o["errors"], o["invalid_gt"]) == (
        6, 4, 1, 1, 1, 1)
    assert o["giou"] == pytest.approx((1 / 3 + 3 / 4) / 4)
    assert o["ciou"] == pytest.approx(5 / 24)
    assert (o["intersection"], o["union"]) == (5, 24)
    assert o["box_accuracy"] == pytest.approx(1 / 3) and o["box_samples"] == 3
    assert o["parse_status"] == {"no_answer": 1, "no_objects": 1, "ok": 2}
    short, long_ = s["short"], s["long"]
    assert short["giou"] == pytest.approx((1 / 3 + 0) / 2) and short["skipped_empty_union"] == 1
    assert long_["giou"] == pytest.approx((3 / 4 + 0) / 2) and long_["ciou"] == pytest.approx(3 / 9)
    assert long_["invalid_gt"] == 1
    z = summarize(records, "zero")["overall"]
    assert z["counted"] == 5 and z["giou"] == pytest.approx((1 / 3 + 3 / 4) / 5)


def test_summarize_without_sentence_flags_has_overall_only():
    s = summarize([_rec(1, 2), _rec(0, 0)], "skip")
    assert list(s) == ["overall"]
    assert s["overall"]["giou"] == 0.5 and s["overall"]["box_accuracy"] is None
    all_skipped = summarize([_rec(0, 0)], "skip")["overall"]
    assert math.isnan(all_skipped["giou"]) and all_skipped["ciou"] == 0.0
