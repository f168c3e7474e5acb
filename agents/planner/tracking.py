"""The planner with a frame source: one :class:`~segzero_tool.video.session.TrackingSession` per role.

A video file, a folder of frames or a live camera (any iterator of frames) is read one frame at a time.
At a decision (``perceive``) the planner segments the newest frame; between decisions (``observe``, after
the human's approval) every role's session tracks its objects over the new frames. When the followed
object of a role is lost, the next frame is a key frame for that role (``push(frame, key=True)``: the
reasoner is asked again), repeated every ``requery_every`` frames while it stays lost; an object found
again (the same track, or the detection nearest to where it was last seen) is followed from there.

Nothing live enters the graph state: the frame source, the sessions and the last frame stay in a
:class:`VideoRegistry` keyed by the run's ``thread_id``; the state holds JSON-ready records only
(``video``: where the source stands; ``targets``: each role's latest geometry). A run resumed in another
process re-opens a file or folder source and skips the frames it had read; a live source is passed again
with ``{"configurable": {"frames": ...}}``.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .perception import object_record
from .planning import select

#: Kinds of source that can be opened again from their path (after a restart).
_REOPENABLE = ("file", "folder")


@dataclass
class RoleTrack:
    """One role's live tracking: its session, the track it follows and what happened to it."""

    query: str
    session: Any
    follow: int | None = None             # the track id the planner acts on (None: not chosen yet)
    result: Any = None                    # the last VideoFrameResult
    seen: Any = None                      # (frame index, time_s, SegmentedObject) where `follow` was last visible
    anchor: tuple[float, float] | None = None  # centre of the followed object's last known box
    lost_since: int | None = None         # frame where `follow` was lost (None while visible)
    last_requery: int | None = None
    lost_at: list[int] = field(default_factory=list)
    requeried_at: list[int] = field(default_factory=list)
    found_again_at: list[int] = field(default_factory=list)

    def visible(self) -> dict[int, Any]:
        """``track id -> SegmentedObject`` of the tracks present on the last frame."""
        if self.result is None:
            return {}
        return dict(zip(self.result.track_ids, self.result.result.objects, strict=False))


def thread_id(config: Any) -> str:
    """The run's ``thread_id`` (``""`` without one)."""
    return str(((config or {}).get("configurable") or {}).get("thread_id", ""))


def frame_source(state: Any, config: Any) -> Any:
    """The frame source: ``config["configurable"]["frames"]`` (a live camera: never checkpointed), else the
    state's ``frames`` (a path)."""
    live = ((config or {}).get("configurable") or {}).get("frames")
    return live if live is not None else state.get("frames")


def _same(a: Any, b: Any) -> bool:
    """The same frame source: the same object, or the same path."""
    if a is b:
        return True
    paths = (str, os.PathLike)
    return isinstance(a, paths) and isinstance(b, paths) and os.fspath(a) == os.fspath(b)


def _centre(box: Any) -> tuple[float, float]:
    x1, y1, x2, y2 = box
    return (x1 + x2) / 2.0, (y1 + y2) / 2.0


