"""Finding the parts of model text: the ``<think>`` / ``<answer>`` tag grammar, scanned in linear time.

:func:`extract_think` and :func:`_answer_candidates` take one model output apart for
:func:`~segzero_tool.parsing.parse_output` (with no ``<answer>`` tags, the answer is the fenced code
block or the first JSON); :func:`format_matches` is the reference format reward's full match.
"""

from __future__ import annotations

import re

from .answer_json import FENCE_RE, _first_json_start

# The tag grammar, as regular expressions. They document the reference behaviour; the parser does
# not run THINK_RE, ANSWER_RE or FORMAT_RE, whose lazy ``.*?`` makes a search quadratic (a
# 64 KB run of ``<answer>`` took 14.5 s): :func:`_tag_block` and :func:`format_matches` give the
# same answers in linear time (tests/test_model_text_total.py checks them against these).
THINK_RE = re.compile(r"<think>(.*?)</think>", re.DOTALL)
ANSWER_RE = re.compile(r"<answer>\s*(.*?)\s*</answer>", re.DOTALL)
#: The full-match grammar used by the reference format reward.
FORMAT_RE = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)
_FORMAT_JOIN_RE = re.compile(r"</think>\s*<answer>")


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


def format_matches(text: str) -> bool:
    """``re.fullmatch`` of :data:`FORMAT_RE` (leading or trailing whitespace fails, as in the reference).

    Computed in linear time: the text must start with ``<think>``, end with ``</answer>``, and hold a
    ``</think>\\s*<answer>`` between the two (the lazy ``.*?`` parts match anything).
    """
    if not isinstance(text, str) or not (text.startswith("<think>") and text.endswith("</answer>")):
        return False
    return _FORMAT_JOIN_RE.search(text, len("<think>"), len(text) - len("</answer>")) is not None
