"""``segment_by_reasoning`` as a LangChain tool.

>>> from segzero_tool import SegZeroPipeline
>>> from segzero_tool.agents import SegmentByReasoningTool
>>> tool = SegmentByReasoningTool.from_pipeline(SegZeroPipeline.from_pretrained(preset="light"))
>>> msg = tool.invoke({"type": "tool_call", "id": "1", "name": tool.name,
...                    "args": {"image": "examples/coffee.png", "query": "what can I drink?"}})
>>> msg.content        # the summary the model reads
>>> msg.artifact       # the SegmentationResult, for code

The tool uses ``response_format="content_and_artifact"``: the content is a compact text summary
(plus, with ``include_image=True``, the overlay picture as a standard image content block for
multimodal chat models); the artifact is the :class:`~segzero_tool.result.SegmentationResult`.
Images go through the core intake (:mod:`segzero_tool.sources`) under one
:class:`~segzero_tool.sources.ImagePolicy` built from the tool's fields: local paths must lie inside
``allowed_roots`` (default: the working directory when the tool is built), ``data:`` URLs and base64
are size-checked, and http(s) URLs are fetched only with ``allow_urls=True`` (public addresses only
unless ``allow_private_urls=True``); the tool description and the ``image`` argument's description
say which forms the tool takes.

Bad input (missing or corrupt image, a path outside ``allowed_roots``, a bad data: URL, an empty
query) raises :class:`~langchain_core.tools.ToolException` with a message that tells the model what
to do; with ``handle_tool_error=True`` (the default) it comes back as a ``ToolMessage`` with
``status="error"``. Any other exception is a bug and propagates.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from langchain_core.messages.content import create_image_block
from langchain_core.tools import BaseTool, ToolException
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from segzero_tool.cancel import CancelToken, OperationCancelled, cancellation
from segzero_tool.errors import (
    ImageLoadError,
    ImageSourceRejected,
    ImageTooLargeError,
    QueryError,
    SegZeroError,
)
from segzero_tool.images import DEFAULT_MAX_PIXELS, LoadedImage
from segzero_tool.progress import Progress, progress_reporting
from segzero_tool.prompts import DEFAULT_MAX_QUERY_CHARS, validate_query
from segzero_tool.result import SegmentationResult
from segzero_tool.settings import PipelineSettings
from segzero_tool.sources import ImagePolicy, decode_base64_image, load_image_source
from segzero_tool.summary import TEXT_BUDGET, Links, summarize

if TYPE_CHECKING:
    from langchain_core.callbacks import AsyncCallbackManagerForToolRun, CallbackManagerForToolRun

TOOL_NAME = "segment_by_reasoning"

_IMAGE_FORMS = {
    False: "a local file path, a data: URL or base64; http(s) URLs are not downloaded",
    True: "a local file path, a public http(s) URL, a data: URL or base64",
}


def tool_description(*, allow_urls: bool = False) -> str:
    """The model-facing description; the accepted image forms follow ``allow_urls``."""
    return (
        "Find and segment the objects in an image that a natural-language request refers to, including "
        "requests that need reasoning rather than a name (\"what can I drink from?\", \"something to cut "
        "paper with\", \"the mug nearest the sink\"). A vision-language model reasons about the image, then "
        "SAM2 draws a pixel mask for each object. Use it to locate, count or measure things, or to get "
        f"targets to point at or pick up. Pass `image` ({_IMAGE_FORMS[allow_urls]}) and `query`. It returns "
        "the number of objects and, per object, its index, "
        "box [x1, y1, x2, y2] (inclusive), point(s) (x, y), mask score (0-1), mask area in pixels and label "
        "if any, plus the model's reasoning. All coordinates are pixels of the original image, origin at "
        "the top-left corner, x to the right, y down. When nothing is found it says why; then rephrase the "
        "query more concretely or check that the object is visible."
    )


DESCRIPTION = tool_description(allow_urls=False)
DESCRIPTION_WITH_URLS = tool_description(allow_urls=True)

_IMAGE_HINT = ("Pass `image` as the path of a readable image file{roots}, {url}a data: URL "
               "(data:image/png;base64,...) or the base64 of an image file{no_urls}.")


class SegmentArgs(BaseModel):
    """Arguments of ``segment_by_reasoning`` (the descriptions are written for the model)."""

    image: str = Field(description=(
        "The image to look at: a local file path (e.g. 'photos/kitchen.jpg'), a data: URL "
        "('data:image/png;base64,...') or the raw base64 of an image file. http(s) URLs are NOT fetched "
        "by this tool: download the image first or pass it as base64."
    ))
    query: str = Field(description=(
        "What to find, in plain words: a name ('the red mug'), a description ('the leftmost chair') or a "
        "question that needs reasoning ('what can I drink from?'). One request per call."
    ))
    max_objects: int | None = Field(None, ge=1, le=100, description=(
        "Return at most this many objects (leave unset for the default limit). Use 1 when you need exactly "
        "one target."
    ))
    prompt_format: Literal["visionreasoner", "segzero", "grounding", "qwen3vl"] | None = Field(None, description=(
        "Advanced; leave unset. Overrides the answer grammar the reasoning model was trained on."
    ))


class SegmentArgsWithUrls(SegmentArgs):
    """:class:`SegmentArgs` for a tool that fetches URLs (``allow_urls=True``)."""

    image: str = Field(description=(
        "The image to look at: a local file path (e.g. 'photos/kitchen.jpg'), a public http(s) URL of an "
        "image file, a data: URL ('data:image/png;base64,...') or the raw base64 of an image file."
    ))


# --- the summary the model reads -------------------------------------------------------------------

#: How a LangChain user raises the token budget / picks the prompt format (named in the summary).
BUDGET_HINT = "raise max_new_tokens of the pipeline (SegZeroPipeline.from_pretrained(..., max_new_tokens=N))"
FORMAT_HINT = "check the pipeline's reasoner and prompt_format, or pass prompt_format to the tool"


def summarize_result(result: SegmentationResult, *, reasoning_chars: int = 600, max_chars: int = TEXT_BUDGET,
                     result_id: str | None = None) -> str:
    """The compact text a chat model reads (:func:`segzero_tool.summary.summarize`, shared with the MCP
    server): objects with boxes, points, scores and areas, the reasoning, and, when nothing was found,
    the parse status, the issues and what could help; at most ``max_chars`` (8,000) characters.
    ``result_id``: the result's id in a store of live results, named in the text."""
    return summarize(result, max_chars=max_chars, reasoning_chars=reasoning_chars, budget_hint=BUDGET_HINT,
                     format_hint=FORMAT_HINT, links=Links(result_id=result_id) if result_id else None)


