"""The MCP tool ``track_by_reasoning``: find the objects a query refers to in a video and follow them
frame by frame (the reasoner on key frames, SAM2's video tracker in between); a thin adapter over
:func:`segzero_tool.video.track.track_video`.

Served when the server has a reasoner and PyAV is installed (the ``video`` extra); ``--no-video``
(``SEGZERO_MCP_VIDEO=0``) turns it off, ``--video`` asks for it and refuses to start without PyAV.
The call is long: a progress notification goes out per frame ("tracking: frame 12/120"), and a
cancelled call stops before its next frame. The answer is short (a summary, each track's span and
status, the frames where something happened) and the per-frame masks are resources of the run,
read from its ``frames.jsonl`` on demand (:mod:`.track_store`):

* ``segzero://tracks/{run_id}/frames/{index}``: that frame's objects (track id, box, score, area,
  COCO RLE mask) and events, as JSON;
* ``segzero://tracks/{run_id}/frames/{index}/objects/{track_id}/mask.png``: one object's mask;
* ``segzero://tracks/{run_id}/tracks.json``: the whole run (tracks with area over time, key frames);
* ``segzero://tracks/{run_id}/timeline.png``: the run at a glance (one row per track over the frames);
* ``segzero://tracks/{run_id}/overlay.mp4``: the video with the masks drawn (``overlay_video=true``).
"""

# No ``from __future__ import annotations``: the SDKs read the tool's annotations with get_type_hints.

import asyncio
import importlib.util
import json
import logging
import threading
from collections.abc import Callable
from typing import Annotated, Any

import anyio
from pydantic import Field

from segzero_tool.cancel import CancelToken
from segzero_tool.errors import (
    ImageTooLargeError,
    MissingDependencyError,
    PromptError,
    SegZeroError,
    VideoLoadError,
)
from segzero_tool.progress import Progress, progress_reporting

from . import compat
from .calls import STAGES, CallProgress, ProgressFn, run_in_thread
from .compat import CallToolResult, Context
from .store import ResultNotFound
from .track_results import TrackOutput, encode_run
from .track_store import TrackRun, TrackStore

log = logging.getLogger("segzero_tool.mcp_server")

TRACK_TOOL = "track_by_reasoning"

TRACK_DESCRIPTION = """Find the objects in a VIDEO that a question or instruction refers to (it may need reasoning: "the cup someone drinks from", "the dog that runs away") and follow each one through the frames with a pixel mask per frame. The reasoning model looks at key frames; SAM2's video tracker carries the masks to the other frames and notices when an object is lost (hidden, left the picture) and found again.

video: a local video file (MP4, WebM, MOV, ... ; only inside the folders the server allows) or a folder of frame images (sorted by name); an http(s) URL only when the server downloads URLs.
query: what to find and follow, in plain words.
key_frames: when the reasoner looks again: "first" (default: only the first frame; cheapest), "every:N" (every N frames) or "every:Ns" (every N seconds), which also picks up objects that appear later.
max_frames: process at most this many frames from the start (default and upper limit: the server's frame limit).
overlay_video: also write a video with the masks drawn (resource overlay.mp4; costs time per frame).

Long-running: progress notifications report each frame; cancelling the call stops the work before the next frame.

Returns a run_id, a short summary, per track (track_id 1, 2, ...) its first and last frame, frames visible, status ("active" on the last frame or "lost") and last box [x1, y1, x2, y2] (original pixels, corners inclusive), and the frames where something happened (key frames, a track new / lost / found again). Nothing found is a normal result with no tracks. The masks are resources: segzero://tracks/{run_id}/frames/{index} (that frame's objects with COCO RLE masks), segzero://tracks/{run_id}/frames/{index}/objects/{track_id}/mask.png (one 0/255 PNG mask), segzero://tracks/{run_id}/tracks.json (the whole run). Runs are kept for a limited time and count."""

TRACK_INSTRUCTIONS = (" For videos, call track_by_reasoning(video, query): it follows the objects through the "
                      "frames, with progress per frame; per-frame masks are resources under "
                      "segzero://tracks/{run_id}/.")

