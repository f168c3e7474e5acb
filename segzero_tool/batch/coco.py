"""The COCO export of a batch job: ``results.jsonl`` records -> one COCO instances file.

:func:`coco_from_records` builds the COCO dict and :func:`write_coco` writes it (atomically). Each distinct
image (of the records that know its size) is one ``images`` entry, so several queries of one image share it;
each distinct category (the record's ``category``, else its query) is one ``categories`` entry; each object
with a mask in an ``ok`` record is one ``annotations`` entry whose ``segmentation`` is the record's compressed
RLE, with ``area`` and ``bbox`` computed from that RLE exactly as pycocotools' ``area`` / ``toBbox`` do. The
file loads with ``pycocotools.coco.COCO`` and its annotations pass ``COCO.loadRes`` (each carries a score).

The RLE strings are read here in pure Python (no pycocotools import), and nothing opens the images.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write_bytes
from ..errors import SegZeroError


class CocoExportError(SegZeroError, ValueError):
    """A record cannot be exported (a mask that is not a COCO RLE of its image's size): the results file was
    edited or damaged; the message names the record."""

    exit_code = 2


def rle_string_counts(counts: str) -> list[int]:
    """The run lengths of a COCO compressed RLE string (pycocotools' ``rleFrString``, in Python)."""
    out: list[int] = []
    p, n = 0, len(counts)
    while p < n:
        x, k, more = 0, 0, True
        while more:
            if p >= n:
                raise ValueError("the RLE string ends inside a number")
            c = ord(counts[p]) - 48
            if not 0 <= c < 64:
                raise ValueError(f"character {counts[p]!r} cannot occur in an RLE string")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(out) > 2:
            x += out[-2]
        out.append(x)
    return out


def rle_area_bbox(counts: list[int], height: int, width: int) -> tuple[int, list[float]]:
    """``(area, [x, y, w, h])`` of uncompressed COCO runs, as pycocotools' ``area`` and ``toBbox``."""
    if any(c < 0 for c in counts) or sum(counts) != height * width:
        raise ValueError(f"the runs cover {sum(counts)} pixels, not {height} x {width} = {height * width}")
    cnts = np.asarray(counts, dtype=np.int64)
    area = int(cnts[1::2].sum())
    m = (len(cnts) // 2) * 2
    if m == 0 or area == 0:
        return area, [0.0, 0.0, 0.0, 0.0]
    j = np.arange(m)
    t = np.cumsum(cnts[:m]) - (j % 2)  # the first pixel of each foreground run, the last pixel of each
    y, x = t % height, t // height
    xs, xe, ys, ye = int(x.min()), int(x.max()), int(y.min()), int(y.max())
    if np.any(x[1::2] > x[0::2]):  # a run crosses a column: it covers whole rows
        ys, ye = 0, height - 1
    return area, [float(xs), float(ys), float(xe - xs + 1), float(ye - ys + 1)]


def coco_from_records(records: Iterable[Mapping], *, description: str = "segzero batch") -> dict:
    """A COCO instances dict (``info``, ``licenses``, ``images``, ``categories``, ``annotations``) of batch
    records (the shape of ``results.jsonl``), taken in ``index`` order.

    Categories come from every record (so their ids stay the same when a rerun fixes failed rows); images
    from the records with an ``image_size``; annotations from the objects with a mask of ``ok`` records. An
    object's ``score`` is kept; ``1.0`` stands in when the segmenter gave none (COCO evaluation ranks by it).

    Raises:
        CocoExportError: a mask is not a COCO RLE or its size differs from the image's.
    """
    from .. import __version__

    ordered = sorted(enumerate(records), key=lambda e: (_index(e[1].get("index"), e[0]), e[0]))
    images: dict[str, dict[str, Any]] = {}
    categories: dict[str, dict[str, Any]] = {}
    annotations: list[dict[str, Any]] = []
    for _, rec in ordered:
        name = _name(rec.get("category")) or _name(rec.get("query"))
        if name and name not in categories:
            categories[name] = {"id": len(categories) + 1, "name": name, "supercategory": "segzero"}
        image = rec.get("image")
        size = _size(rec.get("image_size"))
        if isinstance(image, str) and image and size is not None and image not in images:
            images[image] = {"id": len(images) + 1, "file_name": image, "width": size[0], "height": size[1]}
    for _, rec in ordered:
        if rec.get("status") != "ok" or not rec.get("objects"):
            continue
        rid = rec.get("id")
        image = rec.get("image")
        name = _name(rec.get("category")) or _name(rec.get("query"))
        for k, obj in enumerate(rec["objects"]):
            mask = obj.get("mask") if isinstance(obj, Mapping) else None
            if mask is None:
                continue
            where = f"record {rid!r} object {obj.get('index', k)}"
            segmentation, area, bbox = _read_mask(mask, where)
            h, w = segmentation["size"]
            if not isinstance(image, str) or not image or not name:
                raise CocoExportError(f"{where}: an ok record without its image or query; the results file was "
                                      "edited or damaged: rerun the rows")
            entry = images.get(image)
            if entry is None:  # an ok record always has its size; take it from the mask if it does not
                entry = images[image] = {"id": len(images) + 1, "file_name": image, "width": w, "height": h}
            if (entry["height"], entry["width"]) != (h, w):
                raise CocoExportError(f"{where}: the mask is {w} x {h} but image {image!r} is "
                                      f"{entry['width']} x {entry['height']}; rerun the rows of this image")
            score = obj.get("score")
            annotations.append({
                "id": len(annotations) + 1, "image_id": entry["id"], "category_id": categories[name]["id"],
                "segmentation": segmentation, "area": area, "bbox": bbox, "iscrowd": 0,
                "score": float(score) if isinstance(score, (int, float)) and not isinstance(score, bool) else 1.0,
                "segzero": {"record_id": rid, "object_index": obj.get("index", k)},
            })
    return {
        "info": {"description": description, "date_created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                 "version": __version__},
        "licenses": [],
        "images": list(images.values()),
        "categories": list(categories.values()),
        "annotations": annotations,
    }


def write_coco(records: Iterable[Mapping], path: str | os.PathLike, *, description: str = "segzero batch") -> Path:
    """Write :func:`coco_from_records` of ``records`` as JSON to ``path`` (atomically; parent folders are
    made) and return the path."""
    coco = coco_from_records(records, description=description)
    try:
        data = json.dumps(coco, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (an undecodable file name): escape everything
        data = json.dumps(coco, separators=(",", ":")).encode("ascii")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_bytes(p, data)


def _read_mask(mask: Any, where: str) -> tuple[dict[str, Any], int, list[float]]:
    try:
        h, w = (int(v) for v in mask["size"])
        counts = mask["counts"]
        runs = rle_string_counts(counts) if isinstance(counts, str) else [int(c) for c in counts]
        if h <= 0 or w <= 0 or not runs:
            raise ValueError(f"size {h} x {w} with {len(runs)} runs")
        area, bbox = rle_area_bbox(runs, h, w)
    except (KeyError, TypeError, ValueError) as exc:
        raise CocoExportError(f"{where}: the mask is not a COCO RLE ({exc}); the results file was edited or "
                              "damaged: rerun the rows") from None
    if not isinstance(counts, str):  # uncompressed runs: COCO readers take them only with iscrowd=1; compress
        counts = _runs_to_string(runs)
    return {"size": [h, w], "counts": counts}, area, bbox


def _runs_to_string(runs: list[int]) -> str:
    """pycocotools' ``rleToString``: runs -> the compressed COCO string."""
    out: list[str] = []
    for i, c in enumerate(runs):
        x = c - runs[i - 2] if i > 2 else c
        more = True
        while more:
            ch = x & 0x1F
            x >>= 5
            more = not (x == 0 and not ch & 0x10) and not (x == -1 and ch & 0x10)
            if more:
                ch |= 0x20
            out.append(chr(ch + 48))
    return "".join(out)


def _index(value: Any, position: int) -> float:
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else float("inf")


def _name(value: Any) -> str | None:
    if value is None:
        return None
    s = value if isinstance(value, str) else str(value)
    return s if s.strip() else None


def _size(value: Any) -> tuple[int, int] | None:
    try:
        w, h = (int(v) for v in value)
    except (TypeError, ValueError):
        return None
    return (w, h) if w > 0 and h > 0 else None


__all__ = ["CocoExportError", "coco_from_records", "write_coco"]
