"""The run manifest, ``manifest.json``: everything that decides the numbers of a run.

A folder made with other models, prompt format, frame size, rounding, compatibility mode, dataset,
split or rasterisation is refused (:func:`check_run_dir`) unless forced.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from ..prompts import EVAL_STRIP_CHARS, TRAIN_STRIP_CHARS, PromptFormat
from ..reference_parse import Compat
from .datasets import EvalDataset
from .metrics import BOX_CONVENTION, EMPTY_UNION_CONVENTIONS, FAILURE_CONVENTION, EmptyUnion
from .records import SAMPLES_FILE, EvalRunError

MANIFEST_FILE = "manifest.json"
MANIFEST_VERSION = 1

QuestionNormalisation = Literal["eval", "train"]

#: Manifest entries that must match to resume a run (dotted paths).
CHECKED_KEYS = (
    "dataset.kind", "dataset.location", "dataset.split", "dataset.ignore_as_foreground",
    "models.reasoner", "models.reasoner_backend", "models.segmenter", "models.segmenter_backend",
    "prompt_format", "question_strip", "frame_size", "coords", "rounding", "compat", "max_new_tokens", "max_objects",
)

#: The value of a checked key in a manifest written before the key existed (runs before the
#: compatibility modes parsed leniently: repair mode).
OLD_DEFAULTS: dict[str, Any] = {"compat": "repair", "coords": "frame"}

COMPAT_CONVENTIONS: dict[str, str] = {
    "reference": "reference (only answers the reference scripts can read are scored, as they read them; "
                 "SAM2 gets their coordinates)",
    "repair": "repair (the lenient parser recovers answers the reference scripts cannot read; coordinates "
              "clamped, points outside their box dropped)",
}


def error_convention(compat: str, prompt_format: str | PromptFormat) -> str:
    """What happens to a sample whose image cannot be read or whose segmentation raises."""
    if compat != "reference":
        return ("unreadable image: I = 0, U = |GT|; a segmenter error stops the run (resuming starts again "
                "at that sample)")
    if PromptFormat.parse(prompt_format) is PromptFormat.SEGZERO:
        return "unreadable image or segmenter error: I = 0, U = |GT| (as Seg-Zero's evaluation.py)"
    return ("unreadable image or segmenter error: the sample is skipped (in neither gIoU nor cIoU, counted "
            "in the report), as the reference multi-object evaluation")


def question_strip_chars(prompt_format: str | PromptFormat, normalisation: QuestionNormalisation) -> str:
    """Characters stripped from the lower-cased question in the prompt.

    ``eval`` reproduces the reference evaluation scripts: ``."?!`` for the multi-object
    (VisionReasoner) prompt and the grounding prompt, ``.`` for the single-object Seg-Zero prompt;
    ``train`` is the training / inference normalisation (``.``).
    """
    if normalisation not in ("eval", "train"):
        raise ValueError(f"question_normalisation must be 'eval' or 'train', got {normalisation!r}")
    fmt = PromptFormat.parse(prompt_format)
    if normalisation == "eval" and fmt is not PromptFormat.SEGZERO:
        return EVAL_STRIP_CHARS
    return TRAIN_STRIP_CHARS


def _backend_path(obj: Any) -> str | None:
    if obj is None:
        return None
    cls = type(obj)
    return f"{cls.__module__}:{cls.__qualname__}"


def build_manifest(pipeline: Any, dataset: EvalDataset, *, limit: int | None, empty_union: EmptyUnion,
                   question_normalisation: QuestionNormalisation = "eval", batch_size: int = 8,
                   compat: Compat = "reference") -> dict[str, Any]:
    """Everything that decides the numbers of a run, in JSON form."""
    from .. import __version__

    seg = pipeline.segmenter
    fmt = pipeline.prompt_format
    return {
        "manifest_version": MANIFEST_VERSION,
        "segzero_tool": __version__,
        "dataset": dataset.describe(),
        "limit": limit,
        "models": {
            "reasoner": getattr(pipeline.reasoner, "model_id", None) or type(pipeline.reasoner).__name__,
            "reasoner_backend": _backend_path(pipeline.reasoner),
            "segmenter": (getattr(seg, "model_id", None) or type(seg).__name__) if seg is not None else None,
            "segmenter_backend": _backend_path(seg),
        },
        "prompt_format": fmt.value,
        "question_normalisation": question_normalisation,
        "question_strip": question_strip_chars(fmt, question_normalisation),
        "frame_size": [pipeline.frame_size, pipeline.frame_size],
        # frame: answers in pixels of that square; relative1000: on the 0-1000 grid (the frame size then caps
        # the pixels the model sees, aspect kept)
        "coords": pipeline.effective_coords() if hasattr(pipeline, "effective_coords") else "frame",
        "rounding": pipeline.effective_rounding() if hasattr(pipeline, "effective_rounding") else pipeline.rounding,
        "compat": compat,
        "max_new_tokens": pipeline.max_new_tokens,
        "max_objects": pipeline.max_objects,
        "batch_size": batch_size,
        "conventions": {
            "empty_union": empty_union,
            "empty_union_text": EMPTY_UNION_CONVENTIONS[empty_union],
            "failure": FAILURE_CONVENTION,
            "compat": COMPAT_CONVENTIONS[compat],
            "errors": error_convention(compat, fmt),
            "box_accuracy": BOX_CONVENTION,
            "ignore_as_foreground": dataset.ignore_as_foreground,
            "images": "used as stored (EXIF orientation not applied), as the reference evaluation",
        },
    }


def get_dotted(d: Mapping[str, Any], dotted: str) -> tuple[bool, Any]:
    """``(found, value)`` of a dotted path (``models.reasoner``) in nested mappings."""
    cur: Any = d
    for part in dotted.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return False, None
        cur = cur[part]
    return True, cur


def manifest_differences(old: Mapping[str, Any], new: Mapping[str, Any],
                         keys: Sequence[str] = CHECKED_KEYS) -> list[str]:
    """Human-readable differences of the checked keys present in ``new``."""
    diffs = []
    for key in keys:
        has_new, value_new = get_dotted(new, key)
        if not has_new:
            continue
        found, value_old = get_dotted(old, key)
        if not found:
            value_old = OLD_DEFAULTS.get(key)
        if value_old != value_new:
            diffs.append(f"{key}: {value_old!r} then, {value_new!r} now")
    return diffs


def read_manifest(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    p = Path(run_dir) / MANIFEST_FILE
    if not p.exists():
        return None
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EvalRunError(f"{p} cannot be read ({exc}); use another --out or --force to start over") from None
    if not isinstance(data, dict):
        raise EvalRunError(f"{p} is not a run manifest; use another --out or --force to start over")
    return data


def check_run_dir(run_dir: str | os.PathLike, manifest: Mapping[str, Any], *, force: bool = False) -> bool:
    """Decide whether ``run_dir`` can be resumed with ``manifest`` (possibly partial).

    Returns:
        ``True`` when the folder holds a compatible earlier run (or nothing), ``False`` when ``force``
        allows starting over a mismatching one.

    Raises:
        EvalRunError: mismatching settings (or records without a manifest) and not ``force``.
    """
    run = Path(run_dir)
    old = read_manifest(run)
    samples = run / SAMPLES_FILE
    if old is None:
        if samples.exists() and samples.stat().st_size > 0 and not force:
            raise EvalRunError(f"{run} holds {SAMPLES_FILE} but no {MANIFEST_FILE}, so its settings are unknown; "
                               "use another --out or --force to start over")
        return old is None and not samples.exists()
    diffs = manifest_differences(old, manifest)
    if diffs and not force:
        raise EvalRunError(f"{run} was made with different settings ({'; '.join(diffs)}); use another --out, "
                           "the same settings, or --force to start over")
    return not diffs


__all__ = [
    "CHECKED_KEYS", "COMPAT_CONVENTIONS", "MANIFEST_FILE", "MANIFEST_VERSION", "OLD_DEFAULTS", "QuestionNormalisation",
    "build_manifest", "check_run_dir", "error_convention", "get_dotted", "manifest_differences", "question_strip_chars",
    "read_manifest",
]
