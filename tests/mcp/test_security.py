"""Image source checks: local paths inside the roots, base64 / data URLs, and the URL policy.

Network rule: the only real connections go to a server on 127.0.0.1 that these tests start;
every other "host" is answered by an ``httpx.MockTransport`` and a fake resolver, and the
SSRF tests assert that nothing was requested at all.
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpcore
import httpx
import numpy as np
import pytest
from PIL import Image

from segzero_tool.images import load_image
from segzero_tool.mcp_server.security import (
    InputPolicy,
    InputRejected,
    classify_source,
    decode_base64_image,
    fetch_url,
    is_public_address,
    load_source,
    resolve_local_path,
)


def _png(w: int = 8, h: int = 6) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((h, w, 3), 200, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


PNG = _png()
B64 = base64.b64encode(PNG).decode()


def run(coro):
    return asyncio.run(coro)


# --- local paths ---------------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path):
    """root/ (allowed) with an image, a folder and symlinks; outside/ next to it."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "img.png").write_bytes(PNG)
    (root / "sub" / "deep.png").write_bytes(PNG)
    (outside / "secret.png").write_bytes(PNG)
    (root / "escape.png").symlink_to(outside / "secret.png")
    (root / "escape_dir").symlink_to(outside, target_is_directory=True)
    (root / "inside_link.png").symlink_to(root / "sub" / "deep.png")
    return root, outside, InputPolicy(allowed_roots=(root,))


def test_path_inside_root_is_resolved(tree):
    root, _, policy = tree
    assert resolve_local_path(str(root / "img.png"), policy) == (root / "img.png").resolve()
    assert resolve_local_path(str(root / "sub" / ".." / "img.png"), policy) == (root / "img.png").resolve()
    assert resolve_local_path(f"file://{root / 'img.png'}", policy) == (root / "img.png").resolve()


def test_symlink_pointing_inside_is_allowed(tree):
    root, _, policy = tree
    assert resolve_local_path(str(root / "inside_link.png"), policy) == (root / "sub" / "deep.png").resolve()


def test_relative_path_against_root(tree, monkeypatch, tmp_path):
    root, _, policy = tree
    monkeypatch.chdir(tmp_path)  # the working directory is not an allowed root
    assert resolve_local_path("sub/deep.png", policy) == (root / "sub" / "deep.png").resolve()


@pytest.mark.parametrize("make", [
    lambda root, out: str(root / ".." / "outside" / "secret.png"),
    lambda root, out: str(root / "escape.png"),
    lambda root, out: str(root / "escape_dir" / "secret.png"),
    lambda root, out: str(out / "secret.png"),
    lambda root, out: "/etc/passwd",
    lambda root, out: "../outside/secret.png",
    lambda root, out: "~/.ssh/id_rsa",
], ids=["dotdot", "symlink-file", "symlink-dir", "absolute", "etc-passwd", "relative-dotdot", "home"])
def test_paths_escaping_the_root_are_refused(tree, make, monkeypatch):
    root, outside, policy = tree
    monkeypatch.chdir(root)
    with pytest.raises(InputRejected, match="outside the folders") as info:
        resolve_local_path(make(root, outside), policy)
    assert "--allow-root" in str(info.value) and "SEGZERO_MCP_ROOTS" in str(info.value)
    assert info.value.exit_code == 2 and isinstance(info.value, ValueError)


def test_missing_file_and_folder_are_refused(tree):
    root, _, policy = tree
    with pytest.raises(InputRejected, match="no such file"):
        resolve_local_path(str(root / "nope.png"), policy)
    with pytest.raises(InputRejected, match="is a folder"):
        resolve_local_path(str(root / "sub"), policy)
    with pytest.raises(InputRejected, match="empty"):
        resolve_local_path("  ", policy)


def test_no_roots_refuses_every_path(tree):
    root, _, _ = tree
    with pytest.raises(InputRejected, match="no local files"):
        resolve_local_path(str(root / "img.png"), InputPolicy(allowed_roots=()))


def test_default_root_is_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert InputPolicy().allowed_roots == (Path(os.path.realpath(tmp_path)),)


# --- base64 --------------------------------------------------------------------------------------


def test_data_url_png_decodes():
    assert decode_base64_image(f"data:image/png;base64,{B64}", InputPolicy()) == PNG
    assert load_image(decode_base64_image(f"DATA:image/png;BASE64,{B64}", InputPolicy())).size == (8, 6)


def test_raw_base64_with_whitespace_urlsafe_and_missing_padding():
    wrapped = "\n".join(B64[i:i + 60] for i in range(0, len(B64), 60))
    assert decode_base64_image(wrapped, InputPolicy()) == PNG
    urlsafe = base64.urlsafe_b64encode(PNG).decode().rstrip("=")
    assert decode_base64_image(urlsafe, InputPolicy()) == PNG


