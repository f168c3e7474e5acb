"""Understanding the task: a deterministic rule-based parser, an LLM parser, and query refinement.

>>> parse_task_rules("put the thing I can drink from next to the sink")
TaskSpec(action='place', target='the thing I can drink from', reference='the sink', relation='next_to', direction=None)
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from .state import TaskSpec

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

# --- the rule-based parser ---------------------------------------------------------------------

#: Spoken relation -> canonical relation. Longer phrases first (the regex alternation is ordered).
_RELATIONS: dict[str, str] = {
    "to the left of": "left_of", "to the right of": "right_of", "in front of": "in_front_of",
    "on top of": "on", "inside of": "in", "next to": "next_to", "close to": "next_to",
    "left of": "left_of", "right of": "right_of", "beside": "next_to", "besides": "next_to",
    "near": "next_to", "behind": "behind", "onto": "on", "into": "in", "inside": "in",
    "over to": "next_to", "by": "next_to", "on": "on", "in": "in", "to": "next_to",
}
_PLACE_RELATIONS = [r for r in _RELATIONS if r not in ("to", "over to")]
_DEST_RELATIONS = ["over to", "to", "into", "onto"]  # "take the cup to the sink" is a destination


def _alt(words: list[str]) -> str:
    return "|".join(re.escape(w).replace(r"\ ", r"\s+") for w in sorted(words, key=len, reverse=True))


_PREFIX = re.compile(
    r"^(?:(?:hey|ok|okay)[\s,]+)?(?:robot[\s,:]+)?"
    r"(?:(?:please|kindly|now|then|can\s+you|could\s+you|would\s+you|will\s+you|"
    r"i\s+want\s+you\s+to|i'd\s+like\s+you\s+to|go\s+and|go)(?:\s+|$))*",
    re.IGNORECASE,
)
_SUFFIX = re.compile(r"(?:[\s,]+(?:please|for\s+me|now))*\s*[.!?]*\s*$", re.IGNORECASE)
_F = re.IGNORECASE | re.DOTALL

_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("place", re.compile(
        r"^(?:put|place|set|move|bring|drop|stack|lay|stand|carry|transfer|hang)\s+(?P<target>.+?)"
        rf"\s+(?P<rel>{_alt(list(_RELATIONS))})\s+(?P<ref>.+)$", _F)),
    ("place", re.compile(
        r"^(?:take|get|grab|fetch)\s+(?P<target>.+?)"
        rf"\s+(?P<rel>{_alt(_DEST_RELATIONS)})\s+(?P<ref>.+)$", _F)),
    ("pick", re.compile(
        r"^(?:pick\s+up|pick|grab|grasp|take|get|fetch|lift|hold|collect)\s+(?P<target>.+?)(?:\s+up)?$", _F)),
    ("push", re.compile(
        r"^(?:push|slide|shove|nudge)\s+(?P<target>.+?)\s+(?:to\s+the\s+|towards?\s+the\s+)?"
        r"(?P<dir>left|right|forwards?|away|back|backwards?|towards?\s+me)$", _F)),
    ("push", re.compile(
        r"^(?:push|slide|shove|nudge)\s+(?P<target>.+?)"
        rf"\s+(?P<rel>{_alt([*_PLACE_RELATIONS, 'to', 'towards', 'toward'])})\s+(?P<ref>.+)$", _F)),
    ("push", re.compile(r"^(?:push|slide|shove|nudge)\s+(?P<target>.+)$", _F)),
    ("open", re.compile(r"^(?P<verb>open|close|shut)\s+(?P<target>.+)$", _F)),
    ("locate", re.compile(
        r"^(?:where(?:'s|\s+is|\s+are)|find|locate|show\s+me|look\s+for|point\s+(?:at|to)|segment|detect|"
        r"identify|search\s+for)\s+(?P<target>.+)$", _F)),
]

_DIRECTIONS = {"left": "left", "right": "right", "forward": "forward", "forwards": "forward", "away": "forward",
               "back": "backward", "backward": "backward", "backwards": "backward"}


def _clean(text: str) -> str:
    text = " ".join(text.split())
    text = _PREFIX.sub("", text, count=1)
    return _SUFFIX.sub("", text).strip(" ,;:")


def parse_task_rules(task: str) -> TaskSpec:
    """Parse an instruction with keyword rules; never fails (falls back to ``locate``).

    Verbs: pick up / grab / take / lift → ``pick``; put / place / move / bring … next to / on / in /
    into / left of / right of / in front of / behind → ``place``; push / slide (left, right, forward,
    back, or next to …) → ``push``; open / close; anything else → ``locate`` the whole phrase.
    """
    text = _clean(task)
    if not text:
        raise ValueError("the task is empty; say what the robot should do, e.g. 'pick up the cup'")
    for action, pattern in _PATTERNS:
        m = pattern.match(text)
        if not m:
            continue
        groups = m.groupdict()
        target = groups["target"].strip(" ,")
        if not target:
            continue
        spec: dict[str, Any] = {"action": action, "target": target}
        if groups.get("rel"):
            rel = " ".join(groups["rel"].lower().split())
            spec["relation"] = _RELATIONS.get(rel, "next_to")
            spec["reference"] = groups["ref"].strip(" ,")
        if groups.get("dir"):
            d = " ".join(groups["dir"].lower().split())
            spec["direction"] = "backward" if d.startswith("toward") else _DIRECTIONS[d]
        if groups.get("verb"):
            spec["action"] = "open" if groups["verb"].lower() == "open" else "close"
        return TaskSpec(**spec)
    return TaskSpec(action="locate", target=text)


# --- the LLM parser ----------------------------------------------------------------------------

TASK_SYSTEM_PROMPT = (
    "You turn a robot instruction into a task specification for a robot that sees through a "
    "reasoning segmentation model. The model finds objects from free-form descriptions, so keep the "
    "user's own description of each object (e.g. 'the thing I can drink from'); do not replace it with "
    "a guessed class name. action: pick (pick up, grab, take), place (put X next to / on / in Y: the "
    "robot picks X and places it), push, open, close, or locate (only find it). target: the object to "
    "act on. reference and relation: only when the instruction names where the target should go."
)

_JSON_INSTRUCTION = (
    "Answer with one JSON object and nothing else, with the keys action, target, reference, relation and "
    "direction (null when not given). " + json.dumps(TaskSpec.model_json_schema()["properties"])
)


def _json_object(text: str) -> dict[str, Any]:
    """The first JSON object in ``text`` (code fences and prose around it are ignored)."""
    start = text.find("{")
    if start < 0:
        raise ValueError(f"no JSON object in the model's answer: {text[:200]!r}")
    obj, _ = json.JSONDecoder().raw_decode(text[start:])
    if not isinstance(obj, dict):
        raise ValueError("the model's answer is not a JSON object")
    return obj


def parse_task_llm(task: str, model: BaseChatModel) -> TaskSpec:
    """Parse ``task`` with a chat model: structured output when the model supports tool calling,
    else a JSON answer.

    Raises:
        ValueError: the model's answer is not a valid :class:`TaskSpec` (includes pydantic's
            ``ValidationError`` and langchain's ``OutputParserException``).
    """
    from langchain_core.messages import HumanMessage, SystemMessage

    messages = [SystemMessage(TASK_SYSTEM_PROMPT), HumanMessage(task)]
    try:
        structured = model.with_structured_output(TaskSpec)
    except NotImplementedError:  # no tool calling: ask for JSON
        structured = None
    if structured is not None:
        out = structured.invoke(messages)
        if isinstance(out, TaskSpec):
            return out
        if isinstance(out, dict):
            return TaskSpec.model_validate(out)
        raise ValueError(f"the model returned no task specification ({type(out).__name__})")
    reply = model.invoke([SystemMessage(TASK_SYSTEM_PROMPT + " " + _JSON_INSTRUCTION), HumanMessage(task)])
    return TaskSpec.model_validate(_json_object(reply.text))


# --- query refinement --------------------------------------------------------------------------

_ARTICLE = re.compile(r"^(?:the|a|an|some|any|my|this|that)\s+", re.IGNORECASE)


def refine_query_rules(query: str, problem: str, attempt: int) -> str:
    """A rephrased query for a re-try: ``problem`` is ``not_found`` or ``ambiguous``.

    ``ambiguous`` asks for the most prominent one; ``not_found`` first allows small or partly hidden
    objects, then asks for the best match.
    """
    core = _ARTICLE.sub("", query.strip()).strip() or query.strip()
    if problem == "ambiguous":
        return f"the most prominent {core}" if not core.lower().startswith("most prominent") else query
    if attempt == 0:
        return f"{query.strip()}, even if it is small or partly hidden"
    return f"the object that best matches: {core}"


def refine_query_llm(query: str, problem: str, task: str, model: BaseChatModel) -> str:
    """Ask the chat model for a better description; empty answers fall back to the rules."""
    from langchain_core.messages import HumanMessage, SystemMessage

    why = ("found several candidates, so the description must single out one object"
           if problem == "ambiguous" else "found nothing, so the description should be rephrased")
    reply = model.invoke([
        SystemMessage("You rewrite object descriptions for a reasoning segmentation model. Reply with the new "
                      "description only: one short noun phrase, no quotes."),
        HumanMessage(f"Task: {task}\nDescription: {query}\nThe segmentation model {why}."),
    ])
    text = reply.text.strip().strip("\"'` ").splitlines()
    return text[0].strip() if text and text[0].strip() else refine_query_rules(query, problem, 0)


__all__ = ["TASK_SYSTEM_PROMPT", "parse_task_llm", "parse_task_rules", "refine_query_llm", "refine_query_rules"]
