"""A video file as a :class:`~segzero_tool.video.sources.FrameSource`: decoded with PyAV one frame at a time
(see :func:`~segzero_tool.video.sources.open_video`)."""

from __future__ import annotations

import errno
import math
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SegZeroError, VideoLoadError
from .sources import (
    _DEMUXERS,
    FrameSource,
    VideoFrame,
    VideoInfo,
    _check_size,
    _close_quietly,
    _reason,
    import_av,
)


class FileSource(FrameSource):
    """A video file decoded with PyAV."""

    def __init__(self, path: Path, shown: str, *, max_pixels: int | None, max_frames: int | None) -> None:
        self._path, self._shown = path, shown
        self._live: Any = None  # the container being read
        self._last_time: float | None = None
        container = self._open()
        try:
            stream = container.streams.video[0]
            width, height = int(stream.codec_context.width or 0), int(stream.codec_context.height or 0)
            fps = float(stream.average_rate) if stream.average_rate else None
            frames = int(stream.frames or 0)
            if width > 0 and height > 0:
                _check_size(shown, width, height, max_pixels)
        except SegZeroError:
            _close_quietly(container)
            raise
        except Exception as exc:  # PyAV reports odd streams with many exception types
            _close_quietly(container)
            raise VideoLoadError(f"{shown}: the video stream cannot be read ({_reason(exc)})") from None
        fps = fps if fps is not None and math.isfinite(fps) and fps > 0 else None
        info = VideoInfo("file", shown, width or None, height or None, fps, frames or None)
        super().__init__(info, max_pixels=max_pixels, max_frames=max_frames)
        self._container: Any = container  # opened by the checks, read by the first iteration

    def _open(self) -> Any:
        av = import_av()
        shown = self._shown
        try:
            if self._path.stat().st_size == 0:
                raise VideoLoadError(f"{shown}: the file is empty")
            # "file:" + an absolute path: no protocol prefix in a file name is obeyed; only self-contained
            # containers are demuxed (no playlist or concat script opening other files).
            container = av.open("file:" + os.path.abspath(self._path), mode="r", metadata_errors="replace",
                                container_options={"format_whitelist": _DEMUXERS, "protocol_whitelist": "file"})
        except SegZeroError:
            raise
        except PermissionError:
            raise VideoLoadError(f"{shown}: permission denied") from None
        except Exception as exc:  # av.error.* and the odd IndexError / UnicodeDecodeError from a bad header
            if getattr(exc, "errno", None) == errno.EINVAL:
                raise VideoLoadError(f"{shown}: not a video format read here (containers read: MP4/MOV, MKV/WebM, "
                                     "AVI, MPEG-TS/PS, FLV, Ogg, ASF, GIF, NUT, Y4M and raw H.264/HEVC/MPEG-4/MJPEG, "
                                     "IVF, OBU streams; playlists and concat scripts are not followed)") from None
            raise VideoLoadError(f"{shown}: not a video file PyAV can read ({_reason(exc)}); is the file complete "
                                 "(an MP4 cut off before its recording ended has no index and cannot be read)?"
                                 ) from None
        try:
            has_video = len(container.streams.video) > 0
        except Exception:  # noqa: BLE001 - a broken stream table reads as "no video"
            has_video = False
        if not has_video:
            _close_quietly(container)
            raise VideoLoadError(f"{shown}: the file has no video stream (audio only, or a recording that never "
                                 "got a frame)")
        return container

    def close(self) -> None:
        _close_quietly(self._container)
        _close_quietly(self._live)
        self._container = self._live = None
        super().close()

    def _frames(self) -> Iterator[VideoFrame]:
        container, self._container = self._container or self._open(), None
        self._live, self._last_time = container, None
        index, damage = 0, None
        duration = container.duration / 1e6 if container.duration else None  # AV_TIME_BASE units
        try:
            stream = container.streams.video[0]
            packets = container.demux(stream)
            while damage is None:
                try:
                    decoded = stream.decode(next(packets))
                except StopIteration:
                    break
                except Exception as exc:  # a damaged or truncated file: av.error.*, EOFError, ...
                    damage, decoded = exc, []
                    try:  # the frames the decoder holds back (B-frames) come out on a flush
                        decoded = stream.decode(None)
                    except Exception:  # noqa: BLE001 - nothing more to recover
                        pass
                for frame in decoded:
                    yield self._convert(frame, index)
                    index += 1
        finally:
            self._live = None
            _close_quietly(container)
        if damage is not None and index == 0:
            raise VideoLoadError(f"{self._shown}: no frame could be decoded ({_reason(damage)}); the file is "
                                 "damaged or uses a codec this PyAV build cannot decode")
        if damage is not None:
            self.warnings.append(f"{self._shown}: the video is damaged or truncated after frame {index - 1} "
                                 f"({_reason(damage)}); the {index} frames before it were used")
        elif index > 0 and (short := self._short_of(index, duration)):
            self.warnings.append(f"{self._shown}: the video ends after frame {index - 1} but {short}; the file "
                                 "may be truncated")

    def _short_of(self, count: int, duration: float | None) -> str | None:
        """How the decoded frames fall short of what the container declares (a silently truncated file)."""
        declared = self.info.frame_count
        if declared is not None:
            return f"the file declares {declared} frames" if count < declared else None
        if duration is None or self._last_time is None:
            return None
        slack = 1.5 / self.info.fps if self.info.fps else 0.05 * duration
        if self._last_time + slack < duration:
            return f"the file declares {duration:.2f} s (the last frame is at {self._last_time:.2f} s)"
        return None

    def _convert(self, frame: Any, index: int) -> VideoFrame:
        where = f"{self._shown} frame {index}"
        _check_size(where, int(frame.width), int(frame.height), self.max_pixels)
        try:
            image = frame.to_ndarray(format="rgb24")
        except Exception as exc:  # noqa: BLE001 - a frame the converter refuses
            raise VideoLoadError(f"{where}: cannot be converted to RGB ({_reason(exc)})") from None
        try:  # a phone video's display matrix: turn the frame upright, as players do
            turns = round(int(frame.rotation or 0) / 90) % 4
        except Exception:  # noqa: BLE001 - no usable rotation: as stored
            turns = 0
        if turns:
            image = np.rot90(image, turns)
        if index == 0 and (self.info.width, self.info.height) != (image.shape[1], image.shape[0]):
            self.info = replace(self.info, width=int(image.shape[1]), height=int(image.shape[0]))
        time_s = frame.time
        if time_s is None or not math.isfinite(time_s):
            time_s = index / self.info.fps if self.info.fps else None
        if time_s is not None:
            self._last_time = time_s = float(time_s)
        return self._make(index, time_s, image, where)


__all__ = ["FileSource"]
