"""Prompt formats, byte-for-byte compatible with the released checkpoints.

Four formats:

* ``visionreasoner`` (default): multi-object, answer is a JSON list of
  ``{"bbox_2d": [x1,y1,x2,y2], "point_2d": [x,y]}``; for ``Ricky06662/VisionReasoner-7B``.
* ``segzero``: single object, answer is ``{"bbox": [...], "points_1": [x,y], "points_2": [x,y]}``;
  for ``Ricky06662/Seg-Zero-7B``.
* ``grounding``: for base Qwen2.5-VL-Instruct models (no GRPO); asks for the model's native
  ``bbox_2d`` / ``point_2d`` JSON in the reasoning frame. This template is ours: the reference
  projects publish none for base models.
* ``qwen3vl``: for Qwen3-VL-Instruct models (no ``<think>`` training): asks for the JSON list of
  ``{"bbox_2d": [x1,y1,x2,y2], "point_2d": [x,y], "label": ...}`` that Qwen3-VL's grounding writes,
  on its 0-1000 relative grid (``relative1000`` in :mod:`segzero_tool.frame`), with no tags (the
  model answers in a ```json fence or bare JSON; the parser reads both). Also ours: Qwen publishes
  grounding prompts by example, not a template; this one asks for the same keys and grid.

The sentences of the reference templates are joined with no separator ("points.Compare") and the
question is lower-cased and stripped of surrounding characters (``strip`` does not remove
whitespace), exactly as the reference code does.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .errors import QueryError


class PromptFormat(str, Enum):
    """The answer grammar a reasoner was trained on."""

    VISIONREASONER = "visionreasoner"
    SEGZERO = "segzero"
    GROUNDING = "grounding"
    QWEN3VL = "qwen3vl"

    @classmethod
    def parse(cls, value: str | PromptFormat) -> PromptFormat:
        if isinstance(value, PromptFormat):
            return value
        key = str(value).strip().lower().replace("-", "").replace("_", "")
        for member in cls:
            if member.value == key:
                return member
        names = ", ".join(m.value for m in cls)
        raise ValueError(f"unknown prompt format {value!r}; choose one of: {names}")


# --- literal reference strings -------------------------------------------------------------------

SEGZERO_ANSWER_EXAMPLE = "{'bbox': [10,100,200,210], 'points_1': [30,110], 'points_2': [35,180]}"

SEGZERO_TEMPLATE = (
    "Please find '{Question}' with bbox and points."
    "Compare the difference between objects and find the most closely matched one."
    "Output the thinking process in <think> </think> and final answer in <answer> </answer> tags."
    "Output the one bbox and points of two largest inscribed circles inside the interested object in JSON format."
    "i.e., <think> thinking process here </think>"
    "<answer>{Answer}</answer>"
)

VISIONREASONER_ANSWER_EXAMPLE = (
    '[{"bbox_2d": [10,100,200,210], "point_2d": [30,110]}, '
    '{"bbox_2d": [225,296,706,786], "point_2d": [302,410]}]'
)

VISIONREASONER_TEMPLATE = (
    'Please find "{Question}" with bboxs and points.'
    "Compare the difference between object(s) and find the most closely matched object(s)."
    "Output the thinking process in <think> </think> and final answer in <answer> </answer> tags."
    "Output the bbox(es) and point(s) inside the interested object(s) in JSON format."
    "i.e., <think> thinking process here </think>"
    "<answer>{Answer}</answer>"
)

GROUNDING_TEMPLATE = (
    'Locate every object in the image that matches "{Question}". '
    "Output the thinking process in <think> </think> and final answer in <answer> </answer> tags. "
    "The answer is a JSON list with one entry per object: its bounding box as "
    '"bbox_2d": [x1, y1, x2, y2] and one point inside the object as "point_2d": [x, y], '
    "in absolute pixel coordinates of the image. "
    "i.e., <think> thinking process here </think><answer>{Answer}</answer>"
)

QWEN3VL_ANSWER_EXAMPLE = (
    '[{"bbox_2d": [12, 120, 238, 250], "point_2d": [40, 131], "label": "cup"}, '
    '{"bbox_2d": [267, 352, 840, 935], "point_2d": [360, 488], "label": "bottle"}]'
)

QWEN3VL_TEMPLATE = (
    'Find every object in the image that the request "{Question}" refers to; the request may name the '
    "objects or only describe what they are for. "
    "Answer with a JSON list holding one entry per object: its bounding box as "
    '"bbox_2d": [x1, y1, x2, y2], one point well inside the object as "point_2d": [x, y], and a short '
    '"label". Coordinates are relative, from 0 to 1000 across the width and the height of the image. '
    "Output only the JSON, e.g. {Answer}; output [] when nothing matches."
)

#: ``.strip(".")`` as in training and the inference scripts.
TRAIN_STRIP_CHARS = "."
#: ``.strip(".\"?!")`` as in the VisionReasoner evaluation scripts and ``VisionReasonerModel``.
EVAL_STRIP_CHARS = '."?!'

#: Default upper bound on query length (characters), configurable in the pipeline.
DEFAULT_MAX_QUERY_CHARS = 2000


@dataclass(frozen=True)
class PromptSpec:
    template: str
    answer_example: str
    strip_chars: str


_SPECS: dict[PromptFormat, PromptSpec] = {
    PromptFormat.SEGZERO: PromptSpec(SEGZERO_TEMPLATE, SEGZERO_ANSWER_EXAMPLE, TRAIN_STRIP_CHARS),
    PromptFormat.VISIONREASONER: PromptSpec(
        VISIONREASONER_TEMPLATE, VISIONREASONER_ANSWER_EXAMPLE, TRAIN_STRIP_CHARS
    ),
    PromptFormat.GROUNDING: PromptSpec(GROUNDING_TEMPLATE, VISIONREASONER_ANSWER_EXAMPLE, TRAIN_STRIP_CHARS),
    PromptFormat.QWEN3VL: PromptSpec(QWEN3VL_TEMPLATE, QWEN3VL_ANSWER_EXAMPLE, TRAIN_STRIP_CHARS),
}


def uses_answer_tags(prompt_format: str | PromptFormat) -> bool:
    """Whether the format asks for ``<think>``/``<answer>`` tags (every format but ``qwen3vl``)."""
    return PromptFormat.parse(prompt_format) is not PromptFormat.QWEN3VL


def normalize_question(text: str, strip_chars: str = TRAIN_STRIP_CHARS) -> str:
    """Lower-case and strip ``strip_chars`` from both ends (whitespace is *not* stripped)."""
    return text.lower().strip(strip_chars)


def validate_query(query: object, max_chars: int = DEFAULT_MAX_QUERY_CHARS) -> str:
    """Check a user query; raise :class:`QueryError` with a fix when it is unusable."""
    if not isinstance(query, str):
        raise QueryError(f"the query must be a string, got {type(query).__name__}")
    if not query.strip():
        raise QueryError("the query is empty; describe what to segment, e.g. 'what can I drink?'")
    if len(query) > max_chars:
        raise QueryError(
            f"the query has {len(query)} characters, more than the limit of {max_chars}; "
            f"shorten it to at most {max_chars} characters"
        )
    return query


def build_prompt(
    query: str,
    prompt_format: str | PromptFormat = PromptFormat.VISIONREASONER,
    *,
    strip_chars: str | None = None,
) -> str:
    """Return the exact user-turn text sent after the image.

    Args:
        query: the user's question, raw.
        prompt_format: ``visionreasoner`` (default), ``segzero``, ``grounding`` or ``qwen3vl``.
        strip_chars: characters stripped from both ends of the lower-cased query. ``None`` uses the
            training/inference normalisation ``"."``; pass :data:`EVAL_STRIP_CHARS` to reproduce the
            VisionReasoner evaluation scripts.
    """
    spec = _SPECS[PromptFormat.parse(prompt_format)]
    question = normalize_question(query, spec.strip_chars if strip_chars is None else strip_chars)
    # str.replace, not str.format: the answer examples contain braces. The answer goes in first so
    # that a query containing the text "{Answer}" is left as typed.
    return spec.template.replace("{Answer}", spec.answer_example).replace("{Question}", question)
