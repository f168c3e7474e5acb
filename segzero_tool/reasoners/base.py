"""The reasoner interface: (reasoning-frame image, prompt text) -> raw model text.

A reasoner knows nothing of prompt formats, coordinates or SAM: the pipeline builds the prompt
(:mod:`segzero_tool.prompts`), resizes the image into the reasoning frame
(:mod:`segzero_tool.frame`) and parses the text (:mod:`segzero_tool.parsing`). That keeps every
backend (transformers, an OpenAI-compatible server, vLLM, your own) a thin translation layer.

Custom backends subclass :class:`Reasoner` and are selected with an import path such as
``"my_pkg.my_module:MyReasoner"`` (see :func:`segzero_tool.backends.resolve_reasoner`).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

#: Generation budgets of the reference scripts (VisionReasoner model class: 2048, Seg-Zero scripts: 1024).
DEFAULT_MAX_NEW_TOKENS = 2048


@dataclass(frozen=True)
class ReasonerRequest:
    """One generation request.

    Attributes:
        image: RGB image already resized into the reasoning frame (e.g. 840x840).
        prompt: the full user-turn text that follows the image (see :func:`prompts.build_prompt`).
        max_new_tokens: token budget for this request.
        structured: whether the answer is a segmentation answer (``<think>…</think><answer>[…]</answer>``),
            which backends with structured outputs (vLLM's regex / grammar) may force; ``False`` for
            free-form answers such as the self-check loop's verdict, which are never constrained.
    """

    image: Image.Image
    prompt: str
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    structured: bool = True


@dataclass
class ReasonerOutput:
    """Raw text of one generation plus optional accounting."""

    text: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None  # "stop", "length" (budget hit: output may be truncated), ...
    extra: dict[str, Any] = field(default_factory=dict)


class Reasoner(ABC):
    """Base class of reasoner backends.

    Subclasses implement :meth:`generate`; :meth:`agenerate` defaults to running it in a worker
    thread so that the event loop never blocks. Backends that batch should honour the whole
    ``requests`` list in one call (the pipeline's ``segment_many`` hands them everything at once).
    """

    #: Short backend name (``"transformers"``, ``"openai"``, ...), used in results and logs.
    name: str = "custom"
    #: Identifier of the loaded model (hub id or folder), used in results and logs.
    model_id: str | None = None

    @abstractmethod
    def generate(self, requests: Sequence[ReasonerRequest]) -> list[ReasonerOutput]:
        """Generate one output per request, in order. Greedy decoding unless configured otherwise."""

    async def agenerate(self, requests: Sequence[ReasonerRequest]) -> list[ReasonerOutput]:
        return await asyncio.to_thread(self.generate, list(requests))

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (GPU memory, HTTP sessions). Optional."""

    def __enter__(self) -> Reasoner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
