"""Writing videos: :class:`Mp4Writer` (H.264 MP4, e.g. a tracking overlay) and :class:`VideoWriter` (MP4,
MOV, WebM or MKV by suffix, optional explicit frame times).

A file is written to ``path + ".partial"`` and renamed to ``path`` (``os.replace``) only when
:meth:`VideoWriter.close` has finished it, so a crash or :meth:`VideoWriter.abort` never leaves a half
video at ``path``. Frames are RGB (numpy arrays in any form :func:`segzero_tool.images.load_image`
accepts, or PIL images); the width and height are rounded down to even numbers (yuv420p needs them),
and a frame of another size is cropped (one odd row / column) or resized to fit.
"""

from __future__ import annotations

import math
import numbers
import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ImageLoadError
from .sources import _is_pil, check_fps, import_av

#: Container format and encoder preference per suffix (the first encoder PyAV has is used).
FORMATS: dict[str, tuple[str, tuple[str, ...]]] = {
    ".mp4": ("mp4", ("libx264", "h264", "mpeg4")),
    ".m4v": ("mp4", ("libx264", "h264", "mpeg4")),
    ".mov": ("mov", ("libx264", "h264", "mpeg4")),
    ".mkv": ("matroska", ("libx264", "h264", "mpeg4")),
    ".webm": ("webm", ("libvpx", "libvpx-vp9")),
}
#: Time base of the written timestamps: explicit times are kept to 1/60000 s (exact for 24, 25, 30, 60 and
#: 30000/1001 fps; MPEG-4 part 2 allows denominators up to 65535).
TIME_BASE = Fraction(1, 60000)
_MAX_SIDE = 16384


def _encoder_available(av: Any, name: str) -> bool:
    try:
        av.codec.Codec(name, "w")
    except Exception:  # noqa: BLE001 - av.codec.codec.UnknownCodecError and friends
        return False
    return True


