"""``mask_point_reward``: **our extension, in neither paper** (the share of predicted points inside the GT mask)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from segzero_tool.parsing import parse_output

from .reward_common import column, completion_text

__all__ = ["mask_point_reward"]


def _mask_array(value: Any) -> np.ndarray:
    if isinstance(value, str):
        value = json.loads(value)
    if isinstance(value, dict) and "counts" in value and "size" in value:
        from segzero_tool.masks import rle_decode

        return rle_decode(value)
    arr = np.asarray(value)
    if arr.ndim != 2:
        raise ValueError(f"a mask must be 2-D, got shape {arr.shape}")
    return arr.astype(bool)


def _mask_points_share(text: str, mask: np.ndarray) -> float:
    parsed = parse_output(text)
    points = [p for obj in parsed.objects for p in obj.points]
    if not points:
        return 0.0
    h, w = mask.shape
    inside = 0
    for x, y in points:
        xi, yi = math.floor(x), math.floor(y)
        if 0 <= xi < w and 0 <= yi < h and mask[yi, xi]:
            inside += 1
    return inside / len(points)


def mask_point_reward(completions: Sequence[Any], mask: Any = None, **kwargs: Any) -> list[float]:
    """**Our extension, in neither paper.** The share (0..1) of predicted points, read by the
    library's parser in the 840 frame, whose pixel lies inside the ground-truth mask.

    ``mask`` is a column of COCO RLE dicts (or their JSON strings) or 2-D bool arrays in the frame.
    No points, an unreadable mask or any error -> 0.
    """
    masks = column(mask, len(completions), "mask")
    cache: dict[int, np.ndarray] = {}
    out = []
    for c, m in zip(completions, masks, strict=True):
        try:
            key = id(m)
            if key not in cache:
                cache[key] = _mask_array(m)
            out.append(float(_mask_points_share(completion_text(c), cache[key])))
        except Exception:  # noqa: BLE001
            out.append(0.0)
    return out
