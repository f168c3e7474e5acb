"""Progress of long work (model loading, generation), reported to whoever is listening.

A caller that wants progress makes a *sink* current with :func:`progress_reporting`; the code doing
the work calls :func:`report` at its natural steps (the pipeline when it starts loading a model, the
transformers reasoner after every generated token, tqdm bars such as transformers' checkpoint-shard
bar). Without a sink, :func:`report` costs one context-variable lookup and does nothing. Like
:mod:`segzero_tool.cancel`, the sink lives in a :class:`contextvars.ContextVar`, which
``asyncio.to_thread`` copies into the worker thread::

    seen = []
    with progress_reporting(seen.append):
        pipe.segment(image, query)          # seen: Progress("reasoning", "generated 12/2048 tokens", 12, 2048), ...

A sink must be cheap and must not raise (exceptions are swallowed: progress never breaks work); the
MCP server's sink only records the latest event, and a timer sends it to the client.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Progress:
    """One progress event.

    Attributes:
        stage: what is running: ``"loading"``, ``"reasoning"``, ``"segmenting"``, ...
        message: a short human-readable line ("loading reasoner Ricky06662/VisionReasoner-7B").
        done: units done so far (tokens, shards, bytes), when countable.
        total: units expected, when known.
    """

    stage: str
    message: str
    done: float | None = None
    total: float | None = None

    @property
    def fraction(self) -> float | None:
        """``done / total`` in ``[0, 1]`` when both are known and ``total > 0``."""
        if self.done is None or not self.total or self.total <= 0:
            return None
        return min(1.0, max(0.0, float(self.done) / float(self.total)))


ProgressSink = Callable[[Progress], None]

_current: ContextVar[ProgressSink | None] = ContextVar("segzero_progress_sink", default=None)


def current_sink() -> ProgressSink | None:
    """The sink of the running call, if any."""
    return _current.get()


def report(stage: str, message: str, done: float | None = None, total: float | None = None) -> None:
    """Send a :class:`Progress` to the current sink (no-op without one; never raises)."""
    sink = _current.get()
    if sink is None:
        return
    try:
        sink(Progress(stage, message, done, total))
    except Exception as exc:  # progress must never break the work it describes
        log.debug("progress sink failed: %r", exc)


@contextlib.contextmanager
def progress_reporting(sink: ProgressSink, *, tqdm_bars: bool = True) -> Iterator[ProgressSink]:
    """Make ``sink`` current for the code (and threads started with ``asyncio.to_thread``) inside.

    Args:
        sink: called with every :class:`Progress`.
        tqdm_bars: also forward the updates of tqdm progress bars created inside (transformers'
            checkpoint-shard bar, huggingface_hub's "Fetching N files" bar) as ``stage="loading"``
            events. Bars created in other threads without the sink (download worker threads) are
            not seen.
    """
    if tqdm_bars:
        _hook_tqdm()
    reset = _current.set(sink)
    try:
        yield sink
    finally:
        _current.reset(reset)


_hook_lock = threading.Lock()
_hooked = False


def _hook_tqdm() -> None:
    """Wrap ``tqdm.std.tqdm`` once so that bars remember the sink current at their creation and send
    their updates to it. Bars created without a sink behave exactly as before."""
    global _hooked
    with _hook_lock:
        if _hooked:
            return
        try:
            from tqdm import std
        except ImportError:  # pragma: no cover - tqdm is a dependency
            return
        cls = std.tqdm
        original_init, original_update = cls.__init__, cls.update

        def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            self._segzero_sink = _current.get()
            self._segzero_desc = kwargs.get("desc") or (args[1] if len(args) > 1 else None)
            original_init(self, *args, **kwargs)

        def update(self, n=1):  # type: ignore[no-untyped-def]
            out = original_update(self, n)
            sink = getattr(self, "_segzero_sink", None)
            if sink is not None:
                desc = (getattr(self, "_segzero_desc", None) or "working").strip().rstrip(":")
                total = getattr(self, "total", None)
                # counted here too: a disabled bar (hidden output) does not count its own updates
                done = getattr(self, "_segzero_done", 0) + (n if n is not None else 1)
                self._segzero_done = done
                text = f"{desc}: {done:g}/{total:g}" if total else f"{desc}: {done:g}"
                try:
                    sink(Progress("loading", text, done, total))
                except Exception as exc:
                    log.debug("progress sink failed: %r", exc)
            return out

        cls.__init__ = __init__  # type: ignore[method-assign]
        cls.update = update  # type: ignore[method-assign]
        _hooked = True


__all__ = ["Progress", "ProgressSink", "progress_reporting", "report", "current_sink"]
