"""Test doubles plugged in through the public backend interfaces.

``ScriptedReasoner`` answers from a script (a list of texts, cycled); as a backend class it is
built by ``from_pretrained(folder)`` from ``folder/script.json``, so the CLI and settings can select
it with ``--reasoner-backend scripted:ScriptedReasoner --reasoner <folder>``.
``BoxSegmenter`` fills each prompt's box (or a 3x3 square around a lone point) with a fixed score,
so masks are known exactly.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from segzero_tool.reasoners.base import Reasoner, ReasonerOutput, ReasonerRequest
from segzero_tool.segmenters.base import ObjectPrompt, Segmenter, SegmenterOutput


class ScriptedReasoner(Reasoner):
    name = "scripted"

    def __init__(self, answers: Sequence[str] | str, **_: object) -> None:
        self.answers = [answers] if isinstance(answers, str) else list(answers)
        self.calls: list[list[ReasonerRequest]] = []
        self._i = 0
        self.model_id = "scripted"

    @classmethod
    def from_pretrained(cls, folder: str, **kwargs: object) -> ScriptedReasoner:
        return cls(json.loads((Path(folder) / "script.json").read_text()), **kwargs)

    def generate(self, requests: Sequence[ReasonerRequest]) -> list[ReasonerOutput]:
        self.calls.append(list(requests))
        out = []
        for _ in requests:
            out.append(ReasonerOutput(self.answers[self._i % len(self.answers)], finish_reason="stop"))
            self._i += 1
        return out


class BoxSegmenter(Segmenter):
    name = "box"

    def __init__(self, score: float = 0.75, **_: object) -> None:
        self.score = score
        self.calls: list[tuple[tuple[int, ...], list[ObjectPrompt]]] = []
        self.model_id = "box"

    def segment(self, image: np.ndarray, prompts: Sequence[ObjectPrompt]) -> SegmenterOutput:
        h, w = image.shape[:2]
        self.calls.append((image.shape, list(prompts)))
        masks = np.zeros((len(prompts), h, w), bool)
        for k, p in enumerate(prompts):
            if p.box is not None:
                x1, y1, x2, y2 = (int(v) for v in p.box)
                masks[k, y1 : y2 + 1, x1 : x2 + 1] = True
            else:
                x, y = (int(v) for v in p.points[0])
                masks[k, max(0, y - 1) : y + 2, max(0, x - 1) : x + 2] = True
        return SegmenterOutput(masks, np.full(len(prompts), self.score, np.float32))
