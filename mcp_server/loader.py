"""Loading the models in the background, so that the server answers at once.

:class:`ModelLoader` runs ``build`` (which loads the reasoner and the segmenter: seconds with tiny
models, minutes for VisionReasoner-7B, longer for the first download) in a daemon thread started by
:meth:`ModelLoader.start`. The MCP session is served meanwhile: ``initialize``, ``tools/list`` and
``resources/list`` never wait for models. A tool call that needs them awaits :meth:`ModelLoader.wait`,
which reports what the load is doing (``loading reasoner …``, checkpoint shards, elapsed seconds).

States: ``idle`` (not started: ``--lazy``), ``loading``, ``ready``, ``failed``. A failed load keeps
its error for the status; a call that was waiting gets it as a tool error, and the next call starts
the load again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from segzero_tool.errors import SegZeroError
from segzero_tool.progress import Progress, progress_reporting

log = logging.getLogger("segzero_tool.mcp_server")

Build = Callable[[], Any]
Wait = Callable[[Progress | None, float], Awaitable[None]]


class ModelLoadFailed(SegZeroError):
    """The models could not be loaded; the message names the cause. The next call tries again."""

    exit_code = 7


class ModelLoader:
    """Loads once in a background thread; thread-safe; retried after a failure.

    Args:
        build: loads and returns the pipeline (blocking).
        describe: what is being loaded, for logs (e.g. ``reasoner X, segmenter Y, device cpu``).
    """

    def __init__(self, build: Build, describe: str = "models") -> None:
        self._build = build
        self.describe = describe
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self.value: Any = None
        self.error: BaseException | None = None
        self.progress: Progress | None = None
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.attempts = 0

    @classmethod
    def ready_with(cls, value: Any, describe: str = "models") -> ModelLoader:
        """A loader that already holds ``value`` (a pipeline passed in by the caller)."""
        loader = cls(lambda: value, describe)
        loader.value = value
        loader.started_at = loader.finished_at = time.time()
        loader._done.set()
        return loader

    @property
    def state(self) -> str:
        """``idle``, ``loading``, ``ready`` or ``failed``."""
        with self._lock:
            if self.value is not None:
                return "ready"
            if self._thread is not None and self._thread.is_alive():
                return "loading"
            if self.error is not None:
                return "failed"
            return "loading" if self._thread is not None and not self._done.is_set() else "idle"

    def start(self) -> bool:
        """Start loading unless a load is running or done; returns whether a new load started."""
        with self._lock:
            if self.value is not None or (self._thread is not None and self._thread.is_alive()):
                return False
            self.error = None
            self.progress = None
            self._done.clear()
            self.attempts += 1
            self.started_at = time.time()
            self.finished_at = None
            self._thread = threading.Thread(target=self._run, name="segzero-model-loader", daemon=True)
            self._thread.start()
            return True

    def _record(self, event: Progress) -> None:
        self.progress = event

    def _run(self) -> None:
        log.info("loading models in the background: %s ...", self.describe)
        t0 = time.perf_counter()
        try:
            with progress_reporting(self._record):
                value = self._build()
        except BaseException as exc:  # noqa: BLE001 - kept for the status and the waiting calls
            with self._lock:
                self.error = exc
                self.finished_at = time.time()
            log.error("loading %s failed after %.1f s: %s", self.describe, time.perf_counter() - t0, _cause(exc))
        else:
            with self._lock:
                self.value = value
                self.finished_at = time.time()
            log.info("models loaded in %.1f s", time.perf_counter() - t0)
        finally:
            self._done.set()

    def load_blocking(self) -> Any:
        """Start (if needed) and wait in this thread; raises :class:`ModelLoadFailed` on failure."""
        if self.value is None:
            self.start()
            self._done.wait()
        return self._result()

    async def wait(self, on_wait: Wait | None = None, interval: float = 0.2) -> Any:
        """The loaded value; starts a load when none is running (first call with ``--lazy``, or the
        call after a failure). While waiting, ``on_wait(progress, elapsed_s)`` is awaited every
        ``interval`` seconds.

        Raises:
            ModelLoadFailed: the load this call waited for failed (the next call retries).
        """
        if self.value is not None:
            return self.value
        if self.state in ("idle", "failed"):
            self.start()
        t0 = time.monotonic()
        while not self._done.is_set():
            if on_wait is not None:
                await on_wait(self.progress, time.monotonic() - t0)
            await anyio.sleep(interval)
        return self._result()

    def _result(self) -> Any:
        if self.value is not None:
            return self.value
        raise ModelLoadFailed(f"loading the models failed: {_cause(self.error)}. The next call tries to load "
                              "them again; the server's log (stderr) has the details")

    def status(self) -> dict[str, Any]:
        """JSON-ready: state, attempts, timestamps, elapsed, the current step, and the error."""
        state = self.state
        now = time.time()
        out: dict[str, Any] = {"state": state, "attempts": self.attempts}
        if self.started_at is not None:
            out["started_at"] = self.started_at
            end = self.finished_at if self.finished_at is not None else now
            out["load_seconds" if state != "loading" else "elapsed_seconds"] = round(end - self.started_at, 1)
        if state == "loading" and self.progress is not None:
            out["step"] = self.progress.message
            if self.progress.fraction is not None:
                out["step_fraction"] = round(self.progress.fraction, 3)
        if state == "failed":
            out["error"] = _cause(self.error)
        return out


def _cause(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    text = " ".join(str(exc).split())
    if len(text) > 600:
        text = text[:597] + "..."
    return text if isinstance(exc, SegZeroError) else f"{type(exc).__name__}: {text}" if text else type(exc).__name__


__all__ = ["ModelLoader", "ModelLoadFailed"]
