"""The three stages of a batch job, shared by every engine so that they write identical records.

1. :func:`decode_row` (CPU; threads in the local engine, Ray tasks in the Ray engine): check the query, read the
   image under the pixel cap, and resize it into the reasoning frame. A row that fails here becomes an error record.
2. :func:`reason_rows` (the reasoner: one ``generate`` call per batch; or Ray Data's vLLM processor): the raw texts.
3. :func:`finish_rows` (the segmenter): parse and project each answer, run the segmenter once per distinct image
   (several queries on one picture share its embedding), write the PNG masks when asked, and build the records.

The stages run on a :class:`~segzero_tool.SegZeroPipeline` for its settings (prompt format, frame, rounding,
coordinates, compatibility mode, budgets) and models; :class:`StageConfig` carries those settings to workers that
hold only one of the models (or none).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import SegZeroError
from .records import error_record, result_record

if TYPE_CHECKING:
    from ..pipeline import SegZeroPipeline
    from ..pipeline_stages import _Job
    from ..reasoners.base import ReasonerOutput, ReasonerRequest
    from .inputs import BatchRow

logger = logging.getLogger(__name__)

#: Folder of the optional PNG masks, inside the job's output folder.
MASKS_DIR = "masks"


@dataclass(frozen=True)
class StageConfig:
    """The pipeline settings the stages depend on (everything but the models), picklable for workers."""

    prompt_format: str
    frame_size: int
    rounding: str | None
    coords: str | None
    compat: str
    max_new_tokens: int
    max_objects: int
    max_pixels: int | None
    max_query_chars: int

    @classmethod
    def of(cls, pipeline: SegZeroPipeline) -> StageConfig:
        return cls(prompt_format=pipeline.prompt_format.value, frame_size=pipeline.frame_size,
                   rounding=pipeline.rounding, coords=pipeline.coords, compat=pipeline.compat,
                   max_new_tokens=pipeline.max_new_tokens, max_objects=pipeline.max_objects,
                   max_pixels=pipeline.max_pixels, max_query_chars=pipeline.max_query_chars)

    def pipeline(self, reasoner: Any = None, segmenter: Any = None, *, image_cache_bytes: int | None = None
                 ) -> SegZeroPipeline:
        """A pipeline with these settings around the given models (none: for the decode stage)."""
        from ..pipeline import SegZeroPipeline

        extra = {} if image_cache_bytes is None else {"image_cache_bytes": image_cache_bytes}
        return SegZeroPipeline(reasoner, segmenter, **asdict(self), **extra)  # type: ignore[arg-type]


@dataclass
class DecodedRow:
    """A row after :func:`decode_row`: ready for the reasoner (``job`` and ``request``), or its error record."""

    row: BatchRow
    job: _Job | None = None
    request: ReasonerRequest | None = None
    error: dict[str, Any] | None = None


def decode_row(pipeline: SegZeroPipeline, row: BatchRow) -> DecodedRow:
    """Check the row's query, read its image under the pixel cap and resize it into the reasoning frame.

    Never raises for a bad row (missing or undecodable image, too many pixels, an empty or overlong query): the
    problem becomes the row's error record.
    """
    if row.problem is not None:
        return DecodedRow(row, error=error_record(row, row.problem_type or "bad_row", row.problem))
    if not row.query.strip():
        return DecodedRow(row, error=error_record(row, "empty_query", "the query is empty; give each row a query"))
    if not row.image_path:
        return DecodedRow(row, error=error_record(row, "missing_image", "the row names no image"))
    path = Path(row.image_path)
    if not path.is_file():
        what = "is a folder, not an image file" if path.is_dir() else "does not exist"
        return DecodedRow(row, error=error_record(row, "missing_image", f"image {row.image!r} {what}"))
    try:
        job = pipeline._prepare(os.fspath(path), row.query, None)
        request = pipeline._request(job, {}, None)
    except SegZeroError as exc:
        return DecodedRow(row, error=error_record(row, type(exc).__name__, str(exc)))
    except (OSError, ValueError, MemoryError) as exc:  # an unreadable file, a decoder's complaint
        return DecodedRow(row, error=error_record(row, type(exc).__name__, f"image {row.image!r}: {exc}"))
    return DecodedRow(row, job=job, request=request)


def reason_rows(pipeline: SegZeroPipeline, decoded: Sequence[DecodedRow]) -> list[ReasonerOutput]:
    """One ``generate`` call for the rows without an error, in order. Errors of the reasoner (a crashed server,
    out of memory) propagate: the job stops, and running it again resumes after the last record written."""
    requests = [d.request for d in decoded if d.error is None]
    if not requests:
        return []
    reasoner = pipeline._require_reasoner()
    outputs = reasoner.generate(requests)  # type: ignore[arg-type]
    if len(outputs) != len(requests):
        raise RuntimeError(f"reasoner {type(reasoner).__name__} returned {len(outputs)} outputs for "
                           f"{len(requests)} requests")
    return list(outputs)


def finish_rows(pipeline: SegZeroPipeline, decoded: Sequence[DecodedRow], outputs: Sequence[ReasonerOutput], *,
                out_dir: str | os.PathLike | None = None, png_masks: bool = False) -> list[dict[str, Any]]:
    """Parse, project and segment the answers; the records of every row of ``decoded``, in order.

    ``outputs`` holds one output per row without an error (as :func:`reason_rows` returns them). The segmenter runs
    once per distinct image; when it raises for an image, the rows of that image get error records and the others
    go on. With ``png_masks`` each object's mask is written to ``out_dir/masks/<index>-<k>.png`` before its record
    is returned (so a record on disk always has its PNGs).
    """
    from ..segmenters.base import image_key

    ok = [d for d in decoded if d.error is None]
    if len(outputs) != len(ok):
        raise ValueError(f"{len(outputs)} reasoner outputs for {len(ok)} rows")
    parsed: dict[int, tuple[Any, list[Any], list[str]]] = {}
    for d, output in zip(ok, outputs, strict=True):
        parsed[d.row.index] = pipeline._parse(d.job, output, {}, None)  # type: ignore[arg-type]
    failed: dict[int, dict[str, Any]] = {}
    if pipeline.segmenter is not None:
        groups: dict[str, list[DecodedRow]] = {}
        for d in ok:
            groups.setdefault(image_key(d.job.image.array), []).append(d)  # type: ignore[union-attr]
        for rows in groups.values():
            merged = [obj for d in rows for obj in parsed[d.row.index][1]]
            try:
                pipeline._run_segmenter(rows[0].job.image.array, merged)  # type: ignore[union-attr]
            except SegZeroError as exc:
                for d in rows:
                    failed[d.row.index] = error_record(d.row, type(exc).__name__, f"segmenter: {exc}",
                                                       image_size=d.job.image.size)  # type: ignore[union-attr]
            except (RuntimeError, ValueError) as exc:  # e.g. a prompt the model rejects
                logger.warning("segmenter failed on %r: %s", rows[0].row.image, exc)
                for d in rows:
                    failed[d.row.index] = error_record(d.row, type(exc).__name__, f"segmenter: {exc}",
                                                       image_size=d.job.image.size)  # type: ignore[union-attr]
    by_index: dict[int, dict[str, Any]] = {}
    for d, output in zip(ok, outputs, strict=True):
        if d.row.index in failed:
            by_index[d.row.index] = failed[d.row.index]
            continue
        p, objects, issues = parsed[d.row.index]
        result = pipeline._finish(d.job, output, p, objects, issues, {})  # type: ignore[arg-type]
        if png_masks and out_dir is not None:
            write_png_masks(out_dir, d.row.index, [o.mask for o in result.objects])
        by_index[d.row.index] = result_record(d.row, result)
    return [d.error if d.error is not None else by_index[d.row.index] for d in decoded]


def png_mask_name(index: int, k: int) -> str:
    """``masks/<index>-<k>.png``: object ``k`` of input row ``index`` (zero-padded so that names sort)."""
    return f"{MASKS_DIR}/{index:07d}-{k:03d}.png"


def write_png_masks(out_dir: str | os.PathLike, index: int, masks: Sequence[Any]) -> list[Path]:
    """Write the masks of row ``index`` as 0/255 PNGs (atomically: a crash leaves no half-written file)."""
    from ..atomic import atomic_write_bytes
    from ..masks import mask_to_png_bytes

    paths = []
    for k, mask in enumerate(masks):
        if mask is None:
            continue
        path = Path(out_dir) / png_mask_name(index, k)
        path.parent.mkdir(parents=True, exist_ok=True)
        paths.append(atomic_write_bytes(path, mask_to_png_bytes(mask)))
    return paths


def process_rows(pipeline: SegZeroPipeline, rows: Sequence[BatchRow], *, out_dir: str | os.PathLike | None = None,
                 png_masks: bool = False) -> list[dict[str, Any]]:
    """All three stages on ``rows`` in this process (the records, in order)."""
    decoded = [decode_row(pipeline, r) for r in rows]
    return finish_rows(pipeline, decoded, reason_rows(pipeline, decoded), out_dir=out_dir, png_masks=png_masks)


__all__ = ["MASKS_DIR", "DecodedRow", "StageConfig", "decode_row", "finish_rows", "png_mask_name", "process_rows",
           "reason_rows", "write_png_masks"]
