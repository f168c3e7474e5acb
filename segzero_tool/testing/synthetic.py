"""A small synthetic segmentation dataset, written in every format ``segzero eval`` reads.

Each sample is a flat-coloured shape (rectangle, triangle, pentagon, or two rectangles) on a noisy
gradient, with a unique query; long (sentence) and short queries alternate; ``empty`` samples ask
for something that is not there (empty ground truth). Ground-truth masks are the LISA rasterisation
of integer polygons, so the LISA, JSONL (PNG, RLE or polygons) and hub-schema copies agree pixel for
pixel. Handy to smoke-test an evaluation set-up::

    from segzero_tool.testing.synthetic import make_synthetic_samples, write_jsonl
    write_jsonl(make_synthetic_samples(10), "synthetic/")     # then: segzero eval synthetic/samples.jsonl

:func:`write_refer_folder` writes a tiny RefCOCOg-style ``refer_seg`` folder (COCO ``instances.json``,
a refs pickle, train2014 JPEGs) for the RefCOCO loader.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

COLOURS = {"red": (220, 40, 40), "blue": (40, 80, 220), "green": (40, 170, 60), "yellow": (230, 210, 40),
           "purple": (150, 60, 180)}
SHAPES = ("rectangle", "triangle", "pentagon", "pair of rectangles")
DEFAULT_SIZES = ((64, 48), (96, 64), (48, 80))


@dataclass
class SyntheticSample:
    """One synthetic sample: image, query, ground truth and the polygons that made it."""

    id: str
    query: str
    image: np.ndarray  # (H, W, 3) uint8
    mask: np.ndarray  # (H, W) bool
    polygons: list[list[list[int]]] = field(default_factory=list)  # [[[x, y], ...], ...]
    is_sentence: bool = False

    @property
    def size(self) -> tuple[int, int]:
        return int(self.image.shape[1]), int(self.image.shape[0])

    @property
    def box(self) -> list[int] | None:
        """Tight inclusive ``[x1, y1, x2, y2]`` of the mask (``None`` when empty)."""
        from ..masks import mask_bbox

        b = mask_bbox(self.mask)
        return list(b) if b is not None else None


def _polygons(kind: str, w: int, h: int, rng: np.random.Generator) -> list[list[list[int]]]:
    x1 = int(rng.integers(2, w // 3))
    y1 = int(rng.integers(2, h // 3))
    x2 = int(rng.integers(w // 2, w - 3))
    y2 = int(rng.integers(h // 2, h - 3))
    if kind == "rectangle":
        return [[[x1, y1], [x2, y1], [x2, y2], [x1, y2]]]
    if kind == "triangle":
        return [[[x1, y2], [(x1 + x2) // 2, y1], [x2, y2]]]
    if kind == "pentagon":
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        rx, ry = (x2 - x1) / 2, (y2 - y1) / 2
        return [[[int(round(cx + rx * np.sin(a))), int(round(cy - ry * np.cos(a)))]
                 for a in np.linspace(0, 2 * np.pi, 5, endpoint=False)]]
    xm = (x1 + x2) // 2
    return [[[x1, y1], [xm - 2, y1], [xm - 2, y2], [x1, y2]], [[xm + 2, y1], [x2, y1], [x2, y2], [xm + 2, y2]]]


def make_synthetic_samples(n: int = 10, *, sizes: Sequence[tuple[int, int]] = DEFAULT_SIZES, empty: int = 1,
                           seed: int = 0) -> list[SyntheticSample]:
    """``n`` samples (the last ``empty`` of them with an empty ground truth), cycling over ``sizes``."""
    from ..eval.datasets import rasterize_lisa_shapes

    rng = np.random.default_rng(seed)
    colours = list(COLOURS)
    out = []
    for i in range(n):
        w, h = sizes[i % len(sizes)]
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([80 + 60 * xx / w, 90 + 50 * yy / h, 110 + 0 * xx], axis=-1)
        image = np.clip(base + rng.normal(0, 6, (h, w, 3)), 0, 255).astype(np.uint8)
        colour = colours[i % len(colours)]
        shape = SHAPES[i % len(SHAPES)]
        is_sentence = i % 2 == 1
        if i >= n - empty:
            polys: list[list[list[int]]] = []
            query = (f"Where is the unicorn that hides in scene {i}?" if is_sentence else f"the unicorn in scene {i}")
        else:
            polys = _polygons(shape, w, h, rng)
            query = (f"Which {shape} in scene {i} would a painter pick because it is {colour}?" if is_sentence
                     else f"the {colour} {shape} in scene {i}")
        mask = rasterize_lisa_shapes([{"label": "target", "points": p} for p in polys], h, w)
        image[mask] = COLOURS[colour]
        out.append(SyntheticSample(f"syn{i:03d}", query, image, mask, polys, is_sentence))
    return out


def _save_png(array: np.ndarray, path: Path) -> None:
    from PIL import Image

    Image.fromarray(array).save(path)


def write_jsonl(samples: Sequence[SyntheticSample], out_dir: str | os.PathLike, *,
                encodings: Sequence[str] = ("png", "rle", "polygons"), with_box: bool = True,
                name: str = "samples.jsonl") -> Path:
    """Write images and a JSONL file; masks cycle over ``encodings`` (empty masks use PNG or RLE)."""
    from ..masks import mask_to_png_bytes, rle_encode

    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(exist_ok=True)
    lines = []
    for i, s in enumerate(samples):
        _save_png(s.image, out / "images" / f"{s.id}.png")
        enc = encodings[i % len(encodings)]
        if enc == "polygons" and not s.polygons:
            enc = "rle"
        row: dict[str, Any] = {"id": s.id, "image": f"images/{s.id}.png", "query": s.query,
                               "is_sentence": s.is_sentence}
        if enc == "png":
            (out / "masks" / f"{s.id}.png").write_bytes(mask_to_png_bytes(s.mask))
            row["mask"] = f"masks/{s.id}.png"
        elif enc == "rle":
            row["mask"] = rle_encode(s.mask)
        elif enc == "polygons":
            row["polygons"] = [[c for xy in p for c in xy] for p in s.polygons]
        else:
            raise ValueError(f"unknown mask encoding {enc!r}")
        if with_box and s.box is not None:
            row["box"] = s.box
        lines.append(json.dumps(row))
    path = out / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_lisa(samples: Sequence[SyntheticSample], root: str | os.PathLike, *, split: str | None = "val",
               flag: bool = True) -> Path:
    """Write ReasonSeg's LISA layout (``<id>.png`` + ``<id>.json``) under ``root/split``; with ``flag``,
    every other sample also gets a (skipped) ``flag`` shape."""
    folder = Path(root) / split if split else Path(root)
    folder.mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(samples):
        _save_png(s.image, folder / f"{s.id}.png")
        shapes = [{"label": "target", "points": p, "shape_type": "polygon"} for p in s.polygons]
        if flag and i % 2 == 0:
            w, h = s.size
            shapes.append({"label": "flag", "points": [[0, 0], [w - 1, 0], [w - 1, h - 1]], "shape_type": "polygon"})
        data = {"text": [s.query, f"an alternative phrasing of sample {i}"], "is_sentence": s.is_sentence,
                "shapes": shapes}
        (folder / f"{s.id}.json").write_text(json.dumps(data), encoding="utf-8")
    return folder


def hub_columns(samples: Sequence[SyntheticSample], *, with_box: bool = True) -> dict[str, list[Any]]:
    """Columns with the hub copies' schema (image, text, mask, image_id, ann_id, img_height, img_width
    and, with ``with_box``, the RefCOCO copies' ``bbox``), for ``datasets.Dataset.from_dict``."""
    from PIL import Image

    cols: dict[str, list[Any]] = {"image": [], "text": [], "mask": [], "image_id": [], "ann_id": [],
                                  "img_height": [], "img_width": []}
    if with_box:
        cols["bbox"] = []
    for s in samples:
        w, h = s.size
        cols["image"].append(Image.fromarray(s.image))
        cols["text"].append(s.query)
        cols["mask"].append(s.mask.tolist())
        cols["image_id"].append(s.id)
        cols["ann_id"].append(s.id)
        cols["img_height"].append(h)
        cols["img_width"].append(w)
        if with_box:
            cols["bbox"].append([float(v) for v in s.box] if s.box is not None else None)
    return cols


