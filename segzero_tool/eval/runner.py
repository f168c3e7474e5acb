"""The resumable evaluation runner.

A run lives in one folder::

    RUN_DIR/manifest.json    models, prompt format, frame size, conventions, dataset, split, limit
    RUN_DIR/samples.jsonl    one record per finished sample, appended, flushed and fsync'd at once
    RUN_DIR/results.json     the final summaries (written by :mod:`segzero_tool.eval.report`)
    RUN_DIR/results.md       the same as Markdown tables
    RUN_DIR/worst.png        contact sheet of the worst samples (and worst.html)

Running again on the same folder resumes: finished sample ids are read back from ``samples.jsonl``
(:mod:`segzero_tool.eval.records`) and only the others are computed, so nothing is computed twice,
duplicated or lost. The manifest is checked first (:mod:`segzero_tool.eval.manifest`): a folder made
with other models, prompt format, frame size, rounding, compatibility mode, dataset, split or
rasterisation is refused unless ``force=True``, which moves the old records aside and starts over.
``limit``, ``batch_size`` and ``empty_union`` may change between runs: samples are taken in dataset
order (a larger limit extends a run) and the convention only affects the summary.

Errors of the reasoner (a crashed server, a CUDA error) stop the run; resuming continues where it
stopped. Problems of single samples are recorded instead (:mod:`segzero_tool.eval.scoring`):
``failed`` and ``error`` samples count as ``I = 0, U = |GT|``; ``skipped`` (reference mode,
multi-object formats: the image could not be read or the segmenter raised) and ``invalid_gt``
samples are excluded from every metric and counted in the summary. In repair mode a segmenter error
stops the run.

The public names of the split modules stay importable from here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_bytes
from ..reference_parse import Compat, check_compat
from .datasets import EvalDataset
from .jsonio import write_json_atomic
from .manifest import (
    CHECKED_KEYS,
    MANIFEST_FILE,
    MANIFEST_VERSION,
    QuestionNormalisation,
    build_manifest,
    check_run_dir,
    manifest_differences,
    question_strip_chars,
    read_manifest,
)
from .metrics import SCORED_STATUSES, EmptyUnion, IoUAccumulator, check_empty_union, summarize
from .records import SAMPLES_FILE, TIMING_FIELDS, EvalRunError, RecordWriter, read_records, strip_timings
from .scoring import FAILED_PARSE_STATUSES, evaluate_batch

logger = logging.getLogger(__name__)


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
    compat: Compat = "reference",
    force: bool = False,
    progress: bool = True,
    report: bool = True,
    worst: int = 16,
    echo: Callable[[str], None] | None = None,
    executor: Callable[..., Iterable[list[dict[str, Any]]]] | None = None,
    models: dict[str, Any] | None = None,
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
        compat: ``reference`` (default: answers the reference scripts cannot read are failures, SAM2
            gets their coordinates, and in the multi-object formats an image or segmenter error skips
            the sample and the run goes on) or ``repair`` (the pipeline's lenient parsing and repairs;
            a segmenter error stops the run). It overrides the pipeline's own ``compat``.
        force: start over in a folder made with other settings (its records are moved aside).
        progress: show a tqdm bar with running gIoU / cIoU and ETA.
        report: write ``results.json``, ``results.md`` and, with ``worst > 0``, the contact sheet.
        worst: how many of the worst samples go into the contact sheet.
        echo: where status lines go (default: the module logger).
        executor: computes the records elsewhere (``segzero eval --engine ray``:
            :class:`~segzero_tool.eval.engine_ray.RayEvalExecutor`): called as ``executor(chunks, strip_chars=,
            compat=)`` with the chunks of ``(index, sample)`` pairs, it yields each chunk's records (chunks in any
            order). ``pipeline`` then only gives the settings (it may hold no model). Default: in this process.
        models: the manifest's ``models`` entry (default: the pipeline's models).

    Raises:
        EvalRunError: the folder was made with other settings (and not ``force``) or is corrupt.
    """
    say = echo or logger.info
    check_empty_union(empty_union)
    compat = check_compat(compat)
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    if executor is None and pipeline.segmenter is None:
        raise ValueError("evaluation needs a pipeline with a segmenter (masks are scored)")
    run = Path(run_dir).expanduser()
    run.mkdir(parents=True, exist_ok=True)
    manifest = build_manifest(pipeline, dataset, limit=limit, empty_union=empty_union,
                              question_normalisation=question_normalisation, batch_size=batch_size, compat=compat)
    if models is not None:
        manifest["models"] = dict(models)
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
        if rec is not None and rec.get("status") in SCORED_STATUSES:
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
            if executor is None:
                results: Iterable[list[dict[str, Any]]] = (
                    evaluate_batch(pipeline, chunk, strip_chars=strip, compat=compat)
                    for chunk in _chunks(todo, batch_size))
            else:
                results = executor(_chunks(todo, batch_size), strip_chars=strip, compat=compat)
            for chunk_records in results:
                for rec in chunk_records:
                    writer.write(rec)
                    done[rec["id"]] = rec
                    computed += 1
                    if rec["status"] in SCORED_STATUSES:
                        acc.add(int(rec["intersection"]), int(rec["union"]), failed=rec["status"] != "ok",
                                box_hit=rec.get("box_hit"))
                if bar is not None:
                    bar.update(len(chunk_records))
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
    "MANIFEST_VERSION",
    "SAMPLES_FILE",
    "TIMING_FIELDS",
    "EvalResult",
    "EvalRunError",
    "QuestionNormalisation",
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
