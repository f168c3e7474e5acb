"""The finished runs of ``track_by_reasoning``, readable back by ``run_id`` as MCP resources.

Each run writes its output folder (``frames.jsonl``, ``tracks.json``, ``track.json``, optionally
``overlay.mp4``; see :func:`segzero_tool.video.track.track_video`) inside one temporary folder that this
store owns. Per-frame resources are read from ``frames.jsonl`` on demand: one pass when the run is added
records each frame's byte offset (and its events), so reading frame ``i`` is one seek, and nothing per frame
stays in memory. Runs are kept for ``ttl_s`` seconds and at most ``max_runs`` of them / about ``max_bytes``
on disk (least recently used first); an evicted run's folder is deleted, and the whole temporary folder is
deleted when the store is closed or garbage-collected (also at interpreter exit).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import threading
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .store import ResultNotFound

log = logging.getLogger("segzero_tool.mcp_server")

TRACKS_SCHEME = "segzero://tracks/"
#: Largest overlay video served as a resource (its base64 is a third larger).
MAX_OVERLAY_BYTES = 100_000_000


def track_uri(run_id: str, part: str) -> str:
    """``segzero://tracks/{run_id}/{part}``."""
    return f"{TRACKS_SCHEME}{run_id}/{part}"


@dataclass
class TrackRun:
    """One finished run.

    Attributes:
        id: the run's id (``run_id``).
        folder: its output folder (inside the store's temporary folder).
        result: ``VideoResult.to_dict()`` without the server's folder path.
        frames: number of frames in ``frames.jsonl``.
        events: ``(frame, key_frame, events)`` of the frames that are key frames or have track events.
        nbytes: bytes of its folder on disk.
    """

    id: str
    folder: Path
    created: float
    result: dict[str, Any]
    frames: int = 0
    events: list[tuple[int, bool, list[dict[str, Any]]]] = field(default_factory=list)
    nbytes: int = 0
    offsets: dict[int, int] = field(default_factory=dict, repr=False)


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