def hub_dataset(samples: Sequence[SyntheticSample], *, with_box: bool = True) -> Any:
    """An in-memory ``datasets.Dataset`` with the hub copies' schema (needs ``datasets``)."""
    import datasets

    feats = {"image": datasets.Image(), "text": datasets.Value("string"),
             "mask": datasets.List(datasets.List(datasets.Value("bool")))
             if hasattr(datasets, "List") else datasets.Sequence(datasets.Sequence(datasets.Value("bool"))),
             "image_id": datasets.Value("string"), "ann_id": datasets.Value("string"),
             "img_height": datasets.Value("int64"), "img_width": datasets.Value("int64")}
    if with_box:
        feats["bbox"] = datasets.List(datasets.Value("float64")) if hasattr(datasets, "List") else \
            datasets.Sequence(datasets.Value("float64"))
    return datasets.Dataset.from_dict(hub_columns(samples, with_box=with_box), features=datasets.Features(feats))


# --- RefCOCO in LISA's refer_seg layout ------------------------------------------------------------

#: The images of :func:`write_refer_folder`: COCO image id -> (width, height).
REFER_IMAGES = {1: (64, 48), 2: (80, 60), 3: (48, 64)}
#: Its annotations: id -> (image id, category id, flat polygons, or ``None`` for the RLE one (a filled
#: rectangle x 10..29, y 20..44 of image 2, stored as COCO RLE with uncompressed counts)).
REFER_ANNOTATIONS: dict[int, tuple[int, int, list[list[float]] | None]] = {
    101: (1, 1, [[4.0, 6.0, 30.0, 6.0, 30.0, 40.0, 4.0, 40.0]]),  # a rectangle
    102: (1, 2, [[36.0, 10.0, 60.0, 10.0, 48.0, 30.0], [40.0, 34.0, 56.0, 34.0, 56.0, 44.0, 40.0, 44.0]]),
    103: (2, 3, None),
    104: (3, 1, [[5.5, 5.5, 40.5, 8.0, 20.0, 50.5]]),
    105: (3, 2, [[10.0, 52.0, 38.0, 52.0, 38.0, 62.0, 10.0, 62.0]]),
}
REFER_RLE_BOX = (10, 20, 30, 45)  # x1, y1, x2, y2 (exclusive) of annotation 103
#: Its refs: ref id -> (annotation id, split).
REFER_REFS = {1: (101, "val"), 2: (102, "val"), 3: (103, "val"), 4: (104, "train"), 5: (105, "train")}


