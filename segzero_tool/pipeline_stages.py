"""The stages of one :class:`~segzero_tool.pipeline.SegZeroPipeline` request, mixed into the pipeline: prepare
(image, format, frame), the reasoner request, parsing and projection, the segmenter call, and the result."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .errors import NoReasonerError
from .frame import CoordinateSystem, ReasoningFrame, Rounding, coords_for_format, rounding_for_format
from .images import ImageInput, LoadedImage, load_image
from .parsing import ParsedOutput, ParseStatus, parse_output
from .projection import project_objects
from .prompts import PromptFormat, build_prompt, uses_answer_tags, validate_query
from .reasoners.base import Reasoner, ReasonerOutput, ReasonerRequest
from .reference_parse import Compat, _reference_reading, check_compat
from .result import SegmentationResult, SegmentedObject
from .segmenters.base import ObjectPrompt, Segmenter

if TYPE_CHECKING:
    from .image_cache import DecodedImageCache


@dataclass(frozen=True)
class _Job:
    image: LoadedImage
    query: str
    prompt_format: PromptFormat
    frame: ReasoningFrame
    load_ms: float
    compat: Compat = "repair"


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0



class PipelineStages:
    """Mixed into :class:`~segzero_tool.pipeline.SegZeroPipeline`, which sets these attributes."""

    reasoner: Reasoner | None
    segmenter: Segmenter | None
    prompt_format: PromptFormat
    frame_size: int
    rounding: Rounding | None
    coords: CoordinateSystem | None
    compat: Compat
    max_new_tokens: int
    max_objects: int
    max_pixels: int | None
    max_query_chars: int
    image_cache: DecodedImageCache
    _segment_lock: threading.Lock

    def effective_rounding(self, prompt_format: str | PromptFormat | None = None) -> Rounding:
        """The rounding used for ``prompt_format`` (default: the pipeline's): the ``rounding`` given to
        the constructor, else the format's (``segzero`` for the Seg-Zero format, else ``half_up``)."""
        if self.rounding is not None:
            return self.rounding
        return rounding_for_format(PromptFormat.parse(prompt_format) if prompt_format is not None
                                   else self.prompt_format)

    def effective_coords(self, prompt_format: str | PromptFormat | None = None) -> CoordinateSystem:
        """The coordinate convention used for ``prompt_format`` (default: the pipeline's): the ``coords``
        given to the constructor, else the format's (``relative1000`` for ``qwen3vl``, else ``frame``)."""
        if self.coords is not None:
            return self.coords
        return coords_for_format(PromptFormat.parse(prompt_format) if prompt_format is not None
                                 else self.prompt_format)

    def _require_reasoner(self) -> Reasoner:
        if self.reasoner is None:
            raise NoReasonerError(
                "this pipeline has no reasoner (it was loaded with reasoner 'none'), so it cannot segment by "
                "reasoning; send boxes or points with segment_by_prompts(image, [{\"box\": [x1, y1, x2, y2]}]) "
                "instead, or load a reasoner (from_pretrained(reasoner=...))")
        return self.reasoner

    def _prepare(self, image: ImageInput | LoadedImage, query: str, prompt_format: str | PromptFormat | None,
                 compat: Compat | None = None) -> _Job:
        validate_query(query, self.max_query_chars)
        mode = self.compat if compat is None else check_compat(compat)
        t0 = time.perf_counter()
        loaded = load_image(image, max_pixels=self.max_pixels, cache=self.image_cache)
        fmt = PromptFormat.parse(prompt_format) if prompt_format is not None else self.prompt_format
        frame = ReasoningFrame.for_image(loaded.size, self.frame_size, rounding=self.effective_rounding(fmt),
                                         coords=self.effective_coords(fmt))
        return _Job(loaded, query, fmt, frame, _ms(t0), mode)

    def _request(self, job: _Job, timings: dict[str, float], max_new_tokens: int | None) -> ReasonerRequest:
        t0 = time.perf_counter()
        frame_img = job.frame.resize_image(job.image.to_pil())
        timings["resize"] = _ms(t0)
        return ReasonerRequest(frame_img, build_prompt(job.query, job.prompt_format),
                               max_new_tokens or self.max_new_tokens)

    def _parse(self, job: _Job, output: ReasonerOutput, timings: dict[str, float],
               max_objects: int | None) -> tuple[ParsedOutput, list[SegmentedObject], list[str]]:
        t0 = time.perf_counter()
        cap = max_objects or self.max_objects
        tags = uses_answer_tags(job.prompt_format)
        # qwen3vl has no reference scripts (and no <answer> tags): reference mode reads it leniently too
        if job.compat == "reference" and tags:
            parsed = parse_output(output.text)
            parsed, notes = _reference_reading(parsed, output.text, job.prompt_format, job.frame, cap)
        else:
            parsed = parse_output(output.text, max_objects=cap, answer_tags=tags)
            notes = []
        objects, issues = project_objects(parsed, job.frame, compat=job.compat)
        timings["parse"] = _ms(t0)
        return parsed, objects, [*notes, *parsed.issues, *issues]

    def _run_segmenter(self, image: np.ndarray, objects: list[SegmentedObject]) -> float:
        """Fill masks and scores in place; return the elapsed ms."""
        if self.segmenter is None or not objects:
            return 0.0
        t0 = time.perf_counter()
        prompts = [ObjectPrompt(*o.segmenter_prompt) for o in objects]
        with self._segment_lock:
            out = self.segmenter.segment(image, prompts)
        h, w = image.shape[:2]
        if out.masks.shape != (len(objects), h, w):
            raise RuntimeError(
                f"segmenter {type(self.segmenter).__name__} returned masks of shape {out.masks.shape}, "
                f"expected {(len(objects), h, w)}"
            )
        logits = getattr(out, "low_res_logits", None)  # kept for refine_object's mask_input
        for k, (obj, mask, score) in enumerate(zip(objects, out.masks, out.scores, strict=True)):
            obj.mask = mask.astype(bool, copy=False)
            obj.score = float(score)
            obj.low_res_logits = None if logits is None else np.array(logits[k], dtype=np.float32)
        return _ms(t0)

    def _finish(self, job: _Job, output: ReasonerOutput, parsed: ParsedOutput, objects: list[SegmentedObject],
                issues: list[str], timings: dict[str, float]) -> SegmentationResult:
        truncated = parsed.truncated or output.finish_reason == "length"
        if output.finish_reason == "length" and not parsed.truncated:
            issues.append("the reasoner hit its token budget (max_new_tokens)")
        status = parsed.status
        if status is ParseStatus.OK and not objects:
            status = ParseStatus.INVALID_OBJECTS
        return SegmentationResult(
            query=job.query,
            prompt_format=job.prompt_format.value,
            reasoning=parsed.think,
            raw_output=output.text,
            parse_status=status,
            image_size=job.image.size,
            objects=objects,
            parse_issues=tuple(dict.fromkeys(issues)),
            timings=timings,
            frame_size=job.frame.frame_wh,
            reasoner=getattr(self.reasoner, "model_id", None) or type(self.reasoner).__name__,
            segmenter=(getattr(self.segmenter, "model_id", None) or type(self.segmenter).__name__)
            if self.segmenter is not None else None,
            truncated=truncated,
            image=job.image.array,
            compat=job.compat,
        )