class TrackStore:
    """Output folders of recent tracking runs (thread-safe).

    Args:
        max_runs: keep at most this many runs.
        ttl_s: seconds a run stays readable after it finished.
        max_bytes: keep about this many bytes on disk (a larger run alone is still kept, alone).
        clock: monotonic seconds (tests pass a fake one).
    """

    def __init__(self, max_runs: int = 8, ttl_s: float = 1800.0, max_bytes: int = 2_000_000_000, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_runs, self.ttl_s, self.max_bytes, self.clock = int(max_runs), float(ttl_s), int(max_bytes), clock
        self.root = Path(tempfile.mkdtemp(prefix="segzero-mcp-tracks-"))
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(self.root), True)
        self._runs: OrderedDict[str, TrackRun] = OrderedDict()
        self._lock = threading.Lock()
        self._evicted = 0

    # --- writing -------------------------------------------------------------------------------

    def new_folder(self) -> tuple[str, Path]:
        """A new run id and its (empty) output folder."""
        run_id = "t" + uuid.uuid4().hex[:15]
        folder = self.root / run_id
        folder.mkdir(parents=True)
        return run_id, folder

    def discard(self, run_id: str, folder: Path | None = None) -> None:
        """Drop a run (finished or not) and delete its folder."""
        with self._lock:
            run = self._runs.pop(run_id, None)
        target = run.folder if run is not None else folder
        if target is not None:
            shutil.rmtree(target, ignore_errors=True)

    def add(self, run_id: str, folder: Path, result: dict[str, Any]) -> TrackRun:
        """Register the finished run in ``folder``: index ``frames.jsonl`` (offsets and events), then evict."""
        run = TrackRun(run_id, folder, self.clock(), {k: v for k, v in result.items() if k != "out_dir"})
        offset = 0
        path = folder / "frames.jsonl"
        if path.exists():
            with open(path, "rb") as fh:
                for line in fh:
                    start, offset = offset, offset + len(line)
                    try:
                        row = json.loads(line)
                        index = int(row["frame"])
                    except (ValueError, KeyError, TypeError):
                        continue  # a torn last line of an interrupted write
                    run.offsets[index] = start
                    events = [e for e in row.get("events") or () if isinstance(e, dict)]
                    if row.get("key_frame") or events:
                        run.events.append((index, bool(row.get("key_frame")), events))
        run.frames = len(run.offsets)
        run.nbytes = _folder_bytes(folder)
        doomed: list[Path] = []
        with self._lock:
            self._runs[run_id] = run
            self._expire(doomed)
            while len(self._runs) > 1 and (len(self._runs) > self.max_runs or
                                           sum(r.nbytes for r in self._runs.values()) > self.max_bytes):
                doomed.append(self._runs.popitem(last=False)[1].folder)
                self._evicted += 1
        for old in doomed:
            shutil.rmtree(old, ignore_errors=True)
        return run

    def _expire(self, doomed: list[Path]) -> None:
        now = self.clock()
        for rid in [r.id for r in self._runs.values() if now - r.created > self.ttl_s]:
            doomed.append(self._runs.pop(rid).folder)
            self._evicted += 1

    def close(self) -> None:
        """Forget every run and delete the temporary folder."""
        with self._lock:
            self._runs.clear()
        self._finalizer()

    # --- reading -------------------------------------------------------------------------------

    def get(self, run_id: str) -> TrackRun:
        """The run ``run_id`` (marks it as recently used).

        Raises:
            ResultNotFound: unknown or expired id.
        """
        doomed: list[Path] = []
        with self._lock:
            self._expire(doomed)
            run = self._runs.get(run_id) if isinstance(run_id, str) else None
            if run is not None:
                self._runs.move_to_end(run_id)
        for old in doomed:
            shutil.rmtree(old, ignore_errors=True)
        if run is None:
            shown = repr(run_id)[:80]
            raise ResultNotFound(f"unknown or expired tracking run {shown}; runs are kept for {self.ttl_s:.0f} s "
                                 f"and the last {self.max_runs} calls. Call track_by_reasoning again")
        return run

    def frame(self, run_id: str, index: int) -> dict[str, Any]:
        """Frame ``index`` of a run: its ``frames.jsonl`` line (objects with COCO RLE masks, events)."""
        run = self.get(run_id)
        start = run.offsets.get(index)
        if start is None:
            valid = f"0 to {run.frames - 1}" if run.frames else "none: the run has no frames"
            raise ResultNotFound(f"tracking run {run_id!r} has no frame {index}; frames: {valid}")
        try:
            with open(run.folder / "frames.jsonl", "rb") as fh:
                fh.seek(start)
                return json.loads(fh.readline())
        except OSError:
            raise ResultNotFound(f"tracking run {run_id!r} has expired; call track_by_reasoning again") from None

    def object_mask_png(self, run_id: str, index: int, track_id: int) -> bytes:
        """The 0/255 PNG mask of track ``track_id`` on frame ``index``."""
        from segzero_tool.masks import mask_to_png_bytes, rle_decode

        row = self.frame(run_id, index)
        for obj in row.get("objects") or ():
            if obj.get("track_id") == track_id and obj.get("mask") is not None:
                return mask_to_png_bytes(rle_decode(obj["mask"]))
        there = sorted(o.get("track_id") for o in row.get("objects") or ())
        raise ResultNotFound(f"track {track_id} is not on frame {index} of run {run_id!r}; tracks on that frame: "
                             f"{there or 'none'}")

    def overlay_mp4(self, run_id: str) -> bytes:
        """The run's overlay video (when the call asked for one)."""
        run = self.get(run_id)
        path = run.folder / "overlay.mp4"
        if not path.is_file():
            raise ResultNotFound(f"tracking run {run_id!r} has no overlay video; call track_by_reasoning with "
                                 "overlay_video=true")
        size = path.stat().st_size
        if size > MAX_OVERLAY_BYTES:
            raise ResultNotFound(f"the overlay video of run {run_id!r} has {size:,} bytes, more than the "
                                 f"{MAX_OVERLAY_BYTES:,} served as a resource; track fewer frames (max_frames)")
        return path.read_bytes()

    def timeline_png(self, run_id: str) -> bytes:
        """The run's ``timeline.png``: one row per track over the frames, coloured where it is visible."""
        path = self.get(run_id).folder / "timeline.png"
        if not path.is_file():
            raise ResultNotFound(f"tracking run {run_id!r} has no timeline picture (it read no frame)")
        return path.read_bytes()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"count": len(self._runs), "bytes": sum(r.nbytes for r in self._runs.values()),
                    "max_runs": self.max_runs, "max_bytes": self.max_bytes, "ttl_s": self.ttl_s,
                    "evicted": self._evicted}

    def ids(self) -> list[str]:
        with self._lock:
            return list(self._runs)


__all__ = ["TRACKS_SCHEME", "TrackRun", "TrackStore", "track_uri"]
