"""VisionReasoner multi-object rewards (``vision_reasoner.py``), at most 7.

Format (thinking 0/1 + per-item segmentation format <= 2), Hungarian-matched accuracy <= 3 and
non-repeat 0/1 (protocol sections 2.5 and 8, multi-object rules 1-8).

Reference mode (the default) reproduces the reference code, quirks included: the answer is
``json.loads`` of the **first** ``<answer>\\s*(.*?)\\s*</answer>`` block, with all of
``json.loads``' leniency (``NaN``/``Infinity``, ``\\u005f`` escapes in keys, duplicate keys with
the last one winning, booleans as 0/1); partial format sums when an item raises midway; the
120-object cap applied after reading every item; ``[]`` scoring 0 even against an empty ground
truth; the non-repeat split of the whole completion on ``"."``.

``mode="fixed"`` (format and accuracy) reads the answer with the library's parser,
:func:`segzero_tool.parsing.parse_output`, instead of decoding JSON here: whatever the parser
accepts (a single object, single quotes, code fences, a list cut off mid-way) counts, an item
counts as far as the parser can use it (a box of 4 finite numbers, at least one point of 2), and
surrounding whitespace does not fail the thinking format. See :func:`vr_format_reward` and
:func:`vr_accuracy_reward` for the details.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np

from segzero_tool.parsing import (
    ParseStatus,
    parse_output,
    reference_answer_block,
    reference_sentence_fragments,
)

from .reward_common import check_mode, completion_text, per_item, safe, thinking_score

__all__ = [
    "MAX_OBJECTS",
    "parse_visionreasoner_solution",
    "vr_accuracy_reward",
    "vr_format_reward",
    "vr_non_repeat_reward",
]

#: VisionReasoner caps both object lists at this many (after reading every item).
MAX_OBJECTS = 120


def parse_visionreasoner_solution(text: str) -> list[dict[str, Any]]:
    """A VisionReasoner solution (JSON list of ``{"bbox_2d": [4], "point_2d": [2]}``) -> the list.

    Raises:
        ValueError: not JSON, not a list, or an item without a 4-value box and a 2-value point.
    """
    try:
        data = json.loads(text)
    except (TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"a VisionReasoner solution must be a JSON list: {exc}") from None
    if not isinstance(data, list):
        raise ValueError(f"a VisionReasoner solution must be a JSON list, got {type(data).__name__}")
    for i, item in enumerate(data):
        if (not isinstance(item, dict) or not isinstance(item.get("bbox_2d"), list) or len(item["bbox_2d"]) != 4
                or not isinstance(item.get("point_2d"), list) or len(item["point_2d"]) != 2):
            raise ValueError(f"solution item {i} needs 'bbox_2d' (4 numbers) and 'point_2d' (2 numbers): {item!r}")
    return data


# --- format ----------------------------------------------------------------------------------------


def _segmentation_format(text: str) -> float:
    """Reference: per item ``+1`` (bbox_2d list of 4) ``+1`` (point_2d list of 2), each ``/ len(data)``,
    summed in order inside one try, so an exception midway returns the partial sum."""
    total = 0.0
    try:
        answer = reference_answer_block(text)
        if answer is None:
            return total
        data = json.loads(answer)
        count = len(data)
        for item in data:
            cur = 0.0
            if "bbox_2d" in item:  # a substring test for string items; a dict answer iterates its keys
                box = item["bbox_2d"]
                if isinstance(box, list) and len(box) == 4:
                    cur += 1.0
            if "point_2d" in item:
                point = item["point_2d"]
                if isinstance(point, list) and len(point) == 2:
                    cur += 1.0
            total += cur / count
    except Exception:  # noqa: BLE001
        pass
    return total


def _segmentation_format_fixed(text: str) -> float:
    """Fixed: (usable boxes + objects with a usable point) / items listed, as the library parser reads them."""
    parsed = parse_output(text)
    if parsed.truncated or parsed.total_items == 0:
        return 0.0
    good = sum((obj.box is not None) + bool(obj.points) for obj in parsed.objects)
    return good / parsed.total_items


def vr_format_reward(completions: Sequence[Any], *, mode: str = "reference", **kwargs: Any) -> list[float]:
    """Thinking format (0/1) + segmentation format (<= 2): at most 3.

    Reference quirks: partial sums on an exception midway (``[obj, obj, 5]`` -> 1 + 1.333...), a
    substring test for string items, a dict answer iterating its keys, element types unchecked.

    ``mode="fixed"``: whitespace around the completion is allowed; the answer is read by
    :func:`~segzero_tool.parsing.parse_output` and each listed item earns 1 for a usable box
    (4 finite numbers) and 1 for a usable point, divided by the number of items listed (a single
    object counts as a list of one; non-object items count in the divisor). An empty list, an
    unreadable answer or a truncated one (an unclosed tag or list) earns 0.
    """
    check_mode(mode)
    out = []
    for c in completions:
        text = completion_text(c)
        seg = _segmentation_format_fixed(text) if mode == "fixed" else _segmentation_format(text)
        out.append(thinking_score(text, mode) + seg)
    return out


# --- accuracy --------------------------------------------------------------------------------------


def _batch_iou(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    x11, y11, x12, y12 = np.split(boxes1, 4, axis=1)  # raises on a 1-D array, e.g. from []
    x21, y21, x22, y22 = np.split(boxes2, 4, axis=1)
    xa = np.maximum(x11, np.transpose(x21))
    ya = np.maximum(y11, np.transpose(y21))
    xb = np.minimum(x12, np.transpose(x22))
    yb = np.minimum(y12, np.transpose(y22))
    inter = np.maximum(0, xb - xa + 1) * np.maximum(0, yb - ya + 1)
    area1 = (x12 - x11 + 1) * (y12 - y11 + 1)
    area2 = (x22 - x21 + 1) * (y22 - y21 + 1)
    union = area1 + np.transpose(area2) - inter
    return inter / union


def _batch_l1(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    return np.mean(np.abs(boxes1[:, np.newaxis, :] - boxes2[np.newaxis, :, :]), axis=2)


def _batch_point_dist(points1: np.ndarray, points2: np.ndarray) -> np.ndarray:
    diff = points1[:, np.newaxis, :] - points2[np.newaxis, :, :]
    return np.sqrt(np.sum(diff ** 2, axis=2))


def _batch_points_in_box(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x_ok = (points[:, 0] >= boxes[:, 0]) & (points[:, 0] <= boxes[:, 2])
    y_ok = (points[:, 1] >= boxes[:, 1]) & (points[:, 1] <= boxes[:, 3])
    return x_ok & y_ok


def _matched_accuracy(pred_boxes: list[Any], pred_points: list[Any], gt_boxes: list[Any],
                      gt_points: list[Any], n_max: int) -> float:
    from scipy.optimize import linear_sum_assignment

    pb, pp = np.array(pred_boxes), np.array(pred_points)
    gb, gp = np.array(gt_boxes), np.array(gt_points)
    iou = _batch_iou(pb, gb)
    l1 = _batch_l1(pb, gb)
    dist = _batch_point_dist(pp, gp)
    in_box = _batch_points_in_box(pp, pb)  # a row mask: each point against its own predicted box
    score = ((iou > 0.5).astype(float) + (l1 < 10).astype(float)
             + ((dist < 30) & in_box[:, np.newaxis]).astype(float))
    cost = 3.0 - score
    rows, cols = linear_sum_assignment(cost)
    total = len(rows) * 3.0 - cost[rows, cols].sum()
    return float(total / n_max)


def _accuracy_reference(text: str, solution: str) -> float:
    result = 0.0
    try:
        with np.errstate(all="ignore"):
            gt = json.loads(solution)
            gt_boxes = [item["bbox_2d"] for item in gt]
            gt_points = [item["point_2d"] for item in gt]
            answer = reference_answer_block(text)  # the first <answer> block
            if answer is not None:
                data = json.loads(answer)
                pred_boxes = [item["bbox_2d"] for item in data]  # every item, before the cap
                pred_points = [item["point_2d"] for item in data]
                pred_boxes, pred_points = pred_boxes[:MAX_OBJECTS], pred_points[:MAX_OBJECTS]
                gt_boxes, gt_points = gt_boxes[:MAX_OBJECTS], gt_points[:MAX_OBJECTS]
                result = _matched_accuracy(pred_boxes, pred_points, gt_boxes, gt_points,
                                           max(len(pred_boxes), len(gt_boxes)))
    except Exception:  # noqa: BLE001
        pass
    return result


def _accuracy_fixed(text: str, solution: str) -> float:
    gt = parse_visionreasoner_solution(solution)[:MAX_OBJECTS]
    parsed = parse_output(text)
    if parsed.status in (ParseStatus.NO_ANSWER, ParseStatus.INVALID_JSON):
        return 0.0
    listed = min(parsed.total_items, MAX_OBJECTS)
    n_max = max(listed, len(gt))
    if n_max == 0:
        return 3.0  # nothing to find and nothing found
    usable = [o for o in parsed.objects if o.box is not None and o.points][:MAX_OBJECTS]
    if not usable or not gt:
        return 0.0
    with np.errstate(all="ignore"):
        return _matched_accuracy([np.asarray(o.box, float) for o in usable],
                                 [np.asarray(o.points[0], float) for o in usable],
                                 [np.asarray(g["bbox_2d"], float) for g in gt],
                                 [np.asarray(g["point_2d"], float) for g in gt], n_max)


def vr_accuracy_reward(completions: Sequence[Any], solution: Any = None, *, mode: str = "reference",
                       **kwargs: Any) -> list[float]:
    """Hungarian-matched accuracy (<= 3): per pair [IoU > 0.5] + [L1 < 10] + [dist < 30 and the
    point inside its own predicted box], ``scipy.optimize.linear_sum_assignment`` on ``3 - score``,
    matched sum / ``max(M, N)``.

    Reference quirks: +1-pixel boxes, the 120-object cap applied after reading every item (a bad
    item 126 still zeroes the reward), ``[]`` -> 0 even when the ground truth is ``[]``, NaN never
    matches, any error -> 0.

    ``mode="fixed"``: the answer is read by :func:`~segzero_tool.parsing.parse_output` (a single
    object is a list of one); ``M`` is the number of items listed (at most 120), and items the parser
    cannot use as a box plus a point count as unmatched predictions instead of zeroing the
    completion; empty vs empty scores 3; an unreadable answer scores 0.
    """
    check_mode(mode)
    term = _accuracy_fixed if mode == "fixed" else _accuracy_reference
    return per_item(completions, solution, term)


# --- non-repeat ------------------------------------------------------------------------------------


def _non_repeat(text: str) -> float:
    seen: set[str] = set()
    repeats = 0
    for sentence in reference_sentence_fragments(text):
        if sentence in seen:
            repeats += 1
        if repeats >= 2:
            return 0.0
        seen.add(sentence)
    return 1.0


def vr_non_repeat_reward(completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """0 once two fragments of the completion split on ``"."`` (tags and JSON included) repeat an
    earlier fragment, else 1. Float coordinates such as ``10.5`` make fragments that can repeat."""
    return [safe(partial(_non_repeat, completion_text(c))) for c in completions]
