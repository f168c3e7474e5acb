"""Reasoner backend for any OpenAI-compatible chat-completions server (vLLM first of all).

One request per query, ``POST {base}/chat/completions``, in the multimodal shape vLLM documents
(checked against vLLM's ``ChatCompletionRequest`` on main, 2026, vLLM >= 0.12)::

    {"model": "visionreasoner-7b",
     "messages": [{"role": "user", "content": [
         {"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}},   # the 840x840 frame
         {"type": "text", "text": PROMPT}]}],                                        # no system message
     "temperature": 0, "max_tokens": 2048,
     "structured_outputs": {"regex": "<think>[^<]*</think>..."}}                    # optional (vLLM only)

as the reference scripts build the chat turn (one user turn ``[image, text]``; the chat template's
default system prompt applies). ``structured_outputs`` is vLLM's field since 0.12 (``guided_regex``
and ``guided_grammar`` were removed then); OpenAI's own API rejects it, so it is only sent where the
server is vLLM (``structured_outputs="auto"``, the default: ``/v1/models`` lists the model with
``owned_by: "vllm"``) or where asked for (``"regex"`` / ``"grammar"``).

Everything runs on one private event loop in a background thread that owns the ``httpx``
client: :meth:`generate` (sync, used by ``segment_many``) sends all its requests concurrently
there and :meth:`agenerate` awaits them from any event loop, so sync and async callers share one
connection pool, one concurrency limit and one view of the replicas. Nothing is serialised on the
client side beyond ``max_concurrency`` requests in flight.

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
import base64
import concurrent.futures
import email.utils
import io
import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import urlsplit

from ..cancel import CancelToken, OperationCancelled, current_token
from ..errors import BackendError, UnknownModelError
from .base import Reasoner, ReasonerOutput, ReasonerRequest
from .structured import AnswerSchema, StructuredKind, schema_for_prompt, structured_outputs_field

if TYPE_CHECKING:
    import httpx
    from PIL import Image

# Sources (read 2026-11, vLLM main): vllm/entrypoints/openai/chat_completion/protocol.py @002032e
# (ChatCompletionRequest: max_tokens / max_completion_tokens, structured_outputs, response_format);
# vllm/sampling_params.py @00388f6 (StructuredOutputsParams: json, regex, choice, grammar, json_object,
# structural_tag; exactly one); docs/features/structured_outputs.md (guided_* removed in v0.12.0);
# vllm/entrypoints/openai/models/serving.py (404 "The model `x` does not exist.", type NotFoundError,
# param "model"; /v1/models cards with owned_by "vllm"); vllm/entrypoints/serve/utils/error_response.py
# (error body {"error": {"message", "type", "param", "code"}}).

logger = logging.getLogger(__name__)

#: ``vllm serve``'s default address.
DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"
#: Environment variable read for the API key unless told otherwise (the OpenAI SDK's convention).
DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"

StructuredMode = Literal["auto", "regex", "grammar", "off"]
_T = TypeVar("_T")
_POLL_S = 0.05  # how often a pending call looks at its cancel token


# --- errors ------------------------------------------------------------------------------------


class ReasonerServiceError(BackendError):
    """The reasoner server could not give an answer (base class of the remote-backend errors).

    Attributes:
        url: the base URL concerned (``None`` when several were).
        status: the last HTTP status, if any.
        attempts: how many times the request was sent.
    """

    exit_code = 8

    def __init__(self, message: str, *, url: str | None = None, status: int | None = None, attempts: int = 0) -> None:
        super().__init__(message)
        self.url = url
        self.status = status
        self.attempts = attempts


class ReasonerConnectionError(ReasonerServiceError):
    """No connection to the server, or the connection dropped (after all retries)."""


class ReasonerTimeoutError(ReasonerServiceError):
    """The server did not answer within the timeout (after all retries)."""


class ReasonerHTTPError(ReasonerServiceError):
    """The server answered with an error status (a 4xx, or 429 / 5xx after all retries)."""


class ReasonerAuthError(ReasonerHTTPError):
    """401 / 403: the API key is missing or wrong."""


class ReasonerResponseError(ReasonerServiceError):
    """The server answered 200 with a body that is not a chat completion."""


class ReasonerConfigError(BackendError, ValueError):
    """Bad client settings (base URL, structured-output mode, image format, limits)."""


class UnknownServedModelError(ReasonerServiceError, UnknownModelError):
    """The server does not serve the requested model name. ``served`` lists what it serves."""

    exit_code = 4

    def __init__(self, message: str, *, served: Sequence[str] = (), url: str | None = None) -> None:
        ReasonerServiceError.__init__(self, message, url=url, status=404)
        self.served = list(served)

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


# --- helpers -----------------------------------------------------------------------------------


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


class _Replica:
    __slots__ = ("url", "root", "outstanding", "down_until", "ok_count", "fail_count")

    def __init__(self, url: str) -> None:
        self.url = url
        self.root = url[: -len("/v1")] if url.endswith("/v1") else url
        self.outstanding = 0
        self.down_until = 0.0
        self.ok_count = 0
        self.fail_count = 0


def normalize_base_url(url: str) -> str:
    """``http://host:8000`` -> ``http://host:8000/v1``; other paths are kept (minus a trailing ``/``).

    Raises:
        ReasonerConfigError: not an ``http(s)://host`` URL.
    """
    text = str(url).strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ReasonerConfigError(
            f"bad reasoner base URL {url!r}: use http(s)://HOST[:PORT][/v1], e.g. {DEFAULT_BASE_URL}"
        )
    path = parts.path.rstrip("/")
    if not path:
        path = "/v1"
    return f"{parts.scheme}://{parts.netloc}{path}"


def split_base_urls(value: str | Sequence[str] | None) -> list[str]:
    """Normalised base URLs from a URL, a comma-separated list of URLs, or a sequence of them."""
    if value is None:
        return [DEFAULT_BASE_URL]
    items = value.split(",") if isinstance(value, str) else [u for v in value for u in str(v).split(",")]
    urls = [normalize_base_url(u) for u in items if u.strip()]
    if not urls:
        raise ReasonerConfigError("no reasoner base URL given; pass e.g. base_url='http://127.0.0.1:8000/v1'")
    return list(dict.fromkeys(urls))


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


def _server_message(resp: httpx.Response) -> str:
    """The error text of a response: OpenAI/vLLM ``{"error": {"message"}}``, ``{"message"}``, or the body."""
    try:
        data = resp.json()
    except ValueError:
        return " ".join(resp.text.split())[:300]
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:500]
        for key in ("message", "detail", "error"):
            if isinstance(data.get(key), str):
                return str(data[key])[:500]
    return " ".join(resp.text.split())[:300]


def _model_aliases(model: str) -> list[str]:
    """Names a server may know ``model`` by: the registry short name first (what ``segzero
    serve-reasoner`` serves under), then the hub id."""
    from ..registry import MODELS

    key = model.strip()
    entry = MODELS.get(key.lower())
    if entry is None:
        entry = next((e for e in MODELS.values() if e.hub_id.lower() == key.lower()), None)
    if entry is None or entry.kind != "reasoner":
        return [key]
    return list(dict.fromkeys([entry.name, entry.hub_id, key]))


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def encode_image(image: Image.Image, image_format: str = "png", *, jpeg_quality: int = 95,
                 png_compress_level: int = 1) -> str:
    """The frame as a ``data:`` URL. PNG is lossless (what the in-process backends see); JPEG is
    ~25x faster to encode and ~5x smaller. ``png_compress_level`` 1 gives the same pixels as 6 at a
    third of the time."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    buf = io.BytesIO()
    if image_format == "jpeg":
        image.save(buf, format="JPEG", quality=jpeg_quality)
        mime = "image/jpeg"
    else:
        image.save(buf, format="PNG", compress_level=png_compress_level)
        mime = "image/png"
    return f"data:{mime};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


