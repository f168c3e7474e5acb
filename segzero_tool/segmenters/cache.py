"""A small thread-safe LRU cache for per-image embeddings, keyed by image content hash.

Keys are :func:`segzero_tool.segmenters.base.image_key` strings; values are whatever a backend
needs to skip its image encoder (tensors, feature dicts). Capacity is counted in entries, not bytes:
a 1024² SAM2 embedding is about 16 MB in float32, so the default of 8 entries is ~128 MB. An optional
time to live drops entries not used for that long (a long-running server then gives the memory back
when nobody steers an image any more).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

V = TypeVar("V")


class EmbeddingCache(Generic[V]):
    """Least-recently-used cache with hit/miss counters.

    Args:
        capacity: maximum number of entries; ``0`` disables caching (every ``get`` misses and
            ``put`` stores nothing).
        ttl_s: drop an entry not used (stored or found) for this many seconds; ``None``: never.
        clock: monotonic seconds (tests pass a fake clock).

    Attributes:
        hits: number of ``get`` calls that found their key.
        misses: number of ``get`` calls that did not (expired entries included).
        expired: entries dropped because their time to live ran out.
    """

    def __init__(self, capacity: int = 8, *, ttl_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if capacity < 0:
            raise ValueError(f"cache capacity must be >= 0, got {capacity}")
        if ttl_s is not None and not ttl_s > 0:
            raise ValueError(f"cache ttl_s must be a positive number of seconds or None, got {ttl_s}")
        self.capacity = int(capacity)
        self.ttl_s = None if ttl_s is None else float(ttl_s)
        self.hits = 0
        self.misses = 0
        self.expired = 0
        self._clock = clock
        self._data: OrderedDict[str, V] = OrderedDict()
        self._used: dict[str, float] = {}
        self._lock = threading.Lock()

    def _purge(self) -> None:
        """Drop entries idle past the time to live (oldest first); the lock is held."""
        if self.ttl_s is None:
            return
        limit = self._clock() - self.ttl_s
        while self._data:
            key = next(iter(self._data))
            if self._used[key] > limit:
                break
            del self._data[key], self._used[key]
            self.expired += 1

    @property
    def enabled(self) -> bool:
        """Whether the cache stores anything (``capacity > 0``)."""
        return self.capacity > 0

    def get(self, key: str) -> V | None:
        """Return the value for ``key`` (marking it most recently used) or ``None``; counts a hit or miss."""
        with self._lock:
            self._purge()
            if key in self._data:
                self._data.move_to_end(key)
                self._used[key] = self._clock()
                self.hits += 1
                return self._data[key]
            self.misses += 1
            return None

    def put(self, key: str, value: V) -> None:
        """Store ``value`` under ``key``, evicting the least recently used entries beyond capacity."""
        if self.capacity == 0:
            return
        with self._lock:
            self._purge()
            self._data[key] = value
            self._data.move_to_end(key)
            self._used[key] = self._clock()
            while len(self._data) > self.capacity:
                old, _ = self._data.popitem(last=False)
                del self._used[old]

    def get_or_compute(self, key: str, compute: Callable[[], V]) -> V:
        """Return the cached value for ``key`` or compute, store and return it.

        ``compute`` runs outside the lock, so two threads missing on the same key may both compute
        it (the later ``put`` wins); that costs time, never correctness.
        """
        value = self.get(key)
        if value is None:
            value = compute()
            self.put(key, value)
        return value

    def __contains__(self, key: object) -> bool:
        with self._lock:
            self._purge()
            return key in self._data

    def __len__(self) -> int:
        with self._lock:
            self._purge()
            return len(self._data)

    def clear(self) -> None:
        """Drop every entry and reset the counters."""
        with self._lock:
            self._data.clear()
            self._used.clear()
            self.hits = 0
            self.misses = 0
            self.expired = 0

    def stats(self) -> dict[str, int | float | None]:
        """``{"size", "capacity", "hits", "misses", "expired", "ttl_s"}``."""
        with self._lock:
            self._purge()
            return {
                "size": len(self._data),
                "capacity": self.capacity,
                "hits": self.hits,
                "misses": self.misses,
                "expired": self.expired,
                "ttl_s": self.ttl_s,
            }

    def __repr__(self) -> str:
        s = self.stats()
        return f"EmbeddingCache(size={s['size']}, capacity={s['capacity']}, hits={s['hits']}, misses={s['misses']})"
