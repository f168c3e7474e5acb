"""The segmenter interface: (original image, per-object box + points) -> masks and scores.

Coordinates are **original-image pixels** (the pipeline back-projects from the reasoning frame
before calling a segmenter). Each object carries an optional xyxy box and zero or more positive
points; SAM2 returns three candidate masks per object and the one with the highest predicted IoU is
kept, as the reference code does.

Refinement (interactive correction of one object, SAM2-style): an object may also carry negative
points (clicks on what is *not* the object) and ``mask_input``, the low-resolution mask logits of
its previous result (:attr:`SegmenterOutput.low_res_logits`). Backends that honour both set
:attr:`Segmenter.supports_refinement`; every other backend raises
:class:`~segzero_tool.errors.RefinementNotSupported` when given either (enforced by this base class
around ``segment``), never ignores them.
"""

from __future__ import annotations

import functools
import threading
import weakref
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import RefinementNotSupported


def _has_items(values: Any) -> bool:
    """Whether a points field is non-empty (a tuple, list or numpy ``(k, 2)`` array); a non-sequence
    other than ``None`` counts as non-empty so that it reaches validation."""
    try:
        return len(values) > 0
    except TypeError:
        return values is not None


@dataclass(frozen=True)
class ObjectPrompt:
    """Prompt for one object, in original-image pixels.

    Attributes:
        box: ``(x1, y1, x2, y2)`` or ``None`` for a point-only prompt.
        points: positive points ``((x, y), ...)``; may be empty for a box-only prompt.
        negative_points: points ``((x, y), ...)`` that are *not* on the object (SAM2 label 0).
        mask_input: the object's previous low-resolution mask **logits**, ``(S/4, S/4)`` float
            (``(256, 256)`` for the released SAM2 models, input side ``S = 1024``), as returned in
            :attr:`SegmenterOutput.low_res_logits`; ``None`` for a first prediction.

    ``negative_points`` and ``mask_input`` need a backend with
    :attr:`Segmenter.supports_refinement`. Equality compares ``mask_input`` by value
    (``np.array_equal``); the hash ignores it.
    """

    box: tuple[float, float, float, float] | None
    points: tuple[tuple[float, float], ...] = ()
    negative_points: tuple[tuple[float, float], ...] = ()
    mask_input: np.ndarray | None = field(default=None, compare=False, repr=False)

    @property
    def refines(self) -> bool:
        """Whether this prompt needs refinement support (negative points or a previous mask)."""
        return self.mask_input is not None or _has_items(self.negative_points)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, ObjectPrompt)
        if (self.box, self.points, self.negative_points) != (other.box, other.points, other.negative_points):
            return False
        if self.mask_input is None or other.mask_input is None:
            return self.mask_input is other.mask_input
        return bool(np.array_equal(self.mask_input, other.mask_input))

    def __repr__(self) -> str:
        text = f"ObjectPrompt(box={self.box!r}, points={self.points!r}"
        if _has_items(self.negative_points):
            text += f", negative_points={self.negative_points!r}"
        if self.mask_input is not None:
            mask = self.mask_input
            described = (f"<{mask.shape} {mask.dtype}>" if isinstance(mask, np.ndarray)
                         else f"<{type(mask).__name__}>")
            text += f", mask_input={described}"
        return text + ")"


def check_mask_input(mask: Any, side: int, *, index: int | None = None) -> np.ndarray:
    """Validate one object's ``mask_input`` and return it as a C-contiguous float32 array.

    Args:
        mask: the previous low-resolution logits: a 2-D numpy array of real numbers (float or int).
        side: the expected side, ``S/4`` for a model of input side ``S`` (256 for SAM2).
        index: the object's position, for the message.

    Raises:
        ValueError: not a numpy array, not ``(side, side)``, a boolean/complex/object dtype (SAM2
            takes logits, not a binary mask), or a value that is not finite (in float32).
    """
    where = "mask_input" if index is None else f"mask_input of object {index}"
    if not isinstance(mask, np.ndarray):
        raise ValueError(f"{where} must be a numpy array of ({side}, {side}) float32 logits, "
                         f"got {type(mask).__name__}")
    if mask.shape != (side, side):
        raise ValueError(f"{where} must have shape ({side}, {side}) (the low-resolution logits this "
                         f"segmenter returned as low_res_logits), got {mask.shape}")
    if mask.dtype == np.bool_ or mask.dtype.kind not in "fiu":
        raise ValueError(f"{where} must be float logits (as returned in low_res_logits), not a "
                         f"{mask.dtype} array; for a binary mask pass e.g. np.where(mask, 10.0, -10.0)")
    with np.errstate(over="ignore", invalid="ignore"):
        logits = np.ascontiguousarray(mask, dtype=np.float32)
    if not np.isfinite(logits).all():
        raise ValueError(f"{where} has a value that is not finite in float32 (NaN, inf or beyond "
                         "±3.4e38)")
    return logits


