"""The text an agent reads about a result: bounded, whatever the number of objects.

Both tool adapters (the MCP server's text content, the LangChain tool's message content) use
:func:`summarize`, so their wording and their size limits are one thing. The text stays under
``max_chars`` (default :data:`TEXT_BUDGET` = 8,000 characters, about 2,000 tokens) for any number of
objects and any reasoning length: objects are listed one line each while they fit, the rest are
counted and pointed to (the structured result or the resources carry them all).

What to do next is said only where it can help: rephrasing when the model found nothing or wrote no
usable box, a larger token budget when the answer was cut off by it (the adapter names its own
setting in ``budget_hint``), and the model/prompt-format match when the answer did not follow the
grammar. No image data ever goes into this text.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .parsing import ParseStatus
from .result import SegmentationResult

#: Default bound on the summary text, in characters (about 2,000 tokens).
TEXT_BUDGET = 8000

_STATUS_WORDS = {
    ParseStatus.OK: "the answer held no object",
    ParseStatus.NO_OBJECTS: "the model answered that nothing in the image matches",
    ParseStatus.NO_ANSWER: "the model wrote no answer",
    ParseStatus.INVALID_JSON: "the model's answer was not valid JSON",
    ParseStatus.INVALID_OBJECTS: "the model's answer held no usable box or point",
}


@dataclass(frozen=True)
class Links:
    """Where the parts of a stored result can be read back (MCP resource URIs); all optional."""

    result_id: str | None = None
    object_mask: Callable[[int], str] | None = None
    object_mask_template: str | None = None
    union_mask: str | None = None
    overlay: str | None = None
    result_json: str | None = None


def clip(text: str, limit: int) -> str:
    """``text`` with whitespace runs collapsed, cut to ``limit`` characters with an ellipsis."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: max(0, limit - 1)].rstrip() + "…"


def _object_line(i: int, result: SegmentationResult, links: Links | None, omitted: set[int]) -> str:
    obj = result.objects[i]
    w, h = result.image_size
    parts = [f"#{i}: box {list(obj.box) if obj.box is not None else 'none'};"]
    if obj.points:
        pts = ", ".join(f"({x}, {y})" for x, y in obj.points)
        parts.append(f"point{'s' if len(obj.points) > 1 else ''} {pts};")
    parts.append(f"score {obj.score:.2f};" if math.isfinite(obj.score) else "score n/a;")
    if obj.mask is not None:
        parts.append(f"area {obj.area} px ({100.0 * obj.area / max(1, w * h):.1f}% of the image)")
    else:
        parts.append("no mask")
    if obj.label:
        parts.append(f"; label {clip(obj.label, 80)!r}")
    line = " ".join(parts).replace(" ;", ";")
    if links is not None and links.object_mask is not None:
        line += f"; mask {links.object_mask(i)}"
        if i in omitted:
            line += " (not inline)"
    return line


def from_prompts(result: SegmentationResult) -> bool:
    """Whether ``result`` was made from the caller's prompts (``segment_by_prompts``: no reasoner ran)."""
    return result.prompt_format == "prompts"


def what_next(result: SegmentationResult, budget_hint: str | None = None,
              format_hint: str | None = None) -> str | None:
    """One sentence on what could help when no object came back (``None`` when objects did)."""
    if result.objects:
        return None
    if from_prompts(result):
        return ("Call segment_by_prompts with the boxes or points of the objects you want (image pixels), "
                "or keep an earlier result that had them.")
    if result.truncated:
        hint = f" ({budget_hint})" if budget_hint else ""
        return ("The model's answer was cut off by its token budget before it finished; rephrasing will not "
                f"help, a larger budget will{hint}.")
    status = result.parse_status
    if status in (ParseStatus.NO_ANSWER, ParseStatus.INVALID_JSON):
        hint = f" ({format_hint})" if format_hint else ""
        return ("The model did not write an answer in the expected format; this usually means that the model and "
                f"the prompt format do not match{hint}, rather than a problem with the query.")
    return ("Try a more concrete query (name the object and where it is), or the object may not be in the "
            "image.")


