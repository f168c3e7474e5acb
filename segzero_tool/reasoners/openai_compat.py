"""Reasoner backend for any OpenAI-compatible chat-completions server (vLLM first of all).

One request per query, ``POST {base}/chat/completions`` with the frame and the prompt in one user
turn; vLLM's ``structured_outputs`` field is sent where the server is vLLM or where asked for. The
request and answer formats are in :mod:`.openai_wire`, the replica choice, retries and health
checks in :mod:`.openai_pool`, the typed errors in :mod:`.openai_errors`; the names callers use
(``__all__`` here) stay importable from this module.

Everything runs on one private event loop in a background thread that owns the ``httpx``
client (:mod:`.openai_loop`): :meth:`generate` (sync, used by ``segment_many``) sends all its
requests concurrently there and :meth:`agenerate` awaits them from any event loop, so sync and
async callers share one connection pool, one concurrency limit and one view of the replicas.
Nothing is serialised on the client side beyond ``max_concurrency`` requests in flight.

Failures: connection errors, timeouts, 429 (waiting ``Retry-After``) and 5xx (except 501) are
retried with exponential backoff and jitter, up to ``max_retries`` times; a replica that refuses
connections is skipped for ``replica_cooldown`` seconds and the request goes to another one at
once; any other 4xx is final. Every failure is a typed :class:`ReasonerServiceError` that says what
to do. A cancelled call (:mod:`segzero_tool.cancel` token, or cancelling the awaiting task) closes
its HTTP request.

httpx is imported lazily (in the client thread), so importing this module is cheap.

Example:
    >>> r = OpenAICompatReasoner("visionreasoner-7b", base_url="http://127.0.0.1:8000/v1")  # doctest: +SKIP
    >>> [out] = r.generate([ReasonerRequest(image=frame_840, prompt=text)])  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
import weakref
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from ..cancel import CancelToken, OperationCancelled, current_token
from .base import Reasoner, ReasonerOutput, ReasonerRequest
from .openai_errors import (
    ReasonerAuthError,
    ReasonerConfigError,
    ReasonerConnectionError,
    ReasonerHTTPError,
    ReasonerResponseError,
    ReasonerServiceError,
    ReasonerTimeoutError,
    UnknownServedModelError,
)
from .openai_loop import POLL_S, LoopThread
from .openai_pool import Replica, ReplicaHealth, ReplicaPool, retry_after_seconds
from .openai_wire import (
    DEFAULT_API_KEY_ENV,
    DEFAULT_BASE_URL,
    StructuredMode,
    chat_request_body,
    encode_image,
    model_aliases,
    normalize_base_url,
    parse_chat_completion,
    server_message,
    split_base_urls,
    structured_mode,
)
from .structured import StructuredKind

if TYPE_CHECKING:
    import httpx

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


# --- the backend -------------------------------------------------------------------------------


class OpenAICompatReasoner(Reasoner):
    """Reasoner served by vLLM or any OpenAI-compatible ``/v1/chat/completions`` endpoint.

    Args:
        model: the model: a registry name (``visionreasoner-7b``), a hub id or whatever name the
            server knows it by. Registry models are asked for under their short name (what
            ``segzero serve-reasoner`` serves them as) and, when the server does not list that,
            under their hub id.
        base_url: one base URL (``http://host:8000/v1``; a bare ``http://host:8000`` gets ``/v1``),
            a comma-separated string of several, or a sequence. Several URLs are replicas: each
            request goes to the one with the fewest requests in flight (round-robin on ties).
        api_key: the key sent as ``Authorization: Bearer``; ``None`` reads ``api_key_env``. Never
            logged nor shown in ``repr``.
        api_key_env: environment variable holding the key (default ``OPENAI_API_KEY``); when it is
            unset no ``Authorization`` header is sent (vLLM without ``--api-key``).
        model_name: send exactly this model name (skips the alias lookup).
        structured_outputs: ``auto`` (default: ``regex`` when the server is vLLM, judged by
            ``owned_by`` in ``/v1/models``, else off), ``regex``, ``grammar`` or ``off``.
        answer_schema: ``auto`` (from the prompt text: Seg-Zero prompts get the single-object
            shape, qwen3vl prompts the bare list), ``list``, ``single`` or ``json``; only used with
            structured outputs.
        max_objects: bound the object count in the structured-output regex (``None``: unbounded).
        image_format: ``png`` (default, lossless) or ``jpeg`` (quality ``jpeg_quality``).
        timeout: seconds to wait for an answer (per attempt).
        connect_timeout: seconds to wait for a connection.
        max_retries: retries after the first attempt, for connection errors, timeouts, 429 and 5xx.
        backoff: first retry delay in seconds; doubles per retry, with jitter, up to ``max_backoff``.
        max_retry_after: longest ``Retry-After`` honoured, in seconds.
        max_concurrency: requests in flight at once from this client (all callers together).
        replica_cooldown: seconds a replica that refused a connection is skipped.
        discover: ask ``/v1/models`` once, before the first request, for the served name and the
            server kind (``False``: use the first name as given; ``auto`` structured outputs = off).
        max_tokens_field: ``max_tokens`` (default; vLLM and most servers) or ``max_completion_tokens``.
        extra_body: more request fields (e.g. ``{"top_k": 1}``), merged last.
        headers: more HTTP headers.
        transport: an ``httpx.AsyncBaseTransport`` (tests).

    Raises:
        ReasonerConfigError: a bad URL, mode, format or limit.
    """

    name = "openai"

    def __init__(
        self,
        model: str,
        *,
        base_url: str | Sequence[str] | None = None,
        api_key: str | None = None,
        api_key_env: str | None = DEFAULT_API_KEY_ENV,
        model_name: str | None = None,
        structured_outputs: StructuredMode | bool | None = "auto",
        answer_schema: Literal["auto", "list", "single", "json"] = "auto",
        max_objects: int | None = None,
        image_format: str = "png",
        jpeg_quality: int = 95,
        png_compress_level: int = 1,
        timeout: float = 300.0,
        connect_timeout: float = 5.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        max_retry_after: float = 30.0,
        max_concurrency: int = 64,
        replica_cooldown: float = 5.0,
        discover: bool = True,
        max_tokens_field: str = "max_tokens",
        extra_body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        transport: Any = None,
    ) -> None:
        if not isinstance(model, str) or not model.strip():
            raise ReasonerConfigError("the openai reasoner needs a model name (the name the server serves)")
        self.model_id = model.strip()
        self.base_urls = split_base_urls(base_url)
        self._candidates = [model_name.strip()] if model_name else model_aliases(self.model_id)
        #: The model name sent in requests (settled by the first ``/v1/models`` lookup).
        self.model = self._candidates[0]
        self.structured_outputs = structured_mode(structured_outputs)
        if answer_schema not in ("auto", "list", "single", "json"):
            raise ReasonerConfigError(f"answer_schema must be auto, list, single or json, got {answer_schema!r}")
        self.answer_schema = answer_schema
        self.max_objects = max_objects
        fmt = str(image_format).strip().lower()
        fmt = "jpeg" if fmt == "jpg" else fmt
        if fmt not in ("png", "jpeg"):
            raise ReasonerConfigError(f"image_format must be png or jpeg, got {image_format!r}")
        self.image_format = fmt
        self.jpeg_quality = int(jpeg_quality)
        self.png_compress_level = int(png_compress_level)
        for label, value, low in (("max_concurrency", max_concurrency, 1), ("max_retries", max_retries, 0)):
            if int(value) < low:
                raise ReasonerConfigError(f"{label} must be >= {low}, got {value}")
        if timeout <= 0 or connect_timeout <= 0:
            raise ReasonerConfigError("timeout and connect_timeout must be positive")
        if max_tokens_field not in ("max_tokens", "max_completion_tokens"):
            raise ReasonerConfigError("max_tokens_field must be max_tokens or max_completion_tokens")
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout)
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.max_retry_after = float(max_retry_after)
        self.max_concurrency = int(max_concurrency)
        self.replica_cooldown = float(replica_cooldown)
        self.discover = bool(discover)
        self.max_tokens_field = max_tokens_field
        self.extra_body = dict(extra_body or {})
        self.api_key_env = api_key_env
        key = api_key if api_key is not None else (os.environ.get(api_key_env) if api_key_env else None)
        self._headers = {"Accept": "application/json", **(headers or {})}
        if key:
            self._headers["Authorization"] = f"Bearer {key.strip()}"
        self._has_key = bool(key)
        self._pool = ReplicaPool(self.base_urls, headers=self._headers, timeout=self.timeout,
                                 connect_timeout=self.connect_timeout, max_retries=self.max_retries,
                                 backoff=self.backoff, max_backoff=self.max_backoff,
                                 max_retry_after=self.max_retry_after, max_concurrency=self.max_concurrency,
                                 replica_cooldown=self.replica_cooldown, transport=transport,
                                 start_hint=self._start_hint())
        self._kind: StructuredKind | None = None if self.structured_outputs in ("auto", "off") else self.structured_outputs  # type: ignore[assignment]
        self._discovered = not self.discover
        self._server_is_vllm: bool | None = None
        self._discover_lock: asyncio.Lock | None = None
        self._runner: LoopThread | None = None
        self._runner_lock = threading.Lock()
        self._closed = False
        self._finalizer: weakref.finalize | None = None

    @classmethod
    def from_pretrained(
        cls,
        model: str,
        *,
        base_url: str | Sequence[str] | None = None,
        base_urls: Sequence[str] | None = None,
        device: Any = None,
        dtype: Any = None,
        **kwargs: Any,
    ) -> OpenAICompatReasoner:
        """Build the client the way the pipeline builds every backend.

        ``SegZeroPipeline.from_pretrained("visionreasoner-7b", reasoner_backend="openai",
        reasoner_kwargs={"base_url": "http://gpu-host:8000/v1"})`` lands here with the registry
        entry's hub id as ``model`` (the served short name is derived from it). ``device`` and
        ``dtype`` are accepted and ignored: the server decides them. No request is sent here.
        """
        if base_url is not None and base_urls is not None:
            raise ReasonerConfigError("pass base_url or base_urls, not both")
        if device not in (None, "auto"):
            logger.debug("openai reasoner: device=%r ignored (the server runs the model)", device)
        return cls(model, base_url=base_urls if base_urls is not None else base_url, **kwargs)

    # --- public API ----------------------------------------------------------------------------

    def generate(self, requests: Sequence[ReasonerRequest]) -> list[ReasonerOutput]:
        """Send every request at once (up to ``max_concurrency`` in flight) and wait for all.

        Raises:
            ReasonerServiceError: a request failed (the others are cancelled).
            OperationCancelled: the current cancel token was set.
        """
        requests = list(requests)
        if not requests:
            return []
        runner = self._ensure_runner()
        if threading.current_thread() is runner.thread:
            raise RuntimeError("generate() was called on the reasoner's own event loop; use agenerate()")
        token = current_token()
        return runner.wait(runner.submit(self._gather(requests, token)), token)

    async def agenerate(self, requests: Sequence[ReasonerRequest]) -> list[ReasonerOutput]:
        """Async :meth:`generate`; cancelling the awaiting task cancels the HTTP requests."""
        requests = list(requests)
        if not requests:
            return []
        runner = self._ensure_runner()
        if threading.current_thread() is runner.thread:  # called from our own loop: run in place
            return await self._gather(requests, current_token())
        return await asyncio.wrap_future(runner.submit(self._gather(requests, current_token())))

    def health(self, timeout: float = 5.0) -> list[ReplicaHealth]:
        """Check every base URL: ``GET /health`` (vLLM), falling back to ``GET /v1/models``."""
        return self._run(self._pool.health(timeout))

    async def ahealth(self, timeout: float = 5.0) -> list[ReplicaHealth]:
        return await asyncio.wrap_future(self._ensure_runner().submit(self._pool.health(timeout)))

    def check_health(self, timeout: float = 5.0) -> list[ReplicaHealth]:
        """Like :meth:`health`, but raise when no base URL is healthy.

        Raises:
            ReasonerConnectionError: every base URL is down (the message says how to start vLLM).
        """
        report = self.health(timeout)
        if not any(h.ok for h in report):
            details = "; ".join(f"{h.url}: {h.detail}" for h in report)
            raise ReasonerConnectionError(f"no healthy reasoner server ({details}). {self._start_hint()}",
                                          url=self.base_urls[0] if len(self.base_urls) == 1 else None)
        return report

    def served_models(self) -> list[str]:
        """The model names the (first reachable) server lists under ``/v1/models``."""
        cards = self._run(self._fetch_models(None))
        return [c["id"] for c in cards or [] if isinstance(c, dict) and isinstance(c.get("id"), str)]

    def replica_stats(self) -> list[dict[str, Any]]:
        """Per base URL: requests answered, failures, in flight, and whether it is being skipped."""
        return self._pool.stats()

    def close(self) -> None:
        """Close the HTTP connections and stop the client thread. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        runner, self._runner = self._runner, None
        if runner is None:
            return
        if self._finalizer is not None:
            self._finalizer.detach()
        if threading.current_thread() is not runner.thread:
            try:
                runner.submit(self._aclose()).result(timeout=5.0)
            except (concurrent.futures.TimeoutError, RuntimeError):  # pragma: no cover - best effort
                pass
        runner.stop()

    def __repr__(self) -> str:
        key = f"from ${self.api_key_env}" if self._has_key and self.api_key_env else ("set" if self._has_key else "none")
        return (f"{type(self).__name__}(model={self.model!r}, base_urls={self.base_urls!r}, "
                f"structured_outputs={self.structured_outputs!r}, image_format={self.image_format!r}, "
                f"max_concurrency={self.max_concurrency}, api_key={key})")

    # --- machinery -----------------------------------------------------------------------------

    def _ensure_runner(self) -> LoopThread:
        if self._closed:
            raise RuntimeError("this OpenAICompatReasoner was closed; build a new one")
        with self._runner_lock:
            if self._runner is None:
                self._runner = LoopThread(f"segzero-openai-{self.model}")
                self._finalizer = weakref.finalize(self, self._runner.stop)
            return self._runner

    def _run(self, coro: Awaitable[_T]) -> _T:
        runner = self._ensure_runner()
        if threading.current_thread() is runner.thread:
            raise RuntimeError("blocking call on the reasoner's own event loop; use the async method")
        return runner.submit(coro).result()

    async def _aclose(self) -> None:
        await self._pool.aclose()

    def _http(self) -> httpx.AsyncClient:
        client = self._pool.http()
        if self._discover_lock is None:
            self._discover_lock = asyncio.Lock()
        return client

    async def _gather(self, requests: list[ReasonerRequest], token: CancelToken | None) -> list[ReasonerOutput]:
        """Run every request concurrently; the first failure (or a cancelled token) cancels the rest."""
        self._http()
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(self._one(r, token)) for r in requests]
        try:
            pending: set[asyncio.Task[ReasonerOutput]] = set(tasks)
            while pending:
                done, pending = await asyncio.wait(pending, timeout=POLL_S if token is not None else None,
                                                   return_when=asyncio.FIRST_EXCEPTION)
                for task in done:
                    if not task.cancelled() and task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]
                if token is not None and token.cancelled:
                    raise OperationCancelled(token.reason)
            return [t.result() for t in tasks]
        finally:
            unfinished = [t for t in tasks if not t.done()]
            for task in unfinished:
                task.cancel()
            if unfinished:
                await asyncio.gather(*unfinished, return_exceptions=True)

    async def _one(self, request: ReasonerRequest, token: CancelToken | None) -> ReasonerOutput:
        await self._ensure_discovered(token)
        loop = asyncio.get_running_loop()
        url = await loop.run_in_executor(
            None, lambda: encode_image(request.image, self.image_format, jpeg_quality=self.jpeg_quality,
                                       png_compress_level=self.png_compress_level))
        body = self.request_body(request, url)
        replica, resp, attempts = await self._pool.send("POST", "/chat/completions", body, token)
        if resp.status_code == 200:
            return parse_chat_completion(resp, replica.url, attempts, self.model)
        await self._raise_for_status(resp, replica, attempts)
        raise AssertionError("unreachable")  # pragma: no cover

    def request_body(self, request: ReasonerRequest, image_url: str) -> dict[str, Any]:
        """The JSON body for one request (``image_url`` is the frame's ``data:`` URL)."""
        return chat_request_body(request, image_url, model=self.model, max_tokens_field=self.max_tokens_field,
                                 kind=self._kind, answer_schema=self.answer_schema, max_objects=self.max_objects,
                                 extra_body=self.extra_body)

    async def _ensure_discovered(self, token: CancelToken | None) -> None:
        if self._discovered:
            return
        assert self._discover_lock is not None
        async with self._discover_lock:
            if self._discovered:
                return
            cards = await self._fetch_models(token)
            if cards is not None:
                by_id = {c["id"]: c for c in cards if isinstance(c, dict) and isinstance(c.get("id"), str)}
                chosen = next((name for name in self._candidates if name in by_id), None)
                if chosen is None:
                    raise UnknownServedModelError.for_model(self._candidates, list(by_id), self.base_urls[0])
                self.model = chosen
                self._server_is_vllm = by_id[chosen].get("owned_by") == "vllm"
            if self.structured_outputs == "auto":
                self._kind = "regex" if self._server_is_vllm else None
            logger.info("openai reasoner: model %r at %s (structured outputs: %s)", self.model,
                        ", ".join(self.base_urls), self._kind or "off")
            self._discovered = True

    async def _fetch_models(self, token: CancelToken | None) -> list[Any] | None:
        """``/v1/models`` cards, or ``None`` when the server has no such endpoint."""
        self._http()
        replica, resp, attempts = await self._pool.send("GET", "/models", None, token)
        if resp.status_code in (401, 403):
            await self._raise_for_status(resp, replica, attempts)
        if resp.status_code != 200:
            logger.debug("%s/models answered %s; skipping model discovery", replica.url, resp.status_code)
            return None
        try:
            data = resp.json()
        except ValueError:
            return None
        cards = data.get("data") if isinstance(data, dict) else None
        return cards if isinstance(cards, list) else None

    async def _raise_for_status(self, resp: httpx.Response, replica: Replica, attempts: int) -> None:
        status = resp.status_code
        message = server_message(resp)
        if status in (401, 403):
            where = f"${self.api_key_env}" if self.api_key_env else "api_key="
            raise ReasonerAuthError(
                f"{replica.url} refused the API key (HTTP {status}: {message}); put the server's key in {where}"
                + ("" if self._has_key else " (no key was sent)"), url=replica.url, status=status, attempts=attempts)
        if status == 404 and ("model" in message.lower() or "does not exist" in message.lower()):
            cards = await self._pool.fetch_model_ids(replica)
            if cards is not None:
                raise UnknownServedModelError.for_model(self._candidates, cards, replica.url)
        hint = " (is the base URL right? OpenAI-compatible servers usually answer under .../v1)" if status == 404 else ""
        raise ReasonerHTTPError(f"{replica.url} refused the request: HTTP {status}: {message}{hint}",
                                url=replica.url, status=status, attempts=attempts)

    def _start_hint(self) -> str:
        return (f"is `vllm serve` running at {', '.join(self.base_urls)}? "
                f"start it with `segzero serve-reasoner --model {self._candidates[0]}`")


__all__ = [
    "DEFAULT_API_KEY_ENV",
    "DEFAULT_BASE_URL",
    "OpenAICompatReasoner",
    "ReasonerAuthError",
    "ReasonerConfigError",
    "ReasonerConnectionError",
    "ReasonerHTTPError",
    "ReasonerResponseError",
    "ReasonerServiceError",
    "ReasonerTimeoutError",
    "ReplicaHealth",
    "UnknownServedModelError",
    "encode_image",
    "normalize_base_url",
    "retry_after_seconds",
    "split_base_urls",
]
