"""Users' own evaluation data as JSONL: one JSON object per line naming an image, a query and a mask."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .gt_masks import PngMask, PolygonMask, RleMask, check_polygons, check_rle
from .samples import DatasetError, EvalDataset, EvalSample, box_or_none


def load_jsonl(path: str | os.PathLike) -> EvalDataset:
    """Users' own data, one JSON object per line::

        {"image": "imgs/a.jpg", "query": "the cup", "mask": "masks/a.png"}
        {"image": "imgs/b.jpg", "query": "...", "mask": {"size": [H, W], "counts": "..."}}
        {"image": "imgs/c.jpg", "query": "...", "polygons": [[x0, y0, x1, y1, ...], ...], "is_sentence": true}

    Keys: ``image`` (path, relative to the JSONL file); ``query`` (or ``text``; a list uses its first
    entry); the mask as ``mask`` (a PNG path, a COCO RLE dict, or polygons) or explicitly
    ``mask_png`` / ``rle`` / ``polygons`` (flat ``[x0, y0, x1, y1, ...]`` lists, or ``[[x, y], ...]``);
    optional ``id``, ``box`` / ``bbox`` (``[x1, y1, x2, y2]``), ``is_sentence``, ``image_id`` (which image,
    to group several queries of one image; default: the resolved image path). Blank lines and lines
    starting with ``#`` are skipped. PNG masks: any non-zero pixel is foreground.
    """
    p = Path(path).expanduser()
    base = p.parent
    samples: list[EvalSample] = []
    for where, lineno, row in jsonl_objects(p):
        samples.append(_jsonl_sample(row, base, where, lineno))
    if not samples:
        raise DatasetError(f"{p}: no samples")
    return EvalDataset(samples, name=os.fspath(path), kind="jsonl", location=str(p.resolve()))


def jsonl_objects(
    path: Path, *, error: Callable[[str], Exception] = DatasetError, limit: int | None = None
) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """The JSON objects of the JSONL file ``path`` as ``(where, lineno, row)`` (``where`` is ``"path:lineno"``
    for messages); blank lines and lines starting with ``#`` are skipped.

    The file is read at once (an unreadable file raises here, not on the first ``next``); the lines are parsed
    as they are asked for. ``limit``: stop, without parsing further lines, once that many objects were given.

    Raises:
        ``error`` (:class:`DatasetError` by default): the file cannot be read, a line is not valid JSON or
        not a JSON object.
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot be read ({exc})") from None
    return _jsonl_objects(path, lines, error, limit)


def _jsonl_objects(path: Path, lines: list[str], error: Callable[[str], Exception],
                   limit: int | None) -> Iterator[tuple[str, int, dict[str, Any]]]:
    given = 0
    for lineno, line in enumerate(lines, 1):
        if limit is not None and given >= limit:
            break
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{path}:{lineno}"
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise error(f"{where}: not valid JSON ({exc})") from None
        if not isinstance(row, dict):
            raise error(f"{where}: each line must be a JSON object")
        given += 1
        yield where, lineno, row


def _resolve_path(value: Any, base: Path, where: str, what: str) -> Path:
    if not isinstance(value, str) or not value:
        raise DatasetError(f"{where}: {what} must be a file path")
    q = Path(value).expanduser()
    q = q if q.is_absolute() else base / q
    if not q.is_file():
        raise DatasetError(f"{where}: {what} {q} does not exist")
    return q


def _jsonl_sample(row: dict[str, Any], base: Path, where: str, lineno: int) -> EvalSample:
    image = _resolve_path(row.get("image"), base, where, "image")
    query = row.get("query", row.get("text"))
    if isinstance(query, list):
        query = query[0] if query else None
    if not isinstance(query, str):
        raise DatasetError(f"{where}: needs a 'query' string")
    mask: Callable[[], np.ndarray]
    if "mask_png" in row:
        mask = PngMask(_resolve_path(row["mask_png"], base, where, "mask_png"))
    elif "rle" in row:
        mask = RleMask(check_rle(row["rle"], where))
    elif "polygons" in row:
        mask = PolygonMask(check_polygons(row["polygons"], where), image, row.get("width"), row.get("height"))
    elif "mask" in row:
        m = row["mask"]
        if isinstance(m, str):
            mask = PngMask(_resolve_path(m, base, where, "mask"))
        elif isinstance(m, dict) and "counts" in m:
            mask = RleMask(check_rle(m, where))
        elif isinstance(m, dict) and "polygons" in m:
            mask = PolygonMask(check_polygons(m["polygons"], where), image, row.get("width"), row.get("height"))
        elif isinstance(m, list):
            mask = PolygonMask(check_polygons(m, where), image, row.get("width"), row.get("height"))
        else:
            raise DatasetError(f"{where}: 'mask' must be a PNG path, a COCO RLE dict or polygons")
    else:
        raise DatasetError(f"{where}: needs a mask ('mask', 'mask_png', 'rle' or 'polygons')")
    box = row.get("box", row.get("bbox"))
    gt_box = box_or_none(box)
    if box is not None and gt_box is None:
        raise DatasetError(f"{where}: 'box' must be [x1, y1, x2, y2]")
    is_sentence = row.get("is_sentence")
    image_id = row.get("image_id")
    return EvalSample(
        id=str(row["id"]) if row.get("id") is not None else f"line{lineno:06d}",
        query=query, image=str(image), gt_mask=mask, gt_box=gt_box,
        is_sentence=None if is_sentence is None else bool(is_sentence), source=where,
        image_id=str(image_id) if image_id is not None else str(image.resolve()),
    )


__all__ = ["load_jsonl"]
