"""The openai reasoner client's own cost: overhead per call and throughput at 1, 8 and 64 concurrent
calls, against a loopback OpenAI-compatible server that answers at once.

Usage::

    python benchmarks/client_overhead.py [--calls 256] [--concurrency 1,8,64] [--formats png,jpeg]

The server is a minimal starlette app on uvicorn in a separate process (so that it does not share
this process's GIL): ``/v1/models`` says ``owned_by: vllm`` (so requests carry the structured-output
regex, as against vLLM) and ``/v1/chat/completions`` reads the body and returns a fixed VisionReasoner
answer without looking at it. Every call sends the 840x840 frame of ``examples/coffee.png`` (a photo:
PNG ~1.1 MB, JPEG q95 ~0.2 MB).

Measured, per image format:

* **encode**: the frame to a ``data:`` URL alone (PNG compress level 1, or JPEG quality 95);
* **per call at concurrency 1**: ``generate([request])`` one after the other (the sync path of
  ``segment``), median and p95;
* **bare httpx**: an ``httpx.AsyncClient`` POST of an already-encoded body, one after the other: the
  loopback HTTP + server floor that any client pays;
* **client overhead** = per call - bare httpx (encode + JSON + the hop to the client thread + parse);
* **throughput** at each concurrency: ``concurrency`` asyncio tasks calling ``agenerate([request])``
  in a loop (the ``asegment`` path) until ``--calls`` calls are done, and the bare-httpx
  equivalent; also ``generate`` with ``concurrency`` requests at once (the ``segment_many`` path).

Writes ``results/client_overhead.{json,md}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ANSWER = ('<think>The cup holds coffee.</think><answer>[{"bbox_2d": [168,126,588,672], "point_2d": [378,420]}, '
          '{"bbox_2d": [600,700,800,830], "point_2d": [700,760]}]</answer>')


# --- the loopback server (runs in a child process) --------------------------------------------


def serve(port: int) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    reply = json.dumps({
        "id": "chatcmpl-0", "object": "chat.completion", "created": 0, "model": "visionreasoner-7b",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1150, "completion_tokens": 60, "total_tokens": 1210},
    }).encode()

    async def chat(request):
        await request.body()
        return Response(reply, media_type="application/json")

    async def models(request):
        return JSONResponse({"object": "list", "data": [{"id": "visionreasoner-7b", "object": "model",
                                                         "owned_by": "vllm"}]})

    async def health(request):
        return Response(status_code=200)

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]),
                            Route("/v1/models", models), Route("/health", health)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, backlog=1024)


def _start_server() -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
    import httpx

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc, f"http://127.0.0.1:{port}/v1"
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the loopback server did not start")


# --- measurements -----------------------------------------------------------------------------


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _frame():
    from PIL import Image

    from segzero_tool.frame import ReasoningFrame

    img = Image.open(REPO / "examples" / "coffee.png").convert("RGB")
    return ReasoningFrame(img.size, (840, 840)).resize_image(img)


def _load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        return []


def measure_format(url: str, fmt: str, calls: int, levels: list[int]) -> dict:
    import httpx

    from segzero_tool.prompts import build_prompt
    from segzero_tool.reasoners.base import ReasonerRequest
    from segzero_tool.reasoners.openai_compat import OpenAICompatReasoner, encode_image

    frame = _frame()
    req = ReasonerRequest(frame, build_prompt("What can I have if I'm thirsty?"), 2048)
    out: dict = {"format": fmt}

    samples = []
    for _ in range(20 if fmt == "png" else 50):
        t0 = time.perf_counter()
        data_url = encode_image(frame, fmt)
        samples.append((time.perf_counter() - t0) * 1000)
    out["encode_ms"] = statistics.median(samples)
    out["data_url_bytes"] = len(data_url)

    client = OpenAICompatReasoner("visionreasoner-7b", base_url=url, api_key_env=None, image_format=fmt,
                                  max_concurrency=max(levels))
    body = json.dumps(client.request_body(req, data_url)).encode()
    out["body_bytes"] = len(body)
    try:
        client.generate([req] * 4)  # discovery, connections, warm-up
        seq = []
        for _ in range(min(calls, 100)):
            t0 = time.perf_counter()
            client.generate([req])
            seq.append((time.perf_counter() - t0) * 1000)
        out["per_call_ms"] = {"median": statistics.median(seq), "p95": _pct(seq, 0.95)}

        async def bare_sequential(n: int) -> list[float]:
            async with httpx.AsyncClient(timeout=60) as http:
                for _ in range(5):
                    await http.post(url + "/chat/completions", content=body, headers={"content-type": "application/json"})
                res = []
                for _ in range(n):
                    t0 = time.perf_counter()
                    r = await http.post(url + "/chat/completions", content=body, headers={"content-type": "application/json"})
                    r.json()
                    res.append((time.perf_counter() - t0) * 1000)
                return res

        bare = asyncio.run(bare_sequential(min(calls, 100)))
        out["bare_httpx_ms"] = {"median": statistics.median(bare), "p95": _pct(bare, 0.95)}
        out["client_overhead_ms"] = out["per_call_ms"]["median"] - out["bare_httpx_ms"]["median"]

        async def ours(concurrency: int, total: int) -> tuple[float, list[float]]:
            done = 0
            lat: list[float] = []

            async def worker():
                nonlocal done
                while done < total:
                    done += 1
                    t0 = time.perf_counter()
                    await client.agenerate([req])
                    lat.append((time.perf_counter() - t0) * 1000)

            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return time.perf_counter() - t0, lat

        async def bare_concurrent(concurrency: int, total: int) -> float:
            limits = httpx.Limits(max_connections=concurrency + 8, max_keepalive_connections=concurrency)
            async with httpx.AsyncClient(timeout=120, limits=limits) as http:
                await asyncio.gather(*(http.post(url + "/chat/completions", content=body,
                                                 headers={"content-type": "application/json"})
                                       for _ in range(concurrency)))
                done = 0

                async def worker():
                    nonlocal done
                    while done < total:
                        done += 1
                        r = await http.post(url + "/chat/completions", content=body,
                                            headers={"content-type": "application/json"})
                        r.json()

                t0 = time.perf_counter()
                await asyncio.gather(*(worker() for _ in range(concurrency)))
                return time.perf_counter() - t0

        out["throughput"] = {}
        for c in levels:
            total = max(calls, 4 * c)
            elapsed, lat = asyncio.run(ours(c, total))
            bare_elapsed = asyncio.run(bare_concurrent(c, total))
            t0 = time.perf_counter()
            rounds = max(2, total // c)
            for _ in range(rounds):
                client.generate([req] * c)
            many_elapsed = time.perf_counter() - t0
            out["throughput"][str(c)] = {
                "calls": total,
                "agenerate_calls_per_s": total / elapsed,
                "agenerate_latency_ms": {"median": statistics.median(lat), "p95": _pct(lat, 0.95)},
                "bare_httpx_calls_per_s": total / bare_elapsed,
                "generate_batch_calls_per_s": rounds * c / many_elapsed,
                "load": _load(),
            }
            print(f"  {fmt} c={c}: {total / elapsed:.1f} calls/s (bare httpx {total / bare_elapsed:.1f}); "
                  f"segment_many-style {rounds * c / many_elapsed:.1f}", flush=True)
    finally:
        client.close()
    return out


def markdown(results: list[dict], levels: list[int]) -> str:
    lines = ["# openai reasoner client: overhead and throughput (loopback server answering at once)", "",
             "| | " + " | ".join(r["format"].upper() for r in results) + " |",
             "|---|" + "---|" * len(results)]

    def row(label, fn):
        lines.append(f"| {label} | " + " | ".join(fn(r) for r in results) + " |")

    row("frame -> data URL (encode), ms", lambda r: f"{r['encode_ms']:.1f}")
    row("request body, KB", lambda r: f"{r['body_bytes'] / 1024:.0f}")
    row("per call at concurrency 1 (`generate`), ms median / p95",
        lambda r: f"{r['per_call_ms']['median']:.1f} / {r['per_call_ms']['p95']:.1f}")
    row("bare httpx POST of the same body, ms median", lambda r: f"{r['bare_httpx_ms']['median']:.1f}")
    row("**client overhead per call**, ms (per call - bare httpx)", lambda r: f"**{r['client_overhead_ms']:.1f}**")
    for c in levels:
        row(f"calls/s at {c} concurrent `agenerate` (bare httpx)",
            lambda r, c=c: f"{r['throughput'][str(c)]['agenerate_calls_per_s']:.1f} "
                           f"({r['throughput'][str(c)]['bare_httpx_calls_per_s']:.1f})")
        row(f"latency at {c} concurrent, ms median / p95",
            lambda r, c=c: f"{r['throughput'][str(c)]['agenerate_latency_ms']['median']:.0f} / "
                           f"{r['throughput'][str(c)]['agenerate_latency_ms']['p95']:.0f}")
        row(f"calls/s with `generate` of {c} requests (`segment_many`)",
            lambda r, c=c: f"{r['throughput'][str(c)]['generate_batch_calls_per_s']:.1f}")
    lines += ["", "Encoding the frame dominates the client's cost; client and server share the machine's CPU "
                  "cores, so the throughput columns are a floor for a client talking to a remote GPU server."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=256, help="calls per throughput point (default 256)")
    parser.add_argument("--concurrency", default="1,8,64", help="concurrency levels (default 1,8,64)")
    parser.add_argument("--formats", default="png,jpeg", help="image formats (default png,jpeg)")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return 0
    levels = [int(x) for x in args.concurrency.split(",")]
    load_before = _load()
    proc, url = _start_server()
    try:
        results = []
        for fmt in args.formats.split(","):
            print(f"{fmt}:", flush=True)
            results.append(measure_format(url, fmt, args.calls, levels))
    finally:
        proc.terminate()
        proc.wait(10)
    payload = {"server": "starlette + uvicorn, separate process, fixed answer", "levels": levels,
               "load_before": load_before, "load_after": _load(), "results": results}
    md = markdown(results, levels)
    path = write_result("client_overhead", payload, md)
    print(md)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
