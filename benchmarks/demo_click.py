"""What a person waits for in ``segzero demo`` after a click (issue #17): click -> refined mask on the cached image
embedding, and click -> the picture the page shows, SAM 2.1 tiny and large architectures (random weights).

For each architecture (``tiny`` = ``hiera-tiny``, ``large`` = ``hiera-large``; built exactly as ``steer_speed.py``
builds them: ``Sam2Model(sam2_config(arch))`` with random weights spread as ``build_tiny_sam2`` does, fp32, in
``TransformersSam2Segmenter``) a ``SegZeroPipeline`` is made with a scripted reasoner (it answers one fixed
VisionReasoner text at once: one object, a box + a point, so no reasoning model runs) and that segmenter. For each
picture (photo-like JPEGs, default 1920x1080 and 1280x720, the kind ``overhead.py`` writes) a
``segzero_tool.demo.session.DemoSession`` (view side 1024, the app's default) does what the page does:

* **cold first segment**: embedding cache and decoded-image cache cleared, ``set_image(path)`` (JPEG decode +
  content hash) then ``ask(query)`` (scripted answer + parse + SAM2 image encoder + decoder + masks at full size),
  then ``view()``; each timed apart, one call per picture;
* **clicks**: ``click(x, y, "add")`` at points of the shown (<= 1024 px) picture inside the object's box, a
  different point each click (a 5x4 grid over the box, in a shuffled but fixed order), each click refining the
  previous result (the points add up, as when a person keeps clicking: after 20 clicks the object has 21
  positive points): ``refine_object`` on the cached embedding (prompt encoder + mask decoder with the previous
  low-res logits + the mask at full size); then ``view()``: the overlay of the visible objects at <= 1024 px
  (``result.overlay``), a PIL image; then its encoding to bytes as the page sends it: WebP (Gradio's
  ``gr.Image`` default ``format``; what ``build_app``'s result image uses) and, for reference, PNG.
  Timed: **refine** (``click`` alone), **view** (``view()`` alone), **click -> view ready** (``click`` +
  ``view``), and **+ WebP** (``click`` + ``view`` + WebP encode). Two untimed clicks first (warm-up).

``--http`` (default on; ``--no-http`` skips it): the same through the running Gradio app:
``segzero_tool.demo.app.build_app(Models(...))`` over the same pipeline (already loaded, caches warm) is launched
on a free loopback port, and a client written here speaks Gradio's HTTP queue protocol as the browser does
(``gradio_client`` cannot send a ``select`` event's data): the picture is uploaded (``POST /gradio_api/upload``), the
``picture.change`` event and a ``Segment`` click (``ask``; embedding already cached) are sent, then each click is
a ``view.select`` event with the click's ``index`` [x, y]: ``POST /gradio_api/queue/join`` then the server-sent
event stream ``GET /gradio_api/queue/data`` up to ``process_completed`` (the server runs the app's handler:
``session.click`` + ``render`` (view, table, status, ...) + Gradio's post-processing: the view is encoded to WebP
and written to Gradio's cache), then ``GET`` of the view's file URL (the bytes the browser loads). Timed:
**click -> completed** (join to ``process_completed``) and **click -> view bytes** (that + the image GET). Not
included: the browser's own work (the click event in JavaScript, decoding and painting the WebP) and a network
between browser and server (all on loopback).

p50 / p95 over the timed clicks (linear interpolation; with 20 clicks p95 lies between the two slowest). Torch
threads: ``--threads`` (default all cores, as ``steer_speed.py``).

Usage::

    python benchmarks/demo_click.py                          # tiny and large, 1920x1080 and 1280x720, 20 clicks, HTTP too
    python benchmarks/demo_click.py --archs tiny --clicks 50 --no-http --no-write

Writes ``results/demo_click_cpu.{json,md}`` unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402
from overhead import _photo_like  # noqa: E402
from steer_speed import ARCHS, _build, _pct  # noqa: E402  (the architectures exactly as steer_speed builds them)

from segzero_tool.demo.session import DemoSession  # noqa: E402
from segzero_tool.pipeline import SegZeroPipeline  # noqa: E402
from segzero_tool.reasoners.base import Reasoner, ReasonerOutput  # noqa: E402

#: The scripted answer (VisionReasoner format, 840x840 frame): one object, box + point, in the picture's middle.
ANSWER = ('<think>The cup is in the middle.</think><answer>[{"bbox_2d": [300,200,560,640], "point_2d": [430,420]}]'
          '</answer>')
QUERY = "the cup"


class ScriptedReasoner(Reasoner):
    """Answers ``ANSWER`` at once (the idea of ``tests/scripted.py``: no reasoning model runs)."""

    name = "scripted"

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.model_id = "scripted"

    def generate(self, requests: Any) -> list[ReasonerOutput]:
        return [ReasonerOutput(self.answer, finish_reason="stop") for _ in requests]


def _stats(values: list[float]) -> dict[str, float]:
    return {"p50_ms": _pct(values, 50), "p95_ms": _pct(values, 95), "min_ms": min(values), "max_ms": max(values),
            "n": len(values)}


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


def _click_points(session: DemoSession, n: int) -> list[tuple[int, int]]:
    """``n`` points of the shown picture inside the selected object's box (a 5x4 grid, fixed shuffled order)."""
    h, w = session.image.shape[:2]
    scale = max(w, h) / min(session.view_side, max(w, h))
    x1, y1, x2, y2 = (float(v) / scale for v in session.result.objects[session.selected].box)
    grid = [(int(x1 + (x2 - x1) * (i + 0.5) / 5), int(y1 + (y2 - y1) * (j + 0.5) / 4)) for i in range(5)
            for j in range(4)]
    random.Random(17).shuffle(grid)
    return [grid[k % len(grid)] for k in range(n)]


