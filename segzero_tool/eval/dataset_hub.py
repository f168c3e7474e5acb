"""The hub copies of ReasonSeg / RefCOCO (``Ricky06662/ReasonSeg_val``, ...) through ``datasets``:
from the hub (cached copies work offline), a downloaded copy of the dataset repository, a
``save_to_disk`` folder, or an in-memory ``Dataset`` / ``DatasetDict``.

Columns: ``image``, ``text``, ``mask`` and optionally ``image_id`` (also kept as the samples'
``image_id``), ``ann_id``, ``img_height``, ``img_width``, ``bbox``, ``is_sentence``. Rows are read lazily, one column at a time. ``datasets`` is
imported when a loader here is called.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import MissingDependencyError
from .samples import DatasetError, EvalDataset, EvalSample, box_or_none

#: The splits the hub copies are published under (``Ricky06662/ReasonSeg_val`` has only ``test``).
DEFAULT_HUB_SPLIT = "test"


def _import_datasets() -> Any:
    try:
        import datasets
    except ImportError:
        raise MissingDependencyError(
            "loading hub or save_to_disk datasets needs the `datasets` package: pip install \"segzero-tool[eval]\" "
            "(or pip install datasets); LISA folders and JSONL files need nothing extra"
        ) from None
    return datasets


def is_dataset_dict(obj: Any) -> bool:
    """A ``DatasetDict``-like mapping: not empty, and every value has ``column_names``."""
    return isinstance(obj, Mapping) and bool(obj) and all(hasattr(v, "column_names") for v in obj.values())


def _pick_split(obj: Any, split: str | None, where: str) -> tuple[Any, str | None]:
    if not is_dataset_dict(obj):
        return obj, split
    names = list(obj.keys())
    if split is None:
        if DEFAULT_HUB_SPLIT in obj:
            split = DEFAULT_HUB_SPLIT
        elif len(names) == 1:
            split = names[0]
        else:
            raise DatasetError(f"{where}: holds several splits; choose one with --split ({', '.join(names)})")
    if split not in obj:
        raise DatasetError(f"{where}: no split {split!r}; choose one of: {', '.join(names)}")
    return obj[split], split


def _short(exc: BaseException, limit: int = 240) -> str:
    text = " ".join(str(exc).split())
    return (text[: limit - 3] + "...") if len(text) > limit else text


@contextlib.contextmanager
def _quiet_hub_logs() -> Iterator[None]:
    """Keep the hub client's retry warnings off stderr: failures become one DatasetError line."""
    names = ("huggingface_hub", "datasets", "fsspec")
    saved = [(logging.getLogger(n), logging.getLogger(n).level) for n in names]
    for lg, _ in saved:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in saved:
            lg.setLevel(level)


def load_hub_dataset(repo_id: str, *, split: str | None = None, local: bool = False) -> EvalDataset:
    """A hub copy through ``datasets.load_dataset`` (cached copies work offline).

    ``local=True``: ``repo_id`` is a folder holding a downloaded copy of the dataset repository
    (``hf download --repo-type dataset Ricky06662/ReasonSeg_val --local-dir DIR``).
    """
    datasets = _import_datasets()
    try:
        with _quiet_hub_logs():
            obj = datasets.load_dataset(repo_id, split=split) if split else datasets.load_dataset(repo_id)
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:  # offline, unknown id, bad split: all one line for the user
        if local:
            raise DatasetError(f"{repo_id}: the dataset files in this folder cannot be loaded "
                               f"({type(exc).__name__}: {_short(exc)})") from None
        raise DatasetError(
            f"could not load dataset {repo_id!r} from the Hugging Face hub ({type(exc).__name__}: {_short(exc)}); "
            "if this machine is offline, download it where the hub is reachable "
            f"(hf download --repo-type dataset {repo_id} --local-dir DIR, or "
            "datasets.load_dataset(...).save_to_disk(DIR)) and pass DIR, or pass a LISA-layout folder or JSONL file"
        ) from None
    ds, used = _pick_split(obj, split, repo_id)
    if local:
        where = str(Path(repo_id).resolve())
        return from_hf_dataset(ds, name=repo_id, kind="hub-folder", location=where, split=used)
    return from_hf_dataset(ds, name=repo_id, kind="hub", location=repo_id, split=used)


