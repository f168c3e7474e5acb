"""Concept segmentation as a steering operation: every instance of a short noun phrase, as one result.

:func:`segment_phrase` runs a concept segmenter (:class:`~segzero_tool.segmenters.concept.Sam3ConceptSegmenter`,
or any :class:`~segzero_tool.segmenters.concept.ConceptSegmenter`) on an image and returns the package's one
result type, :class:`~segzero_tool.result.SegmentationResult`: one object per instance, best score first,
each with its box, score and mask (no points, no reasoner text). The result records the phrase as its
``query`` and the operation as its ``prompt_format`` (:data:`PHRASE_FORMAT`, ``"phrase"``); ``reasoner`` is
``None``, ``segmenter`` the concept model. It is the *propose* step of an agent loop: the calling agent
chooses phrases, checks the instances with ``inspect_result`` and keeps the right ones with
``select_objects`` (or fixes one with ``refine_object``, which prompts the box-and-click segmenter).

When no instance scores above the threshold the result has no objects, ``parse_status`` ``no_objects`` and
a ``parse_issues`` line saying what to try; when ``max_instances`` cut instances off, a line says how many.

>>> from segzero_tool.phrase import segment_phrase
>>> from segzero_tool.segmenters.concept import Sam3ConceptSegmenter
>>> sam3 = Sam3ConceptSegmenter.from_pretrained("facebook/sam3")    # gated: request access first
>>> result = segment_phrase("street.jpg", "yellow school bus", segmenter=sam3, threshold=0.5, max_instances=10)
"""

from __future__ import annotations

import math
import time
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import PromptError
from .images import DEFAULT_MAX_PIXELS, ImageInput, LoadedImage
from .parse_types import ParseStatus
from .prompt_objects import show
from .result import SegmentationResult, SegmentedObject
from .steer import _image_of, _ms, segmenter_name

if TYPE_CHECKING:
    from .image_cache import DecodedImageCache
    from .segmenters.concept import ConceptSegmenter

#: ``prompt_format`` of a result made by :func:`segment_phrase`.
PHRASE_FORMAT = "phrase"
#: Longest phrase accepted, in characters. SAM 3 reads a *short noun phrase* ("yellow school bus") through a
#: text encoder of 32 tokens; 200 characters is well above any noun phrase yet refuses a paragraph (or a
#: pasted document) before any model runs. The model checks its own token limit as well.
MAX_PHRASE_CHARS = 200
#: Default score threshold: SAM 3's own demos keep instances above 0.5.
DEFAULT_THRESHOLD = 0.5


def check_phrase(phrase: Any) -> str:
    """The phrase with surrounding whitespace removed.

    Raises:
        PromptError: not a string, empty or whitespace, longer than :data:`MAX_PHRASE_CHARS`, or holding
            control characters.
    """
    if not isinstance(phrase, str):
        raise PromptError(f"phrase must be a string, a short noun phrase such as 'red car'; got {show(phrase)}")
    text = phrase.strip()
    if not text:
        raise PromptError("phrase is empty; send a short noun phrase naming what to find, such as 'person' or "
                          "'red car'")
    if len(text) > MAX_PHRASE_CHARS:
        raise PromptError(f"phrase is {len(text)} characters long; send a short noun phrase of at most "
                          f"{MAX_PHRASE_CHARS} characters (SAM 3 reads a few words: 'yellow school bus'), not a sentence")
    if any(ord(c) < 32 and c not in "\t" or ord(c) == 127 for c in text):
        raise PromptError("phrase holds control characters (a line break?); send one short noun phrase per call")
    return text


def check_threshold(value: Any, name: str = "threshold") -> float:
    """A finite number from 0 to 1.

    Raises:
        PromptError: not a number, not finite, or outside [0, 1].
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise PromptError(f"{name} must be a number from 0 to 1; got {show(value)}")
    number = float(value)
    if not math.isfinite(number) or not 0.0 <= number <= 1.0:
        raise PromptError(f"{name} must be a number from 0 to 1 (instances scoring above it are kept); got "
                          f"{show(value)}")
    return number


def check_max_instances(value: Any) -> int | None:
    """``None`` (no cap) or a whole number of at least 1.

    Raises:
        PromptError: anything else.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < 1:
        raise PromptError(f"max_instances must be a whole number of at least 1 (or left out for no cap); got "
                          f"{show(value)}")
    return int(value)