def _image_hint(policy: ImagePolicy) -> str:
    """What the model may pass as ``image`` under ``policy``."""
    where = f" inside {', '.join(map(str, policy.allowed_roots))}" if policy.allowed_roots else ""
    return _IMAGE_HINT.format(roots=where, url="a public http(s) URL, " if policy.allow_urls else "",
                              no_urls="" if policy.allow_urls else "; this tool does not download URLs")


@contextlib.contextmanager
def _tool_errors(policy: ImagePolicy) -> Iterator[None]:
    """Turn this package's input errors into ``ToolException`` with what to do next; bugs propagate."""
    try:
        yield
    except OperationCancelled:
        raise
    except SegZeroError as exc:
        text = str(exc).rstrip(".")
        if isinstance(exc, ImageSourceRejected):  # the intake's messages already say what to do
            raise ToolException(f"{text}.") from exc
        if isinstance(exc, ImageTooLargeError):
            hint = "Send a smaller (downscaled) image."
        elif isinstance(exc, ImageLoadError):
            hint = _image_hint(policy)
        elif isinstance(exc, QueryError):
            hint = "Call the tool again with a short, non-empty `query` that says what to segment."
        else:
            hint = "Fix the arguments and call the tool again."
        raise ToolException(f"{text}. {hint}") from exc


