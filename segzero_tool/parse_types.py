"""The parser's result types: :class:`ParseStatus`, :class:`FrameObject` and :class:`ParsedOutput`.

:func:`~segzero_tool.parsing.parse_output` returns them; the pipeline, the results, evaluation and
the training rewards read them. Coordinates are reasoning-frame pixels, as the model wrote them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any


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


def _num(v: float) -> int | float:
    return int(v) if float(v).is_integer() else float(v)