VideoArg = Annotated[str, Field(
    min_length=1, max_length=4096,
    description="The video: the path of a video file (MP4, WebM, MOV, ...) or of a folder of frame images, inside "
                "the folders the server allows (absolute, or relative to the server's working directory); an "
                "http(s) URL only when the server downloads URLs.",
)]
TrackQueryArg = Annotated[str, Field(
    min_length=1, max_length=2000,
    description="What to find and follow, in plain words: 'the person in red', 'what the cat is chasing'.",
)]
KeyFramesArg = Annotated[str, Field(
    min_length=1, max_length=40,
    description="When the reasoner looks: 'first' (only the first frame, the default), 'every:N' (every N frames) "
                "or 'every:Ns' (every N seconds, e.g. 'every:2s').",
)]
MaxFramesArg = Annotated[int | None, Field(
    ge=1,
    description="Process at most this many frames from the start. Default: the server's frame limit (a larger "
                "value is capped at it).",
)]
OverlayVideoArg = Annotated[bool, Field(
    description="Also write the video with the masks drawn, readable at segzero://tracks/{run_id}/overlay.mp4.",
)]


# --- the models: the tracker next to the pipeline ---------------------------------------------------


def pyav_available() -> bool:
    """Whether PyAV can be imported (without importing it)."""
    try:
        return importlib.util.find_spec("av") is not None
    except (ImportError, ValueError):
        return False


class TrackerPool:
    """Video trackers for the calls: one kept warm between calls, one more loaded per concurrent call.

    Args:
        load: ``load(pipeline) -> VideoTracker`` (blocking; runs in a worker thread).
    """

    def __init__(self, load: Callable[[Any], Any]) -> None:
        self.load = load
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        self.loaded = 0

    def acquire(self, pipeline: Any) -> Any:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        tracker = self.load(pipeline)
        self.loaded += 1
        return tracker

    def release(self, tracker: Any) -> None:
        try:
            tracker.reset()
        except Exception as exc:  # a tracker that cannot reset is not reused
            log.warning("the video tracker could not be reset (%r); loading a new one next time", exc)
            return
        with self._lock:
            if not self._idle:
                self._idle.append(tracker)
                return
        tracker.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for tracker in idle:
            tracker.close()


class VideoTools:
    """What ``track_by_reasoning`` needs beside the service: the tracker pool and the store of runs.

    Args:
        settings: the server settings (``max_video_frames``, ``live_ttl_s`` as the runs' lifetime, the
            pipeline's ``device`` / ``dtype`` for the tracker).
        load_tracker: ``load_tracker(pipeline) -> VideoTracker`` (tests); by default the transformers SAM2
            video tracker from the pipeline's segmenter checkpoint.
        store: the store of runs (default: a new one).
    """

    def __init__(self, settings: Any, load_tracker: Callable[[Any], Any] | None = None,
                 store: TrackStore | None = None) -> None:
        self.settings = settings
        self.trackers = TrackerPool(load_tracker or self._load_tracker)
        self.store = store or TrackStore(ttl_s=settings.live_ttl_s)

    def _load_tracker(self, pipeline: Any) -> Any:
        from segzero_tool.video.tracker import load_tracker

        p = self.settings.pipeline
        segmenter = pipeline.segmenter
        return load_tracker(getattr(segmenter, "model_id", None) or p.segmenter,
                            device=str(getattr(segmenter, "device", None) or p.device), dtype=p.dtype, progress=False)

    def status(self) -> dict[str, Any]:
        return {"runs": self.store.stats(), "trackers_loaded": self.trackers.loaded,
                "max_video_frames": self.settings.max_video_frames}

    def close(self) -> None:
        self.trackers.close()
        self.store.close()


def video_wanted(settings: Any, svc: Any) -> bool:
    """Whether to serve ``track_by_reasoning``: ``settings.video`` (``None``: when PyAV is installed) and a
    reasoner.

    Raises:
        MissingDependencyError: ``--video`` was asked for and PyAV is missing.
    """
    wanted = getattr(settings, "video", None)
    if wanted is False:
        return False
    if not pyav_available():
        if wanted:
            raise MissingDependencyError("--video needs PyAV, which is not installed; install it with: "
                                         "pip install 'segzero-tool[video]' (or start without --video)")
        return False
    if not svc.has_reasoner:
        if wanted:
            log.warning("%s is not served: it needs a reasoner (this server runs with --reasoner none)", TRACK_TOOL)
        return False
    return True


# --- the call -----------------------------------------------------------------------------------------


class _FrameProgress:
    """Forwards each tracking step to the client as it happens (coalesced: at most one notification in
    flight), and everything else to the call's progress timer."""

    def __init__(self, calls: CallProgress, loop: asyncio.AbstractEventLoop) -> None:
        self.calls, self.loop = calls, loop
        self.pending = False
        self.frames_done = 0
        self.tasks: set[asyncio.Future[Any]] = set()

    def sink(self, event: Progress) -> None:  # worker thread: record, and wake the loop for a frame
        self.calls.latest = event
        if event.stage == "tracking" and event.done is not None:
            self.frames_done = int(event.done)
            if not self.pending:
                self.pending = True
                self.loop.call_soon_threadsafe(self._send)

    def _send(self) -> None:
        self.pending = False
        task = asyncio.ensure_future(self.calls.emit())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def drain(self) -> None:
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)


