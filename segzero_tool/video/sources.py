"""Frame sources for video: a video file, a folder of frame images, or any iterable of frames.

:func:`open_video` gives a :class:`FrameSource`; iterating it yields :class:`VideoFrame` objects, one decoded
frame at a time (``(H, W, 3)`` uint8 RGB, read-only), so memory stays bounded however long the video is.
Files are decoded with PyAV (the ``video`` extra), imported only when a file is opened. Bad input gives a
typed error (:class:`~segzero_tool.errors.VideoLoadError`, ``ImageTooLargeError``, ``SettingsError``); a
file damaged or truncated after good frames gives those frames and one line in :attr:`FrameSource.warnings`.
``time_s`` is a file frame's presentation time (``pts * time_base``: right for variable frame rates).
"""

from __future__ import annotations

import math
import numbers
import os
import re
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ImageLoadError, ImageTooLargeError, MissingDependencyError, VideoLoadError
from ..limits import DEFAULT_MAX_PIXELS
from ..settings import SettingsError

#: Suffixes of the frame images read from a folder (case-insensitive).
FRAME_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
#: Largest frame rate accepted for ``fps`` arguments (frames per second).
MAX_FPS = 10_000.0
#: The demuxers a video file may use (self-contained containers and raw streams; ffmpeg names).
_DEMUXERS = "mov,matroska,webm,avi,mpegts,mpeg,flv,ogg,asf,gif,h264,hevc,m4v,mjpeg,ivf,obu,nut,yuv4mpegpipe"
_INSTALL_HINT = "pip install 'segzero-tool[video]'"


def import_av() -> Any:
    """PyAV, or :class:`MissingDependencyError` saying how to install it."""
    try:
        import av
    except ImportError as exc:
        raise MissingDependencyError(f"reading and writing video files needs PyAV, which is not installed: "
                                     f"{_INSTALL_HINT}") from exc
    return av


def check_fps(fps: Any, name: str = "fps") -> float:
    """``fps`` as a float in ``(0, MAX_FPS]``, else :class:`SettingsError`."""
    if isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not math.isfinite(float(fps)) \
            or not 0 < float(fps) <= MAX_FPS:
        raise SettingsError(f"{name} must be a number of frames per second above 0 and at most {MAX_FPS:g}, "
                            f"got {fps!r}")
    return float(fps)


def _check_count(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise SettingsError(f"{name} must be a whole number of at least 1 (or None), got {value!r}")
    return int(value)


def _reason(exc: BaseException) -> str:
    """A one-line description of a decoder / library exception."""
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())


def _check_size(where: str, w: int, h: int, max_pixels: int | None) -> None:
    if max_pixels is not None and w * h > max_pixels:
        raise ImageTooLargeError(f"{where}: the frame has {w}x{h} = {w * h:,} pixels, more than max_pixels "
                                 f"({max_pixels:,}); downscale the video or raise max_pixels")


def _close_quietly(container: Any) -> None:
    try:
        if container is not None:
            container.close()
    except Exception:  # noqa: BLE001 - closing a broken container must not fail
        pass


def _frozen(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array, dtype=np.uint8)
    array.flags.writeable = False
    return array


def natural_key(name: str) -> tuple:
    """Sort key putting ``frame2`` before ``frame10`` (digit runs compare as numbers)."""
    parts = re.split(r"(\d+)", name.lower())
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts)), name


@dataclass(frozen=True)
class VideoFrame:
    """One frame: ``index`` (0-based, presentation order), ``time_s`` (seconds or ``None``) and ``image``
    (``(H, W, 3)`` uint8 RGB, C-contiguous, read-only)."""

    index: int
    time_s: float | None
    image: np.ndarray


@dataclass(frozen=True)
class VideoInfo:
    """What is known about a source before decoding: ``kind`` ("file", "folder" or "iterator"),
    ``source`` (the path as given, or ``"<iterator>"``), frame size, average ``fps`` and ``frame_count``
    (exact for folders; container metadata for files, ``None`` when the container does not say). A file's
    frames are turned upright by its rotation metadata; its width and height are set from the first frame
    once it is decoded (before that they are the stored size)."""

    kind: str
    source: str
    width: int | None
    height: int | None
    fps: float | None
    frame_count: int | None


