"""Build a training set from masks: ReasonSeg / RefCOCO folders, hub copies, the evaluation JSONL.

Per object, in original pixels: the tight box (inclusive max indices) and :func:`representative_points`;
then scaled to the frame with ``int(v * f + 0.5)`` (``f = frame_size / W`` for x, ``/ H`` for y), and the
image resized to the frame with ``cv2.INTER_AREA``, as the reference's ``gen_training_dataset.py`` did
(segzero-protocol.md 2.6).

* ``segzero`` rows: ``problem`` = the query as written, ``solution`` =
  ``<box>(x1,y1),(x2,y2)</box><points>(x1,y1),(x2,y2)</points>``; one row per sample.
* ``visionreasoner`` rows: ``problem`` = ``'query'`` (lower-cased, stripped of ``.?!``, single-quoted),
  ``solution`` = a JSON list of ``{"bbox_2d", "point_2d"}`` (point 1 only). One row per sample, or with
  ``group_by_image`` one row per image holding all its objects: ``problem = "'t1' and 't2' and ..."``,
  ``id`` = the first three sample ids joined by ``_``, as VisionReasoner's multi-object data were made.
  Several expressions of one object (the same mask) keep the first, as the reference kept each ref's first
  sentence.

Every row also has ``id``, ``img_height``, ``img_width`` (original size) and, with ``with_mask``, ``mask``:
the COCO RLE, in the frame, of the union of the row's objects (for ``mask_point_reward``).

A long build writes its rows in shards to ``OUT.partial/`` and resumes from there when run again with the
same settings; the finished set is written to a temporary sibling and renamed into place, so ``OUT`` is
either absent or complete.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .build_shards import flush_shard, quiet_datasets, resume_state, write_json
from .data import KINDS, TrainingDataError, _datasets, _png_bytes
from .solutions import format_segzero_solution, format_visionreasoner_solution, representative_points, scale

__all__ = [
    "SAM_FILTER_MIN_IOU",
    "BuildReport",
    "build_training_dataset",
    "build_training_rows",
    "format_segzero_solution",
    "format_visionreasoner_solution",
    "group_samples",
    "representative_points",
]

#: The reference's quality filter keeps an object when IoU(SAM mask, ground truth) >= this.
SAM_FILTER_MIN_IOU = 0.6
#: Groups (images, or samples when not grouping) per shard of a resumable build.
DEFAULT_SHARD_SIZE = 256
_BUILD_VERSION = 1


# --- one object ----------------------------------------------------------------------------------------


def _sam_mask(sam_filter: Any, image: np.ndarray, box: tuple[int, ...], point: tuple[int, int]) -> np.ndarray:
    if hasattr(sam_filter, "segment"):
        from segzero_tool.segmenters.base import ObjectPrompt

        out = sam_filter.segment(image, [ObjectPrompt(box=tuple(float(v) for v in box),
                                                      points=((float(point[0]), float(point[1])),))])
        return np.asarray(out.masks[0], dtype=bool)
    return np.asarray(sam_filter(image, box, point), dtype=bool)


def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


# --- grouping ------------------------------------------------------------------------------------------


def _image_key(sample: Any) -> str:
    """What identifies a sample's picture: the loader's ``image_id``, else the image's path, else its id."""
    key = getattr(sample, "image_id", None)
    if key is not None:
        return f"id:{key}"
    image = getattr(sample, "image", None)
    if isinstance(image, (str, os.PathLike)):
        return f"path:{Path(image).expanduser().resolve()}"
    return f"sample:{sample.id}"


def group_samples(samples: Sequence[Any], *, by_image: bool) -> list[list[int]]:
    """Sample indices per training row, in the dataset's order: one per sample, or (``by_image``) one
    group per picture, ordered by its first sample."""
    if not by_image:
        return [[i] for i in range(len(samples))]
    groups: dict[str, list[int]] = {}
    for i, sample in enumerate(samples):
        groups.setdefault(_image_key(sample), []).append(i)
    return list(groups.values())


# --- building ------------------------------------------------------------------------------------------


