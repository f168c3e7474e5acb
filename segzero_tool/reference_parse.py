"""Whether the reference scripts could read a model output, and what they would read.

Reference mode (``compat="reference"``) segments exactly what the reference inference and evaluation
scripts would segment, and nothing they could not read: the lenient :func:`~segzero_tool.parsing.parse_output`
recovers answers that the reference scripts fail on (they score such a sample as a penalty), so in
reference mode the objects come from :func:`read_like_reference` instead.

* ``segzero`` format (``extract_bbox_points_think`` of Seg-Zero's ``infer.py`` / ``evaluation.py``):
  the first ``{[^}]+}`` anywhere in the text, ``json.loads``; the first key containing ``bbox``
  (case-insensitive) must hold exactly 4 values; the first two keys containing ``points`` give the
  two points (their first two values); every value goes through ``int()`` and then
  ``round(int(v) * factor)``; and ``<think>([^<]+)</think>`` must match (the script leaves its think
  variable unbound otherwise, and the evaluation scores a penalty).
* ``visionreasoner`` and ``grounding`` formats (``evaluation_visionreasoner.py``): the first
  ``<answer>\\s*(.*?)\\s*</answer>`` block, ``json.loads``; every item of the decoded value (a list, or
  what iterating it yields) needs ``item['bbox_2d'][0..3]`` and ``item['point_2d'][0..1]`` (extra
  values are ignored) such that ``int(v * factor + 0.5)`` computes.

The reference expressions are evaluated literally with the image's scale factors, so a value the
reference cannot convert (a string in a VisionReasoner answer, NaN, a number whose scaled value
overflows) fails here as it fails there. Only the regular expressions are replaced by the linear-time
helpers of :mod:`segzero_tool.reference_text`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from .parse_types import FrameObject, ParsedOutput, ParseStatus
from .reference_text import reference_answer_block, reference_first_brace_object, reference_think

if TYPE_CHECKING:
    from .frame import ReasoningFrame

Compat = Literal["repair", "reference"]
#: ``repair``: the lenient parser and the pipeline's repairs; ``reference``: as the reference scripts.
COMPAT_MODES: tuple[Compat, ...] = ("repair", "reference")


def check_compat(value: Any) -> Compat:
    """``value`` if it is a compatibility mode, else ``ValueError``."""
    if value not in COMPAT_MODES:
        raise ValueError(f"compat must be 'reference' or 'repair', got {value!r}")
    return value  # type: ignore[no-any-return]


#: Answers longer than this are not decoded (the same guard as the lenient parser).
_MAX_JSON_CHARS = 200_000


@dataclass(frozen=True)
class ReferenceReading:
    """What the reference scripts make of one output.

    Attributes:
        ok: the reference scripts read it without an exception.
        objects: the objects as the reference reads them, in reasoning-frame pixels (Seg-Zero values
            after ``int()``; VisionReasoner values as written, booleans as 0 / 1).
        status: ``ok`` / ``no_objects`` when read; otherwise the failed status that fits the reason
            (``no_answer``, ``invalid_json`` or ``invalid_objects``).
        reason: why the reference scripts could not read it (``None`` when ``ok``).
    """

    ok: bool
    objects: tuple[FrameObject, ...] = ()
    status: ParseStatus = ParseStatus.OK
    reason: str | None = None


def _fail(status: ParseStatus, reason: str) -> ReferenceReading:
    return ReferenceReading(False, (), status, reason)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())[:160]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _loads(text: str) -> Any:
    if len(text) > _MAX_JSON_CHARS:
        raise ValueError(f"longer than {_MAX_JSON_CHARS} characters")
    return json.loads(text)


def read_like_reference(text: Any, prompt_format: Any, x_factor: float, y_factor: float) -> ReferenceReading:
    """Read ``text`` as the reference script of ``prompt_format`` would, with the image's scale factors
    (``W / 840``, ``H / 840``). Never raises on model text."""
    if not isinstance(text, str):
        return _fail(ParseStatus.NO_ANSWER, f"the output is a {type(text).__name__}, not text")
    fmt = str(getattr(prompt_format, "value", prompt_format)).strip().lower()
    if fmt == "segzero":
        return _read_single(text, float(x_factor), float(y_factor))
    return _read_multi(text, float(x_factor), float(y_factor))


def _read_single(text: str, xf: float, yf: float) -> ReferenceReading:
    found = reference_first_brace_object(text)
    if found is None:
        return _fail(ParseStatus.NO_ANSWER, "no {...} object in the text")
    try:
        data = _loads(found)
    except Exception as exc:  # noqa: BLE001 - whatever json.loads raises, the reference fails on
        return _fail(ParseStatus.INVALID_JSON, f"the first {{...}} is not JSON ({_one_line(exc)})")
    try:
        keys = list(data.keys())
        bbox_key = next((k for k in keys if "bbox" in k.lower()), None)
        if bbox_key is None:
            return _fail(ParseStatus.INVALID_OBJECTS, "no key containing 'bbox'")
        raw_box = data[bbox_key]
        if len(raw_box) != 4:
            return _fail(ParseStatus.INVALID_OBJECTS, f"'{bbox_key}' does not hold exactly 4 values")
        box = tuple(int(raw_box[i]) for i in range(4))
        for v, f in zip(box, (xf, yf, xf, yf), strict=True):
            round(v * f)
        points_keys = [k for k in keys if "points" in k.lower()][:2]
        if len(points_keys) != 2:
            return _fail(ParseStatus.INVALID_OBJECTS, "fewer than two keys containing 'points'")
        points = []
        for k in points_keys:
            p = data[k]
            pt = (int(p[0]), int(p[1]))
            round(pt[0] * xf), round(pt[1] * yf)
            points.append(pt)
    except Exception as exc:  # noqa: BLE001 - the reference raises too
        return _fail(ParseStatus.INVALID_OBJECTS, f"a box or point value cannot be read ({_one_line(exc)})")
    if reference_think(text) is None:
        return _fail(ParseStatus.INVALID_OBJECTS, "no <think>...</think> without a '<' inside (the single-object "
                                                   "script leaves its think text unbound)")
    obj = FrameObject(box=tuple(float(v) for v in box),  # type: ignore[arg-type]
                      points=tuple((float(x), float(y)) for x, y in points))
    return ReferenceReading(True, (obj,), ParseStatus.OK)


def _read_multi(text: str, xf: float, yf: float) -> ReferenceReading:
    block = reference_answer_block(text)
    if block is None:
        return _fail(ParseStatus.NO_ANSWER, "no <answer>...</answer> block")
    try:
        data = _loads(block)
    except Exception as exc:  # noqa: BLE001
        return _fail(ParseStatus.INVALID_JSON, f"the answer is not JSON ({_one_line(exc)})")
    try:
        # boxes of every item first, then points, as the reference's two list comprehensions
        items = list(data)  # a dict yields its keys and a string its characters: both fail below
        boxes = []
        for item in items:
            raw = item["bbox_2d"]
            for v, f in zip((raw[0], raw[1], raw[2], raw[3]), (xf, yf, xf, yf), strict=True):
                int(v * f + 0.5)
            boxes.append(tuple(float(raw[i]) for i in range(4)))
        points = []
        for item in items:
            raw = item["point_2d"]
            int(raw[0] * xf + 0.5), int(raw[1] * yf + 0.5)
            points.append((float(raw[0]), float(raw[1])))
    except Exception as exc:  # noqa: BLE001
        return _fail(ParseStatus.INVALID_OBJECTS, f"an item has no usable 'bbox_2d' / 'point_2d' ({_one_line(exc)})")
    objects = tuple(FrameObject(box=b, points=(p,)) for b, p in zip(boxes, points, strict=True))  # type: ignore[arg-type]
    return ReferenceReading(True, objects, ParseStatus.OK if objects else ParseStatus.NO_OBJECTS)


def _reference_reading(parsed: ParsedOutput, text: str, prompt_format: Any, frame: ReasoningFrame,
                       max_objects: int) -> tuple[ParsedOutput, list[str]]:
    """``parsed`` (from :func:`~segzero_tool.parsing.parse_output`) with the objects and status of
    :func:`read_like_reference` instead, and the notes on it: reference mode's parse step."""
    reading = read_like_reference(text, prompt_format, frame.x_factor, frame.y_factor)
    if not reading.ok:
        had = f"; repair mode would have used {len(parsed.objects)} object(s)" if parsed.objects else ""
        note = f"reference mode: the reference scripts cannot read this answer ({reading.reason}){had}"
        return replace(parsed, status=reading.status, objects=()), [note]
    objects = reading.objects
    notes = []
    if len(objects) > max_objects:
        notes.append(f"the answer lists {len(objects)} objects; kept the first {max_objects} (max_objects)")
        objects = objects[:max_objects]
    return replace(parsed, status=reading.status, objects=objects), notes


__all__ = ["COMPAT_MODES", "Compat", "ReferenceReading", "check_compat", "read_like_reference"]
