"""An oracle reasoner for evaluation tests: it answers each request with the ground-truth box and a
point of the sample the prompt asks about, in the 840 reasoning frame.

The pipeline builds the prompt from the query, so the oracle reads the question back out of the
VisionReasoner prompt (``Please find "<question>" with bboxs and points. ...``) and looks it up.
Answers are precomputed by :func:`oracle_answers` with the protocol's rounding into the frame,
``int(v * 840 / W + 0.5)``. As a backend class it is built by ``from_pretrained(folder)`` from
``folder/oracle.json``, so the CLI can select it with
``--reasoner-backend eval_oracle:OracleReasoner --reasoner <folder>``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from segzero_tool.frame import ReasoningFrame
from segzero_tool.masks import mask_bbox
from segzero_tool.prompts import EVAL_STRIP_CHARS
from segzero_tool.reasoners.base import Reasoner, ReasonerOutput, ReasonerRequest

GARBAGE = "I looked carefully but I will not answer."


def question_key(query: str) -> str:
    """The question as the evaluation puts it into the VisionReasoner prompt."""
    return query.lower().strip(EVAL_STRIP_CHARS).strip(".")


def question_of(prompt: str) -> str:
    head = 'Please find "'
    if not prompt.startswith(head):
        raise AssertionError(f"not a VisionReasoner prompt: {prompt[:60]!r}")
    return prompt[len(head):].split('" with bboxs and points.', 1)[0]


def inner_point(mask: np.ndarray) -> tuple[int, int]:
    """The mask pixel closest to the mask's centroid (always inside the mask)."""
    ys, xs = np.nonzero(mask)
    cy, cx = ys.mean(), xs.mean()
    k = int(np.argmin((ys - cy) ** 2 + (xs - cx) ** 2))
    return int(xs[k]), int(ys[k])


def frame_answer(mask: np.ndarray, frame_size: int = 840) -> str:
    """``<think>…</think><answer>[{"bbox_2d": …, "point_2d": …}]</answer>`` of a ground truth."""
    h, w = mask.shape
    box = mask_bbox(mask)
    if box is None:
        return "<think>Nothing like that here.</think><answer>[]</answer>"
    frame = ReasoningFrame((w, h), (frame_size, frame_size))
    fb = list(frame.box_to_frame(box))
    fp = list(frame.point_to_frame(inner_point(mask)))
    return f'<think>The oracle knows.</think><answer>[{{"bbox_2d": {fb}, "point_2d": {fp}}}]</answer>'


def oracle_answers(samples: Iterable, *, garbage: Sequence[str] = (), frame_size: int = 840) -> dict[str, str]:
    """question -> answer text for samples with ``query`` and ``mask`` (or ``load_gt_mask()``)."""
    out = {}
    for s in samples:
        mask = s.mask if hasattr(s, "mask") else s.load_gt_mask()
        sid = s.id
        out[question_key(s.query)] = GARBAGE if sid in garbage else frame_answer(np.asarray(mask, bool), frame_size)
    return out


class OracleReasoner(Reasoner):
    """Answers from a question -> answer table; optionally raises once ``fail_after`` requests are done."""

    name = "oracle"

    def __init__(self, answers: dict[str, str], *, fail_after: int | None = None, **_: object) -> None:
        self.answers = dict(answers)
        self.fail_after = fail_after
        self.served = 0
        self.calls: list[int] = []
        self.model_id = "oracle"

    @classmethod
    def from_pretrained(cls, folder: str, **kwargs: object) -> OracleReasoner:
        data = json.loads((Path(folder) / "oracle.json").read_text())
        return cls(data["answers"], fail_after=data.get("fail_after"))

    def generate(self, requests: Sequence[ReasonerRequest]) -> list[ReasonerOutput]:
        self.calls.append(len(requests))
        if self.fail_after is not None and self.served + len(requests) > self.fail_after:
            raise RuntimeError(f"oracle crashed after {self.served} requests (simulated)")
        out = []
        for r in requests:
            assert r.image.size == (840, 840)
            out.append(ReasonerOutput(self.answers.get(question_of(r.prompt), GARBAGE), finish_reason="stop"))
            self.served += 1
        return out


def write_oracle_folder(folder: Path, answers: dict[str, str], fail_after: int | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "oracle.json").write_text(json.dumps({"answers": answers, "fail_after": fail_after}))
    return folder