@dataclass
class BuildReport:
    """What a build did: rows written, objects in them, samples read, and what was left out and why."""

    rows: int = 0
    objects: int = 0
    samples: int = 0
    empty_masks: int = 0
    rejected_by_sam: int = 0
    duplicate_expressions: int = 0
    rows_without_objects: int = 0
    resumed_groups: int = 0
    out: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def add(self, other: dict[str, int]) -> None:
        for key, value in other.items():
            setattr(self, key, getattr(self, key) + int(value))

    def summary(self) -> str:
        left = [f"{n} {what}" for n, what in ((self.empty_masks, "empty mask(s)"),
                                              (self.rejected_by_sam, "object(s) rejected by the SAM filter"),
                                              (self.duplicate_expressions, "repeated expression(s) of one object"),
                                              (self.rows_without_objects, "image(s) with no object left"))
                if n]
        text = f"{self.rows} row(s), {self.objects} object(s) from {self.samples} sample(s)"
        return text + (f"; left out: {', '.join(left)}" if left else "")


_COUNTERS = ("rows", "objects", "samples", "empty_masks", "rejected_by_sam", "duplicate_expressions",
             "rows_without_objects")


def _features(with_mask: bool) -> Any:
    ds = _datasets()
    return ds.Features({
        "id": ds.Value("string"), "problem": ds.Value("string"), "solution": ds.Value("string"),
        "image": ds.Image(), "img_height": ds.Value("int64"), "img_width": ds.Value("int64"),
        **({"mask": {"size": ds.Sequence(ds.Value("int64")), "counts": ds.Value("string")}} if with_mask else {}),
    })


def _empty_rows(with_mask: bool) -> dict[str, list[Any]]:
    cols = ("id", "problem", "solution", "image", "img_height", "img_width") + (("mask",) if with_mask else ())
    return {c: [] for c in cols}


def _build_row(samples: Sequence[Any], *, kind: str, frame_size: int, sam_filter: Any, with_mask: bool,
               counts: dict[str, int]) -> dict[str, Any] | None:
    """One training row from the samples of one picture (one sample unless grouping); ``None`` when no
    object is left."""
    import cv2

    from segzero_tool.masks import mask_bbox, rle_encode

    image: np.ndarray | None = None
    kept: list[tuple[Any, np.ndarray, tuple[int, ...], tuple[int, int], tuple[int, int]]] = []
    for sample in samples:
        counts["samples"] += 1
        mask = np.asarray(sample.load_gt_mask(), dtype=bool)
        box = mask_bbox(mask)
        if box is None:
            counts["empty_masks"] += 1
            continue
        if any(m.shape == mask.shape and np.array_equal(m, mask) for _, m, *_ in kept):
            counts["duplicate_expressions"] += 1  # another expression of an object already in the row
            continue
        if image is None:
            image = sample.load_image(max_pixels=None).array
        h, w = mask.shape
        if image.shape[:2] != (h, w):
            raise TrainingDataError(f"sample {sample.id!r}: image {image.shape[1]}x{image.shape[0]} and mask "
                                    f"{w}x{h} differ in size")
        p1, p2 = representative_points(mask)
        if sam_filter is not None and _mask_iou(_sam_mask(sam_filter, image, box, p1), mask) < SAM_FILTER_MIN_IOU:
            counts["rejected_by_sam"] += 1
            continue
        kept.append((sample, mask, tuple(box), p1, p2))
    if not kept or image is None:
        if len(samples) > 1:
            counts["rows_without_objects"] += 1
        return None
    h, w = image.shape[:2]
    fx, fy = frame_size / w, frame_size / h
    objects = []
    for _sample, _mask, box, p1, p2 in kept:
        objects.append({"bbox_2d": [scale(box[0], fx), scale(box[1], fy), scale(box[2], fx), scale(box[3], fy)],
                        "point_2d": [scale(p1[0], fx), scale(p1[1], fy)],
                        "point_2": [scale(p2[0], fx), scale(p2[1], fy)]})
    first = kept[0][0]
    if kind == "segzero":
        problem = first.query
        solution = format_segzero_solution(objects[0]["bbox_2d"], objects[0]["point_2d"], objects[0]["point_2"])
    else:
        problem = " and ".join("'" + s.query.strip().strip(".?!").lower() + "'" for s, *_ in kept)
        solution = format_visionreasoner_solution(objects)
    row: dict[str, Any] = {
        "id": "_".join(str(s.id) for s, *_ in kept[:3]),
        "problem": problem,
        "solution": solution,
        "image": {"bytes": _png_bytes(cv2.resize(image, (frame_size, frame_size), interpolation=cv2.INTER_AREA)),
                  "path": None},
        "img_height": int(h),
        "img_width": int(w),
    }
    if with_mask:
        union = np.zeros((h, w), dtype=bool)
        for _s, mask, *_ in kept:
            union |= mask
        fmask = cv2.resize(union.astype(np.uint8), (frame_size, frame_size), interpolation=cv2.INTER_NEAREST)
        row["mask"] = rle_encode(fmask.astype(bool))
    counts["rows"] += 1
    counts["objects"] += len(kept)
    return row


