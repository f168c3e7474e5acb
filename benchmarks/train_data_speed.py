"""Speed of turning a published training set into GRPO rows (issue #13, part 5: target >= 50 rows/s).

Builds ``--rows`` rows shaped like ``Ricky06662/VisionReasoner_multi_object_1k_840`` (``id, problem,
solution, image, img_height, img_width``; the image an 840 x 840 photo-like JPEG at quality 95, about
the size of the published ones; or PNG with ``--formats png``) as a ``datasets.Dataset`` saved to disk, then times
``segzero_tool.training.data.load_training_dataset(folder)`` (the ``datasets.map`` that formats every
row, cache disabled so that every run does the work) and reports rows per second. It also reports what
happens to the images: whether each row's stored image bytes are the source's bytes (kept) or a new
encoding, and the mean size of both.

Usage::

    python benchmarks/train_data_speed.py                 # 200 rows -> results/train_data_speed.{json,md}
    python benchmarks/train_data_speed.py --rows 50 --no-write
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402

TARGET_ROWS_PER_S = 50.0


def _image(seed: int, fmt: str, side: int = 840, quality: int = 95) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:side, :side].astype(np.float32)
    base = np.stack([xx / side * 255, yy / side * 255, (xx + yy) / (2 * side) * 255], axis=-1)
    noise = rng.normal(0, 8, (side, side, 3))
    pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    if fmt == "jpeg":
        Image.fromarray(pixels).save(buf, format="JPEG", quality=quality)
    else:
        Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def build(folder: Path, rows: int, fmt: str) -> list[bytes]:
    import datasets

    images = [_image(i, fmt) for i in range(rows)]
    solution = json.dumps([{"bbox_2d": [100, 120, 400, 500], "point_2d": [250, 300]}])
    data = {"id": [str(i) for i in range(rows)], "problem": [f"the object number {i}" for i in range(rows)],
            "solution": [solution] * rows, "image": [{"bytes": b, "path": None} for b in images],
            "img_height": [840] * rows, "img_width": [840] * rows}
    features = datasets.Features({"id": datasets.Value("string"), "problem": datasets.Value("string"),
                                  "solution": datasets.Value("string"), "image": datasets.Image(),
                                  "img_height": datasets.Value("int64"), "img_width": datasets.Value("int64")})
    datasets.Dataset.from_dict(data, features=features).save_to_disk(str(folder))
    return images


def measure(rows: int, fmt: str) -> dict[str, Any]:
    import datasets

    from segzero_tool.training.data import load_training_dataset

    datasets.disable_caching()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "set"
        t0 = time.perf_counter()
        sources = build(folder, rows, fmt)
        build_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = load_training_dataset(str(folder))
        load_s = time.perf_counter() - t0
        stored = out.cast_column("image", datasets.Image(decode=False))["image"]
        kept = sum(1 for src, got in zip(sources, stored, strict=True) if got.get("bytes") == src)
        sizes = [len(got.get("bytes") or b"") for got in stored]
    return {
        "rows": rows, "format": fmt, "build_s": round(build_s, 2), "load_s": round(load_s, 3),
        "rows_per_s": round(rows / load_s, 2), "target_rows_per_s": TARGET_ROWS_PER_S,
        "images_kept_byte_identical": kept, "source_mean_bytes": int(statistics.mean(len(s) for s in sources)),
        "stored_image_mean_bytes": int(statistics.mean(sizes)),
    }


def markdown(results: list[dict[str, Any]]) -> str:
    lines = [
        "# Training-set formatting speed (`load_training_dataset`, VisionReasoner-shaped rows)",
        "",
        "840x840 photo-like images (JPEG at quality 95, or PNG), saved with `save_to_disk`, loaded with the "
        f"`datasets` cache disabled. Target: >= {TARGET_ROWS_PER_S:.0f} rows/s (issue #13).",
        "",
        "| source images | rows | rows per second | load time | stored byte-identical | mean size stored / source |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        met = "yes" if r["rows_per_s"] >= TARGET_ROWS_PER_S else "no"
        lines.append(f"| {r['format']} | {r['rows']} | **{r['rows_per_s']}** ({met}) | {r['load_s']} s | "
                     f"{r['images_kept_byte_identical']} of {r['rows']} | {r['stored_image_mean_bytes'] / 1024:.0f} / "
                     f"{r['source_mean_bytes'] / 1024:.0f} KiB |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=200, help="rows to build and load (default 200)")
    ap.add_argument("--formats", default="jpeg,png", help="source image formats to try (default jpeg,png)")
    ap.add_argument("--no-write", action="store_true", help="print only; do not write results/")
    args = ap.parse_args()
    results = [measure(args.rows, fmt.strip()) for fmt in args.formats.split(",") if fmt.strip()]
    text = markdown(results)
    print(text)
    if not args.no_write:
        print("wrote", write_result("train_data_speed", {"results": results}, text))


if __name__ == "__main__":
    main()
