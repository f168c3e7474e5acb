"""The picture a model reads to check masks (``inspect_result``), and the text that goes with it.

:func:`render_inspection` draws every object of a result (or the ``indices`` asked for) on the image:
each in its own colour, its mask outlined (a dark edge under the coloured line, so the outline shows
on any background) and lightly filled, and its number (the result's own index) written on a label of
the same colour. Objects without a mask (masks off) or with an empty mask show their box instead.
With ``crops=True`` one square tile per object follows the full view (below it for a landscape image,
beside it for a portrait one): the region around the object's box with a 15% margin, at the
original image's resolution, with the mask outline and the same numbered label.

Colours: the first ``len(PALETTE)`` (10) objects take :data:`segzero_tool.overlay.PALETTE`, so an
object has the same colour here as in the overlay; beyond that, hues step by the golden angle at two
saturations, which keeps neighbouring numbers apart but can bring two distant numbers close: the
number, not the colour, identifies an object.

Everything is drawn on the downscaled picture (the masks are reduced with the overlay's ``NEAREST``
index maps over their bounding boxes only, outlines come from OpenCV's contours of the reduced
mask), so the cost does not grow with the original image. The whole picture fits ``max_side``; with
``max_bytes`` it is re-encoded (PNG, then JPEG) and redrawn smaller until it fits, and the text says so.
Images smaller than :data:`MIN_VIEW_SIDE` are enlarged (nearest) so that the labels stay legible.

The text follows :func:`segzero_tool.summary.summarize`: bounded by ``max_chars``, one line per object
while they fit, then a count of the rest.
"""

from __future__ import annotations

import colorsys
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .overlay import PALETTE, _downscaled_block, _nearest_indices
from .summary import TEXT_BUDGET, clip, from_prompts

if TYPE_CHECKING:
    from PIL import Image

    from .result import SegmentationResult, SegmentedObject

#: Margin around an object's box in its crop, as a fraction of the box's width / height.
CROP_MARGIN = 0.15
#: Images whose longest side is smaller than this are enlarged to it (at most ``max_side``).
MIN_VIEW_SIDE = 256
#: Opacity of the light fill inside each mask.
FILL_ALPHA = 0.3
#: The smallest longest side the ``max_bytes`` loop shrinks the picture to.
MIN_FIT_SIDE = 64
#: Tiles smaller than this (pixels) are not drawn.
MIN_TILE = 12
_BACKGROUND = (24, 24, 24)
_DARK = (0, 0, 0)


@dataclass(frozen=True)
class Inspection:
    """What :func:`render_inspection` returns.

    Attributes:
        image: the picture (RGB); ``data`` is it encoded (JPEG data differs by its compression only).
        data: the encoded picture, ``len(data) <= max_bytes`` whenever that could be reached.
        mime_type: ``image/png`` or ``image/jpeg``.
        text: what the picture shows, one line per object (bounded by ``max_chars``).
        indices: the objects shown, by their index in the result (the numbers drawn).
        crops: whether crop tiles were drawn.
        reduced: the picture was made smaller or re-encoded as JPEG to fit ``max_bytes``.
        fitted: ``len(data) <= max_bytes`` (always ``True`` without ``max_bytes``).
        scale: picture pixels per original pixel in the full view.
        labels: index -> ``(x1, y1, x2, y2)`` of its number's label in the full view (picture pixels).
        tiles: index -> ``(x1, y1, x2, y2)`` of its crop tile (picture pixels).
    """

    image: Image.Image
    data: bytes
    mime_type: str
    text: str
    indices: tuple[int, ...]
    crops: bool = False
    reduced: bool = False
    fitted: bool = True
    scale: float = 1.0
    labels: dict[int, tuple[int, int, int, int]] = field(default_factory=dict)
    tiles: dict[int, tuple[int, int, int, int]] = field(default_factory=dict)


def object_colour(i: int) -> tuple[int, int, int]:
    """The colour of object ``i``: :data:`PALETTE` first, then golden-angle hues (see the module doc)."""
    if 0 <= i < len(PALETTE):
        return PALETTE[i]
    k = i - len(PALETTE)
    hue = (0.07 + k * 0.6180339887498949) % 1.0
    sat, val = (0.85, 1.0) if k % 2 == 0 else (0.55, 0.85)
    r, g, b = colorsys.hsv_to_rgb(hue, sat, val)
    return round(r * 255), round(g * 255), round(b * 255)


