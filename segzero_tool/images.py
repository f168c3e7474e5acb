"""Loading images safely: paths, bytes, PIL images and numpy arrays -> RGB uint8.

Guards: missing / undecodable / truncated files, zero-sized images, a pixel limit against
decompression bombs (checked from the header before decoding), EXIF orientation (applied), and
CMYK / RGBA / palette / 16-bit / greyscale / float inputs (converted to 8-bit RGB).
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from .errors import ImageLoadError, ImageTooLargeError
from .limits import DEFAULT_MAX_PIXELS as _DEFAULT_MAX_PIXELS

if TYPE_CHECKING:
    from PIL import Image

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


def _open_pil(fp: Any, source: str, max_pixels: int | None) -> np.ndarray:
    from PIL import Image as _Image
    from PIL import ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", _Image.DecompressionBombWarning)
            img = _Image.open(fp)
            _check_pixels(img.width, img.height, max_pixels, source)
            img.load()
            img = ImageOps.exif_transpose(img) or img
    except ImageLoadError:
        raise
    except (_Image.DecompressionBombError, _Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(f"{source}: refused as a possible decompression bomb ({exc})") from None
    except UnidentifiedImageError:
        raise ImageLoadError(f"{source}: not a recognised image format (PNG, JPEG, WebP, ...)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageLoadError(f"{source}: the image could not be decoded ({exc}); is the file complete?") from None
    return _pil_to_rgb(img)


def load_image(image: ImageInput | LoadedImage, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Load an image from a path, bytes, a PIL image or a numpy array.

    Args:
        image: file path (``str``/``PathLike``), encoded bytes, ``PIL.Image.Image``, or an array
            ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)`` (uint8, uint16, bool or float in 0..1).
        max_pixels: refuse images with more pixels than this (``None``: no limit).

    Returns:
        :class:`LoadedImage` with an ``(H, W, 3)`` uint8 RGB array.

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
        return LoadedImage(_open_pil(io.BytesIO(data), "<bytes>", max_pixels), "<bytes>")
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
        try:
            with open(path, "rb") as fh:
                return LoadedImage(_open_pil(fh, str(path), max_pixels), str(path))
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
        return LoadedImage(rgb, "<PIL image>")
    raise ImageLoadError(
        f"unsupported image input of type {type(image).__name__}; pass a path, bytes, a PIL image or a numpy array"
    )
