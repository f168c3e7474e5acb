"""The bounded result store: read back by id, masks from RLE, LRU eviction, thread safety."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
from PIL import Image

from segzero_tool.mcp_server.store import MaskNotFound, ResultNotFound, ResultStore
from segzero_tool.parsing import ParseStatus
from segzero_tool.result import SegmentationResult, SegmentedObject

H, W = 30, 40


def _mask(x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[y1 : y2 + 1, x1 : x2 + 1] = True
    return m


def _result(n: int = 2, *, masks: bool = True, query: str = "the cups") -> SegmentationResult:
    objects = []
    for k in range(n):
        box = (2 + 10 * k, 3, 8 + 10 * k, 12 + k)
        objects.append(SegmentedObject(box=box, points=(((box[0] + box[2]) // 2, 5),), score=0.9,
                                       mask=_mask(*box) if masks else None))
    return SegmentationResult(query=query, prompt_format="visionreasoner", reasoning="because",
                              raw_output="<think>because</think>", parse_status=ParseStatus.OK,
                              image_size=(W, H), objects=objects,
                              image=np.zeros((H, W, 3), np.uint8))


def _decode(png: bytes) -> np.ndarray:
    img = Image.open(io.BytesIO(png))
    assert img.mode == "L" and img.size == (W, H)
    arr = np.asarray(img)
    assert set(np.unique(arr)) <= {0, 255}
    return arr == 255


def test_put_get_and_masks_round_trip():
    store = ResultStore()
    result = _result()
    rid = store.put(result, overlay_png=b"\x89PNG-overlay")
    assert isinstance(rid, str) and 12 <= len(rid) <= 16
    entry = store.get(rid)
    assert entry.id == rid and entry.n_objects == 2 and entry.image_size == (W, H)
    assert entry.result_dict["query"] == "the cups" and "rle" in entry.result_dict["objects"][0]
    assert "image" not in entry.result_dict
    assert entry.nbytes > len(b"\x89PNG-overlay")
    for k, obj in enumerate(result.objects):
        assert np.array_equal(_decode(store.mask_png(rid, k)), obj.mask)
    assert np.array_equal(_decode(store.mask_png(rid)), result.union_mask)
    assert store.overlay_png(rid) == b"\x89PNG-overlay"
    assert SegmentationResult.from_dict(entry.result_dict).objects[1].box == result.objects[1].box


def test_bad_index_names_the_valid_range():
    store = ResultStore()
    rid = store.put(_result(2))
    for bad in (2, -1, 99):
        with pytest.raises(MaskNotFound, match=r"valid object indices: 0\.\.1"):
            store.mask_png(rid, bad)
    with pytest.raises(ResultNotFound):  # MaskNotFound is a ResultNotFound
        store.mask_png(rid, 5)


def test_empty_and_maskless_results():
    store = ResultStore()
    empty = store.put(_result(0))
    assert not _decode(store.mask_png(empty)).any()
    with pytest.raises(MaskNotFound, match="no objects"):
        store.mask_png(empty, 0)
    maskless = store.put(_result(1, masks=False))
    with pytest.raises(MaskNotFound, match="without masks"):
        store.mask_png(maskless)
    with pytest.raises(MaskNotFound, match="without masks"):
        store.mask_png(maskless, 0)


def test_unknown_id_and_missing_overlay():
    store = ResultStore(max_results=7)
    with pytest.raises(ResultNotFound, match="unknown or expired result id 'nope'.*last 7 calls") as info:
        store.get("nope")
    assert isinstance(info.value, KeyError) and "'nope'" in str(info.value) and not str(info.value).startswith('"')
    rid = store.put(_result())
    with pytest.raises(ResultNotFound, match="no overlay"):
        store.overlay_png(rid)
    with pytest.raises(ResultNotFound):
        store.mask_png("nope")


def test_eviction_by_count_is_lru():
    store = ResultStore(max_results=3)
    a, b, c = (store.put(_result(1)) for _ in range(3))
    store.get(a)  # a becomes the most recent; b is now the oldest
    d = store.put(_result(1))
    assert store.ids() == [c, a, d] and len(store) == 3 and b not in store
    with pytest.raises(ResultNotFound):
        store.get(b)
    store.mask_png(c)  # reading a mask counts as use too
    store.put(_result(1))
    assert a not in store and c in store
    assert store.stats()["evicted"] == 2


def test_eviction_by_bytes():
    probe = ResultStore()
    size = probe.get(probe.put(_result(2))).nbytes
    store = ResultStore(max_results=100, max_bytes=int(size * 2.5))
    ids = [store.put(_result(2)) for _ in range(5)]
    stats = store.stats()
    assert stats["count"] == 2 and stats["bytes"] <= stats["max_bytes"]
    assert store.ids() == ids[-2:] and stats["evicted"] == 3
    # overlays count too
    big = store.put(_result(2), overlay_png=b"x" * size)
    assert store.ids() == [big] and store.stats()["bytes"] == store.get(big).nbytes


def test_oversized_entry_is_kept_alone():
    store = ResultStore(max_bytes=100)
    first = store.put(_result(1))
    second = store.put(_result(1))
    assert store.ids() == [second] and first not in store
    assert store.stats()["bytes"] > store.max_bytes  # documented: a single oversized entry is kept


def test_delete_clear_and_stats():
    store = ResultStore(max_results=5, max_bytes=10**9)
    rid = store.put(_result())
    assert store.stats() == {"count": 1, "bytes": store.get(rid).nbytes, "max_results": 5, "max_bytes": 10**9,
                             "evicted": 0}
    assert store.delete(rid) and not store.delete(rid)
    store.put(_result())
    store.clear()
    assert len(store) == 0 and store.stats()["bytes"] == 0


def test_bad_limits():
    with pytest.raises(ValueError):
        ResultStore(max_results=0)
    with pytest.raises(ValueError):
        ResultStore(max_bytes=0)


def test_thread_safety_smoke():
    store = ResultStore(max_results=10)
    result = _result(1)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(30):
                rid = store.put(result)
                try:
                    store.get(rid)
                    store.mask_png(rid, 0)
                except ResultNotFound:
                    pass  # evicted by another thread meanwhile: allowed
                store.ids()
                store.stats()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    stats = store.stats()
    assert stats["count"] == 10 and stats["evicted"] == 8 * 30 - 10
    assert stats["bytes"] == sum(store.get(i).nbytes for i in store.ids())


def test_an_overlay_given_as_a_function_is_drawn_after_put_returns_and_charged_then():
    store = ResultStore()
    started, release = threading.Event(), threading.Event()

    def render() -> bytes:
        started.set()
        assert release.wait(10)
        return b"\x89PNG-late" * 10

    rid = store.put(_result(), overlay_png=render)  # returns while the drawing waits
    assert started.wait(10)
    before = store.stats()["bytes"]
    assert store.get(rid).overlay_png is None
    release.set()
    assert store.overlay_png(rid) == b"\x89PNG-late" * 10  # waits for it
    assert store.stats()["bytes"] == before + 90 and store.get(rid).nbytes == before + 90
    store.close()


def test_a_failed_or_evicted_background_overlay():
    store = ResultStore(max_results=1)

    def broken() -> bytes:
        raise RuntimeError("no picture")

    rid = store.put(_result(), overlay_png=broken)
    with pytest.raises(ResultNotFound, match="could not be drawn.*RuntimeError.*read its masks"):
        store.overlay_png(rid)
    assert store.mask_png(rid) is not None  # the result itself is fine
    slow = threading.Event()
    first = store.put(_result(), overlay_png=lambda: (slow.wait(10), b"png")[1])
    second = store.put(_result(query="next"), overlay_png=b"png2")  # evicts the first while it draws
    slow.set()
    with pytest.raises(ResultNotFound):
        store.overlay_png(first)
    assert store.overlay_png(second) == b"png2"
    assert store.stats()["count"] == 1 and store.stats()["bytes"] == store.get(second).nbytes
    store.close()
