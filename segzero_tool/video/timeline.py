"""``timeline.png``: the tracks of a run at a glance, one row per track over the frames.

Each row is coloured where its track is visible (the track's overlay colour, so it matches ``overlay.mp4``) and
left dark where it is lost; key frames are white ticks along the top. Drawn from ``frames.jsonl`` in one streaming
pass, so it costs one read of the file however long the run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

#: Most columns of the picture (frames are binned to fit), rows per track and the label width.
MAX_WIDTH = 1200
ROW = 18
LABEL = 56
MAX_ROWS = 40


def draw_timeline(frames_jsonl: str | Path, *, max_width: int = MAX_WIDTH) -> Any:
    """The timeline of the run whose ``frames.jsonl`` is given, as an RGB ``PIL.Image`` (``None``: no frames).

    A column covers ``ceil(frames / max_width)`` frames and is coloured when the track is visible on any of them.
    At most :data:`MAX_ROWS` tracks are drawn (the first ones); a last row says how many more there are.
    """
    from PIL import Image, ImageDraw

    from ..overlay import PALETTE

    visible: dict[int, list[int]] = {}
    keys: list[int] = []
    count = 0
    with open(frames_jsonl, encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                break
            record = json.loads(line)
            index = int(record["frame"])
            count = max(count, index + 1)
            if record.get("key_frame"):
                keys.append(index)
            for obj in record.get("objects", []):
                visible.setdefault(int(obj["track_id"]), []).append(index)
    if count == 0:
        return None
    per_col = -(-count // max_width)
    bins = -(-count // per_col)
    zoom = max(1, min(8, 600 // bins))  # short runs: several pixels per frame
    cols = bins * zoom
    ids = sorted(visible)
    shown = ids[:MAX_ROWS]
    rows = len(shown) + (1 if len(ids) > MAX_ROWS else 0)
    height = 10 + max(rows, 1) * ROW + 16
    canvas = np.full((height, max(LABEL + cols + 8, 420), 3), 24, np.uint8)
    for r, tid in enumerate(shown):
        y = 10 + r * ROW
        canvas[y + 2:y + ROW - 2, LABEL:LABEL + cols] = (48, 48, 48)
        seen = np.zeros(bins, bool)
        seen[np.asarray(visible[tid], dtype=np.int64) // per_col] = True
        seen = np.repeat(seen, zoom)
        colour = np.asarray(PALETTE[tid % len(PALETTE)], np.uint8)
        band = canvas[y + 2:y + ROW - 2, LABEL:LABEL + cols]
        band[:, seen] = colour
    for k in keys:
        x = LABEL + (k // per_col) * zoom
        canvas[2:9, x:x + max(1, zoom // 2)] = (255, 255, 255)
    image = Image.fromarray(canvas, mode="RGB")
    draw = ImageDraw.Draw(image)
    for r, tid in enumerate(shown):
        draw.text((4, 10 + r * ROW + 3), f"#{tid}", fill=(230, 230, 230))
    if len(ids) > MAX_ROWS:
        draw.text((4, 10 + len(shown) * ROW + 3), f"... {len(ids) - MAX_ROWS} more track(s)", fill=(230, 230, 230))
    scale = f"frames 0-{count - 1}" + (f", {per_col} per pixel" if per_col > 1 else "")
    draw.text((LABEL, height - 14), scale + "; white ticks: key frames", fill=(180, 180, 180))
    return image


__all__ = ["draw_timeline"]
