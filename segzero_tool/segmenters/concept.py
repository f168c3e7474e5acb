"""Concept segmentation: every instance of a short noun phrase in an image (SAM 3 through transformers).

:class:`ConceptSegmenter` is the interface: ``find(image, phrase, *, threshold, mask_threshold,
max_instances)`` returns :class:`ConceptInstance` values (box in original pixels, score, bool mask),
best score first. :class:`Sam3ConceptSegmenter` implements it on transformers' ``Sam3Model`` and
``Sam3Processor`` (the concept detector: a CLIP text encoder reads the phrase, 200 DETR queries
propose instances, a presence head scales their scores). :func:`segzero_tool.phrase.segment_phrase`
turns the instances into the package's one result type.

Scores are transformers' ``post_process_instance_segmentation`` scores: ``sigmoid(query logit) *
sigmoid(presence logit)``; an instance is kept when its score is *above* ``threshold`` (strictly, as
there). Only the kept instances' masks are upsampled to the image size (in chunks), so a low threshold
on a large image does not allocate 200 full-size float masks.

SAM 3's weights (``facebook/sam3``) are gated on the Hugging Face Hub: a load without access raises
:class:`~segzero_tool.errors.GatedModelError` (a ``ModelLoadError``, exit code 7; built by
:func:`segzero_tool.hub.gated_error`, shared with the SAM 3 tracker backend) whose one-line message says how
to request access and log in.

Nothing heavy is imported at module import time.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GatedModelError, MissingDependencyError, PromptError

logger = logging.getLogger(__name__)

#: The released SAM 3 checkpoint (gated: request access on its hub page).
DEFAULT_CONCEPT_MODEL = "facebook/sam3"
#: Short names accepted wherever a concept model is named (``--model sam3``).
CONCEPT_MODEL_ALIASES = {"sam3": DEFAULT_CONCEPT_MODEL}
#: SAM 3's text encoder reads at most this many tokens (start and end tokens included).
SAM3_TEXT_TOKENS = 32
#: Instances whose masks are upsampled to the image size at once.
_MASK_CHUNK = 16
#: How messages name the model.
_WHAT = "SAM 3 concept model"


@dataclass(frozen=True)
class ConceptInstance:
    """One instance of the phrase.

    Attributes:
        box: ``(x1, y1, x2, y2)`` in original-image pixels (floats, as the detector writes them).
        score: the detector's confidence, 0..1.
        mask: ``(H, W)`` bool mask at the original image size.
    """

    box: tuple[float, float, float, float]
    score: float
    mask: np.ndarray


def resolve_concept_model(name: str | Path) -> str:
    """``sam3`` -> ``facebook/sam3``; hub ids and folders unchanged."""
    text = str(name).strip()
    return CONCEPT_MODEL_ALIASES.get(text.lower(), text)


def _known_gated(model_id: str) -> bool:
    from .transformers_sam3 import GATED_MODEL_IDS

    return model_id.strip().lower() in GATED_MODEL_IDS


def gated_access_error(exc: BaseException, model_id: str) -> GatedModelError | None:
    """The one-line :class:`~segzero_tool.errors.GatedModelError` when ``exc`` (or what caused it) is the
    hub refusing a gated repository, else ``None`` (:func:`segzero_tool.hub.gated_error`; transformers
    wraps huggingface_hub's ``GatedRepoError`` in an ``OSError``)."""
    from ..hub import gated_error

    return gated_error(exc, model_id, what=_WHAT, known_gated=_known_gated(model_id))


class ConceptSegmenter:
    """Finds every instance of a phrase. Subclasses implement :meth:`find`.

    Attributes:
        model_id: what the results name as their segmenter (hub id or folder).
    """

    model_id: str | None = None

    def find(self, image: np.ndarray, phrase: str, *, threshold: float = 0.5, mask_threshold: float = 0.5,
             max_instances: int | None = None) -> list[ConceptInstance]:
        """The instances of ``phrase`` in ``image`` (``(H, W, 3)`` uint8 RGB) scoring above ``threshold``,
        best first, at most ``max_instances`` (``None``: all)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the model (optional)."""


def _local_folder(source: str) -> Path | None:
    from ..hub import local_folder

    folder = local_folder(source, what="SAM 3 concept model",
                          file_hint="pass the folder holding config.json, the weights and the processor files",
                          example_id=DEFAULT_CONCEPT_MODEL)
    return Path(folder) if folder is not None else None


class Sam3ConceptSegmenter(ConceptSegmenter):
    """SAM 3 concept segmentation on transformers' ``Sam3Model``.

    Args:
        model: a ``transformers.Sam3Model`` already on ``device`` (put in eval mode here).
        processor: the matching ``transformers.Sam3Processor``.
        device: torch device string the model lives on.
        model_id: hub id or folder the weights came from, for reporting.
    """

    name = "sam3"

    def __init__(self, model: Any, processor: Any, *, device: str = "cpu", model_id: str | None = None,
                 cache_size: int = 4, cache_ttl_s: float | None = None) -> None:
        from .cache import EmbeddingCache

        self.model = model.eval()
        self.processor = processor
        self.device = str(device)
        self.dtype = next(model.parameters()).dtype
        self.model_id = model_id
        self._lock = threading.Lock()  # one forward at a time per model
        #: the image encoder's output per image content (``image_key``): an agent trying several phrases on one
        #: picture pays the vision encoder once
        self.cache: Any = EmbeddingCache(cache_size, ttl_s=cache_ttl_s)

    @classmethod
    def from_pretrained(
        cls,
        model_id_or_path: str | Path = DEFAULT_CONCEPT_MODEL,
        *,
        device: str | None = "auto",
        dtype: Any = "auto",
        revision: str | None = None,
        local_files_only: bool | None = None,
        progress: bool = True,
        cache_size: int = 4,
        cache_ttl_s: float | None = None,
    ) -> Sam3ConceptSegmenter:
        """Load SAM 3 (a hub id, ``sam3`` for ``facebook/sam3``, or a folder written by ``save_pretrained``).

        Args:
            model_id_or_path: hub id, alias or folder.
            device: ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``.
            dtype: ``"auto"`` (bfloat16 on CUDA, float32 elsewhere), ``"bf16"``, ``"fp16"``, ``"fp32"`` or a
                ``torch.dtype``.
            revision: hub branch, tag or commit.
            local_files_only: ``True`` never touches the network; ``None`` leaves the transformers default.
            progress: show download / loading progress bars.
            cache_size: images whose vision-encoder output is kept (least recently used first out; ``0``: none),
                so that more phrases on the same picture skip the image encoder.
            cache_ttl_s: drop a cached image not used for this many seconds (``None``: never).

        Raises:
            GatedModelError: the hub refuses the gated repository (request access, log in).
            ModelLoadError: the folder does not exist or lacks files, the hub id is unknown, the hub is
                unreachable and the files are not cached (``HubUnreachableError``).
            DeviceError: the requested device is not available.
            MissingDependencyError: transformers without SAM 3 (needs >= 5.0).
        """
        from ..devices import resolve_device, resolve_dtype
        from .loading_errors import hub_access, load_pretrained

        source = resolve_concept_model(model_id_or_path)
        folder = _local_folder(source)
        gated = folder is None and _known_gated(source)
        if folder is None:  # a hub id with the hub unreachable: the cached copy, or one clear error in seconds
            local_files_only = hub_access(source, what=_WHAT, revision=revision, local_files_only=local_files_only,
                                          known_gated=gated)
        dev = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, dev)
        try:
            from transformers import Sam3Model, Sam3Processor
        except ImportError as exc:
            raise MissingDependencyError(
                f"transformers with SAM 3 support (>= 5.0) is needed for concept segmentation: {exc}; upgrade with "
                'pip install -U "transformers>=5"') from exc
        processor, model = load_pretrained(
            Sam3Processor, Sam3Model, source=source, folder=folder, dtype=torch_dtype, name="SAM 3", what=_WHAT, revision=revision,
            local_files_only=local_files_only, progress=progress,
            folder_hint=("the folder must hold a transformers SAM 3 checkpoint (config.json, model.safetensors, "
                         "processor_config.json, tokenizer files)"),
            hub_hint=(f"check the id and your network, or download it first (`hf download {source} --local-dir DIR`) "
                      "and pass the folder"),
            known_gated=gated, gated_errors=(Exception,),
            errors=(OSError, ValueError, RuntimeError, KeyError, TypeError), max_text=400,
        )
        model = model.to(dev).eval()
        logger.info("loaded SAM 3 %s on %s (%s)", source, dev, torch_dtype)
        return cls(model, processor, device=dev, model_id=source, cache_size=cache_size, cache_ttl_s=cache_ttl_s)

    def _text_inputs(self, phrase: str) -> dict[str, Any]:
        enc = self.processor.tokenizer([phrase], return_tensors="pt", padding="max_length",
                                       max_length=SAM3_TEXT_TOKENS)
        n = int(enc["input_ids"].shape[1])
        if n > SAM3_TEXT_TOKENS:
            raise PromptError(f"the phrase is {n} tokens long; SAM 3's text encoder reads at most "
                              f"{SAM3_TEXT_TOKENS} (start and end included): send a short noun phrase such as "
                              "'red car' or 'person with a hat'")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def find(self, image: np.ndarray, phrase: str, *, threshold: float = 0.5, mask_threshold: float = 0.5,
             max_instances: int | None = None) -> list[ConceptInstance]:
        """See :meth:`ConceptSegmenter.find`. One forward pass (text encoder, detector, masks); the image encoder
        runs once per picture while it stays in :attr:`cache`."""
        import torch

        from .base import image_key
        from .transformers_sam2 import check_image

        check_image(image)
        h, w = image.shape[:2]
        text = self._text_inputs(phrase)
        with self._lock, torch.inference_mode():
            key = image_key(image) if self.cache.enabled else None
            vision = self.cache.get(key) if key is not None else None
            if vision is None:
                # torch refuses read-only arrays (decoded images are shared and frozen): the processor gets a copy
                writable = image if image.flags.writeable else np.array(image)
                pixels = self.processor.image_processor(images=writable, return_tensors="pt")["pixel_values"]
                vision = self.model.get_vision_features(pixel_values=pixels.to(self.device, self.dtype))
                if key is not None:
                    self.cache.put(key, vision)
            out = self.model(vision_embeds=vision, input_ids=text["input_ids"].to(self.device),
                             attention_mask=text["attention_mask"].to(self.device))
        logits = out.pred_logits[0].float()
        scores = logits.sigmoid()
        if out.presence_logits is not None:
            scores = scores * out.presence_logits[0].float().sigmoid()
        order = torch.argsort(scores, descending=True, stable=True)
        keep = order[scores[order] > threshold]
        if max_instances is not None:
            keep = keep[:max_instances]
        found: list[ConceptInstance] = []
        for start in range(0, len(keep), _MASK_CHUNK):
            idx = keep[start:start + _MASK_CHUNK]
            part = _Outputs(pred_logits=out.pred_logits[:, idx].float(), pred_boxes=out.pred_boxes[:, idx].float(),
                            pred_masks=out.pred_masks[:, idx].float(),
                            presence_logits=None if out.presence_logits is None else out.presence_logits.float())
            done = self.processor.post_process_instance_segmentation(
                part, threshold=threshold, mask_threshold=mask_threshold, target_sizes=[(h, w)])[0]
            for box, score, mask in zip(done["boxes"].tolist(), done["scores"].tolist(), done["masks"], strict=True):
                found.append(ConceptInstance(box=tuple(float(v) for v in box),  # type: ignore[arg-type]
                                             score=float(score), mask=mask.to(torch.bool).cpu().numpy()))
        return found

    def close(self) -> None:
        self.cache.clear()
        self.model = None


@dataclass
class _Outputs:
    """The slice of ``Sam3ImageSegmentationOutput`` that transformers' post-processing reads."""

    pred_logits: Any
    pred_boxes: Any
    pred_masks: Any
    presence_logits: Any


__all__ = ["CONCEPT_MODEL_ALIASES", "ConceptInstance", "ConceptSegmenter", "DEFAULT_CONCEPT_MODEL", "GatedModelError",
           "SAM3_TEXT_TOKENS", "Sam3ConceptSegmenter", "gated_access_error", "resolve_concept_model"]
