"""ReasonSeg in LISA's layout: ``<name>.jpg`` + ``<name>.json`` per sample, optionally under
``train/``, ``val/``, ``test/``.

The query is the first entry of the JSON ``text`` list, ``is_sentence`` comes from the JSON; the
ground truth is the JSON's ``shapes`` rasterised as :mod:`.gt_masks` describes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .gt_masks import LisaMask
from .samples import DatasetError, EvalDataset, EvalSample

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


def read_lisa_annotation(path: str | os.PathLike) -> dict[str, Any]:
    """Read a LISA JSON file (UTF-8, falling back to cp1252 like the reference loaders)."""
    p = Path(path)
    raw = p.read_bytes()
    for encoding in ("utf-8", "cp1252"):
        try:
            data = json.loads(raw.decode(encoding))
            break
        except (UnicodeDecodeError, ValueError):
            continue
    else:
        raise DatasetError(f"{p}: not a readable JSON annotation")
    if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
        raise DatasetError(f"{p}: a LISA annotation needs a 'shapes' list")
    return data


def _lisa_query(data: Mapping[str, Any], where: Path) -> str:
    text = data.get("text")
    if isinstance(text, list):
        text = text[0] if text else None
    if not isinstance(text, str) or not text.strip():
        raise DatasetError(f"{where}: the 'text' list is missing or empty")
    return text


def _find_image(json_path: Path) -> Path:
    for suffix in _IMAGE_SUFFIXES:
        for cand in (json_path.with_suffix(suffix), json_path.with_suffix(suffix.upper())):
            if cand.is_file():
                return cand
    raise DatasetError(f"{json_path}: no image next to it (looked for {json_path.stem}.jpg, .png, ...)")


def _lisa_split_folder(folder: Path, split: str | None) -> tuple[Path, str | None]:
    def has_json(d: Path) -> bool:
        return any(d.glob("*.json"))

    subdirs = sorted(d.name for d in folder.iterdir() if d.is_dir() and has_json(d)) if folder.is_dir() else []
    if split:
        if (folder / split).is_dir():
            return folder / split, split
        if folder.name == split and has_json(folder):
            return folder, split
        choices = f"; choose one of: {', '.join(subdirs)}" if subdirs else ""
        raise DatasetError(f"{folder}: no split folder {split!r}{choices}")
    if has_json(folder):
        return folder, None
    if subdirs:
        raise DatasetError(f"{folder}: holds several splits; choose one with --split ({', '.join(subdirs)})")
    raise DatasetError(f"{folder}: no LISA annotation files (*.json next to the images) found")


def load_lisa_folder(folder: str | os.PathLike, *, split: str | None = None,
                     ignore_as_foreground: bool = True) -> EvalDataset:
    """ReasonSeg in LISA's layout: ``<name>.jpg`` + ``<name>.json`` per sample, sorted by file name."""
    root = Path(folder).expanduser()
    d, used_split = _lisa_split_folder(root, split)
    samples: list[EvalSample] = []
    for json_path in sorted(d.glob("*.json"), key=lambda p: p.name):
        data = read_lisa_annotation(json_path)
        image_path = _find_image(json_path)
        is_sentence = data.get("is_sentence")
        samples.append(EvalSample(
            id=json_path.stem,
            query=_lisa_query(data, json_path),
            image=str(image_path),
            gt_mask=LisaMask(json_path, image_path, data["shapes"], ignore_as_foreground),
            is_sentence=bool(is_sentence) if is_sentence is not None else None,
            source=str(json_path),
            image_id=json_path.stem,
        ))
    if not samples:
        raise DatasetError(f"{d}: no LISA annotation files found")
    return EvalDataset(samples, name=os.fspath(folder), kind="lisa", location=str(d.resolve()), split=used_split,
                       ignore_as_foreground=ignore_as_foreground)


__all__ = ["load_lisa_folder", "read_lisa_annotation"]
