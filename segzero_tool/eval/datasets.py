"""Evaluation datasets: ReasonSeg in LISA's layout, the hub copies (through ``datasets``) and JSONL.

Every loader returns an :class:`EvalDataset`: an ordered list of :class:`EvalSample` whose image and
ground-truth mask are loaded only when asked for (a ReasonSeg test image can be 12 megapixels).

Images are used **as stored**: EXIF orientation is *not* applied, because the reference evaluation
feeds the hub copies' PIL images as they are and rasterised the ground truth at the stored size
(``PIL.Image.open(path).size``). Masks therefore live on the stored pixel grid.

ReasonSeg in LISA's layout (one ``<name>.json`` per ``<name>.jpg``, optionally under ``train/``,
``val/``, ``test/``) is rasterised as the hub copies were made (protocol section 3.1):

* a shape whose label is ``flag`` (case-insensitive) is skipped;
* every other shape is drawn (OpenCV ``polylines`` of width 1 plus ``fillPoly``, vertices truncated to
  ``int32``) in descending order of its own rasterised area, so smaller shapes land on top;
* a label containing ``ignore`` is written as 255, any other label as 1 (target);
* ``ignore_as_foreground=True`` (default) then casts to bool, so ignore regions count as foreground,
  exactly like the hub copies; ``False`` keeps only the target pixels (value 1).

The query is the first entry of the JSON ``text`` list, ``is_sentence`` comes from the JSON.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ImageLoadError, MissingDependencyError, SegZeroError
from ..images import DEFAULT_MAX_PIXELS, LoadedImage, load_image

logger = logging.getLogger(__name__)

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
#: The splits the hub copies are published under (``Ricky06662/ReasonSeg_val`` has only ``test``).
DEFAULT_HUB_SPLIT = "test"


class DatasetError(SegZeroError, ValueError):
    """An evaluation dataset could not be found, read or understood."""

    exit_code = 9


# --- the sample ------------------------------------------------------------------------------------


@dataclass
class EvalSample:
    """One evaluation sample.

    Attributes:
        id: unique within its dataset (LISA: the file stem; hub copies: ``image_id`` and ``ann_id``;
            JSONL: the ``id`` field or the line number).
        query: the question as written in the dataset.
        image: a path, a PIL image, an ``(H, W[, C])`` array, encoded bytes, or a zero-argument
            callable returning one of those (loaded lazily by :meth:`load_image`).
        gt_mask: ``(H, W)`` bool array or a zero-argument callable returning one (:meth:`load_gt_mask`).
        gt_box: ground-truth ``(x1, y1, x2, y2)`` box (the RefCOCO copies' ``bbox``), if any.
        is_sentence: ``True`` for a long (sentence) query, ``False`` for a short one, ``None`` unknown.
        source: where the sample came from, for messages.
    """

    id: str
    query: str
    image: Any = field(repr=False)
    gt_mask: Any = field(repr=False)
    gt_box: tuple[float, float, float, float] | None = None
    is_sentence: bool | None = None
    source: str = ""

    def load_image(self, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> LoadedImage:
        """The image as ``(H, W, 3)`` uint8 RGB, stored orientation (EXIF not applied).

        Raises:
            ImageLoadError / ImageTooLargeError: missing, undecodable or too large.
        """
        src = self.image() if callable(self.image) else self.image
        if isinstance(src, (str, os.PathLike)):
            return read_image_as_stored(src, max_pixels=max_pixels)
        return load_image(src, max_pixels=max_pixels)

    def load_gt_mask(self) -> np.ndarray:
        """The ground truth as an ``(H, W)`` bool array (any non-zero value is foreground)."""
        src = self.gt_mask() if callable(self.gt_mask) else self.gt_mask
        return to_bool_mask(src, what=f"ground-truth mask of sample {self.id!r}")


def read_image_as_stored(path: str | os.PathLike, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Decode an image file to RGB without applying its EXIF orientation (as the reference eval)."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path).expanduser()
    if not p.is_file():
        raise ImageLoadError(f"{p}: no such file")
    try:
        with Image.open(p) as img:
            if max_pixels is not None and img.width * img.height > max_pixels:
                # load_image raises the proper error from the header alone
                return load_image(img, max_pixels=max_pixels)
            img.load()
            loaded = load_image(img, max_pixels=max_pixels)
    except ImageLoadError:
        raise
    except UnidentifiedImageError:
        raise ImageLoadError(f"{p}: not a recognised image format (PNG, JPEG, WebP, ...)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageLoadError(f"{p}: the image could not be decoded ({exc}); is the file complete?") from None
    return LoadedImage(loaded.array, str(p))


def stored_image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(width, height)`` from the file header, stored orientation."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return int(img.width), int(img.height)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ImageLoadError(f"{path}: cannot read the image header ({exc})") from None


def to_bool_mask(value: Any, *, what: str = "mask") -> np.ndarray:
    """A PIL image, array or nested list as an ``(H, W)`` bool array (non-zero is foreground)."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        Image = None  # type: ignore[assignment]
    if Image is not None and isinstance(value, Image.Image):
        value = np.asarray(value)
    arr = np.asarray(value)
    if arr.dtype == object:  # ragged or nested arrays from some `datasets` formats
        try:
            arr = np.stack([np.asarray(r) for r in value])
        except ValueError:
            raise DatasetError(f"{what} is ragged (rows of different lengths)") from None
    if arr.ndim == 3 and arr.shape[2] in (1, 2, 3, 4):  # colour PNGs: any non-zero colour channel
        colour = arr.shape[2] - 1 if arr.shape[2] in (2, 4) else arr.shape[2]  # drop an alpha channel
        arr = arr[:, :, :colour].any(axis=2)
    if arr.ndim != 2 or arr.size == 0:
        raise DatasetError(f"{what} must be a non-empty 2-D array, got shape {arr.shape}")
    return arr.astype(bool) if arr.dtype != np.bool_ else arr


# --- the dataset -----------------------------------------------------------------------------------


class EvalDataset(Sequence[EvalSample]):
    """An ordered, id-unique list of :class:`EvalSample` plus where it came from.

    Attributes:
        name: what the user passed (path or hub id).
        kind: ``lisa``, ``jsonl``, ``hub``, ``hub-folder`` (a downloaded copy of a hub dataset repository),
            ``disk`` (a ``save_to_disk`` folder) or ``memory``.
        location: absolute path or hub id.
        split: the split used, if any.
        ignore_as_foreground: the LISA rasterisation switch (``None`` where it does not apply).
    """

    def __init__(self, samples: Iterable[EvalSample], *, name: str, kind: str, location: str,
                 split: str | None = None, ignore_as_foreground: bool | None = None) -> None:
        self.samples: list[EvalSample] = _unique_ids(list(samples))
        self.name = name
        self.kind = kind
        self.location = location
        self.split = split
        self.ignore_as_foreground = ignore_as_foreground
        self._by_id = {s.id: s for s in self.samples}

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index):  # type: ignore[override]
        return self.samples[index]

    def __iter__(self) -> Iterator[EvalSample]:
        return iter(self.samples)

    def get(self, sample_id: str) -> EvalSample | None:
        return self._by_id.get(sample_id)

    def describe(self) -> dict[str, Any]:
        """What the run manifest records about the dataset."""
        return {"name": self.name, "kind": self.kind, "location": self.location, "split": self.split,
                "samples": len(self.samples), "ignore_as_foreground": self.ignore_as_foreground}

    def __repr__(self) -> str:
        return f"EvalDataset({self.name!r}, kind={self.kind!r}, split={self.split!r}, samples={len(self)})"


