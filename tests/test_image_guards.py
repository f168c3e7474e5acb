"""The pixel limit is ours, and truncated images are refused (issue #11, part 4).

* Pillow's own decompression-bomb guard (``Image.MAX_IMAGE_PIXELS``: a warning above 89.5 MP, an
  error above twice that) never overrides ``max_pixels`` / ``--max-pixels`` (``None``: no limit), and
  a refusal is worded by us, with our numbers. Nothing process-wide is changed to get there.
* A PNG whose header promises 5000x5000 pixels but whose data stops early is refused as truncated,
  also when the compressed stream ends cleanly (Pillow would fill the missing rows with black) and
  when another library has set ``ImageFile.LOAD_TRUNCATED_IMAGES``; likewise a cut-off JPEG.

Checked through the public entry points: ``segzero_tool.sources.load_image_source``,
``segzero_tool.images.load_image``, ``SegZeroPipeline.segment`` and ``segzero segment``.
"""

from __future__ import annotations

import functools
import io
import json
import os
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile
from scripted import ScriptedReasoner

from segzero_tool.errors import ImageLoadError, ImageTooLargeError
from segzero_tool.images import load_image
from segzero_tool.pipeline import SegZeroPipeline
from segzero_tool.sources import ImagePolicy, load_image_source

REPO = Path(__file__).resolve().parents[1]
ANSWER = '<think>t</think><answer>[{"bbox_2d": [10,10,200,200], "point_2d": [100,100]}]</answer>'
BIG_WH = (10_000, 9_500)  # 95 MP: above Pillow's 89.5 MP guard, below our default 100 MP limit


@pytest.fixture(scope="module")
def big_png(tmp_path_factory) -> Path:
    """A 95 MP one-bit PNG (12 KB on disk)."""
    path = tmp_path_factory.mktemp("big") / "big.png"
    Image.new("1", BIG_WH, 1).save(path, format="PNG")
    return path


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png_ending_early(w: int = 5000, h: int = 5000, rows: int = 3) -> bytes:
    """A well-formed PNG (chunks, CRCs, a complete zlib stream) whose data holds only ``rows`` rows."""
    raw = b"".join(b"\x00" + bytes([200, 10, 10]) * w for _ in range(rows))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw, 9)) + _chunk(b"IEND", b"")


