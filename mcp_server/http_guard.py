"""A small ASGI guard in front of the streamable-HTTP app: Host and Origin checks against DNS
rebinding, then the optional bearer token.

* ``Host`` must match an allowed pattern, else **421** (a browser tricked by DNS rebinding sends the
  attacker's host name);
* ``Origin``, when present, must match an allowed pattern, else **403**;
* with a token configured, ``Authorization: Bearer <token>`` is required, else **401** with
  ``WWW-Authenticate: Bearer`` (compared in constant time);
* with ``max_body_bytes`` set, a request whose ``Content-Length`` is larger is answered **413**
  before any of its body is read; a body of unknown length (chunked) is counted as it streams
  through ``receive`` and refused with **413** as soon as it passes the limit (the app then sees
  ``http.disconnect``; nothing is buffered here). A malformed ``Content-Length`` is answered **400**.

Patterns follow the MCP SDK's ``TransportSecuritySettings`` syntax: an exact value, or ``prefix:*``
for any port. Lifespan and other non-HTTP scopes pass through untouched.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Sequence
from typing import Any

log = logging.getLogger("segzero_tool.mcp_server")

Scope = dict[str, Any]


def matches(value: str, patterns: Sequence[str]) -> bool:
    """``value`` equals a pattern, or a ``prefix:*`` pattern matches ``prefix:<port>``."""
    value = value.strip().lower()
    for pattern in patterns:
        if value == pattern:
            return True
        if pattern.endswith(":*"):
            base = pattern[:-2]
            rest = value[len(base) + 1:] if value.startswith(base + ":") else None
            if rest is not None and rest.isdigit():
                return True
    return False


class HttpGuard:
    """Wraps an ASGI app; see the module docstring.

    Args:
        app: the app to protect.
        token: the bearer token, or ``None`` for no authentication.
        hosts: allowed ``Host`` patterns.
        origins: allowed ``Origin`` patterns.
        max_body_bytes: largest request body accepted (``None``: no limit).
    """

    def __init__(self, app: Any, *, token: str | None, hosts: Sequence[str], origins: Sequence[str],
                 max_body_bytes: int | None = None) -> None:
        if max_body_bytes is not None and (isinstance(max_body_bytes, bool) or not isinstance(max_body_bytes, int)
                                           or max_body_bytes < 0):
            raise ValueError(f"max_body_bytes must be a whole number of bytes (0 or more) or None, got "
                             f"{max_body_bytes!r}")
        self.app = app
        self._token = token.encode("utf-8") if token else None
        self.hosts = [h.lower() for h in hosts]
        self.origins = [o.lower() for o in origins]
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":  # not served; refuse before anything else
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":  # lifespan
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = headers.get("host", "")
        if not host or not matches(host, self.hosts):
            log.warning("refused a request with Host %r (allow it with --allow-host)", host[:100])
            await _respond(send, 421, "Invalid Host header: this server only answers requests addressed to its "
                                      "allowed host names (see --allow-host)")
            return
        origin = headers.get("origin")
        if origin is not None and not matches(origin, self.origins):
            log.warning("refused a request with Origin %r (allow it with --allow-origin)", origin[:100])
            await _respond(send, 403, "Invalid Origin header: requests from this web origin are not allowed "
                                      "(see --allow-origin)")
            return
        if self._token is not None and not self._authorized(headers.get("authorization", "")):
            await _respond(send, 401, "Unauthorized: send the header 'Authorization: Bearer <token>'",
                           extra=[(b"www-authenticate", b'Bearer realm="segzero-mcp"')])
            return
        if self.max_body_bytes is None:
            await self.app(scope, receive, send)
            return
        declared = headers.get("content-length")
        if declared is not None:
            text = declared.strip()
            if not text.isascii() or not text.isdigit():
                await _respond(send, 400, "Bad Request: the Content-Length header is not a whole number of bytes",
                               extra=[(b"connection", b"close")])
                return
            if int(text) > self.max_body_bytes:
                log.warning("refused a request body of %s bytes (limit %d; see --max-request-bytes)", text[:20],
                            self.max_body_bytes)
                await _respond(send, 413, self._too_large(), extra=[(b"connection", b"close")])
                return
        limited = _BodyLimit(self, receive, send)
        try:
            await self.app(scope, limited.receive, limited.send)
        except Exception:
            if not limited.refused:
                raise
            # The app was told the client went away (e.g. Starlette's ClientDisconnect); the 413 is sent.
            log.debug("the app stopped after its request body was refused", exc_info=True)

    def _too_large(self) -> str:
        return (f"Request body too large: this server accepts at most {self.max_body_bytes:,} bytes per request "
                "(its --max-request-bytes setting), so send a smaller or more compressed image.")

    def _authorized(self, header: str) -> bool:
        scheme, _, credentials = header.strip().partition(" ")
        given = credentials.strip().encode("utf-8")
        ok = hmac.compare_digest(given, self._token or b"")
        return scheme.lower() == "bearer" and ok


class _BodyLimit:
    """Counts the body as the app reads it; past the limit answers 413 (if the app has not started its
    response) and tells the app the client went away. The app's own response is then dropped."""

    def __init__(self, guard: HttpGuard, receive: Any, send: Any) -> None:
        self.guard = guard
        self._receive = receive
        self._send = send
        self.received = 0
        self.exceeded = False
        self.refused = False  # the guard sent the 413
        self.started = False  # the app sent http.response.start

    async def receive(self) -> dict[str, Any]:
        if self.exceeded:
            return {"type": "http.disconnect"}
        message = await self._receive()
        if message.get("type") == "http.request":
            self.received += len(message.get("body", b""))
            limit = self.guard.max_body_bytes
            if limit is not None and self.received > limit:
                self.exceeded = True
                log.warning("refused a streamed request body past %d bytes (see --max-request-bytes)", limit)
                if not self.started:
                    self.refused = True
                    await _respond(self._send, 413, self.guard._too_large(), extra=[(b"connection", b"close")])
                return {"type": "http.disconnect"}
        return message

    async def send(self, message: dict[str, Any]) -> None:
        if self.refused:
            return
        if message.get("type") == "http.response.start":
            self.started = True
        await self._send(message)


async def _respond(send: Any, status: int, text: str, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    body = text.encode("utf-8")
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra or [])})
    await send({"type": "http.response.body", "body": body})