class PlannerVideo:
    """Everything live for one thread: the frame source, the newest frame, a :class:`RoleTrack` per role."""

    def __init__(self, source: Any, given: Any, new_session: Callable[[str], Any], requery_every: int,
                 skip_to: int = -1) -> None:
        self.source = source
        self.given = given                  # what the caller passed (to recognise it on resume)
        self._frames: Iterator[Any] = iter(source)
        self._new_session = new_session
        self.requery_every = requery_every
        self.frame: Any = None              # the newest VideoFrame
        self.frames_read = 0
        self.ended = False
        self.roles: dict[str, RoleTrack] = {}
        self.log: list[str] = []
        while skip_to >= 0:                 # a re-opened source: skip what the run had already seen
            frame = self.next_frame()
            if frame is None or frame.index >= skip_to:
                break

    # --- frames ------------------------------------------------------------------------------

    def next_frame(self) -> Any:
        """Read the next frame (``None`` once the source has ended)."""
        if self.ended:
            return None
        try:
            frame = next(self._frames)
        except StopIteration:
            self.ended = True
            return None
        self.frame = frame
        self.frames_read += 1
        return frame

    # --- pushing frames through the sessions -------------------------------------------------

    def perceive(self, queries: dict[str, str], changed: set[str]) -> None:
        """A decision: read the newest frame; roles in ``changed`` (or new) get a fresh session that
        segments it (a key frame); the others track it."""
        frame = self.next_frame()
        for role in [r for r in queries if r in changed or r not in self.roles]:  # in the task's order
            old = self.roles.pop(role, None)
            if old is not None:
                old.session.close()
            track = RoleTrack(queries[role], self._new_session(queries[role]))
            self.roles[role] = track
            if self.frame is None:
                raise ValueError("the frame source gave no frame")
            self._push(role, track, self.frame, key=None)  # a session's first frame is a key frame
        if frame is not None:
            for role, track in self.roles.items():
                if role not in changed and track.result is not None and track.result.index != frame.index:
                    self._push(role, track, frame, key=None)

    def observe(self, n: int | None) -> int:
        """Track every role over up to ``n`` new frames (``None``: until the source ends); returns how many."""
        done = 0
        while n is None or done < n:
            frame = self.next_frame()
            if frame is None:
                break
            for role, track in self.roles.items():
                self._push(role, track, frame, key=None)
            done += 1
        return done

    def _push(self, role: str, track: RoleTrack, frame: Any, key: bool | None) -> None:
        requery = False
        if key is None and track.lost_since is not None and frame.index > track.lost_since:
            since = track.last_requery if track.last_requery is not None else track.lost_since
            requery = track.last_requery is None or frame.index - since >= self.requery_every
        out = track.session.push(frame, key=True if requery else key)
        track.result = out
        if requery:
            track.last_requery = frame.index
            track.requeried_at.append(frame.index)
        if track.follow is None:
            return
        visible = track.visible()
        if track.follow not in visible and requery and visible:
            # the reasoner found the role again under a new track: follow the one nearest to where it was
            last = track.anchor or (0.0, 0.0)
            track.follow = min(visible, key=lambda t: math.dist(_centre(visible[t].box), last))
        if track.follow in visible:
            if track.lost_since is not None:
                track.found_again_at.append(frame.index)
                self.log.append(f"observe {role}: found again on frame {frame.index} (track {track.follow}"
                                + (", after a re-query)" if requery else ")"))
            track.lost_since, track.last_requery = None, None
            track.seen = (frame.index, frame.time_s, visible[track.follow])
            track.anchor = _centre(visible[track.follow].box)
        else:
            if track.lost_since is None:
                track.lost_since = frame.index
                track.lost_at.append(frame.index)
                self.log.append(f"observe {role}: track {track.follow} lost on frame {frame.index}")
            if requery:
                self.log.append(f"observe {role}: re-queried {track.query!r} on frame {frame.index}: "
                                + ("not found" if not visible else "no match"))

    # --- what the state gets -----------------------------------------------------------------

    def drain(self) -> list[str]:
        """The log lines written since the last call."""
        out, self.log = self.log, []
        return out

    def follow(self, role: str, track_id: int | None) -> None:
        """Follow ``track_id`` for ``role`` from now on (``None``: stop following)."""
        track = self.roles[role]
        if track_id == track.follow:
            return
        track.follow, track.lost_since, track.last_requery = track_id, None, None
        obj = track.visible().get(track_id)
        track.seen = (track.result.index, track.result.time_s, obj) if obj is not None else None
        track.anchor = _centre(obj.box) if obj is not None else track.anchor

    def follow_selected(self, objects: dict[str, dict[str, Any]], choices: dict[str, int]) -> dict[str, Any]:
        """Follow the object the plan uses for each role (``select``); returns :meth:`targets`."""
        for role, p in objects.items():
            obj = select(p, role, choices)
            if obj is not None and obj.get("track_id") is not None and role in self.roles:
                self.follow(role, obj["track_id"])
        return self.targets()

    def perception(self, role: str) -> dict[str, Any]:
        """The role's perception record on the newest frame (the shape ``perceive_query`` gives), every
        object with its ``track_id``; a followed role lists only its followed object (none while lost)."""
        track = self.roles[role]
        res = track.result.result
        pairs = list(zip(track.result.track_ids, res.objects, strict=False))
        if track.follow is not None:
            pairs = [(t, o) for t, o in pairs if t == track.follow]
        # tracked masks carry their own boxes (no reasoner box to compare with): no "agreement" record
        objects = [{**{k: v for k, v in object_record(i, obj).items() if k != "agreement"}, "track_id": int(t)}
                   for i, (t, obj) in enumerate(pairs)]
        w, h = res.image_size
        summary = res.summary() if track.follow is None else (
            f"track {track.follow} on frame {track.result.index}" if objects
            else f"track {track.follow} lost since frame {track.lost_since}")
        return {"query": track.query, "summary": summary, "parse_status": res.parse_status.value,
                "reasoning": res.reasoning, "image_size": [int(w), int(h)], "count": len(objects),
                "objects": objects, "frame": int(track.result.index)}

    def targets(self) -> dict[str, dict[str, Any]]:
        """Each followed role's latest geometry (JSON-ready; see :func:`target_record`)."""
        return {role: target_record(role, t, self.frame) for role, t in self.roles.items() if t.follow is not None}

    def state(self) -> dict[str, Any]:
        """Where the source stands (JSON-ready)."""
        info = self.source.info
        return {"source": str(info.source), "kind": info.kind, "fps": info.fps, "width": info.width,
                "height": info.height, "frame": None if self.frame is None else int(self.frame.index),
                "time_s": None if self.frame is None else self.frame.time_s, "frames_read": self.frames_read,
                "ended": self.ended, "warnings": list(self.source.warnings)}

    def restore(self, queries: dict[str, str], objects: dict[str, dict[str, Any]], choices: dict[str, int]) -> None:
        """Start every role again on the next frame (a run resumed after a restart): a key frame per role,
        following the detection nearest to the box of the object the plan was made with."""
        anchors = {r: (select(objects.get(r), r, choices) or {}).get("box") for r in queries}
        frame = self.next_frame() or self.frame
        if frame is None:
            raise ValueError("the frame source gave no frame")
        for role, query in queries.items():
            track = RoleTrack(query, self._new_session(query))
            self.roles[role] = track
            track.result = track.session.push(frame, key=None)  # its first frame: a key frame
            track.last_requery = frame.index
            track.requeried_at.append(frame.index)
            visible = track.visible()
            track.anchor = _centre(anchors[role]) if anchors.get(role) else None
            if visible:
                last = track.anchor or (0.0, 0.0)
                self.follow(role, min(visible, key=lambda t: math.dist(_centre(visible[t].box), last)))
            else:  # not seen yet: followed as lost (no track), re-queried every requery_every frames
                track.follow, track.lost_since = -1, frame.index
                track.lost_at.append(frame.index)
            self.log.append(f"resume {role}: the frame source was opened again; re-queried {query!r} on frame "
                            f"{frame.index}: " + (f"following track {track.follow}" if visible else "not found"))

    def close(self) -> None:
        for track in self.roles.values():
            track.session.close()
        self.roles.clear()
        if self.source is not self.given:   # opened here
            self.source.close()


