"""The private event loop of the OpenAI-compatible reasoner client (:mod:`.openai_compat`).

Every request of one client runs on one asyncio loop in a background daemon thread that owns the
``httpx`` client, so sync and async callers share one connection pool and one concurrency limit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable
from typing import TypeVar

from ..cancel import CancelToken, OperationCancelled

_T = TypeVar("_T")
POLL_S = 0.05  # how often a pending call looks at its cancel token


class LoopThread:
    """A private asyncio loop running forever in a daemon thread."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()
        self._ready.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        try:
            self.loop.run_forever()
        finally:
            pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def submit(self, coro: Awaitable[_T]) -> concurrent.futures.Future[_T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type]

    def wait(self, future: concurrent.futures.Future[_T], token: CancelToken | None) -> _T:
        """Block until ``future`` (from :meth:`submit`) is done. It is cancelled when ``token`` is
        (raising :class:`OperationCancelled`) or when the wait itself is interrupted."""
        while True:
            try:
                return future.result(timeout=0.1)
            except concurrent.futures.TimeoutError:
                if token is not None and token.cancelled:
                    future.cancel()
                    raise OperationCancelled(token.reason) from None
            except BaseException:
                future.cancel()
                raise

    def stop(self, timeout: float = 5.0) -> None:
        if self.loop.is_closed():
            return
        try:
            self.loop.call_soon_threadsafe(self.loop.stop)
        except RuntimeError:  # already closed
            return
        if threading.current_thread() is not self.thread:
            self.thread.join(timeout)


__all__ = ["POLL_S", "LoopThread"]
