"""The resumable evaluation runner.

A run lives in one folder::

    RUN_DIR/manifest.json    models, prompt format, frame size, conventions, dataset, split, limit
    RUN_DIR/samples.jsonl    one record per finished sample, appended, flushed and fsync'd at once
    RUN_DIR/results.json     the final summaries (written by :mod:`segzero_tool.eval.report`)
    RUN_DIR/results.md       the same as Markdown tables
    RUN_DIR/worst.png        contact sheet of the worst samples (and worst.html)

Running again on the same folder resumes: finished sample ids are read back from ``samples.jsonl``
(a truncated last line, left by a crash in the middle of a write, is dropped and the file rewritten
atomically) and only the others are computed, so nothing is computed twice, duplicated or lost. The
manifest is checked first: a folder made with other models, prompt format, frame size, rounding,
dataset, split or rasterisation is refused unless ``force=True``, which moves the old records aside
and starts over. ``limit``, ``batch_size`` and ``empty_union`` may change between runs: samples are
taken in dataset order (a larger limit extends a run) and the convention only affects the summary.

Errors from the models (a crashed server, a CUDA error) stop the run; resuming continues where it
stopped. Problems of single samples are recorded instead:

* ``failed``: the answer did not parse (``no_answer``, ``invalid_json``, ``invalid_objects``):
  ``I = 0, U = |GT|``;
* ``error``: the image could not be read or the query is unusable: ``I = 0, U = |GT|`` as well;
* ``invalid_gt``: the ground truth could not be read or does not match the image size: excluded from
  every metric and listed in the summary.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..atomic import atomic_write_bytes
from ..cancel import OperationCancelled
from ..errors import SegZeroError
from ..parsing import ParseStatus
from ..prompts import EVAL_STRIP_CHARS, TRAIN_STRIP_CHARS, PromptFormat, validate_query
from .datasets import EvalDataset, EvalSample
from .jsonio import write_json_atomic
from .metrics import (
    BOX_CONVENTION,
    EMPTY_UNION_CONVENTIONS,
    FAILURE_CONVENTION,
    EmptyUnion,
    IoUAccumulator,
    box_hit,
    check_empty_union,
    intersection_union,
    summarize,
)

logger = logging.getLogger(__name__)

SAMPLES_FILE = "samples.jsonl"
MANIFEST_FILE = "manifest.json"
MANIFEST_VERSION = 1

#: Parse outcomes that the reference evaluation scores as a failure (I = 0, U = |GT|).
FAILED_PARSE_STATUSES = frozenset({ParseStatus.NO_ANSWER, ParseStatus.INVALID_JSON, ParseStatus.INVALID_OBJECTS})

QuestionNormalisation = Literal["eval", "train"]

#: Manifest entries that must match to resume a run (dotted paths).
CHECKED_KEYS = (
    "dataset.kind", "dataset.location", "dataset.split", "dataset.ignore_as_foreground",
    "models.reasoner", "models.reasoner_backend", "models.segmenter", "models.segmenter_backend",
    "prompt_format", "question_strip", "frame_size", "rounding", "max_new_tokens", "max_objects",
)

#: Record fields that legitimately differ between two runs of the same samples.
TIMING_FIELDS = ("latency_ms", "timings_ms")


class EvalRunError(SegZeroError, ValueError):
    """The run folder cannot be used: made with other settings, or its records are corrupt."""

    exit_code = 2


# --- manifest --------------------------------------------------------------------------------------


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
                   question_normalisation: QuestionNormalisation = "eval", batch_size: int = 8) -> dict[str, Any]:
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
        "rounding": pipeline.rounding,
        "max_new_tokens": pipeline.max_new_tokens,
        "max_objects": pipeline.max_objects,
        "batch_size": batch_size,
        "conventions": {
            "empty_union": empty_union,
            "empty_union_text": EMPTY_UNION_CONVENTIONS[empty_union],
            "failure": FAILURE_CONVENTION,
            "box_accuracy": BOX_CONVENTION,
            "ignore_as_foreground": dataset.ignore_as_foreground,
            "images": "used as stored (EXIF orientation not applied), as the reference evaluation",
        },
    }


def _get(d: Mapping[str, Any], dotted: str) -> tuple[bool, Any]:
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
        has_new, value_new = _get(new, key)
        if not has_new:
            continue
        _, value_old = _get(old, key)
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


# --- the records file ------------------------------------------------------------------------------


def _dumps_record(rec: Mapping[str, Any]) -> str:
    return json.dumps(rec, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def read_records(path: str | os.PathLike, *, repair: bool = True) -> list[dict[str, Any]]:
    """Read ``samples.jsonl``; a truncated last line is dropped and, with ``repair``, the file is
    rewritten atomically without it; duplicated ids keep their first record.

    Raises:
        EvalRunError: a line other than the last is not a JSON record.
    """
    p = Path(path)
    if not p.exists():
        return []
    raw = p.read_bytes()
    if not raw:
        return []
    lines = raw.split(b"\n")
    complete, tail = lines[:-1], lines[-1]  # tail is b"" when the file ends with a newline
    records: list[dict[str, Any]] = []
    seen: set[str] = set()
    dirty = False
    for lineno, line in enumerate(complete, 1):
        if not line.strip():
            dirty = True
            continue
        try:
            rec = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            if lineno == len(complete) and not tail:
                # the last line is complete but garbled: also a crash artefact
                logger.warning("%s: dropped a corrupt last line; that sample will be computed again", p)
                dirty = True
                continue
            raise EvalRunError(f"{p}:{lineno} is not a JSON record; fix or delete the line, or use --force "
                               "to start the run over") from None
        if not isinstance(rec, dict) or "id" not in rec:
            raise EvalRunError(f"{p}:{lineno} is not a sample record; fix or delete the line, or --force")
        if rec["id"] in seen:
            logger.warning("%s: duplicate record for sample %r dropped", p, rec["id"])
            dirty = True
            continue
        seen.add(rec["id"])
        records.append(rec)
    if tail.strip():
        logger.warning("%s: dropped a truncated last line (interrupted while writing); that sample will be "
                       "computed again", p)
        dirty = True
    if dirty and repair:
        data = "".join(_dumps_record(r) + "\n" for r in records).encode("utf-8")
        atomic_write_bytes(p, data)
    return records


class RecordWriter:
    """Appends records to ``samples.jsonl``; each one is flushed and fsync'd before the next."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def write(self, record: Mapping[str, Any]) -> None:
        self._fh.write(_dumps_record(record) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def strip_timings(record: Mapping[str, Any]) -> dict[str, Any]:
    """A record without its timing fields (to compare two runs)."""
    return {k: v for k, v in record.items() if k not in TIMING_FIELDS}


# --- scoring one batch -----------------------------------------------------------------------------


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


def _invalid_gt(rec: dict[str, Any], message: str) -> dict[str, Any]:
    rec.update({
        "status": "invalid_gt", "parse_status": None, "parse_issues": [], "error": message,
        "gt_area": None, "pred_area": None, "intersection": None, "union": None, "iou": None,
        "n_objects": 0, "pred_boxes": [], "box_hit": None, "latency_ms": None, "timings_ms": {},
        "reasoning": None, "raw_output": None, "pred_rle": None,
    })
    return rec


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def evaluate_batch(pipeline: Any, samples: Sequence[tuple[int, EvalSample]], *, strip_chars: str) -> list[dict]:
    """Run ``samples`` (``(dataset index, sample)`` pairs) through ``pipeline.segment_many`` once and
    return one record per sample, in order."""
    from ..masks import rle_encode

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
            records[k] = _penalty(rec, "error", gt_area, f"image unreadable: {_one_line(exc)}")
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
    if jobs:
        results = pipeline.segment_many([(image, query) for _, image, query, _, _ in jobs], progress=False)
        for (k, _image, _query, gt, rec), res in zip(jobs, results, strict=True):
            pred = res.union_mask
            failed = res.parse_status in FAILED_PARSE_STATUSES
            gt_area = int(np.count_nonzero(gt))
            inter, union = (0, gt_area) if failed else intersection_union(pred, gt)
            boxes = [[int(v) for v in b] for b in res.boxes.tolist()]
            hit = box_hit(boxes, rec["gt_box"])
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
            records[k] = rec
    return [r for r in records if r is not None]


# --- the run ---------------------------------------------------------------------------------------


@dataclass
class EvalResult:
    """What :func:`run_evaluation` returns.

    Attributes:
        run_dir: the run folder.
        manifest: the run manifest.
        records: one record per selected sample, in dataset order.
        summary: :func:`~segzero_tool.eval.metrics.summarize` of the records.
        empty_union: the convention of ``summary``.
        computed: samples computed by this call; ``resumed``: read back from earlier calls.
        files: name -> path of the files written.
    """

    run_dir: Path
    manifest: dict[str, Any]
    records: list[dict[str, Any]]
    summary: dict[str, dict[str, Any]]
    empty_union: EmptyUnion
    computed: int = 0
    resumed: int = 0
    files: dict[str, Path] = field(default_factory=dict)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _fmt_metric(value: float) -> str:
    return "n/a" if value != value else f"{value:.4f}"  # nan-safe


def run_evaluation(
    pipeline: Any,
    dataset: EvalDataset,
    run_dir: str | os.PathLike,
    *,
    limit: int | None = None,
    batch_size: int = 8,
    empty_union: EmptyUnion = "skip",
    question_normalisation: QuestionNormalisation = "eval",
    force: bool = False,
    progress: bool = True,
    report: bool = True,
    worst: int = 16,
    echo: Callable[[str], None] | None = None,
) -> EvalResult:
    """Evaluate ``pipeline`` on ``dataset``, resumably, in ``run_dir``.

    Args:
        pipeline: a :class:`~segzero_tool.SegZeroPipeline` with a segmenter.
        dataset: from :func:`~segzero_tool.eval.datasets.load_eval_dataset`.
        run_dir: the run folder (created; resumed when it holds a compatible run).
        limit: evaluate the first ``limit`` samples only (dataset order).
        batch_size: samples per ``segment_many`` call (the reasoner batches them).
        empty_union: ``skip`` (Seg-Zero repository) or ``zero`` (VisionReasoner repository).
        question_normalisation: ``eval`` (as the reference evaluation scripts) or ``train``.
        force: start over in a folder made with other settings (its records are moved aside).
        progress: show a tqdm bar with running gIoU / cIoU and ETA.
        report: write ``results.json``, ``results.md`` and, with ``worst > 0``, the contact sheet.
        worst: how many of the worst samples go into the contact sheet.
        echo: where status lines go (default: the module logger).

    Raises:
        EvalRunError: the folder was made with other settings (and not ``force``) or is corrupt.
    """
    say = echo or logger.info
    check_empty_union(empty_union)
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    if pipeline.segmenter is None:
        raise ValueError("evaluation needs a pipeline with a segmenter (masks are scored)")
    run = Path(run_dir).expanduser()
    run.mkdir(parents=True, exist_ok=True)
    manifest = build_manifest(pipeline, dataset, limit=limit, empty_union=empty_union,
                              question_normalisation=question_normalisation, batch_size=batch_size)
    samples_path = run / SAMPLES_FILE
    compatible = check_run_dir(run, manifest, force=force)
    old = read_manifest(run)
    if not compatible and (samples_path.exists() or old is not None):
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        if samples_path.exists():
            aside = run / f"{SAMPLES_FILE}.replaced-{stamp}"
            os.replace(samples_path, aside)
            say(f"--force: earlier records (other settings) moved to {aside}")
        old = None
    history = list(old.get("history", [])) if old else []
    history.append({"started": _now(), "limit": limit, "batch_size": batch_size, "segzero_tool": manifest["segzero_tool"]})
    manifest["history"] = history
    manifest["created"] = old.get("created", history[0]["started"]) if old else history[0]["started"]
    write_json_atomic(run / MANIFEST_FILE, manifest)

    selection = list(enumerate(dataset.samples[:limit] if limit is not None else dataset.samples))
    done: dict[str, dict[str, Any]] = {r["id"]: r for r in read_records(samples_path)}
    todo = [(i, s) for i, s in selection if s.id not in done]
    resumed = len(selection) - len(todo)
    if resumed:
        say(f"resuming {run}: {resumed} of {len(selection)} samples already done")
    strip = question_strip_chars(pipeline.prompt_format, question_normalisation)

    acc = IoUAccumulator(empty_union)
    for _, s in selection:
        rec = done.get(s.id)
        if rec is not None and rec.get("status") != "invalid_gt":
            acc.add(int(rec["intersection"]), int(rec["union"]), failed=rec["status"] != "ok",
                    box_hit=rec.get("box_hit"))

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(selection), initial=resumed, desc=f"eval {dataset.name}", unit="sample",
                   dynamic_ncols=True)
        bar.set_postfix_str(f"gIoU={_fmt_metric(acc.giou)} cIoU={_fmt_metric(acc.ciou)}")
    computed = 0
    try:
        with RecordWriter(samples_path) as writer:
            for chunk in _chunks(todo, batch_size):
                for rec in evaluate_batch(pipeline, chunk, strip_chars=strip):
                    writer.write(rec)
                    done[rec["id"]] = rec
                    computed += 1
                    if rec["status"] != "invalid_gt":
                        acc.add(int(rec["intersection"]), int(rec["union"]), failed=rec["status"] != "ok",
                                box_hit=rec.get("box_hit"))
                if bar is not None:
                    bar.update(len(chunk))
                    bar.set_postfix_str(f"gIoU={_fmt_metric(acc.giou)} cIoU={_fmt_metric(acc.ciou)}")
    finally:
        if bar is not None:
            bar.close()

    records = [done[s.id] for _, s in selection if s.id in done]
    result = EvalResult(run_dir=run, manifest=manifest, records=records, summary=summarize(records, empty_union),
                        empty_union=empty_union, computed=computed, resumed=resumed,
                        files={"manifest": run / MANIFEST_FILE, "samples": samples_path})
    if report:
        from .report import write_report

        result.files.update(write_report(result, dataset, worst=worst))
    return result


def load_run(run_dir: str | os.PathLike, *, empty_union: EmptyUnion | None = None) -> EvalResult:
    """Read a run folder back (records in file order) without computing anything."""
    run = Path(run_dir)
    manifest = read_manifest(run)
    if manifest is None:
        raise EvalRunError(f"{run} holds no {MANIFEST_FILE}")
    eu = empty_union or manifest.get("conventions", {}).get("empty_union", "skip")
    records = sorted(read_records(run / SAMPLES_FILE, repair=False), key=lambda r: r.get("index", 0))
    return EvalResult(run_dir=run, manifest=manifest, records=records, summary=summarize(records, eu),
                      empty_union=eu, resumed=len(records))


__all__ = [
    "CHECKED_KEYS",
    "FAILED_PARSE_STATUSES",
    "MANIFEST_FILE",
    "SAMPLES_FILE",
    "EvalResult",
    "EvalRunError",
    "RecordWriter",
    "atomic_write_bytes",
    "build_manifest",
    "check_run_dir",
    "evaluate_batch",
    "load_run",
    "manifest_differences",
    "question_strip_chars",
    "read_manifest",
    "read_records",
    "run_evaluation",
    "strip_timings",
    "write_json_atomic",
]