def target_record(role: str, track: RoleTrack, frame: Any) -> dict[str, Any]:
    """``role``'s followed object: ``status`` (``tracked`` on the newest frame, or ``lost``), the frame its
    geometry comes from (``frame``, ``time_s``: the last frame it was seen on), ``box``, ``centroid``,
    ``grasp_point``, ``orientation_deg``, ``area``, ``score`` and the frames it was lost, re-queried and
    found again on."""
    from segzero_tool.agents.geometry import object_geometry

    record: dict[str, Any] = {
        "role": role, "query": track.query, "track_id": track.follow if (track.follow or 0) > 0 else None,
        "status": "lost" if track.lost_since is not None else "tracked",
        "current_frame": None if frame is None else int(frame.index),
        "frame": None, "time_s": None, "box": None, "centroid": None, "grasp_point": None,
        "orientation_deg": None, "area": 0, "score": None,
        "lost_since": track.lost_since, "lost_at": list(track.lost_at),
        "requeried_at": list(track.requeried_at), "found_again_at": list(track.found_again_at),
    }
    if track.seen is not None:
        index, time_s, obj = track.seen
        record.update(frame=int(index), time_s=time_s, box=list(obj.box) if obj.box is not None else None,
                      score=round(float(obj.score), 4) if math.isfinite(obj.score) else None)
        if obj.mask is not None:
            geo = object_geometry(obj.mask)
            record.update(area=geo.area, centroid=[round(v, 2) for v in geo.centroid] if geo.centroid else None,
                          grasp_point=list(geo.grasp_point) if geo.grasp_point else None,
                          orientation_deg=None if geo.orientation_deg is None else round(geo.orientation_deg, 2))
    return record