@pytest.mark.parametrize("data, message", [
    ("data:image/png,rawbytes", "only base64 data: URLs"),
    ("data:text/plain;base64,aGVsbG8=", "media type 'text/plain'"),
    ("data:image/png;base64", "no comma"),
    ("data:image/png;base64,", "empty"),
    ("not base64 at all!!", "not valid base64"),
    ("abcde", "impossible"),
])
def test_bad_base64_is_refused(data, message):
    with pytest.raises(InputRejected, match=message):
        decode_base64_image(data, InputPolicy())


def test_oversize_base64_is_refused_before_decoding():
    policy = InputPolicy(max_base64_bytes=len(PNG) - 1)
    with pytest.raises(InputRejected, match="larger than this server's limit"):
        decode_base64_image(f"data:image/png;base64,{B64}", policy)
    with pytest.raises(InputRejected, match="larger"):
        decode_base64_image("A" * 10_000_000, InputPolicy(max_base64_bytes=1000))
    assert decode_base64_image(B64, InputPolicy(max_base64_bytes=len(PNG))) == PNG


# --- classification and dispatch -----------------------------------------------------------------


@pytest.mark.parametrize("source, kind", [
    ("examples/coffee.png", "path"),
    ("/abs/photo.jpg", "path"),
    ("C:\\images\\a.png", "path"),
    ("file:///tmp/a.png", "path"),
    ("photo:2.png", "path"),
    ("http://example.com/a.png", "url"),
    ("HTTPS://example.com/a.png", "url"),
    ("ftp://example.com/a.png", "url"),
    ("data:image/png;base64,AAAA", "data_url"),
    ("segzero://results/abc/overlay.png", "resource"),
    ("segzero://results/abc/mask.png", "resource"),
    (B64, "base64"),
    ("/9j/" + "A" * 80, "base64"),  # JPEG base64 starts like an absolute path
    ("A" * 63, "path"),
    ("a" * 70 + ".png", "path"),
])
def test_classify_source(source, kind):
    assert classify_source(source) == kind


def test_existing_file_wins_over_base64(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    name = "A" * 70
    (tmp_path / name).write_bytes(PNG)
    assert classify_source(name) == "path"


def test_long_dotless_path_under_a_root_still_loads(tree, monkeypatch, tmp_path):
    root, _, policy = tree
    name = "sub/" + "a" * 70
    (root / name).write_bytes(PNG)
    monkeypatch.chdir(tmp_path)  # not found relative to the working directory, so it looks like base64
    assert classify_source(name) == "base64"
    assert run(load_source(name, policy)) == (root / name).resolve()
    with pytest.raises(InputRejected, match="neither valid base64 nor a file inside the allowed folders"):
        run(load_source("sub/" + "b" * 69, policy))  # 73 characters: impossible base64


def test_load_source_dispatch(tree, monkeypatch):
    root, _, policy = tree

    async def reader(uri: str) -> bytes:
        assert uri == "segzero://results/x/overlay.png"
        return b"resource-bytes"

    assert run(load_source(str(root / "img.png"), policy)) == (root / "img.png").resolve()
    assert run(load_source(B64, policy)) == PNG
    assert run(load_source(f"data:image/png;base64,{B64}", policy)) == PNG
    assert run(load_source("segzero://results/x/overlay.png", policy, read_resource=reader)) == b"resource-bytes"
    with pytest.raises(InputRejected, match="cannot be read here"):
        run(load_source("segzero://results/x/overlay.png", policy))
    with pytest.raises(InputRejected, match="disabled"):
        run(load_source("https://example.com/a.png", policy))


# --- URL policy: no connections at all -----------------------------------------------------------


class Recorder:
    """A mock transport that records requests and answers from a routing table."""

    def __init__(self, routes: dict[str, httpx.Response] | None = None) -> None:
        self.routes = routes or {}
        self.requested: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requested.append(str(request.url))
        try:
            return self.routes[str(request.url)]
        except KeyError:
            raise AssertionError(f"unexpected request to {request.url}") from None

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self))


def resolver(table: dict[str, list[str]]):
    async def resolve(host: str) -> list[str]:
        if host not in table:
            raise AssertionError(f"unexpected lookup of {host}")
        return table[host]
    return resolve


URLS_ON = InputPolicy(allow_urls=True)