def summarize(result: SegmentationResult, *, links: Links | None = None, max_chars: int = TEXT_BUDGET,
              reasoning_chars: int = 1200, omitted_masks: Sequence[int] = (), omitted_reason: str | None = None,
              budget_hint: str | None = None, format_hint: str | None = None, notes: Sequence[str] = ()) -> str:
    """The bounded text an agent reads about ``result``.

    Args:
        result: the result.
        links: resource URIs to mention (every URI in ``links`` appears in the text; per-object mask
            URIs while the object lines fit, then as ``object_mask_template``).
        max_chars: the returned text is shorter than this.
        reasoning_chars: the reasoning is cut to this many characters.
        omitted_masks: indices of objects whose masks were left out of the structured result.
        omitted_reason: why they were left out (one clause).
        budget_hint: how to raise the reasoner's token budget, in the adapter's own terms.
        format_hint: how to choose the model / prompt format, in the adapter's own terms.
        notes: extra sentences (e.g. the overlay was left out), each clipped.
    """
    w, h = result.image_size
    omitted = set(omitted_masks)
    rid = f" (result_id {links.result_id})" if links is not None and links.result_id else ""
    head: list[str] = []
    tail: list[str] = []
    prompted = from_prompts(result)
    asked = f" (query {clip(result.query, 300)!r})" if prompted and result.query.strip() else ""
    if result.objects and prompted:
        head.append(f"Found {len(result.objects)} object(s) from {len(result.objects)} prompted objects{asked} in "
                    f"the {w}x{h} image{rid}.")
        head.append("Coordinates are original-image pixels, origin top-left, x right, y down; "
                    "box = [x1, y1, x2, y2] inclusive; point = (x, y).")
    elif prompted:
        head.append(f"No object in this result from prompted objects{asked} in the {w}x{h} image{rid} "
                    "(none was kept).")
        if result.parse_issues:
            issues = "; ".join(clip(s, 160) for s in result.parse_issues[:5])
            more = f" (+{len(result.parse_issues) - 5} more)" if len(result.parse_issues) > 5 else ""
            head.append(f"Issues: {issues}{more}.")
    elif result.objects:
        head.append(f"Found {len(result.objects)} object(s) for the query {clip(result.query, 300)!r} in the "
                    f"{w}x{h} image{rid}.")
        head.append("Coordinates are original-image pixels, origin top-left, x right, y down; "
                    "box = [x1, y1, x2, y2] inclusive; point = (x, y).")
    else:
        why = _STATUS_WORDS.get(result.parse_status, result.parse_status.value)
        if result.truncated and result.parse_status is not ParseStatus.NO_OBJECTS:
            why = "the answer was cut off by the token budget"
        head.append(f"No object found for the query {clip(result.query, 300)!r} in the {w}x{h} image{rid} "
                    f"(parse status {result.parse_status.value}: {why}).")
        if result.parse_issues:
            issues = "; ".join(clip(s, 160) for s in result.parse_issues[:5])
            more = f" (+{len(result.parse_issues) - 5} more)" if len(result.parse_issues) > 5 else ""
            head.append(f"Issues: {issues}{more}.")
    reasoning = clip(result.reasoning, reasoning_chars) if result.reasoning.strip() else "(none)"
    tail.append(f"Reasoning: {reasoning}")
    if omitted:
        shown = ", ".join(f"#{i}" for i in sorted(omitted)[:40]) + (" ..." if len(omitted) > 40 else "")
        reason = f" {omitted_reason}" if omitted_reason else ""
        tail.append(clip(f"Masks of {len(omitted)} object(s) ({shown}) are not inline in this result;{reason} read "
                         "each from its mask URI.", 900))
    if links is not None:
        uris = []
        if links.union_mask:
            uris.append(f"union mask {links.union_mask}")
        if links.object_mask_template and result.objects:
            uris.append(f"object masks {links.object_mask_template}")
        if links.overlay:
            uris.append(f"overlay picture {links.overlay}")
        if links.result_json:
            uris.append(f"everything as JSON {links.result_json}")
        if uris:
            tail.append("Resources (read with resources/read): " + "; ".join(uris) + ".")
    tail.extend(clip(n, 400) for n in notes)
    advice = what_next(result, budget_hint, format_hint)
    if advice:
        tail.append(advice)

    def more(i: int) -> str:
        return (f"- ... and {len(result.objects) - i} more object(s), #{i} to #{len(result.objects) - 1} "
                "(all of them are in the structured result)")

    lines = [_object_line(i, result, links, omitted) for i in range(len(result.objects))]
    keep = len(lines)
    while True:  # as many object lines as fit, then one line counting the rest; never cut a URI
        body = ["- " + line for line in lines[:keep]] + ([more(keep)] if keep < len(lines) else [])
        text = "\n".join(head + body + tail)
        if len(text) < max_chars or keep == 0:
            break
        longest = max(len(line) for line in lines[:keep]) + 3
        keep = max(0, min(keep - 1, keep - (len(text) - max_chars) // longest))  # drop at least what is over
    return text if len(text) < max_chars else text[: max_chars - 2] + "…"


__all__ = ["TEXT_BUDGET", "Links", "clip", "from_prompts", "summarize", "what_next"]
