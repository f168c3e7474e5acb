"""``track_video``: a whole clip through a :class:`~segzero_tool.video.session.TrackingSession`, written as it goes.

With ``out`` the run writes, in that folder:

* ``frames.jsonl``: one line per frame (:meth:`VideoFrameResult.to_record`), appended and flushed as each frame
  finishes, so a run that is killed loses at most the frame it was on;
* ``tracks.json``: one summary per track (first / last frame, frames visible, lost events, area over time);
* ``track.json``: the run's settings and status (``running``, ``complete``, ``cancelled``, ``failed``);
* ``overlay.mp4``: the frames with each track's mask, box and id (written to ``overlay.mp4.partial`` and renamed
  when complete);
* ``timeline.png``: one row per track over the frames, coloured where it is visible, key frames ticked
  (:func:`~segzero_tool.video.timeline.draw_timeline`), written when the run completes or stops.

Run again on the same folder with the same settings and it resumes after the last complete frame: the frames before
are decoded but not processed (their overlay is redrawn from ``frames.jsonl``), and the tracker restarts on the last
recorded frame from its recorded masks. Other settings are refused unless ``restart=True``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write_bytes
from ..limits import DEFAULT_MAX_PIXELS
from ..masks import rle_decode
from ..progress import report
from ..prompts import validate_query
from ..settings import SettingsError
from .keyframes import KeyFrames
from .result import TrackSummary, VideoFrameResult, VideoResult
from .session import DEFAULT_MATCH_IOU, TrackingSession

logger = logging.getLogger(__name__)

FRAMES_FILE = "frames.jsonl"
TRACKS_FILE = "tracks.json"
MANIFEST_FILE = "track.json"
OVERLAY_FILE = "overlay.mp4"
TIMELINE_FILE = "timeline.png"
#: Layout version of the files above.
VIDEO_SCHEMA = 1
#: ``frames.jsonl`` is fsync'ed every this many frames (and at the end).
SYNC_EVERY = 25
#: On resume, tracks lost at most this many frames before the last recorded one are started again where they were
#: last seen (the frames since are replayed through the tracker), so the tracker can find them again; tracks lost
#: longer ago stay lost (a key-frame detection can still bring them back by their last mask).
REPLAY_FRAMES = 300
#: Longest side of the overlay video's frames.
OVERLAY_MAX_SIDE = 1280
_SETTING_KEYS = ("query", "source", "key_frames", "match_iou", "max_frames", "max_objects", "tracker", "reasoner",
                 "segmenter")


def track_video(
    pipeline: Any,
    video: Any,
    query: str,
    *,
    tracker: Any = None,
    out: str | os.PathLike[str] | None = None,
    key_frames: str | KeyFrames = "first",
    match_iou: float = DEFAULT_MATCH_IOU,
    overlay: bool = True,
    restart: bool = False,
    max_frames: int | None = None,
    max_objects: int | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    fps: float | None = None,
    on_frame: Callable[[VideoFrameResult], None] | None = None,
) -> VideoResult:
    """Find what ``query`` asks for on the key frames of ``video`` and track every object through it.

    Args:
        pipeline: a :class:`~segzero_tool.pipeline.SegZeroPipeline` with a reasoner and a segmenter.
        video: a video file (MP4, WebM, MOV, ...), a folder of frames, or an iterable of frames (a live camera:
            consumed as it comes); see :func:`~segzero_tool.video.sources.open_video`.
        query: what to find.
        tracker: a :class:`~segzero_tool.video.tracker.VideoTracker`, or a name / hub id / folder for
            :func:`~segzero_tool.video.tracker.load_tracker`; ``None``: the pipeline segmenter's checkpoint.
        out: the output folder (see the module docstring); ``None`` keeps the frames in memory (short clips).
        key_frames: ``first`` (default), ``every:N`` frames or ``every:Ns`` seconds.
        match_iou: mask IoU at or above which a key-frame detection continues a track.
        overlay: write ``overlay.mp4`` (with ``out``).
        restart: start over in an ``out`` that holds a run with other settings (or an unfinished one).
        max_frames: stop after this many frames.
        max_objects: cap on detections per key frame.
        max_pixels: refuse frames with more pixels (per frame).
        fps: frame rate of a folder or an iterator (their frames carry no time).
        on_frame: called with each frame's result as it finishes.

    Returns:
        A :class:`~segzero_tool.video.result.VideoResult`; its :meth:`~VideoResult.frames` stream the per-frame
        results back from ``out`` (or memory).

    Raises:
        VideoLoadError / ImageTooLargeError: the video cannot be read, or a frame is over ``max_pixels``.
        QueryError, SettingsError: bad arguments, or ``out`` holds another run's files (without ``restart``).
        OperationCancelled: the call was cancelled; what was written stays valid and resumable.
    """
    from .sources import open_video

    validate_query(query, getattr(pipeline, "max_query_chars", 2000))
    policy = KeyFrames.parse(key_frames)
    if max_frames is not None and (not isinstance(max_frames, int) or isinstance(max_frames, bool)
                                   or max_frames <= 0):
        raise SettingsError(f"max_frames must be a positive whole number, got {max_frames!r}")
    if isinstance(tracker, (str, os.PathLike)):
        from .tracker import load_tracker

        tracker = load_tracker(str(tracker), device=getattr(pipeline.segmenter, "device", "auto"))
    source = open_video(video, max_pixels=max_pixels, max_frames=max_frames, fps=fps)
    try:
        check_key_frame_times(policy, source.info, fps)
    except SettingsError:
        source.close()
        raise
    out_dir = Path(out) if out is not None else None
    settings = {
        "query": query, "source": source.info.source, "key_frames": str(policy), "match_iou": float(match_iou),
        "max_frames": max_frames, "max_objects": max_objects,
        "tracker": getattr(tracker, "model_id", None) if tracker is not None
        else getattr(pipeline.segmenter, "model_id", None),
        "reasoner": getattr(getattr(pipeline, "reasoner", None), "model_id", None),
        "segmenter": getattr(getattr(pipeline, "segmenter", None), "model_id", None),
    }
    with source:
        resume = _prepare_out(out_dir, settings, restart, source.rewindable) if out_dir is not None else None
        if resume is not None and resume.complete:
            return load_video_result(out_dir)  # type: ignore[arg-type]
        session = TrackingSession(pipeline, query, tracker=tracker, key_frames=policy, match_iou=match_iou,
                                  max_objects=max_objects, fps=source.info.fps or fps)
        try:
            return _run(session, source, settings, out_dir, resume, overlay, on_frame, fps)
        finally:
            session.close()


def check_out_settings(out: str | os.PathLike[str], settings: dict[str, Any]) -> None:
    """Refuse, before any model loads, an ``out`` that holds a run whose settings differ from ``settings`` in one of
    the keys given (the command line knows the query, video, key frames, ... before it loads the models;
    :func:`track_video` checks every setting again).

    Raises:
        SettingsError: a key of ``settings`` differs from the run in ``out`` (pass ``restart`` to start over).
    """
    manifest_path = Path(out) / MANIFEST_FILE
    try:
        old = json.loads(manifest_path.read_text(encoding="utf-8"))["settings"]
    except (OSError, ValueError, KeyError, TypeError):
        return  # nothing there, or unreadable: track_video says so
    _refuse_other(out, old, settings)


def _refuse_other(out: str | os.PathLike[str], old: dict[str, Any], settings: dict[str, Any]) -> None:
    differ = [k for k in _SETTING_KEYS if k in settings and old.get(k) != settings[k]]
    if differ:
        raise SettingsError(f"{str(out)!r} holds a run with other settings ({', '.join(differ)}); pass "
                            "restart=True (--restart) to start over there, or another folder")


def check_key_frame_times(policy: KeyFrames, info: Any, fps: float | None) -> None:
    """Refuse key frames counted in seconds on a folder of frames without a frame rate (it has no times).

    Raises:
        SettingsError: ``every:Ns`` on a folder and no ``fps``.
    """
    if policy.kind == "seconds" and info.kind == "folder" and fps is None:
        raise SettingsError(f"key frames {policy} count seconds, and a folder of frames has no times; give its frame "
                            "rate (fps=, --fps) or count frames (every:N)")


class _Resume:
    """What a folder holds of an earlier run with the same settings."""

    def __init__(self) -> None:
        self.complete = False
        self.last_index = -1
        self.tracks: dict[int, TrackSummary] = {}
        self.key_frames: list[int] = []
        self.last_key_time: float | None = None
        self.last_rle: dict[int, dict[str, Any]] = {}
        self.last_seen: dict[int, int] = {}
        self.visible: set[int] = set()
        self.last_record: dict[str, Any] | None = None


def _prepare_out(out_dir: Path, settings: dict[str, Any], restart: bool, rewindable: bool) -> _Resume | None:
    """Check ``out_dir`` against ``settings``; return what to resume from (``None``: a fresh run)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise SettingsError(f"--out {str(out_dir)!r} is a file; give a folder")
    manifest_path = out_dir / MANIFEST_FILE
    frames_path = out_dir / FRAMES_FILE
    if out_dir.is_dir() and not manifest_path.exists() and frames_path.exists() and not restart:
        raise SettingsError(f"{str(out_dir)!r} holds {FRAMES_FILE} without {MANIFEST_FILE}; pass restart=True "
                            "(--restart) to start over, or another folder")
    if manifest_path.exists():
        try:
            old = json.loads(manifest_path.read_text(encoding="utf-8"))
            old_settings = old["settings"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            if not restart:
                raise SettingsError(f"{str(manifest_path)!r} is unreadable ({exc}); pass restart=True (--restart) to "
                                    "start over") from exc
            old, old_settings = {}, None
        if restart:
            _clear(out_dir)
        else:
            _refuse_other(out_dir, old_settings, {k: settings.get(k) for k in _SETTING_KEYS})
            if not rewindable:
                raise SettingsError(f"{str(out_dir)!r} holds an earlier run, and frames from an iterator cannot be "
                                    "read again to resume it; pass restart=True (--restart) or another folder")
            resume = _read_frames(frames_path)
            resume.complete = old.get("status") == "complete"
            return resume
    elif restart and out_dir.is_dir():
        _clear(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return None


def _clear(out_dir: Path) -> None:
    for name in (FRAMES_FILE, TRACKS_FILE, MANIFEST_FILE, OVERLAY_FILE, OVERLAY_FILE + ".partial", TIMELINE_FILE):
        path = out_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _read_frames(path: Path) -> _Resume:
    """Replay ``frames.jsonl`` (dropping a last line cut short by a crash) into the state a run resumes from."""
    state = _Resume()
    if not path.exists():
        return state
    good = 0
    with open(path, "rb") as f:
        for raw in f:
            if not raw.endswith(b"\n"):
                break
            try:
                record = json.loads(raw)
                index = int(record["frame"])
            except (ValueError, KeyError, TypeError):
                break
            good += len(raw)
            _replay(state, record, index)
    if path.stat().st_size != good:  # a torn last line: cut it off before appending
        with open(path, "r+b") as f:
            f.truncate(good)
    return state


def _replay(state: _Resume, record: dict[str, Any], index: int) -> None:
    visible: set[int] = set()
    for item in record.get("objects", []):
        tid = int(item["track_id"])
        summary = state.tracks.get(tid)
        if summary is None:
            summary = state.tracks[tid] = TrackSummary(track_id=tid, first_frame=index, last_frame=index)
        summary.seen(index, tuple(item["box"]) if item.get("box") else None, int(item.get("area", 0)))
        if item.get("mask"):
            state.last_rle[tid] = item["mask"]
            state.last_seen[tid] = index
        visible.add(tid)
    for event in record.get("events", []):
        tid = int(event["track_id"])
        if event["kind"] == "lost" and tid in state.tracks:
            state.tracks[tid].status = "lost"
            state.tracks[tid].lost_at.append(index)
        elif event["kind"] == "new" and tid not in state.tracks:
            state.tracks[tid] = TrackSummary(track_id=tid, first_frame=index, last_frame=index, status="lost",
                                             lost_at=[index])
    if record.get("key_frame"):
        state.key_frames.append(index)
        state.last_key_time = record.get("time_s")
    state.visible = visible
    state.last_index = index
    state.last_record = record


def _run(session: TrackingSession, source: Any, settings: dict[str, Any], out_dir: Path | None,
         resume: _Resume | None, overlay: bool, on_frame: Callable[[VideoFrameResult], None] | None,
         fps: float | None) -> VideoResult:
    info = source.info
    total = info.frame_count
    if total is not None and settings["max_frames"]:
        total = min(total, settings["max_frames"])
    kept: list[VideoFrameResult] | None = [] if out_dir is None else None
    frames_file = None
    writer = None
    old_records: Iterator[dict[str, Any]] | None = None
    done = 0
    status = "failed"
    replay: dict[int, list[int]] = {}  # frame -> tracks to start there when resuming
    if resume is not None and resume.last_index >= 0:
        session.restore(list(resume.tracks.values()), resume.key_frames,
                        {t: rle_decode(r) for t, r in resume.last_rle.items()}, resume.visible, resume.last_index,
                        resume.last_key_time)
        old_records = _records(out_dir / FRAMES_FILE)  # type: ignore[operator]
        for tid, seen in resume.last_seen.items():
            if seen >= resume.last_index - REPLAY_FRAMES:
                replay.setdefault(seen, []).append(tid)
    replay_from = min(replay, default=None)
    try:
        if out_dir is not None:
            _write_manifest(out_dir, settings, info, "running", resume.last_index + 1 if resume else 0)
            frames_file = open(out_dir / FRAMES_FILE, "a", encoding="utf-8")  # noqa: SIM115 - closed in finally
        for frame in source:
            if writer is None and overlay and out_dir is not None:
                from .encode import Mp4Writer

                h, w = frame.image.shape[:2]
                scale = min(1.0, OVERLAY_MAX_SIDE / max(h, w))
                writer = Mp4Writer(out_dir / OVERLAY_FILE, fps=_overlay_fps(info.fps or fps),
                                   width=max(2, round(w * scale)), height=max(2, round(h * scale)))
            if resume is not None and frame.index <= resume.last_index:
                record = next(old_records) if old_records is not None else None  # type: ignore[call-overload]
                if writer is not None and record is not None:
                    writer.write(_draw(frame.image, VideoFrameResult.from_record(record)))
                if replay_from is not None and frame.index >= replay_from:
                    session.reseed(frame, {t: rle_decode(resume.last_rle[t]) for t in replay.get(frame.index, [])},
                                   reset=frame.index == replay_from)
                done = frame.index + 1
                continue
            result = session.push(frame)
            done = frame.index + 1
            if frames_file is not None:
                frames_file.write(json.dumps(result.to_record(), separators=(",", ":")) + "\n")
                frames_file.flush()
                if done % SYNC_EVERY == 0:
                    os.fsync(frames_file.fileno())
            if writer is not None:
                writer.write(_draw(frame.image, result))
            if kept is not None:
                kept.append(result)
            if on_frame is not None:
                on_frame(result)
            report("tracking", f"frame {done}" + (f"/{total}" if total else "") + f": {len(result.track_ids)} "
                   "object(s) visible", done=done, total=total)
        status = "complete"
    except BaseException as exc:
        from ..cancel import OperationCancelled

        status = "cancelled" if isinstance(exc, (OperationCancelled, KeyboardInterrupt)) else "failed"
        raise
    finally:
        if frames_file is not None:
            frames_file.flush()
            os.fsync(frames_file.fileno())
            frames_file.close()
        if writer is not None:
            if status == "complete":
                writer.close()
            else:
                writer.abort()
        if out_dir is not None:
            _write_tracks(out_dir, session)
            _write_timeline(out_dir)
            _write_manifest(out_dir, settings, info, status, done, warnings=list(source.warnings))
    if done == 0:
        from ..errors import VideoLoadError

        raise VideoLoadError(f"{info.source}: no frames")
    return VideoResult(query=settings["query"], source=info.source, info=_info(info), frames_done=done,
                       key_frames=list(session.key_frames), tracks=session.summaries(), out_dir=out_dir,
                       warnings=list(source.warnings), _frames=kept)


def _records(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.endswith("\n") and line.strip():
                yield json.loads(line)


def _overlay_fps(fps: float | None) -> float:
    return float(fps) if fps and 0 < fps <= 240 else 10.0


def _draw(image: np.ndarray, result: VideoFrameResult) -> Any:
    from ..overlay import draw_overlay

    return draw_overlay(image, result.result.objects, max_side=OVERLAY_MAX_SIDE, draw_points=False,
                        ids=result.track_ids)


def _info(info: Any) -> dict[str, Any]:
    return {"kind": info.kind, "source": info.source, "width": info.width, "height": info.height, "fps": info.fps,
            "frame_count": info.frame_count}


def _write_manifest(out_dir: Path, settings: dict[str, Any], info: Any, status: str, frames_done: int, *,
                    warnings: list[str] | None = None) -> None:
    body = {"schema": VIDEO_SCHEMA, "status": status, "frames_done": frames_done, "settings": settings,
            "info": _info(info), "warnings": warnings or []}
    atomic_write_bytes(out_dir / MANIFEST_FILE, (json.dumps(body, indent=2) + "\n").encode("utf-8"))


def _write_tracks(out_dir: Path, session: TrackingSession) -> None:
    body = {"schema": VIDEO_SCHEMA, "key_frames": session.key_frames,
            "tracks": [t.to_dict() for t in session.summaries()]}
    atomic_write_bytes(out_dir / TRACKS_FILE, (json.dumps(body) + "\n").encode("utf-8"))


def _write_timeline(out_dir: Path) -> None:
    import io

    from .timeline import draw_timeline

    try:
        image = draw_timeline(out_dir / FRAMES_FILE)
    except (OSError, ValueError) as exc:  # a picture must never break the run it describes
        logger.warning("timeline.png not written: %s", exc)
        return
    if image is not None:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        atomic_write_bytes(out_dir / TIMELINE_FILE, buffer.getvalue())


def load_video_result(out_dir: str | os.PathLike[str]) -> VideoResult:
    """Read a run's folder back (``track.json`` and ``tracks.json``; frames stream from ``frames.jsonl``).

    Raises:
        SettingsError: the folder holds no tracking run.
    """
    folder = Path(out_dir)
    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
        tracks = json.loads((folder / TRACKS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SettingsError(f"{str(folder)!r} holds no readable tracking run ({exc})") from exc
    return VideoResult(query=manifest["settings"]["query"], source=manifest["settings"]["source"],
                       info=manifest.get("info", {}), frames_done=int(manifest.get("frames_done", 0)),
                       key_frames=list(tracks.get("key_frames", [])),
                       tracks=[TrackSummary.from_dict(t) for t in tracks.get("tracks", [])], out_dir=folder,
                       warnings=list(manifest.get("warnings", [])))


__all__ = ["FRAMES_FILE", "MANIFEST_FILE", "check_key_frame_times", "check_out_settings", "OVERLAY_FILE", "TIMELINE_FILE", "TRACKS_FILE", "load_video_result", "track_video"]
