"""Training data: the published Seg-Zero / VisionReasoner sets, and a builder from masks.

Rows for TRL's ``GRPOTrainer`` (conversational, one image per prompt)::

    {"prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT}]}],
     "image": <PIL RGB frame_size x frame_size>, "solution": str, "problem": str}

``PROMPT`` is :func:`segzero_tool.prompts.build_prompt` of ``problem`` (the literal reference template,
question lower-cased and stripped of ``.``). The reference training string is prefixed ``"<image>"``
(Seg-Zero) or ``"<image>\\n"`` (VisionReasoner) and the processor expands that placeholder into the
vision tokens. In TRL's conversational format the image is its own ``{"type": "image"}`` content part
placed before the text; the Qwen2-VL / Qwen2.5-VL chat template renders it as
``<|vision_start|><|image_pad|><|vision_end|>`` directly followed by the text, which is what the
reference's ``<image>`` prefix becomes. The VisionReasoner (multi-object) training prompt is ``<image>\\n``
plus the prompt, so its text part starts with ``"\\n"``; the Seg-Zero one has no newline.

Published columns: Seg-Zero ``problem, solution ("<box>(x1,y1),(x2,y2)</box><points>(x1,y1),(x2,y2)</points>"),
image``; VisionReasoner ``id, problem, solution (JSON list of {"bbox_2d", "point_2d"}), image, img_height,
img_width``. All coordinates are in the 840 x 840 frame.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np

from segzero_tool.eval.datasets import DatasetError
from segzero_tool.prompts import build_prompt

from .rewards import parse_segzero_solution, parse_visionreasoner_solution

__all__ = [
    "KINDS",
    "PROMPT_TEMPLATES",
    "SAM_FILTER_MIN_IOU",
    "TrainingDataError",
    "build_training_dataset",
    "check_dataset_source",
    "detect_kind",
    "format_segzero_solution",
    "format_visionreasoner_solution",
    "load_training_dataset",
    "parse_segzero_solution",
    "parse_visionreasoner_solution",
    "representative_points",
    "stored_frame",
    "to_grpo_row",
]

Kind = Literal["segzero", "visionreasoner"]
KINDS = ("segzero", "visionreasoner")
#: The prompt format used for each dataset kind (see :func:`segzero_tool.prompts.build_prompt`).
PROMPT_TEMPLATES: dict[str, str] = {"segzero": "segzero", "visionreasoner": "visionreasoner"}
#: The reference's quality filter keeps an object when IoU(SAM mask, ground truth) >= this.
SAM_FILTER_MIN_IOU = 0.6


class TrainingDataError(DatasetError):
    """A training dataset cannot be opened, has the wrong columns, or cannot be built."""


# --- rows --------------------------------------------------------------------------------------------


def _to_pil(image: Any) -> Any:
    from PIL import Image

    if isinstance(image, Image.Image):
        return image
    if isinstance(image, dict) and (image.get("bytes") or image.get("path")):
        import io

        src = io.BytesIO(image["bytes"]) if image.get("bytes") else image["path"]
        return Image.open(src)
    if isinstance(image, (str, os.PathLike)):
        return Image.open(image)
    if isinstance(image, np.ndarray):
        return Image.fromarray(image)
    raise TrainingDataError(f"unsupported image of type {type(image).__name__}")


def _frame_image(image: Any, frame_size: int) -> Any:
    from PIL import Image

    img = _to_pil(image)
    if img.mode != "RGB":
        img = img.convert("RGB")
    if img.size != (frame_size, frame_size):
        img = img.resize((frame_size, frame_size), Image.BILINEAR)
    return img


def stored_frame(image: Any, frame_size: int) -> dict[str, Any] | None:
    """``{"bytes", "path": None}`` of an image that can be used as it is stored: JPEG or PNG bytes of an RGB
    ``frame_size`` x ``frame_size`` picture (read from the header; nothing is decoded). ``None`` otherwise
    (another size or mode, another format, not bytes): the row then gets the decoded, resized frame.

    Keeping the bytes keeps the pixels the reference trainer sees (it decodes the same bytes) and skips
    re-encoding every row (``datasets`` would write a decoded JPEG again at its own quality, or a PNG slowly).
    """
    if not isinstance(image, dict) or not isinstance(image.get("bytes"), (bytes, bytearray)):
        return None
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(image["bytes"])) as img:
            usable = img.format in ("JPEG", "PNG") and img.mode == "RGB" and img.size == (frame_size, frame_size)
    except (UnidentifiedImageError, OSError, ValueError):
        return None
    return {"bytes": bytes(image["bytes"]), "path": None} if usable else None


def to_grpo_row(image: Any, problem: str, solution: str, kind: Kind, *, frame_size: int = 840) -> dict[str, Any]:
    """One TRL row: conversational prompt (image part + reference prompt text), the image resized
    (bilinear) to ``frame_size`` x ``frame_size`` RGB when it is not already, ``solution``, ``problem``."""
    if kind not in KINDS:
        raise ValueError(f"unknown dataset kind {kind!r}; choose one of: {', '.join(KINDS)}")
    text = build_prompt(str(problem), PROMPT_TEMPLATES[kind])
    if kind == "visionreasoner":
        text = "\n" + text  # the reference's "<image>\n" prefix
    return {
        "prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}],
        "image": stored_frame(image, frame_size) or _frame_image(image, frame_size),
        "solution": solution,
        "problem": problem,
    }


def detect_kind(solution: str) -> Kind:
    """``segzero`` for a ``<box>…</box><points>…</points>`` solution, ``visionreasoner`` for a JSON list."""
    s = str(solution).lstrip()
    if s.startswith("["):
        return "visionreasoner"
    if "<box>" in s:
        return "segzero"
    raise TrainingDataError(f"cannot tell the dataset kind from the solution {s[:80]!r}; pass kind= "
                            "'segzero' or 'visionreasoner'")


# --- loading -----------------------------------------------------------------------------------------


def _datasets() -> Any:
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - datasets is a dependency of training
        raise TrainingDataError("training data needs the `datasets` package: pip install datasets") from exc
    return datasets


def _pick(obj: Any, split: str, where: str) -> Any:
    ds = _datasets()
    if isinstance(obj, ds.DatasetDict):
        if split in obj:
            return obj[split]
        if len(obj) == 1:
            return next(iter(obj.values()))
        raise TrainingDataError(f"{where}: no split {split!r}; available: {', '.join(obj)}")
    return obj


#: File endings that name a local file, never a hub id.
_FILE_SUFFIXES = (".jsonl", ".json", ".parquet", ".arrow")


def looks_like_path(value: str) -> bool:
    """Whether a dataset value is meant as a local path rather than a hub id (``owner/name``).

    A path: starts with ``.``, ``/`` or ``~``, holds a backslash or more than one ``/`` (a hub id has
    exactly one), ends in .jsonl / .json / .parquet / .arrow, or its first part is a folder here
    (``data/typo`` when ``./data`` exists).
    """
    text = str(value).strip()
    if not text:
        return False
    if text.startswith((".", "/", "~")) or "\\" in text or text.count("/") > 1:
        return True
    if text.lower().endswith(_FILE_SUFFIXES):
        return True
    head = text.split("/", 1)[0]
    return "/" in text and Path(head).is_dir()


def check_dataset_source(source: Any) -> None:
    """Fail at once on a local path that does not exist (before anything touches the hub).

    Raises:
        TrainingDataError: ``source`` looks like a path (:func:`looks_like_path`) and nothing is there.
    """
    if not isinstance(source, (str, os.PathLike)):
        return
    text = os.fspath(source)
    if Path(text).expanduser().exists() or not looks_like_path(text):
        return
    path = Path(text).expanduser()
    parent = next((p for p in path.absolute().parents if p.is_dir()), None)
    near = ""
    if parent is not None and parent != path.absolute().parent:
        near = f"; {parent} exists but not {path.absolute().relative_to(parent)}"
    elif parent is not None:
        names = sorted(c.name for c in parent.iterdir() if not c.name.startswith("."))[:8]
        near = f"; {parent} holds: {', '.join(names) if names else 'nothing'}"
    raise TrainingDataError(f"dataset {text!r}: no such file or folder{near} (a save_to_disk folder or a hub "
                            "id such as Ricky06662/VisionReasoner_multi_object_1k_840 is expected)")


def _open(source: Any, split: str) -> Any:
    ds = _datasets()
    if isinstance(source, (ds.Dataset, ds.DatasetDict)):
        return _pick(source, split, "<memory>")
    if not isinstance(source, (str, os.PathLike)):
        raise TrainingDataError(f"unsupported training source of type {type(source).__name__}")
    check_dataset_source(source)
    path = Path(source).expanduser()
    if path.is_dir():
        try:
            return _pick(ds.load_from_disk(str(path)), split, str(path))
        except TrainingDataError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise TrainingDataError(f"{path}: not a `datasets` save_to_disk folder ({type(exc).__name__}: "
                                    f"{str(exc)[:200]})") from None
    if path.exists():
        raise TrainingDataError(f"{path}: pass a save_to_disk folder or a hub id, not a file")
    try:
        return ds.load_dataset(str(source), split=split)
    except Exception as exc:  # noqa: BLE001
        msg = " ".join(str(exc).split())[:200]
        raise TrainingDataError(f"cannot load {source!r} from the hub ({type(exc).__name__}: {msg}); offline? "
                                "download it once with network access, or pass a save_to_disk folder") from None


def load_training_dataset(source: Any, *, kind: Literal["auto", "segzero", "visionreasoner"] = "auto",
                          split: str = "train", limit: int | None = None, frame_size: int = 840) -> Any:
    """Open a published (or built) training set and turn its rows into :func:`to_grpo_row` rows.

    Args:
        source: a ``save_to_disk`` folder (``DatasetDict`` or ``Dataset``), a hub id such as
            ``Ricky06662/refCOCOg_9k_840``, or an in-memory ``datasets.Dataset`` / ``DatasetDict``.
        kind: ``auto`` detects it from the first ``solution``.
        split: the split of a ``DatasetDict`` / hub dataset (a single-split dict uses its only split).
        limit: keep the first ``limit`` rows.

    Raises:
        TrainingDataError: unreadable, offline, missing columns, unparsable solutions.
    """
    ds = _open(source, split)
    missing = [c for c in ("problem", "solution", "image") if c not in ds.column_names]
    if missing:
        raise TrainingDataError(f"the training set lacks column(s) {', '.join(missing)}; it has "
                                f"{', '.join(ds.column_names)}")
    if limit is not None:
        ds = ds.select(range(min(int(limit), len(ds))))
    if len(ds) == 0:
        raise TrainingDataError("the training set has no rows")
    if kind == "auto":
        kind = detect_kind(ds[0]["solution"])
    elif kind not in KINDS:
        raise ValueError(f"unknown dataset kind {kind!r}; choose one of: auto, {', '.join(KINDS)}")
    check = parse_segzero_solution if kind == "segzero" else parse_visionreasoner_solution
    k: Kind = kind  # type: ignore[assignment]
    datasets = _datasets()
    encoded = isinstance(ds.features.get("image"), datasets.Image)
    if encoded:  # read the stored bytes, not decoded pictures: most rows keep them as they are
        ds = ds.cast_column("image", datasets.Image(decode=False))

    def convert(row: dict[str, Any]) -> dict[str, Any]:
        try:
            check(row["solution"])
        except ValueError as exc:
            raise TrainingDataError(f"bad solution in the training set: {exc}") from None
        out = to_grpo_row(row["image"], row["problem"], row["solution"], k, frame_size=frame_size)
        if encoded and not isinstance(out["image"], dict):  # resized: stored losslessly
            out["image"] = {"bytes": _png_bytes(np.asarray(out["image"])), "path": None}
        return out

    keep = {"problem", "solution", "image", "mask"}  # mask: for mask_point_reward
    drop = [c for c in ds.column_names if c not in keep]
    out = ds.map(convert, remove_columns=drop, desc=f"formatting {k} rows")
    if encoded:
        out = out.cast_column("image", datasets.Image())
    return out


# --- building from masks -----------------------------------------------------------------------------


def representative_points(mask: np.ndarray) -> tuple[tuple[int, int], tuple[int, int]]:
    """Two points of a mask as the reference builder picks them (protocol 2.6 step 3).

    Point 1: arg-max of the Euclidean distance transform (centre of the largest inscribed circle,
    first in row-major order on ties). Point 2: among mask pixels farther from point 1 than the
    median such distance, the one with the largest distance-transform value; fallback the best pixel
    of a 20 x 20 window around the centroid. A point outside the mask snaps to the nearest mask pixel.

    The distance transform is scipy's exact EDT (background at distance 0).

    Raises:
        ValueError: empty mask.
    """
    from scipy.ndimage import distance_transform_edt

    m = np.asarray(mask, dtype=bool)
    ys, xs = np.nonzero(m)
    if ys.size == 0:
        raise ValueError("empty mask")
    dt = distance_transform_edt(np.pad(m, 1))[1:-1, 1:-1]  # pixels on the image border touch background
    y1, x1 = np.unravel_index(int(np.argmax(dt)), dt.shape)
    d = np.hypot(xs - x1, ys - y1)
    far = d > np.median(d)
    if far.any():
        cand_y, cand_x = ys[far], xs[far]
        j = int(np.argmax(dt[cand_y, cand_x]))
        p2 = (int(cand_x[j]), int(cand_y[j]))
    else:
        cy, cx = int(ys.mean()), int(xs.mean())
        ya, yb = max(cy - 10, 0), min(cy + 10, m.shape[0])
        xa, xb = max(cx - 10, 0), min(cx + 10, m.shape[1])
        win = dt[ya:yb, xa:xb]
        wy, wx = np.unravel_index(int(np.argmax(win)), win.shape)
        p2 = (int(xa + wx), int(ya + wy))

    def snap(p: tuple[int, int]) -> tuple[int, int]:
        if m[p[1], p[0]]:
            return p
        k = int(np.argmin((xs - p[0]) ** 2 + (ys - p[1]) ** 2))
        return int(xs[k]), int(ys[k])

    return snap((int(x1), int(y1))), snap(p2)


def _scale(v: float, f: float) -> int:
    return int(v * f + 0.5)


def format_segzero_solution(box: Any, p1: Any, p2: Any) -> str:
    b = [int(v) for v in box]
    return (f"<box>({b[0]},{b[1]}),({b[2]},{b[3]})</box>"
            f"<points>({int(p1[0])},{int(p1[1])}),({int(p2[0])},{int(p2[1])})</points>")


def format_visionreasoner_solution(objects: Any) -> str:
    return json.dumps([{"bbox_2d": [int(v) for v in o["bbox_2d"]], "point_2d": [int(v) for v in o["point_2d"]]}
                       for o in objects])


def _sam_mask(sam_filter: Any, image: np.ndarray, box: tuple[int, ...], point: tuple[int, int]) -> np.ndarray:
    if hasattr(sam_filter, "segment"):
        from segzero_tool.segmenters.base import ObjectPrompt

        out = sam_filter.segment(image, [ObjectPrompt(box=tuple(float(v) for v in box),
                                                      points=((float(point[0]), float(point[1])),))])
        return np.asarray(out.masks[0], dtype=bool)
    return np.asarray(sam_filter(image, box, point), dtype=bool)


def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def build_training_dataset(eval_source: Any, out_dir: str | os.PathLike, *, kind: Kind = "visionreasoner",
                           split: str | None = None, limit: int | None = None, frame_size: int = 840,
                           sam_filter: Callable[..., Any] | Any | None = None, progress: bool = True,
                           with_mask: bool = True) -> Path:
    """Turn masks into a training set in the published format and ``save_to_disk`` it.

    ``eval_source`` is anything :func:`segzero_tool.eval.datasets.load_eval_dataset` opens (ReasonSeg in
    LISA's layout, a hub copy, a save_to_disk folder, the evaluation JSONL). Per sample, in original
    pixels: the tight box (inclusive max indices) and :func:`representative_points`; then scaled to the
    frame with ``int(v * f + 0.5)`` (``f = frame_size / W`` for x, ``/ H`` for y), and the image resized
    to the frame with ``cv2.INTER_AREA`` as the reference's ``gen_training_dataset.py`` did.

    ``segzero`` rows: ``problem`` = the query as written, ``solution`` =
    ``<box>(x1,y1),(x2,y2)</box><points>(x1,y1),(x2,y2)</points>``. ``visionreasoner`` rows: ``problem`` =
    ``'query'`` (lower-cased, stripped of ``.?!``, single-quoted as the reference does per expression),
    ``solution`` = a JSON list with one ``{"bbox_2d", "point_2d"}`` (point 1 only), plus ``id``,
    ``img_height``, ``img_width`` (original size). One sample per evaluation sample (each has one query).
    Samples with an empty mask are skipped. ``with_mask`` adds a ``mask`` column (COCO RLE in the frame)
    for :func:`~segzero_tool.training.rewards.mask_point_reward`.

    ``sam_filter``: a :class:`~segzero_tool.segmenters.base.Segmenter` or a callable
    ``(image, box, point) -> mask`` in original pixels; a sample is kept only if IoU(SAM mask, ground
    truth) >= 0.6 (the reference used SAM2.1-hiera-large with point 1 and the box).

    The folder is written to a temporary sibling and renamed into place. Returns ``out_dir``.
    """
    import cv2
    from tqdm.auto import tqdm

    from segzero_tool.eval.datasets import load_eval_dataset
    from segzero_tool.masks import mask_bbox, rle_encode

    if kind not in KINDS:
        raise ValueError(f"unknown dataset kind {kind!r}; choose one of: {', '.join(KINDS)}")
    ds_mod = _datasets()
    out = Path(out_dir).expanduser()
    if out.exists() and any(out.iterdir()):
        raise TrainingDataError(f"{out}: already exists and is not empty; choose another folder or remove it")
    samples = load_eval_dataset(eval_source, split=split)
    items = list(samples)[: limit if limit is not None else None]

    rows: dict[str, list[Any]] = {c: [] for c in ("id", "problem", "solution", "image", "img_height", "img_width")}
    if with_mask:
        rows["mask"] = []
    skipped = {"empty": 0, "sam": 0}
    for sample in tqdm(items, desc="building training rows", disable=not progress):
        mask = sample.load_gt_mask()
        box = mask_bbox(mask)
        if box is None:
            skipped["empty"] += 1
            continue
        image = sample.load_image(max_pixels=None).array
        h, w = mask.shape
        if image.shape[:2] != (h, w):
            raise TrainingDataError(f"sample {sample.id!r}: image {image.shape[1]}x{image.shape[0]} and mask "
                                    f"{w}x{h} differ in size")
        p1, p2 = representative_points(mask)
        if sam_filter is not None:
            if _mask_iou(_sam_mask(sam_filter, image, box, p1), mask) < SAM_FILTER_MIN_IOU:
                skipped["sam"] += 1
                continue
        fx, fy = frame_size / w, frame_size / h
        fbox = [_scale(box[0], fx), _scale(box[1], fy), _scale(box[2], fx), _scale(box[3], fy)]
        fp1 = [_scale(p1[0], fx), _scale(p1[1], fy)]
        fp2 = [_scale(p2[0], fx), _scale(p2[1], fy)]
        if kind == "segzero":
            problem = sample.query
            solution = format_segzero_solution(fbox, fp1, fp2)
        else:
            problem = "'" + sample.query.strip().strip(".?!").lower() + "'"
            solution = format_visionreasoner_solution([{"bbox_2d": fbox, "point_2d": fp1}])
        framed = cv2.resize(image, (frame_size, frame_size), interpolation=cv2.INTER_AREA)
        rows["id"].append(str(sample.id))
        rows["problem"].append(problem)
        rows["solution"].append(solution)
        rows["image"].append({"bytes": _png_bytes(framed), "path": None})
        rows["img_height"].append(int(h))
        rows["img_width"].append(int(w))
        if with_mask:
            fmask = cv2.resize(mask.astype(np.uint8), (frame_size, frame_size),
                               interpolation=cv2.INTER_NEAREST).astype(bool)
            rows["mask"].append(rle_encode(fmask))
    if not rows["id"]:
        raise TrainingDataError(f"no usable sample in {samples.name!r} ({skipped['empty']} empty masks, "
                                f"{skipped['sam']} rejected by the SAM filter)")
    features = ds_mod.Features({
        "id": ds_mod.Value("string"), "problem": ds_mod.Value("string"), "solution": ds_mod.Value("string"),
        "image": ds_mod.Image(), "img_height": ds_mod.Value("int64"), "img_width": ds_mod.Value("int64"),
        **({"mask": {"size": ds_mod.Sequence(ds_mod.Value("int64")), "counts": ds_mod.Value("string")}}
           if with_mask else {}),
    })
    dataset = ds_mod.DatasetDict({"train": ds_mod.Dataset.from_dict(rows, features=features)})
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        dataset.save_to_disk(str(tmp))
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _png_bytes(array: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()
