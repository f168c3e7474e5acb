"""Fixtures for the MCP server tests: one client interface over both MCP SDK lines (1.x, 2.x) and
the in-memory, stdio and streamable-HTTP transports, scripted reasoners, and server subprocesses.

Every client call returns wire-shaped dicts (``model_dump(by_alias=True)``: camelCase keys), so
the tests read the same on both SDK lines.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest

pytest.importorskip("mcp")

from scripted import BoxSegmenter, ScriptedReasoner  # noqa: E402

from segzero_tool.cancel import check_cancelled  # noqa: E402
from segzero_tool.mcp_server import compat  # noqa: E402
from segzero_tool.reasoners.base import Reasoner, ReasonerOutput  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
COFFEE = REPO / "examples" / "coffee.png"  # 600 x 400
ANSWER = ('<think>The cup holds coffee.</think><answer>[{"bbox_2d": [168,126,588,672], "point_2d": [378,420]}, '
          '{"bbox_2d": [600,700,800,830], "point_2d": [700,760]}]</answer>')
#: ANSWER's boxes in the 600 x 400 original (VisionReasoner rounding: int(v * W / 840 + 0.5)).
BOXES = [[int(168 * 600 / 840 + 0.5), int(126 * 400 / 840 + 0.5), int(588 * 600 / 840 + 0.5), int(672 * 400 / 840 + 0.5)],
         [int(600 * 600 / 840 + 0.5), int(700 * 400 / 840 + 0.5), int(800 * 600 / 840 + 0.5), int(830 * 400 / 840 + 0.5)]]
TOKEN = "test-token-0123456789"
SDK2 = compat.SDK_MAJOR >= 2

if SDK2:
    from mcp.shared.exceptions import MCPError as McpErrorType
else:
    from mcp.shared.exceptions import McpError as McpErrorType  # type: ignore[no-redef]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# --- scripted reasoners ----------------------------------------------------------------------------


class GatedReasoner(Reasoner):
    """Answers ``answer`` once ``release`` is set; until then it polls the call's cancel token like the
    transformers reasoner does per token. ``started`` is set when a call begins."""

    name = "gated"

    def __init__(self, answer: str = ANSWER) -> None:
        self.answer = answer
        self.started = threading.Event()
        self.release = threading.Event()
        self.calls = 0
        self.cancelled = 0
        self.model_id = "gated"

    def generate(self, requests: Sequence[Any]) -> list[ReasonerOutput]:
        self.calls += 1
        self.started.set()
        try:
            while not self.release.wait(0.01):
                check_cancelled()
        except BaseException:
            self.cancelled += 1
            raise
        return [ReasonerOutput(self.answer, finish_reason="stop") for _ in requests]


@pytest.fixture(scope="session")
def tiny_segmenter(tiny_models):
    """The tiny random SAM2 of ``tiny_models``, loaded once through the public backend path."""
    from segzero_tool.pipeline import SegZeroPipeline

    return SegZeroPipeline.from_pretrained(ScriptedReasoner(ANSWER), str(tiny_models["segmenter"]),
                                           device="cpu").segmenter


@pytest.fixture
def image_root(tmp_path: Path) -> Path:
    """An allowed root holding ``coffee.png``, a corrupt ``broken.png`` and a symlink to outside."""
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(COFFEE, root / "coffee.png")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    outside = tmp_path / "secret.png"
    shutil.copy(COFFEE, outside)
    (root / "link.png").symlink_to(outside)
    return root


@pytest.fixture
def make_server(image_root):
    """``make_server(reasoner=None, segmenter=None, **settings) -> server`` (root: ``image_root``)."""
    from segzero_tool.mcp_server import ServerSettings, create_server
    from segzero_tool.pipeline import SegZeroPipeline

    def make(reasoner: Reasoner | None = None, segmenter: Any = None, **kw: Any) -> Any:
        kw.setdefault("roots", (image_root,))
        settings = ServerSettings(**kw)
        pipe = SegZeroPipeline.from_pretrained(reasoner or ScriptedReasoner(ANSWER), segmenter or BoxSegmenter(),
                                               device="cpu")
        return create_server(settings, pipeline=pipe)

    return make


# --- one client interface ---------------------------------------------------------------------------


class Client:
    """A connected MCP client; results as wire-shaped dicts."""

    def __init__(self, session: Any) -> None:
        self.session = session

    async def list_tools(self) -> list[dict[str, Any]]:
        return [compat.dump(t) for t in (await self.session.list_tools()).tools]

    async def list_resource_templates(self) -> list[dict[str, Any]]:
        return [compat.dump(t) for t in (await self.session.list_resource_templates()).resource_templates] if SDK2 \
            else [compat.dump(t) for t in (await self.session.list_resource_templates()).resourceTemplates]

    async def call(self, args: dict[str, Any], *, progress: Any = None, name: str = "segment_by_reasoning") -> dict:
        return compat.dump(await self.session.call_tool(name, args, progress_callback=progress))

    async def read(self, uri: str) -> list[dict[str, Any]]:
        if not SDK2:
            from pydantic import AnyUrl

            return [compat.dump(c) for c in (await self.session.read_resource(AnyUrl(uri))).contents]
        return [compat.dump(c) for c in (await self.session.read_resource(uri)).contents]

    async def call_and_cancel(self, args: dict[str, Any], started: threading.Event, timeout: float = 20) -> Exception:
        """Start a call, cancel it once ``started`` is set; return what the call raised."""
        import asyncio

        if SDK2:
            task = asyncio.ensure_future(self.call(args))
            await _wait_event(started, timeout)
            task.cancel()
            try:
                await task
            except asyncio.CancelledError as exc:
                return exc
            raise AssertionError("the cancelled call returned a result")
        from mcp import types

        request_id = self.session._request_id  # the id the next request gets (1.x ClientSession)
        task = asyncio.ensure_future(self.call(args))
        await _wait_event(started, timeout)
        await self.session.send_notification(types.ClientNotification(types.CancelledNotification(
            method="notifications/cancelled",
            params=types.CancelledNotificationParams(requestId=request_id, reason="test cancels"))))
        with anyio.fail_after(timeout):
            try:
                await task
            except McpErrorType as exc:
                return exc
        raise AssertionError("the cancelled call returned a result")


async def _wait_event(event: threading.Event, timeout: float) -> None:
    with anyio.fail_after(timeout):
        while not event.is_set():
            await anyio.sleep(0.01)


@contextlib.asynccontextmanager
async def connect_memory(server: Any) -> AsyncIterator[Client]:
    if SDK2:
        from mcp import Client as SdkClient

        async with SdkClient(server) as client:
            yield Client(client)
    else:
        from mcp.shared.memory import create_connected_server_and_client_session

        async with create_connected_server_and_client_session(server) as session:
            yield Client(session)


@contextlib.asynccontextmanager
async def connect_stdio(args: list[str], env: dict[str, str], cwd: Path, errlog: Any) -> AsyncIterator[Client]:
    from mcp import StdioServerParameters

    params = StdioServerParameters(command=sys.executable, args=args, env=env, cwd=str(cwd))
    if SDK2:
        from mcp import Client as SdkClient
        from mcp.client.stdio import stdio_client

        async with SdkClient(stdio_client(params, errlog=errlog)) as client:
            yield Client(client)
    else:
        from mcp import ClientSession
        from mcp.client.stdio import stdio_client

        async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            yield Client(session)


@contextlib.asynccontextmanager
async def connect_http(url: str, headers: dict[str, str] | None = None) -> AsyncIterator[Client]:
    if SDK2:
        import httpx2
        from mcp import Client as SdkClient
        from mcp.client.streamable_http import streamable_http_client

        async with httpx2.AsyncClient(headers=headers or {}, timeout=httpx2.Timeout(60, read=120)) as http, \
                SdkClient(streamable_http_client(url, http_client=http)) as client:
            yield Client(client)
    else:
        from mcp import ClientSession
        from mcp.client.streamable_http import streamable_http_client
        from mcp.shared._httpx_utils import create_mcp_http_client

        async with create_mcp_http_client(headers=headers or {}) as http, \
                streamable_http_client(url, http_client=http) as (read, write, _), \
                ClientSession(read, write) as session:
            await session.initialize()
            yield Client(session)


# --- subprocesses ---------------------------------------------------------------------------------


def script_folder(parent: Path, answer: str = ANSWER) -> Path:
    folder = parent / "scripted-reasoner"
    folder.mkdir(exist_ok=True)
    (folder / "script.json").write_text(json.dumps([answer]))
    return folder


def server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a client configuration would give, plus ``tests/`` for the scripted backend."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("SEGZERO", "FASTMCP"))}
    path = os.pathsep.join([str(REPO), str(REPO / "tests"), *filter(None, [os.environ.get("PYTHONPATH")])])
    return {**keep, "PYTHONPATH": path, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **(extra or {})}


def model_args(parent: Path, tiny_models: dict[str, Path]) -> list[str]:
    return ["--reasoner", str(script_folder(parent)), "--reasoner-backend", "scripted:ScriptedReasoner",
            "--segmenter", str(tiny_models["segmenter"]), "--device", "cpu"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HttpServer:
    """A ``segzero-mcp --http`` subprocess on a loopback port."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.log = log
        self._log_fh = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "segzero_tool.mcp_server", "--http", "--port", str(self.port), *args],
            env=env, cwd=str(cwd), stdin=subprocess.DEVNULL, stdout=self._log_fh, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return
            time.sleep(0.1)
        raise RuntimeError(f"server not ready after {timeout} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log_fh.close()


@pytest.fixture(scope="session")
def kit():
    """The helpers above, for the test modules (they cannot import this conftest by name)."""
    from types import SimpleNamespace

    return SimpleNamespace(
        REPO=REPO, COFFEE=COFFEE, ANSWER=ANSWER, BOXES=BOXES, TOKEN=TOKEN, SDK2=SDK2, McpError=McpErrorType,
        GatedReasoner=GatedReasoner, ScriptedReasoner=ScriptedReasoner, BoxSegmenter=BoxSegmenter,
        connect_memory=connect_memory, connect_stdio=connect_stdio, connect_http=connect_http,
        script_folder=script_folder, server_env=server_env, model_args=model_args, HttpServer=HttpServer,
        wait_event=_wait_event,
    )
