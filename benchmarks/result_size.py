"""How big the MCP tool result is, with and without the server's result budget.

For object counts x image sizes x mask detail x mask encodings, builds a
:class:`~segzero_tool.result.SegmentationResult` (objects on a grid, each box 80% of its cell; masks
either filling the box or a random 50% speckle inside it: the worst case for RLE) and encodes it with
the server's own :func:`segzero_tool.mcp_server.results.encode_result` under the default budget
(``--max-result-bytes``, 512 KiB), exactly as the tool does. It records:

* **result bytes**: the JSON of the tool result as an MCP client receives it (the ``CallToolResult``
  built the way the tool builds it, dumped as the wire-shaped dict, ``json.dumps``, UTF-8);
* **text chars**: the length of the text content (:func:`segzero_tool.summary.summarize`, < 8,000);
* **masks left out**: objects whose inline mask did not fit (``masks_left_out``);
* **unbounded bytes**: ``len(json.dumps(result.to_dict(encoding)))``, the whole result without a
  budget, for comparison.

A few points also go through a real in-process MCP client (the SDK's in-memory connection, the
``segment_by_reasoning`` tool of ``create_server`` with a scripted reasoner and a segmenter that
draws the same kind of masks); the bytes the client received are compared with
``encode_result`` of the very result the server encoded.

Usage::

    python benchmarks/result_size.py [--counts 1,5,10,20,50,100] [--sizes 640x480,...] [--no-client-checks]
                                     [--skip-polygons-speckle-above-mp 40] [--no-write]

Writes ``results/result_size.{json,md}``. No model, no network; ~4 min on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402

from segzero_tool.mcp_server import compat  # noqa: E402
from segzero_tool.mcp_server.results import encode_png, encode_result, image_b64  # noqa: E402
from segzero_tool.mcp_server.service import BUDGET_HINT, FORMAT_HINT  # noqa: E402
from segzero_tool.mcp_server.settings import ServerSettings  # noqa: E402
from segzero_tool.parsing import ParseStatus  # noqa: E402
from segzero_tool.result import SegmentationResult, SegmentedObject  # noqa: E402
from segzero_tool.segmenters.base import Segmenter, SegmenterOutput  # noqa: E402
from segzero_tool.summary import TEXT_BUDGET  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
COFFEE = REPO / "examples" / "coffee.png"  # the picture under the overlay, scaled to each size
COUNTS = [1, 5, 10, 20, 50, 100]
#: The four sizes of the brief plus 1210x907 (1.1 MP, a typical downscaled photo).
SIZES = [(640, 480), (1210, 907), (1920, 1080), (3000, 2000), (6000, 6000)]
DETAILS = ["box", "speckle"]
#: (mask_encoding, include_overlay)
VARIANTS = [("rle", False), ("rle", True), ("polygons", False), ("none", False)]
QUERY = "Which things on the table could I use to carry a drink to another room?"
REASONING = ("The table holds several cups, mugs, a tray and a few small objects. A tray or a mug with a handle "
             "can carry a drink; the small objects cannot. I list every candidate with its box and a point inside "
             "it so that the user can choose. ") * 3
#: Result ids of the server's store have this many characters (uuid4 hex, cut).
RID = "0123456789abcdef"
#: Through the in-process MCP client: (objects, (w, h), detail, encoding, include_overlay).
CLIENT_POINTS = [
    (50, (1210, 907), "speckle", "rle", True),
    (50, (3000, 2000), "speckle", "polygons", False),
    (100, (1920, 1080), "box", "rle", True),
    (10, (6000, 6000), "speckle", "rle", False),
    (50, (640, 480), "box", "none", False),
]


# --- synthetic results -------------------------------------------------------------------------------


def grid_boxes(n: int, w: int, h: int) -> list[tuple[int, int, int, int]]:
    """``n`` equal boxes (inclusive corners) on a grid of cells with the image's aspect, each box 80%
    of its cell's width and height (10% margins)."""
    cols = max(1, math.ceil(math.sqrt(n * w / h)))
    rows = math.ceil(n / cols)
    cw, ch = w / cols, h / rows
    bw, bh = max(1, int(cw * 0.8)), max(1, int(ch * 0.8))
    out = []
    for i in range(n):
        r, c = divmod(i, cols)
        x1, y1 = int(c * cw + 0.1 * cw), int(r * ch + 0.1 * ch)
        out.append((x1, y1, x1 + bw - 1, y1 + bh - 1))
    return out


