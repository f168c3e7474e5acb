"""Mask encodings: COCO RLE (pycocotools), polygons, PNG bytes.

All masks are ``(H, W)`` bool arrays in original-image pixels. RLE dicts follow COCO:
``{"size": [H, W], "counts": "<compressed string>"}``. Polygons are lists of flat
``[x0, y0, x1, y1, ...]`` pixel coordinates, one list per outer contour.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np


def rle_encode(mask: np.ndarray) -> dict[str, Any]:
    """Encode an ``(H, W)`` bool mask as a COCO RLE dict with a UTF-8 ``counts`` string.

    Identical to ``pycocotools.mask.encode`` but only the columns that hold the mask are transposed
    (COCO runs are column-major), which is several times faster for objects in large images.
    """
    from pycocotools import mask as mask_utils

    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {mask.shape}")
    h, w = int(mask.shape[0]), int(mask.shape[1])
    cols = np.flatnonzero(mask.any(axis=0))
    if cols.size == 0:
        counts: list[int] = [h * w]
    else:
        x1, x2 = int(cols[0]), int(cols[-1])
        flat = np.ascontiguousarray(mask[:, x1 : x2 + 1].T, dtype=np.uint8).reshape(-1)
        change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
        bounds = np.concatenate(([0], change, [flat.size]))
        runs = np.diff(bounds).tolist()
        lead, tail = x1 * h, (w - 1 - x2) * h
        if flat[0]:  # counts always start with a (possibly empty) run of zeros
            runs.insert(0, 0)
        runs[0] += lead
        if flat[-1]:
            if tail:
                runs.append(tail)
        else:
            runs[-1] += tail
        counts = runs
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
