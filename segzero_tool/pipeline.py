"""The pipeline: image + query -> reasoner -> parsed prompts -> segmenter -> one result.

>>> pipe = SegZeroPipeline.from_pretrained()                     # VisionReasoner-7B + SAM 2.1 large
>>> result = pipe.segment("photo.jpg", "What can I have if I'm thirsty?")
>>> result.save("results/")

:class:`SegZeroPipeline` runs the stages; loading the models (:mod:`segzero_tool.loading`) and projecting
answers into segmenter prompts (:mod:`segzero_tool.projection`) live in their own modules.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from .cancel import check_cancelled
from .frame import (
    DEFAULT_FRAME_SIZE,
    ROUNDINGS,
    CoordinateSystem,
    Rounding,
    check_coords,
    coords_for_format,
)
from .image_cache import DEFAULT_IMAGE_CACHE_BYTES, DecodedImageCache, check_cache_bytes
from .images import DEFAULT_MAX_PIXELS, ImageInput, LoadedImage
from .loading import backend_label as backend_label
from .loading import load_models, load_verifier, resolve_verifier
from .parsing import FrameObject
from .pipeline_stages import PipelineStages, _Job, _ms
from .pipeline_steer import SteeringMethods
from .projection import project_objects
from .prompts import DEFAULT_MAX_QUERY_CHARS, PromptFormat
from .reasoners.base import DEFAULT_MAX_NEW_TOKENS, Reasoner
from .reference_parse import COMPAT_MODES, Compat, check_compat
from .result import SegmentationResult
from .segmenters.base import Segmenter, image_key
from .verify import DEFAULT_VERIFY_ROUNDS, MAX_VERIFY_ROUNDS, RETRY_QUERY, check_verify_rounds, retry_query

logger = logging.getLogger(__name__)

#: Default cap on objects per answer (the reference reward truncates at 120).
DEFAULT_MAX_OBJECTS = 50
class SegZeroPipeline(SteeringMethods, PipelineStages):
    """Composes a :class:`Reasoner` and a :class:`Segmenter`.

    Args:
        reasoner: any reasoner backend, or ``None`` for a pipeline that only segments from the caller's
            prompts (:meth:`segment_by_prompts`, :meth:`refine_object`, :meth:`select_objects`;
            :meth:`segment` then raises :class:`~segzero_tool.errors.NoReasonerError`).
        segmenter: any segmenter backend, or ``None`` to return boxes and points without masks.
        prompt_format: answer grammar of the reasoner (``visionreasoner``, ``segzero``, ``grounding``).
        frame_size: side of the square reasoning frame (840 for the released checkpoints); for
            ``relative1000`` coordinates the pixel budget (``frame_size**2``) of the aspect-preserving
            frame (:func:`~segzero_tool.frame.aspect_frame_size`).
        rounding: back-projection rounding (``half_up``: VisionReasoner; ``segzero``: Seg-Zero scripts);
            ``None`` (default) follows the prompt format of each call (:func:`~segzero_tool.frame.rounding_for_format`).
        coords: how the reasoner writes coordinates: ``frame`` (reasoning-frame pixels) or ``relative1000``
            (Qwen3-VL's 0-1000 grid); ``None`` (default) follows the prompt format of each call
            (:func:`~segzero_tool.frame.coords_for_format`). It also picks the image the reasoner sees (the
            square frame, or an aspect-preserving one).
        compat: ``repair`` (default: the lenient parser; points outside their box dropped; coordinates
            clamped) or ``reference`` (only what the reference scripts read, passed to SAM2 as they
            pass it; see :func:`project_objects` and :mod:`segzero_tool.reference_parse`).
        max_new_tokens: generation budget per query.
        max_objects: keep at most this many objects per answer (extra ones are reported in the issues).
        max_pixels: refuse larger images (decompression-bomb guard).
        max_query_chars: refuse longer queries.
        verifier: the self-check loop's verifier (``segment(..., verify=True)``): any reasoner; ``None``
            (default) uses the pipeline's own reasoner.
        image_cache_bytes: budget of :attr:`image_cache`, the decoded images kept by file content
            (:class:`~segzero_tool.image_cache.DecodedImageCache`, 128 MB by default; ``0`` disables it): a
            path or bytes given again (to :meth:`segment_by_prompts`, :meth:`segment`, ...) is not decoded,
            nor hashed for the segmenter's embedding cache, again.
    """

    def __init__(
        self,
        reasoner: Reasoner | None,
        segmenter: Segmenter | None,
        *,
        prompt_format: str | PromptFormat = PromptFormat.VISIONREASONER,
        frame_size: int = DEFAULT_FRAME_SIZE,
        rounding: Rounding | None = None,
        coords: CoordinateSystem | None = None,
        compat: Compat = "repair",
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        max_objects: int = DEFAULT_MAX_OBJECTS,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        max_query_chars: int = DEFAULT_MAX_QUERY_CHARS,
        verifier: Reasoner | None = None,
        image_cache_bytes: int = DEFAULT_IMAGE_CACHE_BYTES,
    ) -> None:
        check_cache_bytes(image_cache_bytes)
        if frame_size <= 0:
            raise ValueError(f"frame_size must be positive, got {frame_size}")
        if max_objects <= 0:
            raise ValueError(f"max_objects must be positive, got {max_objects}")
        if max_new_tokens <= 0:
            raise ValueError(f"max_new_tokens must be positive, got {max_new_tokens}")
        if rounding is not None and rounding not in ROUNDINGS:
            raise ValueError(f"rounding must be one of {', '.join(ROUNDINGS)} or None, got {rounding!r}")
        self.compat: Compat = check_compat(compat)
        self.reasoner = reasoner
        self.segmenter = segmenter
        self.prompt_format = PromptFormat.parse(prompt_format)
        self.frame_size = int(frame_size)
        self.rounding: Rounding | None = rounding
        self.coords: CoordinateSystem | None = None if coords is None else check_coords(coords)
        self.max_new_tokens = int(max_new_tokens)
        self.max_objects = int(max_objects)
        self.max_pixels = max_pixels
        self.max_query_chars = int(max_query_chars)
        self.verifier = verifier
        #: Decoded images by file content, shared by every image this pipeline loads (see ``image_cache_bytes``).
        self.image_cache = DecodedImageCache(image_cache_bytes)
        self._segment_lock = threading.Lock()

    # --- construction ----------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        reasoner: str | Reasoner | None = None,
        segmenter: str | Segmenter | None = None,
        *,
        preset: str | None = None,
        reasoner_backend: str = "transformers",
        segmenter_backend: str = "transformers",
        device: str | None = "auto",
        dtype: Any = "auto",
        reasoner_device: str | None = None,
        segmenter_device: str | None = None,
        reasoner_kwargs: dict[str, Any] | None = None,
        segmenter_kwargs: dict[str, Any] | None = None,
        prompt_format: str | PromptFormat | None = None,
        with_segmenter: bool = True,
        verifier: str | Reasoner | None = None,
        verifier_backend: str | None = None,
        verifier_kwargs: dict[str, Any] | None = None,
        **pipeline_kwargs: Any,
    ) -> SegZeroPipeline:
        """Load a reasoner and a segmenter by registry name, hub id or local folder.

        Args:
            reasoner: registry name (``visionreasoner-7b``), hub id, local folder, or a ready
                :class:`Reasoner`; ``"none"`` loads no reasoner (only the segmenter: see
                :meth:`segment_by_prompts`). Default: the preset's.
            segmenter: likewise (``sam2.1-hiera-large``), or a ready :class:`Segmenter`.
            preset: ``default`` (VisionReasoner-7B + SAM 2.1 large), ``light``
                (Qwen3-VL-2B-Instruct + SAM 2.1 tiny) or ``paper`` (VisionReasoner-7B + SAM 2 large).
            reasoner_backend / segmenter_backend: backend short name or ``package.module:Class``.
            device / dtype: for both models (``auto``: CUDA + bf16 when present, else CPU + fp32);
                ``reasoner_device`` / ``segmenter_device`` override per model.
            prompt_format: override the registry's format for the reasoner (required knowledge for
                unregistered folders of non-VisionReasoner models).
            with_segmenter: ``False`` loads no segmenter (boxes and points only).
            verifier: the self-check loop's verifier (``segment(..., verify=True)``): a ready
                :class:`Reasoner`, or a registry name, hub id or local folder loaded here like the
                reasoner (after it, on the reasoner's device and dtype) with ``verifier_backend``
                (default ``transformers``; ``openai`` for a larger VLM on a vLLM / OpenAI-compatible
                server, ``vllm``, ``package.module:Class``) and ``verifier_kwargs`` (that backend's
                arguments, e.g. ``{"base_url": "http://gpu:8000/v1", "model_name": "Qwen/Qwen2.5-VL-72B-Instruct"}``;
                ``openai`` / ``vllm`` verifiers get ``structured_outputs="off"`` unless given: the
                reasoner's forced answer shape is not the verifier's). Default ``None``: the reasoner.
            verifier_backend / verifier_kwargs: for a verifier given by name only.
            **pipeline_kwargs: forwarded to the constructor (``frame_size``, ``coords``, ``max_objects``,
                ``image_cache_bytes``, ...).

        Raises:
            TypeError: ``verifier`` is neither a string, a :class:`Reasoner` nor ``None``.
            SettingsError: ``verifier_backend`` / ``verifier_kwargs`` without a verifier name, or
                ``verifier="none"``.
        """
        from .settings import SettingsError

        if verifier is not None and not isinstance(verifier, (str, Reasoner)):
            raise TypeError(f"verifier must be a Reasoner instance, a registry name, hub id or folder (or None: "
                            f"the pipeline's reasoner), got {type(verifier).__name__}")
        if not isinstance(verifier, str) and (verifier_backend is not None or verifier_kwargs):
            raise SettingsError("verifier_backend and verifier_kwargs apply to a verifier given by name, hub id or "
                                "folder, not to " + ("a ready Reasoner" if verifier is not None else "no verifier"))
        if isinstance(verifier, str) and (not verifier.strip() or verifier.strip().lower() == "none"):
            raise SettingsError(f"verifier {verifier!r} is not a model; omit it to use the reasoner")
        # Resolve the verifier's name and backend before any model loads: a typo fails at once.
        verifier_spec = resolve_verifier(verifier, verifier_backend) if isinstance(verifier, str) else None
        if "image_cache_bytes" in pipeline_kwargs:  # checked before any model loads
            check_cache_bytes(pipeline_kwargs["image_cache_bytes"])
        budget = pipeline_kwargs.pop("max_new_tokens", None)
        rounding = pipeline_kwargs.pop("rounding", None)
        coords = pipeline_kwargs.pop("coords", None)
        if coords is None and prompt_format is None:
            coords = _entry_coords(reasoner, preset)
        reasoner_obj, segmenter_obj, fmt, budget = load_models(
            reasoner, segmenter, preset=preset, reasoner_backend=reasoner_backend,
            segmenter_backend=segmenter_backend, device=device, dtype=dtype, reasoner_device=reasoner_device,
            segmenter_device=segmenter_device, reasoner_kwargs=reasoner_kwargs,
            segmenter_kwargs=segmenter_kwargs, prompt_format=prompt_format, max_new_tokens=budget,
            with_segmenter=with_segmenter,
        )
        if isinstance(verifier, str):
            verifier = load_verifier(verifier, backend=verifier_backend, device=reasoner_device or device,
                                     dtype=dtype, kwargs=verifier_kwargs, resolved=verifier_spec)
        return cls(
            reasoner_obj,
            segmenter_obj,
            prompt_format=fmt or PromptFormat.VISIONREASONER,
            max_new_tokens=budget or DEFAULT_MAX_NEW_TOKENS,
            rounding=rounding,
            coords=coords,
            verifier=verifier,
            **pipeline_kwargs,
        )

    # --- stages ----------------------------------------------------------------------------

    # --- public API ------------------------------------------------------------------------

    def segment(
        self,
        image: ImageInput | LoadedImage,
        query: str,
        *,
        prompt_format: str | PromptFormat | None = None,
        max_objects: int | None = None,
        max_new_tokens: int | None = None,
        compute_masks: bool = True,
        compat: Compat | None = None,
        verify: bool = False,
        verify_rounds: int = DEFAULT_VERIFY_ROUNDS,
    ) -> SegmentationResult:
        """Segment what ``query`` asks for in ``image``.

        Args:
            image: path, bytes, PIL image or ``(H, W[, C])`` array.
            query: natural-language request ("what can I drink here?").
            prompt_format: override the pipeline's format for this call.
            max_objects: override the object cap for this call.
            max_new_tokens: override the generation budget for this call.
            compute_masks: ``False`` skips SAM2 (boxes and points only).
            compat: override the pipeline's ``reference`` / ``repair`` mode for this call.
            verify: run the self-check loop (:func:`segzero_tool.verify.run_verification`) when objects
                came back: :attr:`verifier` (default the reasoner) sees the inspection picture and the
                query and keeps, drops or asks for a retry; a retry segments the same loaded image again
                (the segmenter's cached embedding) with :func:`retry_query` (``"<query> (hint: <hint>)"``)
                and no verification of its own. The result keeps the user's ``query``; ``timings["verify"]``
                is the loop's time, added into ``timings["total"]``; ``result.verification`` records it.
            verify_rounds: at most this many verifier calls (1 to :data:`MAX_VERIFY_ROUNDS`; 2: one retry).

        Raises:
            ImageLoadError, ImageTooLargeError, QueryError: bad input (nothing is run).
        """
        return self.segment_many([(image, query)], prompt_format=prompt_format, max_objects=max_objects,
                                 max_new_tokens=max_new_tokens, compute_masks=compute_masks, progress=False,
                                 compat=compat, verify=verify, verify_rounds=verify_rounds)[0]

    async def asegment(
        self,
        image: ImageInput | LoadedImage,
        query: str,
        **kwargs: Any,
    ) -> SegmentationResult:
        """Async :meth:`segment`: the reasoner's ``agenerate`` and the segmenter in a worker thread
        (``verify=True``: the self-check loop in a worker thread too)."""
        t_total = time.perf_counter()
        reasoner = self._require_reasoner()
        verify = bool(kwargs.pop("verify", False))
        verify_rounds = check_verify_rounds(kwargs.pop("verify_rounds", DEFAULT_VERIFY_ROUNDS))
        compute_masks = kwargs.pop("compute_masks", True)
        max_objects = kwargs.pop("max_objects", None)
        max_new_tokens = kwargs.pop("max_new_tokens", None)
        job = await asyncio.to_thread(self._prepare, image, query, kwargs.pop("prompt_format", None),
                                      kwargs.pop("compat", None))
        if kwargs:
            raise TypeError(f"unexpected arguments: {', '.join(kwargs)}")
        timings: dict[str, float] = {"load": job.load_ms}
        request = await asyncio.to_thread(self._request, job, timings, max_new_tokens)
        t0 = time.perf_counter()
        check_cancelled()
        output = (await reasoner.agenerate([request]))[0]
        timings["reason"] = _ms(t0)
        check_cancelled()
        parsed, objects, issues = self._parse(job, output, timings, max_objects)
        if compute_masks:
            timings["segment"] = await asyncio.to_thread(self._run_segmenter, job.image.array, objects)
        timings["total"] = _ms(t_total)
        result = self._finish(job, output, parsed, objects, issues, timings)
        if verify and result.objects:
            check_cancelled()
            result = await asyncio.to_thread(self._verify, job, result, verify_rounds, max_objects, max_new_tokens,
                                             compute_masks)
        return result

    def segment_many(
        self,
        items: Sequence[tuple[ImageInput | LoadedImage, str]],
        *,
        prompt_format: str | PromptFormat | None = None,
        max_objects: int | None = None,
        max_new_tokens: int | None = None,
        compute_masks: bool = True,
        progress: bool = True,
        compat: Compat | None = None,
        verify: bool = False,
        verify_rounds: int = DEFAULT_VERIFY_ROUNDS,
    ) -> list[SegmentationResult]:
        """Segment many ``(image, query)`` pairs.

        All inputs are validated first (a bad one raises before any model runs), the reasoner gets
        every request in one call (backends batch them), and the segmenter work is grouped by image
        content so that several queries about one image share one embedding and one decoder batch.
        ``verify`` / ``verify_rounds``: the self-check loop on each result with objects, as in :meth:`segment`.
        """
        t_total = time.perf_counter()
        reasoner = self._require_reasoner()
        verify_rounds = check_verify_rounds(verify_rounds)
        jobs = [self._prepare(img, q, prompt_format, compat) for img, q in items]
        timings = [{"load": j.load_ms} for j in jobs]
        requests = [self._request(j, t, max_new_tokens) for j, t in zip(jobs, timings, strict=True)]
        if not requests:
            return []
        check_cancelled()
        t0 = time.perf_counter()
        # No lock here: backends that cannot run concurrently serialise themselves (the transformers
        # reasoner holds a per-model lock), while remote backends serve many calls at once.
        outputs = reasoner.generate(requests)
        check_cancelled()
        if len(outputs) != len(requests):
            raise RuntimeError(
                f"reasoner {type(reasoner).__name__} returned {len(outputs)} outputs for {len(requests)} requests"
            )
        reason_ms = _ms(t0)
        for t in timings:
            t["reason"] = reason_ms / len(requests)
        parsed_all = [self._parse(j, o, t, max_objects) for j, o, t in zip(jobs, outputs, timings, strict=True)]
        if compute_masks and self.segmenter is not None:
            groups: dict[str, list[int]] = {}
            for i, job in enumerate(jobs):
                groups.setdefault(image_key(job.image.array), []).append(i)
            iterator = groups.values()
            if progress and len(groups) > 1:
                from tqdm.auto import tqdm

                iterator = tqdm(iterator, total=len(groups), desc="segmenting", unit="image")
            for idxs in iterator:
                check_cancelled()
                merged = [obj for i in idxs for obj in parsed_all[i][1]]
                elapsed = self._run_segmenter(jobs[idxs[0]].image.array, merged)
                for i in idxs:
                    timings[i]["segment"] = elapsed / len(idxs)
        results = []
        for job, output, (parsed, objects, issues), t in zip(jobs, outputs, parsed_all, timings, strict=True):
            t["total"] = _ms(t_total) if len(jobs) == 1 else sum(t.values())
            results.append(self._finish(job, output, parsed, objects, issues, t))
        if verify:
            for k, (job, result) in enumerate(zip(jobs, results, strict=True)):
                if result.objects:
                    check_cancelled()
                    results[k] = self._verify(job, result, verify_rounds, max_objects, max_new_tokens, compute_masks)
        return results

    def _verify(self, job: _Job, result: SegmentationResult, rounds: int, max_objects: int | None,
                max_new_tokens: int | None, compute_masks: bool) -> SegmentationResult:
        """The self-check loop on ``result`` (see :meth:`segment`'s ``verify``)."""
        from .verify import run_verification

        verifier = self.verifier if self.verifier is not None else self._require_reasoner()

        def rerun(hint: str) -> SegmentationResult:
            again = self.segment_many(
                [(job.image, retry_query(job.query, hint, self.max_query_chars))], prompt_format=job.prompt_format,
                max_objects=max_objects, max_new_tokens=max_new_tokens, compute_masks=compute_masks, progress=False,
                compat=job.compat, verify=False)[0]
            return dataclasses.replace(again, query=job.query)

        before = float(result.timings.get("total", 0.0))
        out = run_verification(result, verifier=verifier, query=job.query, max_rounds=rounds, rerun=rerun)
        verify_ms = float(out.timings.get("verify", 0.0))
        out.timings = {**out.timings, "total": before + verify_ms}
        return out

    def add_masks(self, result: SegmentationResult) -> SegmentationResult:
        """Run the segmenter for a result made with ``compute_masks=False`` (in place; returns it).

        Lets callers report "reasoning" and "segmenting" as separate stages, or decide after seeing
        the boxes whether masks are worth computing.

        Raises:
            ValueError: the result carries no image (e.g. one rebuilt with ``from_dict``) or the
                pipeline has no segmenter.
        """
        if self.segmenter is None:
            raise ValueError("this pipeline has no segmenter; load one to compute masks")
        if result.image is None:
            raise ValueError("the result carries no image; segment the image again instead")
        check_cancelled()
        elapsed = self._run_segmenter(result.image, result.objects)
        result.timings["segment"] = elapsed
        result.timings["total"] = result.timings.get("total", 0.0) + elapsed
        if result.segmenter is None:
            result.segmenter = getattr(self.segmenter, "model_id", None) or type(self.segmenter).__name__
        return result

    def track(self, video: Any, query: str, **kwargs: Any) -> Any:
        """Find what ``query`` asks for on key frames of ``video`` and track every object through it: see
        :func:`segzero_tool.video.track.track_video` (``out``, ``key_frames``, ``tracker``, ...). Returns a
        :class:`~segzero_tool.video.result.VideoResult`."""
        from .video.track import track_video

        return track_video(self, video, query, **kwargs)

    def close(self) -> None:
        self.image_cache.clear()
        if self.reasoner is not None:
            self.reasoner.close()
        if self.segmenter is not None:
            self.segmenter.close()

    def __enter__(self) -> SegZeroPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _entry_coords(reasoner: Any, preset: str | None) -> CoordinateSystem | None:
    """The ``coords`` of a registered reasoner named by ``reasoner`` (or the preset's) when it differs from its
    prompt format's (``None`` otherwise: the pipeline then follows the format of each call)."""
    from .registry import MODELS, get_preset

    name = reasoner if reasoner is not None else get_preset(preset or "default").reasoner
    entry = MODELS.get(name.strip().lower()) if isinstance(name, str) else None
    if entry is None or entry.kind != "reasoner" or entry.coords == coords_for_format(entry.prompt_format):
        return None
    return entry.coords


__all__ = ["COMPAT_MODES", "DEFAULT_MAX_OBJECTS", "DEFAULT_VERIFY_ROUNDS", "MAX_VERIFY_ROUNDS", "RETRY_QUERY",
           "FrameObject", "SegZeroPipeline", "check_verify_rounds", "project_objects", "retry_query"]