class FrameSource(ABC):
    """Frames of one video, decoded one at a time. A context manager; iterate it for :class:`VideoFrame`.

    Attributes:
        info: a :class:`VideoInfo`.
        rewindable: ``True`` for files and folders (iterating again starts at frame 0 again); ``False`` for
            iterators, which can be read once.
        warnings: one line per problem that ended the frames early (a truncated or damaged file).
    """

    rewindable = True

    def __init__(self, info: VideoInfo, *, max_pixels: int | None, max_frames: int | None) -> None:
        self.info, self.max_pixels, self.max_frames = info, max_pixels, max_frames
        self.warnings: list[str] = []
        self._closed = self._started = False
        self._size: tuple[int, int] | None = None

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.info.kind} {self.info.source!r}>"

    def close(self) -> None:
        """Release the file or the iterator (a generator is closed). Idempotent."""
        self._closed = True

    def __iter__(self) -> Iterator[VideoFrame]:
        if self._closed:
            raise VideoLoadError(f"{self.info.source}: the frame source is closed; open the video again")
        if self._started and not self.rewindable:
            raise VideoLoadError(f"{self.info.source}: frames from an iterator can be read only once; "
                                 "open a new source to read them again")
        self._started = True
        self._size = None
        return self._limited()

    def _limited(self) -> Iterator[VideoFrame]:
        frames = self._frames()
        count = 0
        try:
            for frame in frames:
                yield frame
                count += 1
                if self.max_frames is not None and count >= self.max_frames:
                    return  # without pulling another frame from the source
        finally:
            frames.close()
        if count == 0:
            raise VideoLoadError(f"{self.info.source}: the video has no frames; pass a video with at least one "
                                 "frame")

    @abstractmethod
    def _frames(self) -> Iterator[VideoFrame]:
        """The source's frames in order (each kind of source: a file, a folder, an iterator)."""

    def _make(self, index: int, time_s: float | None, image: np.ndarray, where: str) -> VideoFrame:
        h, w = int(image.shape[0]), int(image.shape[1])
        if self._size is None:
            self._size = (w, h)
        elif self._size != (w, h):
            raise VideoLoadError(f"{where}: the frame is {w}x{h} but the first frame was "
                                 f"{self._size[0]}x{self._size[1]}; all frames of a video must have one size")
        return VideoFrame(index, time_s, _frozen(image))


def _load_frame(item: Any, where: str, max_pixels: int | None) -> np.ndarray:
    """An array / PIL image -> RGB uint8, with ``where`` in every message."""
    from ..images import load_image, stored_size

    try:
        if isinstance(item, Path):  # a folder's frame: its size is checked from the header, before decoding
            _check_size(where, *stored_size(item), max_pixels)
        elif isinstance(item, np.ndarray) and item.ndim in (2, 3):
            _check_size(where, int(item.shape[1]), int(item.shape[0]), max_pixels)
        elif not isinstance(item, np.ndarray):  # a PIL image
            _check_size(where, int(item.width), int(item.height), max_pixels)
        image = load_image(item, max_pixels=None).array
    except ImageTooLargeError as exc:  # from Pillow's own guard, or ours above
        if str(exc).startswith(where):
            raise
        raise ImageTooLargeError(f"{where}: {str(exc).split(': ', 1)[-1]}") from None
    except ImageLoadError as exc:
        raise VideoLoadError(f"{where}: {str(exc).split(': ', 1)[-1]}") from None
    if isinstance(item, np.ndarray) and np.shares_memory(image, item):
        image = image.copy()  # the caller may reuse its buffer (a camera does)
    return image


class _FolderSource(FrameSource):
    """A folder of frame images, in natural order of their names."""

    def __init__(self, path: Path, shown: str, *, max_pixels: int | None, max_frames: int | None,
                 fps: float | None) -> None:
        from ..images import stored_size

        try:
            files = [p for p in path.iterdir()
                     if p.suffix.lower() in FRAME_SUFFIXES and not p.name.startswith(".") and p.is_file()]
        except OSError as exc:
            raise VideoLoadError(f"{shown}: the folder cannot be read ({_reason(exc)})") from None
        if not files:
            raise VideoLoadError(f"{shown}: the folder has no frames (no {', '.join(FRAME_SUFFIXES)} files); pass "
                                 "a folder of frame images or a video file")
        files.sort(key=lambda p: natural_key(p.name))
        self._files = files
        try:
            width, height = stored_size(files[0])
        except ImageLoadError as exc:
            raise VideoLoadError(f"{shown}: the first frame {str(exc)}") from None
        _check_size(f"{shown} frame 0 ({files[0].name})", width, height, max_pixels)
        super().__init__(VideoInfo("folder", shown, width, height, fps, len(files)),
                         max_pixels=max_pixels, max_frames=max_frames)

    def _frames(self) -> Iterator[VideoFrame]:
        fps = self.info.fps
        for index, file in enumerate(self._files):
            where = f"{self.info.source} frame {index} ({file.name})"
            try:
                image = _load_frame(file, where, self.max_pixels)
            except VideoLoadError as exc:  # (ImageTooLargeError is not one: it propagates)
                if index == 0:
                    raise
                self.warnings.append(f"{exc}; the {index} frames before it were used")
                return
            yield self._make(index, index / fps if fps else None, image, where)


