"""A small ASGI guard in front of the streamable-HTTP app: Host and Origin checks against DNS
rebinding, then the optional bearer token.

* ``Host`` must match an allowed pattern, else **421** (a browser tricked by DNS rebinding sends the
  attacker's host name);
* ``Origin``, when present, must match an allowed pattern, else **403**;
* with a token configured, ``Authorization: Bearer <token>`` is required, else **401** with
  ``WWW-Authenticate: Bearer`` (compared in constant time).

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
    """

    def __init__(self, app: Any, *, token: str | None, hosts: Sequence[str], origins: Sequence[str]) -> None:
        self.app = app
        self._token = token.encode("utf-8") if token else None
        self.hosts = [h.lower() for h in hosts]
        self.origins = [o.lower() for o in origins]

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
        await self.app(scope, receive, send)

    def _authorized(self, header: str) -> bool:
        scheme, _, credentials = header.strip().partition(" ")
        given = credentials.strip().encode("utf-8")
        ok = hmac.compare_digest(given, self._token or b"")
        return scheme.lower() == "bearer" and ok


async def _respond(send: Any, status: int, text: str, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    body = text.encode("utf-8")
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra or [])})
    await send({"type": "http.response.body", "body": body})
