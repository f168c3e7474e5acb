"""The steering tools as LangChain tools: the calling model reasons, our segmenter draws the masks.

* ``segment_by_prompts(image, objects, query?)``: the caller's boxes / clicks -> a new result;
* ``refine_object(result_id, index, add_points?, remove_points?, box?)``: a new result with one object
  recomputed with extra clicks (its previous low-resolution logits fed back, as SAM2's interactive
  refinement does); the old result is left as it was;
* ``inspect_result(result_id, indices?, crops?)``: the numbered picture a model checks masks on (a text
  block and an image block) and its text;
* ``select_objects(result_id, indices)``: a new result keeping only those objects.

All of them (and ``segment_by_reasoning`` built by :func:`make_steering_tools`) share one store of live
results (:class:`~segzero_tool.handles.ResultHandles`): every result gets a ``result_id`` in its text,
and any tool takes any other tool's ids. Every tool uses ``response_format="content_and_artifact"``: the
content is the bounded summary (:func:`segzero_tool.summary.summarize`) plus, for ``inspect_result``
(and with ``include_image=True`` for the others: the overlay), a standard image content block; the
artifact is the :class:`~segzero_tool.result.SegmentationResult` (``inspect_result``: the inspected one).

Bad input (a bad box or point, an unknown or expired ``result_id``, an index out of range, an image
outside ``allowed_roots``) raises :class:`~langchain_core.tools.ToolException` with what to send
instead; with ``handle_tool_error=True`` (the default) the model gets it as a ``ToolMessage`` with
``status="error"``, never a traceback.

>>> from segzero_tool import SegZeroPipeline
>>> from segzero_tool.agents import make_steering_tools
>>> tools = make_steering_tools(SegZeroPipeline.from_pretrained("none", "sam2.1-hiera-tiny"))
>>> [t.name for t in tools]
['segment_by_prompts', 'refine_object', 'inspect_result', 'select_objects']
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
from collections.abc import Callable, Iterator
from typing import Any, Literal

from langchain_core.messages.content import create_image_block
from langchain_core.tools import BaseTool, ToolException
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from segzero_tool.cancel import OperationCancelled
from segzero_tool.errors import ImageSourceRejected, SegZeroError
from segzero_tool.handles import ResultHandles, result_nbytes
from segzero_tool.images import DEFAULT_MAX_PIXELS
from segzero_tool.result import SegmentationResult
from segzero_tool.sources import ImagePolicy, load_image_source
from segzero_tool.summary import TEXT_BUDGET, Links, summarize

from .tool import (
    BUDGET_HINT,
    FORMAT_HINT,
    ImageIntakeFields,
    SegmentByReasoningTool,
    _image_hint,
    _tool_errors,
    overlay_image_block,
)

#: Default store of live results: how many, for how long, and about how many bytes.
DEFAULT_MAX_RESULTS = 64
DEFAULT_RESULT_TTL_S = 3600.0
DEFAULT_RESULT_BYTES = 2_000_000_000
#: What a caller can do about a stale or unknown ``result_id`` (the store's hint).
HANDLE_HINT = "call segment_by_prompts (or segment_by_reasoning) again with the image to get a new result_id"
_RESULT_ID = re.compile(r"r-[0-9a-f]{16}")


def new_result_store(max_count: int = DEFAULT_MAX_RESULTS, ttl_s: float | None = DEFAULT_RESULT_TTL_S,
                     max_bytes: int | None = DEFAULT_RESULT_BYTES) -> ResultHandles[SegmentationResult]:
    """A store of live results for the tools (LRU by count and bytes, with a lifetime)."""
    return ResultHandles(max_count, ttl_s, max_bytes=max_bytes, sizer=result_nbytes, hint=HANDLE_HINT)


# --- argument schemas (descriptions written for the model) -------------------------------------------

_XY = "[x, y] in original-image pixels (origin top-left, x right, y down)"


class PromptObjectArg(BaseModel):
    """One object to segment: a box, positive clicks, or both (negative clicks only with one of them)."""

    model_config = ConfigDict(extra="allow")

    box: list[Any] | None = Field(None, description="[x1, y1, x2, y2], inclusive corners, original-image pixels")
    points: list[Any] | None = Field(None, description=f"clicks on the object, each {_XY}")
    negative_points: list[Any] | None = Field(None, description=f"clicks on what is NOT the object, each {_XY}")
    label: str | None = Field(None, description="a name for the object, kept in the result")


def _json_list(value: Any) -> Any:
    """Models sometimes send a list as a JSON string: read it."""
    if isinstance(value, str) and value.strip().startswith(("[", "{")):
        with contextlib.suppress(ValueError):
            return json.loads(value)
    return value


class SegmentByPromptsArgs(BaseModel):
    image: str = Field(description=(
        "The image: a local file path, a data: URL ('data:image/png;base64,...'), the raw base64 of an image "
        "file, or the result_id of an earlier result (its image is reused, with its cached embedding)."))
    objects: list[PromptObjectArg] = Field(description=(
        "The objects to segment, one mask each: [{\"box\": [x1, y1, x2, y2]}, {\"points\": [[x, y]]}, "
        "{\"box\": [...], \"points\": [[x, y]], \"negative_points\": [[x, y]], \"label\": \"cup\"}]. "
        "A box is the most reliable prompt; add clicks to pick a part or a thing among overlapping ones."))
    query: str | None = Field(None, description="Optional: what the objects are meant to answer, kept in the result.")

    @field_validator("objects", mode="before")
    @classmethod
    def _read_json(cls, value: Any) -> Any:
        return _json_list(value)


class SegmentByPromptsArgsWithUrls(SegmentByPromptsArgs):
    image: str = Field(description=(
        "The image: a local file path, a public http(s) URL, a data: URL, the raw base64 of an image file, or "
        "the result_id of an earlier result (its image is reused, with its cached embedding)."))


class RefineObjectArgs(BaseModel):
    result_id: str = Field(description="The result_id of the result holding the object (from an earlier call).")
    index: int = Field(description="The object's number (#i) in that result.")
    add_points: list[list[float]] | None = Field(None, description=(
        f"Clicks on parts the mask should include, each {_XY}."))
    remove_points: list[list[float]] | None = Field(None, description=(
        f"Clicks on parts the mask should NOT include, each {_XY}."))
    box: list[float] | None = Field(None, description="A new box [x1, y1, x2, y2] (starts the mask over from it).")

    @field_validator("add_points", "remove_points", "box", mode="before")
    @classmethod
    def _read_json(cls, value: Any) -> Any:
        return _json_list(value)


class InspectResultArgs(BaseModel):
    result_id: str = Field(description="The result_id of the result to look at.")
    indices: list[int] | None = Field(None, description="Only these object numbers (default: all).")
    crops: bool = Field(True, description="Add one zoomed crop per object around its box (default true).")

    @field_validator("indices", mode="before")
    @classmethod
    def _read_json(cls, value: Any) -> Any:
        return _json_list(value)


class SelectObjectsArgs(BaseModel):
    result_id: str = Field(description="The result_id of the result to pick from.")
    indices: list[int] = Field(description="The object numbers to keep, in the order wanted (renumbered from 0).")

    @field_validator("indices", mode="before")
    @classmethod
    def _read_json(cls, value: Any) -> Any:
        return _json_list(value)


# --- descriptions ----------------------------------------------------------------------------------

_COORDS = ("All coordinates are pixels of the original image, origin top-left, x right, y down; boxes are "
           "[x1, y1, x2, y2] inclusive.")

DESCRIPTIONS = {
    "segment_by_prompts": (
        "Draw pixel masks (SAM2) for objects YOU locate: give the image and, per object, a box and/or clicks on "
        "it (and optionally clicks on what is not it). Use it when you can see where things are and want exact "
        "masks, areas or outlines. Returns a result_id, and per object its number, box, score and area; then "
        "check the masks with inspect_result, fix one with refine_object, and keep the right ones with "
        "select_objects. " + _COORDS),
    "refine_object": (
        "Fix one object's mask in an earlier result: add_points are clicks on parts the mask missed, "
        "remove_points clicks on parts it wrongly covers, box a new box. Returns a NEW result_id (the old "
        "result is unchanged); the other objects are kept. " + _COORDS),
    "inspect_result": (
        "Look at the masks of an earlier result: returns a picture with every object numbered in its own "
        "colour with its outline (and a zoomed crop per object), and a list of each number's box, score and "
        "area. Use it to check that each mask covers the right thing before answering."),
    "select_objects": (
        "Keep only some objects of an earlier result (by number, in the order given, renumbered from 0): the "
        "clean final result to report or hand on. Returns a NEW result_id."),
}


def _validation_message(name: str) -> Callable[[ValidationError], str]:
    def message(error: ValidationError) -> str:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in error.errors())
        return f"Invalid arguments for {name}: {problems}. Fix them and call the tool again."

    return message


@contextlib.contextmanager
def _errors(policy: ImagePolicy | None = None) -> Iterator[None]:
    """Package errors (and the picture's index check) as ``ToolException``; bugs propagate."""
    try:
        if policy is None:
            yield
        else:
            with _tool_errors(policy):
                yield
    except (ToolException, OperationCancelled):
        raise
    except SegZeroError as exc:
        text = str(exc).rstrip(".")
        raise ToolException(f"{text}.") from exc


# --- the tools -------------------------------------------------------------------------------------


class _SteeringTool(BaseTool):
    """What the four tools share: the pipeline, the store of live results, the response."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    response_format: Literal["content", "content_and_artifact"] = "content_and_artifact"
    handle_tool_error: bool | str | Callable[..., Any] | None = True

    pipeline: Any = Field(exclude=True, repr=False)
    handles: Any = Field(default_factory=new_result_store, exclude=True, repr=False)
    include_image: bool = False
    overlay_max_side: int = Field(768, ge=16)
    overlay_format: Literal["jpeg", "png"] = "jpeg"
    reasoning_chars: int = Field(600, ge=0)

    @field_validator("pipeline")
    @classmethod
    def _check_pipeline(cls, value: Any) -> Any:
        if not all(callable(getattr(value, m, None)) for m in ("segment_by_prompts", "refine_object",
                                                               "select_objects")):
            raise ValueError("pipeline must be a SegZeroPipeline (with segment_by_prompts / refine_object / "
                             f"select_objects), got {type(value).__name__}")
        return value

    @field_validator("handles")
    @classmethod
    def _check_handles(cls, value: Any) -> Any:
        if not (callable(getattr(value, "put", None)) and callable(getattr(value, "get", None))):
            raise ValueError(f"handles must be a ResultHandles store, got {type(value).__name__}")
        return value

    def _result(self, result_id: Any) -> SegmentationResult:
        return self.handles.get(result_id)

    def _respond(self, result: SegmentationResult, notes: tuple[str, ...] = ()) -> tuple[Any, SegmentationResult]:
        rid = self.handles.put(result)
        text = summarize(result, links=Links(result_id=rid), reasoning_chars=self.reasoning_chars,
                         max_chars=TEXT_BUDGET, budget_hint=BUDGET_HINT, format_hint=FORMAT_HINT, notes=notes)
        if not self.include_image:
            return text, result
        return [{"type": "text", "text": text}, overlay_image_block(result, self.overlay_max_side,
                                                                    self.overlay_format)], result


class SegmentByPromptsTool(ImageIntakeFields, _SteeringTool):
    """``segment_by_prompts``: the caller's boxes and clicks -> masks (no reasoner needed).

    Attributes (beyond the shared ones: ``pipeline``, ``handles``, ``include_image``, ...):
        allowed_roots / allow_urls / allow_private_urls / url_timeout_s / max_image_bytes: the image
            intake policy, as :class:`~segzero_tool.agents.tool.SegmentByReasoningTool`'s.
    """

    name: str = "segment_by_prompts"
    description: str = DESCRIPTIONS["segment_by_prompts"]
    args_schema: type[BaseModel] = SegmentByPromptsArgs
    handle_validation_error: bool | str | Callable[..., Any] | None = _validation_message("segment_by_prompts")

    @model_validator(mode="after")
    def _describe_image_forms(self) -> SegmentByPromptsTool:
        if self.args_schema in (SegmentByPromptsArgs, SegmentByPromptsArgsWithUrls):
            self.args_schema = SegmentByPromptsArgsWithUrls if self.allow_urls else SegmentByPromptsArgs
        return self

    def _image(self, image: Any, policy: ImagePolicy) -> Any:
        if isinstance(image, str) and _RESULT_ID.fullmatch(image.strip()):
            return self._result(image.strip())  # the result's image (and the segmenter's cached embedding)
        if not isinstance(image, str) or not image.strip():
            raise ImageSourceRejected(f"`image` is empty. {_image_hint(policy)} Or pass an earlier result_id.")
        return load_image_source(image, policy, max_pixels=getattr(self.pipeline, "max_pixels", DEFAULT_MAX_PIXELS),
                                 cache=getattr(self.pipeline, "image_cache", None))

    def _run(self, image: str, objects: list[Any], query: str | None = None,
             run_manager: Any = None) -> tuple[Any, SegmentationResult]:
        policy = self.image_policy
        plain = [o.model_dump(exclude_none=True) if isinstance(o, BaseModel) else o for o in objects]
        with _errors(policy):
            source = self._image(image, policy)
            result = self.pipeline.segment_by_prompts(source, plain, query=query or "")
        return self._respond(result)


class RefineObjectTool(_SteeringTool):
    """``refine_object``: one object recomputed with extra clicks or a new box, as a new result."""

    name: str = "refine_object"
    description: str = DESCRIPTIONS["refine_object"]
    args_schema: type[BaseModel] = RefineObjectArgs
    handle_validation_error: bool | str | Callable[..., Any] | None = _validation_message("refine_object")

    def _run(self, result_id: str, index: int, add_points: list[list[float]] | None = None,
             remove_points: list[list[float]] | None = None, box: list[float] | None = None,
             run_manager: Any = None) -> tuple[Any, SegmentationResult]:
        with _errors():
            result = self._result(result_id)
            refined = self.pipeline.refine_object(result, index, add_points=add_points or (),
                                                  remove_points=remove_points or (), box=box)
        return self._respond(refined, (f"Object #{index} was refined; the earlier result {result_id} is unchanged.",))


class SelectObjectsTool(_SteeringTool):
    """``select_objects``: a new result keeping only the given objects."""

    name: str = "select_objects"
    description: str = DESCRIPTIONS["select_objects"]
    args_schema: type[BaseModel] = SelectObjectsArgs
    handle_validation_error: bool | str | Callable[..., Any] | None = _validation_message("select_objects")

    def _run(self, result_id: str, indices: list[int], run_manager: Any = None) -> tuple[Any, SegmentationResult]:
        with _errors():
            result = self._result(result_id)
            kept = self.pipeline.select_objects(result, indices)
        shown = ", ".join(f"#{i}" for i in indices[:40]) + (" ..." if len(indices) > 40 else "")
        return self._respond(kept, (f"Kept {shown or 'no object'} of {result_id}, renumbered from #0.",))


class InspectResultTool(_SteeringTool):
    """``inspect_result``: the numbered inspection picture (an image block) and its text.

    Attributes:
        max_side: the picture's longest side.
        max_bytes: the picture's largest encoded size (PNG, else JPEG, else smaller).
    """

    name: str = "inspect_result"
    description: str = DESCRIPTIONS["inspect_result"]
    args_schema: type[BaseModel] = InspectResultArgs
    handle_validation_error: bool | str | Callable[..., Any] | None = _validation_message("inspect_result")
    max_side: int = Field(1024, ge=64)
    max_bytes: int = Field(1_500_000, ge=10_000)

    def _run(self, result_id: str, indices: list[int] | None = None, crops: bool = True,
             run_manager: Any = None) -> tuple[Any, SegmentationResult]:
        from segzero_tool.inspect_view import render_inspection

        with _errors():
            result = self._result(result_id)
            n = len(result.objects)
            if indices is not None:
                bad = [i for i in indices if not 0 <= i < n]
                if bad:
                    raise ToolException(
                        f"indices {bad[:10]} out of range: result {result_id} has {n} object(s)"
                        + (f", numbered 0 to {n - 1}" if n else "") + "; send numbers in that range, or no indices "
                        "for all")
            inspection = render_inspection(result, indices=indices, crops=crops, max_side=self.max_side,
                                           max_bytes=self.max_bytes)
        text = f"result_id {result_id}. " + inspection.text
        block = create_image_block(base64=base64.b64encode(inspection.data).decode("ascii"),
                                   mime_type=inspection.mime_type)
        return [{"type": "text", "text": text}, block], result


def make_steering_tools(pipeline: Any, *, handles: ResultHandles[SegmentationResult] | None = None,
                        include_reasoning: bool | None = None, reasoning_tool: SegmentByReasoningTool | None = None,
                        **kwargs: Any) -> list[BaseTool]:
    """The four steering tools over ``pipeline``, sharing one store of live results.

    Args:
        pipeline: a loaded :class:`~segzero_tool.pipeline.SegZeroPipeline` (one loaded with reasoner
            ``"none"`` is enough).
        handles: the store (default :func:`new_result_store`); pass one to share it with other tools.
        include_reasoning: also return ``segment_by_reasoning`` first, storing its results in the same
            store so that its ``result_id`` can be refined (default: when the pipeline has a reasoner).
        reasoning_tool: that tool, already built (its ``handles`` is set to the shared store).
        **kwargs: fields for every tool (``include_image``, ``overlay_max_side``, ...) and, for
            ``segment_by_prompts`` (and ``segment_by_reasoning``), the image policy (``allowed_roots``,
            ``allow_urls``, ...).

    Returns:
        ``[segment_by_reasoning?, segment_by_prompts, refine_object, inspect_result, select_objects]``.
    """
    store = new_result_store() if handles is None else handles
    policy_keys = {"allowed_roots", "allow_urls", "allow_private_urls", "url_timeout_s", "max_image_bytes"}
    shared = {k: v for k, v in kwargs.items() if k not in policy_keys}
    policy = {k: v for k, v in kwargs.items() if k in policy_keys}
    inspect_keys = {"max_side", "max_bytes"}
    common = {k: v for k, v in shared.items() if k not in inspect_keys}
    tools: list[BaseTool] = []
    if include_reasoning is None:
        include_reasoning = reasoning_tool is not None or getattr(pipeline, "reasoner", None) is not None
    if include_reasoning:
        if reasoning_tool is None:
            reasoning_tool = SegmentByReasoningTool(pipeline=pipeline, handles=store, **common, **policy)
        else:
            reasoning_tool.handles = store
        tools.append(reasoning_tool)
    tools += [
        SegmentByPromptsTool(pipeline=pipeline, handles=store, **common, **policy),
        RefineObjectTool(pipeline=pipeline, handles=store, **common),
        InspectResultTool(pipeline=pipeline, handles=store, **shared),
        SelectObjectsTool(pipeline=pipeline, handles=store, **common),
    ]
    return tools


__all__ = ["DESCRIPTIONS", "HANDLE_HINT", "InspectResultTool", "RefineObjectTool", "SegmentByPromptsTool",
           "SelectObjectsTool", "make_steering_tools", "new_result_store"]
