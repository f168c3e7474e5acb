"""The steering methods of :class:`~segzero_tool.pipeline.SegZeroPipeline` (the caller's boxes and clicks;
no reasoner needed): thin wrappers over :mod:`segzero_tool.steer` that bring the pipeline's segmenter,
limits, segmenter lock and decoded-image cache."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .image_cache import DecodedImageCache
    from .images import ImageInput, LoadedImage
    from .result import SegmentationResult
    from .segmenters.base import Segmenter


class SteeringMethods:
    """Mixed into :class:`~segzero_tool.pipeline.SegZeroPipeline`, which sets these attributes."""

    segmenter: Segmenter | None
    max_objects: int
    max_pixels: int | None
    image_cache: DecodedImageCache
    _segment_lock: threading.Lock

    def _steering_segmenter(self) -> Segmenter:
        if self.segmenter is None:
            raise ValueError("this pipeline has no segmenter; load one to segment from prompts")
        return self.segmenter

    def segment_by_prompts(self, image: ImageInput | LoadedImage | SegmentationResult, objects: Any, *,
                           max_objects: int | None = None, query: str = "") -> SegmentationResult:
        """Segment the caller's ``{box?, points?, negative_points?, label?}`` objects (original-image
        pixels) with this pipeline's segmenter, pixel limit and object cap: see
        :func:`segzero_tool.steer.segment_by_prompts`. Needs no reasoner.

        Raises:
            PromptError: bad objects (the message says what to send); ImageLoadError: bad image.
        """
        from .steer import segment_by_prompts

        return segment_by_prompts(self._steering_segmenter(), image, objects,
                                  max_objects=max_objects or self.max_objects, max_pixels=self.max_pixels,
                                  query=query, lock=self._segment_lock, image_cache=self.image_cache)

    def refine_object(self, result: SegmentationResult, index: int, *, add_points: Any = (),
                      remove_points: Any = (), box: Any = None) -> SegmentationResult:
        """A new result with object ``index`` recomputed with extra positive (``add_points``) / negative
        (``remove_points``) clicks or a new ``box``: see :func:`segzero_tool.steer.refine_object`."""
        from .steer import refine_object

        return refine_object(self._steering_segmenter(), result, index, add_points=add_points,
                             remove_points=remove_points, box=box, lock=self._segment_lock)

    def select_objects(self, result: SegmentationResult, indices: Sequence[int]) -> SegmentationResult:
        """A new result keeping the objects at ``indices``, in that order: see
        :func:`segzero_tool.steer.select_objects`."""
        from .steer import select_objects

        return select_objects(result, indices)


__all__ = ["SteeringMethods"]
