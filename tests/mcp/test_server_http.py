"""A real ``segzero-mcp --http`` subprocess on a free loopback port: tools, resources, bearer-token
authentication, Host/Origin checks, 32 concurrent calls against a small queue, and malicious paths
and URLs. Only loopback traffic to this server; refused URLs are refused before any connection."""

from __future__ import annotations

import asyncio
import base64
import http.client
import io
import json
import shutil

import numpy as np
import pytest
from PIL import Image

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

INIT = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}})


@pytest.fixture(scope="module")
def http_server(kit, tiny_models, tmp_path_factory):
    base = tmp_path_factory.mktemp("http")
    root = base / "root"
    root.mkdir()
    shutil.copy(kit.COFFEE, root / "coffee.png")
    shutil.copy(kit.COFFEE, base / "secret.png")
    (root / "link.png").symlink_to(base / "secret.png")
    args = [*kit.model_args(base, tiny_models), "--allow-root", str(root), "--auth-token-env", "SEGZERO_MCP_TOKEN",
            "--max-concurrency", "2", "--max-queue", "8", "--allow-urls", "--url-timeout", "5"]
    server = kit.HttpServer(args, kit.server_env({"SEGZERO_MCP_TOKEN": kit.TOKEN}), base, base / "server.log")
    try:
        server.wait_ready()
        server.root = root
        yield server
    finally:
        server.stop()


def _raw(server, headers: dict[str, str], body: str = INIT) -> tuple[int, dict[str, str], str]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        hdrs = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream", **headers}
        conn.request("POST", "/mcp", body=body, headers=hdrs)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read().decode("utf-8", "replace")
    finally:
        conn.close()


def _auth(kit) -> dict[str, str]:
    return {"Authorization": f"Bearer {kit.TOKEN}"}


async def test_http_lists_calls_and_reads_a_mask(http_server, kit):
    async with kit.connect_http(http_server.url, _auth(kit)) as client:
        tools = await client.list_tools()
        assert [t["name"] for t in tools] == ["segment_by_reasoning", "segment_by_prompts", "refine_object", "inspect_result", "select_objects",
            "track_by_reasoning"]
        tool = tools[0]
        assert tool["name"] == "segment_by_reasoning" and tool["outputSchema"]["type"] == "object"
        res = await client.call({"image": str(http_server.root / "coffee.png"), "query": "thirsty?"})
        assert res.get("isError") is not True, res
        out = res["structuredContent"]
        assert [o["box"] for o in out["objects"]] == kit.BOXES
        (blob,) = await client.read(out["union_mask_uri"])
        mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(blob["blob"]))))
        assert mask.shape == (400, 600) and mask.max() == 255


def test_http_requires_the_bearer_token(http_server, kit):
    for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Basic {kit.TOKEN}"},
                    {"Authorization": f"Bearer {kit.TOKEN}x"}):
        status, hdrs, text = _raw(http_server, headers)
        assert status == 401, (headers, status, text)
        assert hdrs["www-authenticate"].startswith("Bearer") and "Authorization: Bearer" in text
    status, _, text = _raw(http_server, _auth(kit))
    assert status == 200, text


def test_http_checks_host_and_origin(http_server, kit):
    status, _, text = _raw(http_server, {**_auth(kit), "Host": "evil.example.com"})
    assert status == 421 and "Invalid Host" in text
    status, _, _ = _raw(http_server, {"Host": f"attacker.test:{http_server.port}"})  # before auth
    assert status == 421
    status, _, text = _raw(http_server, {**_auth(kit), "Origin": "http://evil.example.com"})
    assert status == 403 and "Invalid Origin" in text
    status, _, _ = _raw(http_server, {**_auth(kit), "Host": f"localhost:{http_server.port}",
                                      "Origin": f"http://localhost:{http_server.port}"})
    assert status == 200


async def test_http_32_concurrent_calls_complete_or_get_busy(http_server, kit):
    args = {"image": str(http_server.root / "coffee.png"), "query": "the cup"}
    async with kit.connect_http(http_server.url, _auth(kit)) as client:
        results = await asyncio.gather(*(client.call(args) for _ in range(32)))
        ok = busy = 0
        for res in results:
            text = " ".join(c.get("text", "") for c in res["content"])
            if res.get("isError"):
                assert "busy: " in text and "retry in a few seconds" in text, text
                busy += 1
            else:
                assert [o["box"] for o in res["structuredContent"]["objects"]] == kit.BOXES
                ok += 1
        print(f"32 concurrent calls: {ok} completed, {busy} busy")
        assert ok >= 2 and ok + busy == 32
        after = await client.call(args)
        assert after.get("isError") is not True and after["structuredContent"]["parse_status"] == "ok"


@pytest.mark.parametrize(
    ("image", "message"),
    [
        ("../../../../../../../../etc/passwd", "outside the folders"),
        ("/etc/passwd", "outside the folders"),
        ("{root}/link.png", "outside the folders"),
        ("{root}/../secret.png", "outside the folders"),
        ("file:///etc/passwd", "outside the folders"),
        ("http://169.254.169.254/latest/meta-data/iam/", "non-public address"),
        ("http://[::ffff:169.254.169.254]/latest/", "non-public address"),
        ("http://127.0.0.1:{port}/mcp", "non-public address"),
        ("http://localhost:{port}/mcp", "non-public address"),
        ("ftp://example.com/a.png", "only http:// and https://"),
    ],
)
async def test_http_refuses_malicious_paths_and_urls(http_server, kit, image, message):
    image = image.replace("{root}", str(http_server.root)).replace("{port}", str(http_server.port))
    async with kit.connect_http(http_server.url, _auth(kit)) as client:
        res = await client.call({"image": image, "query": "the cup"})
    text = " ".join(c.get("text", "") for c in res["content"])
    assert res["isError"] is True and message in text, text
