"""The video result types: one :class:`VideoFrameResult` per frame (the image result type inside), a
:class:`TrackSummary` per track, and :class:`VideoResult` for a whole run.

A frame's record in ``frames.jsonl`` is :meth:`VideoFrameResult.to_record`; :meth:`VideoFrameResult.from_record`
reads it back (masks from COCO RLE), so a result on disk streams back frame by frame without holding the clip.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..masks import mask_bbox, rle_decode, rle_encode
from ..parsing import ParseStatus
from ..result import SegmentationResult, SegmentedObject

EventKind = Literal["new", "matched", "lost", "found_again"]

#: Area samples kept per track in a summary (evenly thinned past this).
MAX_AREA_SAMPLES = 200


@dataclass(frozen=True)
class TrackEvent:
    """Something that happened to a track on a frame.

    ``new``: a key-frame detection started the track. ``matched``: a key-frame detection was matched to it (mask
    IoU). ``lost``: it stopped being visible. ``found_again``: it is visible again (propagated back, or a key-frame
    detection matched its last mask).
    """

    kind: EventKind
    track_id: int

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "track_id": self.track_id}


@dataclass
class VideoFrameResult:
    """One frame of a tracking run.

    Attributes:
        index: frame number (0-based, presentation order).
        time_s: presentation time in seconds, when the source has one.
        key_frame: the reasoner ran on this frame.
        track_ids: the track id of each object of ``result.objects`` (same order).
        result: the image result type: each visible track's box (from its mask), presence score and mask. On a key
            frame it also holds the reasoner's answer (``reasoning``, ``raw_output``, ``parse_status``); between key
            frames those are empty and ``parse_status`` is ``ok`` or ``no_objects``.
        events: what happened to tracks on this frame.
    """

    index: int
    time_s: float | None
    key_frame: bool
    track_ids: tuple[int, ...]
    result: SegmentationResult
    events: tuple[TrackEvent, ...] = ()

    def object(self, track_id: int) -> SegmentedObject | None:
        """The object of ``track_id`` on this frame, or ``None`` when it is not visible."""
        for tid, obj in zip(self.track_ids, self.result.objects, strict=False):
            if tid == track_id:
                return obj
        return None

    def to_record(self) -> dict[str, Any]:
        """The JSON line written to ``frames.jsonl``."""
        objects = []
        for tid, obj in zip(self.track_ids, self.result.objects, strict=False):
            item: dict[str, Any] = {"track_id": tid, "box": list(obj.box) if obj.box else None,
                                    "score": round(float(obj.score), 4), "area": obj.area}
            if obj.mask is not None:
                item["mask"] = rle_encode(obj.mask)
            objects.append(item)
        record: dict[str, Any] = {"frame": self.index, "time_s": self.time_s, "key_frame": self.key_frame,
                                  "objects": objects, "events": [e.to_dict() for e in self.events]}
        if self.key_frame:
            record["reasoning"] = self.result.reasoning
            record["parse_status"] = self.result.parse_status.value
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any], *, query: str = "", image_size: tuple[int, int] | None = None
                    ) -> VideoFrameResult:
        """Read a ``frames.jsonl`` line back (masks decoded)."""
        objects: list[SegmentedObject] = []
        ids: list[int] = []
        size = image_size
        for item in record.get("objects", []):
            mask = rle_decode(item["mask"]) if item.get("mask") else None
            if mask is not None and size is None:
                size = (int(mask.shape[1]), int(mask.shape[0]))
            box = tuple(int(v) for v in item["box"]) if item.get("box") else None
            objects.append(SegmentedObject(box=box, points=(), score=float(item.get("score", float("nan"))),
                                           mask=mask))  # type: ignore[arg-type]
            ids.append(int(item["track_id"]))
        status = record.get("parse_status") or ("ok" if objects else "no_objects")
        result = SegmentationResult(query=query, prompt_format="", reasoning=record.get("reasoning", ""),
                                    raw_output="", parse_status=ParseStatus(status), image_size=size or (0, 0),
                                    objects=objects)
        events = tuple(TrackEvent(e["kind"], int(e["track_id"])) for e in record.get("events", []))
        return cls(index=int(record["frame"]), time_s=record.get("time_s"), key_frame=bool(record.get("key_frame")),
                   track_ids=tuple(ids), result=result, events=events)


def frame_objects(masks: dict[int, tuple[np.ndarray, float]]) -> tuple[tuple[int, ...], list[SegmentedObject]]:
    """Track ids and image-result objects for the visible masks ``{track id: (mask, score)}``."""
    ids: list[int] = []
    objects: list[SegmentedObject] = []
    for tid, (mask, score) in masks.items():
        box = mask_bbox(mask)
        if box is None:
            continue
        ids.append(tid)
        objects.append(SegmentedObject(box=box, points=(), score=float(score), mask=mask))
    return tuple(ids), objects


@dataclass
class TrackSummary:
    """One track over the run.

    Attributes:
        track_id: its id (1, 2, ...; ids are never reused).
        first_frame / last_frame: first frame it was seen, last frame it was visible.
        frames_present: frames on which it was visible.
        status: ``active`` (visible on the last frame processed) or ``lost``.
        lost_at: frames on which it was lost (it may have been found again after each).
        last_box: its last visible box, original pixels.
        area: ``(frame, area in pixels)`` samples over time, at most :data:`MAX_AREA_SAMPLES` (thinned evenly).
    """

    track_id: int
    first_frame: int
    last_frame: int
    frames_present: int = 0
    status: str = "active"
    lost_at: list[int] = field(default_factory=list)
    last_box: tuple[int, int, int, int] | None = None
    area: list[tuple[int, int]] = field(default_factory=list)
    _stride: int = field(default=1, repr=False)

    def seen(self, frame: int, box: tuple[int, int, int, int] | None, area: int) -> None:
        """Record that the track is visible on ``frame``."""
        self.last_frame = frame
        self.frames_present += 1
        self.last_box = box
        self.status = "active"
        if (frame - self.first_frame) % self._stride == 0:
            self.area.append((frame, int(area)))
            if len(self.area) > MAX_AREA_SAMPLES:
                self._stride *= 2
                self.area = [(f, a) for f, a in self.area if (f - self.first_frame) % self._stride == 0]

    def to_dict(self) -> dict[str, Any]:
        return {"track_id": self.track_id, "first_frame": self.first_frame, "last_frame": self.last_frame,
                "frames_present": self.frames_present, "status": self.status, "lost_at": list(self.lost_at),
                "last_box": list(self.last_box) if self.last_box else None,
                "area": [[f, a] for f, a in self.area], "area_stride": self._stride}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrackSummary:
        return cls(track_id=int(d["track_id"]), first_frame=int(d["first_frame"]), last_frame=int(d["last_frame"]),
                   frames_present=int(d["frames_present"]), status=str(d["status"]), lost_at=list(d["lost_at"]),
                   last_box=tuple(d["last_box"]) if d.get("last_box") else None,  # type: ignore[arg-type]
                   area=[(int(f), int(a)) for f, a in d.get("area", [])], _stride=int(d.get("area_stride", 1)))

    def line(self) -> str:
        lost = f", lost at {', '.join(map(str, self.lost_at[:5]))}{'...' if len(self.lost_at) > 5 else ''}" \
            if self.lost_at else ""
        return (f"#{self.track_id} frames {self.first_frame}-{self.last_frame} ({self.frames_present} visible, "
                f"{self.status}{lost})")


@dataclass
class VideoResult:
    """A whole tracking run.

    Attributes:
        query: what was asked.
        source: the video (path, or ``<iterator>``).
        info: the source's description (kind, size, fps, frame count) as a dict.
        frames_done: frames processed.
        key_frames: frames on which the reasoner ran.
        tracks: one :class:`TrackSummary` per track, by id.
        out_dir: where ``frames.jsonl``, ``tracks.json``, ``track.json`` and ``overlay.mp4`` are (``None``: kept in
            memory; see :meth:`frames`).
        warnings: what the run noticed (a truncated file, ...).
    """

    query: str
    source: str
    info: dict[str, Any]
    frames_done: int
    key_frames: list[int]
    tracks: list[TrackSummary]
    out_dir: Path | None = None
    warnings: list[str] = field(default_factory=list)
    _frames: list[VideoFrameResult] | None = field(default=None, repr=False)

    def frames(self) -> Iterator[VideoFrameResult]:
        """Each frame's result, in order: streamed back from ``out_dir/frames.jsonl`` (one frame in memory at a
        time), or from memory for a run without ``out``."""
        if self._frames is not None:
            yield from self._frames
            return
        if self.out_dir is None:
            return
        size = None
        if self.info.get("width") and self.info.get("height"):
            size = (int(self.info["width"]), int(self.info["height"]))
        with open(self.out_dir / "frames.jsonl", encoding="utf-8") as f:
            for line in f:
                if line.endswith("\n") and line.strip():
                    yield VideoFrameResult.from_record(json.loads(line), query=self.query, image_size=size)

    def frame(self, index: int) -> VideoFrameResult | None:
        """The result of frame ``index`` (scans :meth:`frames`), or ``None``."""
        for fr in self.frames():
            if fr.index == index:
                return fr
            if fr.index > index:
                break
        return None

    def summary(self) -> str:
        """A few lines for people and for a calling agent."""
        head = (f"{len(self.tracks)} track(s) for {self.query!r} over {self.frames_done} frame(s) "
                f"({len(self.key_frames)} key frame(s))")
        if not self.tracks:
            head = f"nothing found for {self.query!r} on the key frame(s) {self.key_frames[:5]}" \
                   f" ({self.frames_done} frame(s))"
        lines = [head] + [t.line() for t in self.tracks[:20]]
        if len(self.tracks) > 20:
            lines.append(f"... and {len(self.tracks) - 20} more track(s)")
        lines += [f"warning: {w}" for w in self.warnings[:3]]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"query": self.query, "source": self.source, "info": self.info, "frames_done": self.frames_done,
                "key_frames": list(self.key_frames), "tracks": [t.to_dict() for t in self.tracks],
                "out_dir": str(self.out_dir) if self.out_dir else None, "warnings": list(self.warnings)}


__all__ = ["MAX_AREA_SAMPLES", "TrackEvent", "TrackSummary", "VideoFrameResult", "VideoResult", "frame_objects"]
