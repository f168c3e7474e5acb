"""The core image intake (segzero_tool.sources): every image form under one policy.

Network rule: nothing leaves the machine. URLs are answered by an ``httpx.MockTransport`` and a
fake resolver; the adapters' suites (tests/mcp/test_security.py, tests/agents/test_tool.py) add
loopback servers.
"""

from __future__ import annotations

import asyncio
import base64
import io
import math
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from segzero_tool.errors import ImageLoadError, ImageSourceRejected, SegZeroError
from segzero_tool.images import LoadedImage
from segzero_tool.sources import (
    ImagePolicy,
    afetch_url,
    aload_image_source,
    aload_source,
    classify_source,
    decode_base64_image,
    fetch_url,
    load_image_source,
    load_source,
    resolve_local_path,
)


def _png(w: int = 8, h: int = 6) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((h, w, 3), 200, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


PNG = _png()
B64 = base64.b64encode(PNG).decode()
BASE64_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+_-"


@pytest.fixture
def root(tmp_path, monkeypatch):
    root = tmp_path / "root"
    root.mkdir()
    (root / "img.png").write_bytes(PNG)
    monkeypatch.chdir(root)
    return root


# --- the policy ----------------------------------------------------------------------------------


def test_policy_defaults_and_roots(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    real = Path(os.path.realpath(tmp_path))
    policy = ImagePolicy()
    assert policy.allowed_roots == (real,) and not policy.allow_urls and not policy.allow_private_urls
    assert ImagePolicy(allowed_roots=None).allowed_roots == (real,)
    assert ImagePolicy(allowed_roots=str(tmp_path)).allowed_roots == (real,)  # one root, not its characters
    assert ImagePolicy(allowed_roots=()).allowed_roots == ()
    hash(policy)  # frozen and hashable


@pytest.mark.parametrize("kwargs", [
    {"url_timeout_s": float("nan")}, {"url_timeout_s": float("inf")}, {"url_timeout_s": 0}, {"url_timeout_s": True},
    {"url_timeout_s": "5"}, {"max_download_bytes": 0}, {"max_base64_bytes": -1}, {"max_base64_bytes": 1.5},
    {"max_file_bytes": 0}, {"max_redirects": -1}, {"max_redirects": True}, {"allow_urls": "yes"},
    {"allowed_roots": (3,)}, {"reader": None},
])
def test_policy_rejects_bad_values(kwargs):
    with pytest.raises((ValueError, TypeError)):
        ImagePolicy(**kwargs)


def test_error_class():
    err = ImageSourceRejected("x")
    assert isinstance(err, SegZeroError) and isinstance(err, ValueError) and err.exit_code == 2
    assert not isinstance(err, ImageLoadError)


# --- classification ------------------------------------------------------------------------------


def test_classify_every_form(root):
    pil = Image.new("RGB", (4, 4))
    arr = np.zeros((4, 4, 3), np.uint8)
    cases = {
        "img.png": "path", "file:///a.png": "path", "https://x.example/a.png": "url", "ftp://x/a": "url",
        "data:image/png;base64,AAAA": "data_url", B64: "base64", "segzero://results/a/overlay.png": "resource",
    }
    for source, kind in cases.items():
        assert classify_source(source) == kind, source
    assert classify_source(root / "img.png") == "path"
    assert classify_source(PNG) == classify_source(bytearray(PNG)) == classify_source(memoryview(PNG)) == "bytes"
    assert classify_source(pil) == "pil" and classify_source(arr) == "array"
    assert classify_source(LoadedImage(arr)) == "loaded"


@pytest.mark.parametrize("source", [None, 3, 2.5, float("nan"), ["a.png"], {"a": 1}, object(), True])
def test_wrong_types_are_rejected_everywhere(source, root):
    policy = ImagePolicy()
    with pytest.raises(ImageSourceRejected, match="got "):
        classify_source(source)
    with pytest.raises(ImageSourceRejected, match="got "):
        load_source(source, policy)
    with pytest.raises(ImageSourceRejected, match="got "):
        asyncio.run(aload_source(source, policy))
    with pytest.raises(ImageSourceRejected):
        resolve_local_path(source, policy)
    with pytest.raises(ImageSourceRejected):
        decode_base64_image(source, policy)
    with pytest.raises(ImageSourceRejected):
        fetch_url(source, ImagePolicy(allow_urls=True))


def test_base64_looking_file_names(root):
    name = "Q" * 70
    (root / name).write_bytes(PNG)
    policy = ImagePolicy()
    assert classify_source(name) == "base64" and classify_source(name, policy) == "path"
    assert load_source(name, policy) == (root / name).resolve()
    assert load_source("R" * 72, policy) != b""  # no such file inside the roots: decoded as base64
    with pytest.raises(ImageSourceRejected, match="neither valid base64 nor a file inside the allowed folders"):
        load_source("sub/" + "b" * 69, policy)


# --- every form through load_source / aload_source -----------------------------------------------


def test_every_form_loads(root):
    policy = ImagePolicy()
    pil = Image.new("RGB", (5, 3), (1, 2, 3))
    arr = np.zeros((3, 5, 3), np.uint8)
    loaded = LoadedImage(arr)
    expected = {
        "img.png": root / "img.png", str(root / "img.png"): root / "img.png", (root / "img.png").as_uri(): root / "img.png",
        f"data:image/png;base64,{B64}": PNG, B64: PNG,
    }
    for source, want in expected.items():
        assert load_source(source, policy) == want, source
        assert asyncio.run(aload_source(source, policy)) == want, source
    assert load_source(root / "img.png", policy) == root / "img.png"
    assert load_source(bytearray(PNG), policy) == PNG and load_source(memoryview(PNG), policy) == PNG
    assert load_source(pil, policy) is pil and load_source(arr, policy) is arr and load_source(loaded, policy) is loaded
    assert asyncio.run(aload_source(pil, policy)) is pil
    for source in ("img.png", B64, f"data:image/png;base64,{B64}", PNG, pil, arr, root / "img.png"):
        image = load_image_source(source, policy)
        assert isinstance(image, LoadedImage) and image.array.dtype == np.uint8
        assert asyncio.run(aload_image_source(source, policy)).size == image.size
    with pytest.raises(ImageLoadError, match="more than the limit of 10"):
        load_image_source("img.png", policy, max_pixels=10)


def test_handles_go_through_the_callback(root):
    policy = ImagePolicy()
    seen: list[str] = []

    def sync_reader(handle: str) -> bytes:
        seen.append(handle)
        return PNG

    async def async_reader(handle: str) -> bytes:
        seen.append(handle)
        return PNG

    handle = "segzero://results/abc/overlay.png"
    assert load_source(handle, policy, resolve_handle=sync_reader) == PNG
    assert load_source(handle, policy, resolve_handle=async_reader) == PNG
    assert asyncio.run(aload_source(f"  {handle} ", policy, resolve_handle=async_reader)) == PNG
    assert asyncio.run(aload_source(handle, policy, resolve_handle=sync_reader)) == PNG
    assert seen == [handle] * 4
    assert load_image_source(handle, policy, resolve_handle=sync_reader).size == (8, 6)
    with pytest.raises(ImageSourceRejected, match="cannot be read here"):
        load_source(handle, policy)

    def refuse(handle: str) -> bytes:
        raise ImageSourceRejected(f"{handle} is not a result of this server")

    with pytest.raises(ImageSourceRejected, match="not a result"):
        load_source(handle, policy, resolve_handle=refuse)
    with pytest.raises(TypeError, match="resolve_handle"):  # a bug in the caller's callback
        load_source(handle, policy, resolve_handle=lambda h: "not bytes")


def test_local_path_messages(root, tmp_path):
    policy = ImagePolicy(max_file_bytes=len(PNG) - 1)
    (root / "sub").mkdir()
    with pytest.raises(ImageSourceRejected, match="no such file") as info:
        resolve_local_path("nope.png", policy)
    assert str(root / "nope.png") in str(info.value)  # inside the roots: the place looked at is named
    with pytest.raises(ImageSourceRejected, match="is a folder"):
        resolve_local_path("sub", policy)
    with pytest.raises(ImageSourceRejected, match="more than this program's limit"):
        resolve_local_path("img.png", policy)
    with pytest.raises(ImageSourceRejected, match="NUL"):
        resolve_local_path("img\x00.png", policy)
    with pytest.raises(ImageSourceRejected, match="longer than any file path"):
        resolve_local_path("a/" * 3000, policy)
    with pytest.raises(ImageSourceRejected, match="names the host"):
        resolve_local_path("file://elsewhere/img.png", policy)
    with pytest.raises(ImageSourceRejected, match="reads no local files"):
        resolve_local_path("img.png", ImagePolicy(allowed_roots=()))
    with pytest.raises(ImageSourceRejected, match="outside the folders this tool may read .* allowed_roots"):
        resolve_local_path("/etc/passwd", ImagePolicy(reader="this tool", roots_hint="extend allowed_roots"))
    with pytest.raises(ImageSourceRejected):
        resolve_local_path("\ud800.png", ImagePolicy())  # a lone surrogate cannot name a file


def test_user_names_after_tilde_are_not_looked_up(root):
    # "~root/x" would expand to root's home if user names were resolved; it is a relative name here
    with pytest.raises(ImageSourceRejected, match="no such file"):
        resolve_local_path("~root/x.png", ImagePolicy())


def test_base64_checks():
    assert decode_base64_image(B64, 10_000) == PNG  # an int is the byte limit
    with pytest.raises(ImageSourceRejected, match="larger than"):
        decode_base64_image(B64, len(PNG) - 1)
    with pytest.raises(ImageSourceRejected, match="cut off"):
        decode_base64_image(B64[:-3] if len(B64.rstrip("=")) % 4 != 1 else B64[:-2], ImagePolicy())
    with pytest.raises(ImageSourceRejected, match="not valid base64"):
        decode_base64_image("data:image/png;base64,AAA\x00AAA", ImagePolicy())
    with pytest.raises(TypeError):
        decode_base64_image(B64, "big")


# --- URLs (mock transport) -----------------------------------------------------------------------


def _public(host: str) -> list[str]:
    return {"img.example": ["93.184.216.34"]}[host]


def test_sync_fetch_pins_the_checked_address():
    lookups: list[str] = []

    def rebinding(host: str) -> list[str]:
        lookups.append(host)
        return ["93.184.216.34"] if len(lookups) == 1 else ["10.0.0.1"]

    seen: list[tuple[str, str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.host, request.headers["host"], request.extensions.get("sni_hostname")))
        return httpx.Response(200, content=PNG)

    policy = ImagePolicy(allow_urls=True)
    assert fetch_url("https://img.example/a.png", policy, transport=httpx.MockTransport(handler),
                     resolve=rebinding) == PNG
    assert lookups == ["img.example"] and seen == [("93.184.216.34", "img.example", "img.example")]
    image = load_image_source("https://img.example/a.png", policy, transport=httpx.MockTransport(handler),
                              resolve=_public)
    assert image.size == (8, 6)


def test_sync_fetch_works_inside_a_running_event_loop():
    handler = httpx.MockTransport(lambda request: httpx.Response(200, content=PNG))

    async def main() -> bytes:  # a sync caller inside a loop (e.g. a notebook): a private thread runs it
        return load_source("http://img.example/a.png", ImagePolicy(allow_urls=True), transport=handler,
                           resolve=_public)

    assert asyncio.run(main()) == PNG


def test_async_fetch_with_a_client():
    client = httpx.AsyncClient(transport=httpx.MockTransport(lambda request: httpx.Response(200, content=PNG)))
    policy = ImagePolicy(allow_urls=True)
    assert asyncio.run(aload_source("http://img.example/a.png", policy, client=client, resolve=_public)) == PNG
    with pytest.raises(ImageSourceRejected, match="enable URL fetching"):
        asyncio.run(afetch_url("http://img.example/a.png", ImagePolicy(), client=client, resolve=_public))
    with pytest.raises(ImageSourceRejected, match="non-public address"):
        asyncio.run(afetch_url("http://127.0.0.1/a.png", policy, client=client))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(url=st.one_of(st.text(max_size=300), st.builds(lambda s: "http://" + s, st.text(max_size=200)),
                     st.builds(lambda s: "https://img.example/" + s, st.text(max_size=200))))
def test_hostile_urls_give_the_typed_error(url):
    transport = httpx.MockTransport(lambda request: httpx.Response(404))
    policy = ImagePolicy(allow_urls=True)
    with pytest.raises(ImageSourceRejected):
        fetch_url(url, policy, transport=transport, resolve=lambda host: ["93.184.216.34"])


# --- hostile input -------------------------------------------------------------------------------

_HOSTILE = st.one_of(
    st.text(max_size=300),
    st.text(alphabet=BASE64_CHARS + "/=\n ", min_size=60, max_size=400),
    st.builds(lambda s: "data:" + s, st.text(max_size=200)),
    st.builds(lambda s: "file://" + s, st.text(max_size=100)),
    st.builds(lambda s: "segzero://" + s, st.text(max_size=100)),
    st.integers(), st.floats(), st.none(), st.lists(st.text(max_size=5), max_size=3), st.booleans(),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(source=_HOSTILE)
def test_hostile_sources_give_the_typed_error_or_a_value(source, root):
    policy = ImagePolicy()
    try:
        out = load_source(source, policy)
    except ImageSourceRejected as exc:
        assert str(exc)
    else:
        assert isinstance(out, (bytes, Path))
    try:
        load_image_source(source, policy)
    except SegZeroError:  # ImageSourceRejected, or ImageLoadError for bytes that are no image
        pass


def test_very_long_inputs_are_refused_cheaply(root):
    policy = ImagePolicy(max_base64_bytes=1000)
    with pytest.raises(ImageSourceRejected, match="larger than"):
        load_source("A" * 5_000_000, policy)
    with pytest.raises(ImageSourceRejected, match="larger than"):
        load_source("data:image/png;base64," + "A" * 5_000_000, policy)
    with pytest.raises(ImageSourceRejected, match="characters long"):
        load_source("http://img.example/" + "a" * 10_000, ImagePolicy(allow_urls=True))


# --- outside the roots, existence is not observable ----------------------------------------------


@pytest.fixture(scope="module")
def leak_tree(tmp_path_factory):
    base = tmp_path_factory.mktemp("leak")
    root, outside = base / "root", base / "outside"
    root.mkdir()
    (outside / "exists").mkdir(parents=True)  # the twin folder "absent" (same length) is never created
    (root / "in.png").write_bytes(PNG)
    os.symlink(outside / "exists", root / "dirE")
    os.symlink(outside / "absent", root / "dirA")
    return root, outside


_NAMES = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"), min_size=1, max_size=30),
    st.text(alphabet=BASE64_CHARS, min_size=64, max_size=120),
).filter(lambda n: n not in (".", "..") and len(n.encode("utf-8")) < 200)
_FORMS = st.sampled_from(["absolute", "file_url", "relative", "symlink_file", "symlink_dir", "dotdot"])


def _outcome(fn, source, masks: list[str]) -> tuple[str, str]:
    try:
        out = fn(source)
    except ImageSourceRejected as exc:
        text = str(exc)
        for m in sorted(set(masks), key=len, reverse=True):
            if m:
                text = text.replace(m, "<PATH>")
        return "rejected", text
    return "value", type(out).__name__


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=_NAMES, form=_FORMS, as_pathlike=st.booleans())
def test_outside_paths_look_the_same_whether_they_exist_or_not(leak_tree, monkeypatch, name, form, as_pathlike):
    root, outside = leak_tree
    monkeypatch.chdir(root)
    policy = ImagePolicy(allowed_roots=(root,))
    tag = uuid.uuid4().hex[:8]
    existing = outside / "exists" / f"{tag}{name}"
    existing.write_bytes(PNG)
    try:
        twins = []
        for folder, link_dir in (("exists", "dirE"), ("absent", "dirA")):
            target = outside / folder / f"{tag}{name}"
            if form == "absolute":
                text = str(target)
            elif form == "file_url":
                text = target.as_uri()
            elif form == "relative":
                text = os.path.join("..", "outside", folder, f"{tag}{name}")
            elif form == "dotdot":
                text = str(root / ".." / "outside" / folder / f"{tag}{name}")
            elif form == "symlink_dir":
                text = str(root / link_dir / f"{tag}{name}")
            else:
                link = root / f"ln{folder[0]}{tag}"
                if not link.is_symlink():
                    os.symlink(target, link)
                text = str(link)
            twins.append(text)
        results = []
        for text in twins:
            from urllib.parse import unquote, urlsplit

            plain = unquote(urlsplit(text).path) if text.startswith("file:") else text
            masks = [repr(text), repr(text.strip()), repr(plain), repr(plain.strip()), text, plain]
            source = Path(text) if as_pathlike and form != "file_url" else text
            results.append((
                _outcome(lambda s: resolve_local_path(s, policy), source, masks),
                _outcome(lambda s: load_source(s, policy), source, masks),
                _outcome(lambda s: asyncio.run(aload_source(s, policy)), source, masks),
                classify_source(source, policy),
            ))
        assert results[0] == results[1], (twins, results)
        assert results[0][0][0] == "rejected"  # an outside path is never read
    finally:
        existing.unlink()
        for folder in "ea":
            link = root / f"ln{folder}{tag}"
            if link.is_symlink():
                link.unlink()


def test_inside_the_roots_existence_may_differ(leak_tree, monkeypatch):
    root, _ = leak_tree
    monkeypatch.chdir(root)
    policy = ImagePolicy(allowed_roots=(root,))
    assert resolve_local_path("in.png", policy) == (root / "in.png").resolve()
    with pytest.raises(ImageSourceRejected, match="no such file"):
        resolve_local_path("out.png", policy)


# --- import cost ---------------------------------------------------------------------------------


def test_importing_the_intake_stays_light():
    code = ("import sys, segzero_tool.sources; "
            "bad = [m for m in ('httpx', 'anyio', 'mcp', 'langchain_core', 'torch', 'segzero_tool.mcp_server', "
            "'segzero_tool.agents') if m in sys.modules]; assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert math.isfinite(1.0)
