"""How one MCP tool call runs: admission (:class:`Gate`), progress (:class:`CallProgress`), worker
threads that stop on cancellation (:func:`run_in_thread`), and :func:`gated_call`, which puts the three
together around a call's work. Independent of the MCP SDK; used by :mod:`.service`."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from segzero_tool.cancel import CancelToken, cancellation
from segzero_tool.errors import SegZeroError
from segzero_tool.progress import Progress, progress_reporting

log = logging.getLogger("segzero_tool.mcp_server")

ProgressFn = Callable[[float, str], Awaitable[None]]
#: Progress steps of a call: queued, loading image, loading models, reasoning, segmenting, encoding.
STAGES = 6


class ServerBusy(SegZeroError):
    """Too many calls are running or waiting; the caller should retry shortly."""


class Gate:
    """At most ``max_running`` calls at once and ``max_waiting`` waiting (FIFO); beyond that
    :meth:`acquire` raises :class:`ServerBusy` at once instead of letting a queue grow without bound.

    Single event loop only (the server's).
    """

    def __init__(self, max_running: int, max_waiting: int) -> None:
        self.max_running = max_running
        self.max_waiting = max_waiting
        self.running = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def acquire(self) -> None:
        if self.running < self.max_running and not self._waiters:
            self.running += 1
            return
        if len(self._waiters) >= self.max_waiting:
            raise ServerBusy(f"busy: {self.running} calls running and {len(self._waiters)} queued (the server's "
                             "limits); retry in a few seconds")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut  # release() hands its slot over: `running` already counts us
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # the slot arrived together with the cancellation: pass it on
            else:
                self._waiters.remove(fut)
            raise

    def release(self) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self.running -= 1


class CallProgress:
    """The progress of one call: numbered stages, the latest event from the worker thread (tokens,
    loading steps) and a timer that re-sends it every ``interval`` seconds.

    Progress values increase strictly (as MCP requires): stage ``k`` covers ``[k, k + 1)``, filled by
    the event's fraction when it has one (tokens / budget) and by elapsed time otherwise.
    """

    def __init__(self, send: ProgressFn, interval: float) -> None:
        self._send = send
        self.interval = interval
        self.index = 0
        self.name = "queued"
        self.started = time.monotonic()
        self.latest: Progress | None = None
        self.last_value = -1.0

    def sink(self, event: Progress) -> None:
        """Called from worker threads: only records (cheap, never blocks)."""
        self.latest = event

    async def stage(self, index: int, name: str) -> None:
        self.index, self.name, self.latest, self.started = index, name, None, time.monotonic()
        await self.emit()

    async def emit(self, event: Progress | None = None) -> None:
        if event is not None:
            self.latest = event
        elapsed = time.monotonic() - self.started
        latest = self.latest
        fraction = latest.fraction if latest is not None else None
        if fraction is None:
            fraction = 1.0 - 1.0 / (1.0 + elapsed / 30.0)
        value = self.index + min(0.99, fraction * 0.99)
        if value <= self.last_value:
            value = self.last_value + 1e-4
        self.last_value = value
        detail = f": {latest.message}" if latest is not None and latest.message else ""
        message = f"{self.name}{detail} ({elapsed:.0f} s)" if elapsed >= 1 else f"{self.name}{detail}"
        try:
            await self._send(round(value, 4), message)
        except Exception as exc:  # progress is best effort; never fail the call for it
            log.debug("progress notification failed: %r", exc)

    async def done(self) -> None:
        try:
            await self._send(float(STAGES), "done")
        except Exception as exc:
            log.debug("progress notification failed: %r", exc)

    async def run_timer(self) -> None:
        while True:
            await anyio.sleep(self.interval)
            await self.emit()


async def run_in_thread(token: CancelToken, fn: Callable[..., Any], *args: Any,
                        progress: CallProgress | None = None) -> Any:
    """``fn(*args)`` in a worker thread that sees ``token`` (and the call's progress sink); if the caller
    is cancelled, set the token, wait (shielded) until the thread has finished, then re-raise."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(cancellation(token))
        if progress is not None:
            stack.enter_context(progress_reporting(progress.sink, tqdm_bars=False))
        fut = asyncio.ensure_future(asyncio.to_thread(fn, *args))  # copies the context into the thread
    try:
        return await asyncio.shield(fut)
    except asyncio.CancelledError:
        token.cancel("the client cancelled the call")
        with anyio.CancelScope(shield=True):
            await asyncio.wait([fut])
        if not fut.cancelled() and fut.exception() is not None:
            log.debug("cancelled work ended with %r", fut.exception())
        raise


async def no_progress(progress: float, message: str) -> None:
    """The progress sink of a call whose client sent no progress token."""
    return None


async def gated_call(gate: Gate, work: Callable[[CancelToken, CallProgress], Awaitable[Any]],
                     progress: ProgressFn | None, interval: float) -> Any:
    """Run one call's ``work(token, calls)`` under ``gate``, with the progress timer.

    Progress "queued" is sent first; the timer re-sends the latest progress every ``interval`` seconds
    until the work ends; "done" is sent after it succeeds.

    Raises:
        ServerBusy: the gate's queue is full. Whatever ``work`` raises.
    """
    calls = CallProgress(progress or no_progress, interval)
    token = CancelToken()
    timer = asyncio.ensure_future(calls.run_timer())
    try:
        await calls.emit(Progress("queued", f"{gate.running} running, {gate.waiting} waiting"))
        await gate.acquire()
        try:
            out = await work(token, calls)
        finally:
            gate.release()
    finally:
        timer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await timer
    await calls.done()
    return out


__all__ = ["STAGES", "CallProgress", "Gate", "ProgressFn", "ServerBusy", "gated_call", "no_progress", "run_in_thread"]