def _unique_ids(samples: list[EvalSample]) -> list[EvalSample]:
    seen: dict[str, int] = {}
    for s in samples:
        s.id = str(s.id)
        if s.id in seen:
            seen[s.id] += 1
            new = f"{s.id}#{seen[s.id]}"
            while new in seen:
                seen[s.id] += 1
                new = f"{s.id}#{seen[s.id]}"
            logger.warning("duplicate sample id %r renamed to %r", s.id, new)
            s.id = new
        seen.setdefault(s.id, 1)
    return samples


# --- dispatch --------------------------------------------------------------------------------------


def load_eval_dataset(spec: Any, *, split: str | None = None, ignore_as_foreground: bool = True) -> EvalDataset:
    """Open an evaluation dataset.

    Args:
        spec: a ReasonSeg folder in LISA's layout, a ``.jsonl`` file, a folder written by
            ``datasets``' ``save_to_disk``, a hub id (``Ricky06662/ReasonSeg_val``), or an in-memory
            ``datasets.Dataset`` / ``DatasetDict`` with the hub copies' columns.
        split: LISA: the subfolder (``val``, ``test``, ...); hub / disk: the split (default ``test``
            or the only one); JSONL: ignored.
        ignore_as_foreground: LISA folders only: count ``ignore`` regions as foreground, as the hub
            copies do (default) or not.

    Raises:
        DatasetError: not found, unreadable, wrong layout or schema; offline for a hub id.
        MissingDependencyError: ``datasets`` is needed and not installed.
    """
    if isinstance(spec, EvalDataset):
        return spec
    if not isinstance(spec, (str, os.PathLike)):
        if hasattr(spec, "column_names") or _is_dataset_dict(spec):
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
        if any((path / marker).exists() for marker in ("dataset_info.json", "state.json", "dataset_dict.json")):
            return load_disk_dataset(path, split=split)
        if not any(path.glob("*.json")) and any(path.rglob("*.parquet")):
            return load_hub_dataset(str(path), split=split, local=True)
        return load_lisa_folder(path, split=split, ignore_as_foreground=ignore_as_foreground)
    if _HUB_ID.match(text) and not text.lower().endswith((".jsonl", ".json")):
        return load_hub_dataset(text, split=split)
    raise DatasetError(f"{path}: no such file or folder (pass a LISA-layout folder, a .jsonl file, "
                       "a `datasets` save_to_disk folder or a hub id like Ricky06662/ReasonSeg_val)")