def _validation_message(error: ValidationError) -> str:
    problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in error.errors())
    return f"Invalid arguments for {TOOL_NAME}: {problems}. Fix them and call the tool again."


# --- the tool --------------------------------------------------------------------------------------


def overlay_image_block(result: SegmentationResult, max_side: int, fmt: str) -> dict[str, Any]:
    """The result's overlay (longest side ``max_side``) as a LangChain standard image content block, PNG or
    JPEG (quality 85)."""
    buf = io.BytesIO()
    picture = result.overlay(max_side=max_side)
    if fmt == "png":
        picture.save(buf, format="PNG", optimize=True)
    else:
        picture.save(buf, format="JPEG", quality=85)
    return create_image_block(base64=base64.b64encode(buf.getvalue()).decode("ascii"), mime_type=f"image/{fmt}")


class ImageIntakeFields(BaseModel):
    """The image intake fields shared by the tools that take an ``image`` (local paths under
    ``allowed_roots``, optional URLs, a size cap) and the core policy they describe."""

    allowed_roots: tuple[Path, ...] | None = Field(default_factory=lambda: (Path(os.path.realpath(Path.cwd())),))
    allow_urls: bool = False
    allow_private_urls: bool = False
    url_timeout_s: float = Field(15.0, gt=0, allow_inf_nan=False)
    max_image_bytes: int = Field(25_000_000, gt=0)

    @field_validator("allowed_roots", mode="before")
    @classmethod
    def _one_root(cls, value: Any) -> Any:
        return (value,) if isinstance(value, (str, os.PathLike)) else value

    @field_validator("allowed_roots")
    @classmethod
    def _resolve_roots(cls, value: tuple[Path, ...] | None) -> tuple[Path, ...]:
        if value is None:  # the working directory, like the MCP server
            value = (Path.cwd(),)
        return tuple(Path(os.path.realpath(Path(r).expanduser())) for r in value)

    @property
    def image_policy(self) -> ImagePolicy:
        """The core intake policy these fields describe (see :mod:`segzero_tool.sources`)."""
        return ImagePolicy(
            allowed_roots=self.allowed_roots or (), allow_urls=self.allow_urls,
            allow_private_urls=self.allow_private_urls, url_timeout_s=self.url_timeout_s,
            max_download_bytes=self.max_image_bytes, max_base64_bytes=self.max_image_bytes,
            max_file_bytes=self.max_image_bytes, reader="this tool",
            roots_hint="ask the user to add the folder to the tool's allowed_roots",
            urls_hint="ask the user to build the tool with allow_urls=True",
            private_urls_hint="ask the user to build the tool with allow_private_urls=True",
        )