def _ink(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white, whichever reads better on ``colour``."""
    r, g, b = colour
    return _DARK if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)


def _selection(result: SegmentationResult, indices: Iterable[int] | None) -> tuple[int, ...]:
    n = len(result.objects)
    if indices is None:
        return tuple(range(n))
    out = set()
    for i in indices:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise ValueError(f"object indices must be integers, got {i!r}")
        if not 0 <= int(i) < n:
            have = f"#0 to #{n - 1}" if n else "none"
            raise ValueError(f"object index {int(i)} is out of range: the result has {n} object(s) ({have})")
        out.add(int(i))
    return tuple(sorted(out))


# --- geometry ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    mw: int  # full view size
    mh: int
    cols: int
    tile: int
    below: bool
    gap: int
    width: int  # whole picture
    height: int


def _layout(w: int, h: int, n_tiles: int, side: int) -> _Layout:
    """Sizes of the full view and the crop grid so that the whole picture's longest side is ``side``."""
    view = min(side, max(w, h, MIN_VIEW_SIDE))
    s0 = view / max(w, h)
    vw, vh = max(1, round(w * s0)), max(1, round(h * s0))
    gap = max(2, round(side / 200))
    if n_tiles == 0:
        return _Layout(vw, vh, 0, 0, True, 0, vw, vh)
    below = vw >= vh
    length, depth = (vw, vh) if below else (vh, vw)
    best: tuple[tuple[bool, float], int, float] | None = None
    for cols in range(1, n_tiles + 1):
        t = length / max(cols, 3)
        rows = math.ceil(n_tiles / cols)
        k = min(1.0, side / max(length, depth + gap + rows * t))
        key = (k >= 0.6, t * k)  # keep the full view at 60% or more if possible, then the largest tiles
        if best is None or key > best[0]:
            best = (key, cols, k)
    assert best is not None
    _, cols, k = best
    mw, mh = max(1, math.floor(w * s0 * k)), max(1, math.floor(h * s0 * k))
    length, depth = (mw, mh) if below else (mh, mw)
    rows = math.ceil(n_tiles / cols)
    tile = length // max(cols, 3)
    while tile > 0 and depth + gap + rows * tile > side:
        tile -= 1
    if tile < MIN_TILE:
        return _Layout(mw, mh, 0, 0, below, 0, mw, mh)
    extent = depth + gap + rows * tile
    width, height = (length, extent) if below else (extent, length)
    return _Layout(mw, mh, cols, tile, below, gap, width, height)


def _region(obj: SegmentedObject, w: int, h: int) -> tuple[int, int, int, int]:
    """The crop region of ``obj`` (original pixels, inclusive): its box (else its mask's or its points'
    bounding box) with :data:`CROP_MARGIN` on each side, clipped to the image."""
    box = obj.box
    if box is None and obj.mask is not None and obj.mask.shape == (h, w) and obj.mask.any():
        rows = np.flatnonzero(obj.mask.any(axis=1))
        cols = np.flatnonzero(obj.mask.any(axis=0))
        box = (int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1]))
    if box is None and obj.points:
        xs = [p[0] for p in obj.points]
        ys = [p[1] for p in obj.points]
        r = max(8, round(max(w, h) * 0.05))
        box = (min(xs) - r, min(ys) - r, max(xs) + r, max(ys) + r)
    if box is None:
        box = (0, 0, w - 1, h - 1)
    x1, y1, x2, y2 = (float(v) for v in box)
    x1, x2 = min(x1, x2), max(x1, x2)
    y1, y2 = min(y1, y2), max(y1, y2)
    bw, bh = x2 - x1 + 1, y2 - y1 + 1
    mx, my = max(2.0, CROP_MARGIN * bw), max(2.0, CROP_MARGIN * bh)
    # a very thin box gets a region at least a quarter as deep as it is long
    if bh < (bw + 2 * mx) / 4:
        my = max(my, ((bw + 2 * mx) / 4 - bh) / 2)
    if bw < (bh + 2 * my) / 4:
        mx = max(mx, ((bh + 2 * my) / 4 - bw) / 2)
    rx1 = int(min(max(0, math.floor(x1 - mx)), w - 1))
    ry1 = int(min(max(0, math.floor(y1 - my)), h - 1))
    rx2 = int(max(min(w - 1, math.ceil(x2 + mx)), rx1))
    ry2 = int(max(min(h - 1, math.ceil(y2 + my)), ry1))
    return rx1, ry1, rx2, ry2


