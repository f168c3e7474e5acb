"""Reading the caller's prompt objects: JSON-like input from an agent -> checked :class:`PromptObject`.

An object is a mapping ``{box?: [x1, y1, x2, y2], points?: [[x, y], ...], negative_points?: [[x, y], ...],
label?: str}`` in original-image pixels (origin top-left, ``box`` inclusive). Numbers may be Python or
numpy ints/floats; they are rounded to whole pixels. The rules:

* a box or point partly or slightly outside the image is clamped into it and the change is reported in
  the object's ``issues``; a box with nothing inside the image is refused, and so is an object whose
  every positive prompt lies outside it (a point is "inside" when it lies on an image pixel);
* an inverted box (``x1 > x2`` or ``y1 > y2``) is reordered and reported;
* refused, with one :class:`~segzero_tool.errors.PromptError` naming the object, the field, what was
  wrong and what to send: an empty or non-list ``objects``, more than ``max_objects`` objects, an object
  that is not a mapping, an unknown key, an object with neither a box nor a positive point (negative
  points alone included), a coordinate that is not a finite number (strings, booleans, NaN, inf) or
  whose magnitude exceeds :data:`MAX_COORDINATE`, a box or point of the wrong arity, more than
  :data:`MAX_POINTS` points in one list, a label that is not a string or longer than :data:`MAX_LABEL_CHARS`.
"""

from __future__ import annotations

import math
import numbers
import reprlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import PromptError

#: Coordinates beyond this magnitude (pixels) are refused rather than clamped: they are not a slip.
MAX_COORDINATE = 1_000_000
#: At most this many points per list (``points`` / ``negative_points``) of one object.
MAX_POINTS = 64
#: Labels longer than this are refused.
MAX_LABEL_CHARS = 200
#: The keys an object may have.
OBJECT_KEYS = ("box", "points", "negative_points", "label")

_BOX_SHAPE = "4 numbers [x1, y1, x2, y2] in image pixels"
_POINT_SHAPE = "2 numbers [x, y] in image pixels"

Box = tuple[int, int, int, int]
Point = tuple[int, int]


@dataclass(frozen=True)
class PromptObject:
    """One checked prompt object, original-image pixels, inside the image.

    Attributes:
        box: ``(x1, y1, x2, y2)`` inclusive, or ``None``.
        points: positive points ``((x, y), ...)``.
        negative_points: negative points ``((x, y), ...)``.
        label: the caller's label, or ``None``.
        issues: what was repaired (clamped, reordered), one sentence each.
    """

    box: Box | None
    points: tuple[Point, ...] = ()
    negative_points: tuple[Point, ...] = ()
    label: str | None = None
    issues: tuple[str, ...] = ()


def show(value: Any) -> str:
    """A short ``repr`` of any caller value for an error message (long or deep values are cut)."""
    r = reprlib.Repr()
    r.maxlevel, r.maxlist, r.maxtuple, r.maxdict, r.maxstring, r.maxother, r.maxlong = 3, 6, 6, 4, 40, 40, 24
    try:
        text = r.repr(value)
    except Exception:  # noqa: BLE001 - a hostile __repr__ must not hide the real error
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 120 else text[:117] + "..."


