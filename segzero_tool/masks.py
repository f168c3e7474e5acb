"""Mask encodings: COCO RLE (pycocotools), polygons, PNG bytes.

All masks are ``(H, W)`` bool arrays in original-image pixels. RLE dicts follow COCO:
``{"size": [H, W], "counts": "<compressed string>"}``. Polygons are lists of flat
``[x0, y0, x1, y1, ...]`` pixel coordinates, one list per outer contour.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np


def rle_counts(mask: np.ndarray) -> list[int]:
    """The uncompressed COCO run lengths of an ``(H, W)`` mask: column-major, starting with a
    (possibly empty) run of zeros.

    Only the mask's bounding box (plus one row of zeros above and below, where the image has
    them) is transposed (by OpenCV) and scanned; the runs outside it are added arithmetically. A run change at
    crop index ``i`` maps to the full column-major position ``full(i)`` for a rise and
    ``full(i - 1) + 1`` for a fall: the rows skipped between two cropped columns are all zeros, and
    at least one of the two crop values around a skip is a padding zero.
    """
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {mask.shape}")
    h, w = int(mask.shape[0]), int(mask.shape[1])
    if mask.dtype != np.bool_:
        mask = mask.astype(bool)
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return [h * w]
    y1, y2 = int(rows[0]), int(rows[-1])
    cols = np.flatnonzero(mask[y1 : y2 + 1].any(axis=0))
    x1, x2 = int(cols[0]), int(cols[-1])
    top, bottom = max(y1 - 1, 0), min(y2 + 1, h - 1)
    bh = bottom - top + 1
    crop = mask[top : bottom + 1, x1 : x2 + 1].view(np.uint8)
    if crop.strides[1] == 1:
        import cv2  # its blocked transpose is several times faster than numpy's strided copy

        flat = cv2.transpose(crop).reshape(-1)
    else:
        flat = np.ascontiguousarray(crop.T).reshape(-1)
    idx = np.flatnonzero(flat[1:] != flat[:-1]) + 1  # crop indices whose value differs from the previous one
    rise = flat[idx].astype(bool)
    at = np.where(rise, idx, idx - 1)
    col, row = np.divmod(at, bh)
    pos = (col + x1) * h + (row + top) + (~rise)
    edges = [pos]
    if flat[0]:
        edges.insert(0, np.array([x1 * h + top], dtype=pos.dtype))
    if flat[-1]:
        end = (x2 * h + bottom) + 1
        if end < h * w:
            edges.append(np.array([end], dtype=pos.dtype))
    bounds = np.concatenate([np.zeros(1, dtype=np.int64), *edges, np.array([h * w], dtype=np.int64)])
    return np.diff(bounds).tolist()


def rle_encode(mask: np.ndarray) -> dict[str, Any]:
    """Encode an ``(H, W)`` bool mask as a COCO RLE dict with a UTF-8 ``counts`` string.

    Identical to ``pycocotools.mask.encode`` but only the mask's bounding box is transposed (COCO
    runs are column-major; see :func:`rle_counts`), which is many times faster for objects in large
    images; pycocotools compresses the run lengths to the COCO string.
    """
    from pycocotools import mask as mask_utils

    counts = rle_counts(mask)
    h, w = int(mask.shape[0]), int(mask.shape[1])
    rle = mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    c = rle["counts"]
    return {"size": [h, w], "counts": c.decode("ascii") if isinstance(c, bytes) else c}


def rle_decode(rle: dict[str, Any]) -> np.ndarray:
    """Decode a COCO RLE dict (compressed string or uncompressed list counts) to ``(H, W)`` bool."""
    from pycocotools import mask as mask_utils

    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, list):
        obj = mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    else:
        obj = {"size": [h, w], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return mask_utils.decode(obj).astype(bool)


def rle_area(rle: dict[str, Any]) -> int:
    from pycocotools import mask as mask_utils

    counts = rle["counts"]
    obj = {"size": rle["size"], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return int(mask_utils.area(obj))


def mask_to_polygons(mask: np.ndarray, *, tolerance: float = 1.0, min_area: float = 1.0) -> list[list[float]]:
    """Outer contours of a mask as flat ``[x0, y0, x1, y1, ...]`` lists (pixel coordinates).

    Args:
        mask: ``(H, W)`` bool.
        tolerance: Douglas-Peucker tolerance in pixels (0 keeps every contour vertex).
        min_area: contours enclosing less than this many pixels are dropped.
    """
    import cv2

    m = np.ascontiguousarray(mask.astype(np.uint8))
    if not m.any():
        return []
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    polygons: list[list[float]] = []
    for c in contours:
        if tolerance > 0:
            c = cv2.approxPolyDP(c, tolerance, True)
        if len(c) < 3:
            # thin lines and single pixels: keep them as a tiny closed polygon around the pixels
            xs, ys = c[:, 0, 0], c[:, 0, 1]
            x1, y1, x2, y2 = float(xs.min()), float(ys.min()), float(xs.max()) + 1, float(ys.max()) + 1
            polygons.append([x1, y1, x2, y1, x2, y2, x1, y2])
            continue
        if cv2.contourArea(c) < min_area and len(c) < 4:
            continue
        polygons.append([float(v) for v in c.reshape(-1)])
    return polygons


def polygons_to_mask(polygons: list[list[float]], height: int, width: int) -> np.ndarray:
    """Rasterise flat polygons (as from :func:`mask_to_polygons`) to an ``(H, W)`` bool mask."""
    import cv2

    out = np.zeros((height, width), dtype=np.uint8)
    pts = [np.asarray(p, dtype=np.float64).reshape(-1, 2).round().astype(np.int32) for p in polygons if len(p) >= 6]
    if pts:
        cv2.fillPoly(out, pts, 1)
        cv2.polylines(out, pts, True, 1)
    return out.astype(bool)


def mask_to_png_bytes(mask: np.ndarray) -> bytes:
    """A single-channel PNG (0 / 255) of an ``(H, W)`` bool mask."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255, mode="L").save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Tight inclusive ``(x1, y1, x2, y2)`` of a mask, or ``None`` when empty."""
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    if ys.size == 0:
        return None
    return int(xs[0]), int(ys[0]), int(xs[-1]), int(ys[-1])
