"""A small thread-safe LRU cache for per-image embeddings, keyed by image content hash.

Keys are :func:`segzero_tool.segmenters.base.image_key` strings; values are whatever a backend
needs to skip its image encoder (tensors, feature dicts). Capacity is counted in entries, not bytes:
a 1024² SAM2 embedding is about 16 MB in float32, so the default of 8 entries is ~128 MB.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

V = TypeVar("V")


class EmbeddingCache(Generic[V]):
    """Least-recently-used cache with hit/miss counters.

    Args:
        capacity: maximum number of entries; ``0`` disables caching (every ``get`` misses and
            ``put`` stores nothing).

    Attributes:
        hits: number of ``get`` calls that found their key.
        misses: number of ``get`` calls that did not.
    """

    def __init__(self, capacity: int = 8) -> None:
        if capacity < 0:
            raise ValueError(f"cache capacity must be >= 0, got {capacity}")
        self.capacity = int(capacity)
        self.hits = 0
        self.misses = 0
        self._data: OrderedDict[str, V] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """Whether the cache stores anything (``capacity > 0``)."""
        return self.capacity > 0

    def get(self, key: str) -> V | None:
        """Return the value for ``key`` (marking it most recently used) or ``None``; counts a hit or miss."""
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                self.hits += 1
                return self._data[key]
            self.misses += 1
            return None

    def put(self, key: str, value: V) -> None:
        """Store ``value`` under ``key``, evicting the least recently used entries beyond capacity."""
        if self.capacity == 0:
            return
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.capacity:
                self._data.popitem(last=False)

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
            return key in self._data

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def clear(self) -> None:
        """Drop every entry and reset the counters."""
        with self._lock:
            self._data.clear()
            self.hits = 0
            self.misses = 0

    def stats(self) -> dict[str, int]:
        """``{"size", "capacity", "hits", "misses"}``."""
        with self._lock:
            return {
                "size": len(self._data),
                "capacity": self.capacity,
                "hits": self.hits,
                "misses": self.misses,
            }

    def __repr__(self) -> str:
        s = self.stats()
        return f"EmbeddingCache(size={s['size']}, capacity={s['capacity']}, hits={s['hits']}, misses={s['misses']})"
