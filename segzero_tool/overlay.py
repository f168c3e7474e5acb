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


def _nearest_indices(n_in: int, n_out: int) -> np.ndarray:
    """The source index Pillow's ``NEAREST`` resize picks for each of ``n_out`` positions along one
    axis of length ``n_in``.

    Pillow scales each axis independently (its affine "scale" path tabulates the x positions once and
    steps y likewise), so resizing a one-row image of the indices gives exactly the column (or row)
    every output pixel of a full-size ``NEAREST`` resize reads.
    """
    from PIL import Image as _Image

    line = _Image.fromarray(np.arange(n_in, dtype=np.int32).reshape(1, n_in))
    return np.asarray(line.resize((n_out, 1), _Image.NEAREST), dtype=np.int64).reshape(n_out)


def _downscaled_block(
    mask: np.ndarray, xs: np.ndarray | None, ys: np.ndarray | None
) -> tuple[int, int, np.ndarray] | None:
    """The part of ``mask[ys][:, xs]`` (a ``NEAREST`` downscale) that can hold ``True``: its top-left
    ``(row, col)`` in the output and the block, or ``None`` when it is all ``False``.

    Only the rows and columns of the mask's bounding box are gathered; ``xs`` and ``ys`` are
    non-decreasing, so the output range of a source range is found by binary search. ``None`` for
    both: no downscale (the block is the bounding box itself).
    """
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    y1, y2 = int(rows[0]), int(rows[-1])
    cols = np.flatnonzero(mask[y1 : y2 + 1].any(axis=0))
    x1, x2 = int(cols[0]), int(cols[-1])
    if xs is None or ys is None:
        return y1, x1, mask[y1 : y2 + 1, x1 : x2 + 1]
    r0, r1 = int(np.searchsorted(ys, y1, "left")), int(np.searchsorted(ys, y2, "right"))
    c0, c1 = int(np.searchsorted(xs, x1, "left")), int(np.searchsorted(xs, x2, "right"))
    if r0 >= r1 or c0 >= c1:
        return None
    return r0, c0, mask[ys[r0:r1, None], xs[None, c0:c1]]


def _legacy_mask(m: np.ndarray, s: float, ow: int, oh: int) -> np.ndarray:
    """The mask as the overlay always treated it, for masks that are not ``(H, W)`` bool."""
    from PIL import Image as _Image

    if s != 1.0:
        m = np.asarray(_Image.fromarray(m.astype(np.uint8) * 255).resize((ow, oh), _Image.NEAREST)) > 127
    return m


def _key(ids: Sequence[int] | None, i: int) -> int:
    """The palette key of object ``i``: its id when ids are given, else its index."""
    return int(ids[i]) if ids is not None else i


