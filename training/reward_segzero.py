"""Seg-Zero single-object rewards (``seg_restrict.py`` ``seg_strict`` and ``seg.py`` soft keys), at most 5.

Five 0/1 terms: thinking format (:mod:`.reward_common`), answer format (strict or soft keys), box IoU
> 0.5, box mean-L1 < 10, and both points inside the predicted box with an order-invariant mean
distance < 100 (protocol sections 2.4 and 8, single-object rules 1-6).

Reference mode (the default) reproduces the reference code, quirks included:

* The prediction is ``json.loads`` of the first ``{[^}]+}`` anywhere in the completion (inside
  ``<think>``, outside any tags, the first object of a list); nested braces, a ``}`` inside a string
  or the prompt's own single-quoted example fail.
* The ground truth's ``<box>`` and ``<points>`` are read **separately**, each by its own regex (no
  spaces, no signs, no decimals): the IoU and L1 terms need only the box, the point term only the
  points. A part that does not match zeroes only the terms that need it (in the reference a local
  stays unbound and the term's ``except`` returns 0).
* The point term needs the predicted box to have exactly 4 values (else the reference's
  ``content_bbox`` is unbound -> 0), ``int()``-casts the first two values of each point (numeric
  strings accepted, floats truncated), and tests the points against the *predicted* box.
* The IoU's intersection counts only when ``ix1 < ix2 and iy1 < iy2`` (with +1-pixel areas).

``mode="fixed"`` (IoU, L1 and point terms) reads the prediction with the library's parser,
:func:`segzero_tool.parsing.parse_output` (its first object: box and first two points, floats kept,
no ``int()`` truncation; single quotes, code fences and the other repairs the parser makes are
accepted), and the IoU counts touching boxes (``<=``: identical 1-pixel boxes have IoU 1). The
ground truth is read as in reference mode.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from functools import partial
from typing import Any

from segzero_tool.parsing import parse_output, reference_first_brace_object

from .reward_common import check_mode, completion_text, per_item, safe

__all__ = [
    "parse_segzero_solution",
    "segzero_format_soft_reward",
    "segzero_format_strict_reward",
    "segzero_gt_box",
    "segzero_gt_points",
    "segzero_iou_reward",
    "segzero_iou_soft_reward",
    "segzero_l1_reward",
    "segzero_l1_soft_reward",
    "segzero_point_reward",
    "segzero_point_soft_reward",
]

# Ground-truth regexes of the reference: no spaces, no signs, no decimals (quirk single-object 6).
_GT_BOX_RE = re.compile(r"<box>\((\d+),(\d+)\),\((\d+),(\d+)\)</box>")
_GT_POINTS_RE = re.compile(r"<points>\((\d+),(\d+)\),\((\d+),(\d+)\)</points>")


# --- ground truth ------------------------------------------------------------------------------------


def segzero_gt_box(text: Any) -> list[int] | None:
    """The ``<box>(x1,y1),(x2,y2)</box>`` of a Seg-Zero solution, or ``None`` when it does not match."""
    m = _GT_BOX_RE.search(text) if isinstance(text, str) else None
    return None if m is None else [int(v) for v in m.groups()]


def segzero_gt_points(text: Any) -> list[list[int]] | None:
    """The ``<points>(x1,y1),(x2,y2)</points>`` of a Seg-Zero solution as ``[[x1, y1], [x2, y2]]``, or ``None``."""
    m = _GT_POINTS_RE.search(text) if isinstance(text, str) else None
    if m is None:
        return None
    v = [int(g) for g in m.groups()]
    return [[v[0], v[1]], [v[2], v[3]]]


def parse_segzero_solution(text: str) -> tuple[list[int], tuple[list[int], list[int]]]:
    """``"<box>(x1,y1),(x2,y2)</box><points>(x1,y1),(x2,y2)</points>"`` -> ``(box, (p1, p2))``.

    Uses the reference regexes (no spaces, no negative or decimal numbers). The rewards read the two
    parts separately (:func:`segzero_gt_box`, :func:`segzero_gt_points`); this needs both.

    Raises:
        ValueError: the string does not match.
    """
    if not isinstance(text, str):
        raise ValueError(f"a Seg-Zero solution must be a string, got {type(text).__name__}")
    box = segzero_gt_box(text)
    pts = segzero_gt_points(text)
    if box is None or pts is None:
        raise ValueError(f"not a Seg-Zero solution (<box>(x1,y1),(x2,y2)</box><points>(x,y),(x,y)</points>): "
                         f"{text[:120]!r}")
    return box, (pts[0], pts[1])


# --- the prediction, as the reference reads it -------------------------------------------------------


def _first_object(text: str) -> dict[str, Any]:
    """``json.loads`` of the first ``{[^}]+}`` (always a dict when it decodes)."""
    obj = reference_first_brace_object(text)
    if obj is None:
        raise ValueError("no {...} in the completion")
    data = json.loads(obj)  # single quotes (the prompt's own example) fail here
    if not isinstance(data, dict):
        raise ValueError("not an object")
    return data


def _first_key(data: dict[str, Any], needle: str) -> str | None:
    return next((k for k in data if needle in k.lower()), None)


def _reference_box(data: dict[str, Any], soft: bool) -> Any:
    """The predicted box if it has 4 values, else ``None`` (``len()`` of a number raises)."""
    if soft:
        key = _first_key(data, "bbox")
        if key is None:
            return None
    else:
        key = "bbox"  # KeyError when missing, as in seg_restrict.py
    value = data[key]
    return value if len(value) == 4 else None


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
    bbox_key = None
    point_keys = []
    for key in data:
        if "bbox" in key.lower() and bbox_key is None:
            bbox_key = key
        elif "point" in key.lower():  # the first bbox key is never also a point key
            point_keys.append(key)
    if bbox_key is None or len(point_keys) < 2:
        return 0.0
    if len(data[bbox_key]) != 4:  # len() only: a 4-character string passes, a number raises
        return 0.0
    for key in point_keys[:2]:
        if len(data[key]) != 2:
            return 0.0
    return 1.0


def segzero_format_strict_reward(completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """1 if the first ``{[^}]+}`` json-decodes with exactly the keys ``bbox`` (list of 4) and
    ``points_1``, ``points_2`` (lists of 2); element types are not checked (``seg_restrict.py``)."""
    return [safe(partial(_strict_format, completion_text(c))) for c in completions]


def segzero_format_soft_reward(completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """``seg.py``'s soft keys: the first key containing ``bbox`` (case-insensitive) has 4 values and
    the first two of at least two other keys containing ``point`` have 2 values each. Only ``len()``
    is checked (a 4-character string passes as a box), as in ``seg.py``."""
    return [safe(partial(_soft_format, completion_text(c))) for c in completions]


# --- the prediction, as the library reads it (fixed mode) -------------------------------------------


def _fixed_object(text: str) -> tuple[tuple[float, ...] | None, tuple[tuple[float, float], ...]]:
    """The first object :func:`~segzero_tool.parsing.parse_output` finds: ``(box or None, points)``."""
    parsed = parse_output(text)
    if not parsed.objects:
        return None, ()
    obj = parsed.objects[0]
    return obj.box, obj.points


# --- accuracy terms ----------------------------------------------------------------------------------


def _seg_iou(b1: Sequence[Any], b2: Sequence[Any], mode: str = "reference") -> float:
    ix1, iy1 = max(b1[0], b2[0]), max(b1[1], b2[1])
    ix2, iy2 = min(b1[2], b2[2]), min(b1[3], b2[3])
    overlap = (ix1 <= ix2 and iy1 <= iy2) if mode == "fixed" else (ix1 < ix2 and iy1 < iy2)
    inter = (ix2 - ix1 + 1) * (iy2 - iy1 + 1) if overlap else 0
    union = (b1[2] - b1[0] + 1) * (b1[3] - b1[1] + 1) + (b2[2] - b2[0] + 1) * (b2[3] - b2[1] + 1) - inter
    return float(inter) / union  # union 0 -> ZeroDivisionError -> term 0


def _pred_box(text: str, soft: bool, mode: str) -> Any:
    if mode == "fixed":
        return _fixed_object(text)[0]
    return _reference_box(_first_object(text), soft)


def _iou_term(text: str, solution: Any, soft: bool, mode: str) -> float:
    gt_box = segzero_gt_box(solution)
    bbox = _pred_box(text, soft, mode)
    if gt_box is None or bbox is None:
        return 0.0
    return 1.0 if _seg_iou(bbox, gt_box, mode) > 0.5 else 0.0


def _l1_term(text: str, solution: Any, soft: bool, mode: str) -> float:
    gt_box = segzero_gt_box(solution)
    bbox = _pred_box(text, soft, mode)
    if gt_box is None or bbox is None:
        return 0.0
    l1 = (abs(bbox[0] - gt_box[0]) + abs(bbox[1] - gt_box[1]) + abs(bbox[2] - gt_box[2])
          + abs(bbox[3] - gt_box[3])) / 4
    return 1.0 if l1 < 10 else 0.0


def _reference_points(data: dict[str, Any], soft: bool) -> tuple[list[int], list[int]] | None:
    if soft:
        keys = [k for k in data if "points" in k.lower()][:2]  # the format check counts "point"
        if len(keys) != 2:
            return None
    else:
        keys = ["points_1", "points_2"]
    p1, p2 = data[keys[0]], data[keys[1]]
    # int() of the first two values: numeric strings accepted, floats truncated, extra values ignored
    return [int(p1[0]), int(p1[1])], [int(p2[0]), int(p2[1])]


def _inside(p: Sequence[Any], box: Sequence[Any]) -> bool:
    return box[0] <= p[0] <= box[2] and box[1] <= p[1] <= box[3]


def _mean_point_distance(pred: Sequence[Sequence[Any]], gt: Sequence[Sequence[Any]]) -> float:
    def d(a: Sequence[Any], b: Sequence[Any]) -> float:
        return math.sqrt((a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2)

    return min(d(pred[0], gt[0]) + d(pred[1], gt[1]), d(pred[0], gt[1]) + d(pred[1], gt[0])) / 2


def _point_term(text: str, solution: Any, soft: bool, mode: str) -> float:
    gt_points = segzero_gt_points(solution)
    if mode == "fixed":
        bbox, points = _fixed_object(text)
        if bbox is None or len(points) < 2:
            return 0.0
        p1, p2 = points[0], points[1]
    else:
        data = _first_object(text)
        bbox = _reference_box(data, soft)
        read = _reference_points(data, soft)
        if read is None or bbox is None:  # the reference's content_bbox is unbound -> 0
            return 0.0
        p1, p2 = read
    if not (_inside(p1, bbox) and _inside(p2, bbox)):
        return 0.0
    if gt_points is None:
        return 0.0
    return 1.0 if _mean_point_distance((p1, p2), gt_points) < 100 else 0.0


def segzero_iou_reward(completions: Sequence[Any], solution: Any = None, *, mode: str = "reference",
                       **kwargs: Any) -> list[float]:
    """1 if IoU(pred ``bbox``, gt ``<box>``) > 0.5 with +1-pixel areas; the gt ``<points>`` are not needed.

    Reference: the intersection counts only when ``ix1 < ix2 and iy1 < iy2``, so identical 1-pixel
    boxes, or boxes sharing one column, score 0. ``mode="fixed"``: the box read by
    :func:`~segzero_tool.parsing.parse_output`, and ``<=`` (identical boxes: IoU 1).
    """
    check_mode(mode)
    return per_item(completions, solution, lambda t, s: _iou_term(t, s, False, mode))


def segzero_l1_reward(completions: Sequence[Any], solution: Any = None, *, mode: str = "reference",
                      **kwargs: Any) -> list[float]:
    """1 if the mean absolute difference of the 4 box coordinates to the gt ``<box>`` is < 10 pixels.

    ``mode="fixed"``: the box read by :func:`~segzero_tool.parsing.parse_output`.
    """
    check_mode(mode)
    return per_item(completions, solution, lambda t, s: _l1_term(t, s, False, mode))


def segzero_point_reward(completions: Sequence[Any], solution: Any = None, *, mode: str = "reference",
                         **kwargs: Any) -> list[float]:
    """1 if both ``int()``-cast points lie inside the *predicted* box (inclusive; the box must have 4
    values) and the order-invariant mean Euclidean distance to the gt ``<points>`` is < 100 pixels;
    the gt ``<box>`` is not needed.

    ``mode="fixed"``: box and first two points read by :func:`~segzero_tool.parsing.parse_output`
    (floats, not truncated).
    """
    check_mode(mode)
    return per_item(completions, solution, lambda t, s: _point_term(t, s, False, mode))


def segzero_iou_soft_reward(completions: Sequence[Any], solution: Any = None, *, mode: str = "reference",
                            **kwargs: Any) -> list[float]:
    """:func:`segzero_iou_reward` reading the first key containing ``bbox`` (``seg.py``)."""
    check_mode(mode)
    return per_item(completions, solution, lambda t, s: _iou_term(t, s, True, mode))


def segzero_l1_soft_reward(completions: Sequence[Any], solution: Any = None, *, mode: str = "reference",
                           **kwargs: Any) -> list[float]:
    """:func:`segzero_l1_reward` reading the first key containing ``bbox`` (``seg.py``)."""
    check_mode(mode)
    return per_item(completions, solution, lambda t, s: _l1_term(t, s, True, mode))


def segzero_point_soft_reward(completions: Sequence[Any], solution: Any = None, *, mode: str = "reference",
                              **kwargs: Any) -> list[float]:
    """:func:`segzero_point_reward` reading the first two keys containing ``points`` (``seg.py``)."""
    check_mode(mode)
    return per_item(completions, solution, lambda t, s: _point_term(t, s, True, mode))
