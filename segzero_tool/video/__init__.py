"""Video: the reasoner answers on key frames, SAM2's video predictor tracks every object through the clip.

>>> from segzero_tool import SegZeroPipeline
>>> from segzero_tool.video import track_video
>>> pipe = SegZeroPipeline.from_pretrained(preset="light")
>>> run = track_video(pipe, "kitchen.mp4", "the cup I can drink from", out="runs/cup")
>>> print(run.summary())
>>> for frame in run.frames():          # streamed back from runs/cup/frames.jsonl
...     frame.index, frame.track_ids, frame.result.boxes

Live frames (a camera): :class:`TrackingSession` (``push`` one frame at a time). Inputs: :func:`open_video`.
"""

from __future__ import annotations

from ..lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "FrameSource": "sources",
    "VideoFrame": "sources",
    "VideoInfo": "sources",
    "open_video": "sources",
    "Mp4Writer": "encode",
    "KeyFrames": "keyframes",
    "TrackedMask": "tracker",
    "TransformersVideoTracker": "tracker",
    "VideoTracker": "tracker",
    "load_tracker": "tracker",
    "TrackEvent": "result",
    "TrackSummary": "result",
    "VideoFrameResult": "result",
    "VideoResult": "result",
    "TrackingSession": "session",
    "track_video": "track",
    "load_video_result": "track",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
