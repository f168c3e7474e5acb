"""The segmenter interface: (original image, per-object box + points) -> masks and scores.

Coordinates are **original-image pixels** (the pipeline back-projects from the reasoning frame
before calling a segmenter). Each object carries an optional xyxy box and zero or more positive
points; SAM2 returns three candidate masks per object and the one with the highest predicted IoU is
kept, as the reference code does.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ObjectPrompt:
    """Prompt for one object, in original-image pixels.

    Attributes:
        box: ``(x1, y1, x2, y2)`` or ``None`` for a point-only prompt.
        points: positive points ``((x, y), ...)``; may be empty for a box-only prompt.
    """

    box: tuple[float, float, float, float] | None
    points: tuple[tuple[float, float], ...] = ()


@dataclass
class SegmenterOutput:
    """Masks for one image.

    Attributes:
        masks: ``(n, H, W)`` bool, one per prompt, in original-image pixels.
        scores: ``(n,)`` float32, the predicted IoU of each kept mask.
    """

    masks: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        if self.masks.ndim != 3:
            raise ValueError(f"masks must be (n, H, W), got shape {self.masks.shape}")
        if self.scores.shape != (self.masks.shape[0],):
            raise ValueError(
                f"scores must be ({self.masks.shape[0]},) to match masks, got {self.scores.shape}"
            )


def image_key(image: np.ndarray) -> str:
    """A content hash of an RGB uint8 image, used to key embedding caches."""
    import hashlib

    h = hashlib.blake2b(digest_size=16)
    h.update(str(image.shape).encode())
    h.update(np.ascontiguousarray(image).tobytes())
    return h.hexdigest()


class Segmenter(ABC):
    """Base class of segmenter backends.

    ``segment`` must handle ``len(prompts) == 0`` (return ``(0, H, W)`` masks) and should run all
    prompts of one image in one decoder batch, computing the image embedding once (backends keep an
    embedding cache keyed by :func:`image_key`).
    """

    name: str = "custom"
    model_id: str | None = None

    @abstractmethod
    def segment(self, image: np.ndarray, prompts: Sequence[ObjectPrompt]) -> SegmenterOutput:
        """Segment every prompted object of one image.

        Args:
            image: ``(H, W, 3)`` uint8 RGB, original resolution.
            prompts: one :class:`ObjectPrompt` per object, original-image pixels.

        Returns:
            :class:`SegmenterOutput` with ``(len(prompts), H, W)`` masks.
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources. Optional."""

    def __enter__(self) -> Segmenter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
