"""HttpGuard: Host / Origin / token checks and the request-body limit, on the ASGI app directly
(a raw ASGI harness and ``httpx.ASGITransport``; no sockets)."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest

from segzero_tool.mcp_server.http_guard import HttpGuard

HOSTS = ["127.0.0.1:*", "localhost:*", "testserver"]


class EchoApp:
    """Reads the whole body, then answers its length; records what it saw."""

    def __init__(self) -> None:
        self.calls = 0
        self.messages: list[str] = []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            self.messages.append("lifespan")
            return
        self.calls += 1
        total = 0
        while True:
            message = await receive()
            self.messages.append(message["type"])
            if message["type"] == "http.disconnect":
                # Like a framework would: try to answer anyway (the guard must drop this).
                await send({"type": "http.response.start", "status": 500, "headers": []})
                await send({"type": "http.response.body", "body": b"app error"})
                return
            total += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = str(total).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def guard(app, limit: int | None = 1000, **kwargs) -> HttpGuard:
    return HttpGuard(app, token=kwargs.get("token"), hosts=HOSTS, origins=["http://localhost:*"],
                     max_body_bytes=limit)


def client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


def run(coro):
    return asyncio.run(coro)


async def _raw(app, headers: list[tuple[bytes, bytes]], chunks: list[bytes]) -> tuple[list[dict], int]:
    """Call ``app`` with a raw http scope; returns (messages sent, receive calls)."""
    sent: list[dict] = []
    pending = list(chunks)
    calls = 0

    async def receive():
        nonlocal calls
        calls += 1
        if not pending:
            return {"type": "http.disconnect"}
        body = pending.pop(0)
        return {"type": "http.request", "body": body, "more_body": bool(pending)}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/mcp", "headers": [(b"host", b"testserver"), *headers]}
    await app(scope, receive, send)
    return sent, calls


# --- Content-Length ------------------------------------------------------------------------------


def test_declared_length_over_the_limit_is_refused_before_reading():
    app = EchoApp()
    sent, receive_calls = run(_raw(guard(app), [(b"content-length", b"5000")], [b"x" * 5000]))
    assert receive_calls == 0 and app.calls == 0  # neither the guard nor the app read anything
    assert sent[0]["status"] == 413
    text = sent[1]["body"].decode()
    assert "--max-request-bytes" in text and "1,000 bytes" in text and text.count(".") == 1 and text.endswith(".")
    assert (b"connection", b"close") in sent[0]["headers"]


def test_bodies_within_the_limit_pass():
    async def go():
        async with client(guard(EchoApp())) as c:
            small = await c.post("/mcp", content=b"x" * 1000)
            empty = await c.get("/mcp")
            return small, empty

    small, empty = run(go())
    assert small.status_code == 200 and small.text == "1000"
    assert empty.status_code == 200 and empty.text == "0"


def test_malformed_content_length_is_a_bad_request():
    for value in (b"abc", b"-1", b"1e3", b"\xd9\xa3"):  # the last: an Arabic-Indic digit
        app = EchoApp()
        sent, calls = run(_raw(guard(app), [(b"content-length", value)], [b"x"]))
        assert sent[0]["status"] == 400 and app.calls == 0 and calls == 0, value


# --- streamed (chunked) bodies -------------------------------------------------------------------


def test_chunked_body_is_refused_as_soon_as_it_passes_the_limit():
    produced = 0

    async def body():
        nonlocal produced
        for _ in range(1000):
            produced += 1
            yield b"x" * 100

    app = EchoApp()

    async def go():
        async with client(guard(app, limit=1000)) as c:
            return await c.post("/mcp", content=body())  # no Content-Length: chunked

    response = run(go())
    assert response.status_code == 413 and "--max-request-bytes" in response.text
    assert produced <= 12  # stopped just past 1000 bytes, not after 100 kB
    assert app.messages[-1] == "http.disconnect"  # the app was told the client went away
    assert "app error" not in response.text  # and its own answer was dropped


def test_chunked_body_within_the_limit_passes():
    async def body():
        for _ in range(10):
            yield b"x" * 100

    async def go():
        async with client(guard(EchoApp(), limit=1000)) as c:
            return await c.post("/mcp", content=body())

    response = run(go())
    assert response.status_code == 200 and response.text == "1000"


def test_body_longer_than_its_content_length_is_still_counted():
    app = EchoApp()
    sent, _ = run(_raw(guard(app), [(b"content-length", b"10")], [b"x" * 600, b"x" * 600]))
    assert sent[0]["status"] == 413 and len(sent) == 2


def test_no_limit_by_default():
    app = EchoApp()
    unlimited = HttpGuard(app, token=None, hosts=HOSTS, origins=[])
    sent, _ = run(_raw(unlimited, [(b"content-length", b"2000000")], [b"x" * 1_000_000, b"x" * 1_000_000]))
    assert sent[0]["status"] == 200 and sent[1]["body"] == b"2000000"


def test_app_that_already_answered_is_cut_off_without_a_second_response():
    class Streaming:
        async def __call__(self, scope, receive, send):
            await send({"type": "http.response.start", "status": 200, "headers": []})
            seen = []
            while True:
                message = await receive()
                seen.append(message["type"])
                if message["type"] == "http.disconnect" or not message.get("more_body"):
                    break
            await send({"type": "http.response.body", "body": ",".join(seen).encode()})

    sent, _ = run(_raw(guard(Streaming(), limit=100), [], [b"x" * 60, b"x" * 60, b"x" * 60]))
    assert [m.get("status") for m in sent if m["type"] == "http.response.start"] == [200]
    assert sent[-1]["body"] == b"http.request,http.disconnect"


def test_a_starlette_app_reading_the_body_gets_the_413(caplog):
    starlette = pytest.importorskip("starlette.applications")
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def echo(request):
        return PlainTextResponse(str(len(await request.body())))

    app = starlette.Starlette(routes=[Route("/mcp", echo, methods=["POST"])])

    async def body():
        for _ in range(100):
            yield b"x" * 100

    async def go():
        async with client(guard(app, limit=1000)) as c:
            return await c.post("/mcp", content=body()), await c.post("/mcp", content=b"x" * 10)

    with caplog.at_level(logging.WARNING, logger="segzero_tool.mcp_server"):
        refused, ok = run(go())
    assert refused.status_code == 413 and ok.status_code == 200 and ok.text == "10"
    assert any("--max-request-bytes" in r.getMessage() for r in caplog.records)


# --- the other checks come first, and stay ------------------------------------------------------


def test_host_origin_and_token_checks_still_apply():
    app = EchoApp()
    bad_host = {"type": "http", "method": "POST", "path": "/", "headers": [(b"host", b"evil.example"),
                                                                           (b"content-length", b"99999")]}
    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    async def receive():
        raise AssertionError("nothing may be read")

    run(guard(app)(bad_host, receive, send))
    assert sent[0]["status"] == 421 and app.calls == 0

    async def go():
        async with client(HttpGuard(app, token="s3cret", hosts=HOSTS, origins=[], max_body_bytes=10)) as c:
            return (await c.post("/", content=b"x" * 100),
                    await c.post("/", content=b"x" * 100, headers={"Authorization": "Bearer s3cret"}),
                    await c.post("/", content=b"x" * 5, headers={"Authorization": "Bearer s3cret"}))

    unauthorized, too_large, ok = run(go())
    assert unauthorized.status_code == 401 and too_large.status_code == 413 and ok.status_code == 200


def test_lifespan_passes_and_bad_limits_are_refused():
    app = EchoApp()

    async def receive():
        return {"type": "lifespan.startup"}

    async def send(message):
        pass

    run(guard(app)({"type": "lifespan"}, receive, send))
    assert app.messages == ["lifespan"]
    for bad in (-1, 1.5, True, "10"):
        with pytest.raises(ValueError, match="max_body_bytes"):
            HttpGuard(app, token=None, hosts=HOSTS, origins=[], max_body_bytes=bad)
