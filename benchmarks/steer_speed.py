"""Speed of the steering operations (issue #12): ``segment_by_prompts`` and ``refine_object`` on a
cached image embedding, p50 / p95 of one object, SAM 2.1 tiny and large architectures (random weights).

For each architecture (``tiny`` = ``hiera-tiny``, ``large`` = ``hiera-large``: the published SAM 2.1
image-encoder hyper-parameters from ``segzero_tool.testing.tiny_sam2.sam2_config``) a ``Sam2Model`` is
built with random weights (redrawn as ``build_tiny_sam2`` does, so masks are not threshold noise; the
cost does not depend on the weights), wrapped in ``TransformersSam2Segmenter`` and called through
``segzero_tool.steer`` on a photo-like JPEG (default 1920x1080, the one ``overhead.py`` writes) passed by
path, as a caller passes it. One object = a box + one positive point. Timed, per architecture:

* **cold** ``SegZeroPipeline(None, segmenter).segment_by_prompts(path, [object])`` (what users call: the
  core ``segzero_tool.steer`` behind the pipeline's decoded-image cache) with the embedding cache and the
  decoded-image cache cleared first: JPEG decode + content hash + encoder + decoder + masks at full size;
* **cached** ``segment_by_prompts`` of the same path, a slightly different object each call: the file read
  and its bytes hashed (a decoded-image cache hit: no JPEG decode, and the decoded array keeps its content
  hash) + decoder (the encoder is skipped: embedding cache hit);
* **cached_result** ``pipe.segment_by_prompts(previous_result, [object])``: the image taken from the
  previous result (over MCP: ``result_id``), so no JPEG decode and no content hash (a decoded image is
  read-only and keeps its hash, see ``image_key``): decoder;
* **refine** ``pipe.refine_object(result, 0, add_points=[one], remove_points=[one])`` on a cached
  result: one extra positive and one negative click, the object's previous low-res logits fed back as
  ``mask_input`` (the image is the result's array: decoder only, no decode, no hash);
* ratios cached / cold and refine / cold (issue target: cached <= 5% of cold for the large arch).

Calls run in rounds so that cold and cached calls see the same machine load: each round clears the cache,
times one cold call, then cached, cached_result and refine calls in turn (``repeat / cold_repeat`` of
each), after one untimed warm-up round; the cache's hit / miss counts are checked every round. p50 / p95 are over all timed calls (linear interpolation; with 15 calls p95 lies
between the two slowest). Besides wall time the process CPU time per call is recorded (all threads:
torch's intra-op threads included; on a shared machine it moves less than wall time), and so are the
pieces, to see where the time goes: ``load`` and ``segment`` from ``result.timings``, a JPEG decode, a
decoded-image cache hit, the content hash (``image_key``) of new pixels, ``segmenter.decode`` alone (prompt encoder + mask decoder + the processor's
upsampling of the low-res logits to full size) and that upsampling alone, and ``result.to_dict("rle")`` of
a one-object result (not part of the in-process call; what the MCP server adds to encode it).

``--mcp``: the same four operations as MCP tool calls (``segment_by_prompts``, ``refine_object``) from
the MCP Python client over streamable HTTP to a ``segzero-mcp --reasoner none --http`` server
started on a free loopback port with the random-weight model saved to a temporary folder
(``build_tiny_sam2(arch=...)``; ``OMP_NUM_THREADS`` = ``--threads``), the image passed by path from an
allowed root (a cold call uses a copy of the JPEG with a few pixels changed: the server's cache is keyed by
content; cached_result passes ``result_id``); client-side latency, plus the server's ``timings_ms.total``;
and the server's start-up: spawn to ``tools/list`` answered, and to ``GET /health`` 200 (segmenter loaded).
The script stops with a message if the server does not list those tools. ``--profile``: cProfile of 20
cached and 20 refine calls per arch (printed; the top 25 by own time go into the JSON).

Usage::

    python benchmarks/steer_speed.py                         # CPU, tiny and large, in-process
    python benchmarks/steer_speed.py --archs tiny --repeat 100
    python benchmarks/steer_speed.py --mcp                   # also through MCP over HTTP
    python benchmarks/steer_speed.py --threads 1 --mcp --profile   # the recorded run (a shared, loaded machine)
    python benchmarks/steer_speed.py --device cuda           # -> results/steer_speed_cuda.*

Default repeats: tiny 6 cold + 48 of each cached kind + 48 refine, large 3 cold + 15 + 15 (``--repeat``
and ``--cold-repeat`` override them for every arch). Writes ``results/steer_speed.{json,md}`` on CPU and
``results/steer_speed_cuda.{json,md}`` on CUDA unless ``--no-write`` (with ``--mcp`` the in-process
figures are written first, then again with the MCP ones). On a machine where other jobs run, ``--threads 1``
avoids torch's two threads waiting for each other (3x slower calls on a busy 2-core guest).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402
from overhead import _photo_like  # noqa: E402

from segzero_tool.images import load_image  # noqa: E402
from segzero_tool.pipeline import SegZeroPipeline  # noqa: E402
from segzero_tool.segmenters.base import ObjectPrompt, image_key  # noqa: E402
from segzero_tool.segmenters.transformers_sam2 import TransformersSam2Segmenter  # noqa: E402
from segzero_tool.testing.tiny_sam2 import _spread_weights, sam2_config, sam2_processor  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ARCHS = {"tiny": "hiera-tiny", "large": "hiera-large"}
#: Default (cold calls, cached calls = refine calls) per architecture.
DEFAULT_REPEATS = {"hiera-tiny": (6, 48), "hiera-large": (3, 15)}
FALLBACK_REPEATS = (3, 15)
OPS = ("cold", "cached", "cached_result", "refine")


# --------------------------------------------------------------------------------------------- helpers

def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def _stats(values: list[float]) -> dict[str, float]:
    return {"p50_ms": _pct(values, 50), "p95_ms": _pct(values, 95), "min_ms": min(values), "max_ms": max(values),
            "n": len(values)}


def _arch(name: str) -> str:
    return ARCHS.get(name, name)


def _object(w: int, h: int, shift: int = 0) -> dict[str, Any]:
    """One object: a box around the image's centre-left third and a point inside it; ``shift`` moves it."""
    x1, y1 = int(w * 0.30) + shift, int(h * 0.25) + shift
    x2, y2 = int(w * 0.55) + shift, int(h * 0.80) + shift
    return {"box": [x1, y1, x2, y2], "points": [[(x1 + x2) // 2, (y1 + y2) // 2]]}


def _clicks(obj: dict[str, Any]) -> tuple[list[list[int]], list[list[int]]]:
    """One positive click inside the object's box (upper part) and one negative one (lower-left corner)."""
    x1, y1, x2, y2 = obj["box"]
    add = [[(x1 + x2) // 2, y1 + (y2 - y1) // 4]]
    remove = [[x1 + (x2 - x1) // 8, y2 - (y2 - y1) // 8]]
    return add, remove


def _build(arch: str, device: str) -> tuple[TransformersSam2Segmenter, float, float]:
    """Random-weight ``Sam2Model`` (weights spread as in ``build_tiny_sam2``) on ``device``, float32."""
    import torch
    from transformers import Sam2Model

    t0 = time.perf_counter()
    config = sam2_config(arch)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Sam2Model(config).eval()
        _spread_weights(model)
    model = model.to(device)
    processor = sam2_processor(config.prompt_encoder_config.image_size)
    params_m = sum(p.numel() for p in model.parameters()) / 1e6
    return TransformersSam2Segmenter(model, processor, device=device), params_m, time.perf_counter() - t0


class Timer:
    """Wall and process-CPU milliseconds of each call, per operation."""

    def __init__(self, sync: Callable[[], None]) -> None:
        self.sync = sync
        self.wall: dict[str, list[float]] = {}
        self.cpu: dict[str, list[float]] = {}

    def __call__(self, op: str, fn: Callable[[], Any], record: bool = True) -> Any:
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        self.sync()
        t1, c1 = time.perf_counter(), time.process_time()
        if record:
            self.wall.setdefault(op, []).append((t1 - t0) * 1000.0)
            self.cpu.setdefault(op, []).append((c1 - c0) * 1000.0)
        return out


def _rounds(cold_repeat: int, repeat: int) -> list[int]:
    """How many cached (and refine) calls each round gets: ``repeat`` spread over ``cold_repeat`` rounds."""
    base, extra = divmod(repeat, cold_repeat)
    return [base + (1 if r < extra else 0) for r in range(cold_repeat)]


# ------------------------------------------------------------------------------------------- in-process

def bench_in_process(arch: str, path: Path, size: tuple[int, int], args: argparse.Namespace,
                     cold_repeat: int, repeat: int) -> dict[str, Any]:
    import torch

    cuda = args.device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    seg, params_m, build_s = _build(arch, args.device)
    print(f"[{arch}] {params_m:.1f}M parameters, built in {build_s:.1f} s", flush=True)
    w, h = size
    timer = Timer(sync)
    pipe = SegZeroPipeline(None, seg)  # what users call: the pipeline's decoded-image cache in front of steer
    shifts = iter(range(1, 1_000_000))
    parts: dict[str, list[float]] = {"cold load": [], "cold segment": [], "cached load": [], "cached segment": [],
                                     "refine segment": []}

    def one_round(n_warm: int, record: bool) -> None:
        seg.cache.clear()
        pipe.image_cache.clear()  # cold: an image never seen (decode, hash, encoder, decoder)
        cold = timer("cold", lambda: pipe.segment_by_prompts(path, [_object(w, h)]), record)
        if record:
            parts["cold load"].append(cold.timings["load"])
            parts["cold segment"].append(cold.timings["segment"])
        for _ in range(n_warm):
            obj = _object(w, h, shift=next(shifts) % 40)
            res = timer("cached", lambda: pipe.segment_by_prompts(path, [obj]), record)
            again = _object(w, h, shift=next(shifts) % 40)
            timer("cached_result", lambda: pipe.segment_by_prompts(res, [again]), record)
            add, remove = _clicks(obj)
            ref = timer("refine", lambda: pipe.refine_object(res, 0, add_points=add, remove_points=remove), record)
            if record:
                parts["cached load"].append(res.timings["load"])
                parts["cached segment"].append(res.timings["segment"])
                parts["refine segment"].append(ref.timings["segment"])
        stats = seg.cache.stats()  # clear() resets the counts: the cold call missed, every other call hit
        assert stats["misses"] == 1 and stats["hits"] == 3 * n_warm, stats

    t0 = time.perf_counter()
    one_round(2, record=False)  # warm-up
    per_round = _rounds(cold_repeat, repeat)
    for r, n in enumerate(per_round):
        one_round(n, record=True)
        print(f"[{arch}] round {r + 1}/{len(per_round)}: cold {timer.wall['cold'][-1]:.0f} ms, cached p50 "
              f"{statistics.median(timer.wall['cached']):.1f} ms, refine p50 "
              f"{statistics.median(timer.wall['refine']):.1f} ms", flush=True)
    rounds_s = time.perf_counter() - t0

    # The pieces, on the cached embedding (medians of `repeat`).
    image = load_image(str(path)).array
    fresh = np.array(image)  # writable: its hash is not remembered, as for a caller's own array
    emb = seg.encode(image)
    prompt = [ObjectPrompt(box=tuple(_object(w, h)["box"]), points=tuple(map(tuple, _object(w, h)["points"])))]
    low = torch.zeros((1, 1, seg.low_res_size, seg.low_res_size), dtype=torch.float32, device=args.device)
    base = pipe.segment_by_prompts(path, [_object(w, h)])
    pieces: dict[str, Callable[[], Any]] = {
        "load (JPEG decode, load_image)": lambda: load_image(str(path)),
        "load from the decoded-image cache (read + hash the file, a hit)": lambda: load_image(
            str(path), cache=pipe.image_cache),
        "content hash of new pixels (image_key; 0 for a decoded image seen before)": lambda: image_key(fresh),
        "decode (prompt encoder + mask decoder + upsample)": lambda: seg.decode(emb, prompt),
        f"upsample low-res logits to {w}x{h} + threshold": lambda: seg.processor.post_process_masks(
            [low], [[h, w]], mask_threshold=0.0, binarize=True)[0].cpu().numpy(),
        "result.to_dict('rle') (MCP encoding; not in the call)": lambda: base.to_dict("rle"),
    }
    piece_ms = {}
    for name, fn in pieces.items():
        fn()
        samples = []
        for _ in range(max(5, min(repeat, 30))):
            t = time.perf_counter()
            fn()
            sync()
            samples.append((time.perf_counter() - t) * 1000.0)
        piece_ms[name] = statistics.median(samples)
    profile = _profile(pipe, path, (w, h), base) if args.profile else None
    seg.close()

    ops = {op: {**_stats(timer.wall[op]), "cpu_p50_ms": _pct(timer.cpu[op], 50)} for op in OPS}
    cold50 = ops["cold"]["p50_ms"]
    out = {
        "arch": arch, "params_m": round(params_m, 1), "build_s": build_s, "rounds_s": rounds_s,
        "cold_repeat": cold_repeat, "repeat": repeat, "ops": ops,
        "cached_over_cold": ops["cached"]["p50_ms"] / cold50, "refine_over_cold": ops["refine"]["p50_ms"] / cold50,
        "parts_p50_ms": {k: statistics.median(v) for k, v in parts.items()}, "pieces_p50_ms": piece_ms,
        "samples_ms": timer.wall, "cpu_samples_ms": timer.cpu,
    }
    if profile is not None:
        out["profile"] = profile
    print(f"[{arch}] cold p50 {cold50:.0f} ms, cached p50 {ops['cached']['p50_ms']:.1f} / p95 "
          f"{ops['cached']['p95_ms']:.1f} ms, refine p50 {ops['refine']['p50_ms']:.1f} / p95 "
          f"{ops['refine']['p95_ms']:.1f} ms; cached/cold {100 * out['cached_over_cold']:.2f}%", flush=True)
    return out


def _profile(pipe: SegZeroPipeline, path: Path, size: tuple[int, int], base: Any,
             n: int = 20) -> dict[str, Any]:
    """cProfile ``n`` cached ``segment_by_prompts`` and ``n`` ``refine_object`` calls: the 25 functions with the
    most own time, ms per call (``--profile``; also printed)."""
    import cProfile
    import io
    import pstats

    w, h = size
    out: dict[str, Any] = {}
    add, remove = _clicks(_object(w, h))
    for op, fn in (("cached", lambda: pipe.segment_by_prompts(path, [_object(w, h)])),
                   ("refine", lambda: pipe.refine_object(base, 0, add_points=add, remove_points=remove))):
        fn()
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(n):
            fn()
        prof.disable()
        stats = pstats.Stats(prof)
        rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:25]  # by own time
        out[op] = [{"function": f"{Path(f).name}:{line}({name})", "calls_per_call": nc / n,
                    "own_ms_per_call": tt * 1000 / n, "cum_ms_per_call": ct * 1000 / n}
                   for (f, line, name), (_, nc, tt, ct, _) in rows]
        text = io.StringIO()
        pstats.Stats(prof, stream=text).sort_stats("cumulative").print_stats(30)
        print(f"--- cProfile, {n} {op} calls (cumulative) ---\n{text.getvalue()}", flush=True)
    return out


# ----------------------------------------------------------------------------------------- MCP over HTTP

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_command() -> list[str]:
    exe = shutil.which("segzero-mcp", path=str(Path(sys.executable).parent)) or shutil.which("segzero-mcp")
    return [exe] if exe else [sys.executable, "-m", "mcp_server"]


def _get(obj: Any, *names: str) -> Any:
    for name in names:
        if isinstance(obj, dict) and name in obj:
            return obj[name]
        if hasattr(obj, name):
            return getattr(obj, name)
    return None


@contextlib.asynccontextmanager
async def _mcp_session(url: str, timeout: float) -> AsyncIterator[tuple[Any, Any]]:
    """One streamable-HTTP session (as ``mcp_load.connect_http``), yielding ``(list_tools, call_tool)``;
    mcp 1.x (``ClientSession``) or 2.x (``mcp.Client``)."""
    from mcp.client.streamable_http import streamable_http_client

    try:
        from mcp import Client  # mcp 2.x
    except ImportError:
        Client = None
    if Client is not None:
        import httpx2

        async with httpx2.AsyncClient(timeout=httpx2.Timeout(30, read=timeout)) as http, \
                Client(streamable_http_client(url, http_client=http), read_timeout_seconds=timeout) as client:
            yield client.list_tools, client.call_tool
    else:
        from datetime import timedelta

        import httpx
        from mcp import ClientSession
        from mcp.shared._httpx_utils import create_mcp_http_client

        async with create_mcp_http_client(timeout=httpx.Timeout(30, read=timeout)) as http, \
                streamable_http_client(url, http_client=http) as (read, write, _), \
                ClientSession(read, write, read_timeout_seconds=timedelta(seconds=timeout)) as session:
            await session.initialize()
            yield session.list_tools, session.call_tool


def bench_mcp(arch: str, path: Path, size: tuple[int, int], args: argparse.Namespace, cold_repeat: int,
              repeat: int, work: Path) -> dict[str, Any]:
    from segzero_tool.testing.tiny_sam2 import build_tiny_sam2

    t0 = time.perf_counter()
    model_dir = build_tiny_sam2(work / f"sam2-{arch}", arch=arch)
    save_s = time.perf_counter() - t0
    root = path.parent
    port = _free_port()
    cmd = [*_server_command(), "--reasoner", "none", "--segmenter", str(model_dir), "--segmenter-backend",
           "transformers", "--device", args.device, "--http", "--host", "127.0.0.1", "--port",
           str(port), "--allow-root", str(root)]
    log = open(work / f"server-{arch}.log", "w")  # noqa: SIM115
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("SEGZERO", "FASTMCP"))},
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "OMP_NUM_THREADS": str(max(1, args.threads))}  # the server's torch threads = ours
    spawned = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=work, env=env)
    url = f"http://127.0.0.1:{port}/mcp"
    w, h = size
    try:
        return asyncio.run(_mcp_calls(arch, url, str(path), (w, h), cold_repeat, repeat, proc, save_s, spawned))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(model_dir, ignore_errors=True)


async def _mcp_calls(arch: str, url: str, image: str, size: tuple[int, int], cold_repeat: int, repeat: int,
                     proc: subprocess.Popen, save_s: float, spawned: float) -> dict[str, Any]:
    import httpx

    w, h = size
    deadline = time.monotonic() + 300
    while True:  # wait for the port
        if proc.poll() is not None:
            raise SystemExit(f"segzero-mcp exited with {proc.returncode}; see its log")
        try:
            with socket.create_connection(("127.0.0.1", int(url.split(":")[2].split("/")[0])), timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit("segzero-mcp did not open its port in 300 s") from None
            await asyncio.sleep(0.2)
    async with _mcp_session(url, 600) as (list_tools, call_tool):
        listed = await list_tools()
        names = {_get(t, "name") for t in (_get(listed, "tools") or listed)}
        listed_s = time.perf_counter() - spawned
        missing = {"segment_by_prompts", "refine_object"} - names
        if missing:
            raise SystemExit(f"the server does not list the tools {sorted(missing)} (it lists {sorted(names)}); "
                             "run without --mcp")
        health = url.removesuffix("/mcp") + "/health"
        async with httpx.AsyncClient(timeout=5) as http:  # 200 once the segmenter has loaded (503 before)
            while (await http.get(health)).status_code != 200:
                if time.perf_counter() - spawned > 600:
                    raise SystemExit("the server did not become ready in 600 s")
                await asyncio.sleep(0.05)
        ready_s = time.perf_counter() - spawned
        wall: dict[str, list[float]] = {}
        server: dict[str, list[float]] = {}  # the result's timings_ms["total"]: the server's own pipeline time
        common = {"mask_encoding": "rle", "include_overlay": False}

        async def call(op: str, name: str, arguments: dict[str, Any], record: bool) -> Any:
            t0 = time.perf_counter()
            res = await call_tool(name, arguments)
            dt = (time.perf_counter() - t0) * 1000.0
            if _get(res, "isError", "is_error"):
                raise SystemExit(f"{name} failed: {res}")
            out = _get(res, "structuredContent", "structured_content")
            if record:
                wall.setdefault(op, []).append(dt)
                server.setdefault(op, []).append(float((out.get("timings_ms") or {}).get("total", float("nan"))))
            return out

        async def first_ready() -> None:  # the models load in the background: wait until a call succeeds
            for _ in range(600):
                res = await call_tool("segment_by_prompts", {"image": image, "objects": [_object(w, h)], **common})
                if not _get(res, "isError", "is_error"):
                    return
                await asyncio.sleep(1)
            raise SystemExit(f"segment_by_prompts never succeeded: {res}")

        await first_ready()
        shifts = iter(range(1, 1_000_000))

        async def one_round(n_warm: int, record: bool, k: int) -> None:
            # A cold call needs pixels the server has not encoded (its cache is keyed by content): each round
            # uses its own copy of the JPEG with a few pixels changed (`_write_cold_copies`).
            cold_image = image.replace(".jpg", f"-cold{k}.jpg")
            await call("cold", "segment_by_prompts", {"image": cold_image, "objects": [_object(w, h)], **common},
                       record)
            for _ in range(n_warm):
                obj = _object(w, h, shift=next(shifts) % 40)
                out = await call("cached", "segment_by_prompts", {"image": image, "objects": [obj], **common},
                                 record)
                again = _object(w, h, shift=next(shifts) % 40)
                await call("cached_result", "segment_by_prompts",
                           {"result_id": out["result_id"], "objects": [again], **common}, record)
                add, remove = _clicks(obj)
                await call("refine", "refine_object", {"result_id": out["result_id"], "index": 0,
                                                        "add_points": add, "remove_points": remove, **common},
                           record)

        await one_round(2, False, 0)
        for r, n in enumerate(_rounds(cold_repeat, repeat)):
            await one_round(n, True, r + 1)
            print(f"[{arch}] MCP round {r + 1}: cold {wall['cold'][-1]:.0f} ms, cached p50 "
                  f"{statistics.median(wall['cached']):.1f} ms, refine p50 {statistics.median(wall['refine']):.1f}",
                  flush=True)
    ops = {op: {**_stats(wall[op]), "server_total_p50_ms": _pct(server[op], 50)} for op in OPS}
    return {"arch": arch, "save_s": save_s, "startup_s": {"tools_listed": listed_s, "ready": ready_s}, "ops": ops, "cached_over_cold": ops["cached"]["p50_ms"] /
            ops["cold"]["p50_ms"], "refine_over_cold": ops["refine"]["p50_ms"] / ops["cold"]["p50_ms"],
            "samples_ms": wall}


def _write_cold_copies(path: Path, n: int, size: tuple[int, int]) -> None:
    """``n + 1`` JPEGs like ``path`` but each with different pixels (a cold call for the server's cache)."""
    from PIL import Image

    base = np.asarray(Image.open(path).convert("RGB"))
    for k in range(n + 1):
        img = base.copy()
        img[0, :8] = (k * 37) % 256, k % 256, (k * 11) % 256  # a few pixels differ: another content hash
        Image.fromarray(img).save(path.with_name(path.stem + f"-cold{k}.jpg"), quality=90)


# ------------------------------------------------------------------------------------------------ report

def _fmt(v: float) -> str:
    return f"{v:.0f}" if v >= 1000 else f"{v:.1f}"


def _markdown(results: dict[str, Any], mcp: dict[str, Any] | None, args: argparse.Namespace, threads: int,
              total_s: float, load: dict[str, Any], size: tuple[int, int]) -> str:
    names = list(results)
    short = {v: k for k, v in ARCHS.items()}
    head = [short.get(n, n) for n in names]
    dev = "CUDA" if args.device.startswith("cuda") else "CPU"
    lines = [
        f"# Steering speed on {dev} (`segment_by_prompts` / `refine_object`, 1 object; {threads} torch threads; "
        "random weights)",
        "",
        f"Image: photo-like {size[0]}x{size[1]} JPEG passed by path; object = box + 1 positive point; refine = "
        "+1 positive, +1 negative click with the previous low-res logits. Timed calls (cold / each cached kind / refine): "
        + ", ".join(f"{short.get(n, n)} {results[n]['cold_repeat']} / {results[n]['repeat']} / "
                    f"{results[n]['repeat']}" for n in names)
        + f". Whole run {total_s:.0f} s. Load average (1/5/15 min) before {load['before']}, after {load['after']}.",
        "",
        "| in-process, ms | " + " | ".join(f"{a} p50 | {a} p95" for a in head) + " |",
        "|---|" + "---|---|" * len(names),
    ]
    labels = {"cold": "cold `segment_by_prompts` (cache cleared: encoder + decoder)",
              "cached": "cached `segment_by_prompts` (same JPEG path again: decoded-image cache hit + decoder)",
              "cached_result": "cached `segment_by_prompts` on the previous result's image (MCP: `result_id`)",
              "refine": "`refine_object` (+1/-1 click, cached embedding)"}
    for op in OPS:
        lines.append(f"| {labels[op]} | " + " | ".join(
            f"{_fmt(results[n]['ops'][op]['p50_ms'])} | {_fmt(results[n]['ops'][op]['p95_ms'])}" for n in names) + " |")
    lines.append("| process CPU per call, p50 (cold / cached / cached on result / refine) | " + " | ".join(
        " / ".join(_fmt(results[n]["ops"][op]["cpu_p50_ms"]) for op in OPS) + " | " for n in names) + "")
    lines.append("| **cached / cold** (p50) | " + " | ".join(
        f"**{100 * results[n]['cached_over_cold']:.2f}%** | " for n in names))
    lines.append("| refine / cold (p50) | " + " | ".join(
        f"{100 * results[n]['refine_over_cold']:.2f}% | " for n in names))
    lines += ["", "Where the time goes (medians, ms):", "",
              "| piece | " + " | ".join(head) + " |", "|---|" + "---|" * len(names)]
    for key in results[names[0]]["parts_p50_ms"]:
        lines.append(f"| `result.timings['{key.split()[1]}']` of {key.split()[0]} calls | " + " | ".join(
            _fmt(results[n]["parts_p50_ms"][key]) for n in names) + " |")
    for key in results[names[0]]["pieces_p50_ms"]:
        lines.append(f"| {key} | " + " | ".join(_fmt(results[n]["pieces_p50_ms"][key]) for n in names) + " |")
    if mcp:
        mn = list(mcp)
        lines += ["", "MCP over streamable HTTP (`segzero-mcp --reasoner none --http`, MCP Python client, "
                  "`mask_encoding=\"rle\"`, no overlay; client-side latency, send to parsed result):", "",
                  "| MCP, ms | " + " | ".join(f"{short.get(a, a)} p50 | {short.get(a, a)} p95" for a in mn) + " |",
                  "|---|" + "---|---|" * len(mn)]
        mcp_labels = {**labels, "cold": "cold `segment_by_prompts` (a JPEG the server has not seen: encoder + decoder)",
                      "cached": "cached `segment_by_prompts` (same path again)"}
        for op in OPS:
            lines.append(f"| {mcp_labels[op]} | " + " | ".join(
                f"{_fmt(mcp[a]['ops'][op]['p50_ms'])} | {_fmt(mcp[a]['ops'][op]['p95_ms'])}" for a in mn) + " |")
        lines.append("| server's `timings_ms.total`, p50 (cold / cached / cached on result / refine) | " + " | ".join(
            " / ".join(_fmt(mcp[a]["ops"][op]["server_total_p50_ms"]) for op in OPS) + " | " for a in mn))
        lines.append("| cached / cold (p50) | " + " | ".join(f"{100 * mcp[a]['cached_over_cold']:.2f}% | "
                                                              for a in mn))
        lines.append("| start-up, s: spawn to `tools/list` answered / to `GET /health` 200 (segmenter loaded) | "
                     + " | ".join(f"{mcp[a]['startup_s']['tools_listed']:.1f} / {mcp[a]['startup_s']['ready']:.1f} | "
                                  for a in mn))
    else:
        lines += ["", "MCP over HTTP: not measured in this run" + ("." if args.mcp else " (`--mcp` not given).")]
    return "\n".join(lines) + "\n"


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda / cuda:N")
    ap.add_argument("--archs", default="tiny,large", help="comma-separated: tiny, large (or any sam2_config arch)")
    ap.add_argument("--repeat", type=int, help="timed cached calls and refine calls per arch "
                    "(default: tiny 48, large 15)")
    ap.add_argument("--cold-repeat", type=int, help="timed cold calls (rounds) per arch (default: tiny 6, large 3)")
    ap.add_argument("--image", default="1920x1080", help="WxH of the photo-like JPEG (default 1920x1080)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch CPU threads (default: all cores)")
    ap.add_argument("--mcp", action="store_true", help="also time the MCP tools over streamable HTTP")
    ap.add_argument("--profile", action="store_true",
                    help="also cProfile 20 cached and 20 refine calls per arch (printed; top 25 in the JSON)")
    ap.add_argument("--no-write", action="store_true", help="print only; do not write results/")
    args = ap.parse_args()

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("--device cuda was given but torch sees no CUDA device")
    torch.set_num_threads(max(1, args.threads))
    try:
        w, h = (int(v) for v in args.image.lower().split("x"))
    except ValueError:
        sys.exit(f"--image must be WxH, e.g. 1920x1080; got {args.image!r}")
    archs = [_arch(a.strip()) for a in args.archs.split(",") if a.strip()]

    def repeats(arch: str) -> tuple[int, int]:
        cold, warm = DEFAULT_REPEATS.get(arch, FALLBACK_REPEATS)
        cold = args.cold_repeat or cold
        return cold, max(cold, args.repeat or warm)

    load = {"before": _load()}
    t0 = time.perf_counter()

    def save(results: dict[str, Any], mcp: dict[str, Any] | None, total_s: float, final: bool = False) -> None:
        load["after"] = _load()
        md = _markdown(results, mcp, args, torch.get_num_threads(), total_s, load, (w, h))
        if final:
            print(md)
        if args.no_write:
            return
        name = "steer_speed_cuda" if args.device.startswith("cuda") else "steer_speed"
        write_result(name, {"device": args.device, "image_size": [w, h], "total_s": total_s,
                            "torch_threads": torch.get_num_threads(), "loadavg_1_5_15_before": load["before"],
                            "loadavg_1_5_15_after": load["after"], "archs": results, "mcp_http": mcp}, md)
        print(f"{'total' if final else 'in-process part'} {total_s:.0f} s; wrote results/{name}.json and .md",
              flush=True)
    with tempfile.TemporaryDirectory(prefix="steer-speed-") as tmp:
        work = Path(tmp)
        root = work / "root"
        root.mkdir()
        path = root / f"photo-{w}x{h}.jpg"
        path.write_bytes(_photo_like(w, h))
        results = {arch: bench_in_process(arch, path, (w, h), args, *repeats(arch)) for arch in archs}
        mcp = None
        if args.mcp:
            save(results, None, time.perf_counter() - t0)  # the in-process figures survive a failed MCP part
            _write_cold_copies(path, max(repeats(a)[0] for a in archs) + 1, (w, h))
            mcp = {arch: bench_mcp(arch, path, (w, h), args, *repeats(arch), work) for arch in archs}
    save(results, mcp, time.perf_counter() - t0, final=True)


if __name__ == "__main__":
    main()