# --- drawing -----------------------------------------------------------------------------------------


def _font(px: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=px)
    except (TypeError, OSError):  # Pillow < 10.1 has no scalable default font
        return ImageFont.load_default()


def _mask_of(obj: SegmentedObject, w: int, h: int) -> np.ndarray | None:
    m = obj.mask
    if m is None or m.ndim != 2 or m.shape != (h, w):
        return None
    return m if m.dtype == np.bool_ else m != 0


def _outline(pixels: np.ndarray, contours: Sequence[np.ndarray], colour: tuple[int, int, int], lw: int,
             offset: tuple[int, int]) -> None:
    import cv2

    if contours:
        cv2.drawContours(pixels, list(contours), -1, _DARK, lw + 2, lineType=cv2.LINE_8, offset=offset)
        cv2.drawContours(pixels, list(contours), -1, colour, lw, lineType=cv2.LINE_8, offset=offset)


def _contours(block: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """The zero-padded ``uint8`` block and its contours (outer and holes), in padded coordinates."""
    import cv2

    padded = np.pad(block.astype(np.uint8), 1)
    found = cv2.findContours(padded, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    return padded, list(found[-2])


def _rect_box(pixels: np.ndarray, box: Sequence[float], colour: tuple[int, int, int], lw: int) -> None:
    import cv2

    h, w = pixels.shape[:2]
    x1, y1, x2, y2 = (round(v) for v in box)
    x1, x2 = sorted((min(max(x1, 0), w - 1), min(max(x2, 0), w - 1)))
    y1, y2 = sorted((min(max(y1, 0), h - 1), min(max(y2, 0), h - 1)))
    cv2.rectangle(pixels, (x1, y1), (x2, y2), _DARK, lw + 2)
    cv2.rectangle(pixels, (x1, y1), (x2, y2), colour, lw)


def _overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _place(candidates: Sequence[tuple[float, float]], size: tuple[int, int], bounds: tuple[int, int],
           taken: Sequence[tuple[int, int, int, int]]) -> tuple[int, int, int, int]:
    """The first candidate top-left (clamped into ``bounds``) whose label overlaps no taken one."""
    lw_, lh_ = size
    bw, bh = bounds
    rects = []
    for cx, cy in candidates:
        x = int(min(max(0, round(cx)), max(0, bw - lw_)))
        y = int(min(max(0, round(cy)), max(0, bh - lh_)))
        rects.append((x, y, x + lw_, y + lh_))
    for r in rects:
        if not any(_overlaps(r, t) for t in taken):
            return r
    return rects[0]


def _render(result: SegmentationResult, shown: tuple[int, ...], crops: bool, side: int) -> tuple[
        Image.Image, _Layout, float, dict[int, tuple[int, int, int, int]], dict[int, tuple[int, int, int, int]]]:
    import cv2
    from PIL import Image as _Image
    from PIL import ImageDraw

    w, h = (max(1, int(v)) for v in result.image_size)
    objects = result.objects
    lay = _layout(w, h, len(shown) if crops else 0, side)
    mw, mh = lay.mw, lay.mh
    s = mw / w
    image = result.image
    if image is not None:
        image = np.asarray(image)
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        image = np.ascontiguousarray(image[:, :, :3]).astype(np.uint8, copy=False)
        if image.shape[:2] != (h, w):  # not the result's image: draw on a blank one
            image = None
    if image is not None:
        interp = cv2.INTER_AREA if (mw < w or mh < h) else cv2.INTER_NEAREST
        view = np.ascontiguousarray(cv2.resize(image, (mw, mh), interpolation=interp))
    else:
        view = np.full((mh, mw, 3), 40, dtype=np.uint8)
    xs, ys = _nearest_indices(w, mw), _nearest_indices(h, mh)
    lw = max(2, round(max(mw, mh) / 300))  # the coloured line; a 1 px dark edge on each side
    # masks: the light fill first, then every dark edge and coloured outline, then the labels on top
    found: dict[int, tuple[int, int, np.ndarray, list[np.ndarray]]] = {}
    for i in shown:
        m = _mask_of(objects[i], w, h)
        if m is None:
            continue
        block = _downscaled_block(m, xs, ys)
        if block is None:
            continue
        r0, c0, blk = block
        padded, contours = _contours(blk)
        found[i] = (r0, c0, padded, contours)
        sub = view[r0 : r0 + blk.shape[0], c0 : c0 + blk.shape[1]]
        tint = np.asarray(object_colour(i), dtype=np.float32) * FILL_ALPHA
        sub[blk] = (sub[blk].astype(np.float32) * (1 - FILL_ALPHA) + tint).round().clip(0, 255).astype(np.uint8)
    for i in shown:
        if i in found:
            r0, c0, _, contours = found[i]
            _outline(view, contours, object_colour(i), lw, (c0 - 1, r0 - 1))
        elif objects[i].box is not None:
            _rect_box(view, [v * s for v in objects[i].box], object_colour(i), lw)  # type: ignore[union-attr]
    canvas = np.empty((lay.height, lay.width, 3), dtype=np.uint8)
    canvas[:] = _BACKGROUND
    canvas[:mh, :mw] = view
    # tiles
    tiles: dict[int, tuple[int, int, int, int]] = {}
    if lay.cols:
        spare = ((mw if lay.below else mh) - lay.cols * lay.tile) // 2  # the grid centred along the view
        gx, gy = (max(0, spare), mh + lay.gap) if lay.below else (mw + lay.gap, max(0, spare))
        t = lay.tile
        border = max(1, t // 64)
        tlw = max(2, round(t / 100))
        for j, i in enumerate(shown):
            along, across = (j % lay.cols) * t, (j // lay.cols) * t  # rows of ``cols`` tiles along the view's side
            x0, y0 = (gx + along, gy + across) if lay.below else (gx + across, gy + along)
            tiles[i] = (x0, y0, x0 + t, y0 + t)
            colour = object_colour(i)
            inner = t - 2 * border - 2
            rx1, ry1, rx2, ry2 = _region(objects[i], w, h)
            cw, ch = rx2 - rx1 + 1, ry2 - ry1 + 1
            f = min(inner / cw, inner / ch)
            tw, th = max(1, round(cw * f)), max(1, round(ch * f))
            if image is not None:
                crop = image[ry1 : ry2 + 1, rx1 : rx2 + 1]
                tile = cv2.resize(crop, (tw, th), interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
            else:
                tile = np.full((th, tw, 3), 40, dtype=np.uint8)
            tile = np.ascontiguousarray(tile)
            m = _mask_of(objects[i], w, h)
            mcrop = None if m is None else m[ry1 : ry2 + 1, rx1 : rx2 + 1]
            if mcrop is not None and mcrop.any():
                interp = cv2.INTER_LINEAR if f > 1 else cv2.INTER_AREA  # smooth edges; thresholded at half
                small = cv2.resize(mcrop.astype(np.float32), (tw, th), interpolation=interp) >= 0.5
                _, contours = _contours(small)
                _outline(tile, contours, colour, tlw, (-1, -1))
            elif objects[i].box is not None:
                bx1, by1, bx2, by2 = objects[i].box  # type: ignore[misc]
                _rect_box(tile, [(bx1 - rx1) * f, (by1 - ry1) * f, (bx2 - rx1 + 1) * f - 1, (by2 - ry1 + 1) * f - 1],
                          colour, tlw)
            canvas[y0 : y0 + t, x0 : x0 + t] = colour
            canvas[y0 + border : y0 + t - border, x0 + border : x0 + t - border] = _BACKGROUND
            ox, oy = x0 + (t - tw) // 2, y0 + (t - th) // 2
            canvas[oy : oy + th, ox : ox + tw] = tile
    out = _Image.fromarray(canvas, mode="RGB")
    draw = ImageDraw.Draw(out)
    labels: dict[int, tuple[int, int, int, int]] = {}
    fp = max(14, round(max(mw, mh) / 30))
    font = _font(fp)
    taken: list[tuple[int, int, int, int]] = []
    for i in shown:
        tag = str(i)
        size, offset = _label_size(draw, tag, font, fp)
        obj = objects[i]
        cands: list[tuple[float, float]] = []
        if i in found:
            r0, c0, padded, _ = found[i]
            pole = _pole(padded, _taken_mask(padded.shape, (r0 - 1, c0 - 1), taken, size))
            if pole is not None:  # the innermost point of the mask that no earlier label covers
                cands.append((c0 - 1 + pole[1] - size[0] / 2, r0 - 1 + pole[0] - size[1] / 2))
            pole = _pole(padded)
            if pole is not None:
                cands.append((c0 - 1 + pole[1] - size[0] / 2, r0 - 1 + pole[0] - size[1] / 2))
            cands.append((c0, r0))
        if obj.box is not None:
            bx1, by1, bx2, by2 = (v * s for v in obj.box)
            cands += [(bx1, by1), (bx1, by1 - size[1]), (bx1, by2 + 1), (bx2 - size[0], by1)]
        if i in found:
            r0, c0, padded, _ = found[i]
            cands.append((c0, r0 + padded.shape[0] - 2))
        for px_, py_ in obj.points:
            cands.append((px_ * s - size[0] / 2, py_ * s - size[1] / 2))
        if not cands:
            cands.append((0, 0))
        rect = _place(cands, size, (mw, mh), taken)
        taken.append(rect)
        labels[i] = rect
        _label(draw, rect, tag, font, offset, object_colour(i))
    if tiles:
        tfp = max(10, min(round(lay.tile / 6), fp))
        tfont = _font(tfp)
        for i, (x0, y0, _, _) in tiles.items():
            size, offset = _label_size(draw, str(i), tfont, tfp)
            b = max(1, lay.tile // 64)
            _label(draw, (x0 + b, y0 + b, x0 + b + size[0], y0 + b + size[1]), str(i), tfont, offset, object_colour(i))
    for i in shown:  # points of point-only objects without a mask, so that something marks them
        obj = objects[i]
        if i not in found and obj.box is None:
            r = max(3, round(max(mw, mh) / 150))
            for px_, py_ in obj.points:
                cx, cy = px_ * s, py_ * s
                draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=object_colour(i), outline=_DARK, width=max(1, lw))
    return out, lay, s, labels, tiles


def _taken_mask(shape: tuple[int, int], origin: tuple[int, int], taken: Sequence[tuple[int, int, int, int]],
                size: tuple[int, int]) -> np.ndarray | None:
    """Where, in a padded block at ``origin`` (row, col of its top-left in the view), a label of ``size``
    centred there would overlap a taken label; ``None`` when nothing is taken near the block."""
    out = None
    hw, hh = size[0] / 2, size[1] / 2
    for x1, y1, x2, y2 in taken:
        c1, c2 = math.floor(x1 - hw - origin[1]), math.ceil(x2 + hw - origin[1])
        r1, r2 = math.floor(y1 - hh - origin[0]), math.ceil(y2 + hh - origin[0])
        if c2 <= 0 or r2 <= 0 or c1 >= shape[1] or r1 >= shape[0]:
            continue
        if out is None:
            out = np.zeros(shape, dtype=bool)
        out[max(0, r1) : max(0, r2), max(0, c1) : max(0, c2)] = True
    return out


def _pole(padded: np.ndarray, exclude: np.ndarray | None = None) -> tuple[int, int] | None:
    """``(row, col)`` of the mask's innermost point (largest distance to its edge, or to ``exclude``);
    along a ridge of equal distances (a rectangle's midline), the one nearest the ridge's middle.
    ``None`` when nothing of the mask is left."""
    import cv2

    if exclude is not None:
        padded = np.where(exclude, 0, padded).astype(np.uint8)
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, 3)
    top = float(dist.max())
    if top <= 0:
        return None
    rows, cols = np.nonzero(dist >= top - 0.5)
    k = int(np.argmin((rows - rows.mean()) ** 2 + (cols - cols.mean()) ** 2))
    return int(rows[k]), int(cols[k])


def _label_size(draw: Any, tag: str, font: Any, fp: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """The label's size (text plus padding) and where the text's origin goes inside it."""
    x1, y1, x2, y2 = draw.textbbox((0, 0), tag, font=font)
    pad = max(2, fp // 5)
    return (int(x2 - x1) + 2 * pad, int(y2 - y1) + 2 * pad), (pad - int(x1), pad - int(y1))


def _label(draw: Any, rect: tuple[int, int, int, int], tag: str, font: Any, offset: tuple[int, int],
           colour: tuple[int, int, int]) -> None:
    x1, y1, x2, y2 = rect
    draw.rectangle((x1, y1, x2 - 1, y2 - 1), fill=colour, outline=_DARK, width=1)
    draw.text((x1 + offset[0], y1 + offset[1]), tag, fill=_ink(colour), font=font)


# --- encoding ----------------------------------------------------------------------------------------


def _encode(img: Image.Image, fmt: str, quality: int = 85) -> bytes:
    buf = io.BytesIO()
    if fmt == "png":
        img.save(buf, format="PNG", compress_level=6)
    else:
        img.save(buf, format="JPEG", quality=quality, optimize=True)
    return buf.getvalue()


# --- text --------------------------------------------------------------------------------------------


def _object_line(i: int, result: SegmentationResult) -> str:
    obj = result.objects[i]
    w, h = result.image_size
    parts = [f"#{i} box {list(obj.box) if obj.box is not None else 'none'}"]
    if obj.box is None and obj.points:
        parts.append("points " + ", ".join(f"({x}, {y})" for x, y in obj.points))
    parts.append(f"score {obj.score:.2f}" if math.isfinite(obj.score) else "score n/a")
    if obj.mask is None:
        parts.append("no mask (its box is drawn)" if obj.box is not None else "no mask (its points are drawn)")
    else:
        area = obj.area
        parts.append(f"area {area:,} px ({100.0 * area / max(1, w * h):.1f}% of the image)")
        if area == 0:
            parts.append("empty mask (its box is drawn)" if obj.box is not None else "empty mask")
    line = " ".join(parts)
    if obj.label:
        line += f"; label {clip(obj.label, 80)!r}"
    return line


def _text(result: SegmentationResult, shown: tuple[int, ...], *, crops: bool, lay: _Layout, notes: Sequence[str],
          max_chars: int) -> str:
    w, h = result.image_size
    n = len(result.objects)
    q = clip(result.query, 300)
    # a result of segment_by_prompts has no reasoner and usually no query
    prompted = from_prompts(result)
    source = (f"from prompted objects (query {q!r})" if result.query.strip() else "from prompted objects") \
        if prompted else f"for the query {q!r}"
    head: list[str] = []
    if n == 0:
        head.append(f"No object to inspect {source} in the {w}x{h} image (parse status "
                    f"{result.parse_status.value}): the picture shows the image alone, with nothing drawn.")
    elif not shown:
        head.append(f"No object selected: the indices list is empty (the result has {n} object(s), #0 to #{n - 1}); "
                    "the picture shows the image alone, with nothing drawn.")
    else:
        which = f"all {n} object(s)" if len(shown) == n else f"{len(shown)} of {n} object(s)"
        head.append(f"Inspection of {which} {source} in the {w}x{h} image. Each object is numbered "
                    "with its index in the result, in its own colour; its mask is outlined and lightly filled in "
                    "that colour, and an object without a mask shows its box.")
        if crops and lay.cols:
            where = "Below" if lay.below else "Beside"
            head.append(f"{where} the full view, one crop per object around its box ({round(CROP_MARGIN * 100)}% "
                        "margin, at the original resolution) with the mask outline, labelled with the same number.")
        elif crops:
            head.append("The crops were left out: the picture is too small to hold them.")
        if len(shown) < n:
            listed = ", ".join(f"#{i}" for i in shown[:40]) + (" ..." if len(shown) > 40 else "")
            head.append(f"Shown: {listed} (the numbers are the result's own indices).")
        head.append("Coordinates are original-image pixels, origin top-left, x right, y down; "
                    "box = [x1, y1, x2, y2] inclusive.")
    tail = [clip(note, 400) for note in notes]
    lines = [_object_line(i, result) for i in shown]

    def more(k: int) -> str:
        rest = shown[k:]
        return f"- ... and {len(rest)} more object(s), #{rest[0]} to #{rest[-1]} (all of them are drawn)"

    keep = len(lines)
    while True:
        body = ["- " + line for line in lines[:keep]] + ([more(keep)] if keep < len(lines) else [])
        text = "\n".join(head + body + tail)
        if len(text) < max_chars or keep == 0:
            break
        longest = max(len(line) for line in lines[:keep]) + 3
        keep = max(0, min(keep - 1, keep - (len(text) - max_chars) // longest))
    return text if len(text) < max_chars else text[: max_chars - 2] + "…"


# --- the entry point ---------------------------------------------------------------------------------


def render_inspection(result: SegmentationResult, *, indices: Iterable[int] | None = None, crops: bool = False,
                      max_side: int = 1024, max_bytes: int | None = None,
                      max_chars: int = TEXT_BUDGET) -> Inspection:
    """The inspection picture of ``result`` and its text.

    Args:
        result: the result to show (its ``image`` is drawn on; without one, a grey image of its size).
        indices: the objects to show (``None``: all); numbers drawn stay the result's own indices.
            Duplicates are ignored; an index out of range raises ``ValueError`` saying the valid range.
        crops: add one tile per object around its box (see the module doc).
        max_side: the longest side of the whole picture (full view and crops together).
        max_bytes: the largest encoded size: PNG if it fits, else JPEG (quality 85, then 70), else the
            picture is redrawn smaller (down to :data:`MIN_FIT_SIDE`); the text says what was done.
        max_chars: the text is shorter than this.

    Returns:
        an :class:`Inspection`.
    """
    if int(max_side) < 1:
        raise ValueError(f"max_side must be at least 1, got {max_side}")
    if max_bytes is not None and int(max_bytes) < 1:
        raise ValueError(f"max_bytes must be at least 1, got {max_bytes}")
    shown = _selection(result, indices)
    side = int(max_side)
    first_side = side
    while True:
        img, lay, s, labels, tiles = _render(result, shown, crops, side)
        data, mime = _encode(img, "png"), "image/png"
        if max_bytes is None or len(data) <= max_bytes:
            break
        for quality in (85, 70):
            data, mime = _encode(img, "jpeg", quality), "image/jpeg"
            if len(data) <= max_bytes:
                break
        if len(data) <= max_bytes or side <= MIN_FIT_SIDE:
            break
        ratio = math.sqrt(max_bytes / len(data)) * 0.95
        side = max(MIN_FIT_SIDE, min(int(side * 0.85), int(side * ratio)))
    fitted = max_bytes is None or len(data) <= max_bytes
    reduced = max_bytes is not None and (side < first_side or mime != "image/png")
    notes = [f"The picture: {img.width}x{img.height} {mime.split('/')[1].upper()}, {len(data):,} bytes."]
    if reduced and fitted and side < first_side:
        notes.append(f"It was reduced to fit {int(max_bytes):,} bytes: drawn for a longest side of {side} px instead "  # type: ignore[arg-type]
                     f"of {first_side}" + (", as JPEG instead of PNG" if mime == "image/jpeg" else "") + ".")
    elif reduced and fitted:
        notes.append(f"It was reduced to fit {int(max_bytes):,} bytes: encoded as JPEG instead of PNG.")  # type: ignore[arg-type]
    elif not fitted:
        notes.append(f"It could not be made to fit {int(max_bytes):,} bytes; this is the smallest version "  # type: ignore[arg-type]
                     f"(longest side {max(img.size)} px).")
    text = _text(result, shown, crops=crops, lay=lay, notes=notes, max_chars=max_chars)
    return Inspection(image=img, data=data, mime_type=mime, text=text, indices=shown, crops=bool(crops and lay.cols),
                      reduced=reduced, fitted=fitted, scale=s, labels=labels, tiles=tiles)


__all__ = ["CROP_MARGIN", "MIN_VIEW_SIDE", "Inspection", "object_colour", "render_inspection"]
