"""Perception for the planner: calling the segmenter, summarising results, measuring masks.

The graph state holds JSON-ready dicts only; masks travel between the ``perceive`` and ``geometry``
nodes as COCO RLE (``segzero_tool.masks``), so a checkpoint never holds a SegmentationResult.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from segzero_tool.agents.geometry import Intrinsics
    from segzero_tool.result import SegmentationResult

#: ``(image, query) -> SegmentationResult``.
SegmentFn = Callable[[Any, str], "SegmentationResult"]


def as_segment_fn(segmenter: Any) -> SegmentFn:
    """Accept a :class:`~segzero_tool.SegZeroPipeline` (anything with ``segment(image, query)``) or a
    callable ``(image, query) -> SegmentationResult``.

    Raises:
        TypeError: ``segmenter`` is neither.
    """
    seg = getattr(segmenter, "segment", None)
    if callable(seg):
        return seg
    if callable(segmenter):
        return segmenter
    raise TypeError(
        f"segmenter must be a SegZeroPipeline or a callable (image, query) -> SegmentationResult, "
        f"got {type(segmenter).__name__}"
    )


def resolve_image(image: Any, max_bytes: int = 25_000_000) -> Any:
    """``data:`` URLs (as sent to ``langgraph dev``) become bytes; anything else is passed on unchanged."""
    if isinstance(image, str) and image[:5].lower() == "data:":
        from segzero_tool.agents.tool import decode_base64_image

        return decode_base64_image(image, max_bytes)
    return image


def object_record(i: int, obj: Any) -> dict[str, Any]:
    """What the planner keeps of one object: box, points, score, area, RLE mask and, with a mask and
    a box, how well they agree (:func:`~segzero_tool.agents.geometry.box_agreement`)."""
    from segzero_tool.agents.geometry import box_agreement
    from segzero_tool.masks import rle_encode

    record = {
        "index": i,
        "box": list(obj.box) if obj.box is not None else None,
        "points": [list(p) for p in obj.points],
        "score": round(float(obj.score), 4) if np.isfinite(obj.score) else None,
        "area": obj.area,
        "rle": rle_encode(obj.mask) if obj.mask is not None else None,
    }
    if obj.mask is not None and obj.box is not None:
        record["agreement"] = box_agreement(obj.mask, obj.box)
    return record


def perceive_query(segment: SegmentFn, image: Any, query: str,
                   keep: Callable[[SegmentationResult], None] | None = None) -> dict[str, Any]:
    """Run one query and keep what the planner needs (boxes, points, scores, RLE masks, mask/box
    agreement); ``keep(result)`` receives the full result (for a later refinement)."""
    result = segment(image, query)
    if keep is not None:
        keep(result)
    objects = [object_record(i, obj) for i, obj in enumerate(result.objects)]
    w, h = result.image_size
    return {
        "query": query,
        "summary": result.summary(),
        "parse_status": result.parse_status.value,
        "reasoning": result.reasoning,
        "image_size": [int(w), int(h)],
        "count": len(objects),
        "objects": objects,
    }


def to_intrinsics(value: Any) -> Intrinsics | None:
    """``Intrinsics`` from an instance, a ``{"fx", "fy", "cx", "cy"}`` mapping, four numbers
    ``(fx, fy, cx, cy)`` or a 3x3 matrix; ``None`` stays ``None``.

    Raises:
        ValueError: anything else.
    """
    from segzero_tool.agents.geometry import Intrinsics

    if value is None or isinstance(value, Intrinsics):
        return value
    if isinstance(value, Mapping):
        try:
            return Intrinsics(*(float(value[k]) for k in ("fx", "fy", "cx", "cy")))
        except KeyError as exc:
            raise ValueError(f"intrinsics need fx, fy, cx and cy; missing {exc}") from None
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape == (3, 3):
        return Intrinsics.from_matrix(arr)
    if arr.shape == (4,):
        return Intrinsics(*arr.tolist())
    raise ValueError(f"intrinsics must be Intrinsics, a dict, 4 numbers or a 3x3 matrix; got shape {arr.shape}")


def as_depth(depth: Any, image_size: Sequence[int]) -> np.ndarray | None:
    """The depth map as an ``(H, W)`` array checked against the image size ``(W, H)``.

    Raises:
        ValueError: wrong shape.
    """
    if depth is None:
        return None
    arr = np.asarray(depth)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    w, h = int(image_size[0]), int(image_size[1])
    if arr.shape != (h, w):
        raise ValueError(f"the depth map has shape {arr.shape} but the image is {w}x{h}; "
                         f"pass an aligned (H, W) = ({h}, {w}) depth map")
    return arr


def measure(perception: dict[str, Any], *, depth: np.ndarray | None, intrinsics: Intrinsics | None,
            depth_scale: float) -> dict[str, Any]:
    """Add ``geometry`` (see :class:`~segzero_tool.agents.geometry.ObjectGeometry`) to every object.

    Objects without a mask (or with an empty one) are measured on their filled box
    (``mask_source: "box"``).
    """
    from segzero_tool.agents.geometry import object_geometry
    from segzero_tool.masks import rle_decode

    w, h = perception["image_size"]
    objects = []
    for obj in perception["objects"]:
        mask = rle_decode(obj["rle"]) if obj.get("rle") is not None else None
        if mask is not None and mask.any():
            source = "mask"
        else:  # no mask, or an empty one: measure the filled box
            mask, source = np.zeros((h, w), dtype=bool), "box"
            if obj.get("box") is not None:
                x1, y1, x2, y2 = obj["box"]
                mask[y1 : y2 + 1, x1 : x2 + 1] = True
        geo = object_geometry(mask, depth=depth, intrinsics=intrinsics, depth_scale=depth_scale).to_dict()
        objects.append({**obj, "geometry": {**geo, "mask_source": source}})
    return {**perception, "objects": objects}


def depth_at(depth: np.ndarray | None, point: Sequence[float], depth_scale: float, radius: int = 3) -> float | None:
    """Median valid depth (metres) in a ``(2r+1)^2`` window around ``point``; ``None`` if none is valid."""
    if depth is None:
        return None
    h, w = depth.shape[:2]
    x, y = round(float(point[0])), round(float(point[1]))
    if not (0 <= x < w and 0 <= y < h):
        return None
    win = depth[max(0, y - radius) : y + radius + 1, max(0, x - radius) : x + radius + 1].astype(np.float64)
    win = win[np.isfinite(win) & (win > 0)] * depth_scale
    return float(np.median(win)) if win.size else None


def point_3d(depth: np.ndarray | None, intrinsics: Intrinsics | None, point: Sequence[float] | None,
             depth_scale: float) -> list[float] | None:
    """Camera-frame ``[X, Y, Z]`` metres of an image point, or ``None`` without depth/intrinsics."""
    from segzero_tool.agents.geometry import deproject

    if point is None or intrinsics is None:
        return None
    z = depth_at(depth, point, depth_scale)
    if z is None or not math.isfinite(z):
        return None
    return [round(v, 4) for v in deproject((float(point[0]), float(point[1])), z, intrinsics)]


__all__ = ["SegmentFn", "as_depth", "as_segment_fn", "depth_at", "measure", "object_record", "perceive_query",
           "point_3d",
           "resolve_image", "to_intrinsics"]