# --- ReasonSeg in LISA's layout --------------------------------------------------------------------


def _int_points(points: Any, where: str) -> np.ndarray:
    try:
        arr = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        raise DatasetError(f"{where}: polygon points must be [[x, y], ...] numbers") from None
    if arr.ndim != 2 or arr.shape[1] != 2 or len(arr) == 0:
        raise DatasetError(f"{where}: polygon points must be a non-empty [[x, y], ...] list, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise DatasetError(f"{where}: polygon points must be finite numbers")
    return arr.astype(np.int32)  # truncation toward zero, as np.array(points, dtype=np.int32)


def lisa_label_map(shapes: Sequence[Mapping[str, Any]], height: int, width: int, *, where: str = "shapes") -> np.ndarray:
    """Rasterise LISA ``shapes`` to a uint8 map: 0 background, 1 target, 255 ignore.

    ``flag`` shapes are skipped; the others are drawn largest first (area = the shape's own
    rasterised pixel count; equal areas keep the reverse of their file order), each as a closed
    1-pixel polyline plus a filled polygon.
    """
    import cv2

    drawn: list[tuple[np.ndarray, int]] = []
    areas: list[int] = []
    for k, shape in enumerate(shapes):
        label = str(shape.get("label", ""))
        if label.lower() == "flag":
            continue
        pts = _int_points(shape.get("points"), f"{where}, shape {k}")
        tmp = np.zeros((height, width), dtype=np.uint8)
        cv2.polylines(tmp, [pts], True, 1, 1)
        cv2.fillPoly(tmp, [pts], 1)
        areas.append(int(tmp.sum()))
        drawn.append((pts, 255 if "ignore" in label.lower() else 1))
    out = np.zeros((height, width), dtype=np.uint8)
    # descending area; for ties the later shape is drawn first (the reverse of a stable ascending sort)
    for i in np.argsort(np.asarray(areas, dtype=np.int64), kind="stable")[::-1]:
        pts, value = drawn[int(i)]
        cv2.polylines(out, [pts], True, value, 1)
        cv2.fillPoly(out, [pts], value)
    return out


def rasterize_lisa_shapes(shapes: Sequence[Mapping[str, Any]], height: int, width: int, *,
                          ignore_as_foreground: bool = True, where: str = "shapes") -> np.ndarray:
    """The ``(H, W)`` bool ground truth of LISA ``shapes`` (see :func:`lisa_label_map`)."""
    labels = lisa_label_map(shapes, height, width, where=where)
    return labels != 0 if ignore_as_foreground else labels == 1


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
            gt_mask=_LisaMask(json_path, image_path, data["shapes"], ignore_as_foreground),
            is_sentence=bool(is_sentence) if is_sentence is not None else None,
            source=str(json_path),
        ))
    if not samples:
        raise DatasetError(f"{d}: no LISA annotation files found")
    return EvalDataset(samples, name=os.fspath(folder), kind="lisa", location=str(d.resolve()), split=used_split,
                       ignore_as_foreground=ignore_as_foreground)


