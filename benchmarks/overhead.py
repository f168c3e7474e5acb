"""Our own overhead around the models: image load, resize, prompt + parse + back-projection,
RLE, overlay and saving, for 640x480, 1920x1080 and 4000x3000 images.

Usage::

    python benchmarks/overhead.py [--objects 3] [--repeat 5] [--model-ms MS]

The share of the models' time uses ``--model-ms`` if given, else the SAM2 hiera-large figures in
``results/sam2_cpu.json`` (encoder + one decoder call per object, measured by ``sam2_speed.py``)
when that file exists. That leaves the reasoner out, so the share is an upper bound.
Writes ``results/overhead.{json,md}``.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, timeit, write_result  # noqa: E402

from segzero_tool.frame import ReasoningFrame  # noqa: E402
from segzero_tool.images import load_image  # noqa: E402
from segzero_tool.parsing import ParseStatus, parse_output  # noqa: E402
from segzero_tool.pipeline import project_objects  # noqa: E402
from segzero_tool.prompts import build_prompt  # noqa: E402
from segzero_tool.result import SegmentationResult  # noqa: E402

SIZES = [(640, 480), (1920, 1080), (4000, 3000)]


def _photo_like(w: int, h: int) -> bytes:
    """A JPEG with smooth gradients and noise (compresses like a photo)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    base = np.stack([xx / w * 255, yy / h * 255, (xx + yy) / (w + h) * 255], axis=-1)
    img = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _answer(n: int) -> str:
    items = []
    for i in range(n):
        x1, y1 = 60 + 200 * i, 100 + 50 * i
        items.append(f'{{"bbox_2d": [{x1},{y1},{x1 + 180},{y1 + 300}], "point_2d": [{x1 + 90},{y1 + 150}]}}')
    return "<think>" + "The object on the left is a glass of water. " * 20 + "</think><answer>[" + ", ".join(items) + "]</answer>"


def _masks_for(objects, w: int, h: int) -> None:
    yy, xx = np.mgrid[:h, :w]
    for o in objects:
        x1, y1, x2, y2 = o.box
        cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, max(1, (x2 - x1) / 2), max(1, (y2 - y1) / 2)
        o.mask = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
        o.score = 0.9


def model_ms_from_results(n_objects: int) -> float | None:
    p = RESULTS / "sam2_cpu.json"
    if not p.exists():
        return None
    data = json.loads(p.read_text())
    large = data["archs"].get("hiera-large")
    if not large:
        return None
    return large["encoder_ms"] + n_objects * large["decoder_ms_per_object"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--objects", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--model-ms", type=float, default=None)
    args = ap.parse_args()

    model_ms = args.model_ms or model_ms_from_results(args.objects)
    rows = []
    for w, h in SIZES:
        data = _photo_like(w, h)
        loaded = load_image(data)
        frame = ReasoningFrame((w, h))
        text = _answer(args.objects)
        parsed = parse_output(text)
        assert parsed.status is ParseStatus.OK
        objects, _ = project_objects(parsed, frame)
        _masks_for(objects, w, h)
        result = SegmentationResult(query="q", prompt_format="visionreasoner", reasoning=parsed.think,
                                    raw_output=text, parse_status=parsed.status, image_size=(w, h),
                                    objects=objects, image=loaded.array)
        pil = loaded.to_pil()

        def parse_project():
            build_prompt("What can I have if I'm thirsty?")
            project_objects(parse_output(text), frame)

        stages = {
            "load (JPEG decode + RGB)": timeit(lambda: load_image(data), repeat=args.repeat),
            "resize to 840x840": timeit(lambda: frame.resize_image(pil), repeat=args.repeat),
            "prompt + parse + back-project": timeit(parse_project, repeat=args.repeat),
            "RLE (objects + union)": timeit(lambda: result.to_dict("rle"), repeat=args.repeat),
            "overlay (<=1024 px)": timeit(lambda: result.overlay(max_side=1024), repeat=args.repeat),
        }
        pipeline_ms = sum(s["median_ms"] for s in stages.values())
        with tempfile.TemporaryDirectory() as d:
            save = timeit(lambda: result.save(d), repeat=max(2, args.repeat // 2))
        rows.append({"size": f"{w}x{h}", "stages": stages, "pipeline_overhead_ms": pipeline_ms,
                     "save_ms": save["median_ms"],
                     "share_of_model_time": (pipeline_ms / model_ms) if model_ms else None})
        print(f"{w}x{h}: overhead {pipeline_ms:.1f} ms, save {save['median_ms']:.1f} ms", flush=True)

    head = ["stage"] + [r["size"] for r in rows]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for stage in rows[0]["stages"]:
        lines.append("| " + stage + " | " + " | ".join(f"{r['stages'][stage]['median_ms']:.1f}" for r in rows) + " |")
    lines.append("| **our overhead (load to RLE + overlay)** | " + " | ".join(f"**{r['pipeline_overhead_ms']:.1f}**" for r in rows) + " |")
    lines.append("| writing result.json + PNGs + overlay (CLI `--out`) | " + " | ".join(f"{r['save_ms']:.1f}" for r in rows) + " |")
    if model_ms:
        lines.append(f"| share of model time ({model_ms / 1000:.1f} s) | " + " | ".join(
            f"{100 * r['share_of_model_time']:.2f}%" for r in rows) + " |")
    md = (f"# Overhead around the models (ms, median of {args.repeat}; {args.objects} objects)\n\n"
          + "\n".join(lines) + "\n\n"
          + ("Model time = SAM2 hiera-large encoder + one decoder call per object on the same CPU "
             "(`sam2_speed.py`); the reasoner is not counted, so the share is an upper bound.\n" if model_ms else ""))
    write_result("overhead", {"objects": args.objects, "model_ms": model_ms, "rows": rows}, md)
    print(md)


if __name__ == "__main__":
    main()
