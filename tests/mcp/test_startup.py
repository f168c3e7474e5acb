"""Start-up and long calls as a client meets them: a real ``segzero-mcp`` subprocess started the way a
client configuration starts it, spoken to in raw JSON-RPC over stdio (so every answer is timed
exactly), with reasoner plugins that load or answer slowly (``tests/slow_plugins.py``).

* the server answers ``initialize``, ``tools/list`` and ``resources/list`` at once while a plugin
  takes 60 s to load; ``segzero://status`` says ``loading`` and what is being loaded;
* a call made during the load waits for it with progress notifications, then answers;
* a failed load is a tool error naming the cause, and the next call loads again;
* a 12 s answer sends progress notifications at least every 5 s;
* ``--http`` serves the same status at ``GET /health`` (503 while loading, 200 when ready);
* without the ``mcp`` extra the command prints one line and exits 5.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from slow_plugins import slow_folder

import segzero_tool

pytestmark = pytest.mark.slow

PROTOCOL = "2025-06-18"


class RawStdio:
    """A ``segzero-mcp`` stdio subprocess and a minimal JSON-RPC client (one JSON message per line)."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path, stderr: Path) -> None:
        self._err = open(stderr, "wb")  # noqa: SIM115 - closed in close()
        self.spawned = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-m", "segzero_tool.mcp_server", *args], env=env, cwd=str(cwd),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err)
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.notifications: list[tuple[float, dict[str, Any]]] = []
        self._next = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                self.lines.put(json.loads(raw))
            except ValueError:
                self.lines.put({"unparsable": raw.decode("utf-8", "replace")})

    def send(self, method: str, params: dict[str, Any] | None = None, *, notify: bool = False) -> int | None:
        msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            msg["params"] = params
        rid = None
        if not notify:
            self._next += 1
            rid = msg["id"] = self._next
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(msg) + "\n").encode())
        self.proc.stdin.flush()
        return rid

    def wait(self, rid: int, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no answer to request {rid} within {timeout} s")
            try:
                msg = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if msg.get("id") == rid and "method" not in msg:
                return msg
            if "method" in msg and "id" not in msg:
                self.notifications.append((time.monotonic(), msg))

    def request(self, method: str, params: dict[str, Any] | None = None, timeout: float = 60) -> tuple[dict, float]:
        t0 = time.monotonic()
        rid = self.send(method, params)
        assert rid is not None
        answer = self.wait(rid, timeout)
        return answer, time.monotonic() - t0

    def initialize(self, timeout: float = 60) -> tuple[dict[str, Any], float]:
        answer, _ = self.request("initialize", {"protocolVersion": PROTOCOL, "capabilities": {},
                                                "clientInfo": {"name": "segzero-tests", "version": "0"}}, timeout)
        self.send("notifications/initialized", notify=True)
        return answer, time.monotonic() - self.spawned

    def status(self) -> dict[str, Any]:
        answer, _ = self.request("resources/read", {"uri": "segzero://status"}, 10)
        return json.loads(answer["result"]["contents"][0]["text"])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._err.close()


@pytest.fixture
def slow_server(kit, image_root, tmp_path):
    started: list[RawStdio] = []

    def start(*, load_s: float = 0, answer_s: float = 0, fail_loads: int = 0, extra: list[str] | None = None):
        folder = slow_folder(tmp_path, kit.ANSWER, load_s=load_s, answer_s=answer_s, fail_loads=fail_loads)
        args = ["--reasoner", str(folder), "--reasoner-backend", "slow_plugins:SlowLoadingReasoner",
                "--segmenter-backend", "scripted:BoxSegmenter", "--device", "cpu", "--allow-root", str(image_root),
                *(extra or [])]
        server = RawStdio(args, kit.server_env(), image_root, tmp_path / "stderr.txt")
        started.append(server)
        server.folder = folder
        server.stderr = tmp_path / "stderr.txt"
        return server

    yield start
    for s in started:
        s.close()


def _progress(server: RawStdio) -> list[tuple[float, dict[str, Any]]]:
    return [(t, m["params"]) for t, m in server.notifications if m["method"] == "notifications/progress"]


def test_answers_at_once_while_a_plugin_loads_for_60_s(slow_server):
    server = slow_server(load_s=60)
    init, since_spawn = server.initialize(timeout=30)
    info = init["result"]["serverInfo"]
    assert info["version"] == segzero_tool.__version__  # not the MCP SDK's version
    tools, t_tools = server.request("tools/list")
    resources, t_resources = server.request("resources/list")
    assert [t["name"] for t in tools["result"]["tools"]] == ["segment_by_reasoning", "segment_by_prompts", "refine_object", "inspect_result", "select_objects",
            "track_by_reasoning"]
    assert "segzero://status" in [r["uri"] for r in resources["result"]["resources"]]
    assert t_tools < 1.0 and t_resources < 1.0, (t_tools, t_resources)
    # spawn -> initialize is Python start-up plus importing the MCP SDK; nothing waits for the models
    assert since_spawn < 15, since_spawn
    status = server.status()
    assert status["state"] == "loading" and status["load"]["state"] == "loading"
    assert status["models"]["reasoner_backend"] == "slow_plugins:SlowLoadingReasoner"
    assert status["queue"] == {"running": 0, "waiting": 0, "max_concurrency": 2, "max_queue": 16}
    deadline = time.monotonic() + 20
    while "Loading checkpoint shards" not in status["load"].get("step", "") and time.monotonic() < deadline:
        time.sleep(0.5)
        status = server.status()
    assert "Loading checkpoint shards" in status["load"]["step"], status
    assert "elapsed_seconds" in status["load"]
    log = server.stderr.read_text()
    # a plugin is named by its own class, not by the default hub id it happens to receive
    assert "slow_plugins:SlowLoadingReasoner" in log and "loading reasoner Ricky06662" not in log


def test_a_call_during_the_load_waits_with_progress_then_answers(slow_server, image_root):
    server = slow_server(load_s=7)
    server.initialize()
    answer, seconds = server.request("tools/call", {
        "name": "segment_by_reasoning", "arguments": {"image": "coffee.png", "query": "the cup"},
        "_meta": {"progressToken": "p1"}}, timeout=120)
    result = answer["result"]
    assert result.get("isError") is not True, result
    assert len(result["structuredContent"]["objects"]) == 2
    notes = _progress(server)
    loading = [p for _, p in notes if p["message"].startswith("loading models")]
    assert len(loading) >= 2, notes
    assert any("Loading checkpoint shards" in p["message"] or "loading reasoner" in p["message"] for p in loading)
    values = [p["progress"] for _, p in notes]
    assert values == sorted(values) and len(set(values)) == len(values) and all(p["total"] == 6 for _, p in notes)
    times = [server.spawned] + [t for t, _ in notes]
    assert max(b - a for a, b in zip(times, times[1:], strict=False)) < 5.0
    assert server.status()["state"] == "ready"


def test_a_failed_load_is_a_tool_error_and_the_next_call_loads_again(slow_server):
    server = slow_server(fail_loads=1, load_s=3)  # the call arrives during the load that fails
    server.initialize()
    args = {"name": "segment_by_reasoning", "arguments": {"image": "coffee.png", "query": "the cup"}}
    first, _ = server.request("tools/call", args, timeout=60)
    text = first["result"]["content"][0]["text"]
    assert first["result"]["isError"] is True and "simulated load failure number 1" in text, first
    assert "next call tries to load them again" in text
    status = server.status()
    assert status["state"] == "failed" and "simulated load failure" in status["load"]["error"]
    second, _ = server.request("tools/call", args, timeout=60)
    assert second["result"].get("isError") is not True, second
    assert (server.folder / "loads.txt").read_text() == "2"
    assert server.status()["state"] == "ready"


def test_a_12_s_answer_sends_progress_at_least_every_5_s(slow_server):
    server = slow_server(answer_s=12)
    server.initialize()
    server.status()  # wait until ready so that only reasoning time is measured
    deadline = time.monotonic() + 30
    while server.status()["state"] != "ready" and time.monotonic() < deadline:
        time.sleep(0.2)
    t0 = time.monotonic()
    answer, seconds = server.request("tools/call", {
        "name": "segment_by_reasoning", "arguments": {"image": "coffee.png", "query": "the cup"},
        "_meta": {"progressToken": 7}}, timeout=120)
    assert answer["result"].get("isError") is not True and seconds >= 12
    notes = _progress(server)
    reasoning = [(t, p) for t, p in notes if p["message"].startswith("reasoning")]
    assert len(reasoning) >= 2, notes  # 12 s at one notification every 2 s: about 6
    times = [t0] + [t for t, _ in notes] + [t0 + seconds]
    assert max(b - a for a, b in zip(times, times[1:], strict=False)) < 5.0, notes
    assert all(p["progressToken"] == 7 for _, p in notes)
    assert any(" s)" in p["message"] for _, p in reasoning)  # elapsed seconds when tokens are not countable


def test_http_health_route_reports_loading_then_ready(kit, image_root, tmp_path):
    import httpx

    folder = slow_folder(tmp_path, kit.ANSWER, load_s=4)
    args = ["--reasoner", str(folder), "--reasoner-backend", "slow_plugins:SlowLoadingReasoner",
            "--segmenter-backend", "scripted:BoxSegmenter", "--device", "cpu", "--allow-root", str(image_root)]
    server = kit.HttpServer(args, kit.server_env(), image_root, tmp_path / "http.log")
    try:
        server.wait_ready(60)
        url = f"http://127.0.0.1:{server.port}/health"
        first = httpx.get(url, timeout=5)
        assert first.status_code == 503 and first.json()["state"] == "loading", first.text
        body = first.json()
        assert {"version", "models", "device", "queue", "load", "results"} <= set(body)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready = httpx.get(url, timeout=5)
            if ready.status_code == 200:
                break
            time.sleep(0.3)
        assert ready.status_code == 200 and ready.json()["state"] == "ready"
        assert ready.json()["models"]["reasoner_loaded"] == "scripted"
        assert httpx.get(url, timeout=5, headers={"Host": "evil.example"}).status_code == 421
    finally:
        server.stop()


def test_without_the_mcp_extra_one_line_and_exit_5(kit, tmp_path):
    code = ("import sys; sys.modules['mcp'] = None; "  # what a missing package looks like to importlib
            "from segzero_tool.mcp_server.cli import main; sys.exit(main([]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=kit.server_env(),
                          cwd=tmp_path, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 5, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and 'pip install "segzero-tool[mcp]"' in lines[0] and "Traceback" not in proc.stderr


@pytest.mark.anyio
async def test_progress_reaches_an_sdk_client_over_streamable_http(kit, image_root, tmp_path):
    folder = slow_folder(tmp_path, kit.ANSWER, load_s=3, answer_s=5)
    args = ["--reasoner", str(folder), "--reasoner-backend", "slow_plugins:SlowLoadingReasoner",
            "--segmenter-backend", "scripted:BoxSegmenter", "--device", "cpu", "--allow-root", str(image_root)]
    server = kit.HttpServer(args, kit.server_env(), image_root, tmp_path / "http.log")
    seen: list[tuple[float, str | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        seen.append((value, message))

    try:
        server.wait_ready(60)
        async with kit.connect_http(server.url) as client:
            res = await client.call({"image": "coffee.png", "query": "the cup"}, progress=on_progress)
    finally:
        server.stop()
    assert res.get("isError") is not True and len(res["structuredContent"]["objects"]) == 2
    messages = [m or "" for _, m in seen]
    assert sum(m.startswith("loading models") for m in messages) >= 1, messages
    assert sum(m.startswith("reasoning") for m in messages) >= 2, messages
