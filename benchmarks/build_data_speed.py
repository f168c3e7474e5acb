"""Speed of ``segzero-train build-dataset`` (issue #13, part 5): a training set from images and masks.

Writes ``--images`` COCO-sized (640 x 480) photo-like JPEGs with ``--objects`` masks each (PNG files, one line
of the evaluation JSONL per mask, as RefCOCOg's several refs per image), then times
``build_training_dataset`` on it, one row per mask and ``group_by_image`` (one multi-object row per image),
with the default shard size and with a shard after every image (the most a crash can cost is then one image),
in one process and in two (``--workers 2``).
Reports samples and rows per second and the share of time in the per-object work (distance transform,
box) and the per-row work (resizing to the 840 frame and PNG-encoding it).

Usage::

    python benchmarks/build_data_speed.py                  # 100 images x 3 objects -> results/build_data_speed.{json,md}
    python benchmarks/build_data_speed.py --images 20 --no-write
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402


def write_source(folder: Path, images: int, objects: int, seed: int = 0) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    h, w = 480, 640
    yy, xx = np.mgrid[:h, :w]
    lines = []
    for i in range(images):
        base = np.stack([xx / w * 255, yy / h * 255, (xx + yy) / (w + h) * 255], -1)
        pixels = np.clip(base + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.jpg", quality=90)
        for k in range(objects):
            cx, cy = rng.integers(80, w - 80), rng.integers(80, h - 80)
            rx, ry = rng.integers(20, 80), rng.integers(20, 80)
            mask = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
            Image.fromarray(mask.astype(np.uint8) * 255).save(folder / f"{i}_{k}.png")
            lines.append({"id": f"{i}_{k}", "image": f"{i}.jpg", "query": f"the object {k} of picture {i}",
                          "mask": f"{i}_{k}.png"})
    path = folder / "masks.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def _stage_share(source: Path, limit: int) -> dict[str, float]:
    """Seconds per sample for the object work (mask read, points, box) and the row work (resize + PNG)."""
    import cv2

    from segzero_tool.eval.datasets import load_eval_dataset
    from segzero_tool.masks import mask_bbox
    from segzero_tool.training.build_data import representative_points
    from segzero_tool.training.data import _png_bytes

    samples = list(load_eval_dataset(source))[:limit]
    t0 = time.perf_counter()
    for s in samples:
        m = s.load_gt_mask()
        mask_bbox(m)
        representative_points(m)
    obj = (time.perf_counter() - t0) / len(samples)
    t0 = time.perf_counter()
    for s in samples:
        _png_bytes(cv2.resize(s.load_image(max_pixels=None).array, (840, 840), interpolation=cv2.INTER_AREA))
    row = (time.perf_counter() - t0) / len(samples)
    return {"object_s": round(obj, 4), "row_s": round(row, 4)}


def measure(images: int, objects: int) -> dict[str, Any]:
    from segzero_tool.training.build_data import BuildReport, build_training_dataset

    out: dict[str, Any] = {"images": images, "objects_per_image": objects, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        source = write_source(Path(tmp) / "src", images, objects)
        for grouped, shard, workers in ((False, 256, 1), (False, 1, 1), (False, 256, 2), (True, 256, 1),
                                        (True, 256, 2)):
            report = BuildReport()
            t0 = time.perf_counter()
            build_training_dataset(source, Path(tmp) / f"out-{grouped}-{shard}-{workers}", group_by_image=grouped,
                                   shard_size=shard, progress=False, report=report, workers=workers)
            dt = time.perf_counter() - t0
            out["runs"].append({"group_by_image": grouped, "shard_size": shard, "workers": workers,
                                "seconds": round(dt, 2), "samples_per_s": round(report.samples / dt, 1),
                                "rows_per_s": round(report.rows / dt, 1), "rows": report.rows})
        out["per_sample"] = _stage_share(source, min(60, images * objects))
    return out


def markdown(r: dict[str, Any]) -> str:
    lines = [
        "# Building a training set from masks (`segzero-train build-dataset`)",
        "",
        f"{r['images']} photo-like 640x480 JPEGs with {r['objects_per_image']} elliptical masks each (PNG, one "
        "evaluation-JSONL line per mask), no SAM filter. Two CPU cores.",
        "",
        "| rows | shard size | workers | time | samples per second | rows per second |",
        "|---|---|---|---|---|---|",
    ]
    for run in r["runs"]:
        kind = "one per image (`--group-by-image`)" if run["group_by_image"] else "one per mask"
        lines.append(f"| {kind} | {run['shard_size']} | {run['workers']} | {run['seconds']} s | **{run['samples_per_s']}** | "
                     f"{run['rows_per_s']} |")
    p = r["per_sample"]
    lines += ["", f"Per sample: {p['object_s'] * 1000:.1f} ms of object work (read the mask, box, distance "
              f"transform) and {p['row_s'] * 1000:.1f} ms of row work (decode the image, resize to 840x840, "
              "PNG-encode); grouping shares the row work among an image's objects."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--objects", type=int, default=3)
    ap.add_argument("--no-write", action="store_true", help="print only; do not write results/")
    args = ap.parse_args()
    result = measure(args.images, args.objects)
    text = markdown(result)
    print(text)
    if not args.no_write:
        print("wrote", write_result("build_data_speed", result, text))


if __name__ == "__main__":
    main()