@dataclass
class SegmenterOutput:
    """Masks for one image.

    Attributes:
        masks: ``(n, H, W)`` bool, one per prompt, in original-image pixels.
        scores: ``(n,)`` float32, the predicted IoU of each kept mask.
        low_res_logits: ``(n, S/4, S/4)`` float32 logits of each kept mask before resizing to the
            image (``(n, 256, 256)`` for the released SAM2 models), to pass back as
            :attr:`ObjectPrompt.mask_input` when refining; ``None`` when the backend cannot give them.
    """

    masks: np.ndarray
    scores: np.ndarray
    low_res_logits: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.masks.ndim != 3:
            raise ValueError(f"masks must be (n, H, W), got shape {self.masks.shape}")
        if self.scores.shape != (self.masks.shape[0],):
            raise ValueError(
                f"scores must be ({self.masks.shape[0]},) to match masks, got {self.scores.shape}"
            )
        logits = self.low_res_logits
        if logits is not None and (logits.ndim != 3 or logits.shape[0] != self.masks.shape[0]):
            raise ValueError(
                f"low_res_logits must be ({self.masks.shape[0]}, h, w) to match masks, got {logits.shape}"
            )


def _immutable(array: np.ndarray) -> bool:
    """Whether ``array``'s pixels cannot change: it and every array it is a view of are read-only, and
    the memory at the bottom is either owned by such an array or an immutable ``bytes`` object."""
    a: Any = array
    while isinstance(a, np.ndarray):
        if a.flags.writeable:
            return False
        if a.base is None:
            return True
        a = a.base
    return isinstance(a, bytes)


_KEYS: dict[int, tuple[weakref.ref[np.ndarray], str]] = {}
_KEYS_LOCK = threading.Lock()


def _forget(ref: weakref.ref[np.ndarray], ident: int) -> None:
    with _KEYS_LOCK:
        entry = _KEYS.get(ident)
        if entry is not None and entry[0] is ref:
            del _KEYS[ident]


def image_key(image: np.ndarray) -> str:
    """A content hash of an RGB uint8 image, used to key embedding caches.

    Hashing a 1920x1080 image takes about 12 ms, so the key of a **read-only** array is remembered
    for as long as the array lives (by identity): the images the library decodes itself
    (:func:`segzero_tool.images.load_image` of a path, bytes or a PIL image) and the images results
    carry are read-only, so a refinement or a new prompt on a result's image is not hashed again.
    A writable array is hashed on every call. (A read-only array that owns its memory can be made
    writable again with ``array.flags.writeable = True``; do not change its pixels after that: copy
    it instead.)
    """
    import hashlib

    frozen = _immutable(image)
    if frozen:
        with _KEYS_LOCK:
            entry = _KEYS.get(id(image))
        if entry is not None and entry[0]() is image:
            return entry[1]
    h = hashlib.blake2b(digest_size=16)
    h.update(str(image.shape).encode())
    h.update(np.ascontiguousarray(image).tobytes())
    key = h.hexdigest()
    if frozen:
        ident = id(image)
        ref = weakref.ref(image, lambda r, ident=ident: _forget(r, ident))
        with _KEYS_LOCK:
            _KEYS[ident] = (ref, key)
    return key


def check_refinement(segmenter: Segmenter, prompts: Sequence[ObjectPrompt]) -> None:
    """Raise :class:`RefinementNotSupported` if ``segmenter`` lacks refinement support and a prompt
    has negative points or a ``mask_input``."""
    if getattr(segmenter, "supports_refinement", False):
        return
    needing = [i for i, p in enumerate(prompts) if isinstance(p, ObjectPrompt) and p.refines]
    if needing:
        name = getattr(segmenter, "name", "custom")
        raise RefinementNotSupported(
            f"the {name!r} segmenter backend ({type(segmenter).__name__}) does not support refinement: "
            f"objects {needing} have negative points or a previous mask (mask_input); use the "
            "transformers SAM2 backend ('transformers', the default; Meta's 'sam2' also supports it)"
        )


def _guard_refinement(segment: Any) -> Any:
    """Wrap a subclass's ``segment`` so that it refuses refinement prompts when the instance does
    not declare :attr:`Segmenter.supports_refinement` (checked at call time)."""

    @functools.wraps(segment)
    def guarded(self: Segmenter, image: np.ndarray, prompts: Sequence[ObjectPrompt], *args: Any,
                **kwargs: Any) -> SegmenterOutput:
        if not getattr(self, "supports_refinement", False):
            prompts = list(prompts)
            check_refinement(self, prompts)
        return segment(self, image, prompts, *args, **kwargs)

    guarded._refinement_guarded = True  # type: ignore[attr-defined]
    return guarded


class Segmenter(ABC):
    """Base class of segmenter backends.

    ``segment`` must handle ``len(prompts) == 0`` (return ``(0, H, W)`` masks) and should run all
    prompts of one image in one decoder batch, computing the image embedding once (backends keep an
    embedding cache keyed by :func:`image_key`).

    Refinement contract: a backend that honours :attr:`ObjectPrompt.negative_points` and
    :attr:`ObjectPrompt.mask_input` sets ``supports_refinement = True`` (and should fill
    :attr:`SegmenterOutput.low_res_logits`). For every other backend, ``segment`` raises
    :class:`~segzero_tool.errors.RefinementNotSupported` when a prompt carries either: this base
    class wraps each subclass's ``segment`` with that check, so a backend written before refinement
    existed refuses such prompts instead of silently ignoring them.
    """

    name: str = "custom"
    model_id: str | None = None
    #: Whether ``segment`` honours negative points and ``mask_input`` (see the class docstring).
    supports_refinement: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        segment = cls.__dict__.get("segment")
        if callable(segment) and not getattr(segment, "_refinement_guarded", False):
            cls.segment = _guard_refinement(segment)  # type: ignore[method-assign]

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
