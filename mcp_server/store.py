"""A bounded, thread-safe store of recent segmentation results, readable back by id.

Results are kept as their JSON form (``SegmentationResult.to_dict("rle")``: COCO RLE masks, no
image pixels) plus an optional overlay PNG, so a stored result costs about as many bytes as its
JSON. Full-resolution mask PNGs are rebuilt from the RLE on demand. The least recently used
results are evicted first once either the count or the byte limit is exceeded.

A single result larger than ``max_bytes`` on its own is still stored, alone: every other entry
is evicted, and it goes in turn as soon as the next result is stored. This way every call gets an
id to read its masks back, and the store never holds more than one oversized entry.

The overlay PNG may be given as a function that renders it: it then runs on the store's one
background thread after :meth:`ResultStore.put` returns (drawing and PNG-encoding a 1024-px overlay
takes about 100 ms on a laptop CPU, which a tool call that did not ask for the picture should not
wait for); reading the overlay waits for it.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from segzero_tool.errors import SegZeroError

if TYPE_CHECKING:
    from segzero_tool.result import SegmentationResult

log = logging.getLogger("segzero_tool.mcp_server")

_ID_CHARS = 16
_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class ResultNotFound(SegZeroError, KeyError):
    """A result id is unknown or expired, or the requested part of the result does not exist."""

    exit_code = 2

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class MaskNotFound(ResultNotFound):
    """The result exists but has no mask with the requested index (or no masks at all)."""


@dataclass
class StoredResult:
    """One stored result.

    Attributes:
        id: the id returned by :meth:`ResultStore.put`.
        created: ``time.time()`` when it was stored.
        result_dict: ``SegmentationResult.to_dict("rle")`` (objects' ``rle`` and the ``union``
            included; never the image pixels). Treat it as read-only.
        overlay_png: the overlay picture, when one was stored (and, when it is rendered in the
            background, once it is ready; :meth:`ResultStore.overlay_png` waits for it).
        nbytes: bytes charged against the store's limit (compact JSON length + overlay length).
        pending: the background rendering of the overlay, while it runs.
    """

    id: str
    created: float
    result_dict: dict[str, Any]
    overlay_png: bytes | None
    nbytes: int
    pending: Future[bytes] | None = field(default=None, repr=False)

    @property
    def n_objects(self) -> int:
        """Number of segmented objects."""
        return len(self.result_dict.get("objects", []))

    @property
    def image_size(self) -> tuple[int, int]:
        """``(width, height)`` of the original image."""
        size = self.result_dict["image_size"]
        return int(size["width"]), int(size["height"])


class ResultStore:
    """Keeps the most recent results, bounded by count and by bytes (LRU eviction).

    Args:
        max_results: keep at most this many results.
        max_bytes: keep at most about this many bytes (see :class:`StoredResult` ``nbytes``).
    """

    def __init__(self, max_results: int = 64, max_bytes: int = 256_000_000) -> None:
        if max_results < 1:
            raise ValueError(f"max_results must be at least 1, got {max_results}")
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be at least 1, got {max_bytes}")
        self.max_results = int(max_results)
        self.max_bytes = int(max_bytes)
        self._entries: OrderedDict[str, StoredResult] = OrderedDict()  # least recently used first
        self._bytes = 0
        self._evicted = 0
        self._lock = threading.Lock()
        self._renderer: ThreadPoolExecutor | None = None

    # --- writing -------------------------------------------------------------------------------

    def put(self, result: SegmentationResult, *, overlay_png: bytes | Callable[[], bytes] | None = None,
            result_id: str | None = None) -> str:
        """Store ``result`` (and its overlay) and return its new id.

        Least recently used results are evicted until both limits hold again; a result larger
        than ``max_bytes`` by itself is stored alone (see the module docstring). ``result_id``
        stores it under an id issued elsewhere (the service's live results), which must be new here.
        ``overlay_png`` is the PNG, or a function returning it that runs in the background (its
        bytes are charged when it finishes).

        Raises:
            ValueError: ``result_id`` is already stored here or is not made of ``[A-Za-z0-9_-]``.
        """
        result_dict = result.to_dict("rle")
        nbytes = len(json.dumps(result_dict, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
        render = overlay_png if callable(overlay_png) else None
        png = None if render is not None or overlay_png is None else bytes(overlay_png)  # type: ignore[arg-type]
        if png is not None:
            nbytes += len(png)
        with self._lock:
            if result_id is None:
                result_id = self._new_id()
            elif result_id in self._entries or not _ID_RE.match(result_id):
                raise ValueError(f"result id {result_id!r} is already stored or not made of [A-Za-z0-9_-]")
            entry = StoredResult(result_id, time.time(), result_dict, png, nbytes)
            self._entries[result_id] = entry
            self._bytes += nbytes
            self._evict(keep=result_id)
            if render is not None:
                if self._renderer is None:
                    self._renderer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="segzero-overlay")
                entry.pending = self._renderer.submit(self._render, entry, render)
        return result_id

    def _render(self, entry: StoredResult, render: Callable[[], bytes]) -> bytes:
        """Background: render one overlay and charge its bytes (if the entry is still stored)."""
        png = bytes(render())
        with self._lock:
            entry.overlay_png = png
            if self._entries.get(entry.id) is entry:
                entry.nbytes += len(png)
                self._bytes += len(png)
                self._evict(keep=entry.id)
        return png

    def delete(self, result_id: str) -> bool:
        """Forget one result; returns whether it was there."""
        with self._lock:
            entry = self._entries.pop(result_id, None)
            if entry is None:
                return False
            self._bytes -= entry.nbytes
            return True

    def clear(self) -> None:
        """Forget every result."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def close(self) -> None:
        """Stop the background renderer (overlays still queued are dropped)."""
        renderer, self._renderer = self._renderer, None
        if renderer is not None:
            renderer.shutdown(wait=False, cancel_futures=True)

    def _new_id(self) -> str:
        while True:
            result_id = uuid.uuid4().hex[:_ID_CHARS]
            if result_id not in self._entries:
                return result_id

    def _evict(self, keep: str) -> None:
        while len(self._entries) > 1 and (len(self._entries) > self.max_results or self._bytes > self.max_bytes):
            oldest = next(iter(self._entries))
            if oldest == keep:  # pragma: no cover - the new entry is always the most recent
                break
            self._bytes -= self._entries.pop(oldest).nbytes
            self._evicted += 1

    # --- reading -------------------------------------------------------------------------------

    def get(self, result_id: str) -> StoredResult:
        """The stored result ``result_id``; marks it as recently used.

        Raises:
            ResultNotFound: unknown or evicted id.
        """
        with self._lock:
            entry = self._entries.get(result_id) if isinstance(result_id, str) else None
            if entry is None:
                raise ResultNotFound(self._not_found_message(result_id))
            self._entries.move_to_end(result_id)
            return entry

    def mask_png(self, result_id: str, index: int | None = None) -> bytes:
        """A full-resolution 0/255 PNG of one object's mask, or of the union when ``index`` is None.

        Raises:
            ResultNotFound: unknown or evicted id.
            MaskNotFound: ``index`` out of range, or the result was computed without masks.
        """
        import numpy as np

        from segzero_tool.masks import mask_to_png_bytes, rle_decode

        entry = self.get(result_id)
        d = entry.result_dict
        objects = d.get("objects", [])
        width, height = entry.image_size
        if index is None:
            union = (d.get("union") or {}).get("rle")
            if union is not None:
                return mask_to_png_bytes(rle_decode(union))
            if objects:
                raise MaskNotFound(f"result {result_id!r} has no masks (it was computed without masks); "
                                   "run segment_by_reasoning again with masks enabled")
            return mask_to_png_bytes(np.zeros((height, width), dtype=bool))
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(objects):
            valid = f"0..{len(objects) - 1}" if objects else "none: the result has no objects"
            raise MaskNotFound(f"result {result_id!r} has no object #{index}; valid object indices: {valid} "
                               "(or omit the index for the union mask)")
        rle = objects[index].get("rle")
        if rle is None:
            raise MaskNotFound(f"object #{index} of result {result_id!r} has no mask (it was computed without "
                               "masks); run segment_by_reasoning again with masks enabled")
        return mask_to_png_bytes(rle_decode(rle))

    def overlay_png(self, result_id: str) -> bytes:
        """The stored overlay PNG.

        Raises:
            ResultNotFound: unknown or evicted id, or no overlay was stored for this result.
        """
        entry = self.get(result_id)
        pending = entry.pending
        if entry.overlay_png is None and pending is not None:
            try:
                return pending.result()
            except Exception as exc:
                log.warning("rendering the overlay of result %s failed: %r", result_id, exc)
                raise ResultNotFound(f"the overlay picture of result {result_id!r} could not be drawn "
                                     f"({exc.__class__.__name__}); read its masks instead") from None
        if entry.overlay_png is None:
            raise ResultNotFound(f"result {result_id!r} has no overlay picture stored; read its masks instead, "
                                 "or run segment_by_reasoning again with an overlay")
        return entry.overlay_png

    def ids(self) -> list[str]:
        """Stored ids, least recently used first."""
        with self._lock:
            return list(self._entries)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __contains__(self, result_id: object) -> bool:
        with self._lock:
            return result_id in self._entries

    def stats(self) -> dict[str, int]:
        """``count``, ``bytes``, ``max_results``, ``max_bytes`` and ``evicted`` (since creation)."""
        with self._lock:
            return {"count": len(self._entries), "bytes": self._bytes, "max_results": self.max_results,
                    "max_bytes": self.max_bytes, "evicted": self._evicted}

    def _not_found_message(self, result_id: object) -> str:
        shown = repr(result_id) if len(repr(result_id)) <= 80 else repr(result_id)[:77] + "..."
        return (f"unknown or expired result id {shown}; results are kept for the last {self.max_results} calls "
                "(fewer when they are large). Use an id returned by a recent segment_by_reasoning call, or run "
                "it again")
