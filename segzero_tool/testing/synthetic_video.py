"""Small deterministic synthetic videos with ground truth, for tests and demos.

:func:`moving_shapes` draws three flat-coloured shapes moving across a fixed textured background and gives,
per frame, each object's inclusive box ``(x1, y1, x2, y2)`` (``None`` while hidden) and its visible mask:

====  ==================  =========================================================
 id   shape (``NAMES``)   motion
====  ==================  =========================================================
 1    red rectangle       left to right along the top band, bouncing at the edges
 2    blue circle         right to left along the bottom band, bouncing
 3    green triangle      diagonally through the middle band, bouncing
====  ==================  =========================================================

The bands do not overlap, so objects never hide each other. With ``occlude_from`` / ``occlude_to``, a
striped grey occluder covers object 1 completely on frames ``[occlude_from, occlude_to)`` (its box is
``None`` and its mask empty there), then disappears: a track to lose and find again.

Writers::

    from segzero_tool.testing.synthetic_video import moving_shapes, write_clip, write_vfr_clip
    clip = write_clip(tmp / "shapes.mp4", moving_shapes(30))            # .mp4 / .mov / .mkv / .webm
    vfr = write_vfr_clip(tmp / "vfr.mp4", moving_shapes(5), [0, 0.1, 0.15, 0.5, 1.2])
    folder = write_frame_folder(tmp / "frames", moving_shapes(10))     # frame_00000.png, ...

A 160x120 clip of 30 frames is drawn and encoded in a few tens of milliseconds.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..masks import mask_bbox

#: Object id -> what it looks like (a query that names it).
NAMES = {1: "red rectangle", 2: "blue circle", 3: "green triangle"}
COLOURS = {1: (220, 40, 40), 2: (40, 80, 220), 3: (40, 170, 60)}


@dataclass(frozen=True)
class SyntheticFrame:
    """One frame: ``image`` ``(H, W, 3)`` uint8 RGB; ``boxes`` object id -> inclusive ``(x1, y1, x2, y2)`` or
    ``None`` when not visible; ``masks`` object id -> ``(H, W)`` bool mask of its visible pixels."""

    image: np.ndarray
    boxes: dict[int, tuple[int, int, int, int] | None]
    masks: dict[int, np.ndarray]


def _bounce(start: float, speed: float, t: int, lo: float, hi: float) -> float:
    """Position at frame ``t`` moving at ``speed`` px/frame between ``lo`` and ``hi``, reflecting at the ends."""
    span = hi - lo
    if span <= 0:
        return lo
    p = (start - lo + speed * t) % (2 * span)
    return lo + (p if p <= span else 2 * span - p)


def _background(width: int, height: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = 120 + 40 * np.sin(xx / 11.0) * np.cos(yy / 13.0) + 30 * (xx / max(width, 1) - 0.5)
    noise = rng.normal(0, 10, (height, width, 1)).astype(np.float32)
    tint = np.array([1.0, 0.97, 0.9], np.float32)
    return np.clip(base[..., None] * tint + noise, 0, 255).astype(np.uint8)


def moving_shapes(n_frames: int, *, width: int = 160, height: int = 120, occlude_from: int | None = None,
                  occlude_to: int | None = None, seed: int = 0) -> Iterator[SyntheticFrame]:
    """Yield ``n_frames`` :class:`SyntheticFrame` objects (see the module docstring). The same arguments give
    the same pixels; ``seed`` changes the background texture and the objects' starting points."""
    if n_frames < 0 or width < 32 or height < 32:
        raise ValueError("n_frames must be >= 0 and the frame at least 32x32 pixels")
    rng = np.random.default_rng(seed)
    bg = _background(width, height, seed)
    yy, xx = np.mgrid[0:height, 0:width]
    s = min(width, height) / 120.0
    rw, rh, radius, tri = max(6, round(28 * s)), max(4, round(18 * s)), max(3, round(11 * s)), max(6, round(24 * s))
    band = height / 3.0
    starts = rng.uniform(0, 1, 3)
    step = 4 * s
    for t in range(n_frames):
        image = bg.copy()
        shapes: dict[int, np.ndarray] = {}
        x = _bounce(starts[0] * (width - rw), step, t, 0, width - rw - 1)
        y = band / 2 - rh / 2
        shapes[1] = (xx >= round(x)) & (xx < round(x) + rw) & (yy >= round(y)) & (yy < round(y) + rh)
        cx = _bounce(starts[1] * (width - 2 * radius), -0.75 * step, t, radius, width - radius - 1)
        cy = 2.5 * band
        shapes[2] = (xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2
        tx = _bounce(starts[2] * (width - tri), 0.6 * step, t, 0, width - tri - 1)
        ty = _bounce(starts[2] * (band - tri), 0.3 * step, t, band + 1, 2 * band - tri - 1)
        u, v = xx - tx, yy - ty  # apex at the top centre, base at the bottom
        shapes[3] = (v >= 0) & (v < tri) & (np.abs(u - tri / 2) <= v / 2)
        for oid, mask in shapes.items():
            image[mask] = COLOURS[oid]
        hidden = np.zeros((height, width), bool)
        if occlude_from is not None and occlude_to is not None and occlude_from <= t < occlude_to:
            box = mask_bbox(shapes[1])
            if box is not None:
                x1, y1, x2, y2 = box
                hidden[max(0, y1 - 4): y2 + 5, max(0, x1 - 4): x2 + 5] = True
                stripes = np.where((xx + yy) % 8 < 4, 70, 95).astype(np.uint8)
                image[hidden] = stripes[hidden][:, None]
        masks = {oid: mask & ~hidden for oid, mask in shapes.items()}
        image.flags.writeable = False
        yield SyntheticFrame(image, {oid: mask_bbox(m) for oid, m in masks.items()}, masks)


def _image(frame: Any) -> Any:
    return frame.image if isinstance(frame, SyntheticFrame) else frame


def write_clip(path: str | os.PathLike, frames: Iterable[Any], *, fps: float = 10, codec: str | None = None) -> Path:
    """Encode ``frames`` (:class:`SyntheticFrame` objects, RGB arrays or PIL images) to ``path``; the suffix
    picks the container (``.mp4``, ``.m4v``, ``.mov``, ``.mkv``: H.264; ``.webm``: VP8), ``codec`` overrides
    the encoder (e.g. ``"mpeg4"``, ``"libvpx-vp9"``). Returns ``path``."""
    return _write(path, frames, None, fps=fps, codec=codec)


def write_vfr_clip(path: str | os.PathLike, frames: Iterable[Any], times_s: Sequence[float], *,
                   codec: str | None = None) -> Path:
    """Like :func:`write_clip`, with an explicit presentation time per frame (seconds, increasing): a variable
    frame rate clip. ``len(times_s)`` must equal the number of frames."""
    return _write(path, frames, list(times_s), fps=10, codec=codec)


def _write(path: str | os.PathLike, frames: Iterable[Any], times: list[float] | None, *, fps: float,
           codec: str | None) -> Path:
    from ..video.encode import VideoWriter

    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise ValueError("no frames to write")
    image = _image(first)
    w, h = (image.shape[1], image.shape[0]) if isinstance(image, np.ndarray) else image.size
    with VideoWriter(path, fps=fps, width=w, height=h, codec=codec) as writer:
        for i, frame in enumerate(itertools.chain([first], frames)):
            if times is not None and i >= len(times):
                raise ValueError(f"more frames than times ({len(times)})")
            writer.write(_image(frame), time_s=None if times is None else times[i])
        if times is not None and writer.frames_written != len(times):
            raise ValueError(f"{writer.frames_written} frames but {len(times)} times")
    return Path(path)


def write_frame_folder(folder: str | os.PathLike, frames: Iterable[Any], fmt: str = "png") -> Path:
    """Save ``frames`` as ``frame_00000.<fmt>``, ``frame_00001.<fmt>``, ... in ``folder`` (made if missing);
    ``fmt``: ``png``, ``jpg``, ``webp`` or ``bmp``. Returns the folder."""
    from PIL import Image

    if fmt not in ("png", "jpg", "jpeg", "webp", "bmp"):
        raise ValueError(f"fmt must be png, jpg, webp or bmp, got {fmt!r}")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        image = _image(frame)
        pil = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
        pil.save(out / f"frame_{i:05d}.{fmt}", **({"quality": 95} if fmt in ("jpg", "jpeg") else {}))
    return out
