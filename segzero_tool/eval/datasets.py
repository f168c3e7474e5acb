"""Evaluation datasets: ReasonSeg in LISA's layout, the hub copies (through ``datasets``) and JSONL.

Every loader returns an :class:`EvalDataset`: an ordered list of :class:`EvalSample` whose image and
ground-truth mask are loaded only when asked for (a ReasonSeg test image can be 12 megapixels).
:func:`load_eval_dataset` tells the sources apart; each has its module:

* :mod:`.samples`: :class:`EvalSample`, :class:`EvalDataset`, :class:`DatasetError`, images read as
  stored (EXIF orientation *not* applied, as the reference evaluation) and masks as bool arrays;
* :mod:`.gt_masks`: ground truth from annotations (LISA's rasterisation rules, PNG, RLE, polygons);
* :mod:`.dataset_lisa`: ReasonSeg in LISA's layout (``<name>.jpg`` + ``<name>.json``);
* :mod:`.dataset_refer`: RefCOCO / RefCOCO+ / RefCOCOg in LISA's ``refer_seg`` layout;
* :mod:`.dataset_hub`: the hub copies, downloaded copies and ``save_to_disk`` folders (``datasets``);
* :mod:`.dataset_jsonl`: users' own data as JSONL.

The loaders and types callers use (``__all__`` here) stay importable from this module.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from .dataset_hub import (
    DEFAULT_HUB_SPLIT,
    from_hf_dataset,
    is_dataset_dict,
    load_disk_dataset,
    load_hub_dataset,
)
from .dataset_jsonl import load_jsonl
from .dataset_lisa import load_lisa_folder, read_lisa_annotation
from .dataset_refer import DEFAULT_REFER_SPLIT, is_refer_folder, load_refer_folder
from .gt_masks import lisa_label_map, rasterize_lisa_shapes
from .samples import (
    DatasetError,
    EvalDataset,
    EvalSample,
    read_image_as_stored,
    stored_image_size,
    to_bool_mask,
)

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def load_eval_dataset(spec: Any, *, split: str | None = None, ignore_as_foreground: bool = True) -> EvalDataset:
    """Open an evaluation dataset.

    Args:
        spec: a ReasonSeg folder in LISA's layout, a RefCOCO / RefCOCO+ / RefCOCOg folder in LISA's
            ``refer_seg`` layout (``instances.json`` + ``refs(X).p``), a ``.jsonl`` file, a folder written
            by ``datasets``' ``save_to_disk``, a hub id (``Ricky06662/ReasonSeg_val``), or an in-memory
            ``datasets.Dataset`` / ``DatasetDict`` with the hub copies' columns.
        split: LISA: the subfolder (``val``, ``test``, ...); RefCOCO folders: the refs' split (default
            ``val``); hub / disk: the split (default ``test`` or the only one); JSONL: ignored.
        ignore_as_foreground: LISA folders only: count ``ignore`` regions as foreground, as the hub
            copies do (default) or not.

    Raises:
        DatasetError: not found, unreadable, wrong layout or schema; offline for a hub id.
        MissingDependencyError: ``datasets`` is needed and not installed.
    """
    if isinstance(spec, EvalDataset):
        return spec
    if not isinstance(spec, (str, os.PathLike)):
        if hasattr(spec, "column_names") or is_dataset_dict(spec):
            return from_hf_dataset(spec, name=f"<{type(spec).__name__}>", kind="memory", location="<memory>",
                                   split=split)
        raise DatasetError(f"unsupported dataset object of type {type(spec).__name__}")
    text = os.fspath(spec)
    path = Path(text).expanduser()
    if path.is_file():
        if path.suffix.lower() in (".jsonl", ".ndjson"):
            return load_jsonl(path)
        raise DatasetError(f"{path}: unsupported dataset file; pass a .jsonl file, a LISA-layout folder, "
                           "a `datasets` save_to_disk folder or a hub id")
    if path.is_dir():
        if is_refer_folder(path):
            return load_refer_folder(path, split=split)
        refer_subfolders = sorted(d.name for d in path.iterdir() if is_refer_folder(d))
        if refer_subfolders:
            raise DatasetError(f"{path}: holds RefCOCO datasets in LISA's refer_seg layout; pass one of its folders: "
                               + ", ".join(str(path / d) for d in refer_subfolders))
        if any((path / marker).exists() for marker in ("dataset_info.json", "state.json", "dataset_dict.json")):
            return load_disk_dataset(path, split=split)
        if not any(path.glob("*.json")) and any(path.rglob("*.parquet")):
            return load_hub_dataset(str(path), split=split, local=True)
        return load_lisa_folder(path, split=split, ignore_as_foreground=ignore_as_foreground)
    # ``data/ReasonSeg`` where ./data exists is a mistyped folder, not a hub id: never ask the hub for it
    local_head = "/" in text and Path(text.split("/", 1)[0]).expanduser().is_dir()
    if _HUB_ID.match(text) and not text.lower().endswith((".jsonl", ".json")) and not local_head:
        return load_hub_dataset(text, split=split)
    near = f"; {Path(text.split('/', 1)[0])} holds no {text.split('/', 1)[1]!r}" if local_head else ""
    raise DatasetError(f"{path}: no such file or folder{near} (pass a LISA-layout folder, a .jsonl file, "
                       "a `datasets` save_to_disk folder or a hub id like Ricky06662/ReasonSeg_val)")


__all__ = [
    "DEFAULT_HUB_SPLIT",
    "DEFAULT_REFER_SPLIT",
    "DatasetError",
    "EvalDataset",
    "EvalSample",
    "from_hf_dataset",
    "lisa_label_map",
    "load_disk_dataset",
    "load_eval_dataset",
    "load_hub_dataset",
    "load_jsonl",
    "load_lisa_folder",
    "load_refer_folder",
    "rasterize_lisa_shapes",
    "read_image_as_stored",
    "read_lisa_annotation",
    "stored_image_size",
    "to_bool_mask",
]