def _settings(eval_source: Any, *, kind: str, split: str | None, limit: int | None, frame_size: int,
              sam_filter: Any, sam_filter_name: str | None, with_mask: bool, group_by_image: bool) -> dict[str, Any]:
    source = os.fspath(eval_source) if isinstance(eval_source, (str, os.PathLike)) else repr(type(eval_source))
    if isinstance(eval_source, (str, os.PathLike)) and Path(source).expanduser().exists():
        source = str(Path(source).expanduser().resolve())
    sam = None if sam_filter is None else (sam_filter_name or getattr(sam_filter, "name", None)
                                           or type(sam_filter).__name__)
    return {"version": _BUILD_VERSION, "source": source, "kind": kind, "split": split, "limit": limit,
            "frame_size": frame_size, "sam_filter": sam, "sam_filter_min_iou": SAM_FILTER_MIN_IOU,
            "with_mask": with_mask, "group_by_image": group_by_image}


def _iter_rows(samples: Sequence[Any], groups: Sequence[Sequence[int]], *, kind: str, frame_size: int,
               sam_filter: Any, with_mask: bool, counts: dict[str, int], progress: Any,
               workers: int = 1, source: tuple[Any, str | None, int | None] | None = None,
               ) -> Iterator[dict[str, Any] | None]:
    """The row of each group, in order. ``workers`` > 1: built by that many processes, each opening the
    dataset again from ``source`` (``(eval_source, split, limit)``); never with a SAM filter."""
    if (workers > 1 and source is not None and isinstance(source[0], (str, os.PathLike)) and sam_filter is None
            and len(groups) > 1):
        yield from _iter_rows_parallel(groups, kind=kind, frame_size=frame_size, with_mask=with_mask,
                                       counts=counts, progress=progress, workers=workers, source=source)
        return
    for group in groups:
        row = _build_row([samples[i] for i in group], kind=kind, frame_size=frame_size, sam_filter=sam_filter,
                         with_mask=with_mask, counts=counts)
        _tick(progress, counts)
        yield row


def _tick(progress: Any, counts: dict[str, int]) -> None:
    if progress is not None:
        progress.update(1)
        progress.set_postfix(rows=counts["rows"], objects=counts["objects"], refresh=False)


_WORKER: dict[str, Any] = {}


def _worker_init(source: tuple[Any, str | None, int | None], kind: str, frame_size: int, with_mask: bool) -> None:
    _, items = _open_samples(*source)
    _WORKER.update(items=items, kind=kind, frame_size=frame_size, with_mask=with_mask)


def _worker_row(group: Sequence[int]) -> tuple[dict[str, Any] | None, dict[str, int]]:
    counts = dict.fromkeys(_COUNTERS, 0)
    row = _build_row([_WORKER["items"][i] for i in group], kind=_WORKER["kind"], frame_size=_WORKER["frame_size"],
                     sam_filter=None, with_mask=_WORKER["with_mask"], counts=counts)
    return row, counts


