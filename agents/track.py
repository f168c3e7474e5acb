"""``track_by_reasoning`` as a LangChain tool: find the objects a query refers to in a video and follow them
through the frames (the reasoner on key frames, SAM2's video tracker in between); the work is
:func:`segzero_tool.video.track.track_video`.

>>> from segzero_tool import SegZeroPipeline
>>> from segzero_tool.agents import TrackByReasoningTool
>>> tool = TrackByReasoningTool(pipeline=SegZeroPipeline.from_pretrained(preset="light"))
>>> msg = tool.invoke({"type": "tool_call", "id": "1", "name": tool.name,
...                    "args": {"video": "clips/kitchen.mp4", "query": "the cup someone drinks from"}})
>>> msg.content        # the summary the model reads: run id, tracks with their frames and status
>>> msg.artifact       # the VideoResult: .tracks, .frames() streams every frame's masks back from disk

Same conventions as the other tools (:mod:`segzero_tool.agents.tool`): ``response_format="content_and_artifact"``,
the video path checked against ``allowed_roots`` (default: the working directory) like an image path, http(s)
URLs downloaded only with ``allow_urls=True`` (the image download's checks and ``max_image_bytes`` limit), bad
input a :class:`~langchain_core.tools.ToolException` saying what to send instead (a ``ToolMessage`` with
``status="error"``), never a traceback. Each call writes its run (``frames.jsonl``, ``tracks.json``, ...) to a
folder under ``out_root`` (default: a temporary folder the tool owns, deleted with it); the last ``keep_runs``
runs are kept, so an artifact's ``frames()`` works until that many newer calls were made. With ``ainvoke`` a
cancelled call stops before its next frame, and ``segzero_progress`` custom events report the frame reached.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import threading
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

from langchain_core.tools import BaseTool, ToolException
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from segzero_tool.cancel import CancelToken, OperationCancelled, cancellation
from segzero_tool.errors import (
    ImageSourceRejected,
    ImageTooLargeError,
    QueryError,
    SegZeroError,
    VideoLoadError,
)
from segzero_tool.images import DEFAULT_MAX_PIXELS
from segzero_tool.progress import progress_reporting

from .steering import _validation_message
from .tool import ImageIntakeFields, _ProgressEvents

TOOL_NAME = "track_by_reasoning"
_VIDEO_FORMS = {
    False: "the path of a video file (MP4, WebM, MOV, ...) or of a folder of frame images; URLs are not downloaded",
    True: "the path of a video file (MP4, WebM, MOV, ...) or of a folder of frame images, or a public http(s) URL",
}

DESCRIPTION = (
    "Find the objects in a VIDEO that a request refers to (it may need reasoning: 'the cup someone drinks from', "
    "'the dog that runs away') and follow each one through the frames with a pixel mask per frame. A "
    "vision-language model looks at key frames; SAM2's video tracker carries the masks to the other frames and "
    "notices when an object is lost (hidden, out of the picture) and found again. Returns a run id and, per track "
    "(#1, #2, ...), its first and last frame, frames visible and status (active on the last frame, or lost, with "
    "the frames where it was lost). key_frames: 'first' (default, cheapest), 'every:N' frames or 'every:Ns' "
    "seconds to also pick up objects that appear later. Nothing found is a normal answer with no tracks. Boxes "
    "are [x1, y1, x2, y2] in pixels of the original frames, origin top-left.")


class TrackByReasoningArgs(BaseModel):
    """Arguments of ``track_by_reasoning`` (the descriptions are written for the model)."""

    video: str = Field(description=f"The video: {_VIDEO_FORMS[False]}.")
    query: str = Field(description="What to find and follow, in plain words: 'the person in red', 'what the cat is "
                                   "chasing'. One request per call.")
    key_frames: str = Field("first", description=(
        "When the reasoning model looks: 'first' (only the first frame), 'every:N' (every N frames) or 'every:Ns' "
        "(every N seconds, e.g. 'every:2s')."))
    max_frames: int | None = Field(None, ge=1, description="Process at most this many frames from the start "
                                                            "(default: the tool's limit).")


class TrackByReasoningArgsWithUrls(TrackByReasoningArgs):
    video: str = Field(description=f"The video: {_VIDEO_FORMS[True]}.")


@contextlib.contextmanager
def _video_errors(policy: Any) -> Iterator[None]:
    """This package's errors as ``ToolException`` saying what to do; cancellation and bugs propagate."""
    try:
        yield
    except (ToolException, OperationCancelled):
        raise
    except SegZeroError as exc:
        text = str(exc).rstrip(".")
        if isinstance(exc, ImageSourceRejected):
            hint = ""
        elif isinstance(exc, ImageTooLargeError):
            hint = " Send a downscaled video."
        elif isinstance(exc, VideoLoadError):
            hint = f" Pass {_VIDEO_FORMS[policy.allow_urls]}."
        elif isinstance(exc, QueryError):
            hint = " Call the tool again with a short, non-empty `query` that says what to follow."
        else:
            hint = " Fix the arguments and call the tool again."
        raise ToolException(f"{text}.{hint}") from exc


