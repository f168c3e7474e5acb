"""The work behind the MCP tool and resources, independent of the SDK.

:class:`SegZeroService` owns the pipeline (loaded once, eagerly or on the first call), the result
store and the admission :class:`Gate`; :meth:`SegZeroService.segment` is the whole tool call:

    queued -> loading image -> (loading models) -> reasoning -> segmenting -> encoding

Every blocking step runs in a worker thread, so the event loop keeps serving other requests. A
:class:`~segzero_tool.cancel.CancelToken` is made current for the call; when the client cancels,
the token is set, the running thread stops at its next check (the transformers reasoner checks after
every generated token) and the call's slot is released only once that thread has really finished.
"""

from __future__ import annotations

import asyncio
import collections
import io
import logging
import re
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from segzero_tool.cancel import CancelToken, cancellation
from segzero_tool.errors import ImageLoadError, QueryError, SegZeroError
from segzero_tool.images import load_image
from segzero_tool.prompts import validate_query
from segzero_tool.result import SegmentationResult

from .models import SegmentationOutput, result_uri
from .security import InputRejected, load_source
from .settings import ServerSettings
from .store import ResultNotFound, ResultStore

if TYPE_CHECKING:
    from PIL import Image

    from segzero_tool.pipeline import SegZeroPipeline

log = logging.getLogger("segzero_tool.mcp_server")

ProgressFn = Callable[[float, str], Awaitable[None]]
STAGES = 5  # queued, loading image, reasoning, segmenting, encoding
_RAW_OUTPUT_CHARS = 4000
_OWN_RESOURCE = re.compile(r"^segzero://results/([A-Za-z0-9_-]+)/(mask\.png|overlay\.png|objects/(\d+)/mask\.png)$")


class ServerBusy(SegZeroError):
    """Too many calls are running or waiting; the caller should retry shortly."""


class Gate:
    """At most ``max_running`` calls at once and ``max_waiting`` waiting (FIFO); beyond that
    :meth:`acquire` raises :class:`ServerBusy` at once instead of letting a queue grow without bound.

    Single event loop only (the server's).
    """

    def __init__(self, max_running: int, max_waiting: int) -> None:
        self.max_running = max_running
        self.max_waiting = max_waiting
        self.running = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def acquire(self) -> None:
        if self.running < self.max_running and not self._waiters:
            self.running += 1
            return
        if len(self._waiters) >= self.max_waiting:
            raise ServerBusy(f"busy: {self.running} calls running and {len(self._waiters)} queued (the server's "
                             "limits); retry in a few seconds")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut  # release() hands its slot over: `running` already counts us
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # the slot arrived together with the cancellation: pass it on
            else:
                self._waiters.remove(fut)
            raise

    def release(self) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self.running -= 1


