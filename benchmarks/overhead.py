"""Our own overhead around the models: image load, resize, prompt + parse + back-projection,
RLE, overlay and saving, for 640x480, 1920x1080 and 4000x3000 images.

Usage::

    python benchmarks/overhead.py [--objects 3] [--repeat 15] [--model-ms MS] [--baseline-rev REV] [--no-write]

Each stage is timed ``--repeat`` times after one warm-up; the tables give the median wall time and
the median CPU time of the calling thread (``time.thread_time``: on a shared machine it moves much
less than wall time, since waiting for a core is not counted). With ``--baseline-rev REV`` the
image loading, RLE and overlay code of that commit (``images.py``, ``masks.py``, ``overlay.py`` and
``result.py``, read with ``git show``) is timed as well, alternating with the current code call by call so that both see
the same load, and the tables show ``before -> after``. Resizing and parsing are not ours to change
here and are timed once.

The share of the models' time uses ``--model-ms`` if given, else the SAM2 hiera-large figures in
``results/sam2_cpu.json`` (encoder + one decoder call per object, measured by ``sam2_speed.py``)
when that file exists. That leaves the reasoner out, so the share is an upper bound.
Writes ``results/overhead.{json,md}``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, cpu_model, write_result  # noqa: E402

import segzero_tool.masks as masks_module  # noqa: E402
import segzero_tool.overlay as overlay_module  # noqa: E402
from segzero_tool.frame import ReasoningFrame  # noqa: E402
from segzero_tool.images import load_image  # noqa: E402
from segzero_tool.parsing import ParseStatus, parse_output  # noqa: E402
from segzero_tool.pipeline import project_objects  # noqa: E402
from segzero_tool.prompts import build_prompt  # noqa: E402
from segzero_tool.result import SegmentationResult  # noqa: E402

SIZES = [(640, 480), (1920, 1080), (4000, 3000)]
REPO = Path(__file__).resolve().parents[1]
#: The stages whose code ``--baseline-rev`` swaps for the older commit's.
OURS = ("load (JPEG decode + RGB)", "RLE (objects + union)", "overlay (<=1024 px)")


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


def _baseline(rev: str) -> dict[str, ModuleType]:
    """``images``, ``masks``, ``overlay`` and ``result`` as they were at ``rev`` (their relative imports
    resolve to the current package; :func:`_swapped` points ``masks.rle_encode`` and
    ``overlay.draw_overlay`` at the old ones)."""
    out = {}
    folder = Path(tempfile.mkdtemp())
    for name in ("images", "masks", "overlay", "result"):
        src = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:segzero_tool/{name}.py"],
                             check=True, capture_output=True, text=True).stdout
        path = folder / f"{name}.py"
        path.write_text(src)
        spec = importlib.util.spec_from_file_location(f"segzero_tool._overhead_baseline_{name}", path)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules[spec.name] = module  # type: ignore[union-attr]  (dataclasses look the module up)
        spec.loader.exec_module(module)  # type: ignore[union-attr]
        out[name] = module
    return out


@contextlib.contextmanager
def _swapped(baseline: dict[str, ModuleType] | None) -> Iterator[None]:
    """Inside: ``result.to_dict`` and ``result.overlay`` use the baseline's RLE encoder and overlay."""
    if baseline is None:
        yield
        return
    enc, draw = masks_module.rle_encode, overlay_module.draw_overlay
    masks_module.rle_encode = baseline["masks"].rle_encode
    overlay_module.draw_overlay = baseline["overlay"].draw_overlay
    try:
        yield
    finally:
        masks_module.rle_encode, overlay_module.draw_overlay = enc, draw