class _IteratorSource(FrameSource):
    """Frames pulled one at a time from a Python iterable (a live camera, a generator, a list)."""

    rewindable = False

    def __init__(self, iterator: Iterator[Any], *, max_pixels: int | None, max_frames: int | None,
                 fps: float | None) -> None:
        self._iterator = iterator
        super().__init__(VideoInfo("iterator", "<iterator>", None, None, fps, None),
                         max_pixels=max_pixels, max_frames=max_frames)

    def close(self) -> None:
        close = getattr(self._iterator, "close", None)
        if callable(close) and not self._closed:
            close()
        super().close()

    def _frames(self) -> Iterator[VideoFrame]:
        fps = self.info.fps
        for index, item in enumerate(self._iterator):
            where = f"<iterator> frame {index}"
            time_s = index / fps if fps else None
            if isinstance(item, VideoFrame):  # frames of another source, e.g. filtered
                time_s, item = item.time_s, item.image
            elif isinstance(item, tuple):
                if len(item) != 2:
                    raise VideoLoadError(f"{where}: a tuple must be (time_s, frame), got {len(item)} items")
                t, item = item
                if isinstance(t, bool) or not isinstance(t, numbers.Real) or not math.isfinite(float(t)):
                    raise VideoLoadError(f"{where}: the time must be a finite number of seconds, got {t!r}")
                time_s = float(t)
            if not isinstance(item, np.ndarray) and not _is_pil(item):
                raise VideoLoadError(f"{where}: expected a numpy array, a PIL image, a VideoFrame or a (time_s, "
                                     f"frame) tuple, got {type(item).__name__}")
            yield self._make(index, time_s, _load_frame(item, where, self.max_pixels), where)


def _is_pil(item: Any) -> bool:
    module = sys.modules.get("PIL.Image")  # not imported yet: the item cannot be a PIL image
    return module is not None and isinstance(item, module.Image)


def open_video(source: Any, *, max_pixels: int | None = DEFAULT_MAX_PIXELS, max_frames: int | None = None,
               fps: float | None = None) -> FrameSource:
    """Open a video for reading, one frame at a time.

    Args:
        source: a path (``str`` / ``PathLike``) to a video file (MP4, WebM, MOV, MKV, anything PyAV decodes) or
            to a folder of frame images (jpg/jpeg/png/webp/bmp, natural name order: ``frame2`` before
            ``frame10``); or any iterable of frames (numpy ``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)`` arrays,
            PIL images, :class:`VideoFrame` objects or ``(time_s, frame)`` tuples), pulled lazily one item per
            frame.
        max_pixels: refuse frames with more pixels than this (``None``: no limit).
        max_frames: stop after this many frames (``None``: all).
        fps: folders and iterators only: frame ``i`` gets ``time_s = i / fps``.

    Returns:
        a :class:`FrameSource` (a context manager).

    Raises:
        VideoLoadError: missing path, not a video, no video stream, an empty folder, an unsupported input.
        ImageTooLargeError: the file's frame size is above ``max_pixels``.
        SettingsError: a bad ``fps``, ``max_frames`` or ``max_pixels`` (``fps`` given for a video file).
        MissingDependencyError: a video file and PyAV is not installed.
    """
    max_frames = _check_count(max_frames, "max_frames")
    max_pixels = _check_count(max_pixels, "max_pixels")
    if fps is not None:
        fps = check_fps(fps)
    if isinstance(source, (str, os.PathLike)):
        shown = os.fspath(source)
        shown = shown if isinstance(shown, str) else os.fsdecode(shown)
        path = Path(shown).expanduser()
        if not shown or not path.exists():
            raise VideoLoadError(f"{shown or '<empty path>'}: no such file or folder")
        if path.is_dir():
            return _FolderSource(path, shown, max_pixels=max_pixels, max_frames=max_frames, fps=fps)
        if fps is not None:
            raise SettingsError("fps is for folders and iterators; a video file's frame times come from the file")
        from .source_file import FileSource

        return FileSource(path, shown, max_pixels=max_pixels, max_frames=max_frames)
    if isinstance(source, (bytes, bytearray, memoryview)):
        raise VideoLoadError("<bytes>: video data is not read from memory; write it to a file and pass the path")
    if isinstance(source, np.ndarray) and (source.ndim < 3 or (source.ndim == 3 and source.shape[-1] in (3, 4))):
        raise VideoLoadError(f"<array>: an array of shape {source.shape} is one image, not a video; pass a list of "
                             "frames or an (N, H, W, 3) array")
    if _is_pil(source):
        raise VideoLoadError("<PIL image>: one image, not a video; pass a list of frames")
    try:
        iterator = iter(source)
    except TypeError:
        raise VideoLoadError(f"unsupported video input of type {type(source).__name__}; pass a path to a video "
                             "file or a folder of frames, or an iterable of frames") from None
    return _IteratorSource(iterator, max_pixels=max_pixels, max_frames=max_frames, fps=fps)