def _encode(img: Any, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


# ------------------------------------------------------------------------------------------- in-process

def bench_session(pipe: SegZeroPipeline, path: Path, folder: Path, clicks: int, warmup: int) -> dict[str, Any]:
    seg = pipe.segmenter
    seg.cache.clear()
    pipe.image_cache.clear()
    session = DemoSession(pipe, folder)
    t0 = time.perf_counter()
    session.set_image(path)
    set_image_ms = _ms(t0)
    t0 = time.perf_counter()
    first = session.ask(QUERY)
    ask_ms = _ms(t0)
    t0 = time.perf_counter()
    session.view()
    first_view_ms = _ms(t0)
    if not first.objects:
        raise SystemExit("the scripted answer gave no object")
    points = _click_points(session, warmup + clicks)
    samples: dict[str, list[float]] = {"refine": [], "view": [], "click_to_view": [], "click_to_webp": [],
                                       "webp_encode": [], "png_encode": []}
    sizes = {"webp": 0, "png": 0}
    for k, (x, y) in enumerate(points):
        t0 = time.perf_counter()
        session.click(x, y, "add")
        t1 = time.perf_counter()
        img = session.view()
        t2 = time.perf_counter()
        webp = _encode(img, "webp")
        t3 = time.perf_counter()
        png = _encode(img, "png")
        t4 = time.perf_counter()
        if k < warmup:
            continue
        samples["refine"].append((t1 - t0) * 1000.0)
        samples["view"].append((t2 - t1) * 1000.0)
        samples["click_to_view"].append((t2 - t0) * 1000.0)
        samples["webp_encode"].append((t3 - t2) * 1000.0)
        samples["click_to_webp"].append((t3 - t0) * 1000.0)
        samples["png_encode"].append((t4 - t3) * 1000.0)
        sizes = {"webp": len(webp), "png": len(png)}
    obj = session.result.objects[session.selected]
    return {"cold": {"set_image_ms": set_image_ms, "ask_ms": ask_ms, "first_view_ms": first_view_ms,
                     "total_ms": set_image_ms + ask_ms + first_view_ms,
                     "ask_timings_ms": dict(first.timings)},
            "clicks": {op: _stats(v) for op, v in samples.items()},
            "view_size": list(img.size), "encoded_bytes_last": sizes,
            "points_after": len(obj.points or []), "area_after": int(obj.area),
            "samples_ms": samples, "session": session}


# ------------------------------------------------------------------------------------------------- HTTP

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GradioPage:
    """A client of the demo's Gradio app that sends events as the browser does (queue join + SSE stream)."""

    def __init__(self, app: Any, url: str) -> None:
        import httpx

        self.url = url.rstrip("/")
        self.http = httpx.Client(timeout=600)
        self.session_hash = uuid.uuid4().hex[:11]
        by_elem = {getattr(b, "elem_id", None): bid for bid, b in app.blocks.items()}
        self.ids = {k: by_elem[k] for k in ("picture", "segment", "view")}
        self.fn: dict[tuple[int, str], int] = {}
        for idx, fn in app.fns.items():
            for target in fn.targets:
                self.fn[(target[0], target[1])] = idx

    def upload(self, path: Path) -> dict[str, Any]:
        with open(path, "rb") as f:
            r = self.http.post(f"{self.url}/gradio_api/upload", files={"files": (path.name, f, "image/jpeg")})
        r.raise_for_status()
        server_path = r.json()[0]
        return {"path": server_path, "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}

    def event(self, elem: str, event: str, data: list[Any], event_data: Any = None) -> list[Any]:
        trigger = self.ids[elem]
        body = {"data": data, "event_data": event_data, "fn_index": self.fn[(trigger, event)],
                "trigger_id": trigger, "session_hash": self.session_hash}
        r = self.http.post(f"{self.url}/gradio_api/queue/join", json=body)
        r.raise_for_status()
        event_id = r.json()["event_id"]
        with self.http.stream("GET", f"{self.url}/gradio_api/queue/data",
                              params={"session_hash": self.session_hash}) as stream:
            for line in stream.iter_lines():
                if not line.startswith("data:"):
                    continue
                msg = json.loads(line[5:])
                if msg.get("event_id") not in (None, event_id):
                    continue
                if msg.get("msg") == "process_completed":
                    if not msg.get("success", False):
                        raise SystemExit(f"the app's {elem}.{event} failed: {msg}")
                    return msg["output"]["data"]
        raise SystemExit(f"the event stream ended without process_completed for {elem}.{event}")

    def fetch(self, filedata: dict[str, Any]) -> bytes:
        url = filedata.get("url") or f"{self.url}/gradio_api/file={filedata['path']}"
        r = self.http.get(url)
        r.raise_for_status()
        return r.content


def bench_http(pipe: SegZeroPipeline, paths: dict[str, Path], folder: Path, clicks: int, warmup: int,
               points: dict[str, list[tuple[int, int]]]) -> dict[str, Any]:
    from segzero_tool.demo.app import MODES, Models, build_app

    models = Models(lambda: pipe).start()
    models.get(timeout=60)
    app = build_app(models, folder=folder)
    app.queue(default_concurrency_limit=1)
    port = _free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, show_error=True)
    add_label = next(k for k, v in MODES.items() if v == "add")
    out: dict[str, Any] = {}
    try:
        for name, path in paths.items():
            page = GradioPage(app, f"http://127.0.0.1:{port}")
            t0 = time.perf_counter()
            filedata = page.upload(path)
            page.event("picture", "change", [None, filedata])
            ask = page.event("segment", "click", [None, QUERY])
            setup_ms = _ms(t0)  # upload + picture.change + ask on the cached embedding
            message = ask[-1]
            if "object" not in str(message):
                raise SystemExit(f"the app's ask did not give an object: {message!r}")
            samples: dict[str, list[float]] = {"click_to_completed": [], "click_to_view_bytes": []}
            nbytes = 0
            for k, (x, y) in enumerate(points[name][: warmup + clicks]):
                t0 = time.perf_counter()
                res = page.event("view", "select", [None, add_label],
                                 {"index": [x, y], "value": None, "selected": True})
                t1 = time.perf_counter()
                body = page.fetch(res[1])
                t2 = time.perf_counter()
                if "Problem" in str(res[-1]) or "Error" in str(res[-1]):
                    raise SystemExit(f"the app answered a click with {res[-1]!r}")
                if k < warmup:
                    continue
                samples["click_to_completed"].append((t1 - t0) * 1000.0)
                samples["click_to_view_bytes"].append((t2 - t0) * 1000.0)
                nbytes = len(body)
            out[name] = {"setup_ms": setup_ms, "clicks": {op: _stats(v) for op, v in samples.items()},
                         "view_bytes_last": nbytes, "view_format": str(res[1].get("path", "")).rsplit(".", 1)[-1],
                         "last_status": res[-1], "samples_ms": samples}
            page.http.close()
            print(f"  HTTP {name}: click -> completed p50 {out[name]['clicks']['click_to_completed']['p50_ms']:.1f} "
                  f"ms, -> view bytes p50 {out[name]['clicks']['click_to_view_bytes']['p50_ms']:.1f} ms", flush=True)
    finally:
        app.close()
    return out


# ------------------------------------------------------------------------------------------------ report

def _fmt(v: float) -> str:
    return f"{v:.0f}" if v >= 1000 else f"{v:.1f}"


def _markdown(results: dict[str, Any], args: argparse.Namespace, threads: int, total_s: float,
              load: dict[str, Any]) -> str:
    archs = list(results)
    sizes = list(results[archs[0]]["in_process"])
    cols = [(a, s) for a in archs for s in sizes]
    short = {v: k for k, v in ARCHS.items()}
    head = " | ".join(f"{short.get(a, a)} {s} p50 | p95" for a, s in cols)
    lines = [
        f"# Demo click speed on CPU (`DemoSession.click` on the cached embedding, 1 object; {threads} torch threads; "
        "random weights, fp32)",
        "",
        f"Photo-like JPEGs {', '.join(sizes)}; scripted reasoner (1 object: box + point); view side 1024; "
        f"{args.clicks} timed clicks (`add`, a different point each, the points adding up) after {args.warmup} "
        f"untimed. Whole run {total_s:.0f} s. Load average (1/5/15 min) before {load['before']}, after "
        f"{load['after']}.",
        "",
        f"| in-process, ms | {head} |",
        "|---|" + "---|---|" * len(cols),
    ]
    labels = {"refine": "**click -> refined mask** (`session.click`: `refine_object` on the cached embedding)",
              "view": "`session.view()` alone (overlay <= 1024 px, PIL)",
              "click_to_view": "**click -> view ready** (`click` + `view`)",
              "webp_encode": "WebP encode of the view (what `gr.Image` sends)",
              "click_to_webp": "click + view + WebP encode",
              "png_encode": "PNG encode of the view (reference; not on the page's path)"}
    for op, label in labels.items():
        lines.append(f"| {label} | " + " | ".join(
            f"{_fmt(results[a]['in_process'][s]['clicks'][op]['p50_ms'])} | "
            f"{_fmt(results[a]['in_process'][s]['clicks'][op]['p95_ms'])}" for a, s in cols) + " |")
    lines += ["", "Cold first segment (caches cleared; one call per picture), ms:", "",
              "| cold | " + " | ".join(f"{short.get(a, a)} {s}" for a, s in cols) + " |",
              "|---|" + "---|" * len(cols)]
    cold_labels = {"set_image_ms": "`set_image(path)` (JPEG decode + hash)",
                   "ask_ms": "`ask(query)` (scripted answer + encoder + decoder)",
                   "first_view_ms": "first `view()`", "total_ms": "**total: picture -> first overlay**"}
    for key, label in cold_labels.items():
        lines.append(f"| {label} | " + " | ".join(_fmt(results[a]["in_process"][s]["cold"][key]) for a, s in cols)
                     + " |")
    lines.append("| `result.timings['segment']` of the ask | " + " | ".join(
        _fmt(results[a]["in_process"][s]["cold"]["ask_timings_ms"].get("segment", float("nan"))) for a, s in cols)
        + " |")
    if any(results[a].get("http") for a in archs):
        lines += ["", "Through the running Gradio app (`build_app`, loopback HTTP, Gradio's queue protocol as the "
                  "browser speaks it; the browser's own decode / paint not included), ms:", "",
                  f"| HTTP, ms | {head} |", "|---|" + "---|---|" * len(cols)]
        http_labels = {"click_to_completed": "`view.select` event: join -> `process_completed` (handler: click + "
                       "render + WebP to Gradio's cache)",
                       "click_to_view_bytes": "**click -> view bytes** (+ GET of the WebP)"}
        for op, label in http_labels.items():
            lines.append(f"| {label} | " + " | ".join(
                f"{_fmt(results[a]['http'][s]['clicks'][op]['p50_ms'])} | "
                f"{_fmt(results[a]['http'][s]['clicks'][op]['p95_ms'])}" for a, s in cols) + " |")
    else:
        lines += ["", "Through the Gradio app over HTTP: not measured in this run (`--no-http`)."]
    return "\n".join(lines) + "\n"


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archs", default="tiny,large", help="comma-separated: tiny, large (or any sam2_config arch)")
    ap.add_argument("--sizes", default="1920x1080,1280x720", help="comma-separated WxH of the JPEGs")
    ap.add_argument("--clicks", type=int, default=20, help="timed clicks per picture (default 20)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed clicks first (default 2)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch CPU threads (default: all cores)")
    ap.add_argument("--no-http", dest="http", action="store_false", help="skip the Gradio app over HTTP")
    ap.add_argument("--no-write", action="store_true", help="print only; do not write results/")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(max(1, args.threads))
    sizes = [s.strip().lower() for s in args.sizes.split(",") if s.strip()]
    archs = [ARCHS.get(a.strip(), a.strip()) for a in args.archs.split(",") if a.strip()]
    load = {"before": _load()}
    t_start = time.perf_counter()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="demo-click-") as tmp:
        work = Path(tmp)
        paths = {}
        for s in sizes:
            w, h = (int(v) for v in s.split("x"))
            paths[s] = work / f"photo-{s}.jpg"
            paths[s].write_bytes(_photo_like(w, h))
        for arch in archs:
            seg, params_m, build_s = _build(arch, "cpu")
            print(f"[{arch}] {params_m:.1f}M parameters, built in {build_s:.1f} s", flush=True)
            pipe = SegZeroPipeline(ScriptedReasoner(ANSWER), seg)
            entry: dict[str, Any] = {"params_m": params_m, "build_s": build_s, "in_process": {}, "http": None}
            points: dict[str, list[tuple[int, int]]] = {}
            for s, path in paths.items():
                r = bench_session(pipe, path, work / f"session-{arch}-{s}", args.clicks, args.warmup)
                points[s] = _click_points(r.pop("session"), args.warmup + args.clicks)
                entry["in_process"][s] = r
                c = r["clicks"]
                print(f"[{arch}] {s}: cold ask {r['cold']['ask_ms']:.0f} ms; refine p50 {c['refine']['p50_ms']:.1f} "
                      f"(p95 {c['refine']['p95_ms']:.1f}), click->view p50 {c['click_to_view']['p50_ms']:.1f} "
                      f"(p95 {c['click_to_view']['p95_ms']:.1f}) ms", flush=True)
            if args.http:
                # the embeddings of the last picture are cached; re-warm the others (HTTP times clicks, not encoders)
                for path in paths.values():
                    pipe.segment_by_prompts(path, [{"box": [10, 10, 100, 100]}])
                entry["http"] = bench_http(pipe, paths, work / f"app-{arch}", args.clicks, args.warmup, points)
            results[arch] = entry
            del seg, pipe
    total_s = time.perf_counter() - t_start
    load["after"] = _load()
    md = _markdown(results, args, torch.get_num_threads(), total_s, load)
    print(md)
    if not args.no_write:
        write_result("demo_click_cpu", {"image_sizes": sizes, "clicks": args.clicks, "warmup": args.warmup,
                                        "torch_threads": torch.get_num_threads(), "total_s": total_s,
                                        "loadavg_1_5_15_before": load["before"],
                                        "loadavg_1_5_15_after": load["after"], "answer": ANSWER, "archs": results},
                     md)
        print(f"total {total_s:.0f} s; wrote results/demo_click_cpu.json and .md", flush=True)


if __name__ == "__main__":
    main()
