"""The video tracker: SAM2's video predictor, fed one frame at a time, with bounded memory.

:class:`VideoTracker` is the interface :mod:`segzero_tool.video.session` drives: :meth:`~VideoTracker.step` takes
the next frame (and, on a key frame, mask prompts for the objects to start or re-anchor there) and returns every
tracked object's mask on that frame. :class:`TransformersVideoTracker` implements it on transformers'
``Sam2VideoModel`` (SAM 2 / 2.1) or ``Sam3TrackerVideoModel`` (SAM 3's tracker), streaming: frames are given as
they come, never as a whole clip.

Memory stays flat over any clip length: after each frame the session keeps only that frame's pixels and, per
object, the outputs of the last :attr:`TransformersVideoTracker.memory_window` frames (what SAM2's memory
attention and object pointers read: 7 memory frames and 16 pointers in the released models) plus the frames
where the object was prompted.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MissingDependencyError, ModelLoadError, UnknownModelError

logger = logging.getLogger(__name__)

#: The tracker used when neither the caller nor the pipeline's segmenter names one.
DEFAULT_TRACKER = "facebook/sam2.1-hiera-tiny"


@dataclass(frozen=True)
class TrackedMask:
    """One object's mask on one frame.

    Attributes:
        mask: ``(H, W)`` bool, original frame pixels (all ``False`` when the object is not visible).
        score: the tracker's probability that the object is present, in ``[0, 1]`` (the sigmoid of SAM2's
            object score logit).
    """

    mask: np.ndarray
    score: float

    @property
    def present(self) -> bool:
        """The object is visible: its presence score is above one half and its mask is not empty."""
        return self.score > 0.5 and bool(self.mask.any())


class VideoTracker(ABC):
    """Propagates object masks through frames given one at a time."""

    #: The model's hub id or folder, for manifests and messages.
    model_id: str | None = None

    @abstractmethod
    def step(self, image: np.ndarray, *, new_objects: Mapping[int, np.ndarray] | None = None) -> dict[int, TrackedMask]:
        """Track every object on the next frame.

        Args:
            image: ``(H, W, 3)`` uint8 RGB; every frame of one run has the same size.
            new_objects: object id -> ``(H, W)`` bool mask: objects to start (new ids) or re-anchor (known ids)
                on this frame (the same as :meth:`add` right after the step).

        Returns:
            ``{object id: TrackedMask}`` for every object known after this frame, in the order they were added.
        """

    @abstractmethod
    def add(self, new_objects: Mapping[int, np.ndarray]) -> dict[int, TrackedMask]:
        """Start (new ids) or re-anchor (known ids) objects on the frame of the last :meth:`step`, from masks.

        Returns:
            Every object's mask on that frame, as :meth:`step` returns them.
        """

    @abstractmethod
    def reset(self) -> None:
        """Forget every object and frame (the next :meth:`step` is frame 0 of a new run)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the model (optional)."""

    def __enter__(self) -> VideoTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _sam3_video(source: str) -> bool:
    from ..segmenters.transformers_sam3 import checkpoint_model_type

    return (checkpoint_model_type(source) or "").startswith("sam3")


class TransformersVideoTracker(VideoTracker):
    """SAM2's video predictor on transformers (``Sam2VideoModel`` or ``Sam3TrackerVideoModel``).

    Args:
        model: the video model, on ``device`` in ``dtype``.
        processor: its ``Sam2VideoProcessor`` / ``Sam3TrackerVideoProcessor``.
        device: where it runs.
        model_id: the hub id or folder, for messages.
    """

    def __init__(self, model: Any, processor: Any, *, device: str = "cpu", model_id: str | None = None) -> None:
        import torch

        self.model = model.eval()
        self.processor = processor
        self.device = device
        self.dtype = next(model.parameters()).dtype if any(True for _ in model.parameters()) else torch.float32
        self.model_id = model_id
        config = model.config
        #: Frames of per-object outputs kept behind the current one (memory frames and object pointers read).
        self.memory_window = max(int(getattr(config, "num_maskmem", 7)),
                                 int(getattr(config, "max_object_pointers_in_encoder", 16))) + 1
        self._session: Any = None
        self._index = -1
        self._size: tuple[int, int] | None = None

    @classmethod
    def from_pretrained(
        cls,
        model_id_or_path: str | Path = DEFAULT_TRACKER,
        *,
        device: str | None = "auto",
        dtype: Any = "auto",
        revision: str | None = None,
        local_files_only: bool | None = None,
        progress: bool = True,
    ) -> TransformersVideoTracker:
        """Load a SAM 2 / 2.1 (or SAM 3 tracker) video checkpoint: a hub id (``facebook/sam2.1-hiera-tiny``), a
        registry name (``sam2.1-hiera-tiny``) or a folder written by ``save_pretrained``.

        Raises:
            ModelLoadError: missing files, or a checkpoint without the video memory weights (an image-only
                ``Sam2Model`` save).
            UnknownModelError: not a registered name, a folder or a hub id.
            MissingDependencyError: transformers lacks the SAM2 video classes.
        """
        from ..devices import resolve_device, resolve_dtype
        from ..hub import check_hub_access
        from ..registry import resolve_model
        from ..segmenters.loading_errors import hub_download_hint, load_pretrained
        from ..segmenters.transformers_sam2 import _local_folder

        entry = resolve_model(str(model_id_or_path), "segmenter")
        source = entry.hub_id or str(model_id_or_path)
        folder = _local_folder(source)
        if folder is None:
            local_files_only = check_hub_access(source, what="tracker", revision=revision,
                                                local_files_only=local_files_only)
        dev = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, dev)
        sam3 = _sam3_video(source) or source.lower().startswith("facebook/sam3")
        try:
            if sam3:
                from transformers import Sam3TrackerVideoModel as Model
                from transformers import Sam3TrackerVideoProcessor as Processor
            else:
                from transformers import Sam2VideoModel as Model
                from transformers import Sam2VideoProcessor as Processor
        except ImportError as exc:
            raise MissingDependencyError(f"transformers with SAM2 video support (>= 4.57) is needed for tracking: {exc}"
                                         ) from exc
        name = "SAM 3 tracker" if sam3 else "SAM2 video"
        processor, model = load_pretrained(
            Processor, _WithLoadingInfo(Model), source=source, folder=folder, dtype=torch_dtype, name=name, what="tracker",
            revision=revision, local_files_only=local_files_only, progress=progress,
            folder_hint=("the folder must hold a transformers SAM2 video checkpoint (config.json, model.safetensors "
                         "with the memory weights, processor_config.json)"),
            hub_hint=hub_download_hint(source), known_gated=sam3,
        )
        _check_memory_weights(model, source)
        model = model.to(dev).eval()
        logger.info("loaded %s tracker %s on %s (%s)", name, source, dev, torch_dtype)
        return cls(model, processor, device=dev, model_id=source)

    # --- streaming -------------------------------------------------------------------------------

    def reset(self) -> None:
        self._session = None
        self._index = -1
        self._size = None

    def _start(self, height: int, width: int) -> None:
        self._session = self.processor.init_video_session(inference_device=self.device, dtype=self.dtype)
        self._session.video_height = height
        self._session.video_width = width
        self._size = (height, width)

    def step(self, image: np.ndarray, *, new_objects: Mapping[int, np.ndarray] | None = None) -> dict[int, TrackedMask]:
        import torch

        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"a frame must be an (H, W, 3) uint8 array, got {getattr(image, 'shape', type(image))}")
        height, width = int(image.shape[0]), int(image.shape[1])
        if self._session is None:
            self._start(height, width)
        elif self._size != (height, width):
            raise ValueError(f"frame {self._index + 1} is {width}x{height}, the run's frames are "
                             f"{self._size[1]}x{self._size[0]}")  # type: ignore[index]
        self._index += 1
        index = self._index
        session = self._session
        with torch.inference_mode():
            # the processor wraps the array in a tensor: a read-only frame (open_video's) is copied first
            frame = image if image.flags.writeable else image.copy()
            pixels = self.processor(images=frame, return_tensors="pt")["pixel_values"][0]
            session.add_new_frame(pixels, index)
            tracked: dict[int, TrackedMask] = {}
            if session.get_obj_num():
                tracked = self._masks(self.model(inference_session=session, frame_idx=index), height, width)
        self._prune(index)
        if new_objects:
            tracked = self.add(new_objects)
        return tracked

    def add(self, new_objects: Mapping[int, np.ndarray]) -> dict[int, TrackedMask]:
        import torch

        if self._session is None or self._size is None:
            raise ValueError("add() needs a frame: call step() first")
        height, width = self._size
        ids = [int(i) for i in new_objects]
        masks = []
        for obj_id in ids:
            mask = new_objects[obj_id]
            if not isinstance(mask, np.ndarray) or mask.shape != (height, width):
                raise ValueError(f"the mask of object {obj_id} must be a ({height}, {width}) bool array")
            masks.append(np.ascontiguousarray(mask, dtype=bool))
        if not ids:
            return {}
        with torch.inference_mode():
            self.processor.add_inputs_to_inference_session(self._session, frame_idx=self._index, obj_ids=ids,
                                                           input_masks=masks)
            output = self.model(inference_session=self._session, frame_idx=self._index)
            return self._masks(output, height, width)

    def _masks(self, output: Any, height: int, width: int) -> dict[int, TrackedMask]:
        import torch

        masks = self.processor.post_process_masks([output.pred_masks.float()], original_sizes=[[height, width]],
                                                  binarize=True)[0]
        logits = output.object_score_logits.float().reshape(-1).tolist()
        found: dict[int, TrackedMask] = {}
        for k, obj_id in enumerate(output.object_ids):
            mask = masks[k, 0].to(torch.bool).cpu().numpy()
            logit = logits[k] if k < len(logits) else 0.0
            score = 1.0 / (1.0 + math.exp(-logit)) if math.isfinite(logit) else (1.0 if logit > 0 else 0.0)
            found[int(obj_id)] = TrackedMask(mask=mask, score=float(score))
        return found

    def _prune(self, index: int) -> None:
        """Drop what SAM2 will not read again: older frames' pixels and per-object outputs beyond the window."""
        session = self._session
        for old in [i for i in session.processed_frames if i < index]:
            del session.processed_frames[old]
        horizon = index - self.memory_window
        for per_obj in session.output_dict_per_obj.values():
            stale = [i for i in per_obj["non_cond_frame_outputs"] if i < horizon]
            for old in stale:
                del per_obj["non_cond_frame_outputs"][old]
        for tracked in session.frames_tracked_per_obj.values():
            for old in [i for i in tracked if i < horizon]:
                del tracked[old]

    def close(self) -> None:
        self.reset()