def refresh_objects(video: PlannerVideo, queries: dict[str, str], old: dict[str, dict[str, Any]],
                    choices: dict[str, int], changed: set[str] = frozenset()) -> tuple[dict, dict, list[str]]:
    """Every role's perception on the newest frame, the human's choices carried over by track id, and a log
    line per role (``changed``: the roles segmented afresh)."""
    objects, kept, log = {}, {}, []
    for role, query in queries.items():
        p = video.perception(role)
        before = old.get(role) or {}
        p["tried"] = list(before.get("tried", []))
        if role in changed or not p["tried"]:
            p["tried"].append(query)
        if role in choices and 0 <= choices[role] < len(before.get("objects", [])):
            tid = before["objects"][choices[role]].get("track_id")
            now = [o["index"] for o in p["objects"] if o["track_id"] == tid]
            if now and len(p["objects"]) > 1:
                kept[role] = now[0]
        objects[role] = p
        verb = "perceive" if role in changed else "track"
        log.append(f"{verb} {role}: {query!r} on frame {p['frame']} -> {p['summary']}")
    return objects, kept, log


def perceive_frames(video: PlannerVideo, state: Any) -> dict[str, Any]:
    """The ``perceive`` node on frames: read the newest frame, segment it for the roles whose query is new,
    track it for the others; the state update."""
    old, queries = state.get("objects") or {}, state["queries"]
    changed = {r for r, q in queries.items() if (old.get(r) or {}).get("query") != q}
    video.perceive(queries, set(queries) if not video.roles else changed)
    objects, choices, log = refresh_objects(video, queries, old, state.get("choices") or {}, changed)
    return {"objects": objects, "choices": choices, "video": video.state(), "targets": video.targets(),
            "log": [*video.drain(), *log]}


