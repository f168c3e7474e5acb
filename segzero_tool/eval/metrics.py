"""gIoU, cIoU and box accuracy exactly as the reference evaluations compute them (protocol section 3).

Per sample, on full-resolution masks: ``I = |pred AND gt|``, ``U = |pred OR gt|``.

* **gIoU** = mean over the counted samples of ``I / U``; **cIoU** = ``sum(I) / sum(U)`` over the same
  samples (0 when that sum is 0, as the reference prints when every sample was skipped).
* **A failed sample** (the answer did not parse, the image could not be read) is recorded as
  ``I = 0, U = |GT|`` and always counted (IoU 0, even when the ground truth is empty).
* **Empty union** (a sample that ran, with an empty prediction and an empty ground truth):
  ``"skip"`` (Seg-Zero repository: the sample is in neither gIoU nor cIoU) or ``"zero"``
  (VisionReasoner repository: counted with IoU 0).
* **Box accuracy @0.5** = share of counted samples with a ground-truth box for which *any* predicted
  box has IoU > 0.5 with it; boxes are ``(x1, y1, x2, y2)`` and the box IoU has **no +1** (unlike
  the training reward), as the reference evaluation computes it. Failed samples score 0.

When no sample is counted, gIoU is ``nan`` (``np.mean([])`` in the reference) and cIoU is 0.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

EmptyUnion = Literal["skip", "zero"]
EMPTY_UNION_CONVENTIONS: dict[str, str] = {
    "skip": "skip (Seg-Zero repository: a sample with an empty union is in neither gIoU nor cIoU)",
    "zero": "zero (VisionReasoner repository: a sample with an empty union counts as IoU 0)",
}
FAILURE_CONVENTION = "a failed sample counts as I = 0, U = |GT| (IoU 0, always counted)"
BOX_CONVENTION = "hit when any predicted box has IoU > 0.5 with the ground-truth box (x1, y1, x2, y2; no +1)"
BOX_IOU_THRESHOLD = 0.5


def check_empty_union(value: str) -> EmptyUnion:
    if value not in EMPTY_UNION_CONVENTIONS:
        raise ValueError(f"empty_union must be 'skip' or 'zero', got {value!r}")
    return value  # type: ignore[return-value]


def intersection_union(pred: np.ndarray, gt: np.ndarray) -> tuple[int, int]:
    """``(|pred AND gt|, |pred OR gt|)`` of two ``(H, W)`` masks of the same shape."""
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    p = pred.astype(bool, copy=False)
    g = gt.astype(bool, copy=False)
    inter = int(np.count_nonzero(p & g))
    return inter, int(np.count_nonzero(p)) + int(np.count_nonzero(g)) - inter


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two ``(x1, y1, x2, y2)`` boxes with areas ``(x2 - x1) * (y2 - y1)`` (no +1)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def box_hit(pred_boxes: Iterable[Sequence[float]], gt_box: Sequence[float] | None,
            threshold: float = BOX_IOU_THRESHOLD) -> bool | None:
    """``True`` when any predicted box has IoU ``> threshold`` with ``gt_box``; ``None`` without one."""
    if gt_box is None:
        return None
    return any(box_iou(b, gt_box) > threshold for b in pred_boxes)


def sample_iou(intersection: int, union: int, *, failed: bool = False,
               empty_union: EmptyUnion = "skip") -> float | None:
    """The IoU a sample contributes to gIoU, or ``None`` when the convention skips it."""
    if union == 0:
        return 0.0 if failed or empty_union == "zero" else None
    return intersection / union


@dataclass
class IoUAccumulator:
    """Running gIoU / cIoU / box accuracy under one empty-union convention."""

    empty_union: EmptyUnion = "skip"
    samples: int = 0
    counted: int = 0
    skipped: int = 0
    failed: int = 0
    sum_iou: float = 0.0
    sum_intersection: int = 0
    sum_union: int = 0
    box_samples: int = 0
    box_hits: int = 0
    _ious: list[float] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        check_empty_union(self.empty_union)

    def add(self, intersection: int, union: int, *, failed: bool = False,
            box_hit: bool | None = None) -> float | None:
        """Add one sample; returns the IoU it counted with, or ``None`` when skipped."""
        if failed:
            intersection = 0  # the penalty record: U stays |GT|
        self.samples += 1
        self.failed += int(failed)
        iou = sample_iou(intersection, union, failed=failed, empty_union=self.empty_union)
        if iou is None:
            self.skipped += 1
            return None
        self.counted += 1
        self._ious.append(iou)
        self.sum_intersection += int(intersection)
        self.sum_union += int(union)
        if box_hit is not None:
            self.box_samples += 1
            self.box_hits += int(bool(box_hit) and not failed)
        return iou

    @property
    def giou(self) -> float:
        """Mean per-sample IoU (``nan`` when nothing was counted)."""
        # summed in insertion order, as np.mean over the reference's list
        return float(np.mean(self._ious)) if self._ious else math.nan

    @property
    def ciou(self) -> float:
        return self.sum_intersection / self.sum_union if self.sum_union > 0 else 0.0

    @property
    def box_accuracy(self) -> float | None:
        return self.box_hits / self.box_samples if self.box_samples else None


def _group_of(record: Mapping[str, Any]) -> str | None:
    s = record.get("is_sentence")
    if s is None:
        return None
    return "long" if s else "short"


#: Record statuses. ``invalid_gt`` records are excluded from every metric (the ground truth itself
#: could not be read or does not match the image), and so are ``skipped`` records (reference mode,
#: multi-object formats: the image could not be read or the segmenter raised).
SCORED_STATUSES = ("ok", "failed", "error")


def summarize(records: Iterable[Mapping[str, Any]], empty_union: EmptyUnion = "skip") -> dict[str, dict[str, Any]]:
    """Summaries of per-sample records (see :mod:`segzero_tool.eval.runner`) overall and, when the
    dataset says which queries are sentences, for ``short`` and ``long`` queries.

    Returns:
        ``{"overall": {...}, "short": {...}, "long": {...}}`` (the last two only when known). Each
        summary has ``samples``, ``counted``, ``skipped_empty_union``, ``failed``, ``errors``,
        ``invalid_gt``, ``skipped_errors``, ``giou`` (``nan`` when nothing is counted), ``ciou``, ``intersection``,
        ``union``, ``box_accuracy`` (``None`` without ground-truth boxes), ``box_samples``,
        ``parse_status`` counts and ``mean_latency_ms``.
    """
    check_empty_union(empty_union)
    groups: dict[str, list[Mapping[str, Any]]] = {"overall": []}
    for rec in records:
        groups["overall"].append(rec)
        g = _group_of(rec)
        if g is not None:
            groups.setdefault(g, []).append(rec)
    out: dict[str, dict[str, Any]] = {}
    for name in ("overall", "short", "long"):
        if name in groups:
            out[name] = _summarize_group(groups[name], empty_union)
    return out


def _summarize_group(records: Sequence[Mapping[str, Any]], empty_union: EmptyUnion) -> dict[str, Any]:
    acc = IoUAccumulator(empty_union)
    statuses: Counter[str] = Counter()
    parse: Counter[str] = Counter()
    latencies = []
    for rec in records:
        status = rec.get("status", "ok")
        statuses[status] += 1
        if rec.get("parse_status"):
            parse[str(rec["parse_status"])] += 1
        if status not in SCORED_STATUSES:
            continue
        acc.add(int(rec["intersection"]), int(rec["union"]), failed=status != "ok", box_hit=rec.get("box_hit"))
        if rec.get("latency_ms") is not None:
            latencies.append(float(rec["latency_ms"]))
    return {
        "samples": len(records),
        "counted": acc.counted,
        "skipped_empty_union": acc.skipped,
        "failed": statuses["failed"],
        "errors": statuses["error"],
        "invalid_gt": statuses["invalid_gt"],
        "skipped_errors": statuses["skipped"],
        "giou": acc.giou,
        "ciou": acc.ciou,
        "intersection": acc.sum_intersection,
        "union": acc.sum_union,
        "box_accuracy": acc.box_accuracy,
        "box_samples": acc.box_samples,
        "parse_status": dict(sorted(parse.items())),
        "mean_latency_ms": float(np.mean(latencies)) if latencies else None,
    }


__all__ = [
    "BOX_CONVENTION",
    "BOX_IOU_THRESHOLD",
    "EMPTY_UNION_CONVENTIONS",
    "FAILURE_CONVENTION",
    "EmptyUnion",
    "IoUAccumulator",
    "box_hit",
    "box_iou",
    "check_empty_union",
    "intersection_union",
    "sample_iou",
    "summarize",
]
