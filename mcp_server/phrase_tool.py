"""The MCP tool ``segment_phrase``: every instance of a short noun phrase (SAM 3 concept segmentation),
a thin adapter over :func:`segzero_tool.phrase.segment_phrase`.

Served only when the server has a concept model: ``segzero-mcp --concept-model`` (``sam3``, i.e.
``facebook/sam3``), ``--concept-model HUB_ID|FOLDER``, or ``SEGZERO_MCP_CONCEPT_MODEL``; off by default
(``none``), because SAM 3's weights are gated on the hub and take another 3.4 GB of memory. The model
loads in the background like the others (:class:`~.loader.ModelLoader`: at start, or on the first call
with ``--lazy``); ``tools/list`` never waits for it, and a failed load (no access to the gated
repository, no network) is a tool error saying what to do, never a crash. Its results are live results
like the steering tools': ``inspect_result``, ``select_objects`` and ``refine_object`` take their ids.
"""

# No ``from __future__ import annotations``: the SDKs read the tool's annotations with get_type_hints.

import functools
import logging
from typing import Annotated, Any

from pydantic import Field

from segzero_tool.cancel import CancelToken
from segzero_tool.errors import PromptError, SegZeroError

from . import compat
from .calls import STAGES, CallProgress, ProgressFn, run_in_thread
from .compat import CallToolResult, Context
from .loader import ModelLoader, ModelLoadFailed, _cause
from .models import (
    BaseResultIdArg,
    IncludeOverlayArg,
    MaskEncodingArg,
    OptionalImageArg,
    SegmentationOutput,
)
from .results import Encoded
from .security import load_source

log = logging.getLogger("segzero_tool.mcp_server")

PHRASE_TOOL = "segment_phrase"
#: ``concept_model`` values that switch the tool off.
OFF = ("", "none", "off", "no", "false", "0")

PHRASE_DESCRIPTION = """Find EVERY instance of a short noun phrase in an image and get a box, a confidence score and a pixel-accurate mask for each (SAM 3 concept segmentation). Use it to propose candidates: name what you are looking for in a few words ("person", "red car", "coffee cup", "yellow school bus"), then check the instances with inspect_result, keep the right ones with select_objects (indices), or fix one with refine_object. Try another phrase or a lower threshold when nothing comes back.

phrase: a short noun phrase, not a question or a sentence (at most 200 characters; the model reads about 30 tokens). It finds objects by what they are and look like, not by reasoning ("what can I drink?" needs segment_by_reasoning or your own boxes with segment_by_prompts).

image: the image (local path inside the allowed folders, data: URL or base64, an http(s) URL when enabled, or a segzero:// resource URI), OR result_id of an earlier result to reuse its image. Send exactly one of them.

threshold (0 to 1, default 0.5): keep instances scoring above it; lower it (0.3) when expected objects are missing, raise it when there are false ones. max_instances: keep at most this many, the best first (default and upper limit: the server's object limit).

Returns a new result with a new result_id, in the same form as segment_by_reasoning (structured content, text summary, masks as RLE / polygons / resources, optional inline overlay); objects are sorted by score, best first, each with its box [x1, y1, x2, y2] (original-image pixels, corners inclusive), score and area; query is the phrase. When nothing scores above the threshold the result has no objects and parse_issues says the best score seen when known. Results stay usable by id for a limited time and count."""

PHRASE_INSTRUCTIONS = (" To find every instance of something by name, call segment_phrase(image, phrase) with a short "
                       "noun phrase ('person', 'red car'); check with inspect_result, keep with select_objects.")

PhraseArg = Annotated[str, Field(
    min_length=1, max_length=200,
    description="A short noun phrase naming what to find, e.g. 'person', 'red car', 'coffee cup', 'yellow school bus'.",
)]
ThresholdArg = Annotated[float, Field(
    ge=0.0, le=1.0,
    description="Keep instances scoring above this (0 to 1; default 0.5). Lower it when expected objects are missing.",
)]
MaxInstancesArg = Annotated[int | None, Field(
    ge=1, le=100,
    description="Keep at most this many instances, the best first (1 to 100). Default: the server's object limit "
                "(50); a larger value is capped at it.",
)]


def concept_enabled(name: Any) -> bool:
    """Whether a ``concept_model`` setting names a model (not ``none`` / ``off`` / empty)."""
    return isinstance(name, str) and name.strip().lower() not in OFF