async def run_in_thread(token: CancelToken, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a worker thread that sees ``token``; if the caller is cancelled, set the token,
    wait (shielded) until the thread has finished, then re-raise the cancellation."""
    with cancellation(token):  # the task below copies the context, so the thread sees the token
        fut = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(fut)
    except asyncio.CancelledError:
        token.cancel("the client cancelled the call")
        with anyio.CancelScope(shield=True):
            await asyncio.wait([fut])
        if not fut.cancelled() and fut.exception() is not None:
            log.debug("cancelled work ended with %r", fut.exception())
        raise


def _encode_png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    # Level 1: about 3x faster than the default 6 for overlays, for ~20% larger files (measured by
    # benchmarks/mcp_load.py: the overlay PNG was most of the server's CPU per call).
    img.save(buf, format="PNG", optimize=False, compress_level=1)
    return buf.getvalue()


def fit_image(img: Image.Image, max_b64_bytes: int, *, png: bytes | None = None) -> tuple[bytes, str]:
    """Encode ``img`` so that its base64 text is at most ``max_b64_bytes``: PNG if it fits, else JPEG at
    falling qualities, then smaller sizes. ``png``: the PNG of ``img`` if already encoded.
    Returns ``(bytes, mime_type)``."""
    from PIL import Image as _Image

    limit = max_b64_bytes * 3 // 4  # base64 grows the data by 4/3
    png = png if png is not None else _encode_png(img)
    if len(png) <= limit:
        return png, "image/png"
    rgb = img.convert("RGB")
    data = b""
    while True:
        for quality in (85, 70, 55, 40):
            buf = io.BytesIO()
            rgb.save(buf, format="JPEG", quality=quality, optimize=True)
            data = buf.getvalue()
            if len(data) <= limit:
                return data, "image/jpeg"
        if max(rgb.size) <= 32:
            return data, "image/jpeg"
        rgb = rgb.resize((max(1, int(rgb.width * 0.7)), max(1, int(rgb.height * 0.7))), _Image.BILINEAR)


@dataclass
class Encoded:
    """What the encoding stage hands back to the tool."""

    output: SegmentationOutput
    summary: str
    overlay: tuple[bytes, str] | None


class SegZeroService:
    """The pipeline, the result store and the admission gate of one server.

    Args:
        settings: server settings.
        pipeline: a ready pipeline (tests); by default it is built from ``settings.pipeline``.
    """

    def __init__(self, settings: ServerSettings, pipeline: SegZeroPipeline | None = None) -> None:
        self.settings = settings
        self.policy = settings.input_policy()
        self.store = ResultStore(max_results=settings.max_results, max_bytes=settings.max_result_bytes)
        self.gate = Gate(settings.max_concurrency, settings.max_queue)
        self._pipeline = pipeline
        self._load_lock = threading.Lock()
        self._loading: asyncio.Future[Any] | None = None

    # --- models --------------------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._pipeline is not None

    def load(self) -> SegZeroPipeline:
        """Load the models once (thread-safe; later calls return the same pipeline)."""
        with self._load_lock:
            if self._pipeline is None:
                p = self.settings.pipeline
                log.info("loading models (reasoner: %s, segmenter: %s, device: %s) ...",
                         p.reasoner or f"{p.preset} preset", p.segmenter or f"{p.preset} preset", p.device)
                t0 = time.perf_counter()
                self._pipeline = p.build_pipeline(max_pixels=self.settings.max_pixels,
                                                  max_objects=self.settings.max_objects)
                log.info("models loaded in %.1f s", time.perf_counter() - t0)
            return self._pipeline

    async def ensure_loaded(self) -> SegZeroPipeline:
        """:meth:`load` in a thread; concurrent first callers share one load. A cancelled caller stops
        waiting but the load goes on (the next call uses it); a failed load is retried by the next call."""
        if self._pipeline is not None:
            return self._pipeline
        if self._loading is None:
            self._loading = asyncio.ensure_future(asyncio.to_thread(self.load))
        loading = self._loading
        try:
            return await asyncio.shield(loading)
        finally:
            if loading.done() and not loading.cancelled() and loading.exception() is not None \
                    and self._loading is loading:
                self._loading = None

    def close(self) -> None:
        if self._pipeline is not None:
            self._pipeline.close()

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
                      progress: ProgressFn | None = None) -> Encoded:
        """Run one tool call.

        Raises:
            SegZeroError: bad input (:class:`InputRejected`, ``ImageLoadError``, ``QueryError``),
                :class:`ServerBusy`, a failed model load; the message says what to do.
            asyncio.CancelledError: the call was cancelled (its work has stopped).
        """
        report = progress or _no_progress
        validate_query(query)  # cheap checks first: nothing waits in the queue for a bad query
        if not image or not image.strip():
            raise InputRejected("the image is empty; pass a file path, an http(s) URL, a data: URL or base64")
        n_objects = min(max_objects or self.settings.max_objects, self.settings.max_objects)
        token = CancelToken()
        await report(0, f"queued ({self.gate.running} running, {self.gate.waiting} waiting)")
        await self.gate.acquire()
        try:
            await report(1, "loading image")
            source = await load_source(image, self.policy, read_resource=self.read_own_resource)
            loaded = await run_in_thread(token, _load, source, self.settings.max_pixels)
            if not self.loaded:
                await report(1, "loading models (first call)")
            pipe = await self.ensure_loaded()
            await report(2, "reasoning")
            result = await run_in_thread(token, _reason, pipe, loaded, query, prompt_format, n_objects)
            if pipe.segmenter is not None and result.objects:
                await report(3, f"segmenting {len(result.objects)} object(s)")
                await run_in_thread(token, _masks, pipe, result)
            await report(4, "encoding")
            encoded = await run_in_thread(token, self._encode, result, mask_encoding, include_overlay)
        finally:
            self.gate.release()
        await report(STAGES, "done")
        return encoded

    def _encode(self, result: SegmentationResult, mask_encoding: str, include_overlay: bool) -> Encoded:
        s = self.settings
        picture = result.overlay(max_side=s.overlay_max_side)
        png = _encode_png(picture)
        rid = self.store.put(result, overlay_png=png)
        try:  # the store already holds the RLE form; reuse it unless a concurrent put evicted it already
            d = self.store.get(rid).result_dict if mask_encoding == "rle" else None
        except ResultNotFound:
            d = None
        if d is None:
            d = result.to_dict(mask_encoding)  # type: ignore[arg-type]
        objects = []
        for i, o in enumerate(d["objects"]):
            objects.append({
                "index": i, "box": o["box"], "points": o["points"], "score": o["score"], "area": o["area"],
                "label": o.get("label"), "issues": o.get("issues", []), "rle": o.get("rle"),
                "polygons": o.get("polygons"), "mask_uri": result_uri(rid, f"objects/{i}/mask.png"),
            })
        usable = result.parse_status.value in ("ok", "no_objects")
        raw = None if usable else result.raw_output[:_RAW_OUTPUT_CHARS]
        output = SegmentationOutput(
            result_id=rid, query=result.query, prompt_format=result.prompt_format,
            parse_status=result.parse_status.value, parse_issues=list(result.parse_issues),
            reasoning=result.reasoning, raw_output=raw, truncated=result.truncated,
            image_width=result.image_size[0], image_height=result.image_size[1], objects=objects,
            union_area=int(result.union_mask.sum()), mask_encoding=mask_encoding,
            timings_ms={k: round(v, 1) for k, v in result.timings.items()},
            mask_uris=[o["mask_uri"] for o in objects], union_mask_uri=result_uri(rid, "mask.png"),
            overlay_uri=result_uri(rid, "overlay.png"), result_uri=result_uri(rid, "result.json"),
        )
        overlay = fit_image(picture, s.overlay_max_bytes, png=png) if include_overlay else None
        return Encoded(output, summarize(output), overlay)


def summarize(out: SegmentationOutput, max_reasoning: int = 1200, max_objects: int = 20) -> str:
    """The short text content for clients that ignore structured content."""
    lines = []
    if out.objects:
        lines.append(f"Found {len(out.objects)} object(s) for {out.query!r} in the {out.image_width}x"
                     f"{out.image_height} image (result_id {out.result_id}; coordinates in original pixels, boxes "
                     "[x1, y1, x2, y2] inclusive):")
        for o in out.objects[:max_objects]:
            score = "n/a" if o.score is None else f"{o.score:.2f}"
            lines.append(f"- #{o.index}: box {o.box}, points {o.points}, score {score}, area {o.area} px"
                         + (f", label {o.label!r}" if o.label else ""))
        if len(out.objects) > max_objects:
            lines.append(f"- ... and {len(out.objects) - max_objects} more (see structuredContent)")
    elif out.parse_status == "no_objects" or out.parse_status == "ok":
        lines.append(f"No object matches {out.query!r} in the {out.image_width}x{out.image_height} image "
                     f"(result_id {out.result_id}).")
    else:
        why = "; ".join(out.parse_issues[:3]) or "no usable answer"
        lines.append(f"The model's answer could not be used (parse_status {out.parse_status}: {why}); no objects "
                     f"(result_id {out.result_id}). Try rephrasing the query more concretely.")
    if out.reasoning:
        text = out.reasoning if len(out.reasoning) <= max_reasoning else out.reasoning[:max_reasoning] + " ..."
        lines.append(f"Reasoning: {text}")
    if out.objects:
        lines.append(f"Masks: {out.mask_encoding} in structuredContent; full-resolution PNGs at {out.union_mask_uri} "
                     f"(union) and segzero://results/{out.result_id}/objects/{{index}}/mask.png.")
    return "\n".join(lines)


def tool_error_message(exc: SegZeroError) -> str:
    """An actionable one-paragraph message for a tool error."""
    msg = " ".join(str(exc).split())
    if isinstance(exc, (ServerBusy, InputRejected, ResultNotFound)):
        return msg
    if isinstance(exc, ImageLoadError):
        return (f"the image could not be used: {msg}. Send a PNG, JPEG or WebP image (file path, URL, data: URL or "
                "base64 of the complete file), or a smaller one.")
    if isinstance(exc, QueryError):
        return f"bad query: {msg}"
    return f"the segmentation failed: {msg}"


async def _no_progress(progress: float, message: str) -> None:
    return None


def _load(source: Any, max_pixels: int) -> Any:
    return load_image(source, max_pixels=max_pixels)


def _reason(pipe: SegZeroPipeline, loaded: Any, query: str, prompt_format: str | None,
            max_objects: int) -> SegmentationResult:
    """The reasoner's part: objects with boxes and points, no masks yet."""
    return pipe.segment(loaded, query, prompt_format=prompt_format, max_objects=max_objects, compute_masks=False)


def _masks(pipe: SegZeroPipeline, result: SegmentationResult) -> None:
    """SAM2's part, filled into ``result`` in place."""
    pipe.add_masks(result)


__all__ = ["SegZeroService", "Gate", "ServerBusy", "run_in_thread", "fit_image", "summarize", "tool_error_message"]