def test_urls_are_disabled_by_default():
    rec = Recorder()
    with pytest.raises(InputRejected, match="--allow-urls") as info:
        run(fetch_url("https://example.com/a.png", InputPolicy(), client=rec.client()))
    assert "SEGZERO_MCP_ALLOW_URLS=1" in str(info.value)
    assert rec.requested == []


@pytest.mark.parametrize("url", ["ftp://example.com/a.png", "file:///etc/passwd", "gopher://x/", "javascript:x"])
def test_non_http_schemes_are_refused(url):
    rec = Recorder()
    with pytest.raises(InputRejected, match="only http"):
        run(fetch_url(url, URLS_ON, client=rec.client(), resolve=resolver({})))
    assert rec.requested == []


@pytest.mark.parametrize("url", [
    "http://10.0.0.1/a.png",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]/a.png",
    "http://[::ffff:127.0.0.1]/a.png",
    "http://[::ffff:a9fe:a9fe]/a.png",
    "http://0.0.0.0:8080/a.png",
    "http://127.0.0.1/a.png",
    "http://192.168.1.1/a.png",
    "http://100.64.0.1/a.png",
    "http://[fe80::1]/a.png",
    "http://[2002:7f00:1::]/a.png",
    "http://224.0.0.1/a.png",
    "http://127.1/a.png",
    "http://2130706433/a.png",
    "http://0x7f000001/a.png",
])
def test_literal_private_addresses_are_refused_without_connecting(url):
    rec = Recorder()
    with pytest.raises(InputRejected, match="non-public address") as info:
        run(fetch_url(url, URLS_ON, client=rec.client(), resolve=resolver({})))
    assert "--allow-private-urls" in str(info.value)
    assert rec.requested == []


def test_host_resolving_to_any_private_address_is_refused():
    rec = Recorder()
    resolve = resolver({"mixed.example": ["93.184.216.34", "10.1.2.3"]})
    with pytest.raises(InputRejected, match="10.1.2.3"):
        run(fetch_url("https://mixed.example/a.png", URLS_ON, client=rec.client(), resolve=resolve))
    assert rec.requested == []


def test_localhost_is_refused_by_the_system_resolver():
    rec = Recorder()
    with pytest.raises(InputRejected, match="non-public address"):
        run(fetch_url("http://localhost:9/a.png", URLS_ON, client=rec.client()))
    assert rec.requested == []


def test_is_public_address():
    assert is_public_address("93.184.216.34") and is_public_address("2606:4700::1111")
    for addr in ["127.0.0.1", "10.0.0.1", "172.16.0.1", "169.254.1.1", "::1", "::ffff:10.0.0.1", "fe80::1%eth0",
                 "fc00::1", "::", "64:ff9b::a00:1", "192.0.2.1", "not-an-ip"]:
        assert not is_public_address(addr), addr


# --- URL policy: mock transport ------------------------------------------------------------------

PUBLIC = resolver({"public.example": ["93.184.216.34"], "cdn.example": ["93.184.216.35"],
                   "evil.example": ["10.0.0.5"]})


def test_public_url_is_fetched():
    rec = Recorder({"https://public.example/a.png": httpx.Response(200, content=PNG)})
    assert run(fetch_url("https://public.example/a.png", URLS_ON, client=rec.client(), resolve=PUBLIC)) == PNG


def test_redirects_are_followed_and_rechecked():
    rec = Recorder({
        "https://public.example/a.png": httpx.Response(302, headers={"Location": "https://cdn.example/b.png"}),
        "https://cdn.example/b.png": httpx.Response(301, headers={"Location": "/c.png"}),
        "https://cdn.example/c.png": httpx.Response(200, content=PNG),
    })
    assert run(fetch_url("https://public.example/a.png", URLS_ON, client=rec.client(), resolve=PUBLIC)) == PNG
    assert rec.requested[-1] == "https://cdn.example/c.png"


@pytest.mark.parametrize("target", ["https://evil.example/x", "http://169.254.169.254/latest/meta-data/",
                                    "http://[::1]:8080/"])
def test_redirect_to_private_address_is_refused_before_requesting_it(target):
    rec = Recorder({"https://public.example/a.png": httpx.Response(302, headers={"Location": target})})
    with pytest.raises(InputRejected, match="non-public address"):
        run(fetch_url("https://public.example/a.png", URLS_ON, client=rec.client(), resolve=PUBLIC))
    assert rec.requested == ["https://public.example/a.png"]


def test_redirect_to_other_scheme_is_refused():
    rec = Recorder({"https://public.example/a.png": httpx.Response(302, headers={"Location": "file:///etc/passwd"})})
    with pytest.raises(InputRejected, match="only http"):
        run(fetch_url("https://public.example/a.png", URLS_ON, client=rec.client(), resolve=PUBLIC))


