"""Cooperative cancellation of long calls (an MCP client cancels a request, an agent times out).

A :class:`CancelToken` is made current with :func:`cancellation`; the pipeline checks it between
stages and the transformers reasoner checks it after every generated token, so a cancelled call
stops within one decoding step instead of running to the end. The token lives in a
:class:`contextvars.ContextVar`, which ``asyncio.to_thread`` copies into the worker thread, so an
async caller can cancel work that runs in a thread::

    token = CancelToken()
    with cancellation(token):
        task = asyncio.create_task(asyncio.to_thread(pipe.segment, image, query))
    ...
    token.cancel()          # the thread raises OperationCancelled at its next check
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextvars import ContextVar

from .errors import SegZeroError


class OperationCancelled(SegZeroError):
    """The call was cancelled by its caller before it finished."""

    exit_code = 130


class CancelToken:
    """A thread-safe flag that a caller sets to ask running work to stop."""

    __slots__ = ("_event", "reason")

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = "the call was cancelled"

    def cancel(self, reason: str | None = None) -> None:
        if reason:
            self.reason = reason
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise OperationCancelled(self.reason)


_current: ContextVar[CancelToken | None] = ContextVar("segzero_cancel_token", default=None)


def current_token() -> CancelToken | None:
    """The token of the running call, if any."""
    return _current.get()


def is_cancelled() -> bool:
    token = _current.get()
    return token is not None and token.cancelled


def check_cancelled() -> None:
    """Raise :class:`OperationCancelled` if the current call was cancelled."""
    token = _current.get()
    if token is not None:
        token.raise_if_cancelled()


@contextlib.contextmanager
def cancellation(token: CancelToken) -> Iterator[CancelToken]:
    """Make ``token`` current for the code (and threads started with ``asyncio.to_thread``) inside."""
    reset = _current.set(token)
    try:
        yield token
    finally:
        _current.reset(reset)
