"""Loading images safely: paths, bytes, PIL images and numpy arrays -> RGB uint8.

Guards: missing / undecodable / truncated files, zero-sized images, a pixel limit against
decompression bombs (checked from the header before decoding), EXIF orientation (applied), and
CMYK / RGBA / palette / 16-bit / greyscale / float inputs (converted to 8-bit RGB).

The pixel limit is ours alone (``max_pixels``; ``None``: none): files are identified with Pillow's
format plugins directly, without ``PIL.Image.open``, whose built-in guard
(``Image.MAX_IMAGE_PIXELS``, 89.5 MP warning / 179 MP error) would otherwise refuse images our limit
allows. Nothing process-wide is changed. (A few decoders check again inside Pillow, by version: TIFF, MPO and,
in Pillow 13, WebP images above twice Pillow's limit, 179 MP by default, are refused with an :class:`ImageTooLargeError`
that says to convert them to PNG or JPEG, which have no such check.) Truncated data is refused even where Pillow would fill the
missing rows (a PNG whose compressed stream ends early) or where another library has set
``ImageFile.LOAD_TRUNCATED_IMAGES``.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from .errors import ImageLoadError, ImageTooLargeError
from .limits import DEFAULT_MAX_PIXELS as _DEFAULT_MAX_PIXELS

if TYPE_CHECKING:
    from PIL import Image

    from .image_cache import DecodedImageCache

#: Default pixel limit: 100 megapixels (e.g. 12000 x 8333), from :mod:`.limits`. Configurable everywhere.
DEFAULT_MAX_PIXELS = _DEFAULT_MAX_PIXELS

ImageInput = Union[str, os.PathLike, bytes, bytearray, memoryview, "Image.Image", np.ndarray]


@dataclass(frozen=True)
class LoadedImage:
    """An image ready for the pipeline.

    Attributes:
        array: ``(H, W, 3)`` uint8 RGB, EXIF orientation applied.
        source: a short description of where it came from (path, ``"<bytes>"``, ...).
    """

    array: np.ndarray
    source: str = "<array>"

    @property
    def width(self) -> int:
        return int(self.array.shape[1])

    @property
    def height(self) -> int:
        return int(self.array.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)``."""
        return self.width, self.height

    def to_pil(self) -> Image.Image:
        from PIL import Image as _Image

        return _Image.fromarray(self.array, mode="RGB")


def _check_pixels(w: int, h: int, max_pixels: int | None, source: str) -> None:
    if w <= 0 or h <= 0:
        raise ImageLoadError(f"{source}: the image is empty ({w}x{h} pixels)")
    if max_pixels is not None and w * h > max_pixels:
        raise ImageTooLargeError(
            f"{source}: the image has {w}x{h} = {w * h:,} pixels, more than the limit of {max_pixels:,}; "
            "downscale it"
        )


