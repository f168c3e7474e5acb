"""Image source checks: local paths inside the roots, base64 / data URLs, and the URL policy.

Network rule: the only real connections go to servers on 127.0.0.1 that these tests start;
every other "host" is answered by an ``httpx.MockTransport`` and a fake resolver, and the
SSRF tests assert that nothing was requested at all. Downloads connect to the checked IP address
(the request URL names the IP, ``Host`` the original name), so the mock transport records the
URL as the caller wrote it (from ``Host``) and the address connected to.
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


def test_existing_file_inside_the_roots_wins_over_base64(tmp_path, monkeypatch):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    name = "A" * 70
    (root / name).write_bytes(PNG)
    (outside / ("B" * 70)).write_bytes(PNG)
    policy = InputPolicy(allowed_roots=(root,))
    monkeypatch.chdir(root)
    assert classify_source(name, policy) == "path"
    assert classify_source(name) == "base64"  # without a policy: the text alone decides
    assert run(load_source(name, policy)) == (root / name).resolve()
    # a file outside the roots is never looked up: existing or not, it is base64
    monkeypatch.chdir(outside)
    assert classify_source("B" * 70, policy) == classify_source("C" * 70, policy) == "base64"


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


def logical_url(request: httpx.Request) -> str:
    """The URL as the caller wrote it: the request goes to the checked IP, ``Host`` keeps the name."""
    return str(request.url.copy_with(netloc=request.headers["host"].encode("ascii")))


class Recorder:
    """A mock transport that records requests (as written, and the address connected to) and answers
    from a routing table keyed by the URL as written."""

    def __init__(self, routes: dict[str, httpx.Response] | None = None) -> None:
        self.routes = routes or {}
        self.requested: list[str] = []
        self.connected: list[str] = []
        self.sni: list[str | None] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requested.append(logical_url(request))
        self.connected.append(request.url.host)
        self.sni.append(request.extensions.get("sni_hostname"))
        try:
            return self.routes[logical_url(request)]
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


def test_public_url_is_fetched_from_the_checked_address():
    rec = Recorder({"https://public.example/a.png": httpx.Response(200, content=PNG)})
    assert run(fetch_url("https://public.example/a.png", URLS_ON, client=rec.client(), resolve=PUBLIC)) == PNG
    assert rec.connected == ["93.184.216.34"] and rec.sni == ["public.example"]


def test_dns_rebinding_cannot_reach_the_second_answer():
    """A name server that answers a public address first and a private one second: the host is
    resolved once, and the connection goes to the first (checked) address."""
    lookups: list[str] = []

    async def rebinding(host: str) -> list[str]:
        lookups.append(host)
        return ["93.184.216.34"] if len(lookups) == 1 else ["127.0.0.1"]

    rec = Recorder({"https://rebind.example:8443/a.png?x=1": httpx.Response(200, content=PNG)})
    url = "https://rebind.example:8443/a.png?x=1"
    assert run(fetch_url(url, URLS_ON, client=rec.client(), resolve=rebinding)) == PNG
    assert lookups == ["rebind.example"]
    assert rec.connected == ["93.184.216.34"] and rec.sni == ["rebind.example"]
    assert rec.requested == [url]  # Host: rebind.example:8443


def test_each_redirect_hop_is_resolved_once_and_pinned():
    lookups: list[str] = []

    def counting(host: str) -> list[str]:  # a sync resolver works too
        lookups.append(host)
        return {"public.example": ["93.184.216.34"], "cdn.example": ["2606:4700::1111", "93.184.216.35"]}[host]

    rec = Recorder({
        "http://public.example/a.png": httpx.Response(302, headers={"Location": "http://cdn.example/b.png"}),
        "http://cdn.example/b.png": httpx.Response(200, content=PNG),
    })
    assert run(fetch_url("http://public.example/a.png", URLS_ON, client=rec.client(), resolve=counting)) == PNG
    assert lookups == ["public.example", "cdn.example"]
    assert rec.connected == ["93.184.216.34", "2606:4700::1111"] and rec.sni == [None, None]


def test_the_next_checked_address_is_tried_when_the_first_does_not_connect():
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.host)
        if request.url.host == "93.184.216.34":
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, content=PNG)

    resolve = resolver({"two.example": ["93.184.216.34", "93.184.216.35"]})
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    assert run(fetch_url("http://two.example/a.png", URLS_ON, client=client, resolve=resolve)) == PNG
    assert seen == ["93.184.216.34", "93.184.216.35"]


def test_resolver_answers_that_are_not_addresses_are_refused():
    rec = Recorder()
    bad = resolver({"odd.example": ["internal.corp"]})
    with pytest.raises(InputRejected, match="not an IP address"):
        run(fetch_url("http://odd.example/a.png", InputPolicy(allow_urls=True, allow_private_urls=True),
                      client=rec.client(), resolve=bad))
    assert rec.requested == []


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
    # The client connects to the checked address (never the name); where the transport ends up
    # elsewhere anyway (here: loopback), the peer check refuses before the body is read.
    with pytest.raises(InputRejected, match="connected to the non-public address 127.0.0.1"):
        run(fetch_url("http://public.example/img.png", policy, client=client, resolve=resolve))
    assert backend.connected == ["93.184.216.34"]


class _HostEcho(BaseHTTPRequestHandler):
    """Answers the PNG and remembers the Host header of each request."""

    hosts: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        type(self).hosts.append(self.headers.get("Host", ""))
        self.send_response(200)
        self.send_header("Content-Length", str(len(PNG)))
        self.end_headers()
        self.wfile.write(PNG)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def echo_server():
    _HostEcho.hosts = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HostEcho)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_real_connection_goes_to_the_first_checked_address(echo_server):
    """Real sockets: a rebinding resolver (public first, private second) and a network backend that
    records the address asked for and carries the bytes to the loopback test server. The connection
    is opened to the first answer, not to the name, and the name server is asked only once."""
    lookups: list[str] = []

    async def rebinding(host: str) -> list[str]:
        lookups.append(host)
        return ["93.184.216.34"] if len(lookups) == 1 else ["127.0.0.1"]

    class Stream(httpcore.AsyncNetworkStream):  # reports the address it was asked for as the peer
        def __init__(self, inner, host):
            self.inner, self.host = inner, host

        async def read(self, max_bytes, timeout=None):
            return await self.inner.read(max_bytes, timeout)

        async def write(self, buffer, timeout=None):
            await self.inner.write(buffer, timeout)

        async def aclose(self):
            await self.inner.aclose()

        def get_extra_info(self, info):
            return (self.host, 80) if info == "server_addr" else self.inner.get_extra_info(info)

    class Pinned(httpcore.AsyncNetworkBackend):
        def __init__(self) -> None:
            self.inner = httpcore.AnyIOBackend()
            self.connected: list[str] = []

        async def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
            self.connected.append(host)
            return Stream(await self.inner.connect_tcp("127.0.0.1", echo_server, timeout=timeout), host)

        async def sleep(self, seconds: float) -> None:
            await self.inner.sleep(seconds)

    backend = Pinned()
    transport = httpx.AsyncHTTPTransport()
    transport._pool = httpcore.AsyncConnectionPool(network_backend=backend)
    client = httpx.AsyncClient(transport=transport)
    assert run(fetch_url("http://rebind.example/img.png", URLS_ON, client=client, resolve=rebinding)) == PNG
    assert backend.connected == ["93.184.216.34"] and lookups == ["rebind.example"]
    assert _HostEcho.hosts == ["rebind.example"]


def _tls_server(tmp_path, name: str):
    """A loopback HTTPS server whose certificate (from a throwaway CA) names ``name``."""
    import datetime
    import ssl

    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def cert(subject, issuer, key, signer, ca):
        builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = cert("test CA", "test CA", ca_key, ca_key, True)
    leaf = cert(name, "test CA", key, ca_key, False)
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(tmp_path / "leaf.pem", tmp_path / "key.pem")
    client_ctx = ssl.create_default_context(cadata=ca.public_bytes(serialization.Encoding.PEM).decode())
    _HostEcho.hosts = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HostEcho)
    server.socket = server_ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, client_ctx


@pytest.mark.parametrize("cert_name, ok", [("img.example", True), ("other.example", False)])
def test_https_to_the_checked_ip_verifies_the_certificate_for_the_host_name(tmp_path, cert_name, ok):
    """The request goes to 127.0.0.1 (the address the resolver gave), yet TLS verifies the
    certificate against the URL's host name (sni_hostname), so a wrong certificate is refused."""
    server, client_ctx = _tls_server(tmp_path, cert_name)
    try:
        port = server.server_address[1]
        policy = InputPolicy(allow_urls=True, allow_private_urls=True)
        client = httpx.AsyncClient(verify=client_ctx, trust_env=False)
        url = f"https://img.example:{port}/img.png"
        if ok:
            assert run(fetch_url(url, policy, client=client, resolve=resolver({"img.example": ["127.0.0.1"]}))) == PNG
            assert _HostEcho.hosts == [f"img.example:{port}"]
        else:
            with pytest.raises(InputRejected, match="failed .*ConnectError"):
                run(fetch_url(url, policy, client=client, resolve=resolver({"img.example": ["127.0.0.1"]})))
            assert _HostEcho.hosts == []
    finally:
        server.shutdown()
        server.server_close()


def test_localhost_name_refused(local_server):
    port = local_server.rsplit(":", 1)[1]
    with pytest.raises(InputRejected, match="non-public address"):
        run(fetch_url(f"http://localhost:{port}/img.png", URLS_ON))
