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
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from .frame import is_finite_number

# The tag grammar, as regular expressions. They document the reference behaviour; the parser does
# not run THINK_RE, ANSWER_RE or FORMAT_RE, whose lazy ``.*?`` makes a search quadratic (a
# 64 KB run of ``<answer>`` took 14.5 s): :func:`_tag_block` and :func:`format_matches` give the
# same answers in linear time (tests/test_model_text_total.py checks them against these).
THINK_RE = re.compile(r"<think>(.*?)</think>", re.DOTALL)
ANSWER_RE = re.compile(r"<answer>\s*(.*?)\s*</answer>", re.DOTALL)
#: The full-match grammar used by the reference format reward.
FORMAT_RE = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)
FENCE_RE = re.compile(r"```[a-zA-Z0-9_-]*\s*(.*?)(?:```|\Z)", re.DOTALL)
_FORMAT_JOIN_RE = re.compile(r"</think>\s*<answer>")
_JSON_START_RE = re.compile(r"[\[{]")
_JSON_WS_RE = re.compile(r"[ \t\n\r]*")

#: Answers longer than this are not decoded (pathological output); the issue is reported.
MAX_ANSWER_CHARS = 200_000
_MAX_REPAIR_TRIES = 64
#: JSON integers with more digits than this are read as floats (exactly as ``float(int(s))``), so
#: a run of thousands of digits is neither an int-string-conversion ``ValueError`` nor an ``int``
#: that overflows later; beyond ~308 digits it becomes ``inf`` and is reported as non-finite.
_MAX_INT_DIGITS = 18


class ParseStatus(str, Enum):
    """Outcome of parsing one model output."""

    OK = "ok"  #: at least one usable object
    NO_OBJECTS = "no_objects"  #: a well-formed answer that lists no object (e.g. ``[]``)
    NO_ANSWER = "no_answer"  #: no ``<answer>`` block and no JSON anywhere
    INVALID_JSON = "invalid_json"  #: an answer was found but is not decodable JSON
    INVALID_OBJECTS = "invalid_objects"  #: decodable, but no item has a usable box or point


@dataclass(frozen=True)
class FrameObject:
    """One object as the model wrote it, in reasoning-frame pixels (floats, not yet clamped).

    Attributes:
        box: ``(x1, y1, x2, y2)`` or ``None`` if the item had no usable box.
        points: ``((x, y), ...)``, possibly empty.
        label: optional ``label`` string written by the model.
        issues: what was dropped or repaired for this item.
    """

    box: tuple[float, float, float, float] | None
    points: tuple[tuple[float, float], ...] = ()
    label: str | None = None
    issues: tuple[str, ...] = ()

    def to_answer_dict(self) -> dict[str, Any]:
        """The VisionReasoner JSON form of this object (first point only)."""
        d: dict[str, Any] = {}
        if self.box is not None:
            d["bbox_2d"] = [_num(v) for v in self.box]
        if self.points:
            d["point_2d"] = [_num(v) for v in self.points[0]]
        return d


@dataclass(frozen=True)
class ParsedOutput:
    """Result of :func:`parse_output`.

    Attributes:
        status: see :class:`ParseStatus`.
        think: text inside ``<think>...</think>`` (stripped); ``""`` if absent.
        answer_text: the raw text that was decoded as the answer, or ``None``.
        objects: usable objects in reasoning-frame pixels.
        issues: human-readable notes on everything that was wrong or repaired.
        format_ok: the whole output fully matches ``<think>...</think>\\s*<answer>...</answer>``.
        truncated: the output looks cut off (an unclosed tag or JSON).
        total_items: how many items the answer listed (valid or not).
    """

    status: ParseStatus
    think: str = ""
    answer_text: str | None = None
    objects: tuple[FrameObject, ...] = ()
    issues: tuple[str, ...] = ()
    format_ok: bool = False
    truncated: bool = False
    total_items: int = 0

    @property
    def ok(self) -> bool:
        return self.status is ParseStatus.OK

    @property
    def message(self) -> str:
        """One line for humans: the status and the first issues."""
        if self.ok and not self.issues:
            return f"parsed {len(self.objects)} object(s)"
        head = {
            ParseStatus.OK: f"parsed {len(self.objects)} object(s)",
            ParseStatus.NO_OBJECTS: "the answer lists no object",
            ParseStatus.NO_ANSWER: "the model output has no <answer> block and no JSON",
            ParseStatus.INVALID_JSON: "the answer is not valid JSON",
            ParseStatus.INVALID_OBJECTS: "the answer has no item with a usable box or point",
        }[self.status]
        return head + ("; " + "; ".join(self.issues[:3]) if self.issues else "")


# --- helpers -----------------------------------------------------------------------------------


def _num(v: float) -> int | float:
    return int(v) if float(v).is_integer() else float(v)


