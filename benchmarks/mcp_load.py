"""Calls per second and latency of the MCP server itself under concurrent load.

Starts a real ``segzero-mcp`` subprocess (``python -m segzero_tool.mcp_server``) with the scripted
reasoner of ``tests/scripted.py`` (an instant answer with 2 objects, the one the MCP tests use) and a
tiny random SAM2 (``segzero_tool.testing.tiny_sam2``), so the figures measure our server (MCP
transport, admission gate, worker threads, image loading, encoding, result store) plus the tiny
SAM2's mask decoder, not a real model. Over stdio (one client session) and over streamable HTTP on
a free 127.0.0.1 port (one client session, and one session per concurrent caller), it runs
``--calls`` calls of ``segment_by_reasoning`` (``mask_encoding="rle"``, ``include_overlay=false``)
at each ``--concurrency`` level, plus one row with ``include_overlay=true``, and records the
client-measured latency of every call, the throughput (calls / wall time), busy and other errors,
the medians of the server's own ``timings_ms`` (the pipeline stages) and the CPU time the server and
the client processes spent per call. ``in-process`` rows call ``SegZeroService.segment`` (what the
tool awaits) directly, without MCP, as a baseline.

First it measures the start-up as a client meets it: the ``segzero-mcp`` console script spawned over
stdio and spoken to in raw JSON-RPC, the time from the spawn to the ``initialize`` and ``tools/list``
answers with tiny random models (transformers backends, loaded in the background; then until
``segzero://status`` says ``ready``) and with a reasoner plugin that takes ``--slow-load-s`` (60) seconds
to load (``tests/slow_plugins.py``; killed after ``tools/list``), next to the bare cost of
``python -c "import segzero_tool.mcp_server.server"`` and ``python -c pass``; ``--startup-repeat`` (5)
runs per case after one warm-up run, median and max.

Usage::

    python benchmarks/mcp_load.py [--calls 200] [--concurrency 1,4,16] [--transports stdio,http,in-process]
                                  [--max-concurrency 4] [--max-queue 64] [--overlay-concurrency 4]
                                  [--startup-repeat 5] [--slow-load-s 60]
    python benchmarks/mcp_load.py --transports none          # start-up only

Only loopback traffic; nothing is downloaded. Needs the ``mcp`` extra and the repository's
``tests/`` folder (for the scripted reasoner backend). Writes ``results/mcp_load.{json,md}``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402

from segzero_tool.mcp_server.compat import SDK_MAJOR, SDK_VERSION  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
COFFEE = REPO / "examples" / "coffee.png"  # 600 x 400
#: The scripted reasoner's answer, as in tests/mcp/conftest.py: 2 objects.
ANSWER = ('<think>The cup holds coffee.</think><answer>[{"bbox_2d": [168,126,588,672], "point_2d": [378,420]}, '
          '{"bbox_2d": [600,700,800,830], "point_2d": [700,760]}]</answer>')
QUERY = "What can I have if I'm thirsty?"
TOOL = "segment_by_reasoning"

CallFn = Callable[[dict[str, Any], float], Awaitable[Any]]


# --- server subprocesses and client sessions --------------------------------------------------------


def server_env() -> dict[str, str]:
    """The caller's environment without SEGZERO_* / FASTMCP_* settings, plus ``tests/`` on the path."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("SEGZERO", "FASTMCP"))}
    path = os.pathsep.join([str(REPO), str(REPO / "tests"), *filter(None, [os.environ.get("PYTHONPATH")])])
    return {**keep, "PYTHONPATH": path, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def server_args(work: Path, args: argparse.Namespace) -> list[str]:
    return ["--reasoner", str(work / "scripted-reasoner"), "--reasoner-backend", "scripted:ScriptedReasoner",
            "--segmenter", str(work / "segmenter"), "--device", "cpu", "--allow-root", str(work / "root"),
            "--max-concurrency", str(args.max_concurrency), "--max-queue", str(args.max_queue),
            "--log-level", "WARNING"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sdk1_timeout(seconds: float) -> Any:
    return seconds if SDK_MAJOR >= 2 else timedelta(seconds=seconds)


def _call_fn(session: Any) -> CallFn:
    async def call(arguments: dict[str, Any], timeout: float) -> Any:
        return await session.call_tool(TOOL, arguments, read_timeout_seconds=_sdk1_timeout(timeout))

    return call


@contextlib.asynccontextmanager
async def connect_stdio(cmd: list[str], cwd: Path, errlog: Any, timeout: float) -> AsyncIterator[CallFn]:
    """One session with a server subprocess that ``stdio_client`` starts (and stops on exit)."""
    from mcp import StdioServerParameters
    from mcp.client.stdio import stdio_client

    params = StdioServerParameters(command=sys.executable, args=cmd, env=server_env(), cwd=str(cwd))
    if SDK_MAJOR >= 2:
        from mcp import Client

        async with Client(stdio_client(params, errlog=errlog), read_timeout_seconds=timeout) as client:
            yield _call_fn(client)
    else:
        from mcp import ClientSession

        async with stdio_client(params, errlog=errlog) as (read, write), \
                ClientSession(read, write, read_timeout_seconds=timedelta(seconds=timeout)) as session:
            await session.initialize()
            yield _call_fn(session)


@contextlib.asynccontextmanager
async def connect_http(url: str, timeout: float) -> AsyncIterator[CallFn]:
    """One streamable-HTTP session with its own HTTP connection pool."""
    from mcp.client.streamable_http import streamable_http_client

    if SDK_MAJOR >= 2:
        import httpx2
        from mcp import Client

        async with httpx2.AsyncClient(timeout=httpx2.Timeout(30, read=timeout)) as http, \
                Client(streamable_http_client(url, http_client=http), read_timeout_seconds=timeout) as client:
            yield _call_fn(client)
    else:
        import httpx
        from mcp import ClientSession
        from mcp.shared._httpx_utils import create_mcp_http_client

        async with create_mcp_http_client(timeout=httpx.Timeout(30, read=timeout)) as http, \
                streamable_http_client(url, http_client=http) as (read, write, _), \
                ClientSession(read, write, read_timeout_seconds=timedelta(seconds=timeout)) as session:
            await session.initialize()
            yield _call_fn(session)


class HttpServer:
    """A ``segzero-mcp --http`` subprocess on a free loopback port; :meth:`stop` always ends it."""

    def __init__(self, cmd: list[str], cwd: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.log = log
        self._log_fh = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, *cmd, "--http", "--port", str(self.port)], env=server_env(),
                                     cwd=str(cwd), stdin=subprocess.DEVNULL, stdout=self._log_fh,
                                     stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float) -> None:
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


# --- one measured phase ---------------------------------------------------------------------------------


def _get(obj: Any, *names: str) -> Any:
    for name in names:  # mcp 2.x wire types use snake_case attributes, 1.x camelCase
        if hasattr(obj, name):
            return getattr(obj, name)
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process ``pid`` (Linux ``/proc``; ``None`` elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def child_pid() -> int | None:
    """The one child process of this process (the stdio server that ``stdio_client`` started)."""
    me = os.getpid()
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == me:
                found.append(int(stat.parent.name))
    return found[0] if len(found) == 1 else None


def _pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


async def run_phase(calls: list[CallFn], image: str, *, concurrency: int, n_calls: int, overlay: bool,
                    timeout: float, server_pid: int | None = None) -> dict[str, Any]:
    """``n_calls`` calls by ``concurrency`` workers; worker ``i`` uses session ``calls[i % len(calls)]``."""
    arguments = {"image": image, "query": QUERY, "mask_encoding": "rle", "include_overlay": overlay}
    latencies: list[float] = []
    timings: list[dict[str, float]] = []
    busy = errors = wrong = 0
    error_messages: list[str] = []
    overlay_bytes: list[int] = []
    next_call = 0

    async def worker(i: int) -> None:
        nonlocal next_call, busy, errors, wrong
        call = calls[i % len(calls)]
        while next_call < n_calls:
            next_call += 1
            t0 = time.perf_counter()
            try:
                with anyio.fail_after(timeout):
                    res = await call(arguments, timeout)
            except Exception as exc:  # a timeout, a dropped connection, an MCP error
                errors += 1
                error_messages.append(f"{type(exc).__name__}: {exc}"[:300])
                continue
            ms = (time.perf_counter() - t0) * 1000.0
            content = _get(res, "content") or []
            if _get(res, "is_error", "isError"):
                text = " ".join(str(_get(c, "text") or "") for c in content)
                if text.startswith("busy") or "busy:" in text:
                    busy += 1
                else:
                    errors += 1
                error_messages.append(text[:300])
                continue
            out = _get(res, "structured_content", "structuredContent") or {}
            if len(out.get("objects", [])) != 2:
                wrong += 1
            latencies.append(ms)
            timings.append(out.get("timings_ms", {}))
            if overlay:
                overlay_bytes.extend(len(_get(c, "data") or "") for c in content if _get(c, "type") == "image")

    server_cpu0 = cpu_seconds(server_pid) if server_pid else None
    client_cpu0 = time.process_time()
    t0 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for i in range(concurrency):
            tg.start_soon(worker, i)
    wall = time.perf_counter() - t0
    client_cpu = time.process_time() - client_cpu0
    server_cpu1 = cpu_seconds(server_pid) if server_pid else None
    server_cpu = None if server_cpu0 is None or server_cpu1 is None else server_cpu1 - server_cpu0
    keys = sorted({k for t in timings for k in t})
    server_ms = {k: statistics.median(t[k] for t in timings if k in t) for k in keys}
    return {
        "concurrency": concurrency, "sessions": len(calls), "overlay": overlay, "calls": n_calls,
        "ok": len(latencies), "busy": busy, "errors": errors, "wrong_object_count": wrong,
        "error_messages": sorted(set(error_messages))[:10],
        "wall_s": wall, "calls_per_s": n_calls / wall,
        "latency_ms": {"p50": _pct(latencies, 50), "p95": _pct(latencies, 95), "max": max(latencies, default=None),
                       "min": min(latencies, default=None), "mean": statistics.fmean(latencies) if latencies else None},
        "server_timings_median_ms": server_ms,
        "overlay_base64_chars_median": statistics.median(overlay_bytes) if overlay_bytes else None,
        "client_cpu_ms_per_call": 1000.0 * client_cpu / n_calls,
        "server_cpu_ms_per_call": None if server_cpu is None else 1000.0 * server_cpu / n_calls,
    }


def _plan(args: argparse.Namespace) -> list[tuple[int, bool]]:
    rows = [(c, False) for c in args.concurrency]
    if args.overlay_concurrency:
        rows.append((args.overlay_concurrency, True))
    return rows


def _report(transport: str, row: dict[str, Any]) -> None:
    lat = row["latency_ms"]
    print(f"  {transport:<14} c={row['concurrency']:<3} overlay={str(row['overlay']):<5} "
          f"{row['calls_per_s']:6.1f} calls/s  p50 {lat['p50'] or float('nan'):7.1f}  "
          f"p95 {lat['p95'] or float('nan'):7.1f}  max {lat['max'] or float('nan'):7.1f} ms  "
          f"busy {row['busy']} errors {row['errors']}  server total {row['server_timings_median_ms'].get('total', 0):.1f} ms",
          flush=True)


async def _measure(transport: str, sessions: list[CallFn], image: str, args: argparse.Namespace,
                   plan: list[tuple[int, bool]], server_pid: int | None = None) -> list[dict[str, Any]]:
    warm = await run_phase(sessions, image, concurrency=min(4, args.max_concurrency), n_calls=args.warmup,
                           overlay=True, timeout=args.call_timeout)
    if warm["ok"] == 0:
        raise RuntimeError(f"{transport}: every warm-up call failed: {warm['error_messages']}")
    rows = []
    for concurrency, overlay in plan:
        row = await run_phase(sessions, image, concurrency=concurrency, n_calls=args.calls, overlay=overlay,
                              timeout=args.call_timeout, server_pid=server_pid)
        row["transport"] = transport
        _report(transport, row)
        rows.append(row)
    return rows


async def bench_stdio(work: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    cmd = ["-m", "segzero_tool.mcp_server", *server_args(work, args)]
    image = str(work / "root" / "coffee.png")
    with open(work / "stdio-server.log", "w") as errlog:
        async with connect_stdio(cmd, work / "root", errlog, args.call_timeout) as call:
            return await _measure("stdio", [call], image, args, _plan(args), server_pid=child_pid())


async def bench_http(work: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    server = HttpServer(["-m", "segzero_tool.mcp_server", *server_args(work, args)], work / "root",
                        work / "http-server.log")
    image = str(work / "root" / "coffee.png")
    try:
        server.wait_ready(args.start_timeout)
        async with connect_http(server.url, args.call_timeout) as call:
            rows = await _measure("http", [call], image, args, _plan(args), server_pid=server.proc.pid)
        multi = [c for c in args.concurrency if c > 1] if args.http_sessions else []
        for concurrency in multi:  # one independent client session (and HTTP connection pool) per caller
            async with contextlib.AsyncExitStack() as stack:
                calls = [await stack.enter_async_context(connect_http(server.url, args.call_timeout))
                         for _ in range(concurrency)]
                rows += await _measure(f"http x{concurrency} sessions", calls, image, args, [(concurrency, False)],
                                       server_pid=server.proc.pid)
        return rows
    finally:
        server.stop()


async def bench_in_process(work: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The same work without MCP: ``SegZeroService.segment`` (what the tool function awaits) called
    directly in this process, with settings parsed from the same flags the subprocesses get."""
    from types import SimpleNamespace

    sys.path.insert(0, str(REPO / "tests"))  # the scripted reasoner backend
    from segzero_tool.errors import SegZeroError
    from segzero_tool.mcp_server import ServerSettings
    from segzero_tool.mcp_server.service import SegZeroService

    svc = SegZeroService(ServerSettings.from_args(server_args(work, args), environ={}))
    await anyio.to_thread.run_sync(svc.load)

    async def call(arguments: dict[str, Any], timeout: float) -> Any:
        try:
            done = await svc.segment(arguments["image"], arguments["query"], mask_encoding=arguments["mask_encoding"],
                                     include_overlay=arguments["include_overlay"])
        except SegZeroError as exc:
            return SimpleNamespace(isError=True, content=[SimpleNamespace(type="text", text=str(exc))])
        content = [SimpleNamespace(type="image", data="x" * (len(done.overlay[0]) * 4 // 3))] if done.overlay else []
        return SimpleNamespace(isError=False, content=content, structuredContent=done.output.model_dump(mode="json"))

    levels = [c for c in args.concurrency if c <= args.max_concurrency]
    try:
        return await _measure("in-process (no MCP)", [call], str(work / "root" / "coffee.png"), args,
                              [(c, False) for c in levels])
    finally:
        svc.close()


# --- start-up: spawn -> first answers ---------------------------------------------------------------

#: The protocol version the raw client asks for in ``initialize``.
PROTOCOL = "2025-06-18"


def server_command() -> list[str]:
    """``segzero-mcp`` as a client configuration starts it: the console script of this environment."""
    script = Path(sys.executable).with_name("segzero-mcp")
    if script.exists():
        return [str(script)]
    found = shutil.which("segzero-mcp")
    return [found] if found else [sys.executable, "-m", "segzero_tool.mcp_server"]


class RawStdio:
    """A ``segzero-mcp`` stdio subprocess and a minimal JSON-RPC client (one JSON message per line).

    A reader thread stamps every message with ``time.perf_counter()`` when it arrives, so the times
    do not include this client's own scheduling."""

    def __init__(self, cmd: list[str], cwd: Path, stderr: Path) -> None:
        self._err = open(stderr, "ab")  # noqa: SIM115 - closed in close()
        self.spawned = time.perf_counter()
        self.proc = subprocess.Popen(cmd, env=server_env(), cwd=str(cwd), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._err)
        self.messages: queue.Queue[tuple[float, dict[str, Any]]] = queue.Queue()
        self._next = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            now = time.perf_counter()
            with contextlib.suppress(ValueError):
                self.messages.put((now, json.loads(raw)))

    def send(self, method: str, params: dict[str, Any] | None = None, *, notify: bool = False) -> int | None:
        msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method, **({"params": params} if params is not None else {})}
        rid = None
        if not notify:
            self._next += 1
            rid = msg["id"] = self._next
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(msg) + "\n").encode())
        self.proc.stdin.flush()
        return rid

    def wait(self, rid: int, timeout: float) -> tuple[float, dict[str, Any]]:
        """``(arrival time, message)`` of the answer to request ``rid`` (notifications are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None and self.messages.empty():
                raise RuntimeError(f"no answer to request {rid} within {timeout} s (server exit status "
                                   f"{self.proc.poll()})")
            try:
                at, msg = self.messages.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if msg.get("id") == rid and "method" not in msg:
                return at, msg

    def request(self, method: str, params: dict[str, Any] | None = None, timeout: float = 60) -> tuple[float, dict]:
        rid = self.send(method, params)
        assert rid is not None
        return self.wait(rid, timeout)

    def state(self) -> str:
        _, answer = self.request("resources/read", {"uri": "segzero://status"}, 30)
        return json.loads(answer["result"]["contents"][0]["text"])["state"]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._err.close()


def startup_once(cmd: list[str], cwd: Path, log: Path, *, until_ready: bool, timeout: float) -> dict[str, Any]:
    """Spawn the server; write ``initialize`` at once (as a client does: the pipe holds it until the
    server reads), then ``tools/list``; optionally poll ``segzero://status`` until the models are ready.
    The server is killed at the end (never waiting for a slow load)."""
    srv = RawStdio(cmd, cwd, log)
    try:
        rid = srv.send("initialize", {"protocolVersion": PROTOCOL, "capabilities": {},
                                      "clientInfo": {"name": "segzero-benchmark", "version": "0"}})
        assert rid is not None
        t_init, init = srv.wait(rid, timeout)
        if "result" not in init:
            raise RuntimeError(f"initialize failed: {init}")
        srv.send("notifications/initialized", notify=True)
        t_send = time.perf_counter()
        t_tools, tools = srv.request("tools/list", {}, timeout)
        names = [t["name"] for t in tools.get("result", {}).get("tools", [])]
        if names != [TOOL]:
            raise RuntimeError(f"tools/list answered {tools}")
        row: dict[str, Any] = {"initialize_s": t_init - srv.spawned, "tools_list_s": t_tools - srv.spawned,
                               "tools_list_round_trip_ms": (t_tools - t_send) * 1000.0, "state_at_tools_list": srv.state()}
        if until_ready:
            state = row["state_at_tools_list"]
            while state == "loading" and time.perf_counter() - srv.spawned < timeout:
                time.sleep(0.05)
                state = srv.state()
            if state != "ready":
                raise RuntimeError(f"models {state} after {time.perf_counter() - srv.spawned:.0f} s; see {log}")
            row["ready_s"] = time.perf_counter() - srv.spawned
        return row
    finally:
        srv.close()


def command_once(cmd: list[str], cwd: Path, timeout: float) -> dict[str, Any]:
    """Wall time of a command that exits by itself (the bare interpreter / import cost)."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=server_env(), cwd=str(cwd), stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=timeout)
    exit_s = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} exited with {proc.returncode}: {proc.stderr.decode(errors='replace')[-2000:]}")
    row = {"exit_s": exit_s}
    with contextlib.suppress(ValueError, IndexError):  # the command may print its own import time (seconds)
        row["import_s"] = float(proc.stdout.decode().strip().splitlines()[-1])
    return row


def _summary(values: list[float]) -> dict[str, float] | None:
    return {"median": statistics.median(values), "max": max(values), "min": min(values)} if values else None


def bench_startup(work: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Spawn -> ``initialize`` and -> ``tools/list`` answers: tiny random models, a plugin that loads for
    ``--slow-load-s`` seconds, and the bare interpreter / import cost, ``--startup-repeat`` times each
    after one discarded warm-up run (its figures are kept as ``first_run``)."""
    sys.path.insert(0, str(REPO / "tests"))
    from slow_plugins import slow_folder

    from segzero_tool.testing.tiny_qwen import build_tiny_qwen2_5_vl

    tiny = work / "tiny"
    if not (tiny / "reasoner").exists():
        build_tiny_qwen2_5_vl(tiny / "reasoner", seed=0)
    slow = slow_folder(work, ANSWER, load_s=args.slow_load_s)
    root = work / "root"
    cmd = server_command()
    snippet = "import segzero_tool.mcp_server.server"
    timed = f"import time; t = time.perf_counter(); {snippet}; print(time.perf_counter() - t)"
    cases: list[tuple[str, str, Callable[[], dict[str, Any]]]] = [
        ("tiny", "`segzero-mcp` with tiny random models (transformers Qwen2.5-VL + SAM2, loaded in the background)",
         lambda: startup_once([*cmd, "--reasoner", str(tiny / "reasoner"), "--segmenter", str(work / "segmenter"),
                               "--device", "cpu", "--allow-root", str(root)], root, work / "startup-tiny.log",
                              until_ready=True, timeout=args.start_timeout)),
        ("slow", f"`segzero-mcp` with a plugin that loads for {args.slow_load_s:g} s (SlowLoadingReasoner; "
                 "killed after tools/list)",
         lambda: startup_once([*cmd, "--reasoner", str(slow), "--reasoner-backend", "slow_plugins:SlowLoadingReasoner",
                               "--segmenter-backend", "scripted:BoxSegmenter", "--device", "cpu", "--allow-root",
                               str(root)], root, work / "startup-slow.log", until_ready=False,
                              timeout=args.start_timeout)),
        ("import", f"`python -c \"{snippet}\"` (Python + MCP SDK + server modules; exits)",
         lambda: command_once([sys.executable, "-c", timed], root, args.start_timeout)),
        ("python", "`python -c pass` (the interpreter alone)",
         lambda: command_once([sys.executable, "-c", "pass"], root, args.start_timeout)),
    ]
    # one discarded warm-up run per case, then the cases in turn (so that a change in the machine's load
    # during the runs affects every case alike)
    load = _loadavg()
    firsts = {key: once() for key, _, once in cases}
    runs: dict[str, list[dict[str, Any]]] = {key: [] for key, _, _ in cases}
    for _ in range(args.startup_repeat):
        for key, _, once in cases:
            runs[key].append(once())
    rows = []
    for key, label, _ in cases:
        done = runs[key]
        row: dict[str, Any] = {"case": key, "label": label, "repeat": len(done), "first_run": firsts[key], "runs": done,
                               "loadavg_before": load, "loadavg_after": _loadavg()}
        for field in ("initialize_s", "tools_list_s", "tools_list_round_trip_ms", "ready_s", "exit_s", "import_s"):
            if field in done[0]:
                row[field] = _summary([r[field] for r in done])
        if "state_at_tools_list" in done[0]:
            row["state_at_tools_list"] = sorted({r["state_at_tools_list"] for r in done})
        print(f"  start-up {key:<7} " + "  ".join(
            f"{f} {row[f]['median']:.3f}/{row[f]['max']:.3f}" for f in ("initialize_s", "tools_list_s", "ready_s",
                                                                         "exit_s", "import_s") if f in row), flush=True)
        rows.append(row)
    return rows


def _loadavg() -> list[float] | None:
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def _fmt_load(load: list[float] | None) -> str:
    return "-" if not load else f"{load[0]:.2f}"


def _startup_markdown(rows: list[dict[str, Any]]) -> str:
    def cell(row: dict[str, Any], field: str, scale: float = 1.0, fmt: str = "{:.2f}") -> str:
        v = row.get(field)
        return "-" if v is None else f"{fmt.format(v['median'] * scale)} / {fmt.format(v['max'] * scale)}"

    lines = ["| case | spawn -> `initialize` answer, s (median / max) | spawn -> `tools/list` answer, s | "
             "`tools/list` round trip, ms | models at `tools/list` | spawn -> models ready, s | process exit, s "
             "(of which the import, s) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['label']} | {cell(r, 'initialize_s')} | {cell(r, 'tools_list_s')} | "
                     f"{cell(r, 'tools_list_round_trip_ms', fmt='{:.1f}')} | {', '.join(r.get('state_at_tools_list', [])) or '-'} | "
                     f"{cell(r, 'ready_s')} | {cell(r, 'exit_s')}"
                     + (f" ({cell(r, 'import_s')})" if r.get("import_s") else "") + " |")
    n = rows[0]["repeat"] if rows else 0
    return ("## Start-up: spawn -> first answers (stdio)\n\n"
            "The `segzero-mcp` console script of the environment is spawned as an MCP client configuration starts it "
            "(settings by flags only, `tests/` on `PYTHONPATH` for the plugins); the raw JSON-RPC client writes "
            "`initialize` at once (the pipe holds it until the server reads), then `notifications/initialized` and "
            "`tools/list`; times are from just before the spawn to the arrival of each answer. `models at tools/list` "
            "is what `segzero://status` said right after. The slow-plugin server is killed after `tools/list` (its "
            "load is never waited for); the tiny-model server is polled until `ready`. "
            f"{n} runs per case, the cases in turn, after one discarded warm-up run each (kept in the JSON as "
            f"`first_run`); load averages (1 min) {_fmt_load(rows[0].get('loadavg_before'))} before and "
            f"{_fmt_load(rows[0].get('loadavg_after'))} after these runs.\n\n"
            + "\n".join(lines) + "\n")


def _markdown(rows: list[dict[str, Any]], args: argparse.Namespace, total_s: float,
              startup: list[dict[str, Any]] | None = None) -> str:
    head = ["transport", "concurrency", "overlay", "calls", "calls/s", "p50 ms", "p95 ms", "max ms", "busy/errors",
            "server median total ms"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lat = r["latency_ms"]
        f = (lambda v: "-" if v is None else f"{v:.1f}")  # noqa: E731
        lines.append(f"| {r['transport']} | {r['concurrency']} | {'yes' if r['overlay'] else 'no'} | {r['calls']} | "
                     f"{r['calls_per_s']:.1f} | {f(lat['p50'])} | {f(lat['p95'])} | {f(lat['max'])} | "
                     f"{r['busy']}/{r['errors']} | {f(r['server_timings_median_ms'].get('total'))} |")
    keys = [k for k in ("load", "resize", "reason", "parse", "segment", "total")
            if any(k in r["server_timings_median_ms"] for r in rows)]
    stage = ["| transport | concurrency | overlay | " + " | ".join(keys)
             + " | client p50 - server total | server CPU ms/call | client CPU ms/call |",
             "|" + "---|" * (len(keys) + 6)]
    cpu = (lambda v: "-" if v is None else f"{v:.0f}")  # noqa: E731
    for r in rows:
        t = r["server_timings_median_ms"]
        gap = None if r["latency_ms"]["p50"] is None or "total" not in t else r["latency_ms"]["p50"] - t["total"]
        stage.append(f"| {r['transport']} | {r['concurrency']} | {'yes' if r['overlay'] else 'no'} | "
                     + " | ".join(f"{t[k]:.1f}" if k in t else "-" for k in keys)
                     + f" | {'-' if gap is None else f'{gap:.1f}'} | {cpu(r['server_cpu_ms_per_call'])} | "
                     f"{cpu(r['client_cpu_ms_per_call'])} |")
    tail = "\n" + _startup_markdown(startup) if startup else ""
    if not rows:
        return f"# MCP server start-up (CPU; mcp {SDK_VERSION})\n\nWhole run {total_s:.0f} s.\n{tail}"
    return (f"# MCP server under load (scripted reasoner, tiny random SAM2, CPU; mcp {SDK_VERSION})\n\n"
            f"`--max-concurrency {args.max_concurrency} --max-queue {args.max_queue}`, {args.calls} calls per row "
            f"after {args.warmup} warm-up calls, `mask_encoding=\"rle\"`, image 600x400 `coffee.png` by path, 2 "
            f"objects per call. Latency measured by the client (send to parsed result); calls/s = calls / wall time. "
            f"Whole run {total_s:.0f} s.\n\n" + "\n".join(lines)
            + "\n\nServer-side `timings_ms` (pipeline stages, medians, ms). Their `total` is resize + reason + parse + "
              "segment only: reading and decoding the image file, the overlay picture and its PNG (made on every call "
              "for the overlay resource), RLE, the result store, the MCP layers, queueing behind the server's "
              "`--max-concurrency` slots and the client's own work all fall in the last column. The `in-process` rows "
              "await `SegZeroService.segment` directly (no MCP, no subprocess; its CPU is the client column). CPU ms/call "
              "= the process's user + system CPU time during the row / calls (all threads; the machine's cores are "
              "shared by client and server).\n\n" + "\n".join(stage) + "\n" + tail)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=200, help="calls per row (default 200)")
    ap.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",") if x.strip()], default=[1, 4, 16],
                    help="client concurrency levels (default 1,4,16)")
    ap.add_argument("--overlay-concurrency", type=int, default=4,
                    help="concurrency of the include_overlay=true row (0: no such row)")
    ap.add_argument("--transports", default="stdio,http,in-process",
                    help="any of stdio, http, in-process (SegZeroService.segment without MCP, at the concurrency "
                         "levels up to --max-concurrency); default all three")
    ap.add_argument("--http-sessions", action=argparse.BooleanOptionalAction, default=True,
                    help="also run HTTP with one client session per concurrent caller (levels > 1)")
    ap.add_argument("--max-concurrency", type=int, default=4, help="the server's --max-concurrency (default 4)")
    ap.add_argument("--max-queue", type=int, default=64, help="the server's --max-queue (default 64)")
    ap.add_argument("--warmup", type=int, default=8, help="warm-up calls per connection set (default 8)")
    ap.add_argument("--call-timeout", type=float, default=60.0, help="seconds per call (default 60)")
    ap.add_argument("--start-timeout", type=float, default=120.0, help="seconds for a server to start (default 120)")
    ap.add_argument("--startup-repeat", type=int, default=5,
                    help="start-up runs per case (spawn -> initialize / tools/list; default 5; 0: none)")
    ap.add_argument("--slow-load-s", type=float, default=60.0,
                    help="load time of the slow plugin in the start-up runs (default 60 s; never waited for)")
    ap.add_argument("--no-write", action="store_true", help="print only; do not write results/")
    args = ap.parse_args()
    transports = [t.strip() for t in args.transports.split(",") if t.strip() and t.strip() != "none"]
    benches = {"stdio": bench_stdio, "http": bench_http, "in-process": bench_in_process}
    if not set(transports) <= set(benches) or not transports and args.startup_repeat < 1:
        ap.error("--transports takes stdio, http and/or in-process (or none, with --startup-repeat >= 1)")

    t_start = time.perf_counter()
    load_before = _loadavg()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="segzero-mcp-load-") as tmp:
        work = Path(tmp)
        (work / "root").mkdir()
        shutil.copy(COFFEE, work / "root" / "coffee.png")
        (work / "scripted-reasoner").mkdir()
        (work / "scripted-reasoner" / "script.json").write_text(json.dumps([ANSWER]))
        from segzero_tool.testing.tiny_sam2 import build_tiny_sam2

        build_tiny_sam2(work / "segmenter", seed=0)
        print(f"mcp {SDK_VERSION}; server --max-concurrency {args.max_concurrency} --max-queue {args.max_queue}; "
              f"{args.calls} calls per row", flush=True)
        startup = bench_startup(work, args) if args.startup_repeat > 0 else []
        for transport in transports:
            try:
                rows += anyio.run(benches[transport], work, args)
            except BaseException:
                for log in sorted(work.glob("*-server.log")):
                    print(f"--- {log.name} (tail)\n{log.read_text(errors='replace')[-3000:]}", file=sys.stderr)
                raise
    total_s = time.perf_counter() - t_start
    md = _markdown(rows, args, total_s, startup)
    print(md)
    if not args.no_write:
        payload = {"mcp_sdk": SDK_VERSION, "calls_per_row": args.calls, "warmup": args.warmup,
                   "server": {"max_concurrency": args.max_concurrency, "max_queue": args.max_queue,
                              "reasoner": "scripted (instant, 2 objects)", "segmenter": "tiny random SAM2 (tiny-test)",
                              "device": "cpu"},
                   "image": "examples/coffee.png (600x400), by path", "mask_encoding": "rle",
                   "loadavg_before": load_before, "loadavg_after": _loadavg(), "total_s": total_s, "rows": rows,
                   "startup": {"command": "segzero-mcp (console script), stdio", "protocol": PROTOCOL,
                               "slow_load_s": args.slow_load_s, "repeat": args.startup_repeat, "cases": startup}}
        write_result("mcp_load", payload, md)


if __name__ == "__main__":
    main()
