"""RefCOCO / RefCOCO+ / RefCOCOg in LISA's ``refer_seg`` layout (the ``refer`` API's files)::

    refer_seg/
      images/mscoco/images/train2014/COCO_train2014_000000581857.jpg ...
      refcocog/instances.json         COCO images, annotations (polygons or RLE), categories
      refcocog/refs(umd).p            the referring expressions (also refs(google).p; refcoco, refcoco+: refs(unc).p)

The refs pickle is a list of dicts (``ref_id``, ``ann_id``, ``image_id``, ``split``, ``sentences``, ...)
written by Python 2: it is read with ``encoding="latin1"`` by an unpickler that refuses every class, so
a pickle that would import or call anything (``os.system`` through ``__reduce__``) is refused before it
runs. The ground truth is the referred annotation's segmentation decoded as COCO does (pycocotools:
polygons rasterised at the image's ``height`` x ``width`` from ``instances.json``, then united), as the
``refer`` API's ``getMask`` and LISA's loader do. Images and masks are loaded lazily.
"""

from __future__ import annotations

import io
import json
import os
import pickle
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .gt_masks import RleMask, check_rle
from .samples import DatasetError, EvalDataset, EvalSample, box_or_none

#: The split used when none is given (the RefCOCO benchmarks report ``val``, ``testA``, ``testB``, ``test``).
DEFAULT_REFER_SPLIT = "val"
#: Where the COCO images lie relative to a ``refer_seg/<dataset>`` folder, tried in this order.
IMAGE_ROOT_CANDIDATES = ("../images/mscoco/images/train2014", "images", "train2014")
_SENTENCE_MODES = ("all", "first")


def is_refer_folder(path: str | os.PathLike) -> bool:
    """A folder with ``instances.json`` and at least one ``refs(*).p`` file."""
    p = Path(path)
    return p.is_dir() and (p / "instances.json").is_file() and any(p.glob("refs(*).p"))


# --- reading the files -----------------------------------------------------------------------------


class _ClassRefused(pickle.UnpicklingError):
    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"{module}.{name}")
        self.what = f"{module}.{name}"


class _NoClassesUnpickler(pickle.Unpickler):
    """Plain containers only: any class or function the pickle names is refused, never imported."""

    def find_class(self, module: str, name: str) -> Any:
        raise _ClassRefused(module, name)


def read_refs_pickle(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The refs list of a ``refs(X).p`` file, read without running or importing anything from it."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{p}: cannot be read ({exc.strerror or exc})") from None
    try:
        refs = _NoClassesUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except _ClassRefused as exc:
        raise DatasetError(f"{p}: refused: the pickle asks for {exc.what}, but a refs file holds only lists, "
                           "dicts, strings and numbers; use the refs(X).p files of the refer / LISA release") from None
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:  # truncated (EOFError), garbage (UnpicklingError, ValueError, ...): one line
        raise DatasetError(f"{p}: not a readable refs pickle ({type(exc).__name__}: {exc}); "
                           "the file may be truncated: download it again") from None
    if not isinstance(refs, list) or not all(isinstance(r, dict) for r in refs):
        raise DatasetError(f"{p}: a refs pickle holds a list of dicts, got {type(refs).__name__}")
    return refs


def _read_instances(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            data = json.load(fh)
    except OSError as exc:
        raise DatasetError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise DatasetError(f"{path}: not valid JSON ({exc}); the file may be truncated: download it again") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("annotations"), list):
        raise DatasetError(f"{path}: a COCO instances file needs 'images' and 'annotations' lists")
    return data


