"""Ground truth of one object as the reference builder wrote it: two representative points of a mask, the
scaling into the frame, and the Seg-Zero / VisionReasoner solution strings (segzero-protocol.md 2.6)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

__all__ = ["format_segzero_solution", "format_visionreasoner_solution", "representative_points", "scale"]


def representative_points(mask: np.ndarray) -> tuple[tuple[int, int], tuple[int, int]]:
    """Two points of a mask as the reference builder picks them (protocol 2.6 step 3).

    Point 1: arg-max of the Euclidean distance transform (centre of the largest inscribed circle,
    first in row-major order on ties). Point 2: among mask pixels farther from point 1 than the
    median such distance, the one with the largest distance-transform value; fallback the best pixel
    of a 20 x 20 window around the centroid. A point outside the mask snaps to the nearest mask pixel.

    The distance transform is scipy's exact EDT (background at distance 0).

    Raises:
        ValueError: empty mask.
    """
    from scipy.ndimage import distance_transform_edt

    m = np.asarray(mask, dtype=bool)
    ys, xs = np.nonzero(m)
    if ys.size == 0:
        raise ValueError("empty mask")
    dt = distance_transform_edt(np.pad(m, 1))[1:-1, 1:-1]  # pixels on the image border touch background
    y1, x1 = np.unravel_index(int(np.argmax(dt)), dt.shape)
    d = np.hypot(xs - x1, ys - y1)
    far = d > np.median(d)
    if far.any():
        cand_y, cand_x = ys[far], xs[far]
        j = int(np.argmax(dt[cand_y, cand_x]))
        p2 = (int(cand_x[j]), int(cand_y[j]))
    else:
        cy, cx = int(ys.mean()), int(xs.mean())
        ya, yb = max(cy - 10, 0), min(cy + 10, m.shape[0])
        xa, xb = max(cx - 10, 0), min(cx + 10, m.shape[1])
        win = dt[ya:yb, xa:xb]
        wy, wx = np.unravel_index(int(np.argmax(win)), win.shape)
        p2 = (int(xa + wx), int(ya + wy))

    def snap(p: tuple[int, int]) -> tuple[int, int]:
        if m[p[1], p[0]]:
            return p
        k = int(np.argmin((xs - p[0]) ** 2 + (ys - p[1]) ** 2))
        return int(xs[k]), int(ys[k])

    return snap((int(x1), int(y1))), snap(p2)


def scale(v: float, f: float) -> int:
    """A coordinate in original pixels times the frame factor, rounded half up as ``int(v * f + 0.5)``."""
    return int(v * f + 0.5)


def format_segzero_solution(box: Any, p1: Any, p2: Any) -> str:
    b = [int(v) for v in box]
    return (f"<box>({b[0]},{b[1]}),({b[2]},{b[3]})</box>"
            f"<points>({int(p1[0])},{int(p1[1])}),({int(p2[0])},{int(p2[1])})</points>")


def format_visionreasoner_solution(objects: Any) -> str:
    return json.dumps([{"bbox_2d": [int(v) for v in o["bbox_2d"]], "point_2d": [int(v) for v in o["point_2d"]]}
                       for o in objects])


