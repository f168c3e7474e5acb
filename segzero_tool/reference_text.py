"""The reference scripts' text locators, reproduced exactly (quirks included) in linear time.

The training rewards reproduce the reference reward code's text handling exactly (protocol section 8),
and reference mode (:mod:`segzero_tool.reference_parse`) reads answers as the reference inference
and evaluation scripts do. Both take their text through these helpers, so that model text is still
only taken apart by the parser's modules. None of these change :func:`~segzero_tool.parsing.parse_output`.
"""

from __future__ import annotations

import re

from .model_text import _answer_block

#: The single-object reward's JSON locator: the first ``{...}`` without a nested ``}``, anywhere.
REFERENCE_BRACE_RE = re.compile(r"\{[^}]+\}")


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
