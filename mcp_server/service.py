"""The work behind the MCP tool and resources, independent of the SDK.

:class:`SegZeroService` owns the model loader (:mod:`.loader`: background loading, so the server
answers ``initialize`` at once), the result store and the admission :class:`Gate`;
:meth:`SegZeroService.segment` is the whole tool call:

    queued -> loading image -> (waiting for the models) -> reasoning -> segmenting -> encoding

Every blocking step runs in a worker thread, so the event loop keeps serving other requests. A
:class:`~segzero_tool.cancel.CancelToken` is made current for the call; when the client cancels,
the token is set, the running thread stops at its next check (the transformers reasoner checks after
every generated token) and the call's slot is released only once that thread has really finished.

While a call runs, a timer sends a progress notification every ``progress_interval_s`` (2 s) in
every stage, so clients that reset their request timeout on progress keep waiting and a person sees
that work goes on: tokens generated against the budget while the reasoner writes (when the backend
tells), model-loading steps while the models load, elapsed seconds otherwise.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio

from segzero_tool import __version__
from segzero_tool.cancel import CancelToken
from segzero_tool.errors import (
    ImageLoadError,
    ImageTooLargeError,
    NoReasonerError,
    PromptError,
    QueryError,
    RefinementNotSupported,
    ResultHandleError,
    SegZeroError,
)
from segzero_tool.handles import ResultHandles, result_nbytes
from segzero_tool.progress import Progress
from segzero_tool.prompts import validate_query

from .calls import STAGES, CallProgress, Gate, ProgressFn, ServerBusy, gated_call, run_in_thread
from .loader import ModelLoader, ModelLoadFailed
from .phrase_tool import ConceptModel, concept_enabled
from .results import Encoded, encode_png, encode_result
from .security import InputRejected, load_source
from .settings import ServerSettings
from .store import ResultNotFound, ResultStore

if TYPE_CHECKING:
    from segzero_tool.image_cache import DecodedImageCache
    from segzero_tool.pipeline import SegZeroPipeline
    from segzero_tool.result import SegmentationResult

log = logging.getLogger("segzero_tool.mcp_server")

#: The reasoner's budget flag, as this command spells it.
BUDGET_HINT = "the server operator can raise it with segzero-mcp --max-new-tokens N"
#: How the model and its prompt format are chosen, as this command spells it.
FORMAT_HINT = ("the server operator chooses them with segzero-mcp --reasoner and --prompt-format; a caller can "
               "also pass prompt_format")
#: What to send instead of an unknown or expired result id (servers with and without a reasoner).
LIVE_HINT = ("send the image again: call segment_by_prompts with image and objects (or segment_by_reasoning) "
             "and use the new result_id")
LIVE_HINT_NO_REASONER = ("send the image again: call segment_by_prompts with image and objects and use the new "
                         "result_id")
#: The steering tools (served with and without a reasoner).
STEERING_TOOLS = ("segment_by_prompts", "refine_object", "inspect_result", "select_objects")
#: What ``segment_by_reasoning`` answers on a server without a reasoner.
NO_REASONER = ("this server has no reasoner (segzero-mcp --reasoner none); send boxes or points with "
               "segment_by_prompts(image, objects=[{\"box\": [x1, y1, x2, y2]}]) instead")
_OWN_RESOURCE = re.compile(r"^segzero://results/([A-Za-z0-9_-]+)/(mask\.png|overlay\.png|objects/(\d+)/mask\.png)$")


class SegZeroService:
    """The models (loaded in the background), the result store and the admission gate of one server.

    Args:
        settings: server settings.
        pipeline: a ready pipeline (tests); by default it is built from ``settings.pipeline``.
        clock: the live results' clock (seconds, monotonic; tests pass a fake one).

    Results are kept twice under one id: as JSON and overlay PNG in :attr:`store` (the resources), and
    live, with their image and low-resolution mask logits, in :attr:`live` (a
    :class:`~segzero_tool.handles.ResultHandles` bounded by ``live_results`` / ``live_store_bytes`` /
    ``live_ttl_s``) for the steering tools.
    """

    #: Seconds between progress notifications while a call runs (MCP clients: at least every 5 s).
    progress_interval_s = 2.0

    def __init__(self, settings: ServerSettings, pipeline: SegZeroPipeline | None = None, *,
                 clock: Callable[[], float] = time.monotonic, concept: Any = None) -> None:
        self.settings = settings
        self.policy = settings.input_policy()
        self.store = ResultStore(max_results=settings.max_results, max_bytes=settings.max_store_bytes)
        #: Whether ``segment_by_reasoning`` is served (not with ``--reasoner none`` or a reasoner-less pipeline).
        self.has_reasoner = not settings.pipeline.no_reasoner and (pipeline is None or pipeline.reasoner is not None)
        self.live: ResultHandles[SegmentationResult] = ResultHandles(
            max_count=settings.live_results, ttl_s=settings.live_ttl_s, max_bytes=settings.live_store_bytes,
            sizer=result_nbytes, clock=clock, prefix="", kind="result",
            hint=LIVE_HINT if self.has_reasoner else LIVE_HINT_NO_REASONER)
        self.gate = Gate(settings.max_concurrency, settings.max_queue)
        self.started_at = time.time()
        describe = describe_models(settings)
        if pipeline is not None:
            self.loader = ModelLoader.ready_with(pipeline, describe)
        else:
            self.loader = ModelLoader(self._build, describe)
        #: The concept model of ``segment_phrase`` (:mod:`.phrase_tool`; ``None``: the tool is not served).
        self.concept = ConceptModel(settings, concept) if concept is not None or concept_enabled(
            settings.concept_model) else None
        #: What ``track_by_reasoning`` needs (:class:`.track_tool.VideoTools`; ``None``: the tool is not served); set
        #: by :func:`.track_tool.add_track_tool`.
        self.video: Any = None

    # --- models --------------------------------------------------------------------------------

    def _build(self) -> SegZeroPipeline:
        return self.settings.pipeline.build_pipeline(max_pixels=self.settings.max_pixels,
                                                     max_objects=self.settings.max_objects)

    @property
    def loaded(self) -> bool:
        return self.loader.value is not None

    def start_loading(self) -> bool:
        """Start loading the models in the background (returns at once)."""
        if self.concept is not None:
            self.concept.start()
        return self.loader.start()

    def load(self) -> SegZeroPipeline:
        """Load the models in this thread (blocking; for scripts and benchmarks)."""
        return self.loader.load_blocking()

    def close(self) -> None:
        self.store.close()
        if self.concept is not None:
            self.concept.close()
        pipe = self.loader.value
        if pipe is not None:
            pipe.close()

    def status(self) -> dict[str, Any]:
        """What ``segzero://status`` and ``GET /health`` report (JSON-ready)."""
        from .compat import SDK_VERSION

        p = self.settings.pipeline
        load = self.loader.status()
        models: dict[str, Any] = {
            "preset": p.preset, "reasoner": configured_model(p, "reasoner") if self.has_reasoner else "none",
            "reasoner_backend": p.reasoner_backend if self.has_reasoner else None,
            "segmenter": configured_model(p, "segmenter"), "segmenter_backend": p.segmenter_backend,
        }
        device: Any = p.device
        pipe = self.loader.value
        if pipe is not None:
            models["reasoner_loaded"] = ("none" if pipe.reasoner is None else
                                         getattr(pipe.reasoner, "model_id", None) or type(pipe.reasoner).__name__)
            if pipe.segmenter is not None:
                models["segmenter_loaded"] = getattr(pipe.segmenter, "model_id", None) or type(pipe.segmenter).__name__
            found = {str(getattr(m, "device", "")) for m in (pipe.reasoner, pipe.segmenter) if m is not None}
            found.discard("")
            if found:
                device = sorted(found)[0] if len(found) == 1 else sorted(found)
        cache = self._image_cache()
        return {
            "server": "segzero-mcp", "version": __version__, "mcp_sdk": SDK_VERSION, "state": load["state"],
            "models": models, "device": device, "load": load,
            "queue": {"running": self.gate.running, "waiting": self.gate.waiting,
                      "max_concurrency": self.gate.max_running, "max_queue": self.gate.max_waiting},
            "tools": self.tool_names(), "results": self.store.stats(), "live_results": self.live.stats(),
            "image_cache": cache.stats() if cache is not None else None,
            "uptime_seconds": round(time.time() - self.started_at, 1),
            **({"concept_model": self.concept.status()} if self.concept is not None else {}),
            **({"video": self.video.status()} if self.video is not None else {}),
        }

    def tool_names(self) -> list[str]:
        """The tools this server lists."""
        return ((["segment_by_reasoning"] if self.has_reasoner else []) + list(STEERING_TOOLS)
                + (["segment_phrase"] if self.concept is not None else [])
                + (["track_by_reasoning"] if self.video is not None else []))

    # --- resources -----------------------------------------------------------------------------

    async def read_own_resource(self, uri: str) -> bytes:
        """Bytes of one of this server's image resources (so an earlier result can be an input)."""
        m = _OWN_RESOURCE.match(uri)
        if m is None:
            raise InputRejected(f"{uri[:100]!r} is not an image resource of this server; pass "
                                "segzero://results/{result_id}/overlay.png (or .../mask.png), a file path, URL, "
                                "data: URL or base64")
        rid, part, index = m.groups()
        if part == "overlay.png":
            return await anyio.to_thread.run_sync(self.store.overlay_png, rid)
        return await anyio.to_thread.run_sync(self.store.mask_png, rid, None if index is None else int(index))

    # --- the tool ------------------------------------------------------------------------------

    async def segment(self, image: str, query: str, *, prompt_format: str | None = None,
                      max_objects: int | None = None, mask_encoding: str = "rle", include_overlay: bool = False,
                      progress: ProgressFn | None = None, verify: bool = False, verify_rounds: int = 2) -> Encoded:
        """Run one tool call.

        Raises:
            SegZeroError: bad input (:class:`InputRejected`, ``ImageLoadError``, ``QueryError``),
                :class:`ServerBusy`, a failed model load; the message says what to do.
            asyncio.CancelledError: the call was cancelled (its work has stopped).
        """
        if not self.has_reasoner:
            raise NoReasonerError(NO_REASONER)
        validate_query(query)  # cheap checks first: nothing waits in the queue for a bad query
        if not isinstance(image, str) or not image.strip():
            raise InputRejected("the image is empty; pass a file path, an http(s) URL, a data: URL or base64")
        n_objects = min(max_objects or self.settings.max_objects, self.settings.max_objects)

        async def work(token: CancelToken, calls: CallProgress) -> Encoded:
            await calls.stage(1, "loading image")
            source = await load_source(image, self.policy, read_resource=self.read_own_resource)
            from segzero_tool.images import load_image

            loaded = await run_in_thread(token, functools.partial(
                load_image, max_pixels=self.settings.max_pixels, cache=self._image_cache()), source)
            pipe = await self._pipeline(calls)
            if pipe.reasoner is None:
                raise NoReasonerError(NO_REASONER)
            if verify:
                await calls.stage(3, "reasoning, segmenting and verifying")
                result = await run_in_thread(token, functools.partial(
                    pipe.segment, prompt_format=prompt_format, max_objects=n_objects, verify=True,
                    verify_rounds=verify_rounds), loaded, query, progress=calls)
            else:
                await calls.stage(3, "reasoning")
                result = await run_in_thread(token, _reason, pipe, loaded, query, prompt_format, n_objects,
                                             progress=calls)
            if not verify and pipe.segmenter is not None and result.objects:
                await calls.stage(4, f"segmenting {len(result.objects)} object(s)")
                await run_in_thread(token, pipe.add_masks, result, progress=calls)
            await calls.stage(5, "encoding")
            return await run_in_thread(token, self._encode, result, mask_encoding, include_overlay)

        return await self._steer(work, progress)

    def _encode(self, result: SegmentationResult, mask_encoding: str, include_overlay: bool) -> Encoded:
        s = self.settings
        picture: Any = None
        png: bytes | None = None
        overlay: bytes | Callable[[], bytes]
        if include_overlay:  # the picture goes into this answer
            picture = result.overlay(max_side=s.overlay_max_side)
            png = overlay = encode_png(picture)
        else:  # only the overlay.png resource needs it: drawn in the background, after this answer
            overlay = functools.partial(_overlay_png, result, s.overlay_max_side)
        live_id = self.live.put(result) if result.image is not None else None
        rid = self.store.put(result, overlay_png=overlay, result_id=live_id)
        try:  # the store already holds the RLE form; reuse it unless a concurrent put evicted it already
            stored = self.store.get(rid).result_dict
        except ResultNotFound:
            stored = None
        return encode_result(result, rid, mask_encoding=mask_encoding, max_bytes=s.max_result_bytes,
                             picture=picture if include_overlay else None, picture_png=png,
                             overlay_max_bytes=s.overlay_max_bytes, stored=stored, resource_links=s.resource_links,
                             budget_hint=BUDGET_HINT, format_hint=FORMAT_HINT, overlay_max_side=s.overlay_max_side)


    # --- the steering tools -------------------------------------------------------------------

    def live_result(self, result_id: Any) -> SegmentationResult:
        """The live result ``result_id`` (with its image and mask logits).

        Raises:
            ResultExpired / ResultUnknown: the message says what to send instead.
        """
        return self.live.get(result_id)

    def _image_cache(self) -> DecodedImageCache | None:
        """The loaded pipeline's decoded-image cache (``None`` while the models load, or for a pipeline-like
        object without one). The image is loaded before waiting for the models, so a bad image is refused
        at once; only the first calls, made while the models load, decode without the cache."""
        return getattr(self.loader.value, "image_cache", None)

    async def _pipeline(self, calls: CallProgress) -> SegZeroPipeline:
        if self.loaded:
            return self.loader.value  # type: ignore[return-value]
        await calls.stage(2, "loading models")

        async def waiting(event: Progress | None, elapsed: float) -> None:
            calls.latest = event

        return await self.loader.wait(waiting)

    async def _steer(self, work: Callable[[CancelToken, CallProgress], Awaitable[Any]],
                     progress: ProgressFn | None) -> Any:
        """Run one tool call's work under the gate, with the progress timer (:func:`.calls.gated_call`)."""
        return await gated_call(self.gate, work, progress, self.progress_interval_s)

    async def segment_by_prompts(self, objects: Any, *, image: str | None = None, result_id: str | None = None,
                                 mask_encoding: str = "rle", include_overlay: bool = False,
                                 progress: ProgressFn | None = None) -> Encoded:
        """``segment_by_prompts``: the caller's boxes / points -> masks, on ``image`` or a live result's image.

        Raises:
            SegZeroError: PromptError (bad objects, neither or both of image / result_id), ResultExpired /
                ResultUnknown, InputRejected / ImageLoadError (bad image), ServerBusy, a failed model load.
        """
        has_image = isinstance(image, str) and bool(image.strip())
        if has_image == (result_id is not None):
            raise PromptError("send exactly one of image (a file path, URL, data: URL or base64) and result_id (an "
                              "earlier result whose image to reuse); got " +
                              ("both" if has_image else "neither" if image is None else "an empty image"))
        base = self.live_result(result_id) if result_id is not None else None
        cap = self.settings.max_objects

        async def work(token: CancelToken, calls: CallProgress) -> Encoded:
            source: Any = base
            if base is None:
                await calls.stage(1, "loading image")
                raw = await load_source(image, self.policy, read_resource=self.read_own_resource)  # type: ignore[arg-type]
                from segzero_tool.images import load_image

                source = await run_in_thread(token, functools.partial(
                    load_image, max_pixels=self.settings.max_pixels, cache=self._image_cache()), raw)
            pipe = await self._pipeline(calls)
            await calls.stage(4, "segmenting")
            result = await run_in_thread(token, functools.partial(pipe.segment_by_prompts, max_objects=cap),
                                         source, objects, progress=calls)
            await calls.stage(5, "encoding")
            return await run_in_thread(token, self._encode, result, mask_encoding, include_overlay)

        return await self._steer(work, progress)

    async def refine_object(self, result_id: Any, index: Any, *, add_points: Any = None, remove_points: Any = None,
                            box: Any = None, mask_encoding: str = "rle", include_overlay: bool = False,
                            progress: ProgressFn | None = None) -> Encoded:
        """``refine_object``: a new result (new id) with object ``index`` recomputed; the old one is unchanged."""
        base = self.live_result(result_id)

        async def work(token: CancelToken, calls: CallProgress) -> Encoded:
            pipe = await self._pipeline(calls)
            await calls.stage(4, f"refining object {index}")
            result = await run_in_thread(token, functools.partial(
                pipe.refine_object, add_points=add_points if add_points is not None else (),
                remove_points=remove_points if remove_points is not None else (), box=box), base, index,
                progress=calls)
            await calls.stage(5, "encoding")
            return await run_in_thread(token, self._encode, result, mask_encoding, include_overlay)

        return await self._steer(work, progress)

    async def select_objects(self, result_id: Any, indices: Any, *, mask_encoding: str = "rle",
                             include_overlay: bool = False, progress: ProgressFn | None = None) -> Encoded:
        """``select_objects``: a new result (new id) keeping the objects at ``indices``, in that order."""
        from segzero_tool.steer import select_objects

        base = self.live_result(result_id)

        async def work(token: CancelToken, calls: CallProgress) -> Encoded:
            await calls.stage(5, "encoding")
            result = await run_in_thread(token, select_objects, base, indices)
            return await run_in_thread(token, self._encode, result, mask_encoding, include_overlay)

        return await self._steer(work, progress)

    def inspection_budget(self) -> int:
        """Largest inspection picture (encoded bytes): the inline overlay budget (base64) of the settings,
        within the result budget."""
        s = self.settings
        return max(1, min(s.overlay_max_bytes, s.max_result_bytes - 16_000) * 3 // 4)

    async def inspect_result(self, result_id: Any, indices: Any = None, crops: bool = False,
                             progress: ProgressFn | None = None) -> Any:
        """``inspect_result``: the numbered inspection picture of a live result and its text
        (:class:`~segzero_tool.inspect_view.Inspection`)."""
        from segzero_tool.inspect_view import render_inspection

        base = self.live_result(result_id)
        shown = _check_indices(base, indices)
        if not isinstance(crops, bool):
            raise PromptError(f"crops must be true or false; got {crops!r}"[:200])

        async def work(token: CancelToken, calls: CallProgress) -> Any:
            await calls.stage(5, "drawing")
            return await run_in_thread(token, functools.partial(
                render_inspection, indices=shown, crops=crops, max_side=self.settings.overlay_max_side,
                max_bytes=self.inspection_budget()), base)

        return await self._steer(work, progress)


def _check_indices(result: SegmentationResult, indices: Any) -> list[int] | None:
    """``indices`` of ``inspect_result`` checked against ``result`` (``None``: all objects)."""
    if indices is None:
        return None
    n = len(result.objects)
    valid = f"0 to {n - 1}" if n else "none: the result has no objects"
    if isinstance(indices, (str, bytes, dict)) or not isinstance(indices, (list, tuple)):
        raise PromptError(f"indices must be a list of object indices ({valid}), or left out for all objects; got "
                          f"{_show(indices)}")
    out: list[int] = []
    for k, i in enumerate(indices):
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n:
            raise PromptError(f"indices[{k}] must be an object index ({valid}); got {_show(i)}")
        out.append(i)
    return out


def _show(value: Any) -> str:
    from segzero_tool.handles import show

    return show(value)


def preflight(settings: ServerSettings) -> None:
    """The checks that need no model: the preset, the registry names, and plugin backend classes
    (imported now, so that a typo exits at once with its code instead of failing every call later).
    Built-in backends are not imported here: that would pull in torch before the server answers.

    Raises:
        SegZeroError: UnknownModelError (exit 4), BackendError (exit 5), SettingsError.
    """
    from segzero_tool.backends import (
        REASONER_BACKENDS,
        SEGMENTER_BACKENDS,
        resolve_reasoner_class,
        resolve_segmenter_class,
    )
    from segzero_tool.registry import get_preset, resolve_model

    p = settings.pipeline
    preset = get_preset(p.preset)
    kinds = (("reasoner", p.reasoner_backend, REASONER_BACKENDS, resolve_reasoner_class),
             ("segmenter", p.segmenter_backend, SEGMENTER_BACKENDS, resolve_segmenter_class))
    for kind, backend, table, resolve in kinds[1:] if p.no_reasoner else kinds:
        if backend.strip().lower() not in table:
            resolve(backend)  # a plugin: import it now (BackendError names the problem)
        resolve_model(getattr(p, kind) or getattr(preset, kind), kind)  # type: ignore[arg-type]


def configured_model(p: Any, kind: str) -> str:
    """The model a :class:`PipelineSettings` names for ``kind`` (its own, else its preset's)."""
    value = getattr(p, kind)
    if value:
        return str(value)
    from segzero_tool.registry import get_preset

    try:
        return str(getattr(get_preset(p.preset), kind))
    except SegZeroError:
        return f"{p.preset} preset"


def describe_models(settings: ServerSettings) -> str:
    """``reasoner X (backend), segmenter Y (backend), device D`` for logs; plugins by class path."""
    p = settings.pipeline

    def one(kind: str, backend: str) -> str:
        model = configured_model(p, kind)
        if ":" in backend or "." in backend:
            return f"{kind} {backend} (model argument: {model})"
        return f"{kind} {model} ({backend} backend)"

    reasoner = "no reasoner (--reasoner none)" if p.no_reasoner else one("reasoner", p.reasoner_backend)
    return f"{reasoner}, {one('segmenter', p.segmenter_backend)}, device {p.device}"


def tool_error_message(exc: SegZeroError) -> str:
    """An actionable one-paragraph message for a tool error; names only what the caller (an agent)
    or the server's operator (segzero-mcp flags) can change."""
    msg = " ".join(str(exc).split())
    if isinstance(exc, (ServerBusy, InputRejected, ResultNotFound, ModelLoadFailed, ResultHandleError,
                        NoReasonerError, RefinementNotSupported)):
        return msg
    if isinstance(exc, PromptError):
        return f"bad prompt: {msg}"
    if isinstance(exc, ImageTooLargeError):
        return (f"the image could not be used: {msg}. Send a downscaled image, or ask the server operator to raise "
                "segzero-mcp --max-pixels.")
    if isinstance(exc, ImageLoadError):
        return (f"the image could not be used: {msg}. Send a PNG, JPEG or WebP image (file path, URL, data: URL or "
                "base64 of the complete file).")
    if isinstance(exc, QueryError):
        return f"bad query: {msg}"
    return f"the segmentation failed: {msg}"


def _overlay_png(result: SegmentationResult, max_side: int) -> bytes:
    return encode_png(result.overlay(max_side=max_side))


def _reason(pipe: SegZeroPipeline, loaded: Any, query: str, prompt_format: str | None,
            max_objects: int) -> SegmentationResult:
    """The reasoner's part: objects with boxes and points, no masks yet."""
    return pipe.segment(loaded, query, prompt_format=prompt_format, max_objects=max_objects, compute_masks=False)


__all__ = ["SegZeroService", "preflight", "Gate", "ServerBusy", "CallProgress", "run_in_thread", "tool_error_message",
           "describe_models", "STAGES"]