def _pil_to_rgb(img: Image.Image) -> np.ndarray:
    """Convert any PIL mode to an ``(H, W, 3)`` uint8 array."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        if mode.startswith("I;16"):
            arr = arr / 257.0
        else:
            lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
            if mode == "I" and lo >= 0 and hi <= 255:
                pass
            elif mode == "I" and lo >= 0 and hi <= 65535:
                arr = arr / 257.0
            else:
                arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        grey = np.clip(np.nan_to_num(arr), 0, 255).round().astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode in ("P", "PA"):
        img = img.convert("RGBA")
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8).copy()


def _from_array(arr: np.ndarray, max_pixels: int | None) -> np.ndarray:
    source = "<array>"
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ImageLoadError(f"{source}: expected an (H, W), (H, W, 3) or (H, W, 4) array, got shape {arr.shape}")
    _check_pixels(int(arr.shape[1]), int(arr.shape[0]), max_pixels, source)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype == np.uint16:
        arr = (arr.astype(np.float64) / 257.0).round().astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise ImageLoadError(f"{source}: the float array contains NaN or infinity")
        scale = 255.0 if arr.max(initial=0.0) <= 1.0 else 1.0
        arr = np.clip(arr * scale, 0, 255).round().astype(np.uint8)
    elif arr.dtype != np.uint8:
        if arr.min(initial=0) < 0 or arr.max(initial=0) > 255:
            raise ImageLoadError(f"{source}: integer array values must lie in 0..255 (dtype {arr.dtype})")
        arr = arr.astype(np.uint8)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.shape[2] == 4:
        arr = arr[:, :, :3]
    return np.ascontiguousarray(arr)


_TRUNCATED_HINT = "is the file complete?"


def _identify(fp: Any) -> Image.Image:
    """Identify an image file with Pillow's format plugins, as ``PIL.Image.open`` does (same
    registry, same order, same "try the next format" errors), but without its decompression-bomb
    check: the caller applies its own pixel limit from the header right after."""
    from PIL import Image as _Image
    from PIL import UnidentifiedImageError

    fp.seek(0)
    prefix = fp.read(16)
    _Image.preinit()
    tried: set[str] = set()
    for stage in (0, 1):
        if stage:
            _Image.init()
        for fmt in list(_Image.ID):
            if fmt in tried:
                continue
            tried.add(fmt)
            factory, accept = _Image.OPEN[fmt]
            try:
                ok = accept(prefix) if accept else True
                if not ok or isinstance(ok, str):
                    continue
                fp.seek(0)
                return factory(fp, "")
            except (SyntaxError, IndexError, TypeError, struct.error):
                continue
    raise UnidentifiedImageError("cannot identify image file")


# Adam7 passes: (x start, y start, x step, y step).
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def _png_rows_missing(data: bytes) -> bool:
    """True when a PNG's image data decompresses to fewer bytes than its header's size needs.

    Pillow's PNG decoder stops quietly when the compressed stream ends before the last row (the
    rows left are zeros), so the stream is inflated once more here, counting bytes only.
    """
    if len(data) < 33 or data[12:16] != b"IHDR":
        return False
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    bits = _PNG_CHANNELS.get(colour, 1) * depth

    def row_bytes(w: int) -> int:
        return 1 + (w * bits + 7) // 8

    if interlace:
        needed = 0
        for x0, y0, dx, dy in _ADAM7:
            pw, ph = -(-(width - x0) // dx) if width > x0 else 0, -(-(height - y0) // dy) if height > y0 else 0
            if pw and ph:
                needed += ph * row_bytes(pw)
    else:
        needed = height * row_bytes(width)
    inflater = zlib.decompressobj()
    got, pos, seen = 0, 8, False
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind == b"IDAT":
            seen = True
            chunk = data[pos + 8 : pos + 8 + length]
            try:
                while chunk and not inflater.eof:
                    got += len(inflater.decompress(chunk, 1 << 20))
                    if got >= needed:
                        return False
                    chunk = inflater.unconsumed_tail
            except zlib.error:
                return True
        elif seen:
            break
        pos += 12 + length
    return got < needed


def identify_image(fp: Any) -> Image.Image:
    """Open an image file object lazily (header read, pixels not decoded) the way ``PIL.Image.open``
    does but without Pillow's decompression-bomb guard; apply a pixel limit of your own."""
    return _identify(fp)


