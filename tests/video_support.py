"""Shared by the video tests of tests/video, tests/mcp and tests/agents: scripted answers that box known pixels,
the set of clips the tool tests read, and a tracker wrapper that counts its steps."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segzero_tool.video.tracker import VideoTracker


def box_answer(boxes: Iterable[tuple[int, int, int, int]], width: int, height: int, *, think: str | None = None,
               frame: int = 840) -> str:
    """A VisionReasoner answer whose boxes back-project to ``boxes`` (pixels) on a ``width`` x ``height`` image."""
    items = []
    sx, sy = frame / width, frame / height
    for x1, y1, x2, y2 in boxes:
        items.append({"bbox_2d": [round(x1 * sx, 3), round(y1 * sy, 3), round(x2 * sx, 3), round(y2 * sy, 3)],
                      "point_2d": [round((x1 + x2) / 2 * sx, 3), round((y1 + y2) / 2 * sy, 3)]})
    return f"<think>{think or f'found {len(items)}'}</think><answer>{json.dumps(items)}</answer>"


def write_clip_set(root: Path, frames: Sequence[Any], *, clip_frames: int, folder_frames: int) -> Path:
    """``root/clips`` with ``clip.mp4`` (the first ``clip_frames``), ``long.mp4`` (all), ``frames/`` (a folder of
    the first ``folder_frames``) and ``broken.mp4`` (an MP4 header, then text)."""
    from segzero_tool.testing.synthetic_video import write_clip, write_frame_folder

    clips = root / "clips"
    clips.mkdir()
    write_clip(clips / "clip.mp4", frames[:clip_frames], fps=10)
    write_clip(clips / "long.mp4", frames, fps=10)
    write_frame_folder(clips / "frames", frames[:folder_frames])
    (clips / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"this is not a video" * 40)
    return clips


class CountingTracker(VideoTracker):
    """A real tracker, counting its steps and resets; ``reached`` is set at step ``at`` (a test double through the
    public interface: every call goes on to the wrapped tracker)."""

    def __init__(self, inner: VideoTracker, at: int = 3) -> None:
        self.inner, self.at = inner, at
        self.model_id = inner.model_id
        self.steps = 0
        self.resets = 0
        self.reached = threading.Event()

    def step(self, image: np.ndarray, *, new_objects: Mapping[int, np.ndarray] | None = None) -> dict:
        out = self.inner.step(image, new_objects=new_objects)
        self.steps += 1
        if self.steps >= self.at:
            self.reached.set()
        return out

    def add(self, new_objects: Mapping[int, np.ndarray]) -> dict:
        return self.inner.add(new_objects)

    def reset(self) -> None:
        self.resets += 1
        self.inner.reset()