@dataclass(frozen=True)
class _LisaMask:
    json_path: Path
    image_path: Path
    shapes: list
    ignore_as_foreground: bool

    def __call__(self) -> np.ndarray:
        w, h = stored_image_size(self.image_path)
        return rasterize_lisa_shapes(self.shapes, h, w, ignore_as_foreground=self.ignore_as_foreground,
                                     where=str(self.json_path))


# --- the hub copies (``datasets``) -----------------------------------------------------------------


def _import_datasets() -> Any:
    try:
        import datasets
    except ImportError:
        raise MissingDependencyError(
            "loading hub or save_to_disk datasets needs the `datasets` package: pip install \"segzero-tool[eval]\" "
            "(or pip install datasets); LISA folders and JSONL files need nothing extra"
        ) from None
    return datasets


def _is_dataset_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(hasattr(v, "column_names") for v in obj.values())


def _pick_split(obj: Any, split: str | None, where: str) -> tuple[Any, str | None]:
    if not _is_dataset_dict(obj):
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
            gt_box=_box_or_none(boxes[i]),
            is_sentence=None if sentences[i] is None else bool(sentences[i]),
            source=f"{name}[{i}]",
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


def _box_or_none(value: Any) -> tuple[float, float, float, float] | None:
    if value is None:
        return None
    try:
        arr = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        return None
    if arr.size != 4 or not np.all(np.isfinite(arr)):
        return None
    return (float(arr[0]), float(arr[1]), float(arr[2]), float(arr[3]))


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


# --- JSONL -----------------------------------------------------------------------------------------


def load_jsonl(path: str | os.PathLike) -> EvalDataset:
    """Users' own data, one JSON object per line::

        {"image": "imgs/a.jpg", "query": "the cup", "mask": "masks/a.png"}
        {"image": "imgs/b.jpg", "query": "...", "mask": {"size": [H, W], "counts": "..."}}
        {"image": "imgs/c.jpg", "query": "...", "polygons": [[x0, y0, x1, y1, ...], ...], "is_sentence": true}

    Keys: ``image`` (path, relative to the JSONL file); ``query`` (or ``text``; a list uses its first
    entry); the mask as ``mask`` (a PNG path, a COCO RLE dict, or polygons) or explicitly
    ``mask_png`` / ``rle`` / ``polygons`` (flat ``[x0, y0, x1, y1, ...]`` lists, or ``[[x, y], ...]``);
    optional ``id``, ``box`` / ``bbox`` (``[x1, y1, x2, y2]``), ``is_sentence``. Blank lines and lines
    starting with ``#`` are skipped. PNG masks: any non-zero pixel is foreground.
    """
    p = Path(path).expanduser()
    base = p.parent
    samples: list[EvalSample] = []
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{p}: cannot be read ({exc})") from None
    for lineno, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{p}:{lineno}"
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise DatasetError(f"{where}: not valid JSON ({exc})") from None
        if not isinstance(row, dict):
            raise DatasetError(f"{where}: each line must be a JSON object")
        samples.append(_jsonl_sample(row, base, where, lineno))
    if not samples:
        raise DatasetError(f"{p}: no samples")
    return EvalDataset(samples, name=os.fspath(path), kind="jsonl", location=str(p.resolve()))


def _resolve_path(value: Any, base: Path, where: str, what: str) -> Path:
    if not isinstance(value, str) or not value:
        raise DatasetError(f"{where}: {what} must be a file path")
    q = Path(value).expanduser()
    q = q if q.is_absolute() else base / q
    if not q.is_file():
        raise DatasetError(f"{where}: {what} {q} does not exist")
    return q