def _parse_int(digits: str) -> int | float:
    return int(digits) if len(digits) <= _MAX_INT_DIGITS else float(digits)


#: The one JSON decoder: long integers become floats (see :data:`_MAX_INT_DIGITS`).
_DECODER = json.JSONDecoder(parse_int=_parse_int)


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


def _tag_block(text: str, open_tag: str, close_tag: str) -> str | None:
    """The text between the first ``open_tag`` and the first ``close_tag`` after it, or ``None``.

    The same as ``re.search(open_tag + "(.*?)" + close_tag, text, re.DOTALL).group(1)`` (if the first
    opening tag has no closing tag after it, no later one has), in linear time.
    """
    start = text.find(open_tag)
    if start < 0:
        return None
    inner = start + len(open_tag)
    end = text.find(close_tag, inner)
    return None if end < 0 else text[inner:end]


def _answer_block(text: str) -> str | None:
    """:data:`ANSWER_RE`'s group 1 in linear time (``\\s`` and ``str.strip`` share one whitespace set)."""
    inner = _tag_block(text, "<answer>", "</answer>")
    return None if inner is None else inner.strip()


def extract_think(text: str) -> tuple[str, bool]:
    """Return ``(think_text, truncated)``; an unclosed ``<think>`` yields the rest of the text."""
    inner = _tag_block(text, "<think>", "</think>")
    if inner is not None:
        return inner.strip(), False
    start = text.find("<think>")
    if start >= 0:
        rest = text[start + len("<think>") :]
        cut = rest.find("<answer>")
        return (rest[:cut] if cut >= 0 else rest).strip(), True
    return "", False


def _answer_candidates(text: str) -> tuple[str | None, bool, list[str]]:
    """Locate the answer text. Returns ``(answer, truncated, issues)``."""
    issues: list[str] = []
    block = _answer_block(text)
    if block is not None:
        return block, False, issues
    start = text.find("<answer>")
    if start >= 0:
        issues.append("the <answer> block is not closed (output truncated?)")
        return text[start + len("<answer>") :].strip(), True, issues
    # No answer tags: look outside the think block, then anywhere.
    think_end = text.rfind("</think>")
    tail = text[think_end + len("</think>") :] if think_end >= 0 else text
    for region in (tail, text) if think_end >= 0 else (text,):
        fence = FENCE_RE.search(region)
        if fence:
            issues.append("no <answer> tags; used the fenced code block")
            return fence.group(1), False, issues
        first = _first_json_start(region)
        if first is not None:
            issues.append("no <answer> tags; used the first JSON in the text")
            return region[first:], False, issues
    return None, False, issues


def _first_json_start(text: str) -> int | None:
    m = _JSON_START_RE.search(text)
    return m.start() if m else None


def _strip_fences(answer: str) -> str:
    m = FENCE_RE.search(answer)
    return m.group(1) if m and answer.lstrip().startswith("```") else answer


def _decode(answer: str) -> tuple[Any, list[str], bool]:
    """Decode JSON leniently. Returns ``(value, issues, truncated)``; raises ``ValueError``."""
    issues: list[str] = []
    s = _strip_fences(answer).strip()
    start = _first_json_start(s)
    if start is None:
        raise ValueError("no JSON list or object in the answer")
    if start > 0:
        issues.append("ignored text before the JSON")
        s = s[start:]
    try:
        value, end = _DECODER.raw_decode(s)
        if s[end:].strip():
            issues.append("ignored text after the JSON")
        return value, issues, False
    except (ValueError, RecursionError, MemoryError):  # JSONDecodeError is a ValueError
        pass
    # Python literal syntax (single quotes, True/None) as in the Seg-Zero prompt example.
    literal = _literal_prefix(s)
    if literal is not None:
        issues.append("the answer uses single quotes (Python literal), not JSON")
        return literal, issues, False
    # Truncated list: keep the complete objects before the cut.
    if s.startswith("["):
        value = _cut_list_prefix(s)
        if value is not None:
            issues.append("the JSON list is cut off; kept the complete objects before the cut")
            return value, issues, True
    raise ValueError("the answer is not valid JSON")


def _cut_list_prefix(s: str) -> list[Any] | None:
    """The longest ``s[:pos + 1] + "]"`` that decodes, ``pos`` one of the last 64 ``}``; else ``None``.

    Decoding each such prefix costs ``64 x len(s)``; instead the list's elements are decoded once, in
    order, until one fails: a prefix ending in ``}`` decodes exactly when it ends where a complete
    object element ends, so the answer is the elements up to the last complete object.
    """
    items: list[Any] = []
    best: tuple[int, int] | None = None
    idx = _JSON_WS_RE.match(s, 1).end()  # type: ignore[union-attr]
    while idx < len(s):
        try:
            value, end = _DECODER.raw_decode(s, idx)
        except (ValueError, RecursionError, MemoryError):
            break
        items.append(value)
        if isinstance(value, dict):
            best = (len(items), end)
        idx = _JSON_WS_RE.match(s, end).end()  # type: ignore[union-attr]
        if idx >= len(s) or s[idx] != ",":
            break
        idx = _JSON_WS_RE.match(s, idx + 1).end()  # type: ignore[union-attr]
    if best is None or s.count("}", best[1]) >= _MAX_REPAIR_TRIES:
        return None
    return items[: best[0]]


