"""Decoding the answer's JSON leniently: fences, text around it, Python literals, lists cut off.

:func:`_decode` is the parser's one JSON step (:func:`~segzero_tool.parsing.parse_output` calls it on
the answer text that :mod:`segzero_tool.model_text` located). Every repair it makes is reported as an
issue; long integers become floats (:data:`_MAX_INT_DIGITS`), and a list cut off mid-way keeps its
complete objects, found in linear time.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

#: A fenced code block (its closing fence may be cut off); the answer inside it is decoded.
FENCE_RE = re.compile(r"```[a-zA-Z0-9_-]*\s*(.*?)(?:```|\Z)", re.DOTALL)
_JSON_START_RE = re.compile(r"[\[{]")
_JSON_WS_RE = re.compile(r"[ \t\n\r]*")

_MAX_REPAIR_TRIES = 64
#: JSON integers with more digits than this are read as floats (exactly as ``float(int(s))``), so
#: a run of thousands of digits is neither an int-string-conversion ``ValueError`` nor an ``int``
#: that overflows later; beyond ~308 digits it becomes ``inf`` and is reported as non-finite.
_MAX_INT_DIGITS = 18


def _parse_int(digits: str) -> int | float:
    return int(digits) if len(digits) <= _MAX_INT_DIGITS else float(digits)


#: The one JSON decoder: long integers become floats (see :data:`_MAX_INT_DIGITS`).
_DECODER = json.JSONDecoder(parse_int=_parse_int)


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