def _refer_sentences(ref_id: int) -> list[dict[str, Any]]:
    out = []
    for k, text in enumerate((f"the object of ref {ref_id}", f"Thing number {ref_id}, the one you want.")):
        sent = text.lower().rstrip(".")
        out.append({"raw": text, "sent": sent, "sent_id": ref_id * 10 + k, "tokens": sent.replace(",", "").split()})
    return out


def write_refer_folder(root: str | os.PathLike, *, dataset: str = "refcocog", split_by: str | None = None,
                       images: str | None = "lisa") -> Path:
    """A tiny RefCOCO folder in LISA's ``refer_seg`` layout; returns ``root/refer_seg/<dataset>``.

    Three images (:data:`REFER_IMAGES`, JPEG), five annotations (:data:`REFER_ANNOTATIONS`: polygons,
    one with two parts, and one COCO RLE), five refs (:data:`REFER_REFS`: three ``val``, two ``train``)
    of two sentences each, in ``refs(<split_by>).p`` (default ``umd`` for refcocog, ``unc`` otherwise;
    protocol 2, as the Python 2 originals). ``images``: where the ``train2014`` JPEGs go: ``lisa``
    (``refer_seg/images/mscoco/images/train2014``), ``inside`` (``<dataset>/images``), ``train2014``
    (``<dataset>/train2014``) or ``None`` (none written).
    """
    import pickle

    from PIL import Image

    from ..masks import rle_counts

    base = Path(root) / "refer_seg"
    folder = base / dataset
    folder.mkdir(parents=True, exist_ok=True)
    split_by = split_by or ("umd" if dataset == "refcocog" else "unc")
    image_dirs = {"lisa": base / "images" / "mscoco" / "images" / "train2014", "inside": folder / "images",
                  "train2014": folder / "train2014"}
    if images is not None and images not in image_dirs:
        raise ValueError(f"images must be one of {', '.join(image_dirs)} or None, got {images!r}")
    rng = np.random.default_rng(0)
    coco_images = []
    for image_id, (w, h) in REFER_IMAGES.items():
        name = f"COCO_train2014_{image_id:012d}.jpg"
        coco_images.append({"id": image_id, "file_name": name, "height": h, "width": w})
        if images is not None:
            image_dirs[images].mkdir(parents=True, exist_ok=True)
            pixels = np.clip(rng.normal(120, 30, (h, w, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(image_dirs[images] / name, quality=90)
    annotations = []
    for ann_id, (image_id, category_id, polys) in REFER_ANNOTATIONS.items():
        w, h = REFER_IMAGES[image_id]
        if polys is None:
            x1, y1, x2, y2 = REFER_RLE_BOX
            m = np.zeros((h, w), dtype=bool)
            m[y1:y2, x1:x2] = True
            segmentation: Any = {"size": [h, w], "counts": rle_counts(m)}
            bbox = [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]
        else:
            segmentation = polys
            xs = [v for p in polys for v in p[0::2]]
            ys = [v for p in polys for v in p[1::2]]
            bbox = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
        annotations.append({"id": ann_id, "image_id": image_id, "category_id": category_id, "iscrowd": 0,
                            "segmentation": segmentation, "bbox": bbox, "area": 0.0})
    instances = {"images": coco_images, "annotations": annotations,
                 "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "cup"}, {"id": 3, "name": "dog"}]}
    (folder / "instances.json").write_text(json.dumps(instances), encoding="utf-8")
    refs = []
    for ref_id, (ann_id, split) in REFER_REFS.items():
        image_id, category_id, _ = REFER_ANNOTATIONS[ann_id]
        sents = _refer_sentences(ref_id)
        refs.append({"ref_id": ref_id, "ann_id": ann_id, "image_id": image_id, "split": split,
                     "sentences": sents, "sent_ids": [s["sent_id"] for s in sents], "category_id": category_id,
                     "file_name": f"COCO_train2014_{image_id:012d}_{ann_id}.jpg"})
    (folder / f"refs({split_by}).p").write_bytes(pickle.dumps(refs, protocol=2))
    return folder


__all__ = ["REFER_ANNOTATIONS", "REFER_IMAGES", "REFER_REFS", "REFER_RLE_BOX", "SyntheticSample", "hub_columns",
           "hub_dataset", "make_synthetic_samples", "write_jsonl", "write_lisa", "write_refer_folder"]
