"""Batch segmentation: a folder of images or a table of (image, query) rows -> ``results.jsonl``, PNG masks, a COCO
export and a summary; resumable; on this machine (``LocalEngine``) or on a Ray cluster (``RayEngine``).

>>> from segzero_tool import SegZeroPipeline
>>> from segzero_tool.batch import run_batch
>>> job = run_batch(SegZeroPipeline.from_pretrained(), "photos/", "labels/", query="the cups")  # doctest: +SKIP
>>> job.summary["objects"]                                                                     # doctest: +SKIP

Importing this package loads nothing heavy; Ray loads only with the Ray engine.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "BatchEngine": ".engine",
    "BatchInput": ".inputs",
    "BatchInputError": ".inputs",
    "BatchJobError": ".manifest",
    "BatchResult": ".job",
    "BatchRow": ".inputs",
    "LocalEngine": ".engine_local",
    "RayEngine": ".engine_ray",
    "StageConfig": ".stages",
    "coco_from_records": ".coco",
    "process_rows": ".stages",
    "read_batch_input": ".inputs",
    "run_batch": ".job",
    "summarize": ".job",
    "write_coco": ".coco",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


__all__ = sorted(_EXPORTS)
