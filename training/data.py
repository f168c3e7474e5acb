"""Training data: the published Seg-Zero / VisionReasoner sets, JSONL, and the rows TRL reads (the builder
from masks is :mod:`.build_data`).

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
import logging
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np

from segzero_tool.eval.dataset_jsonl import jsonl_objects
from segzero_tool.eval.datasets import DatasetError
from segzero_tool.prompts import build_prompt

from .rewards import parse_segzero_solution, parse_visionreasoner_solution

logger = logging.getLogger(__name__)

__all__ = [
    "KINDS",
    "PROMPT_TEMPLATES",
    "TrainingDataError",
    "check_dataset_source",
    "detect_kind",
    "load_training_dataset",
    "parse_segzero_solution",
    "parse_visionreasoner_solution",
    "stored_frame",
    "to_grpo_row",
]

Kind = Literal["segzero", "visionreasoner"]
KINDS = ("segzero", "visionreasoner")
#: The prompt format used for each dataset kind (see :func:`segzero_tool.prompts.build_prompt`).
PROMPT_TEMPLATES: dict[str, str] = {"segzero": "segzero", "visionreasoner": "visionreasoner"}
#: Names kept importable from here; they live in :mod:`.build_data` (the builder from masks).
_BUILDER_NAMES = ("SAM_FILTER_MIN_IOU", "build_training_dataset", "format_segzero_solution",
                  "format_visionreasoner_solution", "representative_points")


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


def _open(source: Any, split: str, *, kind: str = "auto", limit: int | None = None, frame_size: int = 840) -> Any:
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
            hint = ""
            if any(path.glob("*.json")) or any(path.glob("refs(*).p")):
                hint = ("; a folder of images and masks (ReasonSeg / RefCOCO) is turned into a training set once "
                        "with `segzero-train build-dataset FOLDER OUT`")
            raise TrainingDataError(f"{path}: not a `datasets` save_to_disk folder ({type(exc).__name__}: "
                                    f"{' '.join(str(exc).split())[:200]}){hint}") from None
    if path.is_file() and path.suffix.lower() in (".jsonl", ".ndjson"):
        return _open_jsonl(path, kind=kind, limit=limit, frame_size=frame_size)
    if path.exists():
        raise TrainingDataError(f"{path}: pass a .jsonl file, a save_to_disk folder or a hub id")
    try:
        return ds.load_dataset(str(source), split=split)
    except Exception as exc:  # noqa: BLE001
        msg = " ".join(str(exc).split())[:200]
        raise TrainingDataError(f"cannot load {source!r} from the hub ({type(exc).__name__}: {msg}); offline? "
                                "download it once with network access, or pass a save_to_disk folder") from None


#: Keys of a JSONL line of training rows (the published columns, the image as a path).
_ROW_KEYS = ("problem", "solution", "image")


def _first_json_line(path: Path) -> dict[str, Any]:
    try:
        with path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if line.strip() and not line.lstrip().startswith("#"):
                    row = json.loads(line)
                    if not isinstance(row, dict):
                        raise TrainingDataError(f"{path}:{lineno}: each line must be a JSON object")
                    return row
    except (OSError, UnicodeDecodeError) as exc:
        raise TrainingDataError(f"{path}: cannot be read ({exc})") from None
    except ValueError as exc:
        raise TrainingDataError(f"{path}: not JSON lines ({exc})") from None
    raise TrainingDataError(f"{path}: no rows")


def _open_jsonl(path: Path, *, kind: str, limit: int | None, frame_size: int) -> Any:
    """A ``.jsonl`` training source: training rows (``problem``, ``solution``, ``image`` path) as they are,
    or the evaluation format (``image``, ``query``, a mask) turned into rows in memory."""
    first = _first_json_line(path)
    if "solution" in first:
        return _jsonl_rows(path, limit)
    if "query" in first or "text" in first:
        from .build_data import build_training_rows

        built_kind = "visionreasoner" if kind == "auto" else kind
        rows, report = build_training_rows(path, kind=built_kind, limit=limit, frame_size=frame_size,
                                           progress=True)
        logger.info("built %s from the masks in %s (for a large set, run `segzero-train build-dataset` once "
                    "and train on its folder)", report.summary(), path)
        return rows
    raise TrainingDataError(f"{path}: a line needs {', '.join(_ROW_KEYS)} (training rows) or image, query and a "
                            f"mask (the evaluation format); the first has {', '.join(sorted(first)) or 'no keys'}")


def _jsonl_rows(path: Path, limit: int | None) -> Any:
    ds = _datasets()
    cols: dict[str, list[Any]] = {"problem": [], "solution": [], "image": []}
    masks: list[Any] = []
    # every object given is a row or raises, so the limit on objects is the limit on rows
    for where, _lineno, row in jsonl_objects(path, error=TrainingDataError, limit=limit):
        missing = [k for k in _ROW_KEYS if k not in row]
        if missing:
            raise TrainingDataError(f"{where}: missing {', '.join(missing)}")
        if not all(isinstance(row[k], str) and row[k] for k in _ROW_KEYS):
            raise TrainingDataError(f"{where}: problem, solution and image must be non-empty strings")
        image = Path(row["image"]).expanduser()
        image = image if image.is_absolute() else path.parent / image
        try:
            data = image.read_bytes()
        except OSError as exc:
            raise TrainingDataError(f"{where}: image {image} cannot be read ({exc.strerror or exc})") from None
        cols["problem"].append(row["problem"])
        cols["solution"].append(row["solution"])
        cols["image"].append({"bytes": data, "path": None})
        masks.append(row.get("mask"))
    if not cols["problem"]:
        raise TrainingDataError(f"{path}: no rows")
    features = {"problem": ds.Value("string"), "solution": ds.Value("string"), "image": ds.Image()}
    if any(m is not None for m in masks):
        if not all(isinstance(m, dict) and "size" in m and "counts" in m for m in masks):
            raise TrainingDataError(f"{path}: `mask` must be a COCO RLE {{size, counts}} on every line or on none")
        cols["mask"] = [{"size": [int(v) for v in m["size"]], "counts": str(m["counts"])} for m in masks]
        features["mask"] = {"size": ds.Sequence(ds.Value("int64")), "counts": ds.Value("string")}
    return ds.Dataset.from_dict(cols, features=ds.Features(features))


def load_training_dataset(source: Any, *, kind: Literal["auto", "segzero", "visionreasoner"] = "auto",
                          split: str = "train", limit: int | None = None, frame_size: int = 840) -> Any:
    """Open a published (or built) training set and turn its rows into :func:`to_grpo_row` rows.

    Args:
        source: a ``save_to_disk`` folder (``DatasetDict`` or ``Dataset``), a hub id such as
            ``Ricky06662/refCOCOg_9k_840``, an in-memory ``datasets.Dataset`` / ``DatasetDict``, or a
            ``.jsonl`` file: training rows (``problem``, ``solution``, ``image`` path relative to the file,
            optional ``mask`` RLE) or the evaluation format (``image``, ``query``, a mask), built into rows
            in memory by :func:`~segzero_tool.training.build_data.build_training_rows` (one row per line).
        kind: ``auto`` detects it from the first ``solution`` (the evaluation format: ``visionreasoner``).
        split: the split of a ``DatasetDict`` / hub dataset (a single-split dict uses its only split).
        limit: keep the first ``limit`` rows.

    Raises:
        TrainingDataError: unreadable, offline, missing columns, unparsable solutions.
    """
    ds = _open(source, split, kind=kind, limit=limit, frame_size=frame_size)
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


def _png_bytes(array: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    # zlib level 1: the same pixels, about 8% larger than PIL's default level 6 and 3-4x faster to write
    # (85 vs 388 ms for an 840 x 840 frame here; benchmarks/results/build_data_speed.md)
    Image.fromarray(array).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def __getattr__(name: str) -> Any:
    if name in _BUILDER_NAMES:
        from . import build_data

        return getattr(build_data, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
