"""Actionable geometry from one object mask: where to grasp it, which way it points, how far it is.

Conventions (the same as :class:`~segzero_tool.result.SegmentationResult`):

* coordinates are original-image pixels ``(x, y)``, origin at the top-left pixel, ``x`` to the right,
  ``y`` **down**; pixel ``(x, y)`` is ``mask[y, x]`` and its centre sits at the integer coordinates;
* boxes are ``(x1, y1, x2, y2)``, inclusive;
* angles are measured from the ``+x`` axis towards ``+y``, in degrees in ``[0, 180)``. Because ``y``
  points down, that is *clockwise as seen on screen*: a bar from the top-left to the bottom-right
  corner has 45 degrees, a bar from the bottom-left to the top-right corner has 135 degrees;
* 3-D points are in the camera frame in metres (OpenCV convention): ``X`` right, ``Y`` down,
  ``Z`` forward along the optical axis.

>>> geo = object_geometry(result.objects[0].mask, depth=depth_mm, intrinsics=K, depth_scale=0.001)
>>> geo.grasp_point, geo.orientation_deg, geo.point_3d

Only numpy and OpenCV are used.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

if TYPE_CHECKING:
    from segzero_tool.result import SegmentationResult

#: Second moment of a unit pixel (a 1 x 1 square) about its centre; added to both variances so that
#: a one-pixel-wide line has a finite elongation and a single pixel counts as round.
_PIXEL_VARIANCE = 1.0 / 12.0


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole camera intrinsics, in pixels of the image the masks refer to.

    Attributes:
        fx, fy: focal lengths in pixels (positive).
        cx, cy: principal point in pixels (OpenCV convention: pixel centres at integer coordinates).
    """

    fx: float
    fy: float
    cx: float
    cy: float

    def __post_init__(self) -> None:
        for name in ("fx", "fy", "cx", "cy"):
            value = float(getattr(self, name))
            if not math.isfinite(value):
                raise ValueError(f"intrinsics {name} must be finite, got {value}")
            object.__setattr__(self, name, value)
        if self.fx <= 0 or self.fy <= 0:
            raise ValueError(f"focal lengths must be positive, got fx={self.fx}, fy={self.fy}")

    @classmethod
    def from_matrix(cls, matrix: Any) -> Intrinsics:
        """Build from a 3x3 camera matrix ``K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]``.

        Raises:
            ValueError: ``matrix`` is not 3x3.
        """
        k = np.asarray(matrix, dtype=np.float64)
        if k.shape != (3, 3):
            raise ValueError(f"the camera matrix must be 3x3, got shape {k.shape}")
        return cls(fx=float(k[0, 0]), fy=float(k[1, 1]), cx=float(k[0, 2]), cy=float(k[1, 2]))

    def to_matrix(self) -> np.ndarray:
        """The 3x3 camera matrix ``K`` (float64)."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class ObjectGeometry:
    """What a robot needs to act on one object (see the module docstring for the conventions).

    Attributes:
        area: mask pixels.
        box: ``(x1, y1, x2, y2)`` inclusive bounding box of the mask.
        centroid: ``(x, y)`` mean of the mask's pixel coordinates (may lie outside a ring or a C).
        centroid_inside: whether the pixel nearest the centroid belongs to the mask.
        grasp_point: ``(x, y)`` centre of the largest circle inscribed in the mask (the maximum of
            its Euclidean distance transform; the image border counts as boundary). Always a mask
            pixel; among equally good pixels the one nearest the centroid.
        grasp_radius: that circle's radius in pixels, measured to the pixel edges (0.5 for a single
            pixel, about ``r`` for a disc of radius ``r``; 0 for an empty mask).
        principal_axis: ``(dx, dy)`` unit vector along the major axis (second moments), pointing
            into the half-plane of the orientation convention; ``None`` when the mask has no preferred
            direction (equal moments: one pixel, a square).
        orientation_deg: angle of the major axis from ``+x`` towards ``+y`` (clockwise on screen),
            in ``[0, 180)``; ``None`` with ``principal_axis``.
        elongation: ``sqrt(major / minor)`` of the second moments (pixels as unit squares):
            1 for round or square shapes, about ``L`` for an ``L`` x 1 line.
        n_components: 8-connected components of the mask.
        depth_m: robust depth in metres at the grasp point (median of the valid depth values inside
            the mask within ``grasp_radius`` of it, else over the whole mask); ``None`` without depth
            or without any valid value.
        point_3d: ``(X, Y, Z)`` camera-frame metres of the grasp point at ``depth_m``; ``None`` when
            depth or intrinsics are missing.
    """

    area: int
    box: tuple[int, int, int, int] | None
    centroid: tuple[float, float] | None
    centroid_inside: bool
    grasp_point: tuple[int, int] | None
    grasp_radius: float
    principal_axis: tuple[float, float] | None
    orientation_deg: float | None
    elongation: float | None
    n_components: int
    point_3d: tuple[float, float, float] | None = None
    depth_m: float | None = None

    @property
    def empty(self) -> bool:
        return self.area == 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: tuples become lists, ``None`` stays ``None``."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


_EMPTY = ObjectGeometry(area=0, box=None, centroid=None, centroid_inside=False, grasp_point=None,
                        grasp_radius=0.0, principal_axis=None, orientation_deg=None, elongation=None,
                        n_components=0)


def deproject(point: tuple[float, float], z: float, intrinsics: Intrinsics) -> tuple[float, float, float]:
    """Pixel ``(x, y)`` at depth ``z`` (metres) -> camera-frame ``(X, Y, Z)`` metres (X right, Y down, Z forward)."""
    x, y = float(point[0]), float(point[1])
    return ((x - intrinsics.cx) * z / intrinsics.fx, (y - intrinsics.cy) * z / intrinsics.fy, float(z))


def _as_mask(mask: Any) -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"the mask must be a 2-D (H, W) array, got shape {m.shape}")
    return m.astype(bool, copy=False)


def _axis(moments: dict[str, float]) -> tuple[tuple[float, float] | None, float | None, float]:
    """Major axis (unit vector), its orientation in degrees and the elongation, from image moments."""
    n = moments["m00"]
    cov = np.array([[moments["mu20"], moments["mu11"]], [moments["mu11"], moments["mu02"]]]) / n
    cov += np.eye(2) * _PIXEL_VARIANCE
    evals, evecs = np.linalg.eigh(cov)  # ascending
    minor, major = float(evals[0]), float(evals[1])
    if major - minor <= 1e-9 * major:
        return None, None, 1.0
    vx, vy = float(evecs[0, 1]), float(evecs[1, 1])
    angle = math.degrees(math.atan2(vy, vx)) % 180.0
    if angle >= 180.0 - 1e-9:  # -0.0 % 180 and rounding noise
        angle = 0.0
    rad = math.radians(angle)
    return (math.cos(rad), math.sin(rad)), angle, math.sqrt(major / minor)


def _grasp(crop: np.ndarray, cx: float, cy: float, x0: int, y0: int) -> tuple[tuple[int, int], float]:
    """Argmax of the distance transform of ``crop`` (uint8 box crop, padded here by one background pixel)."""
    padded = np.pad(crop, 1)
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    best = float(dist.max())
    ty, tx = np.nonzero(dist >= best - 1e-4)  # ties: all mask pixels, since dist > 0 only there
    k = int(np.argmin((tx + x0 - cx) ** 2 + (ty + y0 - cy) ** 2))
    return (int(tx[k]) + x0, int(ty[k]) + y0), best - 0.5


def _depth_at(crop: np.ndarray, depth: np.ndarray, x0: int, y0: int, depth_scale: float,
              grasp: tuple[int, int], radius: float) -> float | None:
    """Median valid depth (metres) of the mask pixels within ``radius`` of the grasp point, else of
    all mask pixels; ``crop`` is the mask's box at ``(x0, y0)``."""
    inside = crop.view(bool)
    dcrop = depth[y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]]
    r = max(radius, 1.0)
    gx, gy = grasp[0] - x0, grasp[1] - y0
    wy0, wy1 = max(0, math.floor(gy - r)), min(crop.shape[0], math.ceil(gy + r) + 1)
    wx0, wx1 = max(0, math.floor(gx - r)), min(crop.shape[1], math.ceil(gx + r) + 1)
    yy, xx = np.ogrid[wy0:wy1, wx0:wx1]
    for values in (dcrop[wy0:wy1, wx0:wx1][inside[wy0:wy1, wx0:wx1] & ((xx - gx) ** 2 + (yy - gy) ** 2 <= r * r)],
                   dcrop[inside]):
        values = values.astype(np.float64) * depth_scale
        values = values[np.isfinite(values) & (values > 0)]
        if values.size:
            return float(np.median(values))
    return None