class TrackByReasoningTool(ImageIntakeFields, BaseTool):
    """Video tracking by reasoning as a LangChain tool.

    Attributes:
        pipeline: a loaded :class:`~segzero_tool.pipeline.SegZeroPipeline` with a reasoner and a SAM2 segmenter.
        tracker: the :class:`~segzero_tool.video.tracker.VideoTracker` to use; by default one is loaded from the
            pipeline's segmenter checkpoint on the first call and kept (calls on one tool take turns with it).
        out_root: folder the runs are written under (default: a temporary folder owned by the tool).
        keep_runs: runs kept on disk; older runs' folders (written by this tool) are deleted.
        max_frames_cap: most frames one call processes.
        overlay: also write ``overlay.mp4`` (the masks drawn) in each run's folder.
        allowed_roots / allow_urls / allow_private_urls / url_timeout_s / max_image_bytes: the intake policy, as
            for images (a downloaded video is limited to ``max_image_bytes``).
        progress_interval_s: with ``ainvoke``, seconds between ``segzero_progress`` custom events.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str = TOOL_NAME
    description: str = DESCRIPTION
    args_schema: type[BaseModel] = TrackByReasoningArgs
    response_format: Literal["content", "content_and_artifact"] = "content_and_artifact"
    handle_tool_error: bool | str | Callable[..., Any] | None = True
    handle_validation_error: bool | str | Callable[..., Any] | None = _validation_message(TOOL_NAME)

    pipeline: Any = Field(exclude=True, repr=False)
    tracker: Any = Field(None, exclude=True, repr=False)
    out_root: Path | None = None
    keep_runs: int = Field(8, ge=1)
    max_frames_cap: int = Field(3000, ge=1)
    overlay: bool = False
    progress_interval_s: float = Field(2.0, gt=0, le=60)

    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _runs: deque = PrivateAttr(default_factory=deque)
    _own_root: Path | None = PrivateAttr(None)

    @field_validator("pipeline")
    @classmethod
    def _check_pipeline(cls, value: Any) -> Any:
        if not callable(getattr(value, "segment", None)) or not hasattr(value, "reasoner"):
            raise ValueError(f"pipeline must be a SegZeroPipeline, got {type(value).__name__}")
        if value.reasoner is None:
            raise ValueError("track_by_reasoning needs a pipeline with a reasoner (it looks for the objects on key "
                             "frames); load it with one")
        return value

    @model_validator(mode="after")
    def _describe_video_forms(self) -> TrackByReasoningTool:
        if self.args_schema in (TrackByReasoningArgs, TrackByReasoningArgsWithUrls):
            self.args_schema = TrackByReasoningArgsWithUrls if self.allow_urls else TrackByReasoningArgs
        return self

    # --- runs on disk -------------------------------------------------------------------------------

    def _root(self) -> Path:
        if self.out_root is not None:
            Path(self.out_root).mkdir(parents=True, exist_ok=True)
            return Path(self.out_root)
        if self._own_root is None:
            self._own_root = Path(tempfile.mkdtemp(prefix="segzero-tracks-"))
            weakref.finalize(self, shutil.rmtree, str(self._own_root), True)
        return self._own_root

    def _new_run(self) -> tuple[str, Path]:
        run_id = "v-" + uuid.uuid4().hex[:12]
        folder = self._root() / run_id
        folder.mkdir(parents=True)
        return run_id, folder

    def _keep(self, folder: Path) -> None:
        self._runs.append(folder)
        while len(self._runs) > self.keep_runs:
            shutil.rmtree(self._runs.popleft(), ignore_errors=True)

    # --- the work -----------------------------------------------------------------------------------

    def _tracker(self) -> Any:
        if self.tracker is None:
            from segzero_tool.video.tracker import load_tracker

            segmenter = self.pipeline.segmenter
            self.tracker = load_tracker(getattr(segmenter, "model_id", None),
                                        device=str(getattr(segmenter, "device", None) or "auto"), progress=False)
        return self.tracker

    def _track(self, video: str, query: str, key_frames: str, max_frames: int | None) -> tuple[str, Any]:
        from segzero_tool.prompts import validate_query
        from segzero_tool.sources.video_paths import fetch_video, is_video_url, resolve_video_path
        from segzero_tool.video.keyframes import KeyFrames
        from segzero_tool.video.track import track_video

        policy = self.image_policy
        with _video_errors(policy):
            validate_query(query)  # cheap checks first
            keys = str(KeyFrames.parse(key_frames))
            limit = min(max_frames or self.max_frames_cap, self.max_frames_cap)
            url = is_video_url(video)
            source: Any = None if url else resolve_video_path(video, policy)
            run_id, folder = self._new_run()
            try:
                if url:
                    source = fetch_video(video, policy, folder)
                with self._lock:
                    tracker = self._tracker()
                    try:
                        result = track_video(self.pipeline, source, query, tracker=tracker, out=folder,
                                             key_frames=keys, overlay=self.overlay, max_frames=limit,
                                             max_pixels=getattr(self.pipeline, "max_pixels", DEFAULT_MAX_PIXELS))
                    finally:
                        tracker.reset()
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise
        self._keep(folder)
        return run_id, result

    def _respond(self, run_id: str, result: Any) -> tuple[str, Any]:
        text = f"run {run_id}: {result.summary()}"
        if result.key_frames:
            shown = ", ".join(map(str, result.key_frames[:20])) + (" ..." if len(result.key_frames) > 20 else "")
            text += f"\nKey frames (the reasoner looked): {shown}."
        text += (f"\nPer-frame masks: {Path(result.out_dir) / 'frames.jsonl'} (one JSON line per frame: track_id, box, "
                 "score, area, COCO RLE mask)." if result.out_dir else "")
        return text, result

    def _run(self, video: str, query: str, key_frames: str = "first", max_frames: int | None = None,
             run_manager: Any = None) -> tuple[str, Any]:
        return self._respond(*self._track(video, query, key_frames, max_frames))

    async def _arun(self, video: str, query: str, key_frames: str = "first", max_frames: int | None = None,
                    run_manager: Any = None) -> tuple[str, Any]:
        token = CancelToken()  # stops the worker thread before its next frame when this call is cancelled
        ticker = _ProgressEvents(self.progress_interval_s)
        ticker.stage = "tracking"
        timer = asyncio.ensure_future(ticker.run())
        try:
            with cancellation(token), progress_reporting(ticker.sink, tqdm_bars=False):
                work = asyncio.ensure_future(asyncio.to_thread(self._track, video, query, key_frames, max_frames))
            try:
                run_id, result = await asyncio.shield(work)
            except asyncio.CancelledError:
                token.cancel("the tool call was cancelled")
                await asyncio.wait([work])  # the thread stops before its next frame; its folder is removed
                if not work.cancelled():
                    work.exception()  # retrieved: OperationCancelled, as asked
                raise
        finally:
            timer.cancel()
        return self._respond(run_id, result)


def make_track_tool(pipeline: Any, **kwargs: Any) -> TrackByReasoningTool:
    """``track_by_reasoning`` over ``pipeline``; ``kwargs`` set the tool's fields (``tracker``, ``out_root``,
    ``allowed_roots``, ``max_frames_cap``, ...)."""
    return TrackByReasoningTool(pipeline=pipeline, **kwargs)


__all__ = ["DESCRIPTION", "TrackByReasoningArgs", "TrackByReasoningTool", "make_track_tool"]
