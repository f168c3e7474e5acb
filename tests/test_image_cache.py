"""The decoded-image cache (issue #12): ``load_image(..., cache=DecodedImageCache())`` decodes the same
encoded content once (any path, or bytes) and returns the same read-only array, so its content hash for
the embedding cache is not computed again either; a byte budget with LRU eviction; errors never cached;
the pipeline's ``image_cache_bytes``; and the MCP server decoding an image sent twice only once."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from scripted import BoxSegmenter, ScriptedReasoner

from segzero_tool import images
from segzero_tool.errors import ImageLoadError, ImageTooLargeError
from segzero_tool.image_cache import DecodedImageCache
from segzero_tool.images import load_image
from segzero_tool.pipeline import SegZeroPipeline
from segzero_tool.segmenters.base import image_key

REPO = Path(__file__).resolve().parents[1]
COFFEE = REPO / "examples" / "coffee.png"  # 600 x 400


def _png(seed: int = 0, size: tuple[int, int] = (40, 30)) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(size: tuple[int, int] = (40, 30), orientation: int | None = None, quality: int = 90) -> bytes:
    rng = np.random.default_rng(1)
    img = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    buf = io.BytesIO()
    if orientation is None:
        img.save(buf, format="JPEG", quality=quality)
    else:
        exif = img.getexif()
        exif[0x0112] = orientation
        img.save(buf, format="JPEG", quality=quality, exif=exif.tobytes())
    return buf.getvalue()


@pytest.fixture
def decodes(monkeypatch) -> list[str]:
    """The sources decoded (calls of the decoder behind load_image)."""
    seen: list[str] = []
    real = images._open_pil

    def counting(fp: Any, source: str, *a: Any, **k: Any) -> Any:
        seen.append(source)
        return real(fp, source, *a, **k)

    monkeypatch.setattr(images, "_open_pil", counting)
    return seen


@pytest.fixture
def hashes(monkeypatch) -> list[int]:
    """The blake2b hashes made (digest sizes): the cache's key of the encoded bytes, image_key's of the pixels."""
    made: list[int] = []
    real = hashlib.blake2b

    def counting(*a: Any, **k: Any) -> Any:
        made.append(k.get("digest_size", 64))
        return real(*a, **k)

    monkeypatch.setattr(hashlib, "blake2b", counting)
    return made


# --- hits and misses by content -------------------------------------------------------------------------


def test_same_bytes_under_two_paths_is_one_entry(tmp_path: Path, decodes):
    cache = DecodedImageCache()
    a, b = tmp_path / "a.png", tmp_path / "sub" / "b.png"
    b.parent.mkdir()
    a.write_bytes(_png())
    b.write_bytes(_png())
    first = load_image(a, cache=cache)
    second = load_image(str(b), cache=cache)
    third = load_image(_png(), cache=cache)
    assert second.array is first.array and third.array is first.array
    assert not first.array.flags.writeable
    assert (first.source, second.source, third.source) == (str(a), str(b), "<bytes>")
    assert decodes == [str(a)]
    assert cache.stats() == {"entries": 1, "bytes": first.array.nbytes, "max_bytes": 128_000_000, "hits": 2,
                             "misses": 1}
    # the pixels are those of a fresh decode
    assert np.array_equal(first.array, load_image(a).array)


def test_a_rewritten_file_is_a_new_entry(tmp_path: Path, decodes):
    cache = DecodedImageCache()
    path = tmp_path / "img.png"
    path.write_bytes(_png(0))
    old = load_image(path, cache=cache).array
    path.write_bytes(_png(1))  # same name, same size, new pixels
    new = load_image(path, cache=cache).array
    assert new is not old and not np.array_equal(new, old)
    assert np.array_equal(new, load_image(path).array)
    assert len(decodes) == 2 + 1 and cache.stats()["misses"] == 2 and len(cache) == 2


def test_the_exif_flag_keys_separate_entries(decodes):
    cache = DecodedImageCache()
    data = _jpeg((40, 30), orientation=6)  # stored 40 x 30, shown turned: 30 x 40
    turned = load_image(data, cache=cache)
    stored = load_image(data, cache=cache, exif_transpose=False)
    assert turned.size == (30, 40) and stored.size == (40, 30)
    assert load_image(data, cache=cache).array is turned.array
    assert load_image(data, cache=cache, exif_transpose=False).array is stored.array
    assert len(decodes) == 2 and len(cache) == 2


def test_a_hit_is_not_hashed_again(tmp_path: Path, hashes):
    cache = DecodedImageCache()
    path = tmp_path / "a.png"
    path.write_bytes(_png())
    arr = load_image(path, cache=cache).array
    key = image_key(arr)
    assert hashes == [16, 16]  # the encoded bytes' key, then the pixels' content hash
    hashes.clear()
    again = load_image(path, cache=cache).array
    assert again is arr and image_key(again) == key
    assert hashes == [16]  # only the encoded bytes (a 300 KB JPEG: < 1 ms), not the pixels (12 ms at 1080p)


def test_pil_images_and_arrays_bypass_the_cache(decodes):
    cache = DecodedImageCache()
    arr = np.zeros((8, 8, 3), np.uint8)
    load_image(arr, cache=cache)
    load_image(Image.fromarray(arr), cache=cache)
    load_image(load_image(arr), cache=cache)
    assert cache.stats()["hits"] == cache.stats()["misses"] == 0 and len(cache) == 0


def test_without_a_cache_nothing_changes(decodes):
    data = _png()
    a, b = load_image(data), load_image(data)
    assert a.array is not b.array and np.array_equal(a.array, b.array) and len(decodes) == 2


# --- the budget -------------------------------------------------------------------------------------------


def test_byte_budget_and_lru_eviction(decodes):
    one = 40 * 30 * 3
    cache = DecodedImageCache(max_bytes=2 * one)
    a, b, c = (_png(seed) for seed in range(3))
    arr_a = load_image(a, cache=cache).array
    load_image(b, cache=cache)
    assert load_image(a, cache=cache).array is arr_a  # a is now the most recently used
    load_image(c, cache=cache)  # evicts b, the least recently used
    assert cache.stats()["bytes"] == 2 * one and len(cache) == 2
    decodes.clear()
    assert load_image(a, cache=cache).array is arr_a
    load_image(c, cache=cache)
    assert decodes == []
    load_image(b, cache=cache)
    assert decodes == ["<bytes>"]  # b was evicted; storing it again evicts a, now the least recently used
    assert load_image(c, cache=cache).array is not None and len(decodes) == 1
    assert load_image(a, cache=cache).array is not arr_a and len(decodes) == 2
    assert len(cache) == 2 and cache.stats()["bytes"] == 2 * one


def test_an_image_larger_than_the_budget_is_not_stored(tmp_path: Path, decodes):
    cache = DecodedImageCache(max_bytes=40 * 30 * 3 - 1)
    path = tmp_path / "a.png"
    path.write_bytes(_png())
    first = load_image(path, cache=cache)
    second = load_image(path, cache=cache)
    assert first.array is not second.array and len(cache) == 0 and cache.stats()["bytes"] == 0
    assert not second.array.flags.writeable and len(decodes) == 2


def test_a_file_larger_than_the_budget_is_not_read_into_memory(tmp_path: Path, decodes, monkeypatch):
    cache = DecodedImageCache(max_bytes=10)
    path = tmp_path / "a.png"
    path.write_bytes(_png())
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail("read whole"))
    assert load_image(path, cache=cache).size == (40, 30) and len(cache) == 0


def test_zero_disables_and_clear_empties():
    off = DecodedImageCache(0)
    data = _png()
    assert load_image(data, cache=off).array is not load_image(data, cache=off).array
    assert off.stats() == {"entries": 0, "bytes": 0, "max_bytes": 0, "hits": 0, "misses": 0} and not off.enabled
    on = DecodedImageCache()
    load_image(data, cache=on)
    on.clear()
    assert len(on) == 0 and on.stats()["bytes"] == 0 and on.stats()["misses"] == 1
    for bad in (-1, 1.5, True, "1"):
        with pytest.raises(ValueError, match="max_bytes"):
            DecodedImageCache(bad)  # type: ignore[arg-type]


def test_only_read_only_arrays_are_stored():
    cache = DecodedImageCache()
    with pytest.raises(ValueError, match="read-only"):
        cache.put(cache.key(b"x"), np.zeros((2, 2, 3), np.uint8), (2, 2))


# --- the pixel limit and errors ------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", [None, 6])
def test_max_pixels_is_enforced_on_a_hit(tmp_path: Path, orientation):
    path = tmp_path / "a.jpg"
    path.write_bytes(_jpeg((40, 30), orientation=orientation))
    with pytest.raises(ImageTooLargeError) as fresh:
        load_image(path, max_pixels=1000)
    cache = DecodedImageCache()
    load_image(path, cache=cache, max_pixels=None)
    with pytest.raises(ImageTooLargeError) as hit:
        load_image(path, cache=cache, max_pixels=1000)
    assert str(hit.value) == str(fresh.value) and "40x30" in str(hit.value)
    assert cache.stats()["hits"] == 1
    assert load_image(path, cache=cache, max_pixels=1200).array.size == 3600


def _message(fn: Any) -> str:
    with pytest.raises(ImageLoadError) as info:
        fn()
    return str(info.value)


def test_errors_are_not_cached_and_read_the_same(tmp_path: Path, decodes):
    cache = DecodedImageCache()
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    full = _jpeg((200, 200), quality=95)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(full[: len(full) // 2])
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"this is not an image at all" * 10)
    cases = {"missing": tmp_path / "nope.jpg", "folder": tmp_path, "empty": empty, "truncated": cut,
             "corrupt": corrupt, "truncated bytes": full[: len(full) // 2], "no bytes": b""}
    expected = {"missing": "no such file", "folder": "is a folder", "empty": "the file is empty",
                "truncated": "the image is truncated", "corrupt": "not a recognised image",
                "truncated bytes": "the image is truncated", "no bytes": "no data"}
    for name, source in cases.items():
        plain = _message(lambda source=source: load_image(source))
        for _ in range(2):  # the second try fails the same way: nothing was stored
            assert _message(lambda source=source: load_image(source, cache=cache)) == plain, name
        assert expected[name] in plain, name
    assert len(cache) == 0 and cache.stats()["hits"] == 0
    cut.write_bytes(full)  # completed: now it loads (and is stored)
    assert load_image(cut, cache=cache).size == (200, 200) and len(cache) == 1


def test_permission_denied_reads_the_same(tmp_path: Path, monkeypatch):
    path = tmp_path / "locked.png"
    path.write_bytes(_png())

    def refuse(*a: Any, **k: Any) -> Any:
        raise PermissionError(13, "Permission denied")

    # as chmod 0 would (it does not stop root): both ways of reading the file are refused
    monkeypatch.setattr(images, "open", refuse, raising=False)
    monkeypatch.setattr(Path, "read_bytes", refuse)
    plain = _message(lambda: load_image(path))
    assert plain == f"{path}: permission denied"
    assert _message(lambda: load_image(path, cache=DecodedImageCache())) == plain


# --- threads ----------------------------------------------------------------------------------------------


def test_threads_loading_the_same_and_different_images():
    cache = DecodedImageCache(max_bytes=3 * 40 * 30 * 3)
    blobs = [_png(seed) for seed in range(4)]  # 4 images, room for 3: evictions happen too
    expected = [load_image(b).array for b in blobs]
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def worker(k: int) -> None:
        try:
            start.wait()
            for i in range(60):
                j = (k + i) % 4 if k % 2 else 0
                arr = load_image(blobs[j], cache=cache).array
                assert np.array_equal(arr, expected[j]) and not arr.flags.writeable
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    s = cache.stats()
    assert s["hits"] + s["misses"] == 8 * 60 and s["entries"] <= 3 and s["bytes"] == s["entries"] * 3600


# --- the pipeline ----------------------------------------------------------------------------------------


def test_the_pipeline_decodes_a_path_once_for_two_prompt_calls(tmp_path: Path, decodes):
    path = tmp_path / "coffee.png"
    shutil.copy(COFFEE, path)
    seg = BoxSegmenter()
    pipe = SegZeroPipeline(None, seg)
    first = pipe.segment_by_prompts(path, [{"box": [10, 10, 100, 100]}])
    second = pipe.segment_by_prompts(str(path), [{"box": [20, 20, 200, 200]}])
    assert decodes == [str(path)] and second.image is first.image
    assert pipe.image_cache.stats()["hits"] == 1 and pipe.image_cache.stats()["entries"] == 1
    # the reasoning path loads through the same cache
    reasoning = SegZeroPipeline(ScriptedReasoner('<answer>[{"bbox_2d": [1,1,50,50]}]</answer>'), seg)
    reasoning.image_cache = pipe.image_cache
    assert reasoning.segment(path, "the thing").image is first.image and decodes == [str(path)]
    pipe.close()
    assert len(pipe.image_cache) == 0


def test_image_cache_bytes_zero_disables_and_bad_values_are_refused(tmp_path: Path, decodes):
    path = tmp_path / "coffee.png"
    shutil.copy(COFFEE, path)
    pipe = SegZeroPipeline(None, BoxSegmenter(), image_cache_bytes=0)
    pipe.segment_by_prompts(path, [{"box": [10, 10, 100, 100]}])
    pipe.segment_by_prompts(path, [{"box": [10, 10, 100, 100]}])
    assert len(decodes) == 2 and pipe.image_cache.stats()["entries"] == 0
    assert SegZeroPipeline(None, BoxSegmenter(), image_cache_bytes=1000).image_cache.max_bytes == 1000
    for bad in (-1, 2.5, None, "big"):
        with pytest.raises(ValueError, match="image_cache_bytes"):
            SegZeroPipeline(None, BoxSegmenter(), image_cache_bytes=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="image_cache_bytes"):
        SegZeroPipeline.from_pretrained("none", BoxSegmenter(), device="cpu", image_cache_bytes=-5)
    pipe = SegZeroPipeline.from_pretrained("none", BoxSegmenter(), device="cpu", image_cache_bytes=5_000_000)
    assert pipe.image_cache.max_bytes == 5_000_000


# --- the MCP server ----------------------------------------------------------------------------------------


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_mcp_prompts_on_the_same_path_decode_once(tmp_path: Path, decodes):
    pytest.importorskip("mcp")
    from segzero_tool.mcp_server import ServerSettings, compat, create_server
    from segzero_tool.mcp_server.service import SegZeroService

    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(COFFEE, root / "coffee.png")
    settings = ServerSettings(roots=(root,))
    svc = SegZeroService(settings, SegZeroPipeline(None, BoxSegmenter()))
    server = create_server(settings, service=svc)
    args = {"image": "coffee.png", "objects": [{"box": [172, 18, 410, 300]}], "mask_encoding": "none"}
    if compat.SDK_MAJOR >= 2:
        from mcp import Client as SdkClient

        async with SdkClient(server) as client:
            answers = [compat.dump(await client.call_tool("segment_by_prompts", args)) for _ in range(2)]
            status = json.loads(compat.dump(await client.read_resource("segzero://status"))["contents"][0]["text"])
    else:
        from mcp.shared.memory import create_connected_server_and_client_session
        from pydantic import AnyUrl

        async with create_connected_server_and_client_session(server) as client:
            answers = [compat.dump(await client.call_tool("segment_by_prompts", args)) for _ in range(2)]
            status = json.loads(compat.dump(await client.read_resource(AnyUrl("segzero://status")))["contents"][0]
                                ["text"])
    assert [a.get("isError") for a in answers] == [False, False]
    assert len(decodes) == 1 and decodes[0].endswith("coffee.png")
    assert status["image_cache"] == {"entries": 1, "bytes": 600 * 400 * 3, "max_bytes": 128_000_000, "hits": 1,
                                     "misses": 1}