def object_geometry(mask: np.ndarray, *, depth: np.ndarray | None = None, intrinsics: Intrinsics | None = None,
                    depth_scale: float = 1.0) -> ObjectGeometry:
    """Geometry of one object mask.

    Args:
        mask: ``(H, W)`` bool (any dtype: non-zero = object), original-image pixels.
        depth: optional ``(H, W)`` depth map aligned with the mask (float, or integer such as
            uint16 millimetres); zeros, negatives, NaN and infinities are ignored as invalid.
        intrinsics: camera intrinsics for ``point_3d`` (without them only ``depth_m`` is filled).
        depth_scale: multiply depth values by this to get metres (``0.001`` for millimetres).

    Returns:
        :class:`ObjectGeometry`; for an empty mask ``area == 0`` and every optional field ``None``.

    Raises:
        ValueError: the mask is not 2-D, ``depth`` has another shape than the mask, or
            ``depth_scale`` is not a positive finite number.
    """
    m = _as_mask(mask)
    if depth is not None:
        depth = np.asarray(depth)
        if depth.shape != m.shape:
            raise ValueError(f"the depth map has shape {depth.shape} but the mask has shape {m.shape}; "
                             "they must be aligned pixel for pixel")
    if not (math.isfinite(depth_scale) and depth_scale > 0):
        raise ValueError(f"depth_scale must be a positive finite number, got {depth_scale}")
    rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
    if rows.size == 0:
        return _EMPTY
    x0, y0, x1, y1 = int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])
    crop = np.ascontiguousarray(m[y0 : y1 + 1, x0 : x1 + 1]).view(np.uint8)  # the mask lies inside its box
    moments = cv2.moments(crop, binaryImage=True)
    cx, cy = moments["m10"] / moments["m00"] + x0, moments["m01"] / moments["m00"] + y0
    inside = bool(m[min(y1, math.floor(cy + 0.5)), min(x1, math.floor(cx + 0.5))])
    grasp, radius = _grasp(crop, cx, cy, x0, y0)
    axis, angle, elongation = _axis(moments)
    n_labels, _ = cv2.connectedComponents(crop, connectivity=8)
    depth_m = point_3d = None
    if depth is not None:
        depth_m = _depth_at(crop, depth, x0, y0, float(depth_scale), grasp, radius)
        if depth_m is not None and intrinsics is not None:
            point_3d = deproject(grasp, depth_m, intrinsics)
    return ObjectGeometry(
        area=int(np.count_nonzero(crop)), box=(x0, y0, x1, y1), centroid=(cx, cy), centroid_inside=inside,
        grasp_point=grasp, grasp_radius=radius, principal_axis=axis, orientation_deg=angle,
        elongation=elongation, n_components=int(n_labels) - 1, point_3d=point_3d, depth_m=depth_m,
    )


