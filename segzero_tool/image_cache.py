"""A bounded, thread-safe cache of decoded images, keyed by the content of the encoded file.

:func:`segzero_tool.images.load_image` decodes a 1920x1080 JPEG in about 20 ms, and the new pixel
array then costs another ~12 ms to hash for the segmenter's embedding cache
(:func:`segzero_tool.segmenters.base.image_key`). A steering call on an image already seen (the same
path, or the same bytes as the MCP server sends) takes ~120 ms in all, so a pipeline keeps one
:class:`DecodedImageCache` (``SegZeroPipeline(image_cache_bytes=...)``) and passes it to ``load_image``:
a hit returns the very array decoded before (read-only, so it is shared safely by calls and results
and its pixel hash is remembered while it lives).

Keys are a blake2b hash of the encoded bytes plus the options that change the decoded pixels
(``exif_transpose``), so a file rewritten on disk is simply a new key, and the same bytes under two
paths are one entry. The cache is bounded by the decoded arrays' bytes (least recently used first out);
an image larger than the whole budget is not stored; ``max_bytes=0`` disables it.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

#: Default budget of decoded pixels: 128 MB (about 20 images of 1920x1080).
DEFAULT_IMAGE_CACHE_BYTES = 128_000_000

#: ``(content hash of the encoded bytes, exif_transpose)``.
CacheKey = tuple[bytes, bool]


def check_cache_bytes(value: Any, name: str = "image_cache_bytes") -> int:
    """``value`` as a byte budget (an int >= 0), else ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0 (0 disables the decoded-image cache), got {value!r}")
    return int(value)


class DecodedImageCache:
    """LRU of decoded, read-only RGB arrays keyed by the encoded bytes' content hash.

    Args:
        max_bytes: budget for the decoded arrays (``array.nbytes`` summed); ``0`` disables the cache
            (:meth:`get` always misses without counting, :meth:`put` stores nothing).

    Attributes:
        hits, misses: lookups answered from the cache / not (counted only while enabled).
    """

    def __init__(self, max_bytes: int = DEFAULT_IMAGE_CACHE_BYTES) -> None:
        self.max_bytes = check_cache_bytes(max_bytes, "max_bytes")
        self._entries: OrderedDict[CacheKey, tuple[np.ndarray, tuple[int, int]]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    @staticmethod
    def key(data: bytes, *, exif_transpose: bool = True) -> CacheKey:
        """The key of encoded ``data`` decoded with ``exif_transpose`` (a 300 KB JPEG hashes in < 1 ms)."""
        return hashlib.blake2b(data, digest_size=16).digest(), bool(exif_transpose)

    def get(self, key: CacheKey) -> tuple[np.ndarray, tuple[int, int]] | None:
        """``(array, stored_size)`` for ``key`` (``stored_size``: the file's ``(width, height)`` before any
        EXIF turn), marked most recently used; ``None`` on a miss."""
        if not self.enabled:
            return None
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry

    def put(self, key: CacheKey, array: np.ndarray, stored_size: tuple[int, int]) -> np.ndarray:
        """Store a decoded read-only ``array`` (evicting the least recently used entries to fit) and return
        the array to use: an entry already stored under ``key`` (another thread decoded it first) wins,
        so every caller shares one array. Arrays larger than the budget are not stored."""
        if not self.enabled:
            return array
        if array.flags.writeable:
            raise ValueError("only read-only arrays can be cached (the cache shares them between callers)")
        size = int(array.nbytes)
        with self._lock:
            existing = self._entries.get(key)
            if existing is not None:
                self._entries.move_to_end(key)
                return existing[0]
            if size > self.max_bytes:
                return array
            while self._entries and self._bytes + size > self.max_bytes:
                _, (old, _) = self._entries.popitem(last=False)
                self._bytes -= int(old.nbytes)
            self._entries[key] = (array, (int(stored_size[0]), int(stored_size[1])))
            self._bytes += size
            return array

    def clear(self) -> None:
        """Drop every entry (the counters are kept)."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def stats(self) -> dict[str, int]:
        """``{"entries", "bytes", "max_bytes", "hits", "misses"}`` (JSON-ready)."""
        with self._lock:
            return {"entries": len(self._entries), "bytes": self._bytes, "max_bytes": self.max_bytes,
                    "hits": self.hits, "misses": self.misses}

    def __repr__(self) -> str:
        s = self.stats()
        return (f"DecodedImageCache(entries={s['entries']}, bytes={s['bytes']:,}/{s['max_bytes']:,}, "
                f"hits={s['hits']}, misses={s['misses']})")


__all__ = ["DEFAULT_IMAGE_CACHE_BYTES", "CacheKey", "DecodedImageCache", "check_cache_bytes"]
