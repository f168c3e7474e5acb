"""The live tracking API: frames pushed one at a time (a camera, a robot loop), tracks kept across them.

On a key frame :class:`TrackingSession` runs the pipeline (reasoner + image segmenter) on the frame, tracks the
known objects onto it, and matches each detection to a track by mask IoU: a match continues its track, a detection
matching the last mask of a lost track brings that track back (re-anchored on the detection), any other detection
starts a new track. Between key frames the tracker alone carries the objects. A track that stops being visible is
reported ``lost`` on that frame (SAM2 keeps looking for it: it is ``found_again`` if it comes back).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import numpy as np

from ..cancel import check_cancelled
from ..errors import NoReasonerError
from ..masks import mask_bbox
from ..parsing import ParseStatus
from ..progress import report
from ..prompts import validate_query
from ..result import SegmentationResult
from .keyframes import KeyFrames
from .result import TrackEvent, TrackSummary, VideoFrameResult, frame_objects
from .tracker import TrackedMask, VideoTracker, load_tracker

logger = logging.getLogger(__name__)

#: Default mask IoU for a key-frame detection to continue an existing track.
DEFAULT_MATCH_IOU = 0.5


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two bool masks (0 when both are empty)."""
    union = int(np.count_nonzero(a | b))
    return int(np.count_nonzero(a & b)) / union if union else 0.0


def match_detections(detections: list[np.ndarray], tracks: dict[int, np.ndarray], min_iou: float
                     ) -> tuple[dict[int, int], list[int]]:
    """Greedy one-to-one matching by mask IoU, best pairs first.

    Only pairs whose bounding boxes overlap are compared, each over the overlap of the boxes, so 50 detections
    against 50 tracks on a 3000x2000 frame cost a few full-frame passes, not 2,500.

    Returns:
        ``({detection index: track id}, [unmatched detection indices])``.
    """
    det_stats = [_stats(m) for m in detections]
    track_stats = {tid: _stats(m) for tid, m in tracks.items()}
    pairs = []
    for d, (det, (dbox, darea)) in enumerate(zip(detections, det_stats, strict=True)):
        for tid, mask in tracks.items():
            tbox, tarea = track_stats[tid]
            if dbox is None or tbox is None:
                continue
            x1, y1 = max(dbox[0], tbox[0]), max(dbox[1], tbox[1])
            x2, y2 = min(dbox[2], tbox[2]), min(dbox[3], tbox[3])
            if x1 > x2 or y1 > y2:
                continue
            inter = int(np.count_nonzero(det[y1:y2 + 1, x1:x2 + 1] & mask[y1:y2 + 1, x1:x2 + 1]))
            iou = inter / (darea + tarea - inter) if inter else 0.0
            if iou >= min_iou:
                pairs.append((iou, d, tid))
    pairs.sort(key=lambda p: (-p[0], p[1], p[2]))
    matched: dict[int, int] = {}
    used: set[int] = set()
    for _, d, tid in pairs:
        if d not in matched and tid not in used:
            matched[d] = tid
            used.add(tid)
    return matched, [d for d in range(len(detections)) if d not in matched]


def _stats(mask: np.ndarray) -> tuple[tuple[int, int, int, int] | None, int]:
    """A mask's inclusive box and its area."""
    box = mask_bbox(mask)
    if box is None:
        return None, 0
    x1, y1, x2, y2 = box
    return box, int(np.count_nonzero(mask[y1:y2 + 1, x1:x2 + 1]))


