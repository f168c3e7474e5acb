"""SAM 3 through transformers (``Sam3TrackerModel`` + ``Sam3TrackerProcessor``), with an embedding cache.

SAM 3's tracker does Promptable Visual Segmentation (PVS), the SAM 1 / SAM 2 task: one object per
prompt of boxes, positive and negative points and a previous mask. transformers built it on SAM2's
prompt encoder and mask decoder (``Sam3TrackerModel`` has ``Sam2Model``'s interface:
``get_image_embeddings``, ``forward(image_embeddings=..., input_points=..., input_labels=...,
input_masks=..., multimask_output=...)``) over SAM 3's ViT image encoder (1008 px input, patch 14,
a 72 x 72 embedding grid), so :class:`TransformersSam3Segmenter` is the SAM2 backend
(:class:`~segzero_tool.segmenters.transformers_sam2.TransformersSam2Segmenter`) with SAM 3's model,
processor and loading: the same prompt encoding (box corners labels 2 / 3, positives 1, negatives 0),
exact or padded batching, multimask choice (three candidates and the highest predicted IoU without
``mask_input``; one mask with it), refinement with ``mask_input`` / ``low_res_logits`` and the LRU
embedding cache. The low-resolution logits are ``(288, 288)`` for the released model (four times the
embedding grid), so ``mask_input`` must be that size (:attr:`low_res_size`).

Not supported here: SAM 3's concept prompts (text or image exemplars, ``Sam3Model``) and video
tracking (``Sam3TrackerVideoModel``).

``facebook/sam3`` is gated on the Hugging Face Hub: a load without access ends in one
:class:`~segzero_tool.errors.GatedModelError` line (exit code 7 on the command line) saying where to
request access and how to log in. SAM 3.1 (``facebook/sam3.1``) is not loadable: transformers has no
model type for it (its hub repository holds Meta's ``sam3.1_multiplex.pt``).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from ..devices import resolve_device, resolve_dtype
from ..errors import MissingDependencyError, ModelLoadError
from ..hub import local_folder
from .loading_errors import LOAD_ERRORS, hub_access, hub_download_hint, load_pretrained
from .transformers_sam2 import TransformersSam2Segmenter

logger = logging.getLogger(__name__)

DEFAULT_MODEL_ID = "facebook/sam3"

#: Hub ids known to be gated (access is requested on the model page).
GATED_MODEL_IDS = frozenset({"facebook/sam3"})

#: ``config.json`` model types that ``Sam3TrackerModel.from_pretrained`` loads: the tracker itself and
#: the full SAM 3 checkpoints (``facebook/sam3`` is ``sam3_video``: detector + tracker, whose tracker
#: part the image tracker takes).
SAM3_MODEL_TYPES = frozenset({"sam3_tracker", "sam3_video", "sam3_tracker_video"})


def _model_type(config_path: str | os.PathLike[str]) -> str | None:
    try:
        with open(config_path, encoding="utf-8") as f:
            value = json.load(f).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def checkpoint_model_type(source: str | os.PathLike[str]) -> str | None:
    """The ``model_type`` in ``config.json`` of a local folder, or of a hub id's cached copy (no
    request is made); ``None`` when there is none to read."""
    text = os.fspath(source)
    folder = os.path.expanduser(text)
    if os.path.isdir(folder):
        return _model_type(os.path.join(folder, "config.json"))
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(text, "config.json")
    except Exception:  # not a valid hub id
        return None
    return _model_type(found) if isinstance(found, str) else None


def is_sam3_checkpoint(source: str | os.PathLike[str] | None) -> bool:
    """Whether ``source`` (hub id or folder) is a SAM 3 checkpoint for :class:`TransformersSam3Segmenter`:
    a known SAM 3 hub id, or a folder (or cached hub id) whose ``config.json`` has a SAM 3 model type.
    Reads no weights and imports neither torch nor transformers."""
    if source is None:
        return False
    if os.fspath(source).strip().lower() in GATED_MODEL_IDS:
        return True
    return checkpoint_model_type(source) in SAM3_MODEL_TYPES


class TransformersSam3Segmenter(TransformersSam2Segmenter):
    """SAM 3 image segmenter on transformers' ``Sam3TrackerModel`` (see the module docstring).

    Args:
        model: a ``transformers.Sam3TrackerModel`` already on ``device`` in ``dtype``.
        processor: the matching ``transformers.Sam3TrackerProcessor``.
        device, cache_size, cache_ttl_s, batching, model_id: as for
            :class:`~segzero_tool.segmenters.transformers_sam2.TransformersSam2Segmenter`.

    Attributes:
        cache: the embedding cache (one image embedding per image content, reused across calls).
    """

    name = "transformers-sam3"
    supports_refinement = True

    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls,
        model_id_or_path: str | Path = DEFAULT_MODEL_ID,
        *,
        device: str | None = "auto",
        dtype: Any = "auto",
        cache_size: int = 8,
        revision: str | None = None,
        local_files_only: bool | None = None,
        progress: bool = True,
        batching: str = "exact",
        cache_ttl_s: float | None = None,
    ) -> TransformersSam3Segmenter:
        """Load a transformers-format SAM 3 checkpoint (hub id or local folder) into the tracker.

        Args:
            model_id_or_path: hub id (``"facebook/sam3"``, gated) or a folder written by
                ``save_pretrained`` (weights, ``config.json`` with model type ``sam3_tracker`` or
                ``sam3_video``, and ``preprocessor_config.json``).
            device, dtype, cache_size, cache_ttl_s, revision, local_files_only, progress, batching:
                as for :meth:`TransformersSam2Segmenter.from_pretrained`.

        Raises:
            GatedModelError: the hub refused a gated repository (not logged in, or no access yet), or a
                gated model must come from the hub and cannot (offline, unreachable, not cached). One
                line; a :class:`ModelLoadError`, exit code 7.
            ModelLoadError: the folder does not exist, lacks files or holds another model type; the hub
                id is unknown; the hub is unreachable and the files are not cached.
            DeviceError: the requested device is not available.
            MissingDependencyError: transformers without SAM 3 (or torchvision for its image processor).
        """
        source = str(model_id_or_path)
        folder = local_folder(
            source,
            what="SAM 3 model",
            file_hint="pass a folder with config.json, the weights and preprocessor_config.json",
            example_id=DEFAULT_MODEL_ID,
        )
        gated = folder is None and source.strip().lower() in GATED_MODEL_IDS
        if folder is not None:
            found = _model_type(os.path.join(folder, "config.json"))
            if found is not None and found not in SAM3_MODEL_TYPES:
                raise ModelLoadError(
                    f"folder {source!r} holds a {found!r} checkpoint, not SAM 3 (model type "
                    f"{' or '.join(sorted(SAM3_MODEL_TYPES))}); SAM2 folders load with the 'transformers' backend"
                )
        else:
            local_files_only = hub_access(source, what="segmenter", revision=revision,
                                          local_files_only=local_files_only, known_gated=gated)
        dev = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, dev)
        try:
            from transformers import Sam3TrackerModel, Sam3TrackerProcessor
        except ImportError as exc:
            raise MissingDependencyError(
                f"transformers with SAM 3 support (>= 5.0) is needed for the SAM 3 backend: {exc}"
            ) from exc
        processor, model = load_pretrained(
            Sam3TrackerProcessor, Sam3TrackerModel, source=source, folder=folder, dtype=torch_dtype, name="SAM 3", what="segmenter", revision=revision,
            local_files_only=local_files_only, progress=progress,
            folder_hint=("the folder must hold a transformers SAM 3 checkpoint (config.json, model.safetensors, "
                         "preprocessor_config.json)"),
            hub_hint=hub_download_hint(source), known_gated=gated, gated_errors=LOAD_ERRORS,
        )
        model = model.to(dev).eval()
        logger.info("loaded SAM 3 tracker %s on %s (%s)", source, dev, torch_dtype)
        return cls(model, processor, device=dev, cache_size=cache_size, batching=batching, model_id=source,
                   cache_ttl_s=cache_ttl_s)


__all__ = [
    "DEFAULT_MODEL_ID",
    "GATED_MODEL_IDS",
    "SAM3_MODEL_TYPES",
    "TransformersSam3Segmenter",
    "checkpoint_model_type",
    "is_sam3_checkpoint",
]
