"""Handles: values (results, image embeddings, ...) addressed by id, with a bounded count, a bounded
lifetime and an optional byte budget. Thread-safe.

Every call of a steering tool carries its handle explicitly (no sessions): ``put`` gives an id,
``get`` gives the value back or raises an error that says what to send instead:

* :class:`~segzero_tool.errors.ResultExpired`: the id was issued here but its value outlived ``ttl_s``
  seconds or was evicted by newer values (count or bytes);
* :class:`~segzero_tool.errors.ResultUnknown`: the id was never issued here (or was deleted, or is too old
  to be remembered, or is not a string).

Eviction is least recently used first (``get`` counts as a use); the lifetime counts from ``put``. A value
larger than ``max_bytes`` on its own is still stored, alone (every other value is evicted), so every call
gets an id; it goes in turn with the next ``put``. The clock is injectable (tests pass a fake one).
"""

from __future__ import annotations

import reprlib
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from .errors import ResultExpired, ResultUnknown

T = TypeVar("T")

#: What a caller can do about a stale or unknown result id (the default ``hint``).
DEFAULT_HINT = "call segment_by_prompts again with the image, or segment_by_reasoning"


def show(value: object) -> str:
    """A short ``repr`` of a caller's value for a message."""
    text = reprlib.repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def result_nbytes(result: object) -> int:
    """Bytes a :class:`~segzero_tool.result.SegmentationResult` holds in memory: its image, masks and
    low-resolution logits (a ``sizer`` for a store of live results). An image shared by several results
    (a refined result shares its parent's) is counted for each: the budget errs on the safe side."""
    n = int(getattr(getattr(result, "image", None), "nbytes", 0) or 0)
    for obj in getattr(result, "objects", ()):
        for array in (getattr(obj, "mask", None), getattr(obj, "low_res_logits", None)):
            n += int(getattr(array, "nbytes", 0) or 0)
    return n


@dataclass(frozen=True)
class Handle(Generic[T]):
    """One stored value: its ``id``, ``value``, ``created`` (store clock) and ``nbytes`` charged."""

    id: str
    value: T
    created: float
    nbytes: int = 0


