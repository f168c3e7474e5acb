"""Test doubles plugged in through the public backend interfaces.

``ScriptedReasoner`` answers from a script (a list of texts, cycled); as a backend class it is
built by ``from_pretrained(folder)`` from ``folder/script.json``, so the CLI and settings can select
it with ``--reasoner-backend scripted:ScriptedReasoner --reasoner <folder>``.
``BoxSegmenter`` fills each prompt's box (or a 3x3 square around a lone point) with a fixed score,
so masks are known exactly. It supports refinement, deterministically: a ``mask_input`` (low-res
logits) is upsampled nearest-neighbour at pixel centres, thresholded at 0 and OR-ed with the box /
point fill; then each negative point clears the 3x3 square around it. ``low_res_logits`` is the
final mask sampled (nearest, at pixel centres) to ``LOW_RES x LOW_RES`` as +10 / -10 logits, so
feeding it back as ``mask_input`` reproduces the mask exactly for images up to 256 pixels a side.
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


#: Side of BoxSegmenter's low-resolution logits and mask_input (SAM2's 256).
LOW_RES = 256


def _centres(n: int, m: int) -> np.ndarray:
    """Indices into an axis of length ``m`` sampled at the centres of ``n`` cells (nearest)."""
    return np.minimum(((np.arange(n) + 0.5) * m / n).astype(np.int64), m - 1)


class BoxSegmenter(Segmenter):
    name = "box"
    supports_refinement = True

    def __init__(self, score: float = 0.75, **_: object) -> None:
        self.score = score
        self.calls: list[tuple[tuple[int, ...], list[ObjectPrompt]]] = []
        self.model_id = "box"

    def segment(self, image: np.ndarray, prompts: Sequence[ObjectPrompt]) -> SegmenterOutput:
        h, w = image.shape[:2]
        self.calls.append((image.shape, list(prompts)))
        masks = np.zeros((len(prompts), h, w), bool)
        rows, cols = _centres(h, LOW_RES), _centres(w, LOW_RES)  # full-res pixel -> low-res cell
        for k, p in enumerate(prompts):
            if p.box is not None:
                x1, y1, x2, y2 = (int(v) for v in p.box)
                masks[k, y1 : y2 + 1, x1 : x2 + 1] = True
            elif p.points:
                x, y = (int(v) for v in p.points[0])
                masks[k, max(0, y - 1) : y + 2, max(0, x - 1) : x + 2] = True
            if p.mask_input is not None:
                logits = np.asarray(p.mask_input)
                if logits.shape != (LOW_RES, LOW_RES):
                    raise ValueError(f"mask_input must be ({LOW_RES}, {LOW_RES}), got {logits.shape}")
                masks[k] |= logits[np.ix_(rows, cols)] > 0
            for x, y in ((int(a), int(b)) for a, b in p.negative_points):
                masks[k, max(0, y - 1) : y + 2, max(0, x - 1) : x + 2] = False
        low = masks[:, _centres(LOW_RES, h)][:, :, _centres(LOW_RES, w)]
        low_res = np.where(low, np.float32(10.0), np.float32(-10.0))
        return SegmenterOutput(masks, np.full(len(prompts), self.score, np.float32), low_res)
