"""The overlay picture: masks in colour, boxes and points drawn, longest side bounded."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

    from .result import SegmentedObject

#: A colour-blind-friendly palette (Okabe-Ito plus extras), RGB.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178),
    (213, 94, 0), (204, 121, 167), (255, 255, 255), (120, 200, 80), (200, 60, 60),
)


def _scaled_size(w: int, h: int, max_side: int | None) -> tuple[int, int, float]:
    if not max_side or max(w, h) <= max_side:
        return w, h, 1.0
    s = max_side / max(w, h)
    return max(1, round(w * s)), max(1, round(h * s)), s


def draw_overlay(
    image: np.ndarray,
    objects: Sequence[SegmentedObject],
    *,
    max_side: int | None = 1024,
    alpha: float = 0.45,
    draw_boxes: bool = True,
    draw_points: bool = True,
    draw_labels: bool = True,
) -> Image.Image:
    """Render masks, boxes and points over an image.

    Args:
        image: ``(H, W, 3)`` uint8 RGB, original resolution.
        objects: the result's objects (boxes and points in original pixels).
        max_side: the longest side of the returned picture (``None``: original size).
        alpha: mask opacity.

    Returns:
        An RGB ``PIL.Image`` at most ``max_side`` pixels on its longest side.
    """
    from PIL import Image as _Image
    from PIL import ImageDraw

    h, w = image.shape[:2]
    ow, oh, s = _scaled_size(w, h, max_side)
    base = _Image.fromarray(image, mode="RGB")
    if s != 1.0:
        base = base.resize((ow, oh), _Image.BILINEAR)
    canvas = np.asarray(base, dtype=np.float32).copy()
    for i, obj in enumerate(objects):
        if obj.mask is None or not obj.mask.any():
            continue
        m = obj.mask
        if s != 1.0:
            m = np.asarray(_Image.fromarray(m.astype(np.uint8) * 255).resize((ow, oh), _Image.NEAREST)) > 127
        colour = np.asarray(PALETTE[i % len(PALETTE)], dtype=np.float32)
        canvas[m] = canvas[m] * (1 - alpha) + colour * alpha
    out = _Image.fromarray(canvas.round().clip(0, 255).astype(np.uint8), mode="RGB")
    draw = ImageDraw.Draw(out)
    lw = max(2, round(max(ow, oh) / 300))
    r = max(3, round(max(ow, oh) / 150))
    font_px = max(11, round(max(ow, oh) / 45))
    try:
        from PIL import ImageFont

        font = ImageFont.load_default(size=font_px)
    except (TypeError, OSError):  # Pillow < 10.1 has no scalable default font
        font = None
        font_px = 11
    for i, obj in enumerate(objects):
        colour = PALETTE[i % len(PALETTE)]
        if draw_boxes and obj.box is not None:
            x1, y1, x2, y2 = (v * s for v in obj.box)
            draw.rectangle((x1, y1, x2, y2), outline=colour, width=lw)
            if draw_labels:
                tag = f"{i}" + (f" {obj.label}" if obj.label else "") + f" {obj.score:.2f}"
                tx, ty = x1, max(0.0, y1 - font_px - 2 * lw)
                tw = draw.textlength(tag, font=font)
                draw.rectangle((tx, ty, tx + tw + 2 * lw, ty + font_px + lw), fill=(0, 0, 0))
                draw.text((tx + lw, ty), tag, fill=colour, font=font)
        if draw_points:
            for px, py in obj.points:
                cx, cy = px * s, py * s
                draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour, outline=(0, 0, 0), width=max(1, lw // 2))
    return out