def _iter_rows_parallel(groups: Sequence[Sequence[int]], *, kind: str, frame_size: int, with_mask: bool,
                        counts: dict[str, int], progress: Any, workers: int,
                        source: tuple[Any, str | None, int | None]) -> Iterator[dict[str, Any] | None]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_init, initargs=(source, kind, frame_size, with_mask))
    try:
        chunk = max(1, min(16, len(groups) // (workers * 8)))
        for row, delta in pool.map(_worker_row, groups, chunksize=chunk):
            for key, value in delta.items():
                counts[key] += value
            _tick(progress, counts)
            yield row
    finally:  # an error or Ctrl-C: do not wait for the queued groups
        pool.shutdown(wait=False, cancel_futures=True)


def _open_samples(eval_source: Any, split: str | None, limit: int | None) -> Any:
    from segzero_tool.eval.datasets import load_eval_dataset

    from .data import looks_like_path

    if isinstance(eval_source, (str, os.PathLike)):
        text = os.fspath(eval_source)
        if not Path(text).expanduser().exists() and looks_like_path(text):  # never ask the hub for a typo
            raise TrainingDataError(f"{text}: no such file or folder (a ReasonSeg or RefCOCO folder, an evaluation "
                                    ".jsonl, a save_to_disk folder or a hub id is expected)")

    samples = load_eval_dataset(eval_source, split=split)
    items = list(samples)
    if limit is not None:
        items = items[: max(int(limit), 0)]
    return samples, items


def build_training_rows(eval_source: Any, *, kind: str = "visionreasoner", split: str | None = None,
                        limit: int | None = None, frame_size: int = 840, sam_filter: Any = None,
                        progress: bool = True, with_mask: bool = True, group_by_image: bool = False,
                        workers: int = 1) -> tuple[Any, BuildReport]:
    """The rows of :func:`build_training_dataset` as an in-memory ``datasets.Dataset`` (nothing is written),
    with the :class:`BuildReport`. For small sets (``segzero-train --dataset masks.jsonl``).

    Raises:
        TrainingDataError: bad arguments, a sample whose image and mask differ in size, no usable sample.
        DatasetError: the source cannot be read.
    """
    _check_args(kind, group_by_image, frame_size, workers, sam_filter)
    samples, items = _open_samples(eval_source, split, limit)
    groups = group_samples(items, by_image=group_by_image)
    counts = dict.fromkeys(_COUNTERS, 0)
    rows = _empty_rows(with_mask)
    bar = _bar(len(groups), progress, group_by_image)
    try:
        for row in _iter_rows(items, groups, kind=kind, frame_size=frame_size, sam_filter=sam_filter,
                              with_mask=with_mask, counts=counts, progress=bar, workers=workers,
                              source=(eval_source, split, limit)):
            if row is not None:
                for key, value in row.items():
                    rows[key].append(value)
    finally:
        if bar is not None:
            bar.close()
    report = BuildReport()
    report.add(counts)
    if not rows["id"]:
        raise TrainingDataError(f"no usable sample in {samples.name!r} ({report.summary()})")
    return _datasets().Dataset.from_dict(rows, features=_features(with_mask)), report


def _check_args(kind: str, group_by_image: bool, frame_size: int, workers: int = 1, sam_filter: Any = None) -> None:
    if kind not in KINDS:
        raise TrainingDataError(f"unknown dataset kind {kind!r}; choose one of: {', '.join(KINDS)}")
    if group_by_image and kind != "visionreasoner":
        raise TrainingDataError("grouping the objects of an image into one row needs the multi-object format: "
                                "use kind 'visionreasoner' (Seg-Zero rows hold one object)")
    if not isinstance(frame_size, int) or isinstance(frame_size, bool) or not 28 <= frame_size <= 4096:
        raise TrainingDataError(f"frame_size must be an integer from 28 to 4096, got {frame_size!r}")
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise TrainingDataError(f"workers must be a positive integer, got {workers!r}")
    if workers > 1 and sam_filter is not None:
        raise TrainingDataError("the SAM filter runs its model in this process: build with one worker "
                                "(--workers 1), or without --sam-filter")


def _bar(total: int, progress: bool, grouped: bool) -> Any:
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="building training rows", unit="image" if grouped else "sample")


def build_training_dataset(eval_source: Any, out_dir: str | os.PathLike, *, kind: str = "visionreasoner",
                           split: str | None = None, limit: int | None = None, frame_size: int = 840,
                           sam_filter: Callable[..., Any] | Any | None = None, progress: bool = True,
                           with_mask: bool = True, group_by_image: bool = False,
                           sam_filter_name: str | None = None, shard_size: int = DEFAULT_SHARD_SIZE,
                           restart: bool = False, report: BuildReport | None = None, workers: int = 1) -> Path:
    """Turn masks into a training set in the published format and ``save_to_disk`` it (a ``DatasetDict``
    with one ``train`` split), with ``build.json`` beside it (settings and counts).

    ``eval_source`` is anything :func:`segzero_tool.eval.datasets.load_eval_dataset` opens (ReasonSeg in
    LISA's layout, RefCOCO in LISA's ``refer_seg`` layout, a hub copy, a save_to_disk folder, the evaluation
    JSONL). Rows as in this module's docstring; ``group_by_image`` (``visionreasoner`` only) puts the objects
    of one picture in one row.

    ``sam_filter``: a :class:`~segzero_tool.segmenters.base.Segmenter` or a callable
    ``(image, box, point) -> mask`` in original pixels; an object is kept only if IoU(SAM mask, ground
    truth) >= 0.6 (the reference used SAM2.1-hiera-large with point 1 and the box). ``sam_filter_name``
    names it in ``build.json`` and in the resume check.

    Rows are written ``shard_size`` groups at a time to ``OUT.partial/``; running again with the same
    settings continues from there (``restart=True`` throws it away). The finished set is written to a
    temporary sibling and renamed into place. ``report``, if given, is filled in. ``workers`` > 1 builds the
    rows in that many processes (same rows, same order; a path or hub id as source, no SAM filter).
    Returns ``out_dir``.

    Raises:
        TrainingDataError: ``out_dir`` exists and is not empty; a partial build with other settings; bad
            arguments; a sample whose image and mask differ in size; no usable sample.
        DatasetError: the source cannot be read.
    """
    _check_args(kind, group_by_image, frame_size, workers, sam_filter)
    if not isinstance(shard_size, int) or shard_size < 1:
        raise TrainingDataError(f"shard_size must be a positive integer, got {shard_size!r}")
    ds_mod = _datasets()
    out = Path(out_dir).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise TrainingDataError(f"{out}: already exists and is not empty; choose another folder or remove it")
    settings = _settings(eval_source, kind=kind, split=split, limit=limit, frame_size=frame_size,
                         sam_filter=sam_filter, sam_filter_name=sam_filter_name, with_mask=with_mask,
                         group_by_image=group_by_image)
    partial = out.with_name(out.name + ".partial")
    state = resume_state(partial, settings, _COUNTERS, restart=restart)
    samples, items = _open_samples(eval_source, split, limit)
    groups = group_samples(items, by_image=group_by_image)
    report = report if report is not None else BuildReport()
    counts = dict.fromkeys(_COUNTERS, 0)
    counts.update({k: int(v) for k, v in state["counts"].items() if k in counts})
    done = int(state["groups_done"])
    report.resumed_groups = done
    partial.mkdir(parents=True, exist_ok=True)
    bar = _bar(len(groups), progress, group_by_image)
    if bar is not None and done:
        bar.update(min(done, len(groups)))
    features = _features(with_mask)
    try:
        rows = _empty_rows(with_mask)
        pending = 0
        rest = groups[done:]
        for row in _iter_rows(items, rest, kind=kind, frame_size=frame_size, sam_filter=sam_filter,
                              with_mask=with_mask, counts=counts, progress=bar, workers=workers,
                              source=(eval_source, split, limit)):
            pending += 1
            if row is not None:
                for key, value in row.items():
                    rows[key].append(value)
            if pending == shard_size:
                with quiet_datasets():
                    done = flush_shard(partial, state, rows, features, done + pending, counts)
                rows, pending = _empty_rows(with_mask), 0
        if pending:
            with quiet_datasets():
                done = flush_shard(partial, state, rows, features, done + pending, counts)
    finally:
        if bar is not None:
            bar.close()
    report.add(counts)
    report.out = str(out)
    if not counts["rows"]:
        shutil.rmtree(partial, ignore_errors=True)
        raise TrainingDataError(f"no usable sample in {samples.name!r} ({report.summary()})")
    shards = [ds_mod.load_from_disk(str(partial / name)) for name in state["shards"]]
    dataset = ds_mod.DatasetDict({"train": ds_mod.concatenate_datasets(shards) if len(shards) > 1 else shards[0]})
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        with quiet_datasets():
            dataset.save_to_disk(str(tmp))
        write_json(tmp / "build.json", {"settings": settings, "counts": {k: getattr(report, k) for k in _COUNTERS}})
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    del dataset, shards
    shutil.rmtree(partial, ignore_errors=True)
    return out