@functools.lru_cache(maxsize=1)
def _png_cut(nbytes: int = 225) -> bytes:
    """The first ``nbytes`` of a real 5000x5000 PNG."""
    buf = io.BytesIO()
    Image.new("RGB", (5000, 5000), (10, 20, 30)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()[:nbytes]


def _jpeg_cut() -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)).save(buf, format="JPEG", quality=90)
    data = buf.getvalue()
    return data[: len(data) * 2 // 3]


TRUNCATED = {"png-stream-ends-early": _png_ending_early, "png-cut-at-225-bytes": _png_cut, "jpeg-cut": _jpeg_cut}


# --- the pixel limit ---------------------------------------------------------------------------------


def test_95_megapixels_load_under_our_limit_without_pillow_interfering(big_png):
    limit_before = Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        loaded = load_image_source(big_png, ImagePolicy(allowed_roots=big_png.parent), max_pixels=200_000_000)
    assert loaded.size == BIG_WH and loaded.array[-1, -1].tolist() == [255, 255, 255]
    assert not [w for w in seen if issubclass(w.category, Image.DecompressionBombWarning)]
    assert Image.MAX_IMAGE_PIXELS == limit_before  # nothing process-wide was changed


def test_our_refusal_uses_our_numbers(big_png):
    with pytest.raises(ImageTooLargeError) as info:
        load_image_source(big_png, ImagePolicy(allowed_roots=big_png.parent), max_pixels=90_000_000)
    message = str(info.value)
    assert "10000x9500 = 95,000,000 pixels, more than the limit of 90,000,000" in message
    assert "decompression bomb" not in message.lower() and "DOS" not in message


@pytest.mark.parametrize("max_pixels", [None, 10**9])
def test_pillows_guard_does_not_apply_at_any_size(monkeypatch, max_pixels):
    # A small Pillow limit stands in for images beyond 2 x 89.5 MP (where Pillow raises, not warns).
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    data = io.BytesIO()
    Image.new("RGB", (300, 200), (1, 2, 3)).save(data, format="PNG")
    assert load_image(data.getvalue(), max_pixels=max_pixels).size == (300, 200)
    with pytest.raises(ImageTooLargeError, match="60,000 pixels, more than the limit of 59,999"):
        load_image(data.getvalue(), max_pixels=59_999)


def _pillow_decoder_checks(data: bytes) -> bool:
    """Whether this Pillow's decoder of ``data``'s format refuses it on its own (by version: WebP's does in Pillow
    13, not in 12.3, which Gradio's pin may install)."""
    from PIL import ImageFile

    Image.init()
    img = None  # the format's own plugin, not Image.open (whose guard checks first: not what is asked here)
    for plugin in Image.ID:
        factory, accept = Image.OPEN[plugin]
        if accept is None or accept(data[:16]):
            try:
                img = factory(io.BytesIO(data), "")
                img.load()
            except Image.DecompressionBombError:
                return True
            except (OSError, SyntaxError, ValueError):
                continue
            finally:
                if isinstance(img, ImageFile.ImageFile):
                    img.close()
            return False
    return False


@pytest.mark.parametrize("fmt", ["TIFF", "WEBP"])
def test_formats_whose_pillow_decoder_checks_again_get_a_typed_error_naming_the_way_out(monkeypatch, fmt):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # stands in for images above 2 x 89.5 MP
    data = io.BytesIO()
    Image.new("RGB", (300, 200), (1, 2, 3)).save(data, format=fmt)
    if not _pillow_decoder_checks(data.getvalue()):  # this Pillow's decoder leaves it to us: our limit alone
        assert load_image(data.getvalue(), max_pixels=None).size == (300, 200)
        return
    with pytest.raises(ImageTooLargeError, match="convert it to PNG or JPEG") as info:
        load_image(data.getvalue(), max_pixels=None)
    assert "decompression bomb" not in str(info.value).lower()


def test_tiff_is_still_checked_by_pillow_so_the_typed_error_path_is_exercised(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    data = io.BytesIO()
    Image.new("RGB", (300, 200), (1, 2, 3)).save(data, format="TIFF")
    assert _pillow_decoder_checks(data.getvalue())


def test_pipeline_segments_95_megapixels_with_no_limit(big_png):
    reasoner = ScriptedReasoner(ANSWER)
    result = SegZeroPipeline(reasoner, None, max_pixels=None).segment(str(big_png), "the white thing")
    assert result.image_size == BIG_WH and len(result.objects) == 1
    assert reasoner.calls[0][0].image.size == (840, 840)


# --- truncated images --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(TRUNCATED))
def test_truncated_images_are_refused(kind, tmp_path):
    data = TRUNCATED[kind]()
    path = tmp_path / ("cut.png" if kind.startswith("png") else "cut.jpg")
    path.write_bytes(data)
    with pytest.raises(ImageLoadError, match="the image is truncated") as info:
        load_image_source(path, ImagePolicy(allowed_roots=tmp_path))
    assert not isinstance(info.value, ImageTooLargeError)
    with pytest.raises(ImageLoadError, match="the image is truncated"):
        load_image(data)
    with pytest.raises(ImageLoadError, match="the image is truncated"):
        SegZeroPipeline(ScriptedReasoner(ANSWER), None).segment(data, "q")


def test_the_header_5000x5000_png_ending_after_225_bytes():
    data = _png_ending_early()
    assert len(data) <= 225 and Image.open(io.BytesIO(data)).size == (5000, 5000)
    pillow = Image.open(io.BytesIO(data))
    pillow.load()  # Pillow alone accepts it and fills the missing rows with black
    assert pillow.getpixel((0, 0)) == (200, 10, 10) and pillow.getpixel((4999, 4999)) == (0, 0, 0)
    del pillow
    with pytest.raises(ImageLoadError, match=r"ends before all 5,000 rows of its 5000x5000 pixels"):
        load_image(data)


@pytest.mark.parametrize("kind", sorted(TRUNCATED))
def test_truncated_images_are_refused_even_if_pillow_is_told_to_load_them(kind, monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(ImageLoadError, match="the image is truncated"):
        load_image(TRUNCATED[kind]())


def test_complete_images_with_black_last_rows_still_load():
    # The quick test for missing rows (a zero last row) falls back to counting the data: a picture
    # whose last rows really are black is complete.
    img = np.zeros((50, 40, 3), np.uint8)
    img[:10] = 200
    for kw in ({}, {"optimize": True}):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG", **kw)
        assert load_image(buf.getvalue()).array.tobytes() == img.tobytes()


# --- the command line ------------------------------------------------------------------------------


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    folder = tmp_path / "script"
    folder.mkdir(exist_ok=True)
    (folder / "script.json").write_text(json.dumps([ANSWER]))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGZERO_")}
    env.update({"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
                "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])})
    return subprocess.run([sys.executable, "-m", "segzero_tool", "segment", *args, "--reasoner-backend",
                           "scripted:ScriptedReasoner", "--reasoner", str(folder), "--no-masks"],
                          capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)


def test_cli_accepts_95_megapixels_with_a_raised_limit(big_png, tmp_path):
    proc = _cli(tmp_path, str(big_png), "the white thing", "--max-pixels", "200000000")
    assert proc.returncode == 0, proc.stderr
    assert "decompression" not in proc.stderr.lower()


def test_cli_refuses_over_the_limit_with_our_message(big_png, tmp_path):
    proc = _cli(tmp_path, str(big_png), "q", "--max-pixels", "90000000")
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "95,000,000 pixels, more than the limit of 90,000,000" in lines[0] and "--max-pixels" in lines[0]


def test_cli_refuses_a_truncated_png_with_exit_3(tmp_path):
    path = tmp_path / "cut.png"
    path.write_bytes(_png_ending_early())
    proc = _cli(tmp_path, str(path), "q")
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "the image is truncated" in lines[0], proc.stderr


# --- the evaluation's reader (images as stored, no EXIF turn) ---------------------------------------


def test_eval_reader_applies_our_limit_not_pillows(big_png):
    from segzero_tool.errors import ImageTooLargeError
    from segzero_tool.eval.datasets import read_image_as_stored, stored_image_size

    assert stored_image_size(big_png) == BIG_WH
    assert read_image_as_stored(big_png, max_pixels=None).array.shape == (BIG_WH[1], BIG_WH[0], 3)
    with pytest.raises(ImageTooLargeError, match="more than the limit of 90,000,000"):
        read_image_as_stored(big_png, max_pixels=90_000_000)


@pytest.mark.parametrize("kind", sorted(TRUNCATED))
def test_eval_reader_refuses_truncated_files(kind, tmp_path):
    from segzero_tool.eval.datasets import read_image_as_stored

    path = tmp_path / ("cut.jpg" if kind.startswith("jpeg") else "cut.png")
    path.write_bytes(TRUNCATED[kind]())
    with pytest.raises(ImageLoadError, match="the image is truncated"):
        read_image_as_stored(path)


def test_eval_ground_truth_png_masks_as_large_as_their_image_are_read(tmp_path, monkeypatch):
    from segzero_tool.eval.gt_masks import PngMask

    path = tmp_path / "mask.png"
    Image.new("1", (300, 200), 1).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow's guard would refuse this at open
    mask = PngMask(path)()
    assert mask.shape == (200, 300) and mask.all()