def _literal_prefix(s: str) -> Any | None:
    """``ast.literal_eval`` of the shortest bracket-balanced prefix, or ``None``."""
    if "'" not in s:
        return None
    depth = 0
    end = None
    quote: str | None = None
    for i, ch in enumerate(s):
        if quote:
            if ch == quote and s[i - 1] != "\\":
                quote = None
            continue
        if ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
            if depth == 0:
                end = i + 1
                break
    if end is None:
        return None
    try:
        value = ast.literal_eval(s[:end])
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    return value if isinstance(value, (list, dict, tuple)) else None


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


def parse_output(text: Any, *, max_objects: int | None = None) -> ParsedOutput:
    """Parse one reasoner output. Never raises on model text.

    Args:
        text: the decoded completion (special tokens skipped).
        max_objects: keep at most this many objects (an issue is recorded when more were listed).

    Returns:
        :class:`ParsedOutput` with objects in reasoning-frame pixels.
    """
    if not isinstance(text, str):
        return ParsedOutput(ParseStatus.NO_ANSWER, issues=(f"the output is a {type(text).__name__}, not text",))
    think, think_truncated = extract_think(text)
    format_ok = format_matches(text)
    answer, answer_truncated, issues = _answer_candidates(text)
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


# --- reference-compatible extraction (training rewards) -----------------------------------------
#
# The training rewards reproduce the reference reward code's text handling exactly, quirks included
# (protocol section 8). They take their text through these helpers so that model text is still only
# taken apart in this module. None of these change :func:`parse_output`.

#: The single-object reward's JSON locator: the first ``{...}`` without a nested ``}``, anywhere.
REFERENCE_BRACE_RE = re.compile(r"\{[^}]+\}")


def format_matches(text: str) -> bool:
    """``re.fullmatch`` of :data:`FORMAT_RE` (leading or trailing whitespace fails, as in the reference).

    Computed in linear time: the text must start with ``<think>``, end with ``</answer>``, and hold a
    ``</think>\\s*<answer>`` between the two (the lazy ``.*?`` parts match anything).
    """
    if not isinstance(text, str) or not (text.startswith("<think>") and text.endswith("</answer>")):
        return False
    return _FORMAT_JOIN_RE.search(text, len("<think>"), len(text) - len("</answer>")) is not None


def reference_first_brace_object(text: str) -> str | None:
    """The first ``{[^}]+}`` in ``text`` (inside ``<think>``, outside tags, ...), or ``None``.

    Same answer as ``REFERENCE_BRACE_RE.search`` in linear time (a run of ``{`` with no ``}`` made
    the regex quadratic).
    """
    if not isinstance(text, str):
        return None
    start = text.find("{")
    while start >= 0:
        if start + 1 < len(text) and text[start + 1] != "}":
            end = text.find("}", start + 1)
            return None if end < 0 else text[start : end + 1]
        start = text.find("{", start + 1)
    return None


def reference_answer_block(text: str) -> str | None:
    """The inner text of the **first** ``<answer>\\s*(.*?)\\s*</answer>`` block, or ``None``."""
    if not isinstance(text, str):
        return None
    return _answer_block(text)


def reference_sentence_fragments(text: str) -> list[str]:
    """The non-repeat reward's split: the whole text on ``"."``, stripped, empties dropped.

    Tags and JSON are part of the text, so ``10.5`` splits a coordinate into two fragments.
    """
    if not isinstance(text, str):
        return []
    return [s.strip() for s in text.split(".") if s.strip()]


#: The reference scripts' think locator (a ``<`` inside the think text, or an empty think, does not match).
REFERENCE_THINK_RE = re.compile(r"<think>([^<]+)</think>")


def reference_think(text: str) -> str | None:
    """Group 1 of the first :data:`REFERENCE_THINK_RE` match, or ``None``, in linear time.

    At each ``<think>`` the run of non-``<`` characters ends at the next ``<``; it matches when that
    run is not empty and ``</think>`` starts there. Each ``<think>`` is scanned only up to that ``<``,
    which no later ``<think>`` lies before.
    """
    if not isinstance(text, str):
        return None
    start = text.find("<think>")
    while start >= 0:
        inner = start + len("<think>")
        end = text.find("<", inner)
        if end < 0:
            return None
        if end > inner and text.startswith("</think>", end):
            return text[inner:end]
        start = text.find("<think>", end)
    return None