def box_masks(boxes: Sequence[tuple[int, int, int, int]], w: int, h: int, detail: str, seed: int = 0) -> list[np.ndarray]:
    """One ``(h, w)`` bool mask per box, as read-only views of one ``(2h, 2w)`` canvas (the grid's boxes
    are all the same size), so that 100 masks of 36 MP take 144 MB instead of 3.6 GB. Speckle: the
    same random 50% pattern in every box (its RLE and polygons are as large as distinct patterns')."""
    x1, y1, x2, y2 = boxes[0]
    bw, bh = x2 - x1 + 1, y2 - y1 + 1
    canvas = np.zeros((2 * h, 2 * w), bool)
    block = np.ones((bh, bw), bool) if detail == "box" else np.random.default_rng(seed).random((bh, bw)) < 0.5
    canvas[h : h + bh, w : w + bw] = block
    canvas.flags.writeable = False
    return [canvas[h - b[1] : 2 * h - b[1], w - b[0] : 2 * w - b[0]] for b in boxes]


def picture(w: int, h: int) -> np.ndarray:
    return np.asarray(Image.open(COFFEE).convert("RGB").resize((w, h), Image.BILINEAR))


def make_result(n: int, w: int, h: int, detail: str, image: np.ndarray) -> SegmentationResult:
    boxes = grid_boxes(n, w, h)
    masks = box_masks(boxes, w, h, detail)
    objects = [SegmentedObject(box=b, points=(((b[0] + b[2]) // 2, (b[1] + b[3]) // 2),), score=0.9, mask=m,
                               frame_box=tuple(round(v * 840 / s, 1) for v, s in zip(b, (w, h, w, h), strict=True)),
                               label=f"candidate {i}") for i, (b, m) in enumerate(zip(boxes, masks, strict=True))]
    raw = f"<think>{REASONING}</think><answer>[...{n} objects...]</answer>"
    return SegmentationResult(query=QUERY, prompt_format="visionreasoner", reasoning=REASONING, raw_output=raw,
                              parse_status=ParseStatus.OK, image_size=(w, h), objects=objects,
                              timings={"resize": 5.0, "reason": 4000.0, "parse": 0.1, "segment": 50.0 * n,
                                       "total": 4000.0 + 50.0 * n},
                              reasoner="visionreasoner-7b", segmenter="sam2.1-hiera-large", image=image)


# --- the tool result as the client receives it --------------------------------------------------------


def tool_result_dict(enc: Any) -> dict[str, Any]:
    """The ``CallToolResult`` the tool returns for ``enc``, as the wire-shaped dict a client reads."""
    content: list[Any] = [compat.TextContent(type="text", text=enc.text)]
    if enc.overlay is not None:
        data, mime = enc.overlay
        content.append(compat.ImageContent(type="image", data=image_b64(data), mimeType=mime))
    content.extend(compat.ResourceLink(type="resource_link", **link) for link in enc.links)
    return compat.dump(compat.tool_result(content, enc.output.model_dump(mode="json")))


def wire_bytes(result_dict: dict[str, Any]) -> int:
    return len(json.dumps(result_dict, ensure_ascii=False).encode("utf-8"))


def encode(result: SegmentationResult, encoding: str, *, overlay: bool, budget: int, stored: dict[str, Any] | None,
           pic: Image.Image | None, png: bytes | None, s: ServerSettings, rid: str = RID) -> tuple[Any, float]:
    """``encode_result`` with the arguments the service passes (``SegZeroService._encode``)."""
    t0 = time.perf_counter()
    enc = encode_result(result, rid, mask_encoding=encoding, max_bytes=budget, picture=pic if overlay else None,
                        picture_png=png, overlay_max_bytes=s.overlay_max_bytes, stored=stored,
                        resource_links=s.resource_links, budget_hint=BUDGET_HINT, format_hint=FORMAT_HINT,
                        overlay_max_side=s.overlay_max_side)
    return enc, (time.perf_counter() - t0) * 1000.0


def measure_result(result: SegmentationResult, detail: str, args: argparse.Namespace,
                   s: ServerSettings) -> list[dict[str, Any]]:
    """Every variant of one result; ``to_dict`` is computed once per encoding and reused."""
    w, h = result.image_size
    mp = w * h / 1e6
    rows = []
    dicts: dict[str, dict[str, Any]] = {}
    pic = png = None
    for encoding, overlay in VARIANTS:
        row: dict[str, Any] = {"encoding": encoding, "include_overlay": overlay}
        if encoding == "polygons" and detail == "speckle" and mp > args.skip_polygons_speckle_above_mp:
            row["skipped"] = f"polygons of speckle above {args.skip_polygons_speckle_above_mp:g} MP"
            rows.append(row)
            continue
        if encoding not in dicts:
            t0 = time.perf_counter()
            dicts[encoding] = SegmentationResult.to_dict(result, encoding)  # type: ignore[arg-type]
            row["to_dict_ms"] = (time.perf_counter() - t0) * 1000.0
        d = dicts[encoding]
        row["unbounded_bytes"] = len(json.dumps(d))
        if overlay and pic is None:
            t0 = time.perf_counter()
            pic = result.overlay(max_side=s.overlay_max_side)
            png = encode_png(pic)
            row["overlay_ms"] = (time.perf_counter() - t0) * 1000.0
        # encode_result calls result.to_dict(encoding) unless given the stored RLE: hand it the one above
        object.__setattr__(result, "to_dict", lambda enc="rle", **_kw: dicts[enc])
        try:
            enc, ms = encode(result, encoding, overlay=overlay, budget=args.max_result_bytes,
                             stored=d if encoding == "rle" else None, pic=pic, png=png, s=s)
        finally:
            object.__delattr__(result, "to_dict")
        wire = tool_result_dict(enc)
        key = {"rle": "rle", "polygons": "polygons"}.get(encoding)
        row.update({
            "result_bytes": wire_bytes(wire), "estimate_bytes": enc.wire_bytes(), "text_chars": len(enc.text),
            "masks_left_out": len(enc.output.masks_left_out),
            "masks_inline": sum(getattr(o, key) is not None for o in enc.output.objects) if key else 0,
            "overlay_inline": None if enc.overlay is None else {"mime": enc.overlay[1],
                                                                 "base64_bytes": 4 * ((len(enc.overlay[0]) + 2) // 3)},
            "overlay_png_base64_bytes": None if png is None or not overlay else 4 * ((len(png) + 2) // 3),
            "notes": list(enc.output.notes), "encode_ms": ms,
            "within_budget": wire_bytes(wire) <= args.max_result_bytes, "text_ok": len(enc.text) < TEXT_BUDGET,
            "uris_in_text": all(u in enc.text for u in (enc.output.result_uri, enc.output.union_mask_uri,
                                                        enc.output.overlay_uri)),
        })
        rows.append(row)
    return rows


# --- through a real in-process MCP client ------------------------------------------------------------------


class GridSegmenter(Segmenter):
    """Fills each prompt's box: completely (``box``) or with a random 50% speckle (``speckle``)."""

    name = "grid"
    model_id = "grid"

    def __init__(self, detail: str) -> None:
        self.detail = detail

    def segment(self, image: np.ndarray, prompts: Sequence[Any]) -> SegmenterOutput:
        h, w = image.shape[:2]
        rng = np.random.default_rng(0)
        masks = np.zeros((len(prompts), h, w), bool)
        for k, p in enumerate(prompts):
            x1, y1, x2, y2 = (int(v) for v in p.box)
            shape = (y2 - y1 + 1, x2 - x1 + 1)
            masks[k, y1 : y2 + 1, x1 : x2 + 1] = True if self.detail == "box" else rng.random(shape) < 0.5
        return SegmenterOutput(masks, np.full(len(prompts), 0.9, np.float32))


def frame_answer(n: int, w: int, h: int) -> str:
    """A VisionReasoner answer whose boxes (840x840 frame pixels) are :func:`grid_boxes` of the image."""
    objs = []
    for i, (x1, y1, x2, y2) in enumerate(grid_boxes(n, w, h)):
        fx1, fy1, fx2, fy2 = (round(v * 840 / s) for v, s in zip((x1, y1, x2, y2), (w, h, w, h), strict=True))
        objs.append({"bbox_2d": [fx1, fy1, fx2, fy2], "point_2d": [(fx1 + fx2) // 2, (fy1 + fy2) // 2],
                     "label": f"candidate {i}"})
    return f"<think>{REASONING}</think><answer>{json.dumps(objs)}</answer>"


@contextlib.asynccontextmanager
async def connect_memory(server: Any) -> AsyncIterator[Any]:
    """A client session over the SDK's in-memory streams (mcp 1.x and 2.x)."""
    if compat.SDK_MAJOR >= 2:
        from mcp import Client

        async with Client(server) as client:
            yield client
    else:
        from mcp.shared.memory import create_connected_server_and_client_session

        async with create_connected_server_and_client_session(server) as session:
            yield session


async def client_point(work: Path, n: int, size: tuple[int, int], detail: str, encoding: str, overlay: bool,
                       budget: int) -> dict[str, Any]:
    sys.path.insert(0, str(REPO / "tests"))
    from scripted import ScriptedReasoner

    from segzero_tool.mcp_server import create_server
    from segzero_tool.pipeline import SegZeroPipeline

    w, h = size
    path = work / f"image-{w}x{h}.png"
    if not path.exists():
        Image.fromarray(picture(w, h)).save(path, compress_level=1)
    settings = ServerSettings(roots=(work,), max_objects=max(50, n), max_result_bytes=budget, log_level="WARNING")
    pipe = SegZeroPipeline.from_pretrained(ScriptedReasoner(frame_answer(n, w, h)), GridSegmenter(detail), device="cpu")
    server = create_server(settings, pipeline=pipe)
    svc = server.segzero
    captured: list[SegmentationResult] = []
    encode_in_server = svc._encode

    def capture(result: SegmentationResult, mask_encoding: str, include_overlay: bool) -> Any:
        captured.append(result)
        return encode_in_server(result, mask_encoding, include_overlay)

    svc._encode = capture
    t0 = time.perf_counter()
    async with connect_memory(server) as session:
        res = await session.call_tool("segment_by_reasoning", {"image": path.name, "query": QUERY,
                                                               "mask_encoding": encoding, "include_overlay": overlay})
    call_ms = (time.perf_counter() - t0) * 1000.0
    got = compat.dump(res)
    if got.get("isError"):
        raise RuntimeError(f"the tool call failed: {got['content']}")
    out = got["structuredContent"]
    texts = [c["text"] for c in got["content"] if c["type"] == "text"]
    # the same result, encoded directly as the service does (overlay picture and PNG included)
    (result,) = captured
    pic = result.overlay(max_side=settings.overlay_max_side)
    png = encode_png(pic)
    direct, _ = encode(result, encoding, overlay=overlay, budget=budget, stored=result.to_dict("rle"), pic=pic,
                       png=png, s=settings, rid=out["result_id"])
    svc.close()
    return {
        "objects": n, "width": w, "height": h, "detail": detail, "encoding": encoding, "include_overlay": overlay,
        "client_bytes": wire_bytes(got), "direct_bytes": wire_bytes(tool_result_dict(direct)),
        "estimate_bytes": direct.wire_bytes(), "text_chars": len(texts[0]) if texts else 0, "text_blocks": len(texts),
        "masks_left_out": len(out["masks_left_out"]), "objects_returned": len(out["objects"]),
        "unbounded_bytes": len(json.dumps(result.to_dict(encoding))),  # type: ignore[arg-type]
        "within_budget": wire_bytes(got) <= budget, "call_ms": call_ms,
    }


# --- report --------------------------------------------------------------------------------------------------


def human(n: int | None) -> str:
    if n is None:
        return "-"
    if n >= 1024 * 1024:
        return f"{n / 1024 / 1024:.1f} MiB"
    return f"{n / 1024:.1f} KiB"


def _cell(row: dict[str, Any] | None) -> str:
    if row is None:
        return "-"
    if "skipped" in row:
        return "skipped"
    left = f", {row['masks_left_out']} out" if row["encoding"] != "none" else ""
    return f"{human(row['result_bytes'])}{left}"


def markdown(points: list[dict[str, Any]], client: list[dict[str, Any]], args: argparse.Namespace,
             total_s: float) -> str:
    budget = args.max_result_bytes
    out = [f"# Size of the MCP tool result (budget {budget:,} bytes = {budget / 1024:g} KiB)\n",
           f"`encode_result` with the server's defaults (`--max-result-bytes {budget}`, text < {TEXT_BUDGET:,} chars, "
           "no resource links), objects on a grid (boxes 80% of their cells), masks filling each box (`box`) or a "
           "random 50% speckle inside it (`speckle`, the worst case for RLE). Each cell: bytes of the JSON tool "
           "result as a client receives it, and how many inline masks were left out (`N out`; they stay readable "
           "as `mask_uri` resources and in `result.json`). `unbounded` = `len(json.dumps(result.to_dict(enc)))`, "
           "the same result without a budget. `text` = the longest text content of the row's four results "
           f"(the summary's bound: {TEXT_BUDGET:,} chars). Whole run {total_s:.0f} s.\n"]
    for detail in DETAILS:
        out.append(f"\n## {detail} masks\n")
        out.append("| image | objects | rle | rle + overlay | polygons | none | text chars | unbounded rle | "
                   "unbounded polygons | unbounded none |")
        out.append("|---|---|---|---|---|---|---|---|---|---|")
        for (w, h) in args.sizes:
            for n in args.counts:
                rows = {(r["encoding"], r["include_overlay"]): r for r in points
                        if r["detail"] == detail and r["width"] == w and r["height"] == h and r["objects"] == n}
                if not rows:
                    continue
                texts = [r["text_chars"] for r in rows.values() if "text_chars" in r]
                ub = {e: next((r.get("unbounded_bytes") for (e2, _), r in rows.items() if e2 == e), None)
                      for e in ("rle", "polygons", "none")}
                out.append(f"| {w}x{h} | {n} | {_cell(rows.get(('rle', False)))} | {_cell(rows.get(('rle', True)))} | "
                           f"{_cell(rows.get(('polygons', False)))} | {_cell(rows.get(('none', False)))} | "
                           f"{max(texts) if texts else '-'} | {human(ub['rle'])} | {human(ub['polygons'])} | "
                           f"{human(ub['none'])} |")
    done = [r for r in points if "result_bytes" in r]
    over = [r for r in done if not r["within_budget"]]
    long_text = [r for r in done if r["text_chars"] > TEXT_BUDGET]
    at_bound = [r for r in done if r["text_chars"] == TEXT_BUDGET]
    cut_uris = [r for r in done if not r["uris_in_text"]]
    worst = max(done, key=lambda r: r["result_bytes"], default=None)
    out.append(f"\n{len(done)} results: {len(over)} over the budget, {len(long_text)} with text over {TEXT_BUDGET:,} "
               f"chars, {len(at_bound)} with text of exactly {TEXT_BUDGET:,} chars, {len(cut_uris)} whose text lacks a "
               f"complete result / union mask / overlay URI; largest {worst['result_bytes']:,} bytes "
               f"({worst['objects']} {worst['detail']} objects, {worst['width']}x{worst['height']}, {worst['encoding']}"
               f"{' + overlay' if worst['include_overlay'] else ''}); longest text "
               f"{max(r['text_chars'] for r in done):,} chars.\n" if worst else "\n")
    if cut_uris:
        out.append("Texts lacking a complete URI (the summary was cut at its bound inside the last line): "
                   + "; ".join(f"{r['objects']} {r['detail']} objects, {r['width']}x{r['height']}, {r['encoding']}"
                               f"{' + overlay' if r['include_overlay'] else ''} ({r['text_chars']} chars)"
                               for r in cut_uris) + ".\n")
    skipped = [r for r in points if "skipped" in r]
    if skipped:
        out.append(f"Skipped: {len(skipped)} results ({skipped[0]['skipped']}).\n")
    if client:
        out.append("\n## Through an in-process MCP client\n")
        out.append("`segment_by_reasoning` of `create_server` (scripted reasoner answering the grid's boxes in frame "
                   "pixels, a segmenter drawing the same kind of masks, the image saved as PNG in an allowed root), "
                   "called over the SDK's in-memory connection. `client` = bytes of the result the client received "
                   "(`json.dumps` of the wire-shaped dict, UTF-8); `direct` = `encode_result` of the very result the "
                   "server encoded; `estimate` = `Encoded.wire_bytes()`, what the budget is checked against.\n")
        out.append("| image | objects | masks | encoding | overlay | client bytes | direct bytes | estimate | text chars "
                   "| masks left out | unbounded | call ms |")
        out.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in client:
            out.append(f"| {r['width']}x{r['height']} | {r['objects']} | {r['detail']} | {r['encoding']} | "
                       f"{'yes' if r['include_overlay'] else 'no'} | {r['client_bytes']:,} | {r['direct_bytes']:,} | "
                       f"{r['estimate_bytes']:,} | {r['text_chars']:,} | {r['masks_left_out']} | "
                       f"{human(r['unbounded_bytes'])} | {r['call_ms']:.0f} |")
    return "\n".join(out) + "\n"


def _size(text: str) -> tuple[int, int]:
    w, h = text.lower().split("x")
    return int(w), int(h)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--counts", type=lambda s: [int(x) for x in s.split(",") if x.strip()], default=COUNTS,
                    help="object counts (default 1,5,10,20,50,100)")
    ap.add_argument("--sizes", type=lambda s: [_size(x) for x in s.split(",") if x.strip()], default=SIZES,
                    help="image sizes WxH (default 640x480,1210x907,1920x1080,3000x2000,6000x6000)")
    ap.add_argument("--details", default="box,speckle", help="mask detail: box and/or speckle (default both)")
    ap.add_argument("--max-result-bytes", type=int, default=ServerSettings().max_result_bytes,
                    help="the result budget (default: the server's, 524288)")
    ap.add_argument("--skip-polygons-speckle-above-mp", type=float, default=float("inf"),
                    help="skip polygons of speckled masks on images larger than this many megapixels (default: none)")
    ap.add_argument("--client-checks", action=argparse.BooleanOptionalAction, default=True,
                    help="also call the tool through an in-process MCP client at a few points (default on)")
    ap.add_argument("--no-write", action="store_true", help="print only; do not write results/")
    args = ap.parse_args()
    details = [d.strip() for d in args.details.split(",") if d.strip()]
    if not set(details) <= set(DETAILS):
        ap.error("--details takes box and/or speckle")
    settings = ServerSettings()
    load_before = _loadavg()
    t_start = time.perf_counter()
    points: list[dict[str, Any]] = []
    for (w, h) in args.sizes:
        image = picture(w, h)
        for detail in details:
            for n in args.counts:
                t0 = time.perf_counter()
                result = make_result(n, w, h, detail, image)
                rows = measure_result(result, detail, args, settings)
                for r in rows:
                    r.update({"objects": n, "width": w, "height": h, "detail": detail})
                points += rows
                cells = "  ".join(f"{r['encoding']}{'+ov' if r['include_overlay'] else ''} "
                                  + ("skipped" if "skipped" in r else
                                     f"{r['result_bytes']:>7} B/{r['masks_left_out']} out (unbounded "
                                     f"{r['unbounded_bytes']:>9})") for r in rows)
                print(f"{w}x{h} {detail:<7} n={n:<3} text {max(r.get('text_chars', 0) for r in rows):>4}  {cells}  "
                      f"[{time.perf_counter() - t0:.1f} s]", flush=True)
                del result
        del image
    client: list[dict[str, Any]] = []
    if args.client_checks:
        with tempfile.TemporaryDirectory(prefix="segzero-result-size-") as tmp:
            for n, size, detail, encoding, overlay in CLIENT_POINTS:
                row = anyio.run(client_point, Path(tmp), n, size, detail, encoding, overlay, args.max_result_bytes)
                print(f"client {row['width']}x{row['height']} n={n} {detail} {encoding}{'+ov' if overlay else ''}: "
                      f"client {row['client_bytes']} B, direct {row['direct_bytes']} B, estimate {row['estimate_bytes']} B, "
                      f"text {row['text_chars']}, left out {row['masks_left_out']}", flush=True)
                client.append(row)
    total_s = time.perf_counter() - t_start
    md = markdown(points, client, args, total_s)
    print(md)
    if not args.no_write:
        payload = {"max_result_bytes": args.max_result_bytes, "text_budget_chars": TEXT_BUDGET,
                   "settings": {"overlay_max_side": settings.overlay_max_side,
                                "overlay_max_bytes": settings.overlay_max_bytes,
                                "resource_links": settings.resource_links},
                   "layout": "grid; boxes 80% of their cells; speckle = random 50% fill inside each box "
                             "(one pattern shared by all boxes of a result)",
                   "picture": "examples/coffee.png scaled to each size (under the overlay)",
                   "counts": args.counts, "sizes": [f"{w}x{h}" for w, h in args.sizes], "details": details,
                   "loadavg_before": load_before, "loadavg_after": _loadavg(), "total_s": total_s,
                   "points": points, "client_checks": client,
                   "median_encode_ms": statistics.median(r["encode_ms"] for r in points if "encode_ms" in r)}
        write_result("result_size", payload, md)


def _loadavg() -> list[float] | None:
    try:
        return list(os.getloadavg())
    except OSError:
        return None


if __name__ == "__main__":
    main()
