"""Structured decoding: a regular expression or grammar that only admits parseable answers.

vLLM (and other servers with constrained decoding) can force the completion to match a pattern,
so the reasoner's text always has the reference shape::

    <think> free text </think><answer>[{"bbox_2d": [x1, y1, x2, y2], "point_2d": [x, y]}, ...]</answer>

The think text is ``[^<]*`` (any text without ``<``), exactly what the Seg-Zero reference scripts
extract with ``<think>([^<]+)</think>``; the answer is a JSON list (possibly empty) of objects with
integer ``bbox_2d`` (4 numbers) and ``point_2d`` (2 numbers) in that key order, as the
VisionReasoner training prompt writes them. The Seg-Zero variant (``single``) forces one object
``{"bbox": [...], "points_1": [...], "points_2": [...]}``. The ``json`` variant, for prompts that ask
for no tags (the ``qwen3vl`` format: Qwen3-VL instruct models were not trained on ``<think>``), forces
the bare list ``[{"bbox_2d": [...], "point_2d": [...]}, ...]`` with no think block, no tags and no
fence (0-1000 grid values fit :data:`MAX_DIGITS`; the optional ``label`` is left out).

Portability: the patterns use only a subset shared by Python ``re``, xgrammar (vLLM's default
structured-output backend) and llguidance / Rust ``regex`` (its fallback): literal characters,
escaped brackets and braces, bracket classes (``[0-9]``, ``[^<]``, ``[ \\t\\n]``), groups, ``|``,
``*``, ``?`` and ``{m,n}``. No ``\\d`` / ``\\s`` / ``\\w`` (Unicode-aware in Python, ASCII elsewhere),
no lookaround, no back-references, no anchors (vLLM matches the whole output). Whitespace inside
the JSON is bounded (at most :data:`MAX_WS` characters per gap) so that constrained decoding cannot
run away on whitespace. Coordinates are non-negative integers with at most :data:`MAX_DIGITS`
digits and no leading zeros (valid JSON); the parser clamps them into the frame.

The grammar variant is the same language as an EBNF grammar (``root ::= ...``) in the GBNF style
that xgrammar reads (quoted literals, ``[...]`` classes, ``( )``, ``|``, ``*``, ``?``), written
without ``{m,n}`` repetition for older grammar engines.

Sent to vLLM (>= 0.12) as ``{"structured_outputs": {"regex": ...}}`` or
``{"structured_outputs": {"grammar": ...}}`` on ``/v1/chat/completions``, or as
``SamplingParams(structured_outputs=StructuredOutputsParams(regex=...))`` in-process (see
``docs/features/structured_outputs.md`` of vLLM; ``guided_regex`` / ``guided_grammar`` were
removed in 0.12).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

#: Answer shapes: ``list`` = VisionReasoner / grounding (a JSON list), ``single`` = Seg-Zero (one object),
#: ``json`` = the bare JSON list with no think block nor tags (``qwen3vl``).
AnswerSchema = Literal["list", "single", "json"]
#: Structured-output kinds a backend may send.
StructuredKind = Literal["regex", "grammar"]

#: Longest whitespace run allowed between JSON tokens and around the answer.
MAX_WS = 4
#: Most digits of one coordinate (frames up to 9999 px).
MAX_DIGITS = 4

_WS = f"[ \\t\\n]{{0,{MAX_WS}}}"
_INT = f"(0|[1-9][0-9]{{0,{MAX_DIGITS - 1}}})"
_THINK = "<think>[^<]*</think>"


def _array(n: int) -> str:
    """``[ int , int , ... ]`` with ``n`` integers."""
    sep = f"{_WS},{_WS}"
    return f"\\[{_WS}{sep.join([_INT] * n)}{_WS}\\]"


def _member(key: str, n: int) -> str:
    return f'"{key}"{_WS}:{_WS}{_array(n)}'


def _object(members: list[tuple[str, int]]) -> str:
    sep = f"{_WS},{_WS}"
    return f"\\{{{_WS}{sep.join(_member(k, n) for k, n in members)}{_WS}\\}}"


_LIST_OBJECT = _object([("bbox_2d", 4), ("point_2d", 2)])
_SINGLE_OBJECT = _object([("bbox", 4), ("points_1", 2), ("points_2", 2)])


@lru_cache(maxsize=16)
def answer_regex(schema: AnswerSchema = "list", max_objects: int | None = None) -> str:
    """The regular expression for a whole completion.

    Args:
        schema: ``list`` (VisionReasoner and grounding formats), ``single`` (Seg-Zero) or ``json``
            (``qwen3vl``: the list alone, no think block and no tags).
        max_objects: ``list`` and ``json`` only: at most this many objects (``None``: unbounded, the token
            budget bounds it). A bound makes the automaton larger; the parser caps objects anyway.

    Returns:
        A pattern that fully matches ``<think>...</think><answer>...</answer>`` outputs (use it
        with ``re.fullmatch``; vLLM matches the whole completion).
    """
    if schema == "single":
        answer = _SINGLE_OBJECT
    elif schema in ("list", "json"):
        if max_objects is not None and max_objects < 1:
            raise ValueError(f"max_objects must be >= 1 or None, got {max_objects}")
        more = "*" if max_objects is None else f"{{0,{max_objects - 1}}}"
        answer = f"\\[{_WS}({_LIST_OBJECT}({_WS},{_WS}{_LIST_OBJECT}){more})?{_WS}\\]"
    else:
        raise ValueError(f"unknown answer schema {schema!r}; use 'list', 'single' or 'json'")
    if schema == "json":
        return answer
    return f"{_THINK}{_WS}<answer>{_WS}{answer}{_WS}</answer>"


def _g_ws() -> str:
    # ws ::= up to MAX_WS characters, as nested optionals (no {m,n} needed)
    inner = ""
    for _ in range(MAX_WS):
        inner = f"([ \\t\\n] {inner})?" if inner else "([ \\t\\n])?"
    return inner


@lru_cache(maxsize=4)
def answer_grammar(schema: AnswerSchema = "list") -> str:
    """The same language as :func:`answer_regex` (unbounded object count) as an EBNF grammar.

    Rules: ``root``, ``think``, ``answer``, ``object``, ``box``, ``point``, ``int``, ``ws``.
    """
    digits = " ".join(["[0-9]?"] * (MAX_DIGITS - 1))
    if schema == "single":
        answer = ('"{" ws "\\"bbox\\"" ws ":" ws box ws "," ws "\\"points_1\\"" ws ":" ws point ws "," ws '
                  '"\\"points_2\\"" ws ":" ws point ws "}"')
        objects = f"answer ::= {answer}\n"
    elif schema in ("list", "json"):
        objects = (
            'answer ::= "[" ws (object (ws "," ws object)*)? ws "]"\n'
            'object ::= "{" ws "\\"bbox_2d\\"" ws ":" ws box ws "," ws "\\"point_2d\\"" ws ":" ws point ws "}"\n'
        )
    else:
        raise ValueError(f"unknown answer schema {schema!r}; use 'list', 'single' or 'json'")
    root = ('root ::= answer\n' if schema == "json" else
            'root ::= "<think>" think "</think>" ws "<answer>" ws answer ws "</answer>"\nthink ::= [^<]*\n')
    return (
        root
        + objects
        + 'box ::= "[" ws int ws "," ws int ws "," ws int ws "," ws int ws "]"\n'
        'point ::= "[" ws int ws "," ws int ws "]"\n'
        f'int ::= "0" | [1-9] {digits}\n'
        f"ws ::= {_g_ws()}\n"
    )


def schema_for_prompt(prompt: str) -> AnswerSchema:
    """Guess the answer shape from the prompt text the pipeline built.

    The Seg-Zero template asks for ``points_1`` / ``points_2`` (see :mod:`segzero_tool.prompts`);
    a prompt that asks for ``bbox_2d`` without any ``<answer>`` tag (the ``qwen3vl`` template) gets the bare
    list (``json``); every other format (VisionReasoner, grounding, custom prompts) expects the tagged JSON list.
    """
    if "points_1" in prompt and "points_2" in prompt:
        return "single"
    if "bbox_2d" in prompt and "<answer>" not in prompt:
        return "json"
    return "list"


def structured_outputs_field(kind: StructuredKind, schema: AnswerSchema, max_objects: int | None = None) -> dict[str, str]:
    """The value of vLLM's ``structured_outputs`` request field: ``{"regex": ...}`` or ``{"grammar": ...}``."""
    if kind == "regex":
        return {"regex": answer_regex(schema, max_objects)}
    if kind == "grammar":
        return {"grammar": answer_grammar(schema)}
    raise ValueError(f"unknown structured-output kind {kind!r}; use 'regex' or 'grammar'")


__all__ = [
    "AnswerSchema",
    "MAX_DIGITS",
    "MAX_WS",
    "StructuredKind",
    "answer_grammar",
    "answer_regex",
    "schema_for_prompt",
    "structured_outputs_field",
]