def pick_codec(suffix: str) -> str:
    """The encoder :class:`VideoWriter` uses for a file with this suffix (``.mp4``: libx264, else h264,
    else mpeg4; ``.webm``: VP8, else VP9)."""
    av = import_av()
    fmt = FORMATS.get(suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot write {suffix or 'files without a suffix'}; use one of {', '.join(FORMATS)}")
    for name in fmt[1]:
        if _encoder_available(av, name):
            return name
    raise ValueError(f"this PyAV build has none of the encoders {', '.join(fmt[1])} for {suffix} files")


def _even(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 2 <= value <= _MAX_SIDE:
        raise ValueError(f"{name} must be a whole number of pixels from 2 to {_MAX_SIDE}, got {value!r}")
    return int(value) // 2 * 2


class VideoWriter:
    """Write frames to a video file. A context manager: leaving the block normally closes (finishes) the file,
    leaving it with an exception aborts it.

    Args:
        path: the file to write; its suffix picks the container (``.mp4``, ``.m4v``, ``.mov``, ``.mkv``,
            ``.webm``).
        fps: frames per second (the frame rate of frames written without ``time_s``).
        width, height: the frame size; rounded down to even numbers (see :attr:`width`, :attr:`height`).
        codec: an encoder name PyAV knows (``None``: :func:`pick_codec`).
    """

    _format: str | None = None

    def __init__(self, path: str | os.PathLike, *, fps: float, width: int, height: int,
                 codec: str | None = None) -> None:
        av = import_av()
        self.path = Path(path)
        self.fps = check_fps(fps)
        self.width = _even(width, "width")
        self.height = _even(height, "height")
        fmt = self._format or FORMATS.get(self.path.suffix.lower(), (None,))[0]
        if fmt is None:
            raise ValueError(f"{self.path}: cannot pick a video format for {self.path.suffix or 'no suffix'}; use "
                             f"one of {', '.join(FORMATS)}")
        self.codec = codec or pick_codec(".mp4" if self._format == "mp4" else self.path.suffix)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.frames_written = 0
        self._last_pts = -1
        self._done = False
        open(self.partial, "wb").close()  # a clear OSError for a missing folder / no permission
        options = {"movflags": "faststart"} if fmt in ("mp4", "mov") else {}
        try:
            self._container = av.open(str(self.partial), mode="w", format=fmt, options=options)
            stream = self._container.add_stream(self.codec, rate=Fraction(self.fps).limit_denominator(1001))
            stream.width, stream.height, stream.pix_fmt = self.width, self.height, "yuv420p"
            stream.codec_context.time_base = TIME_BASE
            if self.codec in ("libx264", "h264"):
                stream.options = {"preset": "veryfast", "crf": "20"}
            else:
                stream.bit_rate = max(500_000, int(self.width * self.height * self.fps * 0.3))
                if self.codec.startswith("libvpx"):
                    stream.options = {"deadline": "realtime", "cpu-used": "8"}
            self._stream = stream
        except Exception as exc:
            self._drop()
            raise OSError(f"{self.path}: cannot start the video ({exc})") from None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _fit(self, frame: Any) -> np.ndarray:
        from ..images import load_image

        if isinstance(frame, np.ndarray) or _is_pil(frame):
            image = load_image(frame, max_pixels=None).array
        else:
            raise ImageLoadError(f"frame {self.frames_written}: expected an RGB numpy array or a PIL image, got "
                                 f"{type(frame).__name__}")
        h, w = image.shape[:2]
        if (w, h) == (self.width, self.height):
            return image
        if 0 <= w - self.width <= 1 and 0 <= h - self.height <= 1:  # an odd size: drop the last row / column
            return image[: self.height, : self.width]
        from PIL import Image

        return np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize((self.width, self.height),
                                                                             Image.Resampling.BILINEAR))

    def write(self, frame: Any, *, time_s: float | None = None) -> None:
        """Append one RGB frame. ``time_s``: its presentation time in seconds (variable frame rate; must
        increase); ``None``: ``frames_written / fps``."""
        if self._done:
            raise ValueError(f"{self.path}: the writer is closed")
        image = np.ascontiguousarray(self._fit(frame), dtype=np.uint8)
        if time_s is None:
            pts = round(self.frames_written / self.fps / TIME_BASE)
        else:
            if isinstance(time_s, bool) or not isinstance(time_s, numbers.Real) or not math.isfinite(time_s) \
                    or time_s < 0:
                raise ValueError(f"time_s must be a finite number of seconds >= 0, got {time_s!r}")
            pts = round(float(time_s) / TIME_BASE)
        if pts <= self._last_pts:
            raise ValueError(f"frame times must increase: frame {self.frames_written} at {float(pts * TIME_BASE):.6f} s "
                             f"comes after {float(self._last_pts * TIME_BASE):.6f} s")
        av = import_av()
        out = av.VideoFrame.from_ndarray(image, format="rgb24")
        out.pts, out.time_base = pts, TIME_BASE
        try:
            for packet in self._stream.encode(out):
                self._container.mux(packet)
        except Exception as exc:
            raise OSError(f"{self.path}: writing frame {self.frames_written} failed ({exc})") from None
        self._last_pts = pts
        self.frames_written += 1

    def close(self) -> None:
        """Finish the file and move it to :attr:`path`. Idempotent. With no frame written, no file is made."""
        if self._done:
            return
        if self.frames_written == 0:
            self.abort()
            return
        self._done = True
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            self._container.close()
        except Exception as exc:
            self._drop()
            raise OSError(f"{self.path}: finishing the video failed ({exc})") from None
        try:
            os.replace(self.partial, self.path)
        except OSError:
            self._drop()
            raise

    def abort(self) -> None:
        """Stop and delete the partial file; nothing appears at :attr:`path`. Idempotent."""
        self._done = True
        self._drop()

    def _drop(self) -> None:
        container = getattr(self, "_container", None)
        self._container = None
        if container is not None:
            try:
                container.close()
            except Exception:  # noqa: BLE001 - an unfinished file is being thrown away
                pass
        try:
            os.unlink(self.partial)
        except OSError:
            pass


class Mp4Writer(VideoWriter):
    """An H.264 MP4 (libx264, else h264, else mpeg4; yuv420p; the index at the front for streaming), whatever
    the suffix of ``path``. See :class:`VideoWriter`."""

    _format = "mp4"