class SegmentByReasoningTool(ImageIntakeFields, BaseTool):
    """Reasoning segmentation as a LangChain tool, backed by one (shared) :class:`SegZeroPipeline`.

    Attributes:
        pipeline: a loaded :class:`~segzero_tool.pipeline.SegZeroPipeline` (not serialised); one
            pipeline can serve many tools and agents.
        allowed_roots: local paths must resolve (after ``~``, ``..`` and symlinks) inside one of these
            folders; by default (or ``None``) the working directory when the tool is built. ``()``
            refuses every local path; ``("/",)`` allows any readable file.
        allow_urls: also fetch http(s) URLs (off by default); the description and the ``image``
            argument's description then say so. Only public addresses unless ``allow_private_urls``.
        allow_private_urls: also fetch from loopback, private, link-local and reserved addresses.
        url_timeout_s: a whole download (lookup, redirects, body) must finish within this time.
        include_image: also put the overlay picture (masks, boxes, points) into the content as a
            standard image block, for multimodal chat models.
        overlay_max_side: longest side of that picture in pixels.
        overlay_format: ``jpeg`` (smaller) or ``png``.
        max_image_bytes: largest image accepted, as a file, as decoded base64 or as a download.
        reasoning_chars: the reasoning text in the content is cut to this many characters.
        progress_interval_s: with ``ainvoke``, seconds between ``segzero_progress`` custom events (see
            ``astream_events``): stage, tokens generated against the budget when countable, elapsed seconds.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str = TOOL_NAME
    description: str = DESCRIPTION
    args_schema: type[BaseModel] = SegmentArgs
    response_format: Literal["content", "content_and_artifact"] = "content_and_artifact"
    handle_tool_error: bool | str | Callable[..., Any] | None = True
    handle_validation_error: bool | str | Callable[..., Any] | None = _validation_message

    pipeline: Any = Field(exclude=True, repr=False)
    include_image: bool = False
    overlay_max_side: int = Field(768, ge=16)
    overlay_format: Literal["jpeg", "png"] = "jpeg"
    reasoning_chars: int = Field(600, ge=0)
    progress_interval_s: float = Field(2.0, gt=0, le=60)
    #: a store of live results (:class:`~segzero_tool.handles.ResultHandles`) shared with the steering tools
    #: (:func:`segzero_tool.agents.make_steering_tools`): each result is stored and its ``result_id`` is in the
    #: text, so ``refine_object`` / ``inspect_result`` / ``select_objects`` can take it. ``None``: not stored.
    handles: Any = Field(None, exclude=True, repr=False)

    @field_validator("pipeline")
    @classmethod
    def _check_pipeline(cls, value: Any) -> Any:
        if not (callable(getattr(value, "segment", None)) and callable(getattr(value, "asegment", None))):
            raise ValueError(f"pipeline must be a SegZeroPipeline (with segment/asegment), got {type(value).__name__}")
        return value

    @model_validator(mode="after")
    def _describe_image_forms(self) -> SegmentByReasoningTool:
        """The description and the ``image`` argument match ``allow_urls`` (unless set by the caller)."""
        if self.description in (DESCRIPTION, DESCRIPTION_WITH_URLS):
            self.description = DESCRIPTION_WITH_URLS if self.allow_urls else DESCRIPTION
        if self.args_schema in (SegmentArgs, SegmentArgsWithUrls):
            self.args_schema = SegmentArgsWithUrls if self.allow_urls else SegmentArgs
        return self

    # --- construction ----------------------------------------------------------------------

    @classmethod
    def from_pipeline(cls, pipeline: Any, **kwargs: Any) -> SegmentByReasoningTool:
        """A tool over an already loaded pipeline; ``kwargs`` set the tool's fields."""
        return cls(pipeline=pipeline, **kwargs)

    @classmethod
    def from_settings(cls, settings: PipelineSettings | Mapping[str, Any] | None = None,
                      **kwargs: Any) -> SegmentByReasoningTool:
        """Load the models that ``settings`` name (backend names, model ids or folders) and wrap them.

        Args:
            settings: a :class:`PipelineSettings`; a mapping of its fields (``{"preset": "light",
                "device": "cpu"}``), applied over the defaults; or ``None`` for the defaults updated
                by the ``SEGZERO_*`` environment variables.
            **kwargs: the tool's fields (``allowed_roots``, ``include_image``, ...).
        """
        if settings is None:
            resolved = PipelineSettings.resolve()
        elif isinstance(settings, PipelineSettings):
            resolved = settings
        elif isinstance(settings, Mapping):
            resolved = PipelineSettings().merged(settings, "tool settings")
        else:
            raise TypeError(f"settings must be PipelineSettings, a mapping or None, got {type(settings).__name__}")
        return cls.from_pipeline(resolved.build_pipeline(), **kwargs)

    # --- shared steps (sync and async) -----------------------------------------------------

    def _load(self, image: str, query: str, policy: ImagePolicy) -> LoadedImage:
        """Check the query, then resolve, bound and decode the image through the core intake
        (blocking: a thread in async)."""
        validate_query(query, getattr(self.pipeline, "max_query_chars", DEFAULT_MAX_QUERY_CHARS))
        if not isinstance(image, str) or not image.strip():
            raise ImageSourceRejected(f"`image` is empty. {_image_hint(policy)}")
        max_pixels = getattr(self.pipeline, "max_pixels", DEFAULT_MAX_PIXELS)
        return load_image_source(image, policy, max_pixels=max_pixels, cache=getattr(self.pipeline, "image_cache", None))

    def _respond(self, result: SegmentationResult) -> tuple[str | list[Any], SegmentationResult]:
        """``(content, artifact)``: the summary (plus the overlay as an image block) and the result."""
        rid = self.handles.put(result) if self.handles is not None else None
        text = summarize_result(result, reasoning_chars=self.reasoning_chars, result_id=rid)
        if not self.include_image:
            return text, result
        return [{"type": "text", "text": text}, overlay_image_block(result, self.overlay_max_side,
                                                                    self.overlay_format)], result

    def _options(self, max_objects: int | None, prompt_format: str | None) -> dict[str, Any]:
        """Per-call pipeline options; ``max_objects`` never exceeds the pipeline's own limit."""
        options: dict[str, Any] = {}
        if max_objects is not None:
            options["max_objects"] = min(max_objects, getattr(self.pipeline, "max_objects", max_objects))
        if prompt_format is not None:
            options["prompt_format"] = prompt_format
        return options

    # --- BaseTool ---------------------------------------------------------------------------

    def _run(self, image: str, query: str, max_objects: int | None = None, prompt_format: str | None = None,
             run_manager: CallbackManagerForToolRun | None = None) -> tuple[str | list[Any], SegmentationResult]:
        policy = self.image_policy
        with _tool_errors(policy):
            loaded = self._load(image, query, policy)
            result = self.pipeline.segment(loaded, query, **self._options(max_objects, prompt_format))
        return self._respond(result)

    async def _arun(self, image: str, query: str, max_objects: int | None = None, prompt_format: str | None = None,
                    run_manager: AsyncCallbackManagerForToolRun | None = None,
                    ) -> tuple[str | list[Any], SegmentationResult]:
        token = CancelToken()  # stops the worker threads when this call is cancelled
        policy = self.image_policy
        ticker = _ProgressEvents(self.progress_interval_s)
        timer = asyncio.ensure_future(ticker.run())
        try:
            with _tool_errors(policy), cancellation(token), progress_reporting(ticker.sink, tqdm_bars=False):
                ticker.stage = "loading image"
                loaded = await asyncio.to_thread(self._load, image, query, policy)
                ticker.stage = "reasoning"
                result = await self.pipeline.asegment(loaded, query, **self._options(max_objects, prompt_format))
        except asyncio.CancelledError:
            token.cancel("the tool call was cancelled")
            raise
        finally:
            timer.cancel()
        if self.include_image:
            return await asyncio.to_thread(self._respond, result)
        return self._respond(result)


class _ProgressEvents:
    """Progress of one async call as LangChain custom events (``astream_events`` shows them as
    ``on_custom_event`` named ``segzero_progress``): every ``interval`` seconds, the stage, the latest
    step (tokens generated against the budget with the transformers reasoner) and elapsed seconds."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.stage = "starting"
        self.latest: Progress | None = None
        self.started = time.monotonic()

    def sink(self, event: Progress) -> None:  # from worker threads: only records
        self.latest = event

    async def run(self) -> None:
        from langchain_core.callbacks import adispatch_custom_event

        while True:
            await asyncio.sleep(self.interval)
            ev = self.latest
            data = {"stage": ev.stage if ev is not None else self.stage, "message": ev.message if ev else self.stage,
                    "done": ev.done if ev else None, "total": ev.total if ev else None,
                    "elapsed_s": round(time.monotonic() - self.started, 1)}
            try:
                await adispatch_custom_event("segzero_progress", data)
            except Exception:  # no parent run (called outside a runnable): nobody to tell
                return


__all__ = ["SegmentArgs", "SegmentArgsWithUrls", "SegmentByReasoningTool", "decode_base64_image", "summarize_result",
           "tool_description", "DESCRIPTION", "DESCRIPTION_WITH_URLS"]
