"""Ground-truth masks from annotations: LISA polygons, PNG files, COCO RLE, flat polygons.

ReasonSeg in LISA's layout (one ``<name>.json`` per ``<name>.jpg``) is rasterised as the hub copies
were made (protocol section 3.1):

* a shape whose label is ``flag`` (case-insensitive) is skipped;
* every other shape is drawn (OpenCV ``polylines`` of width 1 plus ``fillPoly``, vertices truncated to
  ``int32``) in descending order of its own rasterised area, so smaller shapes land on top;
* a label containing ``ignore`` is written as 255, any other label as 1 (target);
* ``ignore_as_foreground=True`` (default) then casts to bool, so ignore regions count as foreground,
  exactly like the hub copies; ``False`` keeps only the target pixels (value 1).

The ``*Mask`` classes are the lazy ``gt_mask`` callables of :class:`~.samples.EvalSample`: each decodes
its mask to an ``(H, W)`` bool array when called. OpenCV and Pillow are imported when a mask is drawn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .samples import DatasetError, stored_image_size, to_bool_mask


def _int_points(points: Any, where: str) -> np.ndarray:
    try:
        arr = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        raise DatasetError(f"{where}: polygon points must be [[x, y], ...] numbers") from None
    if arr.ndim != 2 or arr.shape[1] != 2 or len(arr) == 0:
        raise DatasetError(f"{where}: polygon points must be a non-empty [[x, y], ...] list, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise DatasetError(f"{where}: polygon points must be finite numbers")
    return arr.astype(np.int32)  # truncation toward zero, as np.array(points, dtype=np.int32)


def lisa_label_map(shapes: Sequence[Mapping[str, Any]], height: int, width: int, *, where: str = "shapes") -> np.ndarray:
    """Rasterise LISA ``shapes`` to a uint8 map: 0 background, 1 target, 255 ignore.

    ``flag`` shapes are skipped; the others are drawn largest first (area = the shape's own
    rasterised pixel count; equal areas keep the reverse of their file order), each as a closed
    1-pixel polyline plus a filled polygon.
    """
    import cv2

    drawn: list[tuple[np.ndarray, int]] = []
    areas: list[int] = []
    for k, shape in enumerate(shapes):
        label = str(shape.get("label", ""))
        if label.lower() == "flag":
            continue
        pts = _int_points(shape.get("points"), f"{where}, shape {k}")
        tmp = np.zeros((height, width), dtype=np.uint8)
        cv2.polylines(tmp, [pts], True, 1, 1)
        cv2.fillPoly(tmp, [pts], 1)
        areas.append(int(tmp.sum()))
        drawn.append((pts, 255 if "ignore" in label.lower() else 1))
    out = np.zeros((height, width), dtype=np.uint8)
    # descending area; for ties the later shape is drawn first (the reverse of a stable ascending sort)
    for i in np.argsort(np.asarray(areas, dtype=np.int64), kind="stable")[::-1]:
        pts, value = drawn[int(i)]
        cv2.polylines(out, [pts], True, value, 1)
        cv2.fillPoly(out, [pts], value)
    return out


def rasterize_lisa_shapes(shapes: Sequence[Mapping[str, Any]], height: int, width: int, *,
                          ignore_as_foreground: bool = True, where: str = "shapes") -> np.ndarray:
    """The ``(H, W)`` bool ground truth of LISA ``shapes`` (see :func:`lisa_label_map`)."""
    labels = lisa_label_map(shapes, height, width, where=where)
    return labels != 0 if ignore_as_foreground else labels == 1


@dataclass(frozen=True)
class LisaMask:
    json_path: Path
    image_path: Path
    shapes: list
    ignore_as_foreground: bool

    def __call__(self) -> np.ndarray:
        w, h = stored_image_size(self.image_path)
        return rasterize_lisa_shapes(self.shapes, h, w, ignore_as_foreground=self.ignore_as_foreground,
                                     where=str(self.json_path))


def check_rle(rle: Any, where: str) -> dict[str, Any]:
    if (not isinstance(rle, dict) or "counts" not in rle or not isinstance(rle.get("size"), list)
            or len(rle["size"]) != 2):
        raise DatasetError(f"{where}: an RLE mask is {{\"size\": [H, W], \"counts\": ...}}")
    return rle


def check_polygons(polys: Any, where: str) -> list[list[float]]:
    if not isinstance(polys, list) or not polys:
        raise DatasetError(f"{where}: polygons must be a non-empty list")
    if all(isinstance(v, (int, float)) for v in polys):  # one flat polygon
        polys = [polys]
    out: list[list[float]] = []
    for poly in polys:
        if isinstance(poly, list) and poly and all(isinstance(v, list) and len(v) == 2 for v in poly):
            poly = [c for xy in poly for c in xy]  # [[x, y], ...] -> flat
        if (not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2
                or not all(isinstance(v, (int, float)) and np.isfinite(v) for v in poly)):
            raise DatasetError(f"{where}: each polygon is a flat [x0, y0, x1, y1, ...] list of >= 3 points")
        out.append([float(v) for v in poly])
    return out


@dataclass(frozen=True)
class PngMask:
    path: Path

    def __call__(self) -> np.ndarray:
        from PIL import UnidentifiedImageError

        from ..images import identify_image

        # identified without Pillow's decompression-bomb guard: a mask is as large as its image,
        # which our own pixel limit has already allowed
        try:
            with open(self.path, "rb") as fh:
                img = identify_image(fh)
                img.load()
                return to_bool_mask(img, what=str(self.path))
        except (OSError, ValueError, SyntaxError, EOFError, UnidentifiedImageError) as exc:
            raise DatasetError(f"{self.path}: the mask PNG cannot be read ({exc})") from None


@dataclass(frozen=True)
class RleMask:
    rle: dict

    def __call__(self) -> np.ndarray:
        from ..masks import rle_decode

        try:
            return rle_decode(self.rle)
        except (TypeError, ValueError) as exc:
            raise DatasetError(f"an RLE mask cannot be decoded ({exc})") from None


@dataclass(frozen=True)
class PolygonMask:
    polygons: list
    image: Path
    width: Any = None
    height: Any = None

    def __call__(self) -> np.ndarray:
        from ..masks import polygons_to_mask

        if self.width is not None and self.height is not None:
            w, h = int(self.width), int(self.height)
        else:
            w, h = stored_image_size(self.image)
        return polygons_to_mask(self.polygons, h, w)


__all__ = [
    "LisaMask",
    "PngMask",
    "PolygonMask",
    "RleMask",
    "check_polygons",
    "check_rle",
    "lisa_label_map",
    "rasterize_lisa_shapes",
]
