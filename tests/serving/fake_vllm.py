"""A loopback OpenAI-compatible server that checks every request the way vLLM would, and stricter.

``FakeVLLM`` runs starlette on uvicorn in a daemon thread on ``127.0.0.1`` with a free port and
serves ``GET /health``, ``GET /v1/models`` and ``POST /v1/chat/completions``. Each chat request is
validated (shapes from vLLM's ``ChatCompletionRequest`` and ``StructuredOutputsParams``, 2026):

* JSON object with known fields only (vLLM ignores unknown fields with a warning; a typo such as
  ``structured_output`` would silently do nothing there, so this server refuses it);
* ``model`` is served (else 404 with vLLM's body ``{"error": {"message": "The model `x` does not
  exist.", "type": "NotFoundError", "param": "model", "code": 404}}``);
* exactly one ``user`` message (no system message), whose content is one ``image_url`` part then
  one ``text`` part; at most ``limit_mm_per_prompt`` images (vLLM's message when exceeded);
* the image is a ``data:image/png|jpeg;base64,`` URL that decodes to a ``frame_size`` square RGB image;
* ``temperature`` is 0 and exactly one of ``max_tokens`` / ``max_completion_tokens`` is a positive int;
* ``structured_outputs``, when present, sets exactly one constraint (vLLM's messages otherwise), a
  ``regex`` that compiles or a ``grammar`` with ``::=`` rules; ``response_format`` has a known type;
* ``Authorization: Bearer <api_key>`` on ``/v1/*`` when an API key is set (401 ``{"error":
  "Unauthorized"}`` otherwise, as vLLM's middleware answers).

Answers come from ``answer`` (a string, a list cycled, or ``fn(body, image) -> str``) or from a
:class:`~segzero_tool.reasoners.base.Reasoner` (e.g. the tiny transformers model), run in a worker
thread. With ``enforce_structured`` a scripted answer must fully match the requested regex (a
check of our regex against known-good answers). ``faults`` is a queue consumed one per chat
request: ``("status", 500)``, ``("retry_after", "1")`` (429), ``("sleep", 2.0)``, ``("drop",)``
(the connection closes mid-response), ``("malformed", "text")`` (200 with that body).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import io
import itertools
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import uvicorn
from PIL import Image
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from segzero_tool.reasoners.base import Reasoner, ReasonerRequest

ANSWER = ('<think>The cup holds coffee.</think><answer>[{"bbox_2d": [168,126,588,672], "point_2d": [378,420]}, '
          '{"bbox_2d": [600,700,800,830], "point_2d": [700,760]}]</answer>')

#: ``ChatCompletionRequest`` fields this client may send (a subset of vLLM's).
KNOWN_FIELDS = {"model", "messages", "temperature", "max_tokens", "max_completion_tokens", "structured_outputs",
                "response_format", "n", "stream", "top_p", "top_k", "seed", "stop", "repetition_penalty",
                "min_tokens", "skip_special_tokens", "user", "request_id", "priority"}
_SO_CONSTRAINTS = ("json", "regex", "choice", "grammar", "json_object", "structural_tag")
_SO_FIELDS = {*_SO_CONSTRAINTS, "disable_any_whitespace", "disable_additional_properties", "whitespace_pattern"}
_DATA_URL = re.compile(r"data:(image/(?:png|jpeg));base64,(.*)", re.DOTALL)


class Invalid(Exception):
    def __init__(self, message: str, status: int = 400, err_type: str = "BadRequestError", param: str | None = None):
        super().__init__(message)
        self.status, self.err_type, self.param = status, err_type, param


def error_body(message: str, err_type: str, status: int, param: str | None = None) -> dict[str, Any]:
    """vLLM's ``ErrorResponse``: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": err_type, "param": param, "code": status}}