class _WithLoadingInfo:
    """``model_cls.from_pretrained`` that keeps transformers' loading report on the model (missing weights)."""

    def __init__(self, model_cls: Any) -> None:
        self.model_cls = model_cls

    def from_pretrained(self, source: str, **kwargs: Any) -> Any:
        model, info = self.model_cls.from_pretrained(source, output_loading_info=True, **kwargs)
        model._segzero_loading_info = info
        return model


def _check_memory_weights(model: Any, source: str) -> None:
    """Refuse a checkpoint whose memory modules were not in the files (they would be random: garbage tracks)."""
    info = getattr(model, "_segzero_loading_info", None)
    missing = [k for k in (info or {}).get("missing_keys", ()) if k.startswith(("memory_", "mask_downsample"))]
    if missing:
        raise ModelLoadError(f"{source!r} holds no video memory weights ({len(missing)} missing, e.g. {missing[0]}); "
                             "pass a SAM2 video checkpoint (the hub's facebook/sam2.1-hiera-* repositories hold both)")


def load_tracker(
    model: str | None = None,
    *,
    device: str | None = "auto",
    dtype: Any = "auto",
    backend: str = "transformers",
    **kwargs: Any,
) -> VideoTracker:
    """Load a :class:`VideoTracker` by registry name, hub id or folder (default :data:`DEFAULT_TRACKER`).

    Raises:
        UnknownModelError: unknown backend or model.
        ModelLoadError / MissingDependencyError: see :meth:`TransformersVideoTracker.from_pretrained`.
    """
    if backend != "transformers":
        raise UnknownModelError(f"unknown tracker backend {backend!r}; the video tracker runs on 'transformers'")
    return TransformersVideoTracker.from_pretrained(model or DEFAULT_TRACKER, device=device, dtype=dtype, **kwargs)


__all__ = ["DEFAULT_TRACKER", "TrackedMask", "TransformersVideoTracker", "VideoTracker", "load_tracker"]