def load_disk_dataset(folder: str | os.PathLike, *, split: str | None = None) -> EvalDataset:
    """A folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``."""
    datasets = _import_datasets()
    p = Path(folder).expanduser()
    try:
        obj = datasets.load_from_disk(str(p))
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:
        raise DatasetError(f"{p}: not a readable `datasets` save_to_disk folder ({_short(exc)})") from None
    ds, used = _pick_split(obj, split, str(p))
    return from_hf_dataset(ds, name=os.fspath(folder), kind="disk", location=str(p.resolve()), split=used)


_REQUIRED_COLUMNS = ("image", "text", "mask")


def from_hf_dataset(ds: Any, *, name: str, kind: str = "memory", location: str = "<memory>",
                    split: str | None = None) -> EvalDataset:
    """Wrap a ``datasets.Dataset`` with the hub copies' schema (image, text, mask[, image_id, ann_id,
    img_height, img_width, bbox, is_sentence])."""
    ds, split = _pick_split(ds, split, name)
    cols = list(ds.column_names)
    missing = [c for c in _REQUIRED_COLUMNS if c not in cols]
    if missing:
        raise DatasetError(f"{name}: missing column(s) {', '.join(missing)}; expected image, text, mask "
                           f"(found {', '.join(cols)})")
    n = len(ds)
    texts = list(ds["text"])
    image_ids = list(ds["image_id"]) if "image_id" in cols else [None] * n
    ann_ids = list(ds["ann_id"]) if "ann_id" in cols else [None] * n
    boxes = list(ds["bbox"]) if "bbox" in cols else [None] * n
    sentences = list(ds["is_sentence"]) if "is_sentence" in cols else [None] * n
    images = _Column(ds, "image")
    masks = _Column(ds, "mask", numpy=True)
    samples = []
    for i in range(n):
        text = texts[i]
        if isinstance(text, (list, tuple)):
            text = text[0] if text else ""
        samples.append(EvalSample(
            id=_row_id(image_ids[i], ann_ids[i], i),
            query=str(text) if text is not None else "",
            image=_RowGetter(images, i),
            gt_mask=_RowGetter(masks, i),
            gt_box=box_or_none(boxes[i]),
            is_sentence=None if sentences[i] is None else bool(sentences[i]),
            source=f"{name}[{i}]",
            image_id=None if image_ids[i] is None else str(image_ids[i]),
        ))
    return EvalDataset(samples, name=name, kind=kind, location=location, split=split)


def _row_id(image_id: Any, ann_id: Any, index: int) -> str:
    if image_id is None and ann_id is None:
        return f"{index:06d}"
    if ann_id is None or str(ann_id) == str(image_id):
        return str(image_id)
    if image_id is None:
        return str(ann_id)
    return f"{image_id}/{ann_id}"


class _Column:
    """One column of a ``datasets.Dataset``, read row by row (masks in numpy format: fast)."""

    def __init__(self, ds: Any, column: str, *, numpy: bool = False) -> None:
        view = ds.select_columns([column])
        if numpy:
            try:
                view = view.with_format("numpy")
            except Exception:  # pragma: no cover - very old `datasets`
                pass
        self.view = view
        self.column = column

    def __getitem__(self, i: int) -> Any:
        return self.view[i][self.column]


@dataclass(frozen=True)
class _RowGetter:
    column: _Column
    index: int

    def __call__(self) -> Any:
        return self.column[self.index]


__all__ = ["DEFAULT_HUB_SPLIT", "from_hf_dataset", "is_dataset_dict", "load_disk_dataset", "load_hub_dataset"]