class VideoRegistry:
    """The live :class:`PlannerVideo` of each thread, outside the checkpointed state.

    Args:
        pipeline: what each :class:`~segzero_tool.video.session.TrackingSession` segments key frames with.
        tracker: ``None`` (each session loads the tracker for the pipeline's segmenter), a model id or
            folder (loaded with ``load_tracker`` per session) or a callable returning a new ``VideoTracker``.
        key_frames, match_iou: passed to every session.
        requery_every: while a followed object stays lost, re-query every this many frames.
        max_pixels: the frame size cap given to ``open_video``.
    """

    def __init__(self, pipeline: Any, *, tracker: Any = None, key_frames: str = "first", match_iou: float = 0.5,
                 requery_every: int = 10, max_pixels: int | None = None) -> None:
        if requery_every < 1:
            raise ValueError(f"requery_every must be >= 1, got {requery_every}")
        instance = not isinstance(tracker, type) and hasattr(tracker, "step")  # one tracker cannot serve two roles
        if tracker is not None and not isinstance(tracker, str) and (instance or not callable(tracker)):
            raise TypeError("tracker must be a model id or folder, or a callable returning a new VideoTracker (each "
                            f"role gets its own); got {type(tracker).__name__}")
        self.pipeline = pipeline
        self.tracker = tracker
        self.key_frames = key_frames
        self.match_iou = match_iou
        self.requery_every = requery_every
        self.max_pixels = max_pixels
        self._live: dict[str, PlannerVideo] = {}
        self._lock = threading.Lock()

    def _session(self, query: str) -> Any:
        from segzero_tool.video.session import TrackingSession

        tracker = self.tracker
        if isinstance(tracker, str):
            from segzero_tool.video.tracker import load_tracker

            tracker = load_tracker(tracker)
        elif callable(tracker):
            tracker = tracker()
        pipeline = self.pipeline
        if not hasattr(pipeline, "segmenter") and callable(getattr(pipeline, "get", None)):
            pipeline = pipeline.get()  # agents.graphs.LazyPipeline: load it now
        if not hasattr(pipeline, "segmenter"):
            raise TypeError("a frame source needs a SegZeroPipeline as the planner's segmenter (its reasoner finds "
                            f"the objects on key frames, its segmenter starts the tracks); got {type(pipeline).__name__}")
        return TrackingSession(pipeline, query, tracker=tracker, key_frames=self.key_frames,
                               match_iou=self.match_iou)

    def _open(self, frames: Any, skip_to: int = -1) -> PlannerVideo:
        from segzero_tool.video.sources import FrameSource, open_video

        kwargs = {} if self.max_pixels is None else {"max_pixels": self.max_pixels}
        source = frames if isinstance(frames, FrameSource) else open_video(frames, **kwargs)
        return PlannerVideo(source, frames, self._session, self.requery_every, skip_to)

    def start(self, thread: str, frames: Any) -> PlannerVideo:
        """A new run on ``thread``: close what it had, open ``frames``."""
        self.close(thread)
        video = self._open(frames)
        with self._lock:
            self._live[thread] = video
        return video

    def peek(self, thread: str) -> PlannerVideo | None:
        """The thread's live video, if it is open here."""
        with self._lock:
            return self._live.get(thread)

    def get(self, thread: str, frames: Any, saved: dict[str, Any] | None) -> PlannerVideo:
        """The thread's live video. When it is not open here (another process, another graph object) or
        ``frames`` is another source, ``frames`` (else the saved file or folder path) is opened, a file or
        folder after the frame the run had reached; its roles are then empty (see :meth:`PlannerVideo.restore`).

        Raises:
            ValueError: a live source that is gone and was not passed again.
        """
        video = self.peek(thread)
        if video is not None and (frames is None or _same(frames, video.given)):
            return video
        reopenable = bool(saved) and saved.get("kind") in _REOPENABLE and saved.get("frame") is not None
        if frames is None and reopenable:
            frames = saved["source"]
        if frames is None:
            raise ValueError(
                f"the frame source of thread {thread!r} is not open in this process; pass it again: "
                "graph.invoke(..., {'configurable': {'thread_id': ..., 'frames': <camera or iterator>}})")
        self.close(thread)
        skip = int(saved["frame"]) if reopenable and _same(frames, saved["source"]) else -1
        video = self._open(frames, skip_to=skip)
        with self._lock:
            self._live[thread] = video
        return video

    def close(self, thread: str) -> None:
        with self._lock:
            video = self._live.pop(thread, None)
        if video is not None:
            video.close()


__all__ = ["PlannerVideo", "RoleTrack", "VideoRegistry", "frame_source", "perceive_frames", "refresh_objects",
           "target_record",
           "thread_id"]
