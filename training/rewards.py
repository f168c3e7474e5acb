"""GRPO reward functions of Seg-Zero and VisionReasoner, as TRL reward functions.

Every function has TRL's signature ``f(completions, **kwargs) -> list[float]``: ``completions`` are
strings or conversational message lists (``[{"role": "assistant", "content": ...}]``, the content a
string or a list of ``{"type": "text", "text": ...}`` parts), and dataset columns arrive as keyword
lists (``solution=[...]``). A function's ``__name__`` is the key TRL logs it under.

Default mode is **reference**: the arithmetic and the quirks of the reference reward code
(Seg-Zero ``seg_restrict.py`` / ``seg.py``, VisionReasoner ``vision_reasoner.py``), protocol sections
2.4, 2.5 and 8, are reproduced exactly so that training numbers compare with the papers. A few
functions take ``mode="fixed"`` for saner semantics (documented per function); the trainer selects
them through :func:`get_reward_funcs`.

Model text is taken apart only by :mod:`segzero_tool.parsing` (the reference extraction helpers and
:func:`~segzero_tool.parsing.parse_output`); ground-truth ``solution`` strings are parsed here.

Seg-Zero (single object, at most 5): thinking format, answer format (strict or soft keys), box IoU
> 0.5, box mean-L1 < 10, points inside the predicted box with order-invariant mean distance < 100.
VisionReasoner (multi object, at most 7): format (thinking 0/1 + per-item segmentation format <= 2),
Hungarian-matched accuracy <= 3, non-repeat 0/1.

:func:`mask_point_reward` is **our extension, not in either paper**: the share of predicted points
that fall inside the ground-truth mask.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from functools import partial, update_wrapper
from typing import Any

import numpy as np

from segzero_tool.parsing import (
    format_matches,
    parse_output,
    reference_answer_block,
    reference_first_brace_object,
    reference_sentence_fragments,
)

__all__ = [
    "MAX_OBJECTS",
    "REWARD_SETS",
    "SEGZERO_REWARDS",
    "SEGZERO_SOFT_REWARDS",
    "VISIONREASONER_REWARDS",
    "completion_text",
    "get_reward_funcs",
    "mask_point_reward",
    "parse_segzero_solution",
    "parse_visionreasoner_solution",
    "segzero_format_soft_reward",
    "segzero_format_strict_reward",
    "segzero_iou_reward",
    "segzero_iou_soft_reward",
    "segzero_l1_reward",
    "segzero_l1_soft_reward",
    "segzero_point_reward",
    "segzero_point_soft_reward",
    "thinking_format_reward",
    "vr_accuracy_reward",
    "vr_format_reward",
    "vr_non_repeat_reward",
]

#: VisionReasoner caps both object lists at this many (after reading every item).
MAX_OBJECTS = 120

MODES = ("reference", "fixed")

# Ground-truth regexes of the reference: no spaces, no signs, no decimals (quirk single-object 6).
_GT_BOX_RE = re.compile(r"<box>\((\d+),(\d+)\),\((\d+),(\d+)\)</box>")
_GT_POINTS_RE = re.compile(r"<points>\((\d+),(\d+)\),\((\d+),(\d+)\)</points>")


# --- plumbing ----------------------------------------------------------------------------------------


def completion_text(completion: Any) -> str:
    """The text of one completion: a string, a message dict, or a list of messages (last assistant)."""
    if isinstance(completion, str):
        return completion
    message: Any = completion
    if isinstance(completion, (list, tuple)):
        if not completion:
            return ""
        assistants = [m for m in completion if isinstance(m, dict) and m.get("role") == "assistant"]
        message = assistants[-1] if assistants else completion[-1]
    content = message.get("content") if isinstance(message, dict) else message
    if isinstance(content, str):
        return content
    if isinstance(content, (list, tuple)):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and part.get("type", "text") == "text" and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return "".join(parts)
    return ""


def _check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"unknown reward mode {mode!r}; choose one of: {', '.join(MODES)}")
    return mode


def _column(kwargs_value: Any, n: int, name: str) -> list[Any]:
    if kwargs_value is None:
        raise ValueError(f"this reward needs the dataset column {name!r}")
    if isinstance(kwargs_value, str) or not hasattr(kwargs_value, "__len__"):
        return [kwargs_value] * n
    values = list(kwargs_value)
    if len(values) != n:
        raise ValueError(f"column {name!r} has {len(values)} values for {n} completions")
    return values


def _safe(fn: Callable[[], float]) -> float:
    """Any exception -> 0.0, as every reference term does."""
    try:
        return float(fn())
    except Exception:  # noqa: BLE001 - the reference swallows everything
        return 0.0


# --- ground truth ------------------------------------------------------------------------------------


def parse_segzero_solution(text: str) -> tuple[list[int], tuple[list[int], list[int]]]:
    """``"<box>(x1,y1),(x2,y2)</box><points>(x1,y1),(x2,y2)</points>"`` -> ``(box, (p1, p2))``.

    Uses the reference regexes (no spaces, no negative or decimal numbers).

    Raises:
        ValueError: the string does not match.
    """
    if not isinstance(text, str):
        raise ValueError(f"a Seg-Zero solution must be a string, got {type(text).__name__}")
    box = _GT_BOX_RE.search(text)
    pts = _GT_POINTS_RE.search(text)
    if box is None or pts is None:
        raise ValueError(f"not a Seg-Zero solution (<box>(x1,y1),(x2,y2)</box><points>(x,y),(x,y)</points>): "
                         f"{text[:120]!r}")
    b = [int(v) for v in box.groups()]
    p = [int(v) for v in pts.groups()]
    return b, ([p[0], p[1]], [p[2], p[3]])


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


# --- Seg-Zero single object ------------------------------------------------------------------------


def _thinking(text: str, mode: str = "reference") -> float:
    if mode == "fixed":
        return 1.0 if isinstance(text, str) and format_matches(text.strip()) else 0.0
    return 1.0 if format_matches(text) else 0.0


def thinking_format_reward(completions: Sequence[Any], *, mode: str = "reference", **kwargs: Any) -> list[float]:
    """1 if the completion fully matches ``<think>.*?</think>\\s*<answer>.*?</answer>`` (DOTALL), else 0.

    Reference: ``re.fullmatch``, so leading text, or a trailing space or newline, scores 0; two
    ``<answer>`` blocks still match. ``mode="fixed"`` strips surrounding whitespace first.
    """
    _check_mode(mode)
    return [_thinking(completion_text(c), mode) for c in completions]


def _first_object(text: str) -> dict[str, Any]:
    obj = reference_first_brace_object(text)
    if obj is None:
        raise ValueError("no {...} in the completion")
    data = json.loads(obj)  # single quotes (the prompt's own example) fail here
    if not isinstance(data, dict):
        raise ValueError("not an object")
    return data


def _soft_keys(data: dict[str, Any], needle: str) -> list[str]:
    return [k for k in data if needle in k.lower()]


def _strict_format(text: str) -> float:
    data = _first_object(text)
    for key in ("bbox", "points_1", "points_2"):
        if key not in data:
            return 0.0
    if not isinstance(data["bbox"], list) or len(data["bbox"]) != 4:
        return 0.0
    for key in ("points_1", "points_2"):
        if not isinstance(data[key], list) or len(data[key]) != 2:
            return 0.0
    return 1.0


def _soft_format(text: str) -> float:
    data = _first_object(text)
    bbox_keys = _soft_keys(data, "bbox")
    point_keys = _soft_keys(data, "point")
    if not bbox_keys or len(point_keys) < 2:
        return 0.0
    bbox = data[bbox_keys[0]]
    if not isinstance(bbox, list) or len(bbox) != 4:
        return 0.0
    for key in point_keys[:2]:
        if not isinstance(data[key], list) or len(data[key]) != 2:
            return 0.0
    return 1.0


def segzero_format_strict_reward(completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """1 if the first ``{[^}]+}`` json-decodes with exactly the keys ``bbox`` (list of 4) and
    ``points_1``, ``points_2`` (lists of 2); element types are not checked (``seg_restrict.py``)."""
    return [_safe(partial(_strict_format, completion_text(c))) for c in completions]


def segzero_format_soft_reward(completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """``seg.py``'s soft keys: the first key containing ``bbox`` (case-insensitive) is a list of 4 and
    the first two of at least two keys containing ``point`` are lists of 2."""
    return [_safe(partial(_soft_format, completion_text(c))) for c in completions]


def _seg_iou(b1: Sequence[Any], b2: Sequence[Any], mode: str = "reference") -> float:
    ix1, iy1 = max(b1[0], b2[0]), max(b1[1], b2[1])
    ix2, iy2 = min(b1[2], b2[2]), min(b1[3], b2[3])
    overlap = (ix1 <= ix2 and iy1 <= iy2) if mode == "fixed" else (ix1 < ix2 and iy1 < iy2)
    inter = (ix2 - ix1 + 1) * (iy2 - iy1 + 1) if overlap else 0
    union = (b1[2] - b1[0] + 1) * (b1[3] - b1[1] + 1) + (b2[2] - b2[0] + 1) * (b2[3] - b2[1] + 1) - inter
    return float(inter) / union  # union 0 -> ZeroDivisionError -> term 0


def _bbox_of(data: dict[str, Any], soft: bool) -> Any:
    if soft:
        keys = _soft_keys(data, "bbox")
        return data[keys[0]]
    return data["bbox"]


def _iou_term(text: str, solution: str, soft: bool, mode: str) -> float:
    gt_box, _ = parse_segzero_solution(solution)
    bbox = _bbox_of(_first_object(text), soft)
    if len(bbox) != 4:
        return 0.0
    return 1.0 if _seg_iou(bbox, gt_box, mode) > 0.5 else 0.0


def _l1_term(text: str, solution: str, soft: bool) -> float:
    gt_box, _ = parse_segzero_solution(solution)
    bbox = _bbox_of(_first_object(text), soft)
    if len(bbox) != 4:
        return 0.0
    l1 = sum(abs(bbox[i] - gt_box[i]) for i in range(4)) / 4
    return 1.0 if l1 < 10 else 0.0


def _point_term(text: str, solution: str, soft: bool) -> float:
    _, (g1, g2) = parse_segzero_solution(solution)
    data = _first_object(text)
    if soft:
        keys = _soft_keys(data, "points")  # the format check counts "point", this term needs "points"
        if len(keys) < 2:
            return 0.0
        k1, k2 = keys[0], keys[1]
    else:
        k1, k2 = "points_1", "points_2"
    bbox = _bbox_of(data, soft)
    p1 = [int(v) for v in data[k1]]  # numeric strings accepted, floats truncated
    p2 = [int(v) for v in data[k2]]

    def inside(p: list[int]) -> bool:
        return bbox[0] <= p[0] <= bbox[2] and bbox[1] <= p[1] <= bbox[3]

    if not (inside(p1) and inside(p2)):
        return 0.0

    def dist(a: Sequence[Any], b: Sequence[Any]) -> float:
        return math.sqrt((a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2)

    mean = min(dist(p1, g1) + dist(p2, g2), dist(p1, g2) + dist(p2, g1)) / 2
    return 1.0 if mean < 100 else 0.0


def _per_item(completions: Sequence[Any], solution: Any, term: Callable[[str, str], float]) -> list[float]:
    sols = _column(solution, len(completions), "solution")
    return [_safe(partial(term, completion_text(c), s)) for c, s in zip(completions, sols, strict=True)]


def segzero_iou_reward(completions: Sequence[Any], solution: Any = None, *, mode: str = "reference",
                       **kwargs: Any) -> list[float]:
    """1 if IoU(pred ``bbox``, gt box) > 0.5 with +1-pixel areas.

    Reference: the intersection counts only when ``ix1 < ix2 and iy1 < iy2``, so identical 1-pixel
    boxes, or boxes sharing one column, score 0. ``mode="fixed"`` uses ``<=`` (identical boxes: IoU 1).
    """
    _check_mode(mode)
    return _per_item(completions, solution, lambda t, s: _iou_term(t, s, False, mode))


def segzero_l1_reward(completions: Sequence[Any], solution: Any = None, **kwargs: Any) -> list[float]:
    """1 if the mean absolute difference of the 4 box coordinates is < 10 pixels."""
    return _per_item(completions, solution, lambda t, s: _l1_term(t, s, False))


def segzero_point_reward(completions: Sequence[Any], solution: Any = None, **kwargs: Any) -> list[float]:
    """1 if both ``int()``-cast points lie inside the *predicted* box (inclusive) and the
    order-invariant mean Euclidean distance to the gt points is < 100 pixels."""
    return _per_item(completions, solution, lambda t, s: _point_term(t, s, False))


def segzero_iou_soft_reward(completions: Sequence[Any], solution: Any = None, *, mode: str = "reference",
                            **kwargs: Any) -> list[float]:
    """:func:`segzero_iou_reward` reading the first key containing ``bbox`` (``seg.py``)."""
    _check_mode(mode)
    return _per_item(completions, solution, lambda t, s: _iou_term(t, s, True, mode))


def segzero_l1_soft_reward(completions: Sequence[Any], solution: Any = None, **kwargs: Any) -> list[float]:
    """:func:`segzero_l1_reward` reading the first key containing ``bbox`` (``seg.py``)."""
    return _per_item(completions, solution, lambda t, s: _l1_term(t, s, True))


def segzero_point_soft_reward(completions: Sequence[Any], solution: Any = None, **kwargs: Any) -> list[float]:
    """:func:`segzero_point_reward` reading the first two keys containing ``points`` (``seg.py``)."""
    return _per_item(completions, solution, lambda t, s: _point_term(t, s, True))


# --- VisionReasoner multi object -------------------------------------------------------------------


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


_NO_JSON = object()


def _answer_json(text: str) -> Any:
    """The decoded first ``<answer>`` block (fixed mode), or ``_NO_JSON``."""
    answer = reference_answer_block(text)
    if answer is None:
        return _NO_JSON
    try:
        return json.loads(answer)
    except (json.JSONDecodeError, RecursionError):
        return _NO_JSON


def _segmentation_format_fixed(text: str) -> float:
    data = _answer_json(text)
    if data is _NO_JSON or not isinstance(data, list) or not data:
        return 0.0
    good = 0
    for item in data:
        if isinstance(item, dict):
            good += _is_coords(item.get("bbox_2d"), 4)
            good += _is_coords(item.get("point_2d"), 2)
    return good / len(data)


def _is_coords(value: Any, n: int) -> bool:
    return (isinstance(value, list) and len(value) == n
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value))


def vr_format_reward(completions: Sequence[Any], *, mode: str = "reference", **kwargs: Any) -> list[float]:
    """Thinking format (0/1) + segmentation format (<= 2): at most 3.

    Reference quirks: partial sums on an exception midway (``[obj, obj, 5]`` -> 1 + 1.333...), a
    substring test for string items, a dict answer iterating its keys. ``mode="fixed"``: whitespace
    around the completion is allowed, only a list of dicts counts, and numbers must be finite.
    """
    _check_mode(mode)
    out = []
    for c in completions:
        text = completion_text(c)
        seg = _segmentation_format_fixed(text) if mode == "fixed" else _segmentation_format(text)
        out.append(_thinking(text, mode) + seg)
    return out


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
    in_box = _batch_points_in_box(pp, pb)
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
    data = _answer_json(text)
    if data is _NO_JSON:
        return 0.0
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        return 0.0
    data = data[:MAX_OBJECTS]
    n_max = max(len(data), len(gt))
    if n_max == 0:
        return 3.0  # nothing to find and nothing found
    valid = [d for d in data if isinstance(d, dict) and _is_coords(d.get("bbox_2d"), 4)
             and _is_coords(d.get("point_2d"), 2)]
    if not valid or not gt:
        return 0.0
    with np.errstate(all="ignore"):
        return _matched_accuracy([np.asarray(d["bbox_2d"], float) for d in valid],
                                 [np.asarray(d["point_2d"], float) for d in valid],
                                 [np.asarray(g["bbox_2d"], float) for g in gt],
                                 [np.asarray(g["point_2d"], float) for g in gt], n_max)


def vr_accuracy_reward(completions: Sequence[Any], solution: Any = None, *, mode: str = "reference",
                       **kwargs: Any) -> list[float]:
    """Hungarian-matched accuracy (<= 3): per pair [IoU > 0.5] + [L1 < 10] + [dist < 30 and the
    point inside its own predicted box], ``scipy.optimize.linear_sum_assignment`` on ``3 - score``,
    matched sum / ``max(M, N)``.

    Reference quirks: +1-pixel boxes, the 120-object cap applied after reading every item (a bad
    item 126 still zeroes the reward), ``[]`` -> 0 even when the ground truth is ``[]``, NaN never
    matches, any error -> 0. ``mode="fixed"``: empty vs empty scores 3, malformed or non-finite
    items count as unmatched predictions instead of zeroing the completion, a single object is
    accepted as a list of one.
    """
    _check_mode(mode)
    term = _accuracy_fixed if mode == "fixed" else _accuracy_reference
    return _per_item(completions, solution, term)


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
    return [_safe(partial(_non_repeat, completion_text(c))) for c in completions]


# --- our extension -----------------------------------------------------------------------------------


def _mask_array(value: Any) -> np.ndarray:
    if isinstance(value, str):
        value = json.loads(value)
    if isinstance(value, dict) and "counts" in value and "size" in value:
        from segzero_tool.masks import rle_decode

        return rle_decode(value)
    arr = np.asarray(value)
    if arr.ndim != 2:
        raise ValueError(f"a mask must be 2-D, got shape {arr.shape}")
    return arr.astype(bool)


def _mask_points_share(text: str, mask: np.ndarray) -> float:
    parsed = parse_output(text)
    points = [p for obj in parsed.objects for p in obj.points]
    if not points:
        return 0.0
    h, w = mask.shape
    inside = 0
    for x, y in points:
        xi, yi = math.floor(x), math.floor(y)
        if 0 <= xi < w and 0 <= yi < h and mask[yi, xi]:
            inside += 1
    return inside / len(points)


def mask_point_reward(completions: Sequence[Any], mask: Any = None, **kwargs: Any) -> list[float]:
    """**Our extension, in neither paper.** The share (0..1) of predicted points, read by the
    library's parser in the 840 frame, whose pixel lies inside the ground-truth mask.

    ``mask`` is a column of COCO RLE dicts (or their JSON strings) or 2-D bool arrays in the frame.
    No points, an unreadable mask or any error -> 0.
    """
    masks = _column(mask, len(completions), "mask")
    cache: dict[int, np.ndarray] = {}
    out = []
    for c, m in zip(completions, masks, strict=True):
        try:
            key = id(m)
            if key not in cache:
                cache[key] = _mask_array(m)
            out.append(float(_mask_points_share(completion_text(c), cache[key])))
        except Exception:  # noqa: BLE001
            out.append(0.0)
    return out


# --- sets ----------------------------------------------------------------------------------------------

#: Seg-Zero's ``seg_strict`` (the configs' reward): five 0/1 terms, at most 5.
SEGZERO_REWARDS: list[Callable[..., list[float]]] = [
    thinking_format_reward, segzero_format_strict_reward, segzero_iou_reward, segzero_l1_reward,
    segzero_point_reward,
]
#: Seg-Zero's ``seg`` (soft keys): at most 5.
SEGZERO_SOFT_REWARDS: list[Callable[..., list[float]]] = [
    thinking_format_reward, segzero_format_soft_reward, segzero_iou_soft_reward, segzero_l1_soft_reward,
    segzero_point_soft_reward,
]
#: VisionReasoner: format (<= 3) + accuracy (<= 3) + non-repeat (<= 1), at most 7.
VISIONREASONER_REWARDS: list[Callable[..., list[float]]] = [
    vr_format_reward, vr_accuracy_reward, vr_non_repeat_reward,
]

REWARD_SETS: dict[str, list[Callable[..., list[float]]]] = {
    "segzero": SEGZERO_REWARDS,
    "segzero-soft": SEGZERO_SOFT_REWARDS,
    "visionreasoner": VISIONREASONER_REWARDS,
}
EXTRA_REWARDS: dict[str, Callable[..., list[float]]] = {"mask_point": mask_point_reward}

_MODE_AWARE = {thinking_format_reward, segzero_iou_reward, segzero_iou_soft_reward, vr_format_reward,
               vr_accuracy_reward}


def _with_mode(fn: Callable[..., list[float]], mode: str) -> Callable[..., list[float]]:
    if mode == "reference" or fn not in _MODE_AWARE:
        return fn
    wrapped = partial(fn, mode=mode)

    def reward(completions: Sequence[Any], **kwargs: Any) -> list[float]:
        return wrapped(completions, **kwargs)

    update_wrapper(reward, fn)
    reward.__name__ = reward.__qualname__ = f"{fn.__name__}_{mode}"
    return reward


def get_reward_funcs(name: str, *, extra: Sequence[str] = (), mode: str = "reference") -> list[Callable[..., list[float]]]:
    """The reward functions of a named set, plus ``extra`` ones (``"mask_point"``).

    ``mode="fixed"`` swaps in the fixed semantics where a function has them (their log names get a
    ``_fixed`` suffix).

    Raises:
        ValueError: an unknown set, extra or mode (the message lists the choices).
    """
    key = str(name).strip().lower().replace("_", "-")
    if key not in REWARD_SETS:
        raise ValueError(f"unknown reward set {name!r}; choose one of: {', '.join(REWARD_SETS)}")
    _check_mode(mode)
    funcs = [_with_mode(f, mode) for f in REWARD_SETS[key]]
    for e in extra:
        ekey = str(e).strip().lower().replace("-", "_")
        if ekey.endswith("_reward"):
            ekey = ekey[: -len("_reward")]
        if ekey not in EXTRA_REWARDS:
            raise ValueError(f"unknown extra reward {e!r}; choose from: {', '.join(EXTRA_REWARDS)}")
        if EXTRA_REWARDS[ekey] not in funcs:
            funcs.append(EXTRA_REWARDS[ekey])
    return funcs