def _jsonl_sample(row: dict[str, Any], base: Path, where: str, lineno: int) -> EvalSample:
    image = _resolve_path(row.get("image"), base, where, "image")
    query = row.get("query", row.get("text"))
    if isinstance(query, list):
        query = query[0] if query else None
    if not isinstance(query, str):
        raise DatasetError(f"{where}: needs a 'query' string")
    mask: Callable[[], np.ndarray]
    if "mask_png" in row:
        mask = _PngMask(_resolve_path(row["mask_png"], base, where, "mask_png"))
    elif "rle" in row:
        mask = _RleMask(_check_rle(row["rle"], where))
    elif "polygons" in row:
        mask = _PolygonMask(_check_polygons(row["polygons"], where), image, row.get("width"), row.get("height"))
    elif "mask" in row:
        m = row["mask"]
        if isinstance(m, str):
            mask = _PngMask(_resolve_path(m, base, where, "mask"))
        elif isinstance(m, dict) and "counts" in m:
            mask = _RleMask(_check_rle(m, where))
        elif isinstance(m, dict) and "polygons" in m:
            mask = _PolygonMask(_check_polygons(m["polygons"], where), image, row.get("width"), row.get("height"))
        elif isinstance(m, list):
            mask = _PolygonMask(_check_polygons(m, where), image, row.get("width"), row.get("height"))
        else:
            raise DatasetError(f"{where}: 'mask' must be a PNG path, a COCO RLE dict or polygons")
    else:
        raise DatasetError(f"{where}: needs a mask ('mask', 'mask_png', 'rle' or 'polygons')")
    box = row.get("box", row.get("bbox"))
    gt_box = _box_or_none(box)
    if box is not None and gt_box is None:
        raise DatasetError(f"{where}: 'box' must be [x1, y1, x2, y2]")
    is_sentence = row.get("is_sentence")
    return EvalSample(
        id=str(row["id"]) if row.get("id") is not None else f"line{lineno:06d}",
        query=query, image=str(image), gt_mask=mask, gt_box=gt_box,
        is_sentence=None if is_sentence is None else bool(is_sentence), source=where,
    )


def _check_rle(rle: Any, where: str) -> dict[str, Any]:
    if (not isinstance(rle, dict) or "counts" not in rle or not isinstance(rle.get("size"), list)
            or len(rle["size"]) != 2):
        raise DatasetError(f"{where}: an RLE mask is {{\"size\": [H, W], \"counts\": ...}}")
    return rle


def _check_polygons(polys: Any, where: str) -> list[list[float]]:
    if not isinstance(polys, list) or not polys:
        raise DatasetError(f"{where}: polygons must be a non-empty list")
    if all(isinstance(v, (int, float)) for v in polys):  # one flat polygon
        polys = [polys]
    out: list[list[float]] = []
    for poly in polys:
        if isinstance(poly, list) and poly and all(isinstance(v, list) and len(v) == 2 for v in poly):
            poly = [c for xy in poly for c in xy]  # [[x, y], ...] -> flat
        if (not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2
                or not all(isinstance(v, (int, float)) and np.isfinite(v) for v in poly)):
            raise DatasetError(f"{where}: each polygon is a flat [x0, y0, x1, y1, ...] list of >= 3 points")
        out.append([float(v) for v in poly])
    return out


@dataclass(frozen=True)
class _PngMask:
    path: Path

    def __call__(self) -> np.ndarray:
        from PIL import Image

        try:
            with Image.open(self.path) as img:
                img.load()
                return to_bool_mask(img, what=str(self.path))
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{self.path}: the mask PNG cannot be read ({exc})") from None


@dataclass(frozen=True)
class _RleMask:
    rle: dict

    def __call__(self) -> np.ndarray:
        from ..masks import rle_decode

        try:
            return rle_decode(self.rle)
        except (TypeError, ValueError) as exc:
            raise DatasetError(f"an RLE mask cannot be decoded ({exc})") from None


@dataclass(frozen=True)
class _PolygonMask:
    polygons: list
    image: Path
    width: Any = None
    height: Any = None

    def __call__(self) -> np.ndarray:
        from ..masks import polygons_to_mask

        if self.width is not None and self.height is not None:
            w, h = int(self.width), int(self.height)
        else:
            w, h = stored_image_size(self.image)
        return polygons_to_mask(self.polygons, h, w)


__all__ = [
    "DEFAULT_HUB_SPLIT",
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
    "rasterize_lisa_shapes",
    "read_image_as_stored",
    "read_lisa_annotation",
    "to_bool_mask",
]
