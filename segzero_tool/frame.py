"""The reasoning frame: the fixed-size image the reasoner sees, and the way back to original pixels.

The released checkpoints were trained on images resized to exactly 840x840 with bilinear filtering,
ignoring the aspect ratio (840 = 30 x 28, so Qwen2.5-VL's ``smart_resize`` keeps it: 900 visual
tokens). The model answers in absolute pixels of that frame; coordinates are mapped back with
``x_orig = int(x * W / 840 + 0.5)`` (VisionReasoner, "half_up") or ``round(int(x) * W / 840)``
(Seg-Zero single-object scripts, "segzero"), the rounding of the prompt format's reference scripts
(:func:`rounding_for_format`), and then clamped into the image.

The frame size is configurable; change it consistently in training, evaluation and inference.

Two coordinate conventions (:data:`CoordinateSystem`):

* ``frame`` (Qwen2.5-VL, Seg-Zero, VisionReasoner): absolute pixels of the reasoning frame, the
  fixed ``frame_size`` square above; the model must know the exact image it answers about, so the
  frame is fixed and the image is squashed into it as in training.
* ``relative1000`` (Qwen3-VL): a 0-1000 grid laid over the image whatever its pixel size
  (``x_orig = x * W / 1000``, ``y_orig = y * H / 1000``, then the same rounding, clamping and
  saturation of huge or infinite values as the ``frame`` path). The answer does not depend on the
  pixels the model saw, so the image keeps its aspect ratio (Qwen3-VL was trained on native-aspect
  images, not squashed squares): :func:`aspect_frame_size` scales it to at most ``frame_size**2``
  pixels (the visual-token budget of the square frame) with both sides multiples of 32 (Qwen3-VL's
  16-pixel patches merged 2x2), so its processor does not resample it again. A server that resizes
  the image further (vLLM's own pixel bounds) changes nothing in the answer's meaning either.

The convention belongs to the prompt format (:func:`coords_for_format`: ``qwen3vl`` answers on the
0-1000 grid, every other format in frame pixels), can be set per registry entry and overridden by the
``coords`` setting (``--coords``, ``SEGZERO_COORDS``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from PIL import Image

DEFAULT_FRAME_SIZE = 840

Rounding = Literal["half_up", "segzero"]
#: How the reasoner writes coordinates: pixels of the reasoning frame, or the 0-1000 relative grid.
CoordinateSystem = Literal["frame", "relative1000"]

Box = tuple[float, float, float, float]
Point = tuple[float, float]
IntBox = tuple[int, int, int, int]
IntPoint = tuple[int, int]


ROUNDINGS: tuple[Rounding, ...] = ("half_up", "segzero")
COORDINATE_SYSTEMS: tuple[CoordinateSystem, ...] = ("frame", "relative1000")

#: Side of the relative grid: ``relative1000`` coordinates run from 0 to 1000 across the image.
RELATIVE_GRID = 1000
#: Sides of an aspect-preserving frame are multiples of this: Qwen3-VL's 16-pixel patches, merged 2x2.
QWEN3_RESIZE_MULTIPLE = 32
#: Fewest pixels of an aspect-preserving frame (Qwen3-VL's image processor default, 256x256).
QWEN3_MIN_PIXELS = 65_536


def rounding_for_format(prompt_format: object) -> Rounding:
    """The back-projection rounding of a prompt format's reference scripts: ``segzero`` for the
    Seg-Zero single-object format, ``half_up`` (VisionReasoner) for every other format."""
    return "segzero" if str(getattr(prompt_format, "value", prompt_format)).strip().lower() == "segzero" else "half_up"


def coords_for_format(prompt_format: object) -> CoordinateSystem:
    """The coordinate convention a prompt format asks for: ``relative1000`` for ``qwen3vl`` (Qwen3-VL's
    0-1000 grid), ``frame`` (reasoning-frame pixels) for every other format."""
    key = str(getattr(prompt_format, "value", prompt_format)).strip().lower().replace("-", "").replace("_", "")
    return "relative1000" if key == "qwen3vl" else "frame"


def check_coords(value: object) -> CoordinateSystem:
    """``value`` (any case, surrounding spaces ignored) as a :data:`CoordinateSystem`, else ``ValueError``."""
    key = str(value).strip().lower() if isinstance(value, str) else value
    if key not in COORDINATE_SYSTEMS:
        raise ValueError(f"coords must be one of {', '.join(COORDINATE_SYSTEMS)}, got {value!r}")
    return key  # type: ignore[return-value]


def aspect_frame_size(image_wh: tuple[int, int], frame_size: int = DEFAULT_FRAME_SIZE, *,
                      multiple: int = QWEN3_RESIZE_MULTIPLE, min_pixels: int = QWEN3_MIN_PIXELS) -> tuple[int, int]:
    """The aspect-preserving frame of a ``relative1000`` reasoner: ``(width, height)``, both multiples
    of ``multiple``, at most ``frame_size**2`` pixels (at least ``min_pixels`` when that fits under the
    cap), the aspect ratio kept as closely as the rounding allows.

    Qwen's ``smart_resize`` rule: round each side to the nearest multiple; scale down (flooring) when
    over the cap, up (ceiling) when under ``min_pixels``. Unlike it, extreme aspect ratios do not raise:
    each side is at least one ``multiple``.
    """
    w, h = int(image_wh[0]), int(image_wh[1])
    if w <= 0 or h <= 0:
        raise ValueError(f"image size must be positive, got {image_wh}")
    if frame_size <= 0:
        raise ValueError(f"frame size must be positive, got {frame_size}")
    f = int(multiple)
    max_pixels = max(int(frame_size) ** 2, f * f)
    min_pixels = min(int(min_pixels), max_pixels)
    fw, fh = max(f, round(w / f) * f), max(f, round(h / f) * f)
    if fw * fh > max_pixels:
        beta = math.sqrt(w * h / max_pixels)
        fw, fh = max(f, math.floor(w / beta / f) * f), max(f, math.floor(h / beta / f) * f)
        while fw * fh > max_pixels:  # extreme aspect ratios: the one-multiple floor of the short side
            if fw >= fh:
                fw -= f
            else:
                fh -= f
    elif fw * fh < min_pixels:
        beta = math.sqrt(min_pixels / (w * h))
        fw, fh = math.ceil(w * beta / f) * f, math.ceil(h * beta / f) * f
        while fw * fh > max_pixels:
            if fw >= fh:
                fw -= f
            else:
                fh -= f
    return fw, fh


#: Frame coordinates beyond +-this are projected as +-this: far outside any image, so the result is
#: clamped to the same edge pixel, and ``int(v * W / 840 + 0.5)`` cannot overflow (``1.7e308 * 1.5``
#: is ``inf``). Values within the limit keep the reference rounding exactly.
COORD_LIMIT = 1e12


def _project(value: float, factor: float, rounding: Rounding, divisor: float = 1.0) -> int:
    """Reference rounding of ``value * factor / divisor``; +-inf and huge values saturate at :data:`COORD_LIMIT`.

    The ``frame`` path passes ``factor = W / frame`` and ``divisor`` 1 (exactly the reference's
    ``value * factor``); the ``relative1000`` path ``factor = W`` and ``divisor = 1000``, so that
    ``x * W / 1000`` is computed as written (one rounding of the exact product, not of ``W / 1000``).

    Raises:
        ValueError: ``value`` is NaN (the parser never yields one).
    """
    if value != value:
        raise ValueError("a frame coordinate is NaN; it has no pixel")
    if value > COORD_LIMIT:
        value = COORD_LIMIT
    elif value < -COORD_LIMIT:
        value = -COORD_LIMIT
    if rounding == "segzero":
        return round(int(value) * factor / divisor)
    return int(value * factor / divisor + 0.5)


@dataclass(frozen=True)
class ReasoningFrame:
    """Maps between an original image of ``image_wh`` pixels and the ``frame_wh`` reasoning frame.

    Attributes:
        image_wh: original ``(width, height)`` in pixels.
        frame_wh: reasoning-frame ``(width, height)``; ``(840, 840)`` for the released checkpoints.
        rounding: ``"half_up"`` (VisionReasoner, default) or ``"segzero"`` (single-object scripts).
        coords: ``"frame"`` (default: answers in pixels of ``frame_wh``) or ``"relative1000"`` (answers on
            the 0-1000 grid; ``frame_wh`` is then only the size of the image the reasoner sees).
    """

    image_wh: tuple[int, int]
    frame_wh: tuple[int, int] = (DEFAULT_FRAME_SIZE, DEFAULT_FRAME_SIZE)
    rounding: Rounding = "half_up"
    coords: CoordinateSystem = "frame"

    def __post_init__(self) -> None:
        w, h = self.image_wh
        fw, fh = self.frame_wh
        if w <= 0 or h <= 0:
            raise ValueError(f"image size must be positive, got {self.image_wh}")
        if fw <= 0 or fh <= 0:
            raise ValueError(f"frame size must be positive, got {self.frame_wh}")
        if self.rounding not in ("half_up", "segzero"):
            raise ValueError(f"rounding must be 'half_up' or 'segzero', got {self.rounding!r}")
        if self.coords not in COORDINATE_SYSTEMS:
            raise ValueError(f"coords must be 'frame' or 'relative1000', got {self.coords!r}")

    @classmethod
    def square(cls, image_wh: tuple[int, int], size: int = DEFAULT_FRAME_SIZE, **kw: object) -> ReasoningFrame:
        return cls(image_wh=image_wh, frame_wh=(size, size), **kw)  # type: ignore[arg-type]

    @classmethod
    def for_image(cls, image_wh: tuple[int, int], frame_size: int = DEFAULT_FRAME_SIZE, *,
                  rounding: Rounding = "half_up", coords: CoordinateSystem = "frame") -> ReasoningFrame:
        """The frame a reasoner sees for an image: the ``frame_size`` square for ``frame`` coordinates,
        the aspect-preserving :func:`aspect_frame_size` (at most ``frame_size**2`` pixels) for
        ``relative1000``."""
        coords = check_coords(coords)
        frame_wh = (aspect_frame_size(image_wh, frame_size) if coords == "relative1000"
                    else (int(frame_size), int(frame_size)))
        return cls(image_wh=image_wh, frame_wh=frame_wh, rounding=rounding, coords=coords)

    @property
    def grid_wh(self) -> tuple[int, int]:
        """The extent the answer's coordinates span: ``frame_wh``, or ``(1000, 1000)`` for ``relative1000``."""
        return (RELATIVE_GRID, RELATIVE_GRID) if self.coords == "relative1000" else self.frame_wh

    @property
    def x_factor(self) -> float:
        return self.image_wh[0] / self.grid_wh[0]

    @property
    def y_factor(self) -> float:
        return self.image_wh[1] / self.grid_wh[1]

    def _axis(self, value: float, axis: int) -> int:
        """Back-project one coordinate on ``axis`` (0: x, 1: y) with the frame's rounding."""
        if self.coords == "relative1000":
            return _project(value, float(self.image_wh[axis]), self.rounding, float(RELATIVE_GRID))
        return _project(value, self.x_factor if axis == 0 else self.y_factor, self.rounding)

    # --- image ---------------------------------------------------------------------------------

    def resize_image(self, image: Image.Image) -> Image.Image:
        """Resize an RGB PIL image to ``frame_wh`` with bilinear filtering (ignoring the aspect ratio for a
        square ``frame`` frame; a ``relative1000`` frame already has the image's aspect ratio)."""
        from PIL import Image as _Image

        if image.size == tuple(self.frame_wh):
            return image
        return image.resize(tuple(self.frame_wh), _Image.BILINEAR)

    # --- coordinates: frame -> original ----------------------------------------------------------

    def point_to_image(self, point: Point, *, clamp: bool = True) -> IntPoint:
        """Back-project a frame point ``(x, y)`` to original pixels (clamped into the image)."""
        x = self._axis(point[0], 0)
        y = self._axis(point[1], 1)
        if clamp:
            x, y = self.clamp_point((x, y))
        return x, y

    def box_to_image(self, box: Box, *, clamp: bool = True, reorder: bool = True) -> IntBox:
        """Back-project a frame box ``(x1, y1, x2, y2)`` to original pixels.

        The box is reordered if inverted (x1 > x2 or y1 > y2) and clamped to
        ``[0, W-1] x [0, H-1]`` (inclusive pixel convention). ``clamp=False, reorder=False`` gives the
        corners exactly as the reference scripts pass them to SAM2.
        """
        x1, y1, x2, y2 = (self._axis(v, i % 2) for i, v in enumerate(box[:4]))
        if reorder:
            x1, x2 = min(x1, x2), max(x1, x2)
            y1, y2 = min(y1, y2), max(y1, y2)
        if clamp:
            x1, y1 = self.clamp_point((x1, y1))
            x2, y2 = self.clamp_point((x2, y2))
        return x1, y1, x2, y2

    def clamp_point(self, point: tuple[int, int]) -> IntPoint:
        w, h = self.image_wh
        return min(max(int(point[0]), 0), w - 1), min(max(int(point[1]), 0), h - 1)

    # --- coordinates: original -> frame (datasets, rewards) --------------------------------------

    def point_to_frame(self, point: Point) -> IntPoint:
        """Map an original-pixel point into the frame with ``int(v * frame / orig + 0.5)`` (``frame`` is
        1000 for ``relative1000``)."""
        fx = self.grid_wh[0] / self.image_wh[0]
        fy = self.grid_wh[1] / self.image_wh[1]
        return int(point[0] * fx + 0.5), int(point[1] * fy + 0.5)

    def box_to_frame(self, box: Box) -> IntBox:
        x1, y1 = self.point_to_frame((box[0], box[1]))
        x2, y2 = self.point_to_frame((box[2], box[3]))
        return x1, y1, x2, y2


def is_finite_number(value: object) -> bool:
    """True for real numbers that are finite as floats (bool excluded).

    An ``int`` too large for a float (more than ~308 digits) counts as not finite instead of raising
    ``OverflowError``.
    """
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def point_in_box(point: tuple[float, float], box: tuple[float, float, float, float]) -> bool:
    """Inclusive containment test, as in the reference reward."""
    return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]