class _LoopThread:
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

    def stop(self, timeout: float = 5.0) -> None:
        if self.loop.is_closed():
            return
        try:
            self.loop.call_soon_threadsafe(self.loop.stop)
        except RuntimeError:  # already closed
            return
        if threading.current_thread() is not self.thread:
            self.thread.join(timeout)


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
            shape), ``list`` or ``single``; only used with structured outputs.
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
        answer_schema: Literal["auto", "list", "single"] = "auto",
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
        self._candidates = [model_name.strip()] if model_name else _model_aliases(self.model_id)
        #: The model name sent in requests (settled by the first ``/v1/models`` lookup).
        self.model = self._candidates[0]
        self.structured_outputs = _structured_mode(structured_outputs)
        if answer_schema not in ("auto", "list", "single"):
            raise ReasonerConfigError(f"answer_schema must be auto, list or single, got {answer_schema!r}")
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
        self._transport = transport
        self._replicas = [_Replica(u) for u in self.base_urls]
        self._rr = 0
        self._kind: StructuredKind | None = None if self.structured_outputs in ("auto", "off") else self.structured_outputs  # type: ignore[assignment]
        self._discovered = not self.discover
        self._server_is_vllm: bool | None = None
        self._client: httpx.AsyncClient | None = None
        self._sem: asyncio.Semaphore | None = None
        self._discover_lock: asyncio.Lock | None = None
        self._runner: _LoopThread | None = None
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
        future = runner.submit(self._gather(requests, token))
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
        return self._run(self._ahealth(timeout))

    async def ahealth(self, timeout: float = 5.0) -> list[ReplicaHealth]:
        return await asyncio.wrap_future(self._ensure_runner().submit(self._ahealth(timeout)))

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
        now = time.monotonic()
        return [{"url": r.url, "ok": r.ok_count, "failed": r.fail_count, "in_flight": r.outstanding,
                 "skipped": r.down_until > now} for r in self._replicas]

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

    def _ensure_runner(self) -> _LoopThread:
        if self._closed:
            raise RuntimeError("this OpenAICompatReasoner was closed; build a new one")
        with self._runner_lock:
            if self._runner is None:
                self._runner = _LoopThread(f"segzero-openai-{self.model}")
                self._finalizer = weakref.finalize(self, self._runner.stop)
            return self._runner

    def _run(self, coro: Awaitable[_T]) -> _T:
        runner = self._ensure_runner()
        if threading.current_thread() is runner.thread:
            raise RuntimeError("blocking call on the reasoner's own event loop; use the async method")
        return runner.submit(coro).result()

    async def _aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            import httpx

            limits = httpx.Limits(max_connections=self.max_concurrency + 8,
                                  max_keepalive_connections=self.max_concurrency)
            timeout = httpx.Timeout(self.timeout, connect=self.connect_timeout, pool=None)
            self._client = httpx.AsyncClient(limits=limits, timeout=timeout, transport=self._transport,
                                             follow_redirects=False, trust_env=False)
            self._sem = asyncio.Semaphore(self.max_concurrency)
            self._discover_lock = asyncio.Lock()
        return self._client

    async def _gather(self, requests: list[ReasonerRequest], token: CancelToken | None) -> list[ReasonerOutput]:
        """Run every request concurrently; the first failure (or a cancelled token) cancels the rest."""
        self._http()
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(self._one(r, token)) for r in requests]
        try:
            pending: set[asyncio.Task[ReasonerOutput]] = set(tasks)
            while pending:
                done, pending = await asyncio.wait(pending, timeout=_POLL_S if token is not None else None,
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
        replica, resp, attempts = await self._send("POST", "/chat/completions", body, token)
        if resp.status_code == 200:
            return self._parse(resp, replica, attempts)
        await self._raise_for_status(resp, replica, attempts)
        raise AssertionError("unreachable")  # pragma: no cover

    def request_body(self, request: ReasonerRequest, image_url: str) -> dict[str, Any]:
        """The JSON body for one request (``image_url`` is the frame's ``data:`` URL)."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": image_url}},
                    {"type": "text", "text": request.prompt},
                ],
            }],
            "temperature": 0,
            self.max_tokens_field: int(request.max_new_tokens),
        }
        if self._kind is not None:
            schema: AnswerSchema = (schema_for_prompt(request.prompt) if self.answer_schema == "auto"
                                    else self.answer_schema)  # type: ignore[assignment]
            body["structured_outputs"] = structured_outputs_field(self._kind, schema, self.max_objects)
        body.update(self.extra_body)
        return body

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
                    raise self._unknown_model(list(by_id), self.base_urls[0])
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
        replica, resp, attempts = await self._send("GET", "/models", None, token)
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

    def _pick(self) -> _Replica:
        """Least requests in flight among the replicas not being skipped; round-robin on ties."""
        now = time.monotonic()
        n = len(self._replicas)
        start = self._rr
        self._rr = (self._rr + 1) % n
        order = [self._replicas[(start + i) % n] for i in range(n)]
        up = [r for r in order if r.down_until <= now]
        if not up:  # every replica is being skipped: try the one that comes back first
            return min(order, key=lambda r: r.down_until)
        return min(up, key=lambda r: r.outstanding)

    def _others_up(self, replica: _Replica) -> bool:
        now = time.monotonic()
        return any(r is not replica and r.down_until <= now for r in self._replicas)

    async def _send(self, method: str, path: str, body: dict[str, Any] | None,
                    token: CancelToken | None) -> tuple[_Replica, httpx.Response, int]:
        """Send with retries. Returns the first final response (2xx or a non-retryable status)."""
        import httpx

        client = self._http()
        assert self._sem is not None
        attempts = 0
        while True:
            _check(token)
            replica = self._pick()
            attempts += 1
            retry_after: float | None = None
            mark_down = False
            try:
                async with self._sem:
                    replica.outstanding += 1
                    try:
                        resp = await client.request(method, replica.url + path, json=body, headers=self._headers)
                    finally:
                        replica.outstanding -= 1
            except httpx.TimeoutException as exc:
                mark_down = isinstance(exc, httpx.ConnectTimeout)
                phase = "connect to" if mark_down else "get an answer from"
                limit = self.connect_timeout if mark_down else self.timeout
                error: ReasonerServiceError = ReasonerTimeoutError(
                    f"could not {phase} {replica.url} within {limit:g} s ({type(exc).__name__}) after {attempts} "
                    f"attempt(s); the server may be overloaded or down: raise timeout=, lower max_concurrency, "
                    f"or add replicas. {self._start_hint()}", url=replica.url, attempts=attempts)
            except httpx.TransportError as exc:
                mark_down = isinstance(exc, httpx.ConnectError)
                what = "cannot connect to" if mark_down else "lost the connection to"
                error = ReasonerConnectionError(
                    f"{what} {replica.url} ({type(exc).__name__}: {exc}) after {attempts} attempt(s): "
                    f"{self._start_hint()}", url=replica.url, attempts=attempts)
            else:
                status = resp.status_code
                if status != 429 and (status < 500 or status == 501):
                    replica.down_until = 0.0
                    replica.ok_count += status < 400
                    return replica, resp, attempts
                retry_after = retry_after_seconds(resp.headers.get("retry-after"))
                error = ReasonerHTTPError(
                    f"{replica.url} answered HTTP {status} ({_server_message(resp)}) after {attempts} attempt(s)"
                    + ("; the server is rate-limiting: lower max_concurrency or add replicas" if status == 429 else ""),
                    url=replica.url, status=status, attempts=attempts)
            replica.fail_count += 1
            failover = False
            if mark_down:
                replica.down_until = time.monotonic() + self.replica_cooldown
                failover = self._others_up(replica)
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

    async def _raise_for_status(self, resp: httpx.Response, replica: _Replica, attempts: int) -> None:
        status = resp.status_code
        message = _server_message(resp)
        if status in (401, 403):
            where = f"${self.api_key_env}" if self.api_key_env else "api_key="
            raise ReasonerAuthError(
                f"{replica.url} refused the API key (HTTP {status}: {message}); put the server's key in {where}"
                + ("" if self._has_key else " (no key was sent)"), url=replica.url, status=status, attempts=attempts)
        if status == 404 and ("model" in message.lower() or "does not exist" in message.lower()):
            cards = await self._fetch_models_from(replica)
            if cards is not None:
                raise self._unknown_model(cards, replica.url)
        hint = " (is the base URL right? OpenAI-compatible servers usually answer under .../v1)" if status == 404 else ""
        raise ReasonerHTTPError(f"{replica.url} refused the request: HTTP {status}: {message}{hint}",
                                url=replica.url, status=status, attempts=attempts)

    async def _fetch_models_from(self, replica: _Replica) -> list[str] | None:
        try:
            resp = await self._http().get(replica.url + "/models", headers=self._headers)
            data = resp.json()
            return [c["id"] for c in data["data"] if isinstance(c, dict) and isinstance(c.get("id"), str)]
        except Exception:  # noqa: BLE001 - best effort for a better message
            return None

    def _unknown_model(self, served: list[str], url: str) -> UnknownServedModelError:
        tried = " (also tried " + ", ".join(repr(c) for c in self._candidates[1:]) + ")" if len(self._candidates) > 1 else ""
        listing = ", ".join(served) if served else "nothing"
        return UnknownServedModelError(
            f"model {self._candidates[0]!r} is not served at {url}{tried}; the server serves: {listing}. "
            f"Pass one of those as the model name (--reasoner-model-name / model_name=), or start the model with "
            f"`segzero serve-reasoner --model {self._candidates[0]}`", served=served, url=url)

    def _start_hint(self) -> str:
        return (f"is `vllm serve` running at {', '.join(self.base_urls)}? "
                f"start it with `segzero serve-reasoner --model {self._candidates[0]}`")

    def _parse(self, resp: httpx.Response, replica: _Replica, attempts: int) -> ReasonerOutput:
        snippet = " ".join(resp.text[:200].split())
        try:
            data = resp.json()
        except ValueError:
            raise ReasonerResponseError(f"{replica.url} answered HTTP 200 with a body that is not JSON: {snippet!r}",
                                        url=replica.url, status=200, attempts=attempts) from None
        try:
            choice = data["choices"][0]
            message = choice["message"]
            if not isinstance(message, dict):
                raise TypeError
        except (KeyError, IndexError, TypeError):
            raise ReasonerResponseError(f"{replica.url} answered HTTP 200 without choices[0].message: {snippet!r}",
                                        url=replica.url, status=200, attempts=attempts) from None
        content = message.get("content")
        if isinstance(content, list):  # content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if content is None:
            content = ""
        if not isinstance(content, str):
            raise ReasonerResponseError(f"{replica.url} answered with a non-text message content: {snippet!r}",
                                        url=replica.url, status=200, attempts=attempts)
        reasoning = message.get("reasoning") or message.get("reasoning_content")
        if isinstance(reasoning, str) and reasoning and "<think>" not in content:
            # a server-side reasoning parser split the <think> block off; put it back
            content = f"<think>{reasoning}</think>{content}"
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        return ReasonerOutput(
            text=content,
            prompt_tokens=_int_or_none(usage.get("prompt_tokens")),
            completion_tokens=_int_or_none(usage.get("completion_tokens")),
            finish_reason=choice.get("finish_reason") if isinstance(choice.get("finish_reason"), str) else None,
            extra={"replica": replica.url, "attempts": attempts, "model": data.get("model", self.model)},
        )

    async def _ahealth(self, timeout: float) -> list[ReplicaHealth]:
        import httpx

        client = self._http()

        async def one(replica: _Replica) -> ReplicaHealth:
            endpoint = replica.root + "/health"
            try:
                resp = await client.get(endpoint, headers=self._headers, timeout=timeout)
                if resp.status_code in (404, 405):
                    endpoint = replica.url + "/models"
                    resp = await client.get(endpoint, headers=self._headers, timeout=timeout)
            except httpx.TimeoutException as exc:
                return ReplicaHealth(replica.url, False, endpoint, None, f"no answer within {timeout:g} s ({type(exc).__name__})")
            except httpx.TransportError as exc:
                return ReplicaHealth(replica.url, False, endpoint, None, f"cannot connect ({type(exc).__name__}: {exc})")
            if resp.status_code == 200:
                replica.down_until = 0.0
                return ReplicaHealth(replica.url, True, endpoint, 200)
            return ReplicaHealth(replica.url, False, endpoint, resp.status_code,
                                 f"HTTP {resp.status_code}: {_server_message(resp)}")

        return list(await asyncio.gather(*(one(r) for r in self._replicas)))


def _structured_mode(value: StructuredMode | bool | None) -> StructuredMode:
    if value is None or value is False:
        return "off"
    if value is True:
        return "regex"
    mode = str(value).strip().lower()
    if mode in ("none", "false", "0", "no"):
        mode = "off"
    if mode not in ("auto", "regex", "grammar", "off"):
        raise ReasonerConfigError(f"structured_outputs must be auto, regex, grammar or off, got {value!r}")
    return mode  # type: ignore[return-value]


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
        await asyncio.sleep(min(left, _POLL_S))


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
