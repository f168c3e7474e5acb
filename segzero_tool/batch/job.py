"""The batch job: rows in, one record per row out, resumable.

A job lives in one folder::

    OUT/batch.json       the manifest: input, query, models, pipeline settings (checked when resuming)
    OUT/results.jsonl    one record per row (batch/records.py), appended, flushed and fsync'd as rows finish
    OUT/masks/           with png_masks: <index>-<k>.png, one 0/255 PNG per object
    OUT/coco.json        when every row is done: the COCO export (images, RLE annotations, one category per query
                         or per category value)
    OUT/summary.json     when every row is done: the counts (ok, errors by type, objects, ...) and the speed

Running again on the same folder resumes: the ids in ``results.jsonl`` are read back and only the other rows are
computed, so a job killed at any moment loses nothing and writes nothing twice. A folder made with other settings
is refused unless ``force`` (its records are moved aside). Bad rows (a missing or undecodable image, an empty
query) are records with their error; the job goes on.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..eval.jsonio import write_json_atomic
from ..eval.records import RecordWriter
from .engine import BatchEngine
from .manifest import MANIFEST_FILE, RESULTS_FILE, build_manifest, check_job_dir, read_manifest
from .results_file import SHARDS_DIR, fold_shards, iter_records, scan_results

if TYPE_CHECKING:
    from .inputs import BatchInput

logger = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"
COCO_FILE = "coco.json"
#: Rows per reasoner call by default.
DEFAULT_BATCH_SIZE = 8


@dataclass
class BatchResult:
    """What :func:`run_batch` returns.

    Attributes:
        out: the job folder.
        manifest: the job manifest.
        summary: the counts (see :func:`summarize`), with this run's speed.
        computed: rows computed by this run; ``resumed``: rows found done in the folder.
        files: name -> path of the files written.
    """

    out: Path
    manifest: dict[str, Any]
    summary: dict[str, Any]
    computed: int = 0
    resumed: int = 0
    files: dict[str, Path] = field(default_factory=dict)

    def summary_text(self) -> str:
        return format_summary(self.summary)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def summarize(results: str | os.PathLike) -> dict[str, Any]:
    """Counts over the records of ``results.jsonl`` (read as a stream)."""
    rows = ok = objects = empty = 0
    errors: Counter[str] = Counter()
    parse: Counter[str] = Counter()
    for rec in iter_records(results):
        rows += 1
        if rec.get("status") == "ok":
            ok += 1
            n = len(rec.get("objects") or [])
            objects += n
            empty += n == 0
            parse[str(rec.get("parse_status"))] += 1
        else:
            errors[str(rec.get("error_type"))] += 1
    return {"rows": rows, "ok": ok, "errors": sum(errors.values()), "error_types": dict(sorted(errors.items())),
            "objects": objects, "no_objects": empty, "parse_status": dict(sorted(parse.items()))}


def format_summary(summary: dict[str, Any]) -> str:
    errs = ", ".join(f"{k} {v}" for k, v in summary.get("error_types", {}).items())
    text = (f"{summary['rows']} rows: {summary['ok']} processed ({summary['no_objects']} found nothing), "
            f"{summary['errors']} errors{' (' + errs + ')' if errs else ''}; {summary['objects']} objects")
    speed = summary.get("images_per_s")
    if speed is not None:
        text += f"; {speed:.2f} images/s this run ({summary.get('computed', 0)} computed, " \
                f"{summary.get('resumed', 0)} resumed)"
    return text


def _engine_of(engine: Any) -> BatchEngine:
    if isinstance(engine, BatchEngine):
        return engine
    from ..pipeline import SegZeroPipeline

    if isinstance(engine, SegZeroPipeline):
        from .engine_local import LocalEngine

        return LocalEngine(engine)
    raise TypeError(f"engine must be a BatchEngine or a SegZeroPipeline, got {type(engine).__name__}")


def check_out_outside_input(data: BatchInput, out: Path) -> None:
    """A job folder inside a folder input is refused: its PNG masks would be read as input by a resumed run."""
    from .inputs import BatchInputError

    if data.kind != "folder":
        return
    root, target = Path(data.location).resolve(), out.resolve()
    if target == root or root in target.parents:
        raise BatchInputError(f"the job folder {str(out)!r} lies inside the input folder {data.location!r}, where "
                              "its masks would be read as new images; pick an --out outside it")


def run_batch(
    engine: BatchEngine | Any,
    source: BatchInput | str | os.PathLike,
    out: str | os.PathLike,
    *,
    query: str | None = None,
    category_column: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    png_masks: bool = False,
    coco: bool = True,
    force: bool = False,
    progress: bool = True,
    echo: Callable[[str], None] | None = None,
) -> BatchResult:
    """Segment every row of ``source`` into ``out``, resumably.

    Args:
        engine: a :class:`~segzero_tool.SegZeroPipeline` (run here, as the local engine) or a
            :class:`~segzero_tool.batch.engine.BatchEngine` (``LocalEngine``, ``RayEngine``).
        source: a :class:`~segzero_tool.batch.inputs.BatchInput`, or a folder of images / a JSONL, CSV or Parquet
            table (read with :func:`~segzero_tool.batch.inputs.read_batch_input` and ``query`` / ``category_column``).
        out: the job folder (created; resumed when it holds a job with the same settings).
        batch_size: rows per reasoner call.
        png_masks: also write each object's mask as a PNG under ``out/masks/``.
        coco: write ``coco.json`` when every row is done.
        force: start over in a folder made with other settings (its records are moved aside).
        progress: a tqdm bar with throughput and ETA.
        echo: where status lines go (default: the module logger).

    Raises:
        BatchInputError: the input cannot be read. BatchJobError: ``out`` holds another job (and not ``force``).
        Errors of the reasoner stop the job; what was written stays, and running again resumes.
    """
    from .inputs import BatchInput, read_batch_input

    say = echo or logger.info
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    data = source if isinstance(source, BatchInput) else read_batch_input(source, query=query,
                                                                          category_column=category_column)
    eng = _engine_of(engine)
    run = Path(out).expanduser()
    check_out_outside_input(data, run)
    manifest = build_manifest(input_description=data.describe(), query=query, category_column=category_column,
                              models=eng.models(), config=eng.config, png_masks=png_masks)
    compatible = check_job_dir(run, manifest, force=force)
    run.mkdir(parents=True, exist_ok=True)
    results = run / RESULTS_FILE
    old = None if not compatible else read_manifest(run)
    if not compatible:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        for name in (RESULTS_FILE, SHARDS_DIR, "masks", COCO_FILE, SUMMARY_FILE):
            if (run / name).exists():
                aside = run / f"{name}.replaced-{stamp}"
                os.replace(run / name, aside)
                say(f"--force: {name} (other settings) moved to {aside}")
    history = list(old.get("history", [])) if old else []
    history.append({"started": _now(), "engine": eng.name, "batch_size": batch_size})
    manifest["history"] = history
    manifest["created"] = old.get("created", history[0]["started"]) if old else history[0]["started"]
    write_json_atomic(run / MANIFEST_FILE, manifest)

    done = scan_results(results)
    folded = fold_shards(run, results, done)  # a Ray run killed before it merged its shards
    if folded:
        say(f"merged {folded} records left in {run / SHARDS_DIR} by an interrupted run")
    ids = {r.id for r in data.rows}
    stray = done - ids
    if stray:  # the digest matched, so this is a hand-edited file
        from .manifest import BatchJobError

        raise BatchJobError(f"{results} holds records of rows not in the input (e.g. {sorted(stray)[0]!r}); "
                            "use --force to start over")
    todo: Sequence[Any] = [r for r in data.rows if r.id not in done]
    resumed = len(data.rows) - len(todo)
    if resumed:
        say(f"resuming {run}: {resumed} of {len(data.rows)} rows already done")

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(data.rows), initial=resumed, desc="segmenting", unit="img", dynamic_ncols=True)
    computed = errors = 0
    # ids counted by this run; ``done`` holds only the ids written to results.jsonl, so that the shard records
    # behind receipts are folded in at the end (not skipped as already written)
    seen = set(done)

    def emit(records: list[dict[str, Any]]) -> None:
        nonlocal computed, errors
        fresh = [r for r in records if str(r["id"]) not in seen]
        for rec in fresh:
            if not rec.get("_receipt"):  # a record an engine already wrote to a shard is only counted
                writer.write(rec)
                done.add(str(rec["id"]))
            seen.add(str(rec["id"]))
            errors += rec.get("status") != "ok"
        computed += len(fresh)
        if bar is not None and fresh:
            bar.update(len(fresh))
            bar.set_postfix_str(f"errors={errors}")

    t0 = time.perf_counter()
    try:
        with RecordWriter(results) as writer:
            if todo:
                eng.run(todo, emit, out_dir=run, batch_size=batch_size, png_masks=png_masks)
    finally:
        if bar is not None:
            bar.close()
    elapsed = time.perf_counter() - t0
    fold_shards(run, results, done)
    files = {"manifest": run / MANIFEST_FILE, "results": results}
    missing = ids - done
    summary = summarize(results)
    summary.update({"engine": eng.name, "batch_size": batch_size, "computed": computed, "resumed": resumed,
                    "elapsed_s": round(elapsed, 3),
                    "images_per_s": round(computed / elapsed, 4) if computed and elapsed > 0 else None,
                    "complete": not missing})
    if missing:  # an engine that returned without every row: say so, the next run computes them
        say(f"{len(missing)} rows have no record yet; run the same command again to compute them")
        return BatchResult(run, manifest, summary, computed, resumed, files)
    if coco:
        from .coco import write_coco

        files["coco"] = write_coco(iter_records(results), run / COCO_FILE)
    write_json_atomic(run / SUMMARY_FILE, summary)
    files["summary"] = run / SUMMARY_FILE
    if png_masks and (run / "masks").is_dir():  # no folder when no row found an object
        files["masks"] = run / "masks"
    return BatchResult(run, manifest, summary, computed, resumed, files)


__all__ = ["COCO_FILE", "DEFAULT_BATCH_SIZE", "SUMMARY_FILE", "BatchResult", "check_out_outside_input", "format_summary",
           "run_batch",
           "summarize"]
