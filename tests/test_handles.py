"""ResultHandles: ids with a bounded count, lifetime and byte budget; expired vs unknown errors."""

from __future__ import annotations

import threading

import pytest

from segzero_tool.errors import ResultExpired, ResultHandleError, ResultUnknown, SegZeroError
from segzero_tool.handles import DEFAULT_HINT, ResultHandles


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_put_get_and_ids() -> None:
    store: ResultHandles[str] = ResultHandles()
    a = store.put("A")
    assert a.startswith("r-") and len(a) == 18 and store.get(a) == "A"
    assert a in store and len(store) == 1 and store.ids() == [a]
    assert ResultHandles(prefix="").put("x").isalnum()


def test_lifetime_with_a_fake_clock() -> None:
    clock = Clock()
    store: ResultHandles[str] = ResultHandles(ttl_s=600, clock=clock)
    a = store.put("A")
    clock.now += 599.9
    b = store.put("B")
    assert store.get(a) == "A"  # a read does not extend the lifetime
    clock.now += 0.1
    with pytest.raises(ResultExpired) as info:
        store.get(a)
    assert str(info.value) == (f"result {a!r} expired after 600 s (results are kept: the last 64, for 600 s); "
                               f"{DEFAULT_HINT}")
    assert store.get(b) == "B" and store.ids() == [b] and store.stats()["expired"] == 1
    clock.now += 600
    assert len(store) == 0


def test_count_bound_evicts_the_least_recently_used() -> None:
    store: ResultHandles[str] = ResultHandles(max_count=2, ttl_s=None)
    a, b = store.put("A"), store.put("B")
    store.get(a)  # a is now the most recently used
    c = store.put("C")
    assert store.ids() == [a, c]
    with pytest.raises(ResultExpired, match=r"was evicted by newer results \(results are kept: the last 2\); call "
                                            "segment_by_prompts again with the image, or segment_by_reasoning"):
        store.get(b)
    assert store.stats()["evicted"] == 1


def test_unknown_ids_say_what_to_send() -> None:
    store: ResultHandles[str] = ResultHandles(max_count=3, ttl_s=60)
    with pytest.raises(ResultUnknown, match=r"unknown result id 'r-nope': not issued here.*the last 3, for 60 s.*"
                                            r"use an id returned by a recent call, or call segment_by_prompts"):
        store.get("r-nope")
    with pytest.raises(ResultUnknown, match="a result id must be a string like 'r-0123456789abcdef'.*got 42"):
        store.get(42)  # type: ignore[arg-type]
    a = store.put("A")
    assert store.delete(a) and not store.delete(a)
    with pytest.raises(ResultUnknown):
        store.get(a)


def test_errors_are_typed_key_errors_with_plain_messages() -> None:
    assert issubclass(ResultExpired, ResultHandleError) and issubclass(ResultUnknown, ResultHandleError)
    assert issubclass(ResultHandleError, SegZeroError) and issubclass(ResultHandleError, KeyError)
    assert str(ResultUnknown("plain text")) == "plain text" and ResultHandleError.exit_code == 2


def test_custom_kind_and_hint() -> None:
    store: ResultHandles[bytes] = ResultHandles(max_count=1, ttl_s=None, kind="embedding", prefix="e-",
                                                hint="send the image again")
    e = store.put(b"x")
    store.put(b"y")
    with pytest.raises(ResultExpired, match=r"^embedding 'e-[0-9a-f]{16}' was evicted by newer embeddings .*; "
                                            "send the image again$"):
        store.get(e)


def test_byte_budget_evicts_and_an_oversized_value_is_kept_alone() -> None:
    store: ResultHandles[str] = ResultHandles(max_count=10, ttl_s=None, max_bytes=100, sizer=len)
    a, b = store.put("a" * 40), store.put("b" * 40)
    c = store.put("c" * 30)  # 110 bytes: a goes
    assert store.ids() == [b, c] and store.stats()["bytes"] == 70
    d = store.put("d", nbytes=500)  # explicit size, over the budget by itself: kept alone
    assert store.ids() == [d] and store.stats()["bytes"] == 500
    with pytest.raises(ResultExpired, match="fewer when they are large"):
        store.get(a)
    e = store.put("e" * 10)
    assert store.ids() == [e] and store.stats()["bytes"] == 10


def test_forgotten_ids_become_unknown_after_remember_ids() -> None:
    store: ResultHandles[int] = ResultHandles(max_count=1, ttl_s=None, remember=2)
    first = store.put(0)
    for i in range(1, 4):
        store.put(i)
    with pytest.raises(ResultUnknown):
        store.get(first)


def test_clear_and_stats() -> None:
    store: ResultHandles[str] = ResultHandles(max_count=5, ttl_s=30, max_bytes=1000)
    store.put("A", nbytes=10)
    assert store.stats() == {"count": 1, "bytes": 10, "max_count": 5, "max_bytes": 1000, "ttl_s": 30,
                             "evicted": 0, "expired": 0}
    store.clear()
    assert len(store) == 0 and store.stats()["bytes"] == 0


@pytest.mark.parametrize("kwargs", [{"max_count": 0}, {"ttl_s": 0}, {"ttl_s": -1}, {"max_bytes": 0}])
def test_bad_limits_are_refused(kwargs) -> None:
    with pytest.raises(ValueError):
        ResultHandles(**kwargs)


def test_entry_carries_creation_time_and_size() -> None:
    clock = Clock()
    store: ResultHandles[str] = ResultHandles(clock=clock)
    a = store.put("A", nbytes=7)
    entry = store.entry(a)
    assert (entry.id, entry.value, entry.created, entry.nbytes) == (a, "A", 1000.0, 7)


def test_thread_safety_smoke() -> None:
    store: ResultHandles[int] = ResultHandles(max_count=16, ttl_s=None, max_bytes=16 * 100, sizer=lambda v: 100,
                                              remember=10_000)  # every evicted id reads as expired
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def work(t: int) -> None:
        try:
            barrier.wait()
            mine = []
            for i in range(300):
                mine.append(store.put(t * 1000 + i))
                for hid in mine[-3:]:
                    try:
                        assert store.get(hid) // 1000 == t
                    except ResultExpired:
                        pass  # evicted by another thread's puts: expected
                assert len(store) <= 16
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    stats = store.stats()
    assert stats["count"] == 16 and stats["bytes"] == 1600 and stats["evicted"] == 8 * 300 - 16
    assert len(set(store.ids())) == 16


def test_result_nbytes_counts_image_masks_and_logits() -> None:
    import numpy as np
    from scripted import BoxSegmenter

    from segzero_tool.handles import result_nbytes
    from segzero_tool.steer import segment_by_prompts

    image = np.zeros((48, 64, 3), np.uint8)
    result = segment_by_prompts(BoxSegmenter(), image, [{"box": [1, 1, 5, 5]}, {"box": [2, 2, 9, 9]}])
    result.objects[0].low_res_logits = np.zeros((256, 256), np.float32)
    result.objects[1].low_res_logits = None
    assert result_nbytes(result) == 48 * 64 * 3 + 2 * 48 * 64 + 256 * 256 * 4
    store = ResultHandles(max_count=8, ttl_s=None, max_bytes=10_000_000, sizer=result_nbytes)
    rid = store.put(result)
    assert store.get(rid) is result and store.stats()["bytes"] == result_nbytes(result)