class ResultHandles(Generic[T]):
    """A bounded, thread-safe id -> value store (LRU by count and bytes, plus a lifetime).

    Args:
        max_count: keep at most this many values.
        ttl_s: a value expires this many seconds after ``put`` (``None``: never).
        max_bytes: keep at most about this many bytes (``None``: no byte budget); each ``put`` charges the
            ``nbytes`` it is given, else ``sizer(value)``, else 0.
        sizer: bytes of a value, when ``put`` is not told.
        clock: seconds, monotonic (default :func:`time.monotonic`).
        prefix: ids are ``prefix`` + 16 hex digits.
        kind: what the values are, for messages (``result``).
        hint: what to do instead, for messages (default :data:`DEFAULT_HINT`).
        remember: how many expired / evicted ids are remembered to tell "expired" from "unknown"
            (default ``4 * max_count``).
    """

    def __init__(self, max_count: int = 64, ttl_s: float | None = 600.0, *, max_bytes: int | None = None,
                 sizer: Callable[[T], int] | None = None, clock: Callable[[], float] = time.monotonic,
                 prefix: str = "r-", kind: str = "result", hint: str = DEFAULT_HINT,
                 remember: int | None = None) -> None:
        if max_count < 1:
            raise ValueError(f"max_count must be at least 1, got {max_count}")
        if ttl_s is not None and not ttl_s > 0:
            raise ValueError(f"ttl_s must be positive or None, got {ttl_s}")
        if max_bytes is not None and max_bytes < 1:
            raise ValueError(f"max_bytes must be at least 1 or None, got {max_bytes}")
        self.max_count = int(max_count)
        self.ttl_s = ttl_s
        self.max_bytes = max_bytes
        self.kind, self.hint, self.prefix = kind, hint, prefix
        self._sizer = sizer
        self._clock = clock
        self._entries: OrderedDict[str, Handle[T]] = OrderedDict()  # least recently used first
        self._gone: OrderedDict[str, str] = OrderedDict()  # id -> "expired" / "evicted"
        self._remember = 4 * self.max_count if remember is None else int(remember)
        self._bytes = 0
        self._evicted = 0
        self._expired = 0
        self._lock = threading.Lock()

    # --- writing -----------------------------------------------------------------------------------

    def put(self, value: T, *, nbytes: int | None = None) -> str:
        """Store ``value`` and return its new id (evicting the least recently used beyond the limits)."""
        size = int(nbytes) if nbytes is not None else (int(self._sizer(value)) if self._sizer is not None else 0)
        with self._lock:
            now = self._clock()
            self._purge(now)
            hid = self._new_id()
            self._entries[hid] = Handle(hid, value, now, size)
            self._bytes += size
            while len(self._entries) > 1 and (len(self._entries) > self.max_count or (
                    self.max_bytes is not None and self._bytes > self.max_bytes)):
                oldest = next(iter(self._entries))
                self._drop(oldest, "evicted")
                self._evicted += 1
            return hid

    def delete(self, hid: str) -> bool:
        """Forget one id (it then reads as unknown); returns whether it was there."""
        with self._lock:
            entry = self._entries.pop(hid, None) if isinstance(hid, str) else None
            if entry is None:
                return False
            self._bytes -= entry.nbytes
            return True

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._entries.clear()
            self._gone.clear()
            self._bytes = 0

    # --- reading -----------------------------------------------------------------------------------

    def get(self, hid: str) -> T:
        """The value of ``hid`` (marked as recently used).

        Raises:
            ResultExpired: issued here, but expired or evicted.
            ResultUnknown: never issued here (or deleted, or not a string).
        """
        return self.entry(hid).value

    def entry(self, hid: str) -> Handle[T]:
        """The :class:`Handle` of ``hid`` (marked as recently used); errors as :meth:`get`."""
        with self._lock:
            self._purge(self._clock())
            entry = self._entries.get(hid) if isinstance(hid, str) else None
            if entry is None:
                raise self._error(hid)
            self._entries.move_to_end(hid)
            return entry

    def ids(self) -> list[str]:
        """Live ids, least recently used first."""
        with self._lock:
            self._purge(self._clock())
            return list(self._entries)

    def __len__(self) -> int:
        with self._lock:
            self._purge(self._clock())
            return len(self._entries)

    def __contains__(self, hid: object) -> bool:
        with self._lock:
            self._purge(self._clock())
            return isinstance(hid, str) and hid in self._entries

    def stats(self) -> dict[str, int | float | None]:
        """``count``, ``bytes``, ``max_count``, ``max_bytes``, ``ttl_s``, ``evicted``, ``expired``."""
        with self._lock:
            self._purge(self._clock())
            return {"count": len(self._entries), "bytes": self._bytes, "max_count": self.max_count,
                    "max_bytes": self.max_bytes, "ttl_s": self.ttl_s, "evicted": self._evicted,
                    "expired": self._expired}

    # --- internals (lock held) ---------------------------------------------------------------------

    def _new_id(self) -> str:
        while True:
            hid = self.prefix + uuid.uuid4().hex[:16]
            if hid not in self._entries and hid not in self._gone:
                return hid

    def _drop(self, hid: str, why: str) -> None:
        self._bytes -= self._entries.pop(hid).nbytes
        self._gone[hid] = why
        while len(self._gone) > self._remember:
            self._gone.popitem(last=False)

    def _purge(self, now: float) -> None:
        if self.ttl_s is None:
            return
        for hid in [h for h, e in self._entries.items() if now - e.created >= self.ttl_s]:
            self._drop(hid, "expired")
            self._expired += 1

    def _limits(self) -> str:
        parts = [f"the last {self.max_count}"]
        if self.ttl_s is not None:
            parts.append(f"for {self.ttl_s:g} s")
        if self.max_bytes is not None:
            parts.append("fewer when they are large")
        return f"{self.kind}s are kept: " + ", ".join(parts)

    def _error(self, hid: object) -> ResultExpired | ResultUnknown:
        why = self._gone.get(hid) if isinstance(hid, str) else None
        if why == "expired":
            return ResultExpired(f"{self.kind} {hid!r} expired after {self.ttl_s:g} s ({self._limits()}); "
                                 f"{self.hint}")
        if why == "evicted":
            return ResultExpired(f"{self.kind} {hid!r} was evicted by newer {self.kind}s ({self._limits()}); "
                                 f"{self.hint}")
        if not isinstance(hid, str):
            return ResultUnknown(f"a {self.kind} id must be a string like '{self.prefix}0123456789abcdef' as "
                                 f"returned by an earlier call; got {show(hid)}; {self.hint}")
        return ResultUnknown(f"unknown {self.kind} id {show(hid)}: not issued here, or too old to be remembered "
                             f"({self._limits()}); use an id returned by a recent call, or {self.hint}")


__all__ = ["DEFAULT_HINT", "Handle", "ResultHandles", "result_nbytes"]
