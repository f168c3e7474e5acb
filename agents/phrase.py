"""``segment_phrase`` as a LangChain tool: every instance of a short noun phrase (SAM 3 concept segmentation).

The calling model proposes with a phrase; it then checks the instances with ``inspect_result`` and keeps
the right ones with ``select_objects`` (or fixes one with ``refine_object``): give this tool the steering
tools' store of live results (``handles``) so that they take its ``result_id``. Same conventions as the
steering tools (:mod:`segzero_tool.agents.steering`): ``response_format="content_and_artifact"`` (the bounded
summary, plus the overlay as an image block with ``include_image=True``; the artifact is the
:class:`~segzero_tool.result.SegmentationResult`), bad input a :class:`~langchain_core.tools.ToolException`
saying what to send instead (a ``ToolMessage`` with ``status="error"`` by default). The work is
:func:`segzero_tool.phrase.segment_phrase`.

>>> from segzero_tool import SegZeroPipeline
>>> from segzero_tool.agents import make_phrase_tool, make_steering_tools, new_result_store
>>> from segzero_tool.segmenters.concept import Sam3ConceptSegmenter
>>> store = new_result_store()
>>> pipe = SegZeroPipeline.from_pretrained("none", "sam2.1-hiera-tiny")
>>> tools = make_steering_tools(pipe, handles=store) + [
...     make_phrase_tool(Sam3ConceptSegmenter.from_pretrained("facebook/sam3"), handles=store, pipeline=pipe)]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field, field_validator, model_validator

from segzero_tool.errors import ImageSourceRejected
from segzero_tool.images import DEFAULT_MAX_PIXELS
from segzero_tool.result import SegmentationResult
from segzero_tool.sources import ImagePolicy, load_image_source

from .steering import _RESULT_ID, _errors, _SteeringTool, _validation_message, new_result_store
from .tool import ImageIntakeFields, _image_hint

DESCRIPTION = (
    "Find EVERY instance of a short noun phrase in an image ('person', 'red car', 'coffee cup', 'yellow school "
    "bus') and get a pixel mask (SAM 3), box and score for each, best first. Use it to propose candidates by "
    "name; then check them with inspect_result and keep the right ones with select_objects (or fix one with "
    "refine_object). Send a phrase, not a question: it finds things by what they are, not by reasoning. If "
    "nothing comes back, lower the threshold (e.g. 0.3) or try a plainer noun. Returns a result_id. All "
    "coordinates are pixels of the original image, origin top-left; boxes are [x1, y1, x2, y2] inclusive.")


class SegmentPhraseArgs(BaseModel):
    image: str = Field(description=(
        "The image: a local file path, a data: URL ('data:image/png;base64,...'), the raw base64 of an image "
        "file, or the result_id of an earlier result (its image is reused)."))
    phrase: str = Field(description="A short noun phrase naming what to find, e.g. 'person' or 'red car'.")
    threshold: float = Field(0.5, description="Keep instances scoring above this, 0 to 1 (default 0.5).")
    max_instances: int | None = Field(None, description="Keep at most this many, the best first (default: all).")


class SegmentPhraseArgsWithUrls(SegmentPhraseArgs):
    image: str = Field(description=(
        "The image: a local file path, a public http(s) URL, a data: URL, the raw base64 of an image file, or "
        "the result_id of an earlier result (its image is reused)."))


class SegmentPhraseTool(ImageIntakeFields, _SteeringTool):
    """``segment_phrase``: every instance of a noun phrase, as a new result in the shared store.

    Attributes (beyond the steering tools' ``handles``, ``include_image``, ... and the image intake policy):
        concept: the concept model (:class:`~segzero_tool.segmenters.concept.Sam3ConceptSegmenter` or any
            :class:`~segzero_tool.segmenters.concept.ConceptSegmenter`).
        pipeline: optional; a :class:`~segzero_tool.pipeline.SegZeroPipeline` whose ``max_pixels`` and
            decoded-image cache to use.
        max_instances_cap: the most instances one call returns (default 50, the pipeline's object limit).
    """

    name: str = "segment_phrase"
    description: str = DESCRIPTION
    args_schema: type[BaseModel] = SegmentPhraseArgs
    handle_validation_error: bool | str | Callable[..., Any] | None = _validation_message("segment_phrase")
    concept: Any = Field(exclude=True, repr=False)
    pipeline: Any = Field(None, exclude=True, repr=False)
    max_instances_cap: int = Field(50, ge=1)

    @field_validator("pipeline")
    @classmethod
    def _check_pipeline(cls, value: Any) -> Any:  # optional here: only its limits and image cache are used
        return value

    @field_validator("concept")
    @classmethod
    def _check_concept(cls, value: Any) -> Any:
        if not callable(getattr(value, "find", None)):
            raise ValueError(f"concept must be a concept segmenter (with find), got {type(value).__name__}")
        return value

    @model_validator(mode="after")
    def _describe_image_forms(self) -> SegmentPhraseTool:
        if self.args_schema in (SegmentPhraseArgs, SegmentPhraseArgsWithUrls):
            self.args_schema = SegmentPhraseArgsWithUrls if self.allow_urls else SegmentPhraseArgs
        return self

    def _image(self, image: Any, policy: ImagePolicy) -> Any:
        if isinstance(image, str) and _RESULT_ID.fullmatch(image.strip()):
            return self._result(image.strip())
        if not isinstance(image, str) or not image.strip():
            raise ImageSourceRejected(f"`image` is empty. {_image_hint(policy)} Or pass an earlier result_id.")
        return load_image_source(image, policy, max_pixels=getattr(self.pipeline, "max_pixels", DEFAULT_MAX_PIXELS),
                                 cache=getattr(self.pipeline, "image_cache", None))

    def _run(self, image: str, phrase: str, threshold: float = 0.5, max_instances: int | None = None,
             run_manager: Any = None) -> tuple[Any, SegmentationResult]:
        from segzero_tool.phrase import check_max_instances, check_phrase, check_threshold, segment_phrase

        policy = self.image_policy
        with _errors(policy):
            text = check_phrase(phrase)  # cheap checks before the image is read
            keep_above = check_threshold(threshold)
            cap = min(check_max_instances(max_instances) or self.max_instances_cap, self.max_instances_cap)
            source = self._image(image, policy)
            result = segment_phrase(source, text, segmenter=self.concept, threshold=keep_above, max_instances=cap,
                                    max_pixels=getattr(self.pipeline, "max_pixels", DEFAULT_MAX_PIXELS))
        return self._respond(result, result.parse_issues)


def make_phrase_tool(concept: Any, *, handles: Any = None, pipeline: Any = None, **kwargs: Any) -> SegmentPhraseTool:
    """``segment_phrase`` over ``concept``; pass the steering tools' ``handles`` to share their results.

    Args:
        concept: the concept model.
        handles: the store of live results (default: a new one).
        pipeline: optional pipeline (its ``max_pixels`` and image cache).
        **kwargs: tool fields (``include_image``, ``overlay_max_side``, ``max_instances_cap``, and the image
            policy ``allowed_roots``, ``allow_urls``, ...).
    """
    return SegmentPhraseTool(concept=concept, pipeline=pipeline,
                             handles=new_result_store() if handles is None else handles, **kwargs)


__all__ = ["DESCRIPTION", "SegmentPhraseArgs", "SegmentPhraseTool", "make_phrase_tool"]