class TrackingSession:
    """Reason on key frames, track every object through the frames pushed.

    Args:
        pipeline: a :class:`~segzero_tool.pipeline.SegZeroPipeline` with a reasoner and a segmenter (its image
            masks start the tracks).
        query: what to find ("the cup I can drink from").
        tracker: a :class:`~segzero_tool.video.tracker.VideoTracker`; ``None`` loads the video model of the
            pipeline's segmenter checkpoint (:func:`~segzero_tool.video.tracker.load_tracker`).
        key_frames: ``first`` (default), ``every:N`` frames or ``every:Ns`` seconds, or a :class:`KeyFrames`.
        match_iou: mask IoU at or above which a key-frame detection continues a track.
        max_objects: cap on detections per key frame (default: the pipeline's).
        fps: frame rate for ``every:Ns`` when frames carry no time.

    Raises:
        QueryError: empty or too long query. NoReasonerError: the pipeline has no reasoner or no segmenter.
        SettingsError: bad ``key_frames`` or ``match_iou``.
    """

    def __init__(self, pipeline: Any, query: str, *, tracker: VideoTracker | None = None,
                 key_frames: str | KeyFrames | None = "first", match_iou: float = DEFAULT_MATCH_IOU,
                 max_objects: int | None = None, fps: float | None = None) -> None:
        from ..settings import SettingsError

        self.query = validate_query(query, getattr(pipeline, "max_query_chars", 2000))
        if getattr(pipeline, "reasoner", None) is None:
            raise NoReasonerError("tracking by reasoning needs a reasoner: load the pipeline with one")
        if getattr(pipeline, "segmenter", None) is None:
            raise NoReasonerError("tracking needs the image segmenter's masks: load the pipeline with a segmenter")
        if not isinstance(match_iou, (int, float)) or not 0.0 < float(match_iou) <= 1.0:
            raise SettingsError(f"match_iou must be in (0, 1], got {match_iou!r}")
        self.policy = KeyFrames.parse(key_frames)
        self.pipeline = pipeline
        self.match_iou = float(match_iou)
        self.max_objects = max_objects
        self.fps = fps
        self.tracker = tracker if tracker is not None else load_tracker(
            getattr(pipeline.segmenter, "model_id", None), device=getattr(pipeline.segmenter, "device", "auto"))
        self._owns_tracker = tracker is None
        self.tracks: dict[int, TrackSummary] = {}
        self.key_frames: list[int] = []
        self._visible: set[int] = set()
        self._last_mask: dict[int, np.ndarray] = {}
        self._next_id = 1
        self._index = -1
        self._size: tuple[int, int] | None = None

    # --- state ---------------------------------------------------------------------------------

    @property
    def lost(self) -> set[int]:
        """Ids of the tracks not visible on the last frame pushed."""
        return set(self.tracks) - self._visible

    @property
    def frames_done(self) -> int:
        return self._index + 1

    def summaries(self) -> list[TrackSummary]:
        """Every track so far, by id."""
        return [self.tracks[t] for t in sorted(self.tracks)]

    # --- frames ---------------------------------------------------------------------------------

    def push(self, frame: Any, *, key: bool | None = None, time_s: float | None = None) -> VideoFrameResult:
        """Process the next frame.

        Args:
            frame: a :class:`~segzero_tool.video.sources.VideoFrame` or an ``(H, W, 3)`` uint8 array.
            key: ``None``: the key-frame policy decides; ``True``: run the reasoner on this frame (re-query);
                ``False``: only track.
            time_s: the frame's time, for an array (a ``VideoFrame`` carries its own).

        Raises:
            OperationCancelled: the current call was cancelled (nothing of this frame was recorded).
            ImageLoadError: the frame is not an image of the run's size.
        """
        check_cancelled()
        image, index, time_s = self._unpack(frame, time_s)
        t0 = time.perf_counter()
        by_policy = self.policy.is_key(index, time_s, self.fps)  # always asked: it keeps count of the frames
        is_key = by_policy if key is None else bool(key)
        detection: SegmentationResult | None = None
        events: list[TrackEvent] = []
        tracked = self.tracker.step(image)
        if is_key:
            self.key_frames.append(index)
            report("reasoning", f"key frame {index}: asking the reasoner")
            detection = self.pipeline.segment(image, self.query, max_objects=self.max_objects)
            check_cancelled()
            new_objects = self._match(detection, tracked, events)
            if new_objects:
                tracked = self.tracker.add(new_objects)
        result = self._record(index, time_s, image, tracked, detection, events, t0)
        self._index = index
        return result

    def reseed(self, frame: Any, masks: dict[int, np.ndarray], *, reset: bool = False,
               time_s: float | None = None) -> None:
        """Feed the tracker a frame of a resumed run, starting the tracks in ``masks`` on it (their recorded masks);
        nothing is recorded and the key-frame policy is not asked. ``reset``: forget the tracker's state first (the
        first frame replayed)."""
        image, index, _ = self._unpack(frame, time_s)
        if reset:
            self.tracker.reset()
        self.tracker.step(image, new_objects=masks or None)
        self._index = index

    def restore(self, tracks: list[TrackSummary], key_frames: list[int], last_masks: dict[int, np.ndarray],
                visible: set[int], last_index: int, last_key_time: float | None) -> None:
        """Take back the state of a run read from disk (see :mod:`segzero_tool.video.track`)."""
        self.tracks = {t.track_id: t for t in tracks}
        self.key_frames = list(key_frames)
        self._last_mask = dict(last_masks)
        self._visible = set(visible)
        self._next_id = max(self.tracks, default=0) + 1
        self._index = last_index
        if key_frames:
            self.policy.restore(key_frames[-1], last_key_time, self.fps)

    def close(self) -> None:
        if self._owns_tracker:
            self.tracker.close()

    def __enter__(self) -> TrackingSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals -----------------------------------------------------------------------------

    def _unpack(self, frame: Any, time_s: float | None) -> tuple[np.ndarray, int, float | None]:
        from ..errors import ImageLoadError

        index = self._index + 1
        image = frame
        if hasattr(frame, "image") and hasattr(frame, "index"):
            image, index, time_s = frame.image, int(frame.index), frame.time_s
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ImageLoadError(f"frame {index}: expected an (H, W, 3) uint8 RGB array, got "
                                 f"{getattr(image, 'shape', type(image).__name__)} {getattr(image, 'dtype', '')}")
        size = (int(image.shape[1]), int(image.shape[0]))
        if self._size is None:
            self._size = size
        elif size != self._size:
            raise ImageLoadError(f"frame {index} is {size[0]}x{size[1]}, the run's frames are "
                                 f"{self._size[0]}x{self._size[1]}")
        return image, index, time_s

    def _match(self, detection: SegmentationResult, tracked: dict[int, TrackedMask], events: list[TrackEvent]
               ) -> dict[int, np.ndarray]:
        """Match the key frame's detections to tracks; return the masks of the tracks to start or re-anchor."""
        height, width = detection.image_size[1], detection.image_size[0]
        masks: list[np.ndarray] = []
        for obj in detection.objects:
            mask = obj.mask
            if (mask is None or not mask.any()) and obj.box is not None:  # an empty mask: fall back to its box
                x1, y1, x2, y2 = obj.box
                mask = np.zeros((height, width), dtype=bool)
                mask[y1:y2 + 1, x1:x2 + 1] = True
            if mask is not None and mask.any():
                masks.append(mask)
        visible = {tid: tm.mask for tid, tm in tracked.items() if tm.present}
        matched, rest = match_detections(masks, visible, self.match_iou)
        events += [TrackEvent("matched", tid) for tid in sorted(matched.values())]
        new_objects: dict[int, np.ndarray] = {}
        lost = {tid: m for tid, m in self._last_mask.items() if tid not in visible}
        again, rest2 = match_detections([masks[d] for d in rest], lost, self.match_iou)
        for k, tid in again.items():
            new_objects[tid] = masks[rest[k]]
        for k in rest2:
            tid = self._next_id
            self._next_id += 1
            new_objects[tid] = masks[rest[k]]
            events.append(TrackEvent("new", tid))
        return new_objects

    def _record(self, index: int, time_s: float | None, image: np.ndarray, tracked: dict[int, TrackedMask],
                detection: SegmentationResult | None, events: list[TrackEvent], t0: float) -> VideoFrameResult:
        new_ids = {e.track_id for e in events if e.kind == "new"}
        visible_now: dict[int, tuple[np.ndarray, float]] = {}
        for tid in sorted(tracked):
            tm = tracked[tid]
            if tm.present:
                visible_now[tid] = (tm.mask, tm.score)
        ids, objects = frame_objects(visible_now)
        for tid, obj in zip(ids, objects, strict=True):
            summary = self.tracks.get(tid)
            if summary is None:
                summary = self.tracks[tid] = TrackSummary(track_id=tid, first_frame=index, last_frame=index)
            elif tid not in self._visible and tid not in new_ids:
                events.append(TrackEvent("found_again", tid))
            summary.seen(index, obj.box, obj.area)
            self._last_mask[tid] = obj.mask  # type: ignore[assignment]
        for tid in sorted(self._visible - set(ids)):
            events.append(TrackEvent("lost", tid))
            self.tracks[tid].status = "lost"
            self.tracks[tid].lost_at.append(index)
        for tid in new_ids - set(ids):  # started on this frame but not visible: still a track, lost at once
            if tid not in self.tracks:
                self.tracks[tid] = TrackSummary(track_id=tid, first_frame=index, last_frame=index, status="lost",
                                                lost_at=[index])
        self._visible = set(ids)
        ms = (time.perf_counter() - t0) * 1000.0
        height, width = image.shape[:2]
        if detection is not None:
            result = dataclasses.replace(detection, objects=objects, image=None,
                                         timings={**detection.timings, "track_total": ms})
        else:
            result = SegmentationResult(
                query=self.query, prompt_format=str(getattr(self.pipeline.prompt_format, "value", "")), reasoning="",
                raw_output="", parse_status=ParseStatus.OK if objects else ParseStatus.NO_OBJECTS,
                image_size=(int(width), int(height)), objects=objects, timings={"track_total": ms},
                segmenter=getattr(self.tracker, "model_id", None))
        order = {"new": 0, "matched": 1, "found_again": 2, "lost": 3}
        events.sort(key=lambda e: (order[e.kind], e.track_id))
        return VideoFrameResult(index=index, time_s=time_s, key_frame=detection is not None, track_ids=ids,
                                result=result, events=tuple(events))


__all__ = ["DEFAULT_MATCH_IOU", "TrackingSession", "mask_iou", "match_detections"]
