"""Bad and unusual images: clear typed errors or correct RGB conversion, never a deep traceback."""

import io

import numpy as np
import pytest
from PIL import Image

from segzero_tool.errors import ImageLoadError, ImageTooLargeError
from segzero_tool.images import LoadedImage, load_image


def _png_bytes(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_missing_file(tmp_path):
    with pytest.raises(ImageLoadError, match="no such file"):
        load_image(tmp_path / "nope.jpg")


def test_folder_is_not_an_image(tmp_path):
    with pytest.raises(ImageLoadError, match="folder"):
        load_image(tmp_path)


def test_empty_file(tmp_path):
    p = tmp_path / "empty.png"
    p.write_bytes(b"")
    with pytest.raises(ImageLoadError, match="empty"):
        load_image(p)


def test_corrupt_file(tmp_path):
    p = tmp_path / "corrupt.jpg"
    p.write_bytes(b"this is not an image at all" * 10)
    with pytest.raises(ImageLoadError, match="not a recognised image"):
        load_image(p)


def test_truncated_file(tmp_path):
    data = _png_bytes(Image.new("RGB", (200, 200), (10, 20, 30)), "JPEG", quality=95)
    p = tmp_path / "trunc.jpg"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match="the image is truncated"):
        load_image(p)


def test_corrupt_data_after_a_valid_header(tmp_path):
    data = bytearray(_png_bytes(Image.new("RGB", (64, 64), (10, 20, 30))))
    data[60:80] = b"\xff" * 20  # inside the compressed data: a bad CRC / a broken stream
    with pytest.raises(ImageLoadError, match="could not be decoded|truncated"):
        load_image(bytes(data))


def test_pixel_limit_checked_before_decoding():
    data = _png_bytes(Image.new("L", (3000, 3000)))
    with pytest.raises(ImageTooLargeError, match="more than the limit"):
        load_image(data, max_pixels=1_000_000)
    assert load_image(data, max_pixels=None).size == (3000, 3000)


def test_zero_sized_array():
    with pytest.raises(ImageLoadError, match="empty"):
        load_image(np.zeros((0, 10, 3), np.uint8))


@pytest.mark.parametrize("mode", ["CMYK", "RGBA", "LA", "L", "P", "1", "I;16", "I", "F"])
def test_modes_become_rgb(mode):
    img = Image.new("RGB", (16, 8), (200, 100, 50)).convert(mode) if mode not in ("I;16", "I", "F") else None
    if mode == "I;16":
        img = Image.fromarray(np.full((8, 16), 65535, np.uint16))
    elif mode == "I":
        img = Image.fromarray(np.full((8, 16), 40000, np.int32))
    elif mode == "F":
        img = Image.fromarray(np.linspace(0, 1, 128, dtype=np.float32).reshape(8, 16))
    out = load_image(img)
    assert out.array.shape == (8, 16, 3) and out.array.dtype == np.uint8


def test_16bit_png_scaled_not_clipped():
    img = Image.fromarray(np.full((4, 4), 32768, np.uint16))
    out = load_image(_png_bytes(img))
    assert 120 <= out.array[0, 0, 0] <= 135  # half range, not saturated 255


def test_exif_rotation_respected():
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    out = load_image(_png_bytes(img, "JPEG", exif=exif.tobytes()))
    assert out.size == (20, 40)


@pytest.mark.parametrize(
    ("arr", "shape"),
    [
        (np.zeros((5, 7), np.uint8), (5, 7, 3)),
        (np.zeros((5, 7, 1), np.uint8), (5, 7, 3)),
        (np.zeros((5, 7, 4), np.uint8), (5, 7, 3)),
        (np.ones((5, 7, 3), np.float32), (5, 7, 3)),
        (np.zeros((5, 7, 3), np.uint16), (5, 7, 3)),
        (np.zeros((5, 7), bool), (5, 7, 3)),
    ],
)
def test_arrays(arr, shape):
    assert load_image(arr).array.shape == shape


def test_float_array_scaled():
    assert load_image(np.ones((2, 2, 3), np.float32)).array[0, 0, 0] == 255


def test_bad_arrays():
    with pytest.raises(ImageLoadError, match="shape"):
        load_image(np.zeros((2, 2, 2), np.uint8))
    with pytest.raises(ImageLoadError, match="NaN"):
        load_image(np.full((2, 2, 3), np.nan, np.float32))
    with pytest.raises(ImageLoadError, match="0..255"):
        load_image(np.full((2, 2, 3), 1000, np.int32))


def test_unsupported_type():
    with pytest.raises(ImageLoadError, match="unsupported"):
        load_image(12345)  # type: ignore[arg-type]


def test_bytes_and_loaded_passthrough(tmp_path):
    data = _png_bytes(Image.new("RGB", (3, 2)))
    li = load_image(data)
    assert isinstance(li, LoadedImage) and li.size == (3, 2) and li.source == "<bytes>"
    assert load_image(li) is li
    with pytest.raises(ImageLoadError):
        load_image(b"")