class FakeVLLM:
    """See the module docstring. Use as a context manager, or ``start()`` / ``stop()``."""

    def __init__(
        self,
        *,
        models: Sequence[str] = ("visionreasoner-7b", "Ricky06662/VisionReasoner-7B"),
        owned_by: str = "vllm",
        answer: str | Sequence[str] | Callable[[dict[str, Any], Image.Image], str] = ANSWER,
        reasoner: Reasoner | None = None,
        api_key: str | None = None,
        delay: float = 0.0,
        frame_size: int = 840,
        limit_images: int = 1,
        health: str = "ok",
        enforce_structured: bool = True,
        port: int = 0,
    ) -> None:
        self.models = list(models)
        self.owned_by = owned_by
        self.reasoner = reasoner
        self.api_key = api_key
        self.delay = delay
        self.frame_size = frame_size
        self.limit_images = limit_images
        self.health = health  # "ok", "fail" (503) or "missing" (404: no /health route)
        self.enforce_structured = enforce_structured
        if callable(answer):
            self._answer: Callable[[dict[str, Any], Image.Image], str] = answer
        else:
            cycle = itertools.cycle([answer] if isinstance(answer, str) else list(answer))
            self._answer = lambda body, image: next(cycle)
        self.faults: list[tuple[Any, ...]] = []
        self.requests: list[dict[str, Any]] = []  # accepted chat requests (image replaced by its size)
        self.rejected: list[tuple[int, str]] = []
        self.auth_headers: list[str | None] = []
        self.hits: dict[str, int] = {"health": 0, "models": 0, "chat": 0}
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._decoded: dict[str, Image.Image] = {}
        self._port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.app = Starlette(routes=self._routes())

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeVLLM:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self._port))
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off",
                                timeout_graceful_shutdown=1, timeout_keep_alive=30, backlog=512)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True,
                                        name=f"fake-vllm-{self._port}")
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("fake vLLM server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Shut down: the port refuses connections afterwards (a killed replica)."""
        if self._server is not None:
            self._server.should_exit = True
            if self._thread is not None:
                self._thread.join(10)
            self._server = None

    def __enter__(self) -> FakeVLLM:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def url(self) -> str:
        return f"{self.root}/v1"

    # --- routes ------------------------------------------------------------------------------

    def _routes(self) -> list[Route]:
        routes = [
            Route("/v1/models", self._models, methods=["GET"]),
            Route("/v1/chat/completions", self._chat, methods=["POST"]),
        ]
        if self.health != "missing":
            routes.append(Route("/health", self._health, methods=["GET"]))
        return routes

    def _auth(self, request: Request) -> Response | None:
        header = request.headers.get("authorization")
        self.auth_headers.append(header)
        if self.api_key is not None and header != f"Bearer {self.api_key}":
            return JSONResponse({"error": "Unauthorized"}, status_code=401)
        return None

    async def _health(self, request: Request) -> Response:
        self.hits["health"] += 1
        return Response(status_code=200 if self.health == "ok" else 503)

    async def _models(self, request: Request) -> Response:
        self.hits["models"] += 1
        denied = self._auth(request)
        if denied is not None:
            return denied
        now = int(time.time())
        return JSONResponse({"object": "list", "data": [
            {"id": m, "object": "model", "created": now, "owned_by": self.owned_by, "root": self.models[-1],
             "parent": None, "max_model_len": 4096, "permission": []} for m in self.models]})

    async def _chat(self, request: Request) -> Response:
        self.hits["chat"] += 1
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        t0 = time.monotonic()
        try:
            return await self._chat_inner(request, t0)
        finally:
            with self._lock:
                self.in_flight -= 1

    async def _chat_inner(self, request: Request, t0: float) -> Response:
        denied = self._auth(request)
        if denied is not None:
            return denied
        fault = self.faults.pop(0) if self.faults else None
        if fault is not None:
            kind = fault[0]
            if kind == "status":
                status = int(fault[1])
                return JSONResponse(error_body(f"fake fault {status}", "InternalServerError" if status >= 500
                                               else "BadRequestError", status), status_code=status)
            if kind == "retry_after":
                return JSONResponse(error_body("rate limited", "RateLimitError", 429), status_code=429,
                                    headers={"Retry-After": str(fault[1])})
            if kind == "sleep":
                await asyncio.sleep(float(fault[1]))
            if kind == "malformed":
                return Response(fault[1] if len(fault) > 1 else "this is not json", status_code=200,
                                media_type="application/json")
            if kind == "drop":
                return _DroppedResponse()
        raw = await request.body()
        try:  # parsing and decoding are CPU work: keep the event loop free for the other requests
            body, image, prompt, budget = await run_in_threadpool(self._parse_and_validate, raw)
        except Invalid as exc:
            return self._reject(exc)
        if self.delay:
            await asyncio.sleep(self.delay)
        finish = "stop"
        if self.reasoner is not None:
            [out] = await run_in_threadpool(self.reasoner.generate, [ReasonerRequest(image, prompt, budget)])
            text, finish = out.text, out.finish_reason or "stop"
            prompt_tokens, completion_tokens = out.prompt_tokens or 0, out.completion_tokens or 0
        else:
            text = self._answer(body, image)
            prompt_tokens, completion_tokens = 900 + len(prompt.split()), len(text.split()) + 1
            regex = (body.get("structured_outputs") or {}).get("regex")
            if self.enforce_structured and regex is not None and re.fullmatch(regex, text) is None:
                return JSONResponse(error_body("fake server: the scripted answer does not match the requested regex",
                                               "InternalServerError", 500), status_code=500)
        record = {k: v for k, v in body.items() if k != "messages"}
        record.update({"prompt": prompt, "image_size": image.size, "t_start": t0, "t_end": time.monotonic(),
                       "messages_shape": [[p["type"] for p in m["content"]] for m in body["messages"]],
                       "image_url_prefix": body["messages"][0]["content"][0]["image_url"]["url"][:30]})
        self.requests.append(record)
        return JSONResponse({
            "id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion", "created": int(time.time()),
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "reasoning": None},
                         "logprobs": None, "finish_reason": finish, "stop_reason": None}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        })

    def _reject(self, exc: Invalid) -> Response:
        self.rejected.append((exc.status, str(exc)))
        return JSONResponse(error_body(str(exc), exc.err_type, exc.status, exc.param), status_code=exc.status)

    # --- validation --------------------------------------------------------------------------

    def _parse_and_validate(self, raw: bytes) -> tuple[dict[str, Any], Image.Image, str, int]:
        try:
            body = json.loads(raw)
        except ValueError:
            raise Invalid("the request body is not valid JSON") from None
        return (body, *self._validate(body))

    def _validate(self, body: Any) -> tuple[Image.Image, str, int]:
        if not isinstance(body, dict):
            raise Invalid("the request body must be a JSON object")
        unknown = sorted(set(body) - KNOWN_FIELDS)
        if unknown:
            raise Invalid(f"unknown request fields (vLLM would ignore them): {unknown}")
        model = body.get("model")
        if not isinstance(model, str):
            raise Invalid("'model' must be a string", param="model")
        if model not in self.models:
            raise Invalid(f"The model `{model}` does not exist.", 404, "NotFoundError", "model")
        if body.get("stream"):
            raise Invalid("streaming is not supported by this fake")
        if body.get("n", 1) != 1:
            raise Invalid("n must be 1")
        if body.get("temperature") != 0:
            raise Invalid(f"temperature must be 0 (greedy), got {body.get('temperature')!r}", param="temperature")
        budgets = [k for k in ("max_tokens", "max_completion_tokens") if k in body]
        if len(budgets) != 1:
            raise Invalid("exactly one of max_tokens / max_completion_tokens must be given")
        budget = body[budgets[0]]
        if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1:
            raise Invalid(f"{budgets[0]} must be a positive integer, got {budget!r}", param=budgets[0])
        self._validate_structured(body)
        messages = body.get("messages")
        if not isinstance(messages, list) or len(messages) != 1:
            raise Invalid("expected exactly one message (one user turn, no system message)", param="messages")
        message = messages[0]
        if not isinstance(message, dict) or message.get("role") != "user" or set(message) - {"role", "content"}:
            raise Invalid("the message must be {'role': 'user', 'content': [...]}", param="messages")
        content = message.get("content")
        if not isinstance(content, list) or not all(isinstance(p, dict) for p in content):
            raise Invalid("the content must be a list of parts", param="messages")
        images = [p for p in content if p.get("type") == "image_url"]
        if len(images) > self.limit_images:
            raise Invalid(f"At most {self.limit_images} image(s) may be provided in one prompt.")
        if [p.get("type") for p in content] != ["image_url", "text"]:
            raise Invalid(f"expected parts [image_url, text], got {[p.get('type') for p in content]}")
        image_part, text_part = content
        if set(image_part) != {"type", "image_url"} or not isinstance(image_part["image_url"], dict) \
                or not isinstance(image_part["image_url"].get("url"), str):
            raise Invalid("an image_url part is {'type': 'image_url', 'image_url': {'url': ...}}")
        if set(text_part) != {"type", "text"} or not isinstance(text_part["text"], str) or not text_part["text"]:
            raise Invalid("a text part is {'type': 'text', 'text': '...'}")
        image = self._decode(image_part["image_url"]["url"])
        return image, text_part["text"], budget

    def _decode(self, url: str) -> Image.Image:
        key = hashlib.sha1(url.encode("ascii", "replace")).hexdigest()
        cached = self._decoded.get(key)
        if cached is not None:  # the same frame again: it was checked already
            return cached
        image = self._decode_new(url)
        if len(self._decoded) < 64:
            self._decoded[key] = image
        return image

    def _decode_new(self, url: str) -> Image.Image:
        m = _DATA_URL.fullmatch(url)
        if m is None:
            raise Invalid("the image must be a data:image/png or data:image/jpeg base64 URL")
        try:
            raw = base64.b64decode(m.group(2), validate=True)
            image = Image.open(io.BytesIO(raw))
            image.load()
        except (binascii.Error, ValueError, OSError) as exc:
            raise Invalid(f"the image data URL does not decode: {exc}") from None
        fmt = {"image/png": "PNG", "image/jpeg": "JPEG"}[m.group(1)]
        if image.format != fmt:
            raise Invalid(f"the data URL says {m.group(1)} but holds {image.format}")
        if image.size != (self.frame_size, self.frame_size) or image.mode != "RGB":
            raise Invalid(f"expected a {self.frame_size}x{self.frame_size} RGB frame, got {image.size} {image.mode}")
        return image

    @staticmethod
    def _validate_structured(body: dict[str, Any]) -> None:
        so = body.get("structured_outputs")
        if so is not None:
            if not isinstance(so, dict) or set(so) - _SO_FIELDS:
                raise Invalid(f"structured_outputs has unknown fields: {sorted(set(so) - _SO_FIELDS) if isinstance(so, dict) else so}")
            count = sum(so.get(k) is not None for k in _SO_CONSTRAINTS)
            if count > 1:
                raise Invalid("You can only use one kind of structured outputs constraint but multiple are specified")
            if count < 1:
                raise Invalid("You must use one kind of structured outputs constraint but none are specified")
            if "regex" in so:
                if not isinstance(so["regex"], str):
                    raise Invalid("structured_outputs.regex must be a string")
                try:
                    re.compile(so["regex"])
                except re.error as exc:
                    raise Invalid(f"invalid regex: {exc}") from None
            if "grammar" in so and (not isinstance(so["grammar"], str) or "::=" not in so["grammar"]):
                raise Invalid("structured_outputs.grammar must be an EBNF grammar string")
        rf = body.get("response_format")
        if rf is not None and (not isinstance(rf, dict)
                               or rf.get("type") not in ("text", "json_object", "json_schema", "structural_tag")):
            raise Invalid("response_format.type must be text, json_object, json_schema or structural_tag")


class _DroppedResponse(Response):
    """Sends the headers and part of the body, then fails: uvicorn closes the connection mid-response."""

    def __init__(self) -> None:
        super().__init__(status_code=200, media_type="application/json")

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"1000")]})
        await send({"type": "http.response.body", "body": b'{"id": "chatcmpl-', "more_body": True})
        raise ConnectionResetError("fake: connection dropped mid-response")