def _number(value: Any) -> float | str:
    """``value`` as a finite float within :data:`MAX_COORDINATE`, else why not (a clause)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return f"{show(value)} ({type(value).__name__}) is not a number"
    if isinstance(value, numbers.Integral) and abs(int(value)) > MAX_COORDINATE:
        return f"{show(value)} is beyond ±{MAX_COORDINATE:,} pixels"
    try:
        number = float(value)
    except (OverflowError, ValueError, TypeError):
        return f"{show(value)} is not a finite number"
    if not math.isfinite(number):
        return f"{show(value)} is not a finite number"
    if abs(number) > MAX_COORDINATE:
        return f"{show(value)} is beyond ±{MAX_COORDINATE:,} pixels"
    return number


def _pixel(v: float) -> int:
    return math.floor(v + 0.5)  # half up, as the reasoning path rounds


def _numbers(value: Any, n: int, where: str, shape: str) -> list[int]:
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence) and not _is_array(value):
        raise PromptError(f"{where} must be {shape}; got {show(value)} ({type(value).__name__})")
    items = list(value)
    if len(items) != n:
        raise PromptError(f"{where} must be {shape}; got {len(items)} value(s): {show(value)}")
    out = []
    for k, v in enumerate(items):
        number = _number(v)
        if isinstance(number, str):
            raise PromptError(f"{where} must be {shape}; got {show(value)}: item {k}, {number}")
        out.append(_pixel(number))
    return out


def _is_array(value: Any) -> bool:
    return type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 1


def parse_box(value: Any, image_size: tuple[int, int], where: str) -> tuple[Box, list[str]]:
    """A caller's box checked, reordered and clamped into the image: ``(box, issues)``.

    Raises:
        PromptError: not 4 finite numbers, or no pixel of it lies in the image.
    """
    w, h = image_size
    x1, y1, x2, y2 = _numbers(value, 4, where, _BOX_SHAPE)
    issues = []
    if x1 > x2 or y1 > y2:
        fixed = (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))
        issues.append(f"{where} {[x1, y1, x2, y2]} was inverted; reordered to {list(fixed)}")
        x1, y1, x2, y2 = fixed
    if x2 < 0 or y2 < 0 or x1 > w - 1 or y1 > h - 1:
        raise PromptError(f"{where} {[x1, y1, x2, y2]} lies entirely outside the {w}x{h} image; send a box "
                          f"with x in 0..{w - 1} and y in 0..{h - 1} (original-image pixels, origin top-left)")
    clamped = (max(0, x1), max(0, y1), min(w - 1, x2), min(h - 1, y2))
    if clamped != (x1, y1, x2, y2):
        issues.append(f"{where} {[x1, y1, x2, y2]} extends outside the {w}x{h} image; clamped to {list(clamped)}")
    return clamped, issues


def parse_points(value: Any, image_size: tuple[int, int], where: str) -> tuple[tuple[Point, ...], list[str], int]:
    """A caller's point list checked and clamped: ``(points, issues, number of points inside the image)``.

    ``None`` is an empty list. Raises :class:`PromptError` for anything but a list of ``[x, y]`` numbers.
    """
    if value is None:
        return (), [], 0
    shape = f"a list of points [[x, y], ...], each {_POINT_SHAPE}"
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence) and not _is_2d(value):
        raise PromptError(f"{where} must be {shape}; got {show(value)} ({type(value).__name__})")
    items = list(value)
    if len(items) > MAX_POINTS:
        raise PromptError(f"{where} has {len(items)} points; send at most {MAX_POINTS} per object")
    w, h = image_size
    points: list[Point] = []
    issues: list[str] = []
    inside = 0
    for k, item in enumerate(items):
        x, y = _numbers(item, 2, f"{where}[{k}]", _POINT_SHAPE)
        cx, cy = min(max(x, 0), w - 1), min(max(y, 0), h - 1)
        if (cx, cy) == (x, y):
            inside += 1
        else:
            issues.append(f"{where}[{k}] ({x}, {y}) lies outside the {w}x{h} image; clamped to ({cx}, {cy})")
        points.append((cx, cy))
    return tuple(points), issues, inside


def _is_2d(value: Any) -> bool:
    return type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 2


def parse_prompt_object(obj: Any, image_size: tuple[int, int], where: str) -> PromptObject:
    """One object checked (see the module docstring); ``where`` names it in messages (``objects[2]``)."""
    if not isinstance(obj, Mapping):
        raise PromptError(f"{where} must be an object {{box?, points?, negative_points?, label?}}; "
                          f"got {show(obj)} ({type(obj).__name__})")
    unknown = [k for k in obj if k not in OBJECT_KEYS]
    if unknown:
        raise PromptError(f"{where} has unknown key(s) {show(unknown)}; an object takes only "
                          f"{', '.join(OBJECT_KEYS)}")
    box: Box | None = None
    issues: list[str] = []
    box_value = obj.get("box")
    if box_value is not None:
        box, found = parse_box(box_value, image_size, f"{where}.box")
        issues += found
    points, found, inside = parse_points(obj.get("points"), image_size, f"{where}.points")
    issues += found
    negative, found, _ = parse_points(obj.get("negative_points"), image_size, f"{where}.negative_points")
    issues += found
    if box is None and not points:
        what = "only negative points" if negative else "no box and no points"
        raise PromptError(f"{where} has {what}; send a box [x1, y1, x2, y2] or at least one positive point in "
                          "points [[x, y]] (negative_points only mark what is not the object)")
    if box is None and inside == 0:
        w, h = image_size
        raise PromptError(f"{where}.points all lie outside the {w}x{h} image; send points with x in 0..{w - 1} "
                          f"and y in 0..{h - 1}, or a box")
    label = obj.get("label")
    if label is not None and (not isinstance(label, str) or len(label) > MAX_LABEL_CHARS):
        raise PromptError(f"{where}.label must be a string of at most {MAX_LABEL_CHARS} characters; got "
                          f"{show(label)} ({type(label).__name__})")
    return PromptObject(box, points, negative, label, tuple(issues))


def parse_prompt_objects(objects: Any, image_size: tuple[int, int], *, max_objects: int) -> list[PromptObject]:
    """The caller's ``objects`` checked (see the module docstring).

    Args:
        objects: a list of mappings ``{box?, points?, negative_points?, label?}`` (JSON-like).
        image_size: ``(width, height)`` of the original image.
        max_objects: the cap on the number of objects.

    Raises:
        PromptError: the first problem found, naming the object and field and what to send instead.
    """
    if isinstance(objects, (str, bytes, Mapping)) or not isinstance(objects, Sequence):
        raise PromptError(f"objects must be a list of objects [{{\"box\": [x1, y1, x2, y2]}}, ...]; got "
                          f"{show(objects)} ({type(objects).__name__})")
    if not objects:
        raise PromptError("objects is empty; send at least one object, e.g. [{\"box\": [x1, y1, x2, y2]}] or "
                          "[{\"points\": [[x, y]]}] in image pixels")
    if len(objects) > max_objects:
        raise PromptError(f"objects has {len(objects)} entries, over the cap of {max_objects} objects per call; "
                          f"send at most {max_objects} (split the rest over further calls)")
    return [parse_prompt_object(o, image_size, f"objects[{i}]") for i, o in enumerate(objects)]


__all__ = ["MAX_COORDINATE", "MAX_LABEL_CHARS", "MAX_POINTS", "OBJECT_KEYS", "PromptObject", "parse_box",
           "parse_points", "parse_prompt_object", "parse_prompt_objects", "show"]