def stored_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(width, height)`` of an image file from its header, as stored (no EXIF turn), without
    decoding it and whatever its size (Pillow's decompression-bomb guard does not apply).

    Raises:
        ImageLoadError: missing file or unreadable header.
    """
    from PIL import UnidentifiedImageError

    try:
        with open(Path(path).expanduser(), "rb") as fh:
            img = _identify(fh)
            return int(img.width), int(img.height)
    except FileNotFoundError:
        raise ImageLoadError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, struct.error) as exc:
        raise ImageLoadError(f"{path}: cannot read the image header ({exc})") from None


def _truncated(img: Image.Image, fp: Any) -> bool:
    """Whether a loaded image lacks data its header promised (see :func:`_png_rows_missing`)."""
    if getattr(img, "_ended", False):  # JPEG: Pillow supplied the end marker (LOAD_TRUNCATED_IMAGES set)
        return True
    if img.format != "PNG":
        return False
    interlaced = bool(img.info.get("interlace"))
    if not interlaced:
        # Rows are decoded top to bottom into zeroed memory: a missing row leaves the last row zero.
        w, h = img.size
        if any(img.crop((0, h - 1, w, h)).tobytes()):
            return False
    fp.seek(0)
    return _png_rows_missing(fp.read())


def _too_large_for_pillow(source: str, img_size: tuple[int, int] | None) -> ImageTooLargeError:
    size = f" ({img_size[0]}x{img_size[1]} pixels)" if img_size else ""
    return ImageTooLargeError(
        f"{source}: this image format's decoder cannot read an image this large{size}; convert it to PNG or JPEG, "
        "or downscale it")


def _open_pil(fp: Any, source: str, max_pixels: int | None, *,
              exif_transpose: bool = True) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode an image file object to an RGB array; also return its ``(width, height)`` as stored
    (before any EXIF turn), which the pixel limit is checked against."""
    from PIL import Image as _Image
    from PIL import ImageOps, UnidentifiedImageError

    img = None
    try:
        img = _identify(fp)
        stored = (int(img.width), int(img.height))
        _check_pixels(img.width, img.height, max_pixels, source)
        img.load()
        if _truncated(img, fp):
            raise ImageLoadError(f"{source}: the image is truncated (its data ends before all {img.height:,} rows of "
                                 f"its {img.width}x{img.height} pixels); {_TRUNCATED_HINT}")
        if exif_transpose:
            ImageOps.exif_transpose(img, in_place=True)
    except ImageLoadError:
        raise
    except _Image.DecompressionBombError:
        # Only a few plugins (TIFF strips, MPO, GIF frames) check again while loading, above 2x
        # Image.MAX_IMAGE_PIXELS; our own limit has already allowed the image.
        raise _too_large_for_pillow(source, img.size if img is not None else None) from None
    except UnidentifiedImageError:
        raise ImageLoadError(f"{source}: not a recognised image format (PNG, JPEG, WebP, ...)") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error) as exc:
        if "truncated" in str(exc):
            raise ImageLoadError(f"{source}: the image is truncated (its data ends before the picture is complete); "
                                 f"{_TRUNCATED_HINT}") from None
        raise ImageLoadError(f"{source}: the image could not be decoded ({exc}); {_TRUNCATED_HINT}") from None
    return _pil_to_rgb(img), stored


def _frozen(array: np.ndarray) -> np.ndarray:
    """Mark a freshly decoded array read-only (its content hash is then remembered, see
    :func:`segzero_tool.segmenters.base.image_key`)."""
    array.flags.writeable = False
    return array


def _decode_cached(data: bytes, source: str, max_pixels: int | None, exif_transpose: bool,
                   cache: DecodedImageCache | None) -> np.ndarray:
    """Decode encoded ``data`` (read-only result), through ``cache`` when one is given and enabled."""
    if cache is None or not cache.enabled:
        return _frozen(_open_pil(io.BytesIO(data), source, max_pixels, exif_transpose=exif_transpose)[0])
    key = cache.key(data, exif_transpose=exif_transpose)
    hit = cache.get(key)
    if hit is not None:
        array, (w, h) = hit
        _check_pixels(w, h, max_pixels, source)  # as a fresh decode checks the stored size
        return array
    array, stored = _open_pil(io.BytesIO(data), source, max_pixels, exif_transpose=exif_transpose)
    return cache.put(key, _frozen(array), stored)