def _time_pair(new: Callable[[], Any], old: Callable[[], Any] | None, repeat: int) -> dict[str, Any]:
    """Median wall and thread-CPU ms of ``new`` (and ``old``, alternating call by call)."""
    fns = {"after": new} if old is None else {"before": old, "after": new}
    samples: dict[str, dict[str, list[float]]] = {k: {"wall": [], "cpu": []} for k in fns}
    for fn in fns.values():
        fn()  # warm-up
    for i in range(repeat):
        order = list(fns.items()) if i % 2 == 0 else list(reversed(fns.items()))
        for key, fn in order:
            w0, c0 = time.perf_counter(), time.thread_time()
            fn()
            samples[key]["cpu"].append((time.thread_time() - c0) * 1000.0)
            samples[key]["wall"].append((time.perf_counter() - w0) * 1000.0)
    out: dict[str, Any] = {"repeat": repeat}
    for key, s in samples.items():
        out[key] = {"median_ms": statistics.median(s["wall"]), "cpu_median_ms": statistics.median(s["cpu"]),
                    "min_ms": min(s["wall"]), "max_ms": max(s["wall"])}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--objects", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--model-ms", type=float, default=None)
    ap.add_argument("--baseline-rev", default=None, help="also time images/masks/overlay of this commit")
    ap.add_argument("--no-write", action="store_true", help="print the tables, do not write results/")
    args = ap.parse_args()

    baseline = _baseline(args.baseline_rev) if args.baseline_rev else None
    model_ms = args.model_ms or model_ms_from_results(args.objects)
    with open("/proc/loadavg") as fh:
        load_before = fh.read().split()[:3]
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
        old_result = None
        if baseline is not None:
            r = baseline["result"]
            old_result = r.SegmentationResult(
                query="q", prompt_format="visionreasoner", reasoning=parsed.think, raw_output=text,
                parse_status=parsed.status, image_size=(w, h), image=loaded.array,
                objects=[r.SegmentedObject(box=o.box, points=o.points, score=o.score, mask=o.mask, frame_box=o.frame_box,
                                           frame_points=o.frame_points, label=o.label, issues=o.issues)
                         for o in objects])

        def parse_project():
            build_prompt("What can I have if I'm thirsty?")
            project_objects(parse_output(text), frame)

        def old(fn: Callable[[Any], Any]) -> Callable[[], Any] | None:
            if baseline is None:
                return None

            def run() -> Any:
                with _swapped(baseline):
                    return fn(old_result)
            return run

        if baseline is not None:  # the same bytes (tests/test_overlay_speed_identity.py checks every output)
            assert baseline["images"].load_image(data).array.tobytes() == loaded.array.tobytes()
            assert old(lambda r: [o["rle"] for o in r.to_dict("rle")["objects"]])() == [
                o["rle"] for o in result.to_dict("rle")["objects"]]
            assert old(lambda r: r.overlay(max_side=1024).tobytes())() == result.overlay(max_side=1024).tobytes()
        stages = {
            "load (JPEG decode + RGB)": _time_pair(
                lambda: load_image(data),
                (lambda: baseline["images"].load_image(data)) if baseline else None, args.repeat),
            "resize to 840x840": _time_pair(lambda: frame.resize_image(pil), None, args.repeat),
            "prompt + parse + back-project": _time_pair(parse_project, None, args.repeat),
            "RLE (objects + union)": _time_pair(lambda: result.to_dict("rle"), old(lambda r: r.to_dict("rle")),
                                                args.repeat),
            "overlay (<=1024 px)": _time_pair(lambda: result.overlay(max_side=1024),
                                              old(lambda r: r.overlay(max_side=1024)), args.repeat),
        }

        def save_once(r: Any = result) -> None:
            with tempfile.TemporaryDirectory() as d:
                r.save(d)

        save = _time_pair(save_once, old(save_once), max(2, args.repeat // 3))
        total: dict[str, dict[str, float]] = {}
        for key in ("before", "after"):
            if key == "before" and baseline is None:
                continue
            total[key] = {
                metric: sum(st[key if key in st else "after"][metric] for st in stages.values())
                for metric in ("median_ms", "cpu_median_ms")
            }
        rows.append({"size": f"{w}x{h}", "stages": stages, "pipeline_overhead": total, "save": save,
                     "share_of_model_time": (total["after"]["median_ms"] / model_ms) if model_ms else None})
        print(f"{w}x{h}: " + ", ".join(f"{k} {v['median_ms']:.1f} ms wall / {v['cpu_median_ms']:.1f} ms CPU"
                                       for k, v in total.items()), flush=True)
    with open("/proc/loadavg") as fh:
        load_after = fh.read().split()[:3]

    def cell(st: dict[str, Any], metric: str) -> str:
        if "before" in st:
            return f"{st['before'][metric]:.1f} -> {st['after'][metric]:.1f}"
        return f"{st['after'][metric]:.1f}"

    sections = []
    for metric, title in (("median_ms", "wall time"), ("cpu_median_ms", "CPU time of the thread")):
        head = ["stage"] + [r["size"] for r in rows]
        lines = [f"**{title}** (ms, median of {args.repeat})", "", "| " + " | ".join(head) + " |",
                 "|" + "---|" * len(head)]
        for stage in rows[0]["stages"]:
            mark = "" if stage in OURS or baseline is None else " (unchanged, timed once)"
            lines.append(f"| {stage}{mark} | " + " | ".join(cell(r["stages"][stage], metric) for r in rows) + " |")
        lines.append("| **our overhead (load to RLE + overlay)** | " + " | ".join(
            "**" + (f"{r['pipeline_overhead']['before'][metric]:.1f} -> " if "before" in r["pipeline_overhead"] else "")
            + f"{r['pipeline_overhead']['after'][metric]:.1f}**" for r in rows) + " |")
        lines.append("| writing result.json + PNGs + overlay (CLI `--out`) | " + " | ".join(
            cell(r["save"], metric) for r in rows) + " |")
        if model_ms and metric == "median_ms":
            lines.append(f"| share of model time ({model_ms / 1000:.1f} s), after | " + " | ".join(
                f"{100 * r['share_of_model_time']:.2f}%" for r in rows) + " |")
        sections.append("\n".join(lines))
    cpu = cpu_model()
    md = (f"# Overhead around the models ({args.objects} objects; {time.strftime('%Y-%m-%d')}"
          + (f"; `before -> after`: commit `{args.baseline_rev}` -> working tree" if baseline else "") + ")\n\n"
          + (f"Machine: {cpu}; load average {' '.join(load_before)} before the run, {' '.join(load_after)} after.\n\n"
             if cpu else "")
          + "\n\n".join(sections) + "\n\n"
          + ("Model time = SAM2 hiera-large encoder + one decoder call per object on the same CPU "
             "(`sam2_speed.py`); the reasoner is not counted, so the share is an upper bound.\n" if model_ms else ""))
    payload = {"objects": args.objects, "model_ms": model_ms, "baseline_rev": args.baseline_rev,
               "loadavg_before": load_before, "loadavg_after": load_after, "rows": rows}
    if args.no_write:
        print(md)
        return
    write_result("overhead", payload, md)
    print(md)


if __name__ == "__main__":
    main()
