"""The reasoning frame: the fixed-size image the reasoner sees, and the way back to original pixels.

The released checkpoints were trained on images resized to exactly 840x840 with bilinear filtering,
ignoring the aspect ratio (840 = 30 x 28, so Qwen2.5-VL's ``smart_resize`` keeps it: 900 visual
tokens). The model answers in absolute pixels of that frame; coordinates are mapped back with
``x_orig = int(x * W / 840 + 0.5)`` (VisionReasoner, "half_up") or ``round(int(x) * W / 840)``
(Seg-Zero single-object scripts, "segzero"), the rounding of the prompt format's reference scripts
(:func:`rounding_for_format`), and then clamped into the image.

The frame size is configurable; change it consistently in training, evaluation and inference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from PIL import Image

DEFAULT_FRAME_SIZE = 840

Rounding = Literal["half_up", "segzero"]

Box = tuple[float, float, float, float]
Point = tuple[float, float]
IntBox = tuple[int, int, int, int]
IntPoint = tuple[int, int]


ROUNDINGS: tuple[Rounding, ...] = ("half_up", "segzero")


def rounding_for_format(prompt_format: object) -> Rounding:
    """The back-projection rounding of a prompt format's reference scripts: ``segzero`` for the
    Seg-Zero single-object format, ``half_up`` (VisionReasoner) for every other format."""
    return "segzero" if str(getattr(prompt_format, "value", prompt_format)).strip().lower() == "segzero" else "half_up"


#: Frame coordinates beyond +-this are projected as +-this: far outside any image, so the result is
#: clamped to the same edge pixel, and ``int(v * W / 840 + 0.5)`` cannot overflow (``1.7e308 * 1.5``
#: is ``inf``). Values within the limit keep the reference rounding exactly.
COORD_LIMIT = 1e12


def _project(value: float, factor: float, rounding: Rounding) -> int:
    """Reference rounding of ``value * factor``; +-inf and huge values saturate at :data:`COORD_LIMIT`.

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
        return round(int(value) * factor)
    return int(value * factor + 0.5)


@dataclass(frozen=True)
class ReasoningFrame:
    """Maps between an original image of ``image_wh`` pixels and the ``frame_wh`` reasoning frame.

    Attributes:
        image_wh: original ``(width, height)`` in pixels.
        frame_wh: reasoning-frame ``(width, height)``; ``(840, 840)`` for the released checkpoints.
        rounding: ``"half_up"`` (VisionReasoner, default) or ``"segzero"`` (single-object scripts).
    """

    image_wh: tuple[int, int]
    frame_wh: tuple[int, int] = (DEFAULT_FRAME_SIZE, DEFAULT_FRAME_SIZE)
    rounding: Rounding = "half_up"

    def __post_init__(self) -> None:
        w, h = self.image_wh
        fw, fh = self.frame_wh
        if w <= 0 or h <= 0:
            raise ValueError(f"image size must be positive, got {self.image_wh}")
        if fw <= 0 or fh <= 0:
            raise ValueError(f"frame size must be positive, got {self.frame_wh}")
        if self.rounding not in ("half_up", "segzero"):
            raise ValueError(f"rounding must be 'half_up' or 'segzero', got {self.rounding!r}")

    @classmethod
    def square(cls, image_wh: tuple[int, int], size: int = DEFAULT_FRAME_SIZE, **kw: object) -> ReasoningFrame:
        return cls(image_wh=image_wh, frame_wh=(size, size), **kw)  # type: ignore[arg-type]

    @property
    def x_factor(self) -> float:
        return self.image_wh[0] / self.frame_wh[0]

    @property
    def y_factor(self) -> float:
        return self.image_wh[1] / self.frame_wh[1]

    # --- image ---------------------------------------------------------------------------------

    def resize_image(self, image: Image.Image) -> Image.Image:
        """Resize an RGB PIL image to the frame with bilinear filtering, ignoring the aspect ratio."""
        from PIL import Image as _Image

        if image.size == tuple(self.frame_wh):
            return image
        return image.resize(tuple(self.frame_wh), _Image.BILINEAR)

    # --- coordinates: frame -> original ----------------------------------------------------------

    def point_to_image(self, point: Point, *, clamp: bool = True) -> IntPoint:
        """Back-project a frame point ``(x, y)`` to original pixels (clamped into the image)."""
        x = _project(point[0], self.x_factor, self.rounding)
        y = _project(point[1], self.y_factor, self.rounding)
        if clamp:
            x, y = self.clamp_point((x, y))
        return x, y

    def box_to_image(self, box: Box, *, clamp: bool = True, reorder: bool = True) -> IntBox:
        """Back-project a frame box ``(x1, y1, x2, y2)`` to original pixels.

        The box is reordered if inverted (x1 > x2 or y1 > y2) and clamped to
        ``[0, W-1] x [0, H-1]`` (inclusive pixel convention). ``clamp=False, reorder=False`` gives the
        corners exactly as the reference scripts pass them to SAM2.
        """
        x1 = _project(box[0], self.x_factor, self.rounding)
        y1 = _project(box[1], self.y_factor, self.rounding)
        x2 = _project(box[2], self.x_factor, self.rounding)
        y2 = _project(box[3], self.y_factor, self.rounding)
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
        """Map an original-pixel point into the frame with ``int(v * frame / orig + 0.5)``."""
        fx = self.frame_wh[0] / self.image_wh[0]
        fy = self.frame_wh[1] / self.image_wh[1]
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