def result_geometry(result: SegmentationResult, *, depth: np.ndarray | None = None,
                    intrinsics: Intrinsics | None = None, depth_scale: float = 1.0) -> list[ObjectGeometry]:
    """:func:`object_geometry` for every object of a result, in order.

    An object without a mask (a result made with ``compute_masks=False``) is measured on its filled
    box; an object with neither is empty.
    """
    w, h = result.image_size
    out = []
    for obj in result.objects:
        mask = obj.mask
        if mask is None:
            mask = np.zeros((h, w), dtype=bool)
            if obj.box is not None:
                x1, y1, x2, y2 = obj.box
                mask[y1 : y2 + 1, x1 : x2 + 1] = True
        out.append(object_geometry(mask, depth=depth, intrinsics=intrinsics, depth_scale=depth_scale))
    return out


def box_agreement(mask: Any, box: Any) -> dict[str, float]:
    """How well a mask agrees with the box it was prompted with (inclusive ``[x1, y1, x2, y2]`` pixels).

    Returns:
        ``{"inside": share of the mask's pixels inside the box, "coverage": share of the box's pixels
        covered by the mask}``, each in ``[0, 1]`` (an empty mask: both 0). A mask far outside its box
        has a small ``inside``; a speck in a large box a small ``coverage``.
    """
    m = _as_mask(mask)
    h, w = m.shape
    x1, y1, x2, y2 = (int(round(float(v))) for v in box)
    x1, x2 = sorted((max(0, min(w - 1, x1)), max(0, min(w - 1, x2))))
    y1, y2 = sorted((max(0, min(h - 1, y1)), max(0, min(h - 1, y2))))
    total = int(np.count_nonzero(m))
    if total == 0:
        return {"inside": 0.0, "coverage": 0.0}
    inside = int(np.count_nonzero(m[y1 : y2 + 1, x1 : x2 + 1]))
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    return {"inside": round(inside / total, 4), "coverage": round(inside / area, 4)}


__all__ = ["Intrinsics", "ObjectGeometry", "box_agreement", "deproject", "object_geometry", "result_geometry"]
