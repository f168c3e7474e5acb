"""The fast overlay, RLE and image loading give exactly the bytes of the former code (issue #11).

The former implementations are kept below, verbatim, as references. Every output is compared byte
for byte: the decoded image (what SAM2 receives), the frame-resized image the reasoner sees, the RLE
strings, ``result.json`` and the ``mask_*.png`` / ``overlay.png`` files of ``result.save``, on a
1920x1080 JPEG and PNG, 1x1, portrait, 3000x2000 with 50 objects, RGBA / palette / 16-bit /
greyscale / 1-bit / CMYK / interlaced / progressive inputs and every EXIF orientation, plus random
masks and pictures from hypothesis.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from scripted import ScriptedReasoner

import segzero_tool.masks as masks_mod
import segzero_tool.overlay as overlay_mod
import segzero_tool.pipeline_stages as pipeline_mod  # where the pipeline calls load_image
from segzero_tool.errors import ImageLoadError, ImageTooLargeError
from segzero_tool.frame import ReasoningFrame
from segzero_tool.images import LoadedImage, load_image
from segzero_tool.masks import rle_decode, rle_encode
from segzero_tool.overlay import PALETTE, _nearest_indices, _scaled_size, draw_overlay
from segzero_tool.pipeline import SegZeroPipeline
from segzero_tool.result import SegmentedObject
from segzero_tool.segmenters.base import ObjectPrompt, Segmenter, SegmenterOutput

# --- the former implementations (commit a4243b1), the references -------------------------------


def old_rle_encode(mask: np.ndarray) -> dict[str, Any]:
    from pycocotools import mask as mask_utils

    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {mask.shape}")
    h, w = int(mask.shape[0]), int(mask.shape[1])
    cols = np.flatnonzero(mask.any(axis=0))
    if cols.size == 0:
        counts: list[int] = [h * w]
    else:
        x1, x2 = int(cols[0]), int(cols[-1])
        flat = np.ascontiguousarray(mask[:, x1 : x2 + 1].T, dtype=np.uint8).reshape(-1)
        change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
        bounds = np.concatenate(([0], change, [flat.size]))
        runs = np.diff(bounds).tolist()
        lead, tail = x1 * h, (w - 1 - x2) * h
        if flat[0]:
            runs.insert(0, 0)
        runs[0] += lead
        if flat[-1]:
            if tail:
                runs.append(tail)
        else:
            runs[-1] += tail
        counts = runs
    rle = mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    c = rle["counts"]
    return {"size": [h, w], "counts": c.decode("ascii") if isinstance(c, bytes) else c}


def old_draw_overlay(image, objects, *, max_side=1024, alpha=0.45, draw_boxes=True, draw_points=True,
                     draw_labels=True):
    from PIL import Image as _Image
    from PIL import ImageDraw

    h, w = image.shape[:2]
    ow, oh, s = _scaled_size(w, h, max_side)
    base = _Image.fromarray(image, mode="RGB")
    if s != 1.0:
        base = base.resize((ow, oh), _Image.BILINEAR)
    canvas = np.asarray(base, dtype=np.float32).copy()
    for i, obj in enumerate(objects):
        if obj.mask is None or not obj.mask.any():
            continue
        m = obj.mask
        if s != 1.0:
            m = np.asarray(_Image.fromarray(m.astype(np.uint8) * 255).resize((ow, oh), _Image.NEAREST)) > 127
        colour = np.asarray(PALETTE[i % len(PALETTE)], dtype=np.float32)
        canvas[m] = canvas[m] * (1 - alpha) + colour * alpha
    out = _Image.fromarray(canvas.round().clip(0, 255).astype(np.uint8), mode="RGB")
    draw = ImageDraw.Draw(out)
    lw = max(2, round(max(ow, oh) / 300))
    r = max(3, round(max(ow, oh) / 150))
    font_px = max(11, round(max(ow, oh) / 45))
    try:
        from PIL import ImageFont

        font = ImageFont.load_default(size=font_px)
    except (TypeError, OSError):
        font = None
        font_px = 11
    for i, obj in enumerate(objects):
        colour = PALETTE[i % len(PALETTE)]
        if draw_boxes and obj.box is not None:
            x1, y1, x2, y2 = (v * s for v in obj.box)
            draw.rectangle((x1, y1, x2, y2), outline=colour, width=lw)
            if draw_labels:
                tag = f"{i}" + (f" {obj.label}" if obj.label else "") + f" {obj.score:.2f}"
                tx, ty = x1, max(0.0, y1 - font_px - 2 * lw)
                tw = draw.textlength(tag, font=font)
                draw.rectangle((tx, ty, tx + tw + 2 * lw, ty + font_px + lw), fill=(0, 0, 0))
                draw.text((tx + lw, ty), tag, fill=colour, font=font)
        if draw_points:
            for px, py in obj.points:
                cx, cy = px * s, py * s
                draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour, outline=(0, 0, 0), width=max(1, lw // 2))
    return out


def _old_pil_to_rgb(img):
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


def old_decode(data: bytes) -> np.ndarray:
    """The former ``_open_pil`` on bytes (its pixel limit and error wording left out)."""
    from PIL import ImageOps

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        img = Image.open(io.BytesIO(data))
        img.load()
        img = ImageOps.exif_transpose(img) or img
    return _old_pil_to_rgb(img)


def old_load_image(image, *, max_pixels=None, cache=None):  # the old pipeline had no decoded-image cache
    if isinstance(image, (bytes, bytearray)):
        return LoadedImage(old_decode(bytes(image)), "<bytes>")
    if isinstance(image, (str, Path)):
        return LoadedImage(old_decode(Path(image).read_bytes()), str(image))
    return load_image(image, max_pixels=max_pixels)


# --- inputs ----------------------------------------------------------------------------------------


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _photo(w: int, h: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    base = np.stack([xx / max(w, 1) * 255, yy / max(h, 1) * 255, (xx + yy) / max(w + h, 1) * 255], axis=-1)
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def _exif_jpeg(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _encode(Image.fromarray(_photo(61, 37, orientation)), "JPEG", quality=90, exif=exif.tobytes())


def _inputs() -> dict[str, bytes]:
    rgb = Image.fromarray(_photo(97, 53, 1))
    out = {
        "jpeg-1920x1080": _encode(Image.fromarray(_photo(1920, 1080)), "JPEG", quality=90),
        "png-1920x1080": _encode(Image.fromarray(_photo(1920, 1080, 2)), "PNG"),
        "png-1x1": _encode(Image.new("RGB", (1, 1), (1, 2, 3)), "PNG"),
        "jpeg-portrait-600x1000": _encode(Image.fromarray(_photo(600, 1000, 3)), "JPEG", quality=85),
        "png-rgba": _encode(rgb.convert("RGBA"), "PNG"),
        "png-palette": _encode(rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=37), "PNG"),
        "png-palette-transparency": _encode(rgb.convert("P", palette=Image.Palette.ADAPTIVE), "PNG", transparency=3),
        "png-16bit": _encode(Image.fromarray(_photo(97, 53, 4)[:, :, 0].astype(np.uint16) * 256 + 7), "PNG"),
        "png-grey": _encode(rgb.convert("L"), "PNG"),
        "png-grey-alpha": _encode(rgb.convert("LA"), "PNG"),
        "png-1bit": _encode(rgb.convert("1"), "PNG"),
        "jpeg-cmyk": _encode(rgb.convert("CMYK"), "JPEG", quality=90),
        "jpeg-progressive": _encode(rgb, "JPEG", quality=80, progressive=True),
        "jpeg-grey": _encode(rgb.convert("L"), "JPEG"),
        "webp": _encode(rgb, "WEBP", quality=80),
        "gif": _encode(rgb.convert("P"), "GIF"),
        "bmp": _encode(rgb, "BMP"),
    }
    for k in range(1, 9):
        out[f"jpeg-exif-orientation-{k}"] = _exif_jpeg(k)
    return out


INPUTS = _inputs()


@pytest.mark.parametrize("name", sorted(INPUTS))
def test_decoding_and_the_reasoner_frame_are_unchanged(name):
    data = INPUTS[name]
    new, old = load_image(data), old_load_image(data)
    assert new.array.dtype == old.array.dtype == np.uint8
    assert new.array.shape == old.array.shape
    assert new.array.tobytes() == old.array.tobytes()  # what SAM2 receives
    frame = ReasoningFrame(new.size)
    a, b = frame.resize_image(new.to_pil()), frame.resize_image(old.to_pil())
    assert (a.mode, a.size, a.tobytes()) == (b.mode, b.size, b.tobytes())  # what the reasoner sees


def test_interlaced_png_is_decoded_as_before():
    # Pillow cannot write interlaced PNGs: build one with the Adam7 layout by hand.
    data = _adam7_png(_photo(23, 17, 5))
    assert Image.open(io.BytesIO(data)).info.get("interlace")
    assert load_image(data).array.tobytes() == old_load_image(data).array.tobytes()


def _adam7_png(rgb: np.ndarray) -> bytes:
    import struct
    import zlib

    h, w, _ = rgb.shape
    raw = b""
    for x0, y0, dx, dy in ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
                           (0, 1, 1, 2)):
        sub = rgb[y0::dy, x0::dx]
        if sub.size:
            raw += b"".join(b"\x00" + row.tobytes() for row in sub)

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 1)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


# --- the whole pipeline: result.json, masks and overlay PNGs ---------------------------------------


class ShapeSegmenter(Segmenter):
    """Deterministic masks: an ellipse in each box (every third one speckled), recording its inputs."""

    name = "shapes"

    def __init__(self) -> None:
        self.model_id = "shapes"
        self.inputs: list[bytes] = []

    def segment(self, image: np.ndarray, prompts: list[ObjectPrompt]) -> SegmenterOutput:
        self.inputs.append(image.tobytes())
        h, w = image.shape[:2]
        rng = np.random.default_rng(len(prompts))
        masks = np.zeros((len(prompts), h, w), bool)
        for k, p in enumerate(prompts):
            x1, y1, x2, y2 = (int(v) for v in p.box)
            x1, x2 = max(0, min(x1, x2)), min(w - 1, max(x1, x2))
            y1, y2 = max(0, min(y1, y2)), min(h - 1, max(y1, y2))
            yy, xx = np.ogrid[y1 : y2 + 1, x1 : x2 + 1]
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            rx, ry = max((x2 - x1) / 2, 0.5), max((y2 - y1) / 2, 0.5)
            m = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
            if k % 3 == 2:
                m &= rng.random(m.shape) < 0.5
            masks[k, y1 : y2 + 1, x1 : x2 + 1] = m
        return SegmenterOutput(masks, np.linspace(0.5, 0.99, len(prompts), dtype=np.float32))


def _answer(n: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        x1, y1 = (int(v) for v in rng.integers(-20, 800, 2))
        x2, y2 = x1 + int(rng.integers(1, 400)), y1 + int(rng.integers(1, 400))
        label = f', "label": "thing {i}"' if i % 2 else ""
        items.append(f'{{"bbox_2d": [{x1},{y1},{x2},{y2}], "point_2d": [{(x1 + x2) // 2},{(y1 + y2) // 2}]{label}}}')
    return "<think>Look.</think><answer>[" + ", ".join(items) + "]</answer>"


def _run_pipeline(data: bytes, answer: str, out: Path, masks: bool) -> tuple[list[bytes], dict[str, bytes]]:
    reasoner, segmenter = ScriptedReasoner(answer), ShapeSegmenter()
    pipe = SegZeroPipeline(reasoner, segmenter, max_objects=60)
    result = pipe.segment(data, "what is here?")
    result.timings = {}
    frames = [(r.image.mode, r.image.size, r.image.tobytes()) for call in reasoner.calls for r in call]
    result.save(out, masks=masks)
    files = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
    return [repr(f[:2]).encode() + f[2] for f in frames] + segmenter.inputs, files


PIPELINE_CASES = {
    "jpeg-1920x1080-3": (INPUTS["jpeg-1920x1080"], _answer(3, 0)),
    "png-1920x1080-5": (INPUTS["png-1920x1080"], _answer(5, 1)),
    "png-1x1-2": (INPUTS["png-1x1"], _answer(2, 2)),
    "portrait-4": (INPUTS["jpeg-portrait-600x1000"], _answer(4, 3)),
    "jpeg-3000x2000-50": (_encode(Image.fromarray(_photo(3000, 2000, 9)), "JPEG", quality=90), _answer(50, 4)),
    "exif-6-3": (INPUTS["jpeg-exif-orientation-6"], _answer(3, 5)),
    "palette-3": (INPUTS["png-palette-transparency"], _answer(3, 6)),
    "16bit-2": (INPUTS["png-16bit"], _answer(2, 7)),
}


@pytest.mark.parametrize("case", sorted(PIPELINE_CASES))
def test_pipeline_outputs_are_byte_identical(case, tmp_path, monkeypatch):
    data, answer = PIPELINE_CASES[case]
    masks = not case.endswith("-50")  # 50 mask PNGs of 6 MP (unchanged code) would take most of a minute
    inputs_new, files_new = _run_pipeline(data, answer, tmp_path / "new", masks)
    monkeypatch.setattr(pipeline_mod, "load_image", old_load_image)
    monkeypatch.setattr(masks_mod, "rle_encode", old_rle_encode)
    monkeypatch.setattr(overlay_mod, "draw_overlay", old_draw_overlay)
    inputs_old, files_old = _run_pipeline(data, answer, tmp_path / "old", masks)
    assert inputs_new == inputs_old  # the reasoner's frame and SAM2's image
    assert sorted(files_new) == sorted(files_old)
    assert "overlay.png" in files_new and "result.json" in files_new
    for name in files_new:
        assert files_new[name] == files_old[name], name


# --- RLE ---------------------------------------------------------------------------------------------


def _coco(mask: np.ndarray) -> str:
    from pycocotools import mask as mask_utils

    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode("ascii")


@st.composite
def _masks(draw) -> np.ndarray:
    h = draw(st.integers(1, 24))
    w = draw(st.integers(1, 24))
    kind = draw(st.sampled_from(["random", "box", "full", "empty", "rows", "cols"]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if kind == "random":
        return rng.random((h, w)) < draw(st.floats(0, 1))
    m = np.zeros((h, w), bool)
    if kind == "full":
        m[:] = True
    elif kind == "box":
        y1, y2 = sorted(rng.integers(0, h, 2))
        x1, x2 = sorted(rng.integers(0, w, 2))
        m[y1 : y2 + 1, x1 : x2 + 1] = True
    elif kind == "rows":
        m[rng.integers(0, h, 3)] = True
    elif kind == "cols":
        m[:, rng.integers(0, w, 3)] = True
    return m


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_masks())
def test_rle_matches_pycocotools_and_the_former_encoder(mask):
    new = rle_encode(mask)
    assert new == old_rle_encode(mask)
    assert new["counts"] == _coco(mask)
    assert np.array_equal(rle_decode(new), mask)


def test_rle_on_large_masks_and_views():
    h, w = 1080, 1920
    yy, xx = np.ogrid[:h, :w]
    ellipse = ((xx - 700) / 300) ** 2 + ((yy - 500) / 200) ** 2 <= 1
    edges = np.zeros((h, w), bool)
    edges[0, :] = edges[-1, :] = edges[:, 0] = edges[:, -1] = True
    corner = np.zeros((h, w), bool)
    corner[-1, -1] = True
    stack = np.stack([ellipse, edges, corner])
    for m in (ellipse, edges, corner, stack[1], ellipse[::2, ::3], ellipse.T):
        assert rle_encode(m) == old_rle_encode(m)
        assert rle_encode(m)["counts"] == _coco(m)


# --- overlay -----------------------------------------------------------------------------------------


def _objects(rng: np.random.Generator, w: int, h: int, n: int) -> list[SegmentedObject]:
    objs = []
    yy, xx = np.ogrid[:h, :w]
    for i in range(n):
        cx, cy = rng.uniform(-5, w + 5), rng.uniform(-5, h + 5)
        rx, ry = rng.uniform(0.3, w / 2 + 1), rng.uniform(0.3, h / 2 + 1)
        kind = i % 6
        if kind == 3:
            m = rng.random((h, w)) < 0.1
        elif kind == 4:
            m = np.zeros((h, w), bool)
        elif kind == 5:
            m = None
        else:
            m = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
        x1, x2 = sorted((int(min(max(cx - rx, 0), w - 1)), int(min(max(cx + rx, 0), w - 1))))
        y1, y2 = sorted((int(min(max(cy - ry, 0), h - 1)), int(min(max(cy + ry, 0), h - 1))))
        box = None if i % 7 == 6 else (x1, y1, x2, y2)
        objs.append(SegmentedObject(box=box, points=((int(cx) % w, int(cy) % h),), score=float(rng.random()),
                                    mask=m, label="cup" if i % 2 else None))
    return objs


def _same(a: Image.Image, b: Image.Image) -> bool:
    return (a.mode, a.size, a.tobytes()) == (b.mode, b.size, b.tobytes())


@pytest.mark.parametrize(
    ("w", "h", "n", "max_side"),
    [(1920, 1080, 3, 1024), (1080, 1920, 5, 1024), (1, 1, 1, 1024), (7, 5, 3, 4), (1025, 3, 2, 1024),
     (3, 1500, 2, 1024), (3000, 2000, 50, 1024), (640, 480, 4, None), (1024, 700, 3, 1024), (1030, 1030, 3, 100),
     (333, 777, 6, 57), (2000, 1000, 12, 1999)],
)
def test_overlay_matches_the_former_drawing(w, h, n, max_side):
    rng = np.random.default_rng(w * 7 + h)
    image = _photo(w, h, n)
    objs = _objects(rng, w, h, n)
    assert _same(draw_overlay(image, objs, max_side=max_side), old_draw_overlay(image, objs, max_side=max_side))
    kw = {"alpha": 0.8, "draw_labels": False, "draw_points": False}
    assert _same(draw_overlay(image, objs, max_side=max_side, **kw), old_draw_overlay(image, objs, max_side=max_side,
                                                                                        **kw))


def test_overlay_masks_that_are_not_image_sized_bool_take_the_former_path():
    image = _photo(300, 200, 1)
    odd = [SegmentedObject(box=(10, 10, 100, 100), points=(), score=0.5,
                           mask=(np.arange(150 * 100).reshape(100, 150) % 7 == 0)),  # half size
           SegmentedObject(box=(50, 50, 150, 150), points=(), score=0.5,
                           mask=np.pad(np.ones((50, 50), np.uint8), ((60, 90), (40, 210))))]  # uint8
    for max_side in (100, 299):
        assert _same(draw_overlay(image, odd, max_side=max_side), old_draw_overlay(image, odd, max_side=max_side))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(w=st.integers(1, 90), h=st.integers(1, 90), n=st.integers(0, 5), max_side=st.integers(1, 100),
       seed=st.integers(0, 2**32 - 1), alpha=st.floats(0, 1))
def test_overlay_matches_on_random_pictures(w, h, n, max_side, seed, alpha):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    objs = _objects(rng, w, h, n)
    assert _same(draw_overlay(image, objs, max_side=max_side, alpha=alpha),
                 old_draw_overlay(image, objs, max_side=max_side, alpha=alpha))


@settings(max_examples=200, deadline=None)
@given(n_in=st.integers(1, 5000), n_out=st.integers(1, 1024), seed=st.integers(0, 1000))
def test_nearest_index_map_is_pillows(n_in, n_out, seed):
    n_out = min(n_out, n_in)
    line = np.random.default_rng(seed).integers(0, 2, n_in, dtype=np.uint8) * 255
    pil = np.asarray(Image.fromarray(line.reshape(1, n_in)).resize((n_out, 1), Image.NEAREST))[0]
    assert np.array_equal(line[_nearest_indices(n_in, n_out)], pil)
    col = np.asarray(Image.fromarray(line.reshape(n_in, 1)).resize((1, n_out), Image.NEAREST))[:, 0]
    assert np.array_equal(line[_nearest_indices(n_in, n_out)], col)


def test_errors_are_unchanged_for_bad_inputs():
    with pytest.raises(ImageLoadError):
        load_image(b"not an image" * 10)
    with pytest.raises(ImageTooLargeError):
        load_image(INPUTS["png-1920x1080"], max_pixels=1000)
