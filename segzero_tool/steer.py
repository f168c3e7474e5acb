"""Steering operations: the caller proposes boxes and points, our segmenter turns them into masks.

* :func:`segment_by_prompts`: prompt objects -> one :class:`~segzero_tool.result.SegmentationResult`
  (one segmenter call for all objects; the image embedding comes from the segmenter's cache).
* :func:`refine_object`: a new result in which one object is recomputed with extra positive / negative
  clicks (and optionally a new box), fed its previous low-resolution mask logits.
* :func:`select_objects`: a new result keeping some objects, in the given order.

A result made from prompts is the reasoning pipeline's result type with ``prompt_format``
:data:`PROMPTS_FORMAT` (``"prompts"``), ``reasoner`` ``None``, empty ``reasoning`` and ``raw_output``,
``parse_status`` ``ok``, ``frame_size`` the image size, ``query`` what the caller passes (default ``""``).
Results are never modified: refine and select return new ones (the objects list is copied; untouched
objects are shared, and so is the image array). The caller's objects are checked by
:mod:`segzero_tool.prompt_objects`. The MCP server, the LangChain tools and the CLI are adapters over
these functions.

>>> from segzero_tool.steer import refine_object, segment_by_prompts, select_objects
>>> result = segment_by_prompts(segmenter, "photo.jpg", [{"box": [10, 20, 200, 240]}])
>>> better = refine_object(segmenter, result, 0, remove_points=[[120, 60]])
>>> final = select_objects(better, [0])
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import PromptError
from .images import DEFAULT_MAX_PIXELS, ImageInput, LoadedImage, load_image
from .parse_types import ParseStatus
from .prompt_objects import PromptObject, parse_box, parse_points, parse_prompt_objects, show
from .result import SegmentationResult, SegmentedObject
from .segmenters.base import ObjectPrompt, Segmenter

if TYPE_CHECKING:
    from .image_cache import DecodedImageCache

#: ``prompt_format`` of a result made from the caller's prompts (no reasoner ran).
PROMPTS_FORMAT = "prompts"
#: Default cap on objects per :func:`segment_by_prompts` call (the pipeline's ``max_objects``).
DEFAULT_MAX_PROMPT_OBJECTS = 50


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


def segmenter_name(segmenter: Segmenter) -> str:
    """How a result names its segmenter: the model id, else the class name."""
    return getattr(segmenter, "model_id", None) or type(segmenter).__name__


def _run(segmenter: Segmenter, image: np.ndarray, prompts: list[ObjectPrompt],
         lock: AbstractContextManager[Any] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    with lock if lock is not None else nullcontext():
        out = segmenter.segment(image, prompts)
    h, w = image.shape[:2]
    if out.masks.shape != (len(prompts), h, w):
        raise RuntimeError(f"segmenter {type(segmenter).__name__} returned masks of shape {out.masks.shape}, "
                           f"expected {(len(prompts), h, w)}")
    return out.masks, out.scores, getattr(out, "low_res_logits", None)


def _logits(all_logits: np.ndarray | None, k: int) -> np.ndarray | None:
    if all_logits is None:
        return None
    return np.array(all_logits[k], dtype=np.float32, copy=True)  # its own array: results do not share it


def _prompt(box: Any, points: Any, negative: Any = (), mask_input: np.ndarray | None = None) -> ObjectPrompt:
    extra: dict[str, Any] = {}
    if negative:
        extra["negative_points"] = tuple(negative)
    if mask_input is not None:
        extra["mask_input"] = mask_input
    return ObjectPrompt(box, tuple(points), **extra)


def _image_of(image: ImageInput | LoadedImage | SegmentationResult, max_pixels: int | None,
              cache: DecodedImageCache | None = None) -> np.ndarray:
    if isinstance(image, SegmentationResult):
        if image.image is None:
            raise PromptError(_NO_IMAGE)
        return image.image
    return load_image(image, max_pixels=max_pixels, cache=cache).array


_NO_IMAGE = ("the result carries no image (a result rebuilt from JSON keeps only its masks); "
             "call segment_by_prompts with the image again")


def segment_by_prompts(
    segmenter: Segmenter,
    image: ImageInput | LoadedImage | SegmentationResult,
    objects: Any,
    *,
    max_objects: int = DEFAULT_MAX_PROMPT_OBJECTS,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    query: str = "",
    lock: AbstractContextManager[Any] | None = None,
    image_cache: DecodedImageCache | None = None,
) -> SegmentationResult:
    """Segment the caller's prompt objects in ``image`` with one segmenter call.

    Args:
        segmenter: any segmenter backend.
        image: anything :func:`~segzero_tool.images.load_image` accepts, or a result whose image to reuse.
        objects: a list of ``{box?, points?, negative_points?, label?}`` (see
            :mod:`segzero_tool.prompt_objects` for the rules).
        max_objects: refuse more objects than this.
        max_pixels: refuse larger images.
        query: what the objects are meant to answer, recorded as the result's ``query`` (default ``""``).
        lock: held around the segmenter call (a pipeline passes its segmenter lock).
        image_cache: decoded images by file content (:class:`~segzero_tool.image_cache.DecodedImageCache`;
            a pipeline passes its own): a path or bytes seen before is not decoded, nor hashed, again.

    Returns:
        A new result (see the module docstring): each object keeps its box as ``box``, its positive points
        as ``points``, its ``negative_points``, ``label``, the repairs in ``issues``, and the segmenter's
        low-resolution logits in ``low_res_logits`` for :func:`refine_object`.

    Raises:
        PromptError: bad objects; ImageLoadError / ImageTooLargeError: bad image;
        RefinementNotSupported: negative points on a segmenter without refinement support.
    """
    t_total = time.perf_counter()
    if not isinstance(query, str):
        raise PromptError(f"query must be a string; got {show(query)}")
    t0 = time.perf_counter()
    array = _image_of(image, max_pixels, image_cache)
    load_ms = _ms(t0)
    h, w = array.shape[:2]
    checked = parse_prompt_objects(objects, (w, h), max_objects=max_objects)
    t0 = time.perf_counter()
    prompts = [_prompt(o.box, o.points, o.negative_points) for o in checked]
    masks, scores, logits = _run(segmenter, array, prompts, lock)
    segment_ms = _ms(t0)
    out = [
        SegmentedObject(box=o.box, points=o.points, score=float(scores[k]), mask=masks[k].astype(bool, copy=False),
                        label=o.label, issues=o.issues, negative_points=o.negative_points,
                        low_res_logits=_logits(logits, k))
        for k, o in enumerate(checked)
    ]
    return SegmentationResult(
        query=query, prompt_format=PROMPTS_FORMAT, reasoning="", raw_output="", parse_status=ParseStatus.OK,
        image_size=(w, h), objects=out, timings={"load": load_ms, "segment": segment_ms, "total": _ms(t_total)},
        frame_size=(w, h), reasoner=None, segmenter=segmenter_name(segmenter), image=array,
    )


def _check_index(result: SegmentationResult, index: Any, name: str = "index") -> int:
    n = len(result.objects)
    if n == 0:
        raise PromptError(f"{name} {show(index)} is out of range: the result has no objects; segment some first "
                          "with segment_by_prompts")
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= int(index) < n:
        raise PromptError(f"{name} must be an integer from 0 to {n - 1} (the result has {n} object(s)); "
                          f"got {show(index)}")
    return int(index)


def refine_object(
    segmenter: Segmenter,
    result: SegmentationResult,
    index: Any,
    *,
    add_points: Any = (),
    remove_points: Any = (),
    box: Any = None,
    lock: AbstractContextManager[Any] | None = None,
) -> SegmentationResult:
    """A new result in which object ``index`` is recomputed with more clicks; ``result`` is left unchanged.

    The object's previous prompt (its segmenter box and points, and its negative points) is extended with
    ``add_points`` (positive clicks: part of the object) and ``remove_points`` (negative clicks: not part
    of it); ``box`` replaces its box. Its previous low-resolution mask logits are fed to the segmenter as
    ``mask_input``, the way SAM2's interactive refinement chains clicks, unless a new ``box`` is given (a
    new box starts over from the box) or the segmenter does not support refinement (positive clicks still
    work there; negative clicks raise its ``RefinementNotSupported``). The image embedding comes from the
    segmenter's cache. Other objects are kept as they were.

    Raises:
        PromptError: index out of range, bad points or box, nothing to change, or a result without its image.
    """
    t_total = time.perf_counter()
    i = _check_index(result, index)
    if result.image is None:
        raise PromptError(_NO_IMAGE)
    w, h = result.image_size
    add, issues, _ = parse_points(add_points, (w, h), "add_points")
    remove, found, _ = parse_points(remove_points, (w, h), "remove_points")
    issues += found
    new_box = None
    if box is not None:
        new_box, found = parse_box(box, (w, h), "box")
        issues += found
    if not add and not remove and new_box is None:
        raise PromptError("nothing to refine: send add_points [[x, y]] (part of the object), remove_points "
                          "[[x, y]] (not part of it) or a new box [x1, y1, x2, y2]")
    obj = result.objects[i]
    if new_box is not None:
        seg_box, seg_points = new_box, (*obj.segmenter_prompt[1], *add)
        box_out, points_out = new_box, (*obj.points, *add)
        prompt_box, prompt_points = None, (seg_points if obj.prompt_points is not None else None)
    else:
        seg_box, seg_points = obj.segmenter_prompt[0], (*obj.segmenter_prompt[1], *add)
        box_out, points_out = obj.box, (*obj.points, *add)
        prompt_box, prompt_points = obj.prompt_box, (seg_points if obj.prompt_points is not None else None)
    negative = (*obj.negative_points, *remove)
    if seg_box is None and not seg_points:
        raise PromptError(f"object {i} has no box and no positive point to refine from; send add_points or a box")
    mask_input = obj.low_res_logits
    if new_box is not None or not getattr(segmenter, "supports_refinement", False):
        mask_input = None
    t0 = time.perf_counter()
    masks, scores, logits = _run(segmenter, result.image, [_prompt(seg_box, seg_points, negative, mask_input)], lock)
    segment_ms = _ms(t0)
    refined = replace(
        obj, box=box_out, points=tuple(points_out), prompt_box=prompt_box, prompt_points=prompt_points,
        negative_points=tuple(negative), mask=masks[0].astype(bool, copy=False), score=float(scores[0]),
        low_res_logits=_logits(logits, 0), issues=(*obj.issues, *issues),
    )
    objects = list(result.objects)
    objects[i] = refined
    return replace(result, objects=objects, timings={"segment": segment_ms, "total": _ms(t_total)})


def select_objects(result: SegmentationResult, indices: Any) -> SegmentationResult:
    """A new result keeping only the objects at ``indices``, in that order (the union follows them).

    An empty list gives a result with no objects. ``result`` is left unchanged.

    Raises:
        PromptError: ``indices`` not a list of integers, a duplicate, or an index out of range.
    """
    n = len(result.objects)
    valid = f"0 to {n - 1}" if n else "none: the result has no objects"
    if isinstance(indices, (str, bytes)) or not isinstance(indices, (Sequence, np.ndarray)):
        raise PromptError(f"indices must be a list of object indices ({valid}); got {show(indices)}")
    picked: list[int] = []
    for k, index in enumerate(indices):
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= int(index) < n:
            raise PromptError(f"indices[{k}] must be an object index ({valid}); got {show(index)}")
        if int(index) in picked:
            raise PromptError(f"indices[{k}] repeats object {int(index)}; list each object at most once")
        picked.append(int(index))
    return replace(result, objects=[result.objects[i] for i in picked], timings=dict(result.timings))


__all__ = ["DEFAULT_MAX_PROMPT_OBJECTS", "PROMPTS_FORMAT", "PromptObject", "parse_prompt_objects", "refine_object",
           "segment_by_prompts", "segmenter_name", "select_objects"]