def track_error_message(exc: SegZeroError) -> str:
    """The tool error for ``exc``, in video terms where the image wording would mislead."""
    from .service import tool_error_message

    msg = " ".join(str(exc).split())
    if isinstance(exc, VideoLoadError):
        return (f"the video could not be used: {msg}. Send a video file (MP4, WebM, MOV, ...) or a folder of frame "
                "images.")
    if isinstance(exc, ImageTooLargeError):
        return (f"the video's frames are too large: {msg}. Send a downscaled video, or ask the server operator to "
                "raise segzero-mcp --max-pixels.")
    if isinstance(exc, MissingDependencyError):
        return msg
    text = tool_error_message(exc)
    return "tracking failed: " + text.removeprefix("the segmentation failed: ") \
        if text.startswith("the segmentation failed: ") else text


async def track_by_reasoning(svc: Any, video: Any, query: Any, *, key_frames: Any = "first", max_frames: Any = None,
                             overlay_video: bool = False, progress: ProgressFn | None = None) -> tuple[TrackRun, Any]:
    """The work of ``track_by_reasoning`` on a service with ``svc.video`` (:class:`VideoTools`).

    Returns:
        ``(run, VideoResult)``.

    Raises:
        SegZeroError: QueryError / SettingsError (bad key_frames) / PromptError (max_frames), InputRejected
            (path outside the roots, missing, URLs off), VideoLoadError, ImageTooLargeError, ServerBusy, a
            failed model load.
        asyncio.CancelledError: the call was cancelled (the work has stopped; its folder is deleted).
    """
    from segzero_tool.prompts import validate_query
    from segzero_tool.sources.video_paths import afetch_video, is_video_url, resolve_video_path
    from segzero_tool.video.keyframes import KeyFrames

    tools: VideoTools = svc.video
    validate_query(query)  # cheap checks first: nothing waits in the queue for bad input
    keys = str(KeyFrames.parse(key_frames))
    cap = tools.settings.max_video_frames
    if max_frames is not None and (isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1):
        raise PromptError(f"max_frames must be a whole number of at least 1, got {max_frames!r}"[:200])
    limit = min(max_frames or cap, cap)
    if not isinstance(video, str) or not video.strip():
        raise PromptError("the video is empty; pass the path of a video file or of a folder of frames")
    url = is_video_url(video)
    path = None if url else resolve_video_path(video, svc.policy)
    max_pixels = svc.settings.max_pixels

    async def work(token: CancelToken, calls: CallProgress) -> tuple[TrackRun, Any]:
        from segzero_tool.video.sources import open_video
        from segzero_tool.video.track import track_video

        run_id, folder = tools.store.new_folder()
        frames = _FrameProgress(calls, asyncio.get_running_loop())
        tracker = None
        try:
            await calls.stage(1, "opening the video")
            source = await afetch_video(video, svc.policy, folder) if url else path
            await run_in_thread(token, _probe, open_video, source, max_pixels)
            pipe = await svc._pipeline(calls)
            await calls.stage(3, "loading the video tracker")
            tracker = await run_in_thread(token, tools.trackers.acquire, pipe, progress=calls)
            await calls.stage(4, "tracking")

            def run() -> Any:
                with progress_reporting(frames.sink, tqdm_bars=False):
                    return track_video(pipe, source, query, tracker=tracker, out=folder, key_frames=keys,
                                       overlay=bool(overlay_video), max_frames=limit, max_pixels=max_pixels)

            result = await run_in_thread(token, run)
            await frames.drain()
            await calls.stage(5, "indexing the frames")
            run_info = await run_in_thread(token, tools.store.add, run_id, folder, result.to_dict())
            return run_info, result
        except BaseException as exc:
            tools.store.discard(run_id, folder)
            if isinstance(exc, asyncio.CancelledError):
                log.info("%s cancelled after %d frame(s)", TRACK_TOOL, frames.frames_done)
            raise
        finally:
            with anyio.CancelScope(shield=True):  # a cancelled call still hands its tracker back, reset
                await frames.drain()
                if tracker is not None:
                    await anyio.to_thread.run_sync(tools.trackers.release, tracker)

    return await svc._steer(work, progress)


