"""The evaluation sample and dataset types, and what a sample loads: its image and ground truth.

Every loader (:mod:`.datasets`) returns an :class:`EvalDataset`: an ordered list of :class:`EvalSample`
whose image and ground-truth mask are loaded only when asked for (a ReasonSeg test image can be 12
megapixels).

Images are used **as stored**: EXIF orientation is *not* applied, because the reference evaluation
feeds the hub copies' PIL images as they are and rasterised the ground truth at the stored size
(``PIL.Image.open(path).size``). Masks therefore live on the stored pixel grid.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ImageLoadError, SegZeroError
from ..images import DEFAULT_MAX_PIXELS, LoadedImage, load_image, stored_size

# the records keep the logger name they had before the loaders were split into modules
logger = logging.getLogger("segzero_tool.eval.datasets")


class DatasetError(SegZeroError, ValueError):
    """An evaluation dataset could not be found, read or understood."""

    exit_code = 9


# --- the sample ------------------------------------------------------------------------------------


@dataclass
class EvalSample:
    """One evaluation sample.

    Attributes:
        id: unique within its dataset (LISA: the file stem; hub copies: ``image_id`` and ``ann_id``;
            JSONL: the ``id`` field or the line number; RefCOCO folders: ``<ref_id>_<sent_id>``).
        query: the question as written in the dataset.
        image: a path, a PIL image, an ``(H, W[, C])`` array, encoded bytes, or a zero-argument
            callable returning one of those (loaded lazily by :meth:`load_image`).
        gt_mask: ``(H, W)`` bool array or a zero-argument callable returning one (:meth:`load_gt_mask`).
        gt_box: ground-truth ``(x1, y1, x2, y2)`` box (the RefCOCO copies' ``bbox``), if any.
        is_sentence: ``True`` for a long (sentence) query, ``False`` for a short one, ``None`` unknown.
        source: where the sample came from, for messages.
        image_id: which image the sample asks about, to group several expressions of one image
            (LISA: the file stem; hub copies: the ``image_id`` column; JSONL: the ``image_id`` key or
            the resolved image path; RefCOCO folders: the COCO image id); ``None`` when unknown.
    """

    id: str
    query: str
    image: Any = field(repr=False)
    gt_mask: Any = field(repr=False)
    gt_box: tuple[float, float, float, float] | None = None
    is_sentence: bool | None = None
    source: str = ""
    image_id: str | None = None

    def load_image(self, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> LoadedImage:
        """The image as ``(H, W, 3)`` uint8 RGB, stored orientation (EXIF not applied).

        Raises:
            ImageLoadError / ImageTooLargeError: missing, undecodable or too large.
        """
        src = self.image() if callable(self.image) else self.image
        if isinstance(src, (str, os.PathLike)):
            return read_image_as_stored(src, max_pixels=max_pixels)
        return load_image(src, max_pixels=max_pixels)

    def load_gt_mask(self) -> np.ndarray:
        """The ground truth as an ``(H, W)`` bool array (any non-zero value is foreground)."""
        src = self.gt_mask() if callable(self.gt_mask) else self.gt_mask
        return to_bool_mask(src, what=f"ground-truth mask of sample {self.id!r}")


def read_image_as_stored(path: str | os.PathLike, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Decode an image file to RGB without applying its EXIF orientation (as the reference eval),
    under our pixel limit only (Pillow's own guard does not apply), refusing truncated files."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ImageLoadError(f"{p}: no such file")
    return load_image(p, max_pixels=max_pixels, exif_transpose=False)


def stored_image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(width, height)`` from the file header, stored orientation."""
    return stored_size(path)


def to_bool_mask(value: Any, *, what: str = "mask") -> np.ndarray:
    """A PIL image, array or nested list as an ``(H, W)`` bool array (non-zero is foreground)."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        Image = None  # type: ignore[assignment]
    if Image is not None and isinstance(value, Image.Image):
        value = np.asarray(value)
    arr = np.asarray(value)
    if arr.dtype == object:  # ragged or nested arrays from some `datasets` formats
        try:
            arr = np.stack([np.asarray(r) for r in value])
        except ValueError:
            raise DatasetError(f"{what} is ragged (rows of different lengths)") from None
    if arr.ndim == 3 and arr.shape[2] in (1, 2, 3, 4):  # colour PNGs: any non-zero colour channel
        colour = arr.shape[2] - 1 if arr.shape[2] in (2, 4) else arr.shape[2]  # drop an alpha channel
        arr = arr[:, :, :colour].any(axis=2)
    if arr.ndim != 2 or arr.size == 0:
        raise DatasetError(f"{what} must be a non-empty 2-D array, got shape {arr.shape}")
    return arr.astype(bool) if arr.dtype != np.bool_ else arr


# --- the dataset -----------------------------------------------------------------------------------


class EvalDataset(Sequence[EvalSample]):
    """An ordered, id-unique list of :class:`EvalSample` plus where it came from.

    Attributes:
        name: what the user passed (path or hub id).
        kind: ``lisa``, ``jsonl``, ``hub``, ``hub-folder`` (a downloaded copy of a hub dataset repository),
            ``disk`` (a ``save_to_disk`` folder) or ``memory``.
        location: absolute path or hub id.
        split: the split used, if any.
        ignore_as_foreground: the LISA rasterisation switch (``None`` where it does not apply).
    """

    def __init__(self, samples: Iterable[EvalSample], *, name: str, kind: str, location: str,
                 split: str | None = None, ignore_as_foreground: bool | None = None) -> None:
        self.samples: list[EvalSample] = _unique_ids(list(samples))
        self.name = name
        self.kind = kind
        self.location = location
        self.split = split
        self.ignore_as_foreground = ignore_as_foreground
        self._by_id = {s.id: s for s in self.samples}

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index):  # type: ignore[override]
        return self.samples[index]

    def __iter__(self) -> Iterator[EvalSample]:
        return iter(self.samples)

    def get(self, sample_id: str) -> EvalSample | None:
        return self._by_id.get(sample_id)

    def describe(self) -> dict[str, Any]:
        """What the run manifest records about the dataset."""
        return {"name": self.name, "kind": self.kind, "location": self.location, "split": self.split,
                "samples": len(self.samples), "ignore_as_foreground": self.ignore_as_foreground}

    def __repr__(self) -> str:
        return f"EvalDataset({self.name!r}, kind={self.kind!r}, split={self.split!r}, samples={len(self)})"


def _unique_ids(samples: list[EvalSample]) -> list[EvalSample]:
    seen: dict[str, int] = {}
    for s in samples:
        s.id = str(s.id)
        if s.id in seen:
            seen[s.id] += 1
            new = f"{s.id}#{seen[s.id]}"
            while new in seen:
                seen[s.id] += 1
                new = f"{s.id}#{seen[s.id]}"
            logger.warning("duplicate sample id %r renamed to %r", s.id, new)
            s.id = new
        seen.setdefault(s.id, 1)
    return samples


def box_or_none(value: Any) -> tuple[float, float, float, float] | None:
    """Four finite numbers as an ``(x1, y1, x2, y2)`` float tuple; ``None`` for anything else."""
    if value is None:
        return None
    try:
        arr = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        return None
    if arr.size != 4 or not np.all(np.isfinite(arr)):
        return None
    return (float(arr[0]), float(arr[1]), float(arr[2]), float(arr[3]))


__all__ = [
    "DatasetError",
    "EvalDataset",
    "EvalSample",
    "box_or_none",
    "read_image_as_stored",
    "stored_image_size",
    "to_bool_mask",
]
