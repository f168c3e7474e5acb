"""The job manifest, ``batch.json``: everything the records depend on.

A job folder made with another input, query, category column, models or pipeline settings (prompt format, frame,
rounding, coordinates, compatibility mode, budgets), or with PNG masks on or off, is refused unless forced. The
engine and the batch size may change between runs: they do not change the records.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..errors import SegZeroError
from ..eval.manifest import get_dotted

MANIFEST_FILE = "batch.json"
RESULTS_FILE = "results.jsonl"
MANIFEST_VERSION = 1

#: Manifest entries that must match to resume (dotted paths).
CHECKED_KEYS = ("input.kind", "input.location", "input.digest", "input.rows", "query", "category_column",
                "models.reasoner", "models.reasoner_backend", "models.segmenter", "models.segmenter_backend",
                "config", "png_masks")


class BatchJobError(SegZeroError, ValueError):
    """The output folder cannot be used: made with other settings, or its records are corrupt."""

    exit_code = 2


def build_manifest(*, input_description: Mapping[str, Any], query: str | None, category_column: str | None,
                   models: Mapping[str, Any], config: Any, png_masks: bool) -> dict[str, Any]:
    from .. import __version__

    return {"manifest_version": MANIFEST_VERSION, "segzero_tool": __version__, "input": dict(input_description),
            "query": query, "category_column": category_column, "models": dict(models), "config": asdict(config),
            "png_masks": bool(png_masks)}



def differences(old: Mapping[str, Any], new: Mapping[str, Any], keys: Sequence[str] = CHECKED_KEYS) -> list[str]:
    """Human-readable differences of the checked keys."""
    diffs = []
    for key in keys:
        _, value_new = get_dotted(new, key)
        _, value_old = get_dotted(old, key)
        if value_old != value_new:
            if key == "input.digest":
                diffs.append("input: other rows (their ids, images, queries or categories differ)")
            elif isinstance(value_new, Mapping) and isinstance(value_old, Mapping):
                for sub in sorted(set(value_old) | set(value_new)):
                    if value_old.get(sub) != value_new.get(sub):
                        diffs.append(f"{key}.{sub}: {value_old.get(sub)!r} then, {value_new.get(sub)!r} now")
            else:
                diffs.append(f"{key}: {value_old!r} then, {value_new!r} now")
    return diffs


def read_manifest(out: str | os.PathLike) -> dict[str, Any] | None:
    p = Path(out) / MANIFEST_FILE
    if not p.exists():
        return None
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BatchJobError(f"{p} cannot be read ({exc}); use another --out or --force to start over") from None
    if not isinstance(data, dict):
        raise BatchJobError(f"{p} is not a batch manifest; use another --out or --force to start over")
    return data


def check_job_dir(out: str | os.PathLike, manifest: Mapping[str, Any], *, force: bool = False,
                  keys: Sequence[str] = CHECKED_KEYS) -> bool:
    """``True`` when ``out`` holds nothing or a compatible job (to resume); ``False`` when ``force`` allows
    starting over a different one.

    Raises:
        BatchJobError: different settings (or records without a manifest) and not ``force``.
    """
    run = Path(out)
    old = read_manifest(run)
    results = run / RESULTS_FILE
    if old is None:
        if results.exists() and results.stat().st_size > 0:
            if not force:
                raise BatchJobError(f"{run} holds {RESULTS_FILE} but no {MANIFEST_FILE}, so its settings are "
                                    "unknown; use another --out or --force to start over")
            return False
        return True
    diffs = differences(old, manifest, keys)
    if diffs and not force:
        raise BatchJobError(f"{run} holds a job made with different settings ({'; '.join(diffs)}); use another "
                            "--out, the same settings, or --force to start over")
    return not diffs


__all__ = ["CHECKED_KEYS", "MANIFEST_FILE", "MANIFEST_VERSION", "RESULTS_FILE", "BatchJobError", "build_manifest",
           "check_job_dir", "differences", "read_manifest"]