class ConceptModel:
    """The server's concept model, loaded in the background.

    Args:
        settings: the server settings (``concept_model``; the pipeline's ``device`` and ``dtype``).
        segmenter: a ready concept segmenter (tests); by default ``settings.concept_model`` is loaded.
    """

    def __init__(self, settings: Any, segmenter: Any = None) -> None:
        self.settings = settings
        self.name = getattr(segmenter, "model_id", None) or str(getattr(settings, "concept_model", "sam3"))
        describe = f"concept model {self.name}"
        if segmenter is not None:
            self.loader = ModelLoader.ready_with(segmenter, describe)
        else:
            self.loader = ModelLoader(self._build, describe)

    def _build(self) -> Any:
        from segzero_tool.segmenters.concept import Sam3ConceptSegmenter

        p = self.settings.pipeline
        return Sam3ConceptSegmenter.from_pretrained(self.settings.concept_model, device=p.device, dtype=p.dtype,
                                                    progress=False)

    def start(self) -> bool:
        return self.loader.start()

    def close(self) -> None:
        model = self.loader.value
        if model is not None and hasattr(model, "close"):
            model.close()

    def status(self) -> dict[str, Any]:
        return {"model": self.name, **self.loader.status()}

    async def wait(self, calls: CallProgress) -> Any:
        """The loaded model; a load that fails is a :class:`ModelLoadFailed` naming the cause and the fix."""
        if self.loader.value is not None:
            return self.loader.value
        await calls.stage(2, f"loading the concept model ({self.name})")

        async def waiting(event: Any, elapsed: float) -> None:
            calls.latest = event

        try:
            return await self.loader.wait(waiting)
        except ModelLoadFailed:
            cause = _cause(self.loader.error)
            raise ModelLoadFailed(f"loading the concept model {self.name} failed: {cause}. The next call tries "
                                  "again; the server's log (stderr) has the details") from None


async def segment_phrase(svc: Any, phrase: Any, *, image: Any = None, result_id: Any = None, threshold: Any = 0.5,
                         max_instances: Any = None, mask_encoding: str = "rle", include_overlay: bool = False,
                         progress: ProgressFn | None = None) -> Encoded:
    """The work of ``segment_phrase`` on a :class:`~.service.SegZeroService` (``svc.concept`` set).

    Raises:
        SegZeroError: PromptError (bad phrase / threshold / max_instances, neither or both of image and
            result_id), ResultExpired / ResultUnknown, InputRejected / ImageLoadError, ServerBusy, a failed
            load of the concept model (gated repository: how to get access).
    """
    from segzero_tool.phrase import check_max_instances, check_phrase, check_threshold
    from segzero_tool.phrase import segment_phrase as run

    concept: ConceptModel | None = getattr(svc, "concept", None)
    if concept is None:
        raise PromptError("this server has no concept model (start it with segzero-mcp --concept-model sam3)")
    text = check_phrase(phrase)  # cheap checks first: nothing waits in the queue for bad input
    keep_above = check_threshold(threshold)
    cap = min(check_max_instances(max_instances) or svc.settings.max_objects, svc.settings.max_objects)
    has_image = isinstance(image, str) and bool(image.strip())
    if has_image == (result_id is not None):
        raise PromptError("send exactly one of image (a file path, URL, data: URL or base64) and result_id (an "
                          "earlier result whose image to reuse); got " +
                          ("both" if has_image else "neither" if image is None else "an empty image"))
    base = svc.live_result(result_id) if result_id is not None else None

    async def work(token: CancelToken, calls: CallProgress) -> Encoded:
        source: Any = base
        if base is None:
            await calls.stage(1, "loading image")
            raw = await load_source(image, svc.policy, read_resource=svc.read_own_resource)
            from segzero_tool.images import load_image

            source = await run_in_thread(token, functools.partial(
                load_image, max_pixels=svc.settings.max_pixels, cache=svc._image_cache()), raw)
        model = await concept.wait(calls)
        await calls.stage(4, f"finding every {text!r}")
        result = await run_in_thread(token, functools.partial(
            run, segmenter=model, threshold=keep_above, max_instances=cap, max_pixels=svc.settings.max_pixels),
            source, text, progress=calls)
        await calls.stage(5, "encoding")
        return await run_in_thread(token, svc._encode, result, mask_encoding, include_overlay)

    return await svc._steer(work, progress)


def add_phrase_tool(server: Any, svc: Any, settings: Any) -> None:
    """Register ``segment_phrase`` on ``server`` when ``svc`` has a concept model (else nothing)."""
    if getattr(svc, "concept", None) is None:
        return
    from .service import tool_error_message

    async def segment_phrase_tool(
        ctx: Context,
        phrase: PhraseArg,
        image: OptionalImageArg = None,
        result_id: BaseResultIdArg = None,
        threshold: ThresholdArg = 0.5,
        max_instances: MaxInstancesArg = None,
        mask_encoding: MaskEncodingArg = "rle",
        include_overlay: IncludeOverlayArg = False,
    ) -> Annotated[CallToolResult, SegmentationOutput]:
        async def progress(step: float, message: str) -> None:
            await ctx.report_progress(step, STAGES, message)

        try:
            done = await segment_phrase(svc, phrase, image=image, result_id=result_id, threshold=threshold,
                                        max_instances=max_instances, mask_encoding=mask_encoding,
                                        include_overlay=include_overlay, progress=progress)
        except SegZeroError as exc:
            log.info("%s refused: %s", PHRASE_TOOL, exc)
            raise compat.ToolError(tool_error_message(exc)) from None
        from .server import _encoded_result

        return _encoded_result(done)

    title = "Segment every instance of a phrase (SAM 3)"
    server.tool(name=PHRASE_TOOL, title=title, description=PHRASE_DESCRIPTION,
                annotations=compat.ToolAnnotations(title=title, readOnlyHint=True, destructiveHint=False,
                                                   idempotentHint=False, openWorldHint=settings.allow_urls))(
        segment_phrase_tool)


__all__ = ["PHRASE_DESCRIPTION", "PHRASE_TOOL", "ConceptModel", "add_phrase_tool", "concept_enabled", "segment_phrase"]