def _text(value: Any) -> str | None:
    """A sentence as text; Python 2 UTF-8 byte strings read as latin-1 are repaired."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if not isinstance(value, str):
        return None
    if not value.isascii():
        try:
            value = value.encode("latin1").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            pass
    return value


# --- choosing the refs file, split and images ------------------------------------------------------


def _split_by_of(name: str) -> str:
    return name[len("refs("):-len(").p")]


def _refs_file(folder: Path, split_by: str | None) -> tuple[Path, str]:
    present = sorted(_split_by_of(p.name) for p in folder.glob("refs(*).p"))
    if not present:
        raise DatasetError(f"{folder}: no refs(X).p file (refs(unc).p, refs(umd).p, refs(google).p)")
    if split_by is None:
        if len(present) == 1:
            split_by = present[0]
        else:
            split_by = "umd" if "refcocog" in folder.name.lower() else "unc"
            if split_by not in present:
                raise DatasetError(f"{folder}: holds several refs files; choose one with split_by= "
                                   f"({', '.join(present)})")
    if split_by not in present:
        raise DatasetError(f"{folder}: no refs({split_by}).p; split_by must be one of: {', '.join(present)}")
    return folder / f"refs({split_by}).p", split_by


def _image_root(folder: Path, image_root: str | os.PathLike | None, first_file: str | None) -> Path:
    if image_root is not None:
        root = Path(image_root).expanduser()
        if not root.is_dir():
            raise DatasetError(f"image_root {root}: no such folder")
        return root
    tried = [(folder / c).resolve() for c in IMAGE_ROOT_CANDIDATES]
    existing = [d for d in tried if d.is_dir()]
    for d in existing:  # the one that holds the first image wins; else the first folder that exists
        if first_file and (d / first_file).is_file():
            return d
    if existing:
        return existing[0]
    raise DatasetError(f"{folder}: no COCO train2014 image folder found (tried {', '.join(map(str, tried))}); "
                       "pass image_root= the folder holding the COCO_train2014_*.jpg files")


# --- the ground truth ------------------------------------------------------------------------------


def _check_segmentation(seg: Any, where: str) -> Any:
    """Polygons (flat ``[x0, y0, ...]`` lists; ones under 3 points dropped), an RLE dict, or a list of them."""
    if isinstance(seg, dict):
        return check_rle(seg, where)
    if isinstance(seg, list) and seg and all(isinstance(r, dict) for r in seg):
        return [check_rle(r, where) for r in seg]
    if isinstance(seg, list):
        polys = []
        for poly in seg:
            if not isinstance(poly, list) or not all(isinstance(v, (int, float)) and np.isfinite(v) for v in poly):
                raise DatasetError(f"{where}: a segmentation is polygons [[x0, y0, x1, y1, ...], ...] or a COCO RLE")
            if len(poly) >= 6:
                polys.append([float(v) for v in poly[: len(poly) // 2 * 2]])
        return polys
    raise DatasetError(f"{where}: a segmentation is polygons [[x0, y0, x1, y1, ...], ...] or a COCO RLE")


@dataclass(frozen=True)
class CocoSegmentationMask:
    """A COCO annotation's ``segmentation`` decoded as pycocotools does: polygons rasterised at
    ``height`` x ``width`` and united; an RLE dict (string or list counts) or a list of them united."""

    segmentation: Any
    height: int
    width: int
    where: str = ""

    def __call__(self) -> np.ndarray:
        seg = self.segmentation
        if isinstance(seg, dict):
            return RleMask(seg)()
        from pycocotools import mask as mask_utils

        if not seg:
            return np.zeros((self.height, self.width), dtype=bool)
        try:
            if isinstance(seg[0], dict):
                rles = [mask_utils.frPyObjects(r, int(r["size"][0]), int(r["size"][1])) if isinstance(r["counts"], list)
                        else {"size": [int(v) for v in r["size"]],
                              "counts": r["counts"].encode("ascii") if isinstance(r["counts"], str) else r["counts"]}
                        for r in seg]
            else:
                rles = mask_utils.frPyObjects(seg, self.height, self.width)
            return mask_utils.decode(mask_utils.merge(rles)).astype(bool)
        except (TypeError, ValueError) as exc:
            raise DatasetError(f"{self.where}: the segmentation cannot be decoded ({exc})") from None


# --- the loader ------------------------------------------------------------------------------------


def load_refer_folder(path: str | os.PathLike, *, split: str | None = None, split_by: str | None = None,
                      image_root: str | os.PathLike | None = None, sentences: str = "all") -> EvalDataset:
    """RefCOCO / RefCOCO+ / RefCOCOg in LISA's ``refer_seg`` layout.

    Args:
        path: the dataset folder (``refer_seg/refcocog``) holding ``instances.json`` and ``refs(X).p``.
        split: the refs' ``split`` (``train``, ``val``, ``test``, ``testA``, ``testB``); default ``val``.
        split_by: which ``refs(X).p`` to read (``unc``, ``umd``, ``google``); default: the only one, else
            ``umd`` for RefCOCOg and ``unc`` otherwise.
        image_root: the folder of the COCO ``train2014`` images; default: the first of
            ``../images/mscoco/images/train2014`` (LISA), ``images/``, ``train2014/`` that exists.
        sentences: ``all`` (one sample per sentence, the evaluation protocol) or ``first`` (one per
            ref, its first sentence, as the training-data builder does).

    Samples are ``<ref_id>_<sent_id>``, in the pickle's order; the query is the sentence's ``raw`` text
    (else ``sent``), ``gt_box`` the annotation's ``bbox`` as ``(x, y, x + w, y + h)``, ``image_id`` the
    COCO image id.

    Raises:
        DatasetError: a missing or unreadable file, a pickle that asks for a class, an unknown split
            or ``split_by``, no image folder.
    """
    folder = Path(path).expanduser()
    if sentences not in _SENTENCE_MODES:
        raise DatasetError(f"sentences must be one of {', '.join(_SENTENCE_MODES)}, got {sentences!r}")
    instances_path = folder / "instances.json"
    if not instances_path.is_file():
        raise DatasetError(f"{folder}: no instances.json (a refer_seg dataset folder holds instances.json "
                           "and refs(X).p)")
    refs_path, _ = _refs_file(folder, split_by)
    refs = read_refs_pickle(refs_path)
    split = split or DEFAULT_REFER_SPLIT
    chosen = [r for r in refs if r.get("split") == split]
    if not chosen:
        counts = Counter(str(r.get("split")) for r in refs)
        present = ", ".join(f"{k} ({n})" for k, n in sorted(counts.items())) or "none"
        raise DatasetError(f"{refs_path}: no refs in split {split!r}; choose one with --split: {present}")
    instances = _read_instances(instances_path)
    images = {im.get("id"): im for im in instances["images"] if isinstance(im, Mapping)}
    anns = {a.get("id"): a for a in instances["annotations"] if isinstance(a, Mapping)}

    first_image = images.get(chosen[0].get("image_id"), {}).get("file_name")
    root = _image_root(folder, image_root, first_image if isinstance(first_image, str) else None)

    samples: list[EvalSample] = []
    for ref in chosen:
        ref_id = ref.get("ref_id")
        where = f"{refs_path.name}: ref {ref_id}"
        ann = anns.get(ref.get("ann_id"))
        if ann is None:
            raise DatasetError(f"{where}: annotation {ref.get('ann_id')} is not in {instances_path}; "
                               "the refs file and instances.json come from different datasets")
        image_id = ref.get("image_id", ann.get("image_id"))
        im = images.get(image_id)
        if im is None or not isinstance(im.get("file_name"), str):
            raise DatasetError(f"{where}: image {image_id} is not in {instances_path}")
        try:
            height, width = int(im["height"]), int(im["width"])
        except (KeyError, TypeError, ValueError):
            raise DatasetError(f"{instances_path}: image {image_id} needs integer 'height' and 'width'") from None
        mask = CocoSegmentationMask(_check_segmentation(ann.get("segmentation"), f"{where}, annotation {ann.get('id')}"),
                                    height, width, where)
        bbox = ann.get("bbox")
        gt_box = None
        if isinstance(bbox, (list, tuple)) and len(bbox) == 4:
            try:
                x, y, w, h = (float(v) for v in bbox)
                gt_box = box_or_none((x, y, x + w, y + h))
            except (TypeError, ValueError):
                gt_box = None
        sents = [s for s in (ref.get("sentences") or []) if isinstance(s, Mapping)]
        if sentences == "first":
            sents = sents[:1]
        image_path = str(root / im["file_name"])
        for k, sent in enumerate(sents):
            text = _text(sent.get("raw")) or _text(sent.get("sent"))
            if not text:
                continue
            sent_id = sent.get("sent_id", k)
            samples.append(EvalSample(
                id=f"{ref_id}_{sent_id}",
                query=text,
                image=image_path,
                gt_mask=mask,
                gt_box=gt_box,
                is_sentence=None,
                source=f"{where}, sentence {sent_id}",
                image_id=str(image_id),
            ))
    if not samples:
        raise DatasetError(f"{refs_path}: the refs of split {split!r} have no sentences")
    location = str(refs_path.resolve()) + ("" if sentences == "all" else "#first-sentence")
    return EvalDataset(samples, name=os.fspath(path), kind="refer", location=location, split=split)


__all__ = ["DEFAULT_REFER_SPLIT", "CocoSegmentationMask", "is_refer_folder", "load_refer_folder", "read_refs_pickle"]