def load_image(image: ImageInput | LoadedImage, *, max_pixels: int | None = DEFAULT_MAX_PIXELS,
               exif_transpose: bool = True, cache: DecodedImageCache | None = None) -> LoadedImage:
    """Load an image from a path, bytes, a PIL image or a numpy array.

    Args:
        image: file path (``str``/``PathLike``), encoded bytes, ``PIL.Image.Image``, or an array
            ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)`` (uint8, uint16, bool or float in 0..1).
        max_pixels: refuse images with more pixels than this (``None``: no limit).
        exif_transpose: for files and bytes, turn the picture as its EXIF orientation says (``False``:
            the pixels as stored, which is how the reference evaluation reads its images).
        cache: a :class:`~segzero_tool.image_cache.DecodedImageCache` for paths and bytes: the same
            encoded content (under any path) is decoded once and the same read-only array returned
            again (so its content hash for the embedding cache is computed once too); ``max_pixels``
            is still checked on a hit. PIL images and arrays bypass it. ``None`` (default): no cache.

    Returns:
        :class:`LoadedImage` with an ``(H, W, 3)`` uint8 RGB array. An image decoded here (from a path,
        bytes or a PIL image) is **read-only**, so that results and embedding caches can share it and
        its content hash is computed once; ``array.copy()`` gives one to draw on. An array passed in is
        used as it is (or converted to a new uint8 RGB array).

    Raises:
        ImageLoadError: missing, unreadable, undecodable, truncated or empty image.
        ImageTooLargeError: more pixels than ``max_pixels``.
    """
    if isinstance(image, LoadedImage):
        _check_pixels(image.width, image.height, max_pixels, image.source)
        return image
    if isinstance(image, np.ndarray):
        return LoadedImage(_from_array(image, max_pixels), "<array>")
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
        if not data:
            raise ImageLoadError("<bytes>: no data")
        return LoadedImage(_decode_cached(data, "<bytes>", max_pixels, exif_transpose, cache), "<bytes>")
    if isinstance(image, (str, os.PathLike)):
        path = Path(image).expanduser()
        if not path.exists():
            raise ImageLoadError(f"{path}: no such file")
        if path.is_dir():
            raise ImageLoadError(f"{path}: is a folder, not an image file")
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise ImageLoadError(f"{path}: cannot be read ({exc.strerror})") from None
        if size == 0:
            raise ImageLoadError(f"{path}: the file is empty")
        if cache is not None and cache.enabled and size <= cache.max_bytes:
            # The file's bytes are the key (a rewritten file is a new entry); a file larger than the
            # whole budget would decode to an image too large to keep, so it is not read into memory.
            try:
                data = path.read_bytes()
            except PermissionError:
                raise ImageLoadError(f"{path}: permission denied") from None
            except OSError as exc:
                raise ImageLoadError(f"{path}: cannot be read ({exc.strerror})") from None
            if not data:
                raise ImageLoadError(f"{path}: the file is empty")
            return LoadedImage(_decode_cached(data, str(path), max_pixels, exif_transpose, cache), str(path))
        try:
            with open(path, "rb") as fh:
                return LoadedImage(_frozen(_open_pil(fh, str(path), max_pixels, exif_transpose=exif_transpose)[0]),
                                   str(path))
        except PermissionError:
            raise ImageLoadError(f"{path}: permission denied") from None
    try:
        from PIL import Image as _Image
    except ImportError:  # pragma: no cover - Pillow is a core dependency
        _Image = None  # type: ignore[assignment]
    if _Image is not None and isinstance(image, _Image.Image):
        _check_pixels(image.width, image.height, max_pixels, "<PIL image>")
        try:
            rgb = _pil_to_rgb(image)
        except (OSError, ValueError) as exc:
            raise ImageLoadError(f"<PIL image>: could not be converted to RGB ({exc})") from None
        return LoadedImage(_frozen(rgb), "<PIL image>")
    raise ImageLoadError(
        f"unsupported image input of type {type(image).__name__}; pass a path, bytes, a PIL image or a numpy array"
    )
