"""Scoring one batch of samples: one record per sample (see :mod:`segzero_tool.eval.runner`).

Record statuses:

* ``ok``: scored with the prediction's ``I`` and ``U``;
* ``failed``: the answer did not parse (in reference mode: the reference scripts cannot read it):
  ``I = 0, U = |GT|``;
* ``error``: the image could not be read, the query is unusable or (reference mode, ``segzero``
  format) the segmenter raised: ``I = 0, U = |GT|`` as well;
* ``skipped``: reference mode, multi-object formats: the image could not be read or the segmenter
  raised; excluded from every metric, as the reference evaluation skips such samples, and counted in
  the report;
* ``invalid_gt``: the ground truth could not be read or does not match the image size: excluded from
  every metric and listed in the summary.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..cancel import OperationCancelled
from ..errors import SegZeroError
from ..parsing import ParseStatus
from ..prompts import TRAIN_STRIP_CHARS, PromptFormat, validate_query
from ..reference_parse import Compat, check_compat
from .datasets import EvalSample
from .metrics import box_hit, intersection_union

logger = logging.getLogger("segzero_tool.eval.runner")

#: Parse outcomes that the reference evaluation scores as a failure (I = 0, U = |GT|).
FAILED_PARSE_STATUSES = frozenset({ParseStatus.NO_ANSWER, ParseStatus.INVALID_JSON, ParseStatus.INVALID_OBJECTS})


def _base_record(sample: EvalSample, index: int) -> dict[str, Any]:
    return {
        "id": sample.id,
        "index": index,
        "query": sample.query,
        "is_sentence": sample.is_sentence,
        "gt_box": list(sample.gt_box) if sample.gt_box is not None else None,
        "image_size": None,
    }


def _penalty(rec: dict[str, Any], status: str, gt_area: int, message: str | None) -> dict[str, Any]:
    rec.update({
        "status": status, "parse_status": None, "parse_issues": [], "error": message,
        "gt_area": gt_area, "pred_area": 0, "intersection": 0, "union": gt_area,
        "iou": 0.0 if gt_area else None, "n_objects": 0, "pred_boxes": [],
        "box_hit": False if rec["gt_box"] is not None else None,
        "latency_ms": None, "timings_ms": {}, "reasoning": None, "raw_output": None, "pred_rle": None,
    })
    return rec


def _excluded(rec: dict[str, Any], status: str, message: str, gt_area: int | None = None) -> dict[str, Any]:
    """A record in no metric: ``invalid_gt`` or ``skipped``."""
    rec.update({
        "status": status, "parse_status": None, "parse_issues": [], "error": message,
        "gt_area": gt_area, "pred_area": None, "intersection": None, "union": None, "iou": None,
        "n_objects": 0, "pred_boxes": [], "box_hit": None, "latency_ms": None, "timings_ms": {},
        "reasoning": None, "raw_output": None, "pred_rle": None,
    })
    return rec


def _invalid_gt(rec: dict[str, Any], message: str) -> dict[str, Any]:
    return _excluded(rec, "invalid_gt", message)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def skips_errors(compat: Compat, prompt_format: str | PromptFormat) -> bool:
    """Whether an image or segmenter error skips the sample (reference mode, multi-object formats)."""
    return compat == "reference" and PromptFormat.parse(prompt_format) is not PromptFormat.SEGZERO


def _scored(rec: dict[str, Any], res: Any, gt: np.ndarray) -> dict[str, Any]:
    from ..masks import rle_encode

    pred = res.union_mask
    failed = res.parse_status in FAILED_PARSE_STATUSES
    gt_area = int(np.count_nonzero(gt))
    inter, union = (0, gt_area) if failed else intersection_union(pred, gt)
    boxes = [[int(v) for v in b] for b in res.boxes.tolist()]
    # the box accuracy uses the boxes SAM2 was prompted with (in reference mode: the reference's)
    prompted = [[int(v) for v in o.segmenter_prompt[0]] for o in res.objects if o.segmenter_prompt[0] is not None]
    hit = box_hit(prompted, rec["gt_box"])
    rec.update({
        "status": "failed" if failed else "ok",
        "parse_status": res.parse_status.value,
        "parse_issues": list(res.parse_issues),
        "error": None,
        "gt_area": gt_area,
        "pred_area": int(np.count_nonzero(pred)),
        "intersection": inter,
        "union": union,
        "iou": inter / union if union else None,
        "n_objects": len(res.objects),
        "pred_boxes": boxes,
        "box_hit": (False if failed else hit) if hit is not None else None,
        "latency_ms": round(float(res.timings.get("total", 0.0)), 3),
        "timings_ms": {key: round(float(v), 3) for key, v in res.timings.items()},
        "reasoning": res.reasoning,
        "raw_output": res.raw_output,
        "pred_rle": rle_encode(pred),
    })
    return rec


def evaluate_batch(pipeline: Any, samples: Sequence[tuple[int, EvalSample]], *, strip_chars: str,
                   compat: Compat = "repair") -> list[dict]:
    """Run ``samples`` (``(dataset index, sample)`` pairs) through ``pipeline.segment_many`` once and
    return one record per sample, in order.

    ``repair``: the segmenter runs inside ``segment_many``; its errors stop the run. ``reference``: the
    reasoner gets the whole batch, then each result gets its masks on its own, so a segmenter error
    costs only its sample: skipped (multi-object formats) or a penalty (``segzero`` format), as the
    reference evaluations do. Errors of the reasoner stop the run in both modes.
    """
    compat = check_compat(compat)
    skip = skips_errors(compat, pipeline.prompt_format)
    records: list[dict[str, Any] | None] = [None] * len(samples)
    jobs: list[tuple[int, Any, str, np.ndarray, dict[str, Any]]] = []
    for k, (index, sample) in enumerate(samples):
        rec = _base_record(sample, index)
        try:
            gt = sample.load_gt_mask()
        except OperationCancelled:
            raise
        except (SegZeroError, OSError, ValueError) as exc:
            records[k] = _invalid_gt(rec, f"ground truth unreadable: {_one_line(exc)}")
            continue
        gt_area = int(np.count_nonzero(gt))
        try:
            image = sample.load_image(max_pixels=pipeline.max_pixels)
        except OperationCancelled:
            raise
        except (SegZeroError, OSError, ValueError) as exc:
            message = f"image unreadable: {_one_line(exc)}"
            records[k] = _excluded(rec, "skipped", message, gt_area) if skip else _penalty(rec, "error", gt_area,
                                                                                             message)
            continue
        if gt.shape != (image.height, image.width):
            records[k] = _invalid_gt(rec, f"ground truth is {gt.shape[1]}x{gt.shape[0]} but the image is "
                                          f"{image.width}x{image.height}")
            continue
        query = sample.query.lower().strip(strip_chars) if strip_chars != TRAIN_STRIP_CHARS else sample.query
        try:
            validate_query(query, pipeline.max_query_chars)
        except SegZeroError as exc:
            records[k] = _penalty(rec, "error", gt_area, f"query unusable: {_one_line(exc)}")
            continue
        rec["image_size"] = [image.width, image.height]
        jobs.append((k, image, query, gt, rec))
    if not jobs:
        return [r for r in records if r is not None]
    items = [(image, query) for _, image, query, _, _ in jobs]
    if compat == "repair":
        results = pipeline.segment_many(items, progress=False, compat="repair")
        for (k, _image, _query, gt, rec), res in zip(jobs, results, strict=True):
            records[k] = _scored(rec, res, gt)
        return [r for r in records if r is not None]
    results = pipeline.segment_many(items, progress=False, compat="reference", compute_masks=False)
    for (k, _image, _query, gt, rec), res in zip(jobs, results, strict=True):
        try:
            pipeline.add_masks(res)
        except OperationCancelled:
            raise
        except Exception as exc:  # noqa: BLE001 - the reference catches every segmentation error
            message = f"segmentation error: {_one_line(exc)}"
            logger.warning("sample %s: %s", rec["id"], message)
            gt_area = int(np.count_nonzero(gt))
            rec = _excluded(rec, "skipped", message, gt_area) if skip else _penalty(rec, "error", gt_area, message)
            rec.update({"parse_status": res.parse_status.value, "parse_issues": list(res.parse_issues),
                        "reasoning": res.reasoning, "raw_output": res.raw_output})
            records[k] = rec
            continue
        records[k] = _scored(rec, res, gt)
    return [r for r in records if r is not None]


__all__ = ["FAILED_PARSE_STATUSES", "evaluate_batch", "skips_errors"]