def draw_overlay(
    image: np.ndarray,
    objects: Sequence[SegmentedObject],
    *,
    max_side: int | None = 1024,
    alpha: float = 0.45,
    draw_boxes: bool = True,
    draw_points: bool = True,
    draw_labels: bool = True,
    ids: Sequence[int] | None = None,
) -> Image.Image:
    """Render masks, boxes and points over an image.

    Args:
        image: ``(H, W, 3)`` uint8 RGB, original resolution.
        objects: the result's objects (boxes and points in original pixels).
        max_side: the longest side of the returned picture (``None``: original size).
        alpha: mask opacity.
        ids: one id per object (video track ids): colours follow the id and labels read ``#id`` (default: the
            object's index).

    Returns:
        An RGB ``PIL.Image`` at most ``max_side`` pixels on its longest side.

    The image is downscaled first (bilinear) and everything is drawn on the small picture. Masks are
    reduced with the index map of Pillow's ``NEAREST`` resize, gathered only over each mask's bounding
    box, and blended in ``float32`` only inside the box that holds every mask: the bytes are those of
    resizing each full mask with Pillow and blending the whole picture.
    """
    from PIL import Image as _Image
    from PIL import ImageDraw

    h, w = image.shape[:2]
    ow, oh, s = _scaled_size(w, h, max_side)
    base = _Image.fromarray(image, mode="RGB")
    if s != 1.0:
        base = base.resize((ow, oh), _Image.BILINEAR)
    pixels = np.array(base, dtype=np.uint8)  # (oh, ow, 3), writable
    index_maps: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
    blocks: list[tuple[int, int, int, np.ndarray]] = []  # (object index, row, col, block)
    legacy: dict[int, np.ndarray] = {}
    for i, obj in enumerate(objects):
        m = obj.mask
        if m is None:
            continue
        if m.dtype != np.bool_ or m.shape != (h, w):
            if m.any():
                legacy[i] = _legacy_mask(m, s, ow, oh)
            continue
        if s == 1.0:
            found = _downscaled_block(m, None, None)
        else:
            if (h, w) not in index_maps:
                index_maps[(h, w)] = (_nearest_indices(w, ow), _nearest_indices(h, oh))
            xs, ys = index_maps[(h, w)]
            found = _downscaled_block(m, xs, ys)
        if found is not None:
            blocks.append((i, *found))
    if legacy:
        canvas = pixels.astype(np.float32)
        for i in range(len(objects)):
            colour = np.asarray(PALETTE[_key(ids, i) % len(PALETTE)], dtype=np.float32)
            if i in legacy:
                m = legacy[i]
                canvas[m] = canvas[m] * (1 - alpha) + colour * alpha
            for j, r0, c0, block in blocks:
                if j == i:
                    sub = canvas[r0 : r0 + block.shape[0], c0 : c0 + block.shape[1]]
                    sub[block] = sub[block] * (1 - alpha) + colour * alpha
        pixels = canvas.round().clip(0, 255).astype(np.uint8)
    elif blocks:
        top = min(b[1] for b in blocks)
        left = min(b[2] for b in blocks)
        bottom = max(b[1] + b[3].shape[0] for b in blocks)
        right = max(b[2] + b[3].shape[1] for b in blocks)
        canvas = pixels[top:bottom, left:right].astype(np.float32)
        for i, r0, c0, block in blocks:
            rows, cols = block.shape
            sub = canvas[r0 - top : r0 - top + rows, c0 - left : c0 - left + cols]
            # ``sub * (1 - alpha) + colour * alpha`` for every pixel of the block (the colour tiled
            # along a row keeps numpy's inner loops long), kept where the mask is set.
            tint = np.tile(np.asarray(PALETTE[_key(ids, i) % len(PALETTE)], dtype=np.float32) * alpha, cols).reshape(cols, 3)
            np.copyto(sub, sub * (1 - alpha) + tint, where=np.repeat(block, 3, axis=1).reshape(rows, cols, 3))
        pixels[top:bottom, left:right] = canvas.round().clip(0, 255).astype(np.uint8)
    out = _Image.fromarray(pixels, mode="RGB")
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
        colour = PALETTE[_key(ids, i) % len(PALETTE)]
        if draw_boxes and obj.box is not None:
            x1, y1, x2, y2 = (v * s for v in obj.box)
            draw.rectangle((x1, y1, x2, y2), outline=colour, width=lw)
            if draw_labels:
                tag = (f"#{ids[i]}" if ids is not None else f"{i}") + (f" {obj.label}" if obj.label else "") + f" {obj.score:.2f}"
                tx, ty = x1, max(0.0, y1 - font_px - 2 * lw)
                tw = draw.textlength(tag, font=font)
                draw.rectangle((tx, ty, tx + tw + 2 * lw, ty + font_px + lw), fill=(0, 0, 0))
                draw.text((tx + lw, ty), tag, fill=colour, font=font)
        if draw_points:
            for px, py in obj.points:
                cx, cy = px * s, py * s
                draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour, outline=(0, 0, 0), width=max(1, lw // 2))
    return out
