"""Test doubles for video, plugged in through the public interfaces.

``ColourTracker`` is a :class:`~segzero_tool.video.tracker.VideoTracker` that follows flat-coloured objects exactly:
an object's colour is the median colour under its prompt mask, and on every frame its mask is the pixels within a
small distance of that colour. A hidden object has an empty mask (lost); it comes back when its colour does. With
``forget_lost=True`` a lost object stays lost until :meth:`add` re-anchors it (as a weak tracker would).

``key_frame_answers`` writes (with ``video_support.box_answer``) the VisionReasoner answers a perfect reasoner gives on the key frames of a synthetic
clip, for ``ScriptedReasoner``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
from video_support import box_answer

from segzero_tool.masks import mask_bbox
from segzero_tool.video.tracker import TrackedMask, VideoTracker


class ColourTracker(VideoTracker):
    model_id = "colour"

    def __init__(self, *, tolerance: int = 30, forget_lost: bool = False, margin: int = 40) -> None:
        self.tolerance = tolerance
        self.margin = margin
        self.boxes: dict[int, tuple[int, int, int, int]] = {}
        self.forget_lost = forget_lost
        self.colours: dict[int, np.ndarray] = {}
        self.gone: set[int] = set()
        self.image: np.ndarray | None = None
        self.steps = 0
        self.adds: list[dict[int, np.ndarray]] = []
        self.resets = 0

    def _mask(self, oid: int) -> np.ndarray:
        assert self.image is not None
        h, w = self.image.shape[:2]
        mask = np.zeros((h, w), bool)
        if oid in self.gone:
            return mask
        # search near the last box (a tracker's search window), the whole frame when the object was not seen
        x1, y1, x2, y2 = self.boxes.get(oid, (0, 0, w - 1, h - 1))
        m = self.margin if oid in self.boxes else 0
        x1, y1, x2, y2 = max(0, x1 - m), max(0, y1 - m), min(w - 1, x2 + m), min(h - 1, y2 + m)
        crop = self.image[y1:y2 + 1, x1:x2 + 1].astype(np.int16)
        mask[y1:y2 + 1, x1:x2 + 1] = np.abs(crop - self.colours[oid].astype(np.int16)).max(axis=2) <= self.tolerance
        box = mask_bbox(mask)
        if box is None:
            self.boxes.pop(oid, None)
        else:
            self.boxes[oid] = box
        return mask

    def _all(self) -> dict[int, TrackedMask]:
        out = {}
        for oid in self.colours:
            mask = self._mask(oid)
            if self.forget_lost and not mask.any():
                self.gone.add(oid)
            out[oid] = TrackedMask(mask=mask, score=1.0 if mask.any() else 0.0)
        return out

    def step(self, image, *, new_objects=None):
        self.image = image
        self.steps += 1
        tracked = self._all()
        if new_objects:
            tracked = self.add(new_objects)
        return tracked

    def add(self, new_objects: Mapping[int, np.ndarray]) -> dict[int, TrackedMask]:
        assert self.image is not None
        self.adds.append(dict(new_objects))
        for oid, mask in new_objects.items():
            self.colours[int(oid)] = np.median(self.image[mask], axis=0)
            self.gone.discard(int(oid))
            box = mask_bbox(mask)
            if box is not None:
                self.boxes[int(oid)] = box
        return self._all()

    def reset(self) -> None:
        self.colours.clear()
        self.boxes.clear()
        self.gone.clear()
        self.resets += 1


def key_frame_answers(frames, key_indices: Iterable[int], ids: Iterable[int]) -> list[str]:
    """Answers naming the ground-truth boxes of objects ``ids`` on each key frame (hidden ones left out)."""
    keys = set(key_indices)
    wanted = list(ids)
    answers = []
    for i, f in enumerate(frames):
        if i in keys:
            h, w = f.image.shape[:2]
            answers.append(box_answer([f.boxes[o] for o in wanted if f.boxes.get(o) is not None], w, h))
    return answers
