"""The records of a batch job, one JSON object per input row in ``results.jsonl``.

A record carries the row (index, id, image, query, category), whether it could be processed (``status``: ``ok`` or
``error``, with the error and its type), and for processed rows the reasoner's answer (parse status, reasoning, raw
text, issues) and the objects: inclusive pixel boxes of the original image, points, the segmenter's score, the mask
area and the mask as COCO RLE. Records hold no timings, so two engines (or two runs) that process the same rows
write identical records.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..result import SegmentationResult
    from .inputs import BatchRow

#: Fields every record has, in this order.
RECORD_FIELDS = ("index", "id", "image", "query", "category", "status", "error", "error_type", "image_size",
                 "parse_status", "reasoning", "raw_output", "issues", "truncated", "objects")


def _row_fields(row: BatchRow) -> dict[str, Any]:
    return {"index": row.index, "id": row.id, "image": row.image, "query": row.query, "category": row.category}


def error_record(row: BatchRow, error_type: str, message: str, *, image_size: tuple[int, int] | None = None
                 ) -> dict[str, Any]:
    """The record of a row that could not be processed (the job records it and goes on)."""
    return {**_row_fields(row), "status": "error", "error": " ".join(str(message).split())[:2000],
            "error_type": error_type, "image_size": list(image_size) if image_size is not None else None,
            "parse_status": None, "reasoning": None, "raw_output": None, "issues": [], "truncated": False,
            "objects": []}


def result_record(row: BatchRow, result: SegmentationResult) -> dict[str, Any]:
    """The record of a processed row (any parse status: an answer with no objects is a clean empty record)."""
    from ..masks import rle_encode

    objects = []
    for k, obj in enumerate(result.objects):
        score = obj.score if obj.mask is not None else float("nan")
        entry: dict[str, Any] = {
            "index": k,
            "box": list(obj.box) if obj.box is not None else None,
            "points": [list(p) for p in obj.points],
            "score": None if score != score else round(float(score), 6),  # nan -> null
            "area": obj.area,
            "mask": rle_encode(obj.mask) if obj.mask is not None else None,
        }
        if obj.label is not None:
            entry["label"] = obj.label
        objects.append(entry)
    return {**_row_fields(row), "status": "ok", "error": None, "error_type": None,
            "image_size": list(result.image_size), "parse_status": result.parse_status.value,
            "reasoning": result.reasoning, "raw_output": result.raw_output, "issues": list(result.parse_issues),
            "truncated": bool(result.truncated), "objects": objects}


__all__ = ["RECORD_FIELDS", "error_record", "result_record"]
