"""The replicas behind one OpenAI-compatible reasoner client: choice, retries, health checks.

Several base URLs are replicas of one served model: each request goes to the one with the fewest
requests in flight (round-robin on ties), all through one ``httpx`` client and one concurrency limit.

Failures: connection errors, timeouts, 429 (waiting ``Retry-After``) and 5xx (except 501) are
retried with exponential backoff and jitter, up to ``max_retries`` times; a replica that refuses
connections is skipped for ``replica_cooldown`` seconds and the request goes to another one at
once; any other 4xx is final (the caller turns it into a typed error). The waits between retries
wake early when the :mod:`segzero_tool.cancel` token is set.

httpx is imported lazily (when the client is made), so importing this module is cheap.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..cancel import CancelToken
from .openai_errors import (
    ReasonerConnectionError,
    ReasonerHTTPError,
    ReasonerServiceError,
    ReasonerTimeoutError,
)
from .openai_loop import POLL_S
from .openai_wire import server_message

if TYPE_CHECKING:
    import httpx

# the client's log records keep the name they had before the client was split into modules
logger = logging.getLogger("segzero_tool.reasoners.openai_compat")


@dataclass(frozen=True)
class ReplicaHealth:
    """Result of a health check of one base URL.

    Attributes:
        url: the base URL (``.../v1``).
        ok: the server answered its health endpoint (or, lacking one, ``/v1/models``) with 200.
        endpoint: the URL that decided it.
        status: its HTTP status (``None`` when there was no connection).
        detail: what went wrong, in words (``""`` when ok).
    """

    url: str
    ok: bool
    endpoint: str
    status: int | None = None
    detail: str = ""


class Replica:
    """One base URL and its counters (requests in flight, answered, failed; skipped until when)."""

    __slots__ = ("url", "root", "outstanding", "down_until", "ok_count", "fail_count")

    def __init__(self, url: str) -> None:
        self.url = url
        self.root = url[: -len("/v1")] if url.endswith("/v1") else url
        self.outstanding = 0
        self.down_until = 0.0
        self.ok_count = 0
        self.fail_count = 0


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Parse a ``Retry-After`` header: delta seconds or an HTTP date. ``None`` when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class ReplicaPool:
    """The base URLs of one served model, reached through one ``httpx`` client (made on first use, on
    the loop that uses it) with at most ``max_concurrency`` requests in flight.

    The settings are those of :class:`~segzero_tool.reasoners.openai_compat.OpenAICompatReasoner`;
    ``start_hint`` ends the connection-error messages (how to start the server).
    """

    def __init__(self, urls: Sequence[str], *, headers: dict[str, str], timeout: float, connect_timeout: float,
                 max_retries: int, backoff: float, max_backoff: float, max_retry_after: float,
                 max_concurrency: int, replica_cooldown: float, transport: Any = None, start_hint: str = "") -> None:
        self.replicas = [Replica(u) for u in urls]
        self.headers = headers
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_retry_after = max_retry_after
        self.max_concurrency = max_concurrency
        self.replica_cooldown = replica_cooldown
        self.start_hint = start_hint
        self._transport = transport
        self._rr = 0
        self._client: httpx.AsyncClient | None = None
        self._sem: asyncio.Semaphore | None = None

    def http(self) -> httpx.AsyncClient:
        if self._client is None:
            import httpx

            limits = httpx.Limits(max_connections=self.max_concurrency + 8,
                                  max_keepalive_connections=self.max_concurrency)
            timeout = httpx.Timeout(self.timeout, connect=self.connect_timeout, pool=None)
            self._client = httpx.AsyncClient(limits=limits, timeout=timeout, transport=self._transport,
                                             follow_redirects=False, trust_env=False)
            self._sem = asyncio.Semaphore(self.max_concurrency)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def stats(self) -> list[dict[str, Any]]:
        """Per base URL: requests answered, failures, in flight, and whether it is being skipped."""
        now = time.monotonic()
        return [{"url": r.url, "ok": r.ok_count, "failed": r.fail_count, "in_flight": r.outstanding,
                 "skipped": r.down_until > now} for r in self.replicas]

    def pick(self) -> Replica:
        """Least requests in flight among the replicas not being skipped; round-robin on ties."""
        now = time.monotonic()
        n = len(self.replicas)
        start = self._rr
        self._rr = (self._rr + 1) % n
        order = [self.replicas[(start + i) % n] for i in range(n)]
        up = [r for r in order if r.down_until <= now]
        if not up:  # every replica is being skipped: try the one that comes back first
            return min(order, key=lambda r: r.down_until)
        return min(up, key=lambda r: r.outstanding)

    def others_up(self, replica: Replica) -> bool:
        now = time.monotonic()
        return any(r is not replica and r.down_until <= now for r in self.replicas)

    async def send(self, method: str, path: str, body: dict[str, Any] | None,
                   token: CancelToken | None) -> tuple[Replica, httpx.Response, int]:
        """Send with retries. Returns the first final response (2xx or a non-retryable status)."""
        import httpx

        client = self.http()
        assert self._sem is not None
        attempts = 0
        while True:
            _check(token)
            replica = self.pick()
            attempts += 1
            retry_after: float | None = None
            mark_down = False
            try:
                async with self._sem:
                    replica.outstanding += 1
                    try:
                        resp = await client.request(method, replica.url + path, json=body, headers=self.headers)
                    finally:
                        replica.outstanding -= 1
            except httpx.TimeoutException as exc:
                mark_down = isinstance(exc, httpx.ConnectTimeout)
                phase = "connect to" if mark_down else "get an answer from"
                limit = self.connect_timeout if mark_down else self.timeout
                error: ReasonerServiceError = ReasonerTimeoutError(
                    f"could not {phase} {replica.url} within {limit:g} s ({type(exc).__name__}) after {attempts} "
                    f"attempt(s); the server may be overloaded or down: raise timeout=, lower max_concurrency, "
                    f"or add replicas. {self.start_hint}", url=replica.url, attempts=attempts)
            except httpx.TransportError as exc:
                mark_down = isinstance(exc, httpx.ConnectError)
                what = "cannot connect to" if mark_down else "lost the connection to"
                error = ReasonerConnectionError(
                    f"{what} {replica.url} ({type(exc).__name__}: {exc}) after {attempts} attempt(s): "
                    f"{self.start_hint}", url=replica.url, attempts=attempts)
            else:
                status = resp.status_code
                if status != 429 and (status < 500 or status == 501):
                    replica.down_until = 0.0
                    replica.ok_count += status < 400
                    return replica, resp, attempts
                retry_after = retry_after_seconds(resp.headers.get("retry-after"))
                error = ReasonerHTTPError(
                    f"{replica.url} answered HTTP {status} ({server_message(resp)}) after {attempts} attempt(s)"
                    + ("; the server is rate-limiting: lower max_concurrency or add replicas" if status == 429 else ""),
                    url=replica.url, status=status, attempts=attempts)
            replica.fail_count += 1
            failover = False
            if mark_down:
                replica.down_until = time.monotonic() + self.replica_cooldown
                failover = self.others_up(replica)
            if attempts > self.max_retries:
                raise error
            if failover:
                delay = 0.0
            elif retry_after is not None:
                delay = min(retry_after, self.max_retry_after) * (1.0 + 0.1 * random.random())
            else:
                delay = min(self.max_backoff, self.backoff * 2 ** (attempts - 1)) * random.uniform(0.5, 1.0)
            logger.warning("reasoner request to %s failed (%s); retry %d/%d in %.2f s", replica.url,
                           str(error).split(" after ")[0], attempts, self.max_retries, delay)
            await _sleep(delay, token)

    async def fetch_model_ids(self, replica: Replica) -> list[str] | None:
        """The model names ``replica`` lists under ``/v1/models`` (one try; ``None`` on any failure)."""
        try:
            resp = await self.http().get(replica.url + "/models", headers=self.headers)
            data = resp.json()
            return [c["id"] for c in data["data"] if isinstance(c, dict) and isinstance(c.get("id"), str)]
        except Exception:  # noqa: BLE001 - best effort for a better message
            return None

    async def health(self, timeout: float) -> list[ReplicaHealth]:
        """Check every replica: ``GET /health`` (vLLM), falling back to ``GET /v1/models``."""
        import httpx

        client = self.http()

        async def one(replica: Replica) -> ReplicaHealth:
            endpoint = replica.root + "/health"
            try:
                resp = await client.get(endpoint, headers=self.headers, timeout=timeout)
                if resp.status_code in (404, 405):
                    endpoint = replica.url + "/models"
                    resp = await client.get(endpoint, headers=self.headers, timeout=timeout)
            except httpx.TimeoutException as exc:
                return ReplicaHealth(replica.url, False, endpoint, None, f"no answer within {timeout:g} s ({type(exc).__name__})")
            except httpx.TransportError as exc:
                return ReplicaHealth(replica.url, False, endpoint, None, f"cannot connect ({type(exc).__name__}: {exc})")
            if resp.status_code == 200:
                replica.down_until = 0.0
                return ReplicaHealth(replica.url, True, endpoint, 200)
            return ReplicaHealth(replica.url, False, endpoint, resp.status_code,
                                 f"HTTP {resp.status_code}: {server_message(resp)}")

        return list(await asyncio.gather(*(one(r) for r in self.replicas)))


def _check(token: CancelToken | None) -> None:
    if token is not None:
        token.raise_if_cancelled()


async def _sleep(delay: float, token: CancelToken | None) -> None:
    """Sleep ``delay`` seconds, waking early (and raising) when ``token`` is cancelled."""
    if token is None:
        await asyncio.sleep(delay)
        return
    end = time.monotonic() + delay
    while True:
        token.raise_if_cancelled()
        left = end - time.monotonic()
        if left <= 0:
            return
        await asyncio.sleep(min(left, POLL_S))


__all__ = ["Replica", "ReplicaHealth", "ReplicaPool", "retry_after_seconds"]
