"""Evaluation: ReasonSeg / RefCOCO gIoU and cIoU, resumable runs, reports with pictures.

>>> from segzero_tool import SegZeroPipeline
>>> from segzero_tool.eval import load_eval_dataset, run_evaluation
>>> ds = load_eval_dataset("Ricky06662/ReasonSeg_val")            # or a LISA folder, a .jsonl file
>>> res = run_evaluation(SegZeroPipeline.from_pretrained(), ds, "runs/reasonseg-val")
>>> res.summary["overall"]["giou"], res.summary["overall"]["ciou"]

Importing this package loads numpy only; OpenCV, Pillow, ``datasets`` and tqdm load when used.
"""

from __future__ import annotations

from .datasets import (
    DatasetError,
    EvalDataset,
    EvalSample,
    from_hf_dataset,
    load_eval_dataset,
    load_jsonl,
    load_lisa_folder,
    rasterize_lisa_shapes,
)
from .metrics import IoUAccumulator, box_hit, box_iou, intersection_union, sample_iou, summarize
from .runner import EvalResult, EvalRunError, load_run, read_records, run_evaluation

__all__ = [
    "DatasetError",
    "EvalDataset",
    "EvalResult",
    "EvalRunError",
    "EvalSample",
    "IoUAccumulator",
    "box_hit",
    "box_iou",
    "from_hf_dataset",
    "intersection_union",
    "load_eval_dataset",
    "load_jsonl",
    "load_lisa_folder",
    "load_run",
    "rasterize_lisa_shapes",
    "read_records",
    "run_evaluation",
    "sample_iou",
    "summarize",
]
