"""The one parser: model text -> think text + objects in the reasoning frame.

Inference, evaluation and training rewards all call :func:`parse_output`. It never raises on model
output: whatever the text, it returns a :class:`ParsedOutput` whose ``status`` and ``issues`` say
what was wrong.

Accepted answers (all coordinates are reasoning-frame pixels):

* VisionReasoner: ``[{"bbox_2d": [x1,y1,x2,y2], "point_2d": [x,y]}, ...]``
* Seg-Zero: ``{"bbox": [x1,y1,x2,y2], "points_1": [x,y], "points_2": [x,y]}``
* a single object instead of a list, a list wrapped in ``{"objects": [...]}``-like dicts, code
  fences, single-quoted (Python-literal) JSON, trailing text after the JSON, ``label`` keys, and
  output truncated mid-list (complete objects before the cut are kept).
* Qwen3-VL (``qwen3vl`` format): the same list as VisionReasoner (plus ``label``), usually in a
  ```json fence with no tags and no think block; its coordinates are on the 0-1000 grid, which the
  parser does not need to know (back-projection is :mod:`segzero_tool.frame`'s). Pass
  ``answer_tags=False`` so that the missing ``<answer>`` tags are not reported as an issue.

This module reads the objects out of a decoded answer and composes the steps; the other parts live in
their own modules and are re-exported here, so ``segzero_tool.parsing`` stays the one import path:

* :mod:`segzero_tool.parse_types`: :class:`ParseStatus`, :class:`FrameObject`, :class:`ParsedOutput`;
* :mod:`segzero_tool.model_text`: the tag grammar and its linear-time scanners;
* :mod:`segzero_tool.answer_json`: the lenient JSON decoding and its repairs;
* :mod:`segzero_tool.reference_text`: the reference scripts' text locators (training rewards,
  reference mode).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

# The parser's other modules. Every name the parser had is still importable from here: the public
# ones are in ``__all__``, the private ones that tests and benchmarks reach for are re-exported by alias.
from .answer_json import _DECODER as _DECODER
from .answer_json import _JSON_START_RE as _JSON_START_RE
from .answer_json import _JSON_WS_RE as _JSON_WS_RE
from .answer_json import _MAX_INT_DIGITS as _MAX_INT_DIGITS
from .answer_json import _MAX_REPAIR_TRIES as _MAX_REPAIR_TRIES
from .answer_json import FENCE_RE, _decode
from .answer_json import _cut_list_prefix as _cut_list_prefix
from .answer_json import _first_json_start as _first_json_start
from .answer_json import _literal_prefix as _literal_prefix
from .answer_json import _parse_int as _parse_int
from .answer_json import _strip_fences as _strip_fences
from .frame import is_finite_number
from .model_text import _FORMAT_JOIN_RE as _FORMAT_JOIN_RE
from .model_text import ANSWER_RE, FORMAT_RE, THINK_RE, _answer_candidates, extract_think, format_matches
from .model_text import _answer_block as _answer_block
from .model_text import _tag_block as _tag_block
from .parse_types import FrameObject, ParsedOutput, ParseStatus
from .parse_types import _num as _num
from .reference_text import (
    REFERENCE_BRACE_RE,
    REFERENCE_THINK_RE,
    reference_answer_block,
    reference_first_brace_object,
    reference_sentence_fragments,
    reference_think,
)

#: Answers longer than this are not decoded (pathological output); the issue is reported.
MAX_ANSWER_CHARS = 200_000


# --- reading objects out of a decoded answer ---------------------------------------------------


def _to_number(value: Any) -> float | None:
    """A finite float, or ``None`` (bools, NaN, +-Infinity, numbers too large for a float, text)."""
    if is_finite_number(value):
        return float(value)
    if isinstance(value, str):
        try:
            f = float(value.strip())
        except ValueError:
            return None
        return f if math.isfinite(f) else None
    return None


def _non_finite(value: Any) -> bool:
    """True if ``value`` holds a number that is NaN, infinite or too large for a float."""
    if isinstance(value, (list, tuple)):
        return any(_non_finite(v) for v in value[:8])
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return not is_finite_number(value)


def _coords(value: Any, n: int) -> tuple[float, ...] | None:
    """The first ``n`` values of a list/tuple (or of a nested single-element list) as finite numbers,
    else ``None``. Values after the first ``n`` are ignored, as the reference reads ``v[0] .. v[n-1]``
    (see :func:`_extra_values`)."""
    if isinstance(value, (list, tuple)) and len(value) == 1 and isinstance(value[0], (list, tuple)):
        value = value[0]
    if not isinstance(value, (list, tuple)) or len(value) < n:
        return None
    out = tuple(_to_number(v) for v in value[:n])
    if any(v is None for v in out):
        return None
    return out  # type: ignore[return-value]


def _extra_values(value: Any, n: int) -> int:
    """How many values after the first ``n`` :func:`_coords` ignored (0 when none)."""
    if isinstance(value, (list, tuple)) and len(value) == 1 and isinstance(value[0], (list, tuple)):
        value = value[0]
    return max(0, len(value) - n) if isinstance(value, (list, tuple)) else 0

def _items(value: Any) -> tuple[list[Any], list[str]]:
    """Normalise a decoded answer into a list of candidate items."""
    if isinstance(value, (list, tuple)):
        return list(value), []
    if isinstance(value, dict):
        if any("bbox" in str(k).lower() or "point" in str(k).lower() for k in value):
            return [value], []
        # {"objects": [...]} and similar wrappers
        for v in value.values():
            if isinstance(v, list):
                return v, ["the answer list was wrapped in an object"]
        return [value], []
    return [], [f"the answer is a JSON {type(value).__name__}, not a list of objects"]


def _object_from_item(item: Any, index: int) -> FrameObject | str:
    """A :class:`FrameObject`, or a string saying why the item is unusable."""
    if not isinstance(item, dict):
        return f"item {index} is a {type(item).__name__}, not an object"
    keys = {str(k).lower(): k for k in item}
    issues: list[str] = []

    box: tuple[float, float, float, float] | None = None
    box_keys = [keys[k] for k in ("bbox_2d", "bbox") if k in keys] or [
        orig for low, orig in keys.items() if "bbox" in low or low in ("box", "box_2d")
    ]
    if box_keys:
        coords = _coords(item[box_keys[0]], 4)
        if coords is None:
            why = " (NaN, Infinity or a number too large for a float)" if _non_finite(item[box_keys[0]]) else ""
            issues.append(f"item {index}: '{box_keys[0]}' is not 4 finite numbers{why}; box ignored")
        else:
            box = coords  # type: ignore[assignment]
            extra = _extra_values(item[box_keys[0]], 4)
            if extra:
                issues.append(f"item {index}: '{box_keys[0]}' has {4 + extra} values; used the first 4, as the "
                              "reference does")

    points: list[tuple[float, float]] = []
    # Seg-Zero answers ("points_1", "points_2"): the first two keys containing "points", as the
    # reference reads them; otherwise (VisionReasoner "point_2d", ...) every key containing "point".
    plural = [k for k in item if "points" in str(k).lower()]
    point_keys = plural[:2] if plural else [orig for low, orig in keys.items() if "point" in low]
    if len(plural) > 2:
        ignored = ", ".join(repr(k) for k in plural[2:5])
        issues.append(f"item {index}: used the first two 'points' keys, as the reference does; ignored {ignored}")
    for key in point_keys:
        value = item[key]
        single = _coords(value, 2)
        if single is not None:
            points.append(single)  # type: ignore[arg-type]
            extra = _extra_values(value, 2)
            if extra:
                issues.append(f"item {index}: '{key}' has {2 + extra} values; used the first 2, as the "
                              "reference does")
            continue
        # a list of points, e.g. "points": [[x, y], [x, y]]
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, (list, tuple)) for v in value):
            many = [_coords(v, 2) for v in value]
            if all(p is not None for p in many):
                points.extend(many)  # type: ignore[arg-type]
                continue
        why = " (NaN, Infinity or a number too large for a float)" if _non_finite(value) else ""
        issues.append(f"item {index}: '{key}' is not a point [x, y] of finite numbers{why}; ignored")

    label = item.get(keys["label"]) if "label" in keys else None
    if box is None and not points:
        return "; ".join(issues) or f"item {index} has no bbox or point"
    return FrameObject(
        box=box,
        points=tuple(points),
        label=label if isinstance(label, str) else None,
        issues=tuple(issues),
    )


# --- public API --------------------------------------------------------------------------------


def parse_answer_value(value: Any, *, max_objects: int | None = None) -> tuple[list[FrameObject], list[str], int]:
    """Turn a decoded answer (list/dict) into objects. Returns ``(objects, issues, total_items)``."""
    items, issues = _items(value)
    objects: list[FrameObject] = []
    for i, item in enumerate(items):
        obj = _object_from_item(item, i)
        if isinstance(obj, str):
            issues.append(obj)
        else:
            objects.append(obj)
            issues.extend(obj.issues)
    if max_objects is not None and len(objects) > max_objects:
        issues.append(f"the answer lists {len(objects)} objects; kept the first {max_objects} (max_objects)")
        objects = objects[:max_objects]
    return objects, issues, len(items)


def parse_output(text: Any, *, max_objects: int | None = None, answer_tags: bool = True) -> ParsedOutput:
    """Parse one reasoner output. Never raises on model text.

    Args:
        text: the decoded completion (special tokens skipped).
        max_objects: keep at most this many objects (an issue is recorded when more were listed).
        answer_tags: whether the prompt asked for ``<answer>`` tags (every format but ``qwen3vl``,
            :func:`~segzero_tool.prompts.uses_answer_tags`); ``False`` reads the answer the same way
            but does not report "no <answer> tags" as an issue.

    Returns:
        :class:`ParsedOutput` with objects in reasoning-frame pixels.
    """
    if not isinstance(text, str):
        return ParsedOutput(ParseStatus.NO_ANSWER, issues=(f"the output is a {type(text).__name__}, not text",))
    think, think_truncated = extract_think(text)
    format_ok = format_matches(text)
    answer, answer_truncated, issues = _answer_candidates(text)
    if not answer_tags:
        issues = [s for s in issues if not s.startswith("no <answer> tags")]
    truncated = think_truncated or answer_truncated
    if think_truncated:
        issues.insert(0, "the <think> block is not closed (output truncated?)")
    common = {"think": think, "format_ok": format_ok}
    if answer is None:
        return ParsedOutput(ParseStatus.NO_ANSWER, issues=tuple(issues), truncated=truncated, **common)
    if len(answer) > MAX_ANSWER_CHARS:
        issues.append(f"the answer is longer than {MAX_ANSWER_CHARS} characters; not decoded")
        return ParsedOutput(
            ParseStatus.INVALID_JSON, answer_text=answer[:1000], issues=tuple(issues), truncated=truncated, **common
        )
    try:
        value, decode_issues, json_truncated = _decode(answer)
    except ValueError as exc:
        issues.append(str(exc))
        return ParsedOutput(
            ParseStatus.INVALID_JSON, answer_text=answer, issues=tuple(issues), truncated=truncated, **common
        )
    issues.extend(decode_issues)
    objects, item_issues, total = parse_answer_value(value, max_objects=max_objects)
    issues.extend(item_issues)
    if objects:
        status = ParseStatus.OK
    elif total == 0 and not item_issues:
        status = ParseStatus.NO_OBJECTS
    else:
        status = ParseStatus.INVALID_OBJECTS
    return ParsedOutput(
        status,
        answer_text=answer,
        objects=tuple(objects),
        issues=tuple(_dedupe(issues)),
        truncated=truncated or json_truncated,
        total_items=total,
        **common,
    )


def _dedupe(items: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for s in items:
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


__all__ = [
    "ANSWER_RE",
    "FENCE_RE",
    "FORMAT_RE",
    "MAX_ANSWER_CHARS",
    "REFERENCE_BRACE_RE",
    "REFERENCE_THINK_RE",
    "THINK_RE",
    "FrameObject",
    "ParseStatus",
    "ParsedOutput",
    "extract_think",
    "format_matches",
    "parse_answer_value",
    "parse_output",
    "reference_answer_block",
    "reference_first_brace_object",
    "reference_sentence_fragments",
    "reference_think",
]
