"""SAM2 through Meta's ``sam2`` package (``SAM2ImagePredictor``), as the Seg-Zero reference runs it.

Protocol: ``set_image(original_image)`` once per image, then one ``predict`` per object with
``point_coords`` = its positive points, ``point_labels`` = ones, ``box`` = its xyxy box (original
pixels, ``normalize_coords=True``), ``multimask_output=True``; the candidate with the highest
predicted IoU is kept. On CUDA the calls run under ``torch.autocast(bfloat16)`` like the Seg-Zero
scripts.

Refinement (``supports_refinement = True``): negative points are appended to ``point_coords`` with
label 0 (after the positives, label 1); ``ObjectPrompt.mask_input`` (the previous ``(256, 256)``
low-resolution logits) is passed as ``mask_input=logits[None]`` and, as in Meta's interactive
refinement notebook, with ``multimask_output=False`` (the single returned mask is kept); objects
without ``mask_input`` keep ``multimask_output=True`` and the best-IoU candidate. The third value
``predict`` returns (the low-resolution logits) of the kept candidate is
``SegmenterOutput.low_res_logits`` (``None`` when the predictor does not return them; objects with an
empty prompt get a constant background map).

Embedding reuse: the predictor holds one image at a time. This backend remembers which image (by
content hash) is set and keeps an LRU of the predictor's per-image state (``_features``,
``_orig_hw``; private attributes of ``SAM2ImagePredictor``), so returning to a recent image skips
the image encoder. With ``cache_size=0`` only the currently set image is reused. If a predictor
lacks those attributes, only the current image is reused.

``sam2`` is an optional dependency (``pip install "segzero-tool[sam2]"``) imported lazily.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..devices import resolve_device, resolve_dtype
from ..errors import MissingDependencyError, ModelLoadError
from ..hub import check_hub_access, progress_bars
from .base import ObjectPrompt, Segmenter, SegmenterOutput, check_mask_input, image_key
from .cache import EmbeddingCache
from .transformers_sam2 import (
    DEFAULT_MODEL_ID,
    LABEL_NEGATIVE,
    LABEL_POSITIVE,
    NO_MASK_LOGIT,
    check_image,
    empty_output,
    prompt_tokens,
)

logger = logging.getLogger(__name__)

MISSING_SAM2_MESSAGE = 'Meta\'s sam2 package is not installed: pip install "segzero-tool[sam2]" (see README)'

_STATE_ATTRS = ("_features", "_orig_hw", "_is_image_set")


def import_sam2() -> Any:
    """Import and return the ``sam2.build_sam`` module (which also registers sam2's hydra configs).

    Raises:
        MissingDependencyError: ``sam2`` (or one of its own dependencies) cannot be imported.
    """
    try:
        import sam2.build_sam as build_sam
    except ImportError as exc:
        missing = getattr(exc, "name", None)
        if missing is None or missing == "sam2" or missing.startswith("sam2."):
            raise MissingDependencyError(MISSING_SAM2_MESSAGE) from exc
        raise MissingDependencyError(f"{MISSING_SAM2_MESSAGE}; importing it failed: {exc}") from exc
    return build_sam


@dataclass(frozen=True)
class _PredictorState:
    """A ``SAM2ImagePredictor``'s per-image state after ``set_image``."""

    features: Any
    orig_hw: list[tuple[int, int]]


def _config_for_checkpoint(build_sam: Any, checkpoint: Path) -> str | None:
    """Look a checkpoint file name up in sam2's own hub table (``HF_MODEL_ID_TO_FILENAMES``)."""
    table = getattr(build_sam, "HF_MODEL_ID_TO_FILENAMES", {})
    for config_name, checkpoint_name in table.values():
        if checkpoint_name == checkpoint.name:
            return config_name
    return None


def _find_checkpoint(path: Path) -> Path:
    """A ``.pt`` file, or the single ``.pt`` file inside a folder."""
    if path.is_file():
        return path
    candidates = sorted(path.glob("*.pt"))
    if len(candidates) != 1:
        found = ", ".join(c.name for c in candidates) or "none"
        raise ModelLoadError(
            f"expected exactly one Meta SAM2 checkpoint (*.pt) in folder {str(path)!r}, found {found}; "
            "pass the checkpoint file itself"
        )
    return candidates[0]


class MetaSam2Segmenter(Segmenter):
    """SAM2 image segmenter on Meta's ``SAM2ImagePredictor`` (one ``predict`` per object).

    Args:
        predictor: a ``sam2.sam2_image_predictor.SAM2ImagePredictor`` or any object with
            ``set_image(image)`` and ``predict(point_coords=, point_labels=, box=,
            multimask_output=)`` returning ``(masks (3, H, W), scores (3,), low_res_logits)``;
            ``mask_input=`` is passed only for prompts that carry one.
        device: device the predictor's model is on; used for autocast.
        autocast_dtype: ``torch.dtype`` for ``torch.autocast`` around the calls, or ``None`` (no
            autocast; the model's own dtype is used).
        cache_ttl_s: drop a cached state not used for this many seconds (``None``: never).
        cache_size: per-image predictor states kept (LRU by image content); 0 keeps only the
            image currently set.
        model_id: checkpoint hub id or path, for reporting.

    Attributes:
        cache: the :class:`EmbeddingCache` of predictor states.
    """

    name = "sam2"
    supports_refinement = True

    def __init__(
        self,
        predictor: Any,
        *,
        device: str = "cpu",
        autocast_dtype: Any = None,
        cache_size: int = 8,
        model_id: str | None = None,
        cache_ttl_s: float | None = None,
    ) -> None:
        self.predictor = predictor
        self.device = str(device)
        self.autocast_dtype = autocast_dtype
        self.model_id = model_id
        self.cache: EmbeddingCache[_PredictorState] = EmbeddingCache(cache_size, ttl_s=cache_ttl_s)
        self._current_key: str | None = None
        self._stateful = all(hasattr(predictor, attr) for attr in _STATE_ATTRS)
        if not self._stateful:
            logger.debug("predictor lacks %s; only the current image's embedding is reused", _STATE_ATTRS)
        self._lock = threading.Lock()  # the predictor holds one image: one segment() at a time

    @classmethod
    def from_pretrained(
        cls,
        model_id_or_path: str | Path = DEFAULT_MODEL_ID,
        *,
        config: str | None = None,
        device: str | None = "auto",
        dtype: Any = "auto",
        cache_size: int = 8,
        revision: str | None = None,
        local_files_only: bool | None = None,
        progress: bool = True,
        cache_ttl_s: float | None = None,
    ) -> MetaSam2Segmenter:
        """Build a ``SAM2ImagePredictor`` from a hub id or a local Meta checkpoint.

        Args:
            model_id_or_path: a hub id known to sam2 (``"facebook/sam2.1-hiera-large"``,
                ``"facebook/sam2-hiera-large"``, ...), a ``.pt`` checkpoint file, or a folder
                holding exactly one.
            config: sam2 hydra config name (``"configs/sam2.1/sam2.1_hiera_l.yaml"``); inferred
                from the checkpoint file name when it is one of the released ones.
            device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
            dtype: ``"auto"`` = bfloat16 autocast on CUDA (as the Seg-Zero scripts), none on CPU;
                ``"fp32"`` disables autocast; ``"bf16"``/``"fp16"`` select the autocast dtype.
                Weights stay float32.
            cache_size: per-image predictor states kept (0: only the current image).
            cache_ttl_s: drop a state not used for this many seconds (``None``: never).
            revision: hub revision of the checkpoint.
            local_files_only: ``True`` never touches the network.
            progress: show the download progress bar.

        Raises:
            MissingDependencyError: ``sam2`` is not installed.
            ModelLoadError: missing file/folder, unknown config, unknown hub id, download failure,
                or a checkpoint that does not match the config.
            DeviceError: the requested device is not available.
        """
        import torch

        dev = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, dev)
        autocast_dtype = None if torch_dtype == torch.float32 else torch_dtype
        build_sam = import_sam2()
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        source = str(model_id_or_path)
        path = Path(source).expanduser()
        try:
            if path.exists():
                checkpoint = _find_checkpoint(path)
                config_name = config or _config_for_checkpoint(build_sam, checkpoint)
                if config_name is None:
                    raise ModelLoadError(
                        f"cannot tell the sam2 config of checkpoint {checkpoint.name!r}; pass "
                        "config='configs/sam2.1/sam2.1_hiera_l.yaml' (or the matching one)"
                    )
            else:
                table = getattr(build_sam, "HF_MODEL_ID_TO_FILENAMES", {})
                if source not in table:
                    raise ModelLoadError(
                        f"{source!r} is neither an existing checkpoint path nor a hub id known to sam2 "
                        f"({', '.join(sorted(table)) or 'none'})"
                    )
                config_name, checkpoint_name = table[source]
                config_name = config or config_name
                from huggingface_hub import hf_hub_download

                local_files_only = check_hub_access(source, what="segmenter", revision=revision,
                                                    local_files_only=local_files_only, filename=checkpoint_name)
                kwargs: dict[str, Any] = {}
                if local_files_only is not None:
                    kwargs["local_files_only"] = local_files_only
                with progress_bars(progress):
                    checkpoint = Path(
                        hf_hub_download(repo_id=source, filename=checkpoint_name, revision=revision, **kwargs)
                    )
            model = build_sam.build_sam2(config_name, str(checkpoint), device=dev)
        except ModelLoadError:
            raise
        except Exception as exc:  # hydra, omegaconf, torch.load and the hub raise many types
            raise ModelLoadError(
                f"could not load Meta SAM2 from {source!r}: {exc.__class__.__name__}: {exc}; check the "
                "path / hub id, the config name and your network (or download the .pt file first)"
            ) from exc
        predictor = SAM2ImagePredictor(model)
        logger.info("loaded Meta SAM2 %s on %s (autocast %s)", source, dev, autocast_dtype)
        return cls(
            predictor, device=dev, autocast_dtype=autocast_dtype, cache_size=cache_size, model_id=source,
            cache_ttl_s=cache_ttl_s,
        )

    def _context(self) -> contextlib.ExitStack:
        import torch

        stack = contextlib.ExitStack()
        stack.enter_context(torch.inference_mode())
        if self.autocast_dtype is not None:
            stack.enter_context(torch.autocast(self.device.split(":")[0], dtype=self.autocast_dtype))
        return stack

    def _set_image(self, image: np.ndarray, key: str) -> None:
        """Make ``image`` the predictor's current image, reusing a cached state when possible."""
        state = self.cache.get(key) if self._stateful else None
        if state is not None:
            self.predictor._features = state.features
            self.predictor._orig_hw = list(state.orig_hw)
            self.predictor._is_image_set = True
            if hasattr(self.predictor, "_is_batch"):
                self.predictor._is_batch = False
        elif key != self._current_key:
            self._current_key = None  # in case set_image raises
            # Its transforms hand the array to torch.from_numpy, which warns on read-only arrays.
            self.predictor.set_image(image if image.flags.writeable else np.array(image))
            if self._stateful:
                self.cache.put(
                    key,
                    _PredictorState(features=self.predictor._features, orig_hw=list(self.predictor._orig_hw)),
                )
        self._current_key = key

    @property
    def low_res_size(self) -> int:
        """Side of ``mask_input`` and of the low-resolution logits: the model's ``image_size / 4``
        (256 for the released SAM2 models; 256 when the predictor does not say)."""
        size = getattr(getattr(self.predictor, "model", None), "image_size", 1024)
        return int(size) // 4 if isinstance(size, int) else 256

    def segment(self, image: np.ndarray, prompts: Sequence[ObjectPrompt]) -> SegmenterOutput:
        """Segment every prompted object of one image (see :class:`Segmenter`).

        Args:
            image: ``(H, W, 3)`` uint8 RGB, original resolution.
            prompts: one :class:`ObjectPrompt` per object, original-image pixels. An object with
                neither box nor points gets an all-False mask and score 0 (with a warning).

        Returns:
            :class:`SegmenterOutput` with ``(len(prompts), H, W)`` bool masks, float32 scores and
            the kept candidates' low-resolution logits (``None`` if the predictor gives none).
            No prompts: ``(0, H, W)`` masks, and the predictor is not called.

        Raises:
            ValueError: a non-finite or out-of-range coordinate, a malformed point or box, or a
                ``mask_input`` that is not ``(256, 256)`` real-valued and finite; checked for every
                object before the predictor runs.
        """
        check_image(image)
        prompts = list(prompts)
        height, width = image.shape[:2]
        out = empty_output(height, width, len(prompts))
        if not prompts:
            return out
        side = self.low_res_size
        calls: list[dict[str, Any] | None] = []
        for i, prompt in enumerate(prompts):
            coords, labels = prompt_tokens(prompt)  # validates every coordinate
            if not coords:
                logger.warning("SAM2: object %d has neither a box nor points; its mask is empty", i)
                calls.append(None)
                continue
            clicks = (LABEL_POSITIVE, LABEL_NEGATIVE)  # box corners go in box=, "not a point" nowhere
            points = [c for c, label in zip(coords, labels, strict=True) if label in clicks]
            point_labels = [label for label in labels if label in clicks]
            with np.errstate(over="ignore", invalid="ignore"):
                point_array = np.asarray(points, dtype=np.float32).reshape(-1, 2) if points else None
                box = np.asarray(prompt.box, dtype=np.float32) if prompt.box is not None else None
            for array in (point_array, box):
                if array is not None and not np.isfinite(array).all():
                    raise ValueError(f"object {i} has a coordinate too large for float32: {prompt!r}")
            call: dict[str, Any] = {
                "point_coords": point_array,
                "point_labels": np.asarray(point_labels, dtype=np.int32) if points else None,
                "box": box,
                "multimask_output": prompt.mask_input is None,
            }
            if prompt.mask_input is not None:
                call["mask_input"] = check_mask_input(prompt.mask_input, side, index=i)[None]  # (1, s, s)
            calls.append(call)
        low_res: list[np.ndarray | None] = [None] * len(prompts)
        complete = True  # every run object came with its low-resolution logits
        key = image_key(image)
        with self._lock, self._context():
            self._set_image(image, key)
            for i, call in enumerate(calls):
                if call is None:
                    continue
                masks, scores, logits = self.predictor.predict(**call)
                scores = np.asarray(scores, dtype=np.float32).reshape(-1)
                best = int(np.argmax(scores))
                mask = np.asarray(masks[best])
                if mask.shape != (height, width):
                    raise RuntimeError(
                        f"SAM2 predictor returned a {mask.shape} mask for a {(height, width)} image"
                    )
                out.masks[i] = mask > 0  # 0/1 floats (or logits) -> bool, threshold 0
                out.scores[i] = scores[best]
                if logits is None:
                    complete = False
                else:
                    low_res[i] = np.asarray(logits[best], dtype=np.float32)
        if complete:
            shapes = {a.shape for a in low_res if a is not None}
            if len(shapes) <= 1:
                shape = shapes.pop() if shapes else (side, side)
                out.low_res_logits = np.stack(
                    [a if a is not None else np.full(shape, NO_MASK_LOGIT, np.float32) for a in low_res]
                )
        return out

    def close(self) -> None:
        """Drop the cached predictor states."""
        with self._lock:
            self.cache.clear()