def test_too_many_redirects():
    rec = Recorder({f"https://public.example/{i}": httpx.Response(302, headers={"Location": f"/{i + 1}"})
                    for i in range(10)})
    with pytest.raises(InputRejected, match="more than 3 times"):
        run(fetch_url("https://public.example/0", InputPolicy(allow_urls=True, max_redirects=3),
                      client=rec.client(), resolve=PUBLIC))
    assert len(rec.requested) == 4


def test_http_error_status_is_refused():
    rec = Recorder({"https://public.example/a.png": httpx.Response(404)})
    with pytest.raises(InputRejected, match="HTTP 404"):
        run(fetch_url("https://public.example/a.png", URLS_ON, client=rec.client(), resolve=PUBLIC))


def test_size_limit_from_content_length():
    rec = Recorder({"https://public.example/a.png": httpx.Response(200, content=b"x" * 2000)})
    policy = InputPolicy(allow_urls=True, max_download_bytes=1000)
    with pytest.raises(InputRejected, match="download limit of 1,000 bytes"):
        run(fetch_url("https://public.example/a.png", policy, client=rec.client(), resolve=PUBLIC))


def test_size_limit_while_streaming_without_content_length():
    sent: list[int] = []

    async def body():
        for _ in range(100):
            sent.append(1)
            yield b"x" * 100

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body())

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    policy = InputPolicy(allow_urls=True, max_download_bytes=1000)
    with pytest.raises(InputRejected, match="download limit"):
        run(fetch_url("https://public.example/a.png", policy, client=client, resolve=PUBLIC))
    assert len(sent) < 20  # stopped early, not after reading everything


def test_timeout_from_transport():
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    with pytest.raises(InputRejected, match="took longer than"):
        run(fetch_url("https://public.example/a.png", URLS_ON, client=client, resolve=PUBLIC))


def test_overall_deadline():
    async def handler(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200, content=PNG)

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    t0 = time.monotonic()
    with pytest.raises(InputRejected, match="took longer than 0.2 s"):
        run(fetch_url("https://public.example/a.png", InputPolicy(allow_urls=True, url_timeout_s=0.2),
                      client=client, resolve=PUBLIC))
    assert time.monotonic() - t0 < 2


def test_invalid_url_is_refused():
    with pytest.raises(InputRejected, match="no host"):
        run(fetch_url("http:///a.png", URLS_ON, resolve=PUBLIC))


# --- URL policy: a real server on 127.0.0.1 ------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server API
        if self.path == "/img.png":
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(PNG)))
            self.end_headers()
            self.wfile.write(PNG)
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def local_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_loopback_server_refused_by_default_and_allowed_when_enabled(local_server):
    with pytest.raises(InputRejected, match="non-public address"):
        run(fetch_url(f"{local_server}/img.png", URLS_ON))
    allowed = InputPolicy(allow_urls=True, allow_private_urls=True)
    assert run(fetch_url(f"{local_server}/img.png", allowed)) == PNG
    assert run(load_source(f"{local_server}/img.png", allowed)) == PNG


def test_connected_address_is_checked_against_dns_rebinding(local_server):
    """A name that resolved to a public address for the check but connects to loopback (DNS
    rebinding) is refused before its body is read. The client's network backend sends every
    connection to the local test server, so nothing else is contacted."""
    server_port = int(local_server.rsplit(":", 1)[1])

    class ToLocal(httpcore.AsyncNetworkBackend):
        def __init__(self) -> None:
            self.inner = httpcore.AnyIOBackend()
            self.connected: list[str] = []

        async def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
            self.connected.append(host)
            return await self.inner.connect_tcp("127.0.0.1", server_port, timeout=timeout)

        async def sleep(self, seconds: float) -> None:
            await self.inner.sleep(seconds)

    backend = ToLocal()
    transport = httpx.AsyncHTTPTransport()
    transport._pool = httpcore.AsyncConnectionPool(network_backend=backend)  # route every host to the test server
    client = httpx.AsyncClient(transport=transport)
    resolve = resolver({"public.example": ["93.184.216.34"]})
    policy = InputPolicy(allow_urls=True)
    # The peer check catches a name that resolved publicly but connected to loopback (DNS rebinding).
    with pytest.raises(InputRejected, match="connected to the non-public address 127.0.0.1"):
        run(fetch_url("http://public.example/img.png", policy, client=client, resolve=resolve))
    assert backend.connected == ["public.example"]


def test_localhost_name_refused(local_server):
    port = local_server.rsplit(":", 1)[1]
    with pytest.raises(InputRejected, match="non-public address"):
        run(fetch_url(f"http://localhost:{port}/img.png", URLS_ON))
