"""The one result type. The pipeline returns it; every adapter only converts it.

Coordinates are original-image pixels: boxes ``(x1, y1, x2, y2)`` inclusive, points ``(x, y)``.
Masks are ``(H, W)`` bool arrays. JSON conversions encode masks as COCO RLE or polygons.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .atomic import atomic_write_bytes
from .errors import PromptError
from .parsing import ParseStatus

if TYPE_CHECKING:
    from PIL import Image

MaskEncoding = Literal["rle", "polygons", "both", "none"]

#: Names of the mask files :meth:`SegmentationResult.save` writes (and so may remove when stale).
_OUR_MASK_FILE = re.compile(r"mask_(?:0|[1-9][0-9]*|union)\.png")

#: The file of the objects' low-resolution logits that :meth:`SegmentationResult.save` writes.
LOGITS_FILE = "logits.npz"

#: Version of the JSON layout written by :meth:`SegmentationResult.to_dict`.
SCHEMA_VERSION = 1


@dataclass
class SegmentedObject:
    """One object found by the reasoner and segmented by SAM2.

    Attributes:
        box: ``(x1, y1, x2, y2)`` original pixels (inclusive), or ``None`` for a point-only prompt.
        points: positive points ``((x, y), ...)`` sent to the segmenter, original pixels.
        score: the segmenter's predicted IoU for the kept mask (``nan`` if not segmented).
        mask: ``(H, W)`` bool, or ``None`` when masks were not computed.
        frame_box: the box as the model wrote it, reasoning-frame pixels.
        frame_points: the points as the model wrote them, reasoning-frame pixels.
        label: optional label written by the model.
        issues: what was repaired for this object (clamped, reordered, point dropped, ...).
        prompt_box / prompt_points: what the segmenter was prompted with, when it differs from
            ``box`` / ``points`` (reference mode passes the reference scripts' coordinates, which may
            lie outside the image or be inverted, while ``box`` and ``points`` stay inside it);
            ``None``: the segmenter got ``box`` / ``points``.
        negative_points: negative (background) points ``((x, y), ...)`` sent to the segmenter, original
            pixels; set by :func:`~segzero_tool.steer.segment_by_prompts` and
            :func:`~segzero_tool.steer.refine_object` (serialised only when there are some).
        low_res_logits: the segmenter's ``(256, 256)`` float32 low-resolution mask logits of the kept
            mask, when it returns them; fed back as ``mask_input`` by
            :func:`~segzero_tool.steer.refine_object`. Not in the JSON; :meth:`SegmentationResult.save`
            writes them to ``logits.npz`` and :meth:`SegmentationResult.load` reads them back.
    """

    box: tuple[int, int, int, int] | None
    points: tuple[tuple[int, int], ...]
    score: float = float("nan")
    mask: np.ndarray | None = None
    frame_box: tuple[float, float, float, float] | None = None
    frame_points: tuple[tuple[float, float], ...] = ()
    label: str | None = None
    issues: tuple[str, ...] = ()
    prompt_box: tuple[int, int, int, int] | None = None
    prompt_points: tuple[tuple[int, int], ...] | None = None
    negative_points: tuple[tuple[int, int], ...] = ()
    low_res_logits: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def segmenter_prompt(self) -> tuple[tuple[int, int, int, int] | None, tuple[tuple[int, int], ...]]:
        """``(box, points)`` as the segmenter is (or was) prompted."""
        box = self.prompt_box if self.prompt_box is not None else self.box
        points = self.prompt_points if self.prompt_points is not None else self.points
        return box, points

    @property
    def area(self) -> int:
        """Mask area in pixels (0 without a mask)."""
        if self.mask is None:
            return 0
        return int(np.count_nonzero(self.mask) if self.mask.dtype == np.bool_ else self.mask.sum())  # same count, faster

    def to_dict(self, mask_encoding: MaskEncoding = "rle", *, polygon_tolerance: float = 1.0) -> dict[str, Any]:
        from . import masks as _masks

        d: dict[str, Any] = {
            "box": list(self.box) if self.box is not None else None,
            "points": [list(p) for p in self.points],
            **({"negative_points": [list(p) for p in self.negative_points]} if self.negative_points else {}),
            "score": None if not np.isfinite(self.score) else round(float(self.score), 6),
            "area": self.area,
            "frame_box": list(self.frame_box) if self.frame_box is not None else None,
            "frame_points": [list(p) for p in self.frame_points],
        }
        if self.label is not None:
            d["label"] = self.label
        if self.issues:
            d["issues"] = list(self.issues)
        if self.prompt_box is not None or self.prompt_points is not None:
            box, points = self.segmenter_prompt
            d["prompt"] = {"box": list(box) if box is not None else None, "points": [list(p) for p in points]}
        if self.mask is not None and mask_encoding in ("rle", "both"):
            d["rle"] = _masks.rle_encode(self.mask)
        if self.mask is not None and mask_encoding in ("polygons", "both"):
            d["polygons"] = _masks.mask_to_polygons(self.mask, tolerance=polygon_tolerance)
        return d


@dataclass
class SegmentationResult:
    """Everything one query produced.

    Attributes:
        query: the user's query, as given.
        prompt_format: ``visionreasoner``, ``segzero`` or ``grounding``; ``prompts`` for a result made
            from the caller's boxes and points (:func:`~segzero_tool.steer.segment_by_prompts`: no
            reasoner, ``reasoner`` ``None``, empty ``reasoning`` and ``raw_output``, ``frame_size`` the
            image size).
        reasoning: the ``<think>`` text.
        raw_output: the reasoner's complete text.
        parse_status: see :class:`~segzero_tool.parsing.ParseStatus`.
        parse_issues: what was wrong or repaired while parsing and projecting.
        image_size: ``(width, height)`` of the original image.
        objects: the segmented objects.
        timings: milliseconds per stage (``load``, ``reason``, ``parse``, ``segment``, ``total``, ...).
        frame_size: ``(width, height)`` of the reasoning frame.
        reasoner: identifier of the reasoner model (``None`` when none ran); ``segmenter`` likewise.
        truncated: the output looked cut off (token budget hit).
        compat: ``repair`` (the lenient parser, points outside their box dropped, coordinates clamped)
            or ``reference`` (only what the reference scripts read, passed to SAM2 as they pass it).
        image: ``(H, W, 3)`` uint8 RGB original image (kept for overlays; not serialised).
        verification: what the self-check loop did (:func:`~segzero_tool.verify.run_verification`:
            status, rounds, verdicts, the verifier's text, timings); ``None`` when it did not run
            (serialised only when set).
    """

    query: str
    prompt_format: str
    reasoning: str
    raw_output: str
    parse_status: ParseStatus
    image_size: tuple[int, int]
    objects: list[SegmentedObject] = field(default_factory=list)
    parse_issues: tuple[str, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)
    frame_size: tuple[int, int] = (840, 840)
    reasoner: str | None = None
    segmenter: str | None = None
    truncated: bool = False
    image: np.ndarray | None = field(default=None, repr=False)
    compat: str = "repair"
    verification: dict[str, Any] | None = None

    # --- views -----------------------------------------------------------------------------

    @property
    def ok(self) -> bool:
        """True when the answer parsed and at least one object was found."""
        return self.parse_status is ParseStatus.OK and bool(self.objects)

    @property
    def union_mask(self) -> np.ndarray:
        """``(H, W)`` bool OR of every object's mask (all False when there is none)."""
        w, h = self.image_size
        out = np.zeros((h, w), dtype=bool)
        for obj in self.objects:
            if obj.mask is not None:
                np.logical_or(out, obj.mask, out=out)
        return out

    @property
    def boxes(self) -> np.ndarray:
        """``(n, 4)`` int xyxy boxes (objects without a box are skipped)."""
        rows = [o.box for o in self.objects if o.box is not None]
        return np.asarray(rows, dtype=np.int64).reshape(-1, 4)

    @property
    def masks(self) -> np.ndarray:
        """``(n, H, W)`` bool stack of the objects' masks."""
        w, h = self.image_size
        stack = [o.mask if o.mask is not None else np.zeros((h, w), bool) for o in self.objects]
        return np.stack(stack) if stack else np.zeros((0, h, w), dtype=bool)

    @property
    def scores(self) -> np.ndarray:
        return np.asarray([o.score for o in self.objects], dtype=np.float32)

    def summary(self) -> str:
        """One line for humans."""
        w, h = self.image_size
        if not self.objects:
            why = "no object found" if self.parse_status in (ParseStatus.OK, ParseStatus.NO_OBJECTS) else (
                f"no object ({self.parse_status.value}" + (f": {self.parse_issues[0]}" if self.parse_issues else "") + ")"
            )
            return f"{why} in {w}x{h} image for {self.query!r} ({self.timings.get('total', 0):.0f} ms)"
        parts = [f"#{i} box={list(o.box) if o.box else None} area={o.area}" for i, o in enumerate(self.objects)]
        return (
            f"{len(self.objects)} object(s) in {w}x{h} image, union area {int(self.union_mask.sum())} px "
            f"({self.timings.get('total', 0):.0f} ms): " + "; ".join(parts)
        )

    # --- conversions -----------------------------------------------------------------------

    def to_dict(self, mask_encoding: MaskEncoding = "rle", *, include_union: bool = True,
                polygon_tolerance: float = 1.0) -> dict[str, Any]:
        """A JSON-ready dict; masks as COCO RLE (default), polygons, both, or none."""
        from . import masks as _masks

        d: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "query": self.query,
            "prompt_format": self.prompt_format,
            "reasoning": self.reasoning,
            "raw_output": self.raw_output,
            "parse_status": self.parse_status.value,
            "parse_issues": list(self.parse_issues),
            "truncated": self.truncated,
            "compat": self.compat,
            "image_size": {"width": self.image_size[0], "height": self.image_size[1]},
            "frame_size": {"width": self.frame_size[0], "height": self.frame_size[1]},
            "reasoner": self.reasoner,
            "segmenter": self.segmenter,
            "timings_ms": {k: round(v, 3) for k, v in self.timings.items()},
            "objects": [o.to_dict(mask_encoding, polygon_tolerance=polygon_tolerance) for o in self.objects],
        }
        if include_union and mask_encoding != "none" and self.objects and all(o.mask is None for o in self.objects):
            d["union"] = None  # masks were not computed (--no-masks): there is no union to report
        elif include_union and mask_encoding != "none":
            union = self.union_mask  # all False when no object was found
            d["union"] = {"area": int(np.count_nonzero(union))}  # bool: the same count as sum(), faster
            if mask_encoding in ("rle", "both"):
                d["union"]["rle"] = _masks.rle_encode(union)
            if mask_encoding in ("polygons", "both"):
                d["union"]["polygons"] = _masks.mask_to_polygons(union, tolerance=polygon_tolerance)
        if self.verification is not None:
            d["verification"] = self.verification
        return d

    def to_json(self, mask_encoding: MaskEncoding = "rle", *, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(mask_encoding), indent=indent, ensure_ascii=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SegmentationResult:
        """Rebuild a result from :meth:`to_dict` output (masks decoded from RLE or polygons)."""
        from . import masks as _masks

        w, h = int(d["image_size"]["width"]), int(d["image_size"]["height"])
        objects = []
        for o in d.get("objects", []):
            if "rle" in o:
                mask = _masks.rle_decode(o["rle"])
            elif "polygons" in o:
                mask = _masks.polygons_to_mask(o["polygons"], h, w)
            else:
                mask = None
            objects.append(SegmentedObject(
                box=tuple(o["box"]) if o.get("box") is not None else None,  # type: ignore[arg-type]
                points=tuple(tuple(p) for p in o.get("points", [])),  # type: ignore[misc]
                score=float("nan") if o.get("score") is None else float(o["score"]),
                mask=mask,
                frame_box=tuple(o["frame_box"]) if o.get("frame_box") is not None else None,  # type: ignore[arg-type]
                frame_points=tuple(tuple(p) for p in o.get("frame_points", [])),  # type: ignore[misc]
                label=o.get("label"),
                issues=tuple(o.get("issues", ())),
                prompt_box=_prompt_box(o.get("prompt")),
                prompt_points=_prompt_points(o.get("prompt")),
                negative_points=tuple(tuple(p) for p in o.get("negative_points", ())),  # type: ignore[misc]
            ))
        fs = d.get("frame_size", {"width": 840, "height": 840})
        return cls(
            query=d["query"], prompt_format=d["prompt_format"], reasoning=d.get("reasoning", ""),
            raw_output=d.get("raw_output", ""), parse_status=ParseStatus(d["parse_status"]),
            image_size=(w, h), objects=objects, parse_issues=tuple(d.get("parse_issues", ())),
            timings=dict(d.get("timings_ms", {})), frame_size=(int(fs["width"]), int(fs["height"])),
            reasoner=d.get("reasoner"), segmenter=d.get("segmenter"), truncated=bool(d.get("truncated", False)),
            compat=str(d.get("compat", "repair")), verification=d.get("verification"),
        )

    def overlay(self, *, max_side: int | None = 1024, image: np.ndarray | None = None, **kw: Any) -> Image.Image:
        """The overlay picture (masks in colour, boxes and points), longest side ``max_side``."""
        from .overlay import draw_overlay

        base = image if image is not None else self.image
        if base is None:
            w, h = self.image_size
            base = np.full((h, w, 3), 40, dtype=np.uint8)
        return draw_overlay(base, self.objects, max_side=max_side, **kw)

    def save(self, out_dir: str | os.PathLike, *, masks: bool = True, overlay: bool = True,
             mask_encoding: MaskEncoding = "rle", overlay_max_side: int | None = 1024,
             logits: bool = True) -> dict[str, Path]:
        """Write ``result.json``, ``mask_union.png``, ``mask_<i>.png``, ``overlay.png`` and ``logits.npz``.

        ``logits.npz`` (only when ``logits`` and at least one object has ``low_res_logits``) holds each
        such object's float32 low-resolution logits as ``obj_<i>``, so that :meth:`load` gives
        :func:`~segzero_tool.steer.refine_object` exactly what it had in memory.

        Every file is written to a temporary name and renamed into place, so an interrupted run never
        leaves a half-written file; ``result.json`` is written last. Files get the mode a plain
        ``open(path, "w")`` would give (the umask applies). ``mask_<i>.png`` / ``mask_union.png`` /
        ``logits.npz`` files of an earlier result in ``out_dir`` that this result does not write are removed.

        Returns:
            name -> path of every file written.
        """
        from .masks import mask_to_png_bytes

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written: dict[str, Path] = {}
        if masks:
            for i, obj in enumerate(self.objects):
                if obj.mask is not None:
                    written[f"mask_{i}"] = atomic_write_bytes(out / f"mask_{i}.png", mask_to_png_bytes(obj.mask))
            written["mask_union"] = atomic_write_bytes(out / "mask_union.png", mask_to_png_bytes(self.union_mask))
        if overlay:
            written["overlay"] = atomic_write_bytes(out / "overlay.png", _png(self.overlay, overlay_max_side))
        arrays = {f"obj_{i}": np.asarray(o.low_res_logits, dtype=np.float32)
                  for i, o in enumerate(self.objects) if o.low_res_logits is not None} if logits else {}
        if arrays:
            buf = io.BytesIO()
            np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
            written["logits"] = atomic_write_bytes(out / LOGITS_FILE, buf.getvalue())
        kept = {p.name for p in written.values()}
        for old in out.glob("mask_*.png"):
            if _OUR_MASK_FILE.fullmatch(old.name) and old.name not in kept and old.is_file():
                old.unlink(missing_ok=True)
        if not arrays and (out / LOGITS_FILE).is_file():
            (out / LOGITS_FILE).unlink(missing_ok=True)  # an earlier result's: it would be fed to this one
        payload = self.to_json(mask_encoding).encode("utf-8")
        written["result"] = atomic_write_bytes(out / "result.json", payload)
        return written

    @classmethod
    def load(cls, folder: str | os.PathLike, *, image: np.ndarray | None = None,
             logits: bool = True) -> SegmentationResult:
        """Read a result folder written by :meth:`save`: ``result.json``, and ``logits.npz`` when present
        (each object's ``low_res_logits``; without the file they stay ``None`` and
        :func:`~segzero_tool.steer.refine_object` starts from the object's prompt alone).

        Args:
            folder: the folder holding ``result.json``.
            image: the original picture, ``(H, W, 3)`` uint8 RGB, attached as ``image`` (needed to refine,
                drawn on by overlays); its size must be the result's ``image_size``.
            logits: read ``logits.npz`` (``False``: leave it unread, e.g. only to draw the result).

        Raises:
            PromptError: no such folder, ``result.json`` missing, unreadable or not a result,
                ``logits.npz`` unreadable or not this result's, or an image of another size or kind.
        """
        out = Path(folder).expanduser()
        if not out.is_dir():
            what = "is a file, not a result folder" if out.exists() else "does not exist"
            raise PromptError(f"result folder {str(folder)!r} {what}; give a folder written by `segzero prompt "
                              "--out`, `segment --out` or SegmentationResult.save")
        path = out / "result.json"
        try:
            data = json.loads(path.read_bytes().decode("utf-8"))
            if not isinstance(data, dict):
                raise ValueError(f"a JSON {type(data).__name__}, not an object")
            result = cls.from_dict(data)
        except FileNotFoundError:
            raise PromptError(f"{str(folder)!r} holds no result.json; give a folder written by `segzero prompt "
                              "--out`, `segment --out` or SegmentationResult.save") from None
        except OSError as exc:
            raise PromptError(f"{str(path)!r} cannot be read ({exc.strerror or exc})") from None
        except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
            why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise PromptError(f"{str(path)!r} is not a readable result ({_short(why)}); write the folder again") \
                from None
        logits_path = out / LOGITS_FILE
        if logits and logits_path.is_file():
            for i, array in _read_logits(logits_path, len(result.objects)).items():
                result.objects[i].low_res_logits = array
        if image is not None:
            result.image = _checked_image(image, result.image_size)
        return result


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _read_logits(path: Path, n: int) -> dict[int, np.ndarray]:
    """``logits.npz`` of a result with ``n`` objects: index -> float32 ``(h, w)`` logits."""
    fix = "delete it to refine from the objects' prompts alone, or write the folder again"
    try:
        with np.load(path, allow_pickle=False) as npz:
            raw = {name: npz[name] for name in npz.files}
    except Exception as exc:  # zipfile.BadZipFile, ValueError, OSError, EOFError, ...: all mean unreadable
        raise PromptError(f"{str(path)!r} is unreadable ({_short(f'{type(exc).__name__}: {exc}')}); {fix}") from None
    found: dict[int, np.ndarray] = {}
    for name, array in raw.items():
        m = re.fullmatch(r"obj_(0|[1-9][0-9]*)", name)
        if m is None or int(m.group(1)) >= n:
            raise PromptError(f"{str(path)!r} holds {name!r}, which is no object of its result.json ({n} object(s)); "
                              f"{fix}")
        if array.ndim != 2 or array.dtype.kind != "f" or 0 in array.shape:
            raise PromptError(f"{str(path)!r}: {name} is not 2-D float logits ({array.dtype} {array.shape}); {fix}")
        found[int(m.group(1))] = np.ascontiguousarray(array, dtype=np.float32)
    return found


def _checked_image(image: Any, size: tuple[int, int]) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        what = f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise PromptError(f"image must be an (H, W, 3) uint8 RGB array, got a {what}")
    w, h = size
    if image.shape[:2] != (h, w):
        raise PromptError(f"the image is {image.shape[1]}x{image.shape[0]} but the result was made from a {w}x{h} "
                          "image; give the picture it was made from")
    return image


def _prompt_box(prompt: Any) -> tuple[int, int, int, int] | None:
    if not isinstance(prompt, dict) or prompt.get("box") is None:
        return None
    return tuple(prompt["box"])  # type: ignore[return-value]


def _prompt_points(prompt: Any) -> tuple[tuple[int, int], ...] | None:
    if not isinstance(prompt, dict):
        return None
    return tuple(tuple(p) for p in prompt.get("points", []))  # type: ignore[misc]


def _png(render: Callable[..., Image.Image], max_side: int | None) -> bytes:
    buf = io.BytesIO()
    render(max_side=max_side).save(buf, format="PNG", optimize=True)
    return buf.getvalue()