def _probe(open_video: Callable[..., Any], source: Any, max_pixels: int) -> Any:
    """Open the video once (missing, not a video, too large: refused before the models are waited for)."""
    with open_video(source, max_pixels=max_pixels) as src:
        return src.info


# --- registration -------------------------------------------------------------------------------------


def add_track_tool(server: Any, svc: Any, settings: Any) -> bool:
    """Register ``track_by_reasoning`` and its resources when wanted (:func:`video_wanted`); ``svc.video`` is
    set to the :class:`VideoTools` (a ready one on ``svc`` is used, e.g. with a test tracker)."""
    if not video_wanted(settings, svc):
        svc.video = None
        return False
    tools = getattr(svc, "video", None) or VideoTools(settings)
    svc.video = tools
    store = tools.store

    async def track_tool(
        ctx: Context,
        video: VideoArg,
        query: TrackQueryArg,
        key_frames: KeyFramesArg = "first",
        max_frames: MaxFramesArg = None,
        overlay_video: OverlayVideoArg = False,
    ) -> Annotated[CallToolResult, TrackOutput]:
        async def progress(step: float, message: str) -> None:
            await ctx.report_progress(step, STAGES, message)

        try:
            run, result = await track_by_reasoning(svc, video, query, key_frames=key_frames, max_frames=max_frames,
                                                   overlay_video=overlay_video, progress=progress)
        except SegZeroError as exc:
            log.info("%s refused: %s", TRACK_TOOL, exc)
            raise compat.ToolError(track_error_message(exc)) from None
        out, text, links = encode_run(run, result, resource_links=settings.resource_links)
        content: list[Any] = [compat.TextContent(type="text", text=text)]
        content.extend(compat.ResourceLink(type="resource_link", **link) for link in links)
        return compat.tool_result(content, out.model_dump(mode="json"))

    title = "Track objects in a video by reasoning"
    server.tool(name=TRACK_TOOL, title=title, description=TRACK_DESCRIPTION,
                annotations=compat.ToolAnnotations(title=title, readOnlyHint=True, destructiveHint=False,
                                                   idempotentHint=False, openWorldHint=settings.allow_urls))(track_tool)

    async def read(fn: Any, *args: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, *args)
        except ResultNotFound as exc:
            raise compat.ResourceNotFoundError(str(exc)) from None

    def number(value: str, what: str) -> int:
        if not value.isdigit():
            raise compat.ResourceNotFoundError(f"{what} must be a number 0, 1, 2, ..., got {value[:40]!r}")
        return int(value)

    @server.resource("segzero://tracks/{run_id}/frames/{index}", name="track_frame", mime_type="application/json",
                     description="One frame of a tracking run: its objects (track_id, box, score, area, COCO RLE "
                                 "mask) and track events.")
    async def track_frame(run_id: str, index: str) -> str:
        row = await read(store.frame, run_id, number(index, "the frame index"))
        return json.dumps(row, ensure_ascii=False)

    @server.resource("segzero://tracks/{run_id}/frames/{index}/objects/{track_id}/mask.png", name="track_mask",
                     mime_type="image/png", description="One tracked object's mask on one frame: 0/255 PNG, frame size.")
    async def track_mask(run_id: str, index: str, track_id: str) -> bytes:
        return await read(store.object_mask_png, run_id, number(index, "the frame index"),
                          number(track_id, "the track id"))

    @server.resource("segzero://tracks/{run_id}/tracks.json", name="tracks_json", mime_type="application/json",
                     description="A whole tracking run: tracks (span, status, area over time), key frames, warnings.")
    async def tracks_json(run_id: str) -> str:
        run = await read(store.get, run_id)
        return json.dumps({"run_id": run.id, "frames": run.frames, **run.result}, ensure_ascii=False)

    @server.resource("segzero://tracks/{run_id}/timeline.png", name="track_timeline", mime_type="image/png",
                     description="A tracking run at a glance: one row per track over the frames, in its colour where "
                                 "it is visible, key frames ticked.")
    async def track_timeline(run_id: str) -> bytes:
        return await read(store.timeline_png, run_id)

    @server.resource("segzero://tracks/{run_id}/overlay.mp4", name="track_overlay", mime_type="video/mp4",
                     description="The tracking run's video with the masks drawn (when asked for with overlay_video).")
    async def track_overlay(run_id: str) -> bytes:
        return await read(store.overlay_mp4, run_id)

    return True


__all__ = ["TRACK_DESCRIPTION", "TRACK_INSTRUCTIONS", "TRACK_TOOL", "TrackOutput", "TrackerPool", "VideoTools",
           "add_track_tool", "encode_run", "track_by_reasoning", "video_wanted"]
