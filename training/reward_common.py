"""Plumbing shared by the GRPO reward functions (:mod:`segzero_tool.training.rewards`).

TRL calls a reward function as ``f(completions, **columns) -> list[float]``: ``completions`` are
strings or conversational message lists, dataset columns arrive as keyword lists. These helpers take
the text out of a completion, line a column up with the completions, swallow errors the way every
reference term does, and hold the thinking-format term that both reward families share.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from segzero_tool.parsing import format_matches

__all__ = [
    "MODES",
    "check_mode",
    "column",
    "completion_text",
    "per_item",
    "safe",
    "thinking_format_reward",
    "thinking_score",
]

#: ``reference`` reproduces the reference reward code exactly (quirks included); ``fixed`` gives
#: saner semantics and reads model text with the library's parser (documented per function).
MODES = ("reference", "fixed")


def completion_text(completion: Any) -> str:
    """The text of one completion: a string, a message dict, or a list of messages (last assistant)."""
    if isinstance(completion, str):
        return completion
    message: Any = completion
    if isinstance(completion, (list, tuple)):
        if not completion:
            return ""
        assistants = [m for m in completion if isinstance(m, dict) and m.get("role") == "assistant"]
        message = assistants[-1] if assistants else completion[-1]
    content = message.get("content") if isinstance(message, dict) else message
    if isinstance(content, str):
        return content
    if isinstance(content, (list, tuple)):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and part.get("type", "text") == "text" and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return "".join(parts)
    return ""


def check_mode(mode: str) -> str:
    """``mode`` if it is one of :data:`MODES`.

    Raises:
        ValueError: an unknown mode (the message lists the choices).
    """
    if mode not in MODES:
        raise ValueError(f"unknown reward mode {mode!r}; choose one of: {', '.join(MODES)}")
    return mode


def column(kwargs_value: Any, n: int, name: str) -> list[Any]:
    """A dataset column as a list of ``n`` values (a single string or scalar is broadcast).

    Raises:
        ValueError: the column is missing or has another length.
    """
    if kwargs_value is None:
        raise ValueError(f"this reward needs the dataset column {name!r}")
    if isinstance(kwargs_value, str) or not hasattr(kwargs_value, "__len__"):
        return [kwargs_value] * n
    values = list(kwargs_value)
    if len(values) != n:
        raise ValueError(f"column {name!r} has {len(values)} values for {n} completions")
    return values


def safe(fn: Callable[[], float]) -> float:
    """``float(fn())``; any exception -> 0.0, as every reference term does."""
    try:
        return float(fn())
    except Exception:  # noqa: BLE001 - the reference swallows everything
        return 0.0


def per_item(completions: Sequence[Any], solution: Any, term: Callable[[str, Any], float]) -> list[float]:
    """``term(text, solution)`` for every completion and its ``solution`` value, errors -> 0."""
    sols = column(solution, len(completions), "solution")
    return [safe(partial(term, completion_text(c), s)) for c, s in zip(completions, sols, strict=True)]


def thinking_score(text: str, mode: str = "reference") -> float:
    """The thinking-format term of one text (see :func:`thinking_format_reward`)."""
    if mode == "fixed":
        return 1.0 if isinstance(text, str) and format_matches(text.strip()) else 0.0
    return 1.0 if format_matches(text) else 0.0


def thinking_format_reward(completions: Sequence[Any], *, mode: str = "reference", **kwargs: Any) -> list[float]:
    """1 if the completion fully matches ``<think>.*?</think>\\s*<answer>.*?</answer>`` (DOTALL), else 0.

    Reference: ``re.fullmatch``, so leading text, or a trailing space or newline, scores 0; two
    ``<answer>`` blocks still match. ``mode="fixed"`` strips surrounding whitespace first.
    """
    check_mode(mode)
    return [thinking_score(completion_text(c), mode) for c in completions]