def _int_box(box: Any, w: int, h: int) -> tuple[int, int, int, int]:
    """The detector's continuous corners -> the inclusive integer pixels they cover, inside the image
    (``(10.0, 20.0, 300.0, 200.0)`` covers pixels 10..299 and 20..199)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise RuntimeError(f"the concept segmenter returned a non-finite box {box!r}")
    x1, x2 = sorted((x1, x2))
    y1, y2 = sorted((y1, y2))
    ix1 = min(max(int(math.floor(x1)), 0), w - 1)
    iy1 = min(max(int(math.floor(y1)), 0), h - 1)
    ix2 = min(max(int(math.ceil(x2)) - 1, ix1), w - 1)
    iy2 = min(max(int(math.ceil(y2)) - 1, iy1), h - 1)
    return ix1, iy1, ix2, iy2


def segment_phrase(
    image: ImageInput | LoadedImage | SegmentationResult,
    phrase: Any,
    *,
    segmenter: ConceptSegmenter,
    threshold: Any = DEFAULT_THRESHOLD,
    max_instances: Any = None,
    mask_threshold: Any = 0.5,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    lock: AbstractContextManager[Any] | None = None,
    image_cache: DecodedImageCache | None = None,
) -> SegmentationResult:
    """Every instance of ``phrase`` in ``image``, as one result (see the module docstring).

    Args:
        image: anything :func:`~segzero_tool.images.load_image` accepts, or a result whose image to reuse.
        phrase: a short noun phrase ("person", "red car", "yellow school bus"); surrounding spaces are dropped.
        segmenter: the concept model (:class:`~segzero_tool.segmenters.concept.ConceptSegmenter`).
        threshold: keep instances scoring above this (0 to 1; default 0.5).
        max_instances: keep at most this many, the best first (``None``: all that pass the threshold).
        mask_threshold: binarise mask probabilities above this (0 to 1; default 0.5).
        max_pixels: refuse larger images.
        lock: held around the model call.
        image_cache: decoded images by file content (a pipeline passes its own).

    Returns:
        A new result whose objects are the instances, sorted by score (best first), each with ``box``
        (inclusive integer pixels), ``score`` and ``mask``.

    Raises:
        PromptError: bad phrase, threshold, mask_threshold or max_instances (before the image is read);
        ImageLoadError / ImageTooLargeError: bad image.
    """
    t_total = time.perf_counter()
    text = check_phrase(phrase)
    keep_above = check_threshold(threshold)
    binarise = check_threshold(mask_threshold, "mask_threshold")
    cap = check_max_instances(max_instances)
    t0 = time.perf_counter()
    array = _image_of(image, max_pixels, image_cache)
    load_ms = _ms(t0)
    h, w = array.shape[:2]
    t0 = time.perf_counter()
    with lock if lock is not None else nullcontext():
        # One more than the cap: whether the cap cut instances off (said in parse_issues).
        found = list(segmenter.find(array, text, threshold=keep_above, mask_threshold=binarise,
                                    max_instances=None if cap is None else cap + 1))
    segment_ms = _ms(t0)
    kept = sorted((f for f in found if float(f.score) > keep_above), key=lambda f: -float(f.score))
    issues: list[str] = []
    if cap is not None and len(kept) > cap:
        issues.append(f"more than {cap} instance(s) scored above {keep_above:g}; only the best {cap} are kept "
                      "(raise max_instances for more)")
        kept = kept[:cap]
    objects = []
    for inst in kept:
        mask = np.asarray(inst.mask)
        if mask.shape != (h, w):
            raise RuntimeError(f"concept segmenter {type(segmenter).__name__} returned a mask of shape {mask.shape}, "
                               f"expected {(h, w)}")
        objects.append(SegmentedObject(box=_int_box(inst.box, w, h), points=(), score=float(inst.score),
                                       mask=mask.astype(bool, copy=False)))
    if not objects:
        best = max((float(f.score) for f in found), default=None)
        seen = f" (the best scored {best:.2f})" if best is not None else ""
        issues.append(f"no instance of {text!r} scored above {keep_above:g}{seen}; try a lower threshold or "
                      "another phrase (a plainer noun: 'cup' rather than 'my favourite mug')")
    return SegmentationResult(
        query=text, prompt_format=PHRASE_FORMAT, reasoning="", raw_output="",
        parse_status=ParseStatus.OK if objects else ParseStatus.NO_OBJECTS, parse_issues=tuple(issues),
        image_size=(w, h), objects=objects,
        timings={"load": load_ms, "segment": segment_ms, "total": _ms(t_total)},
        frame_size=(w, h), reasoner=None, segmenter=segmenter_name(segmenter), image=array,  # type: ignore[arg-type]
    )


__all__ = ["DEFAULT_THRESHOLD", "MAX_PHRASE_CHARS", "PHRASE_FORMAT", "check_max_instances", "check_phrase",
           "check_threshold", "segment_phrase"]
