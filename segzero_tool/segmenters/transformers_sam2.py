"""SAM2 through transformers (``Sam2Model`` + ``Sam2Processor``), with an embedding cache.

Protocol (Seg-Zero's ``SAM2ImagePredictor`` usage): each object is prompted with its box and its
positive points, in original-image pixels; the decoder returns three candidate masks
(``multimask_output=True``) and the one with the highest predicted IoU is kept; low-resolution
logits are resized bilinearly to the original image size and thresholded at 0.

How an object is encoded: like Meta's predictor, the box becomes two corner points with labels 2
and 3 placed before the positive points (label 1); the prompt encoder then appends one
"not a point" token (label -1). This is numerically the same as passing ``input_boxes`` to
transformers (checked in the tests) and lets one tensor carry box-only, point-only and box+point
objects.

Batching: the image embedding is computed once per image (and cached by content hash); all objects
of an image go through the prompt encoder / mask decoder together. SAM2's decoder has no attention
mask, so padding an object with fewer prompt tokens (transformers pads with label -10, a zero
token) changes that object's masks. With ``batching="exact"`` (default) objects are grouped by
token count and each group is one decoder batch: results equal prompting each object alone, and
the usual Seg-Zero output (every object has a box and the same number of points) is one batch.
``batching="padded"`` always runs one batch and pads with label -10, trading exactness for one
call.

Refinement (``supports_refinement = True``): negative points become point tokens with label 0,
placed after the positive points (box corners, positives, negatives: Meta's predictor's order).
``ObjectPrompt.mask_input``, the previous low-resolution logits of the object (``(S/4, S/4)``,
256 x 256 for the released models, 64 x 64 for the tiny test model), is passed to
``Sam2Model.forward`` as ``input_masks`` and embedded by the prompt encoder's mask convolutions in
place of the "no mask" embedding. Objects with and without ``mask_input`` are never in the same
decoder batch (groups are keyed by (has mask, token count), or by has-mask alone when padded).
Objects with a mask run with one object per *image* batch row (``(g, 1, ...)`` prompts against
the embedding expanded to ``g`` rows), because transformers adds the dense mask embedding to the
image embedding before repeating it over the point batch, which only works for one object per row;
each result equals refining that object alone. A prompt with a ``mask_input`` but neither box nor
points gets one "not a point" token (label -1), what transformers itself uses when no point is given.

Multimask convention (SAM2's interactive refinement, as in Meta's ``SAM2ImagePredictor`` notebook:
``predict(..., mask_input=logits[best][None], multimask_output=False)``): an object **without**
``mask_input`` runs with ``multimask_output=True`` and keeps the candidate with the highest
predicted IoU (the first-click / Seg-Zero protocol, negative points or not); an object **with**
``mask_input`` runs with ``multimask_output=False`` and keeps the single mask the decoder returns.

``SegmenterOutput.low_res_logits`` holds the kept candidate's logits (``pred_masks[.., best]`` in
float32, before post-processing); objects with an empty prompt get a constant
:data:`NO_MASK_LOGIT` map.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..devices import resolve_device, resolve_dtype
from ..errors import MissingDependencyError
from ..hub import check_hub_access, local_folder
from .base import ObjectPrompt, Segmenter, SegmenterOutput, check_mask_input, image_key
from .cache import EmbeddingCache
from .loading_errors import hub_download_hint, load_pretrained

logger = logging.getLogger(__name__)

DEFAULT_MODEL_ID = "facebook/sam2.1-hiera-large"

#: Point labels understood by SAM2's prompt encoder.
LABEL_POSITIVE = 1
LABEL_NEGATIVE = 0
LABEL_NOT_A_POINT = -1  # the prompt encoder's "not a point" token (no position)
LABEL_BOX_TOP_LEFT = 2
LABEL_BOX_BOTTOM_RIGHT = 3
LABEL_PAD = -10  # transformers' padding label: the token is zeroed (but still attended to)

_BATCHING_MODES = ("exact", "padded")

#: The low-resolution logit given to objects that were not run (an empty prompt): background.
NO_MASK_LOGIT = -10.0


@dataclass(frozen=True)
class Sam2ImageEmbedding:
    """What the mask decoder needs from one image, as returned by ``Sam2Model.get_image_embeddings``.

    Attributes:
        features: three tensors, high to low resolution, on the model's device and dtype:
            ``(1, C/8, S/4, S/4)``, ``(1, C/4, S/8, S/8)`` and ``(1, C, S/16, S/16)`` where ``C`` is
            the decoder hidden size (256 for the released models) and ``S`` the model's square
            input side (1024).
        original_size: ``(H, W)`` of the original image, for coordinate normalisation and mask
            post-processing.
    """

    features: tuple[Any, ...]
    original_size: tuple[int, int]


def check_image(image: Any) -> np.ndarray:
    """Validate an ``(H, W, 3)`` uint8 RGB array (``H, W >= 1``) and return it unchanged.

    Raises:
        ValueError: wrong type, shape or dtype.
    """
    if not isinstance(image, np.ndarray):
        raise ValueError(f"image must be a numpy array (H, W, 3) uint8 RGB, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must have shape (H, W, 3) RGB, got {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {image.dtype}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image is empty: shape {image.shape}")
    return image


def _numbers(values: Any, count: int, what: str) -> tuple[float, ...]:
    """``count`` floats from a sequence, or a ValueError naming ``what``."""
    try:
        if len(values) != count:
            raise ValueError
        return tuple(float(v) for v in values)
    except (TypeError, ValueError):
        shape = "(x1, y1, x2, y2)" if count == 4 else "(x, y)"
        raise ValueError(f"{what} must be {shape} numbers, got {values!r}") from None


def prompt_tokens(prompt: ObjectPrompt) -> tuple[list[tuple[float, float]], list[int]]:
    """Turn one object's prompt into SAM2 point tokens, in original-image pixels.

    Returns:
        ``(coords, labels)``: the box corners ``(x1, y1), (x2, y2)`` with labels 2 and 3 (if there
        is a box), then the positive points with label 1, then the negative points with label 0.
        A prompt with only a ``mask_input`` gets one "not a point" token ``(0, 0)`` with label -1.
        Both lists are empty for an empty prompt.

    Raises:
        ValueError: a coordinate is not a finite number, a point does not have 2 values or the box
            does not have 4.
    """
    coords: list[tuple[float, float]] = []
    labels: list[int] = []
    if prompt.box is not None:
        x1, y1, x2, y2 = _numbers(prompt.box, 4, "box")
        coords += [(x1, y1), (x2, y2)]
        labels += [LABEL_BOX_TOP_LEFT, LABEL_BOX_BOTTOM_RIGHT]
    for points, label, what in ((prompt.points, LABEL_POSITIVE, "point"),
                                (prompt.negative_points, LABEL_NEGATIVE, "negative point")):
        try:
            points = list(points)
        except TypeError:
            raise ValueError(f"{what}s must be a sequence of (x, y) pairs, got {points!r}") from None
        for point in points:
            x, y = _numbers(point, 2, what)
            coords.append((x, y))
            labels.append(label)
    if coords and not np.isfinite(np.asarray(coords)).all():
        raise ValueError(f"prompt has a non-finite coordinate: {prompt!r}")
    if not coords and prompt.mask_input is not None:
        coords, labels = [(0.0, 0.0)], [LABEL_NOT_A_POINT]
    return coords, labels


def empty_output(height: int, width: int, n: int = 0, *, low_res: int | None = None) -> SegmenterOutput:
    """``n`` all-False ``(H, W)`` masks with score 0; with ``low_res``, ``(n, low_res, low_res)``
    low-resolution logits filled with :data:`NO_MASK_LOGIT`."""
    logits = None if low_res is None else np.full((n, low_res, low_res), NO_MASK_LOGIT, dtype=np.float32)
    return SegmenterOutput(
        masks=np.zeros((n, height, width), dtype=bool), scores=np.zeros((n,), dtype=np.float32),
        low_res_logits=logits,
    )


def _local_folder(source: str) -> Path | None:
    """Return the folder for a local ``source``; ``None`` for a hub id.

    Raises:
        ModelLoadError: ``source`` looks like a path but no such folder exists, or it is a file.
    """
    folder = local_folder(
        source,
        what="SAM2 model",
        file_hint="the transformers backend needs a folder with config.json, the weights and "
        "preprocessor_config.json (a Meta .pt checkpoint needs the 'sam2' backend)",
        example_id=DEFAULT_MODEL_ID,
    )
    return Path(folder) if folder is not None else None


class TransformersSam2Segmenter(Segmenter):
    """SAM2 image segmenter on transformers' ``Sam2Model``.

    Args:
        model: a ``transformers.Sam2Model`` already on ``device`` in ``dtype`` (put in eval mode here).
        processor: the matching ``transformers.Sam2Processor`` (image resize/normalise, mask
            post-processing; its ``target_size`` is the model's square input side).
        device: torch device string the model lives on.
        cache_size: number of image embeddings kept (LRU by image content); 0 disables the cache.
        cache_ttl_s: drop an embedding not used for this many seconds (``None``: keep it until evicted).
        batching: ``"exact"`` (group objects by prompt length; same result as one object at a
            time) or ``"padded"`` (always one decoder batch, padding label -10; approximate). See
            the module docstring.
        model_id: hub id or folder the weights came from, for reporting.

    Attributes:
        cache: the :class:`EmbeddingCache` of :class:`Sam2ImageEmbedding` values.
    """

    name = "transformers"
    supports_refinement = True

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        device: str = "cpu",
        cache_size: int = 8,
        batching: str = "exact",
        model_id: str | None = None,
        cache_ttl_s: float | None = None,
    ) -> None:
        if batching not in _BATCHING_MODES:
            raise ValueError(f"batching must be one of {_BATCHING_MODES}, got {batching!r}")
        self.model = model.eval()
        self.processor = processor
        self.device = str(device)
        self.dtype = next(model.parameters()).dtype
        self.batching = batching
        self.model_id = model_id
        self.cache: EmbeddingCache[Sam2ImageEmbedding] = EmbeddingCache(cache_size, ttl_s=cache_ttl_s)

    @classmethod
    def from_pretrained(
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
    ) -> TransformersSam2Segmenter:
        """Load a transformers-format SAM2 checkpoint (hub id or local folder).

        Args:
            model_id_or_path: hub id (e.g. ``"facebook/sam2.1-hiera-large"``) or a folder written by
                ``save_pretrained`` (weights, ``config.json`` and ``preprocessor_config.json``).
            device: ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``.
            dtype: ``"auto"`` = float32 on CPU (bfloat16 matmuls are slow there) and bfloat16 on
                CUDA (the Seg-Zero scripts run SAM2 under bfloat16 autocast); or ``"fp32"``,
                ``"bf16"``, ``"fp16"`` or a ``torch.dtype``. Masks are post-processed in float32.
            cache_size: image embeddings kept in the LRU cache (0 disables it).
            cache_ttl_s: drop an embedding not used for this many seconds (``None``: never).
            revision: hub branch, tag or commit.
            local_files_only: ``True`` never touches the network; ``None`` leaves the transformers
                default (which honours ``HF_HUB_OFFLINE``).
            progress: show download / loading progress bars.
            batching: see :class:`TransformersSam2Segmenter`.

        Raises:
            ModelLoadError: the folder does not exist or lacks files, the hub id is unknown or the
                hub is unreachable and the files are not cached.
            DeviceError: the requested device is not available.
            MissingDependencyError: transformers' SAM2 (or torchvision, needed by its image
                processor) is not importable.
        """
        source = str(model_id_or_path)
        folder = _local_folder(source)
        if folder is None:  # a hub id with the hub unreachable: the cached copy, or one clear error in seconds
            local_files_only = check_hub_access(source, what="segmenter", revision=revision,
                                                local_files_only=local_files_only)
        dev = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, dev)
        try:
            from transformers import Sam2Model, Sam2Processor
        except ImportError as exc:
            raise MissingDependencyError(
                f"transformers with SAM2 support (>= 4.57) is needed for the transformers SAM2 backend: {exc}"
            ) from exc
        processor, model = load_pretrained(
            Sam2Processor, Sam2Model, source=source, folder=folder, dtype=torch_dtype, name="SAM2", what="segmenter", revision=revision,
            local_files_only=local_files_only, progress=progress,
            folder_hint=("the folder must hold a transformers SAM2 checkpoint (config.json, model.safetensors, "
                         "preprocessor_config.json); Meta .pt checkpoints need the 'sam2' backend"),
            hub_hint=hub_download_hint(source),
        )
        model = model.to(dev).eval()
        logger.info("loaded SAM2 %s on %s (%s)", source, dev, torch_dtype)
        return cls(model, processor, device=dev, cache_size=cache_size, batching=batching, model_id=source,
                   cache_ttl_s=cache_ttl_s)

    @property
    def image_size(self) -> int:
        """The model's square input side in pixels (1024 for the released models)."""
        return int(self.processor.target_size)

    @property
    def low_res_size(self) -> int:
        """Side of the low-resolution logits and of ``mask_input``: ``S/4`` (256 for the released
        models), the prompt encoder's ``mask_input_size``."""
        return int(self.model.prompt_encoder.mask_input_size[0])

    def encode(self, image: np.ndarray, *, key: str | None = None) -> Sam2ImageEmbedding:
        """Return the image embedding, from the cache or by running the vision encoder once.

        Args:
            image: ``(H, W, 3)`` uint8 RGB, original resolution.
            key: precomputed :func:`image_key` of ``image`` (computed when ``None``).

        Returns:
            :class:`Sam2ImageEmbedding` (also stored in :attr:`cache`).
        """
        check_image(image)
        key = image_key(image) if key is None else key
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        import torch

        if not image.flags.writeable:  # the processor hands it to torch.from_numpy, which warns on read-only arrays
            image = np.array(image)
        with torch.inference_mode():
            inputs = self.processor(
                images=image, return_tensors="pt", input_data_format="channels_last", device=self.device
            )
            pixel_values = inputs["pixel_values"].to(self.device, self.dtype)
            features = self.model.get_image_embeddings(pixel_values)
        embedding = Sam2ImageEmbedding(
            features=tuple(features), original_size=(image.shape[0], image.shape[1])
        )
        self.cache.put(key, embedding)
        return embedding

    def _groups(
        self, tokens: list[tuple[list[tuple[float, float]], list[int]]], has_mask: Sequence[bool] | None = None
    ) -> list[list[int]]:
        """Indices of the non-empty prompts, grouped into decoder batches.

        A batch is homogeneous in ``has_mask`` (objects with a ``mask_input`` never share a batch
        with objects without); in ``exact`` mode also in token count.
        """
        live = [i for i, (coords, _) in enumerate(tokens) if coords]
        masked = has_mask if has_mask is not None else [False] * len(tokens)
        groups: dict[tuple[bool, int], list[int]] = {}
        for i in live:
            length = 0 if self.batching == "padded" else len(tokens[i][0])
            groups.setdefault((bool(masked[i]), length), []).append(i)
        return list(groups.values())

    def decode(self, embedding: Sam2ImageEmbedding, prompts: Sequence[ObjectPrompt]) -> SegmenterOutput:
        """Run the prompt encoder and mask decoder on a computed embedding.

        Args:
            embedding: from :meth:`encode`.
            prompts: one :class:`ObjectPrompt` per object, original-image pixels. An object with
                neither box nor points gets an all-False mask and score 0 (with a warning).

        Returns:
            :class:`SegmenterOutput`: ``(n, H, W)`` bool masks at the original size, ``(n,)``
            float32 predicted IoU of each kept mask and ``(n, S/4, S/4)`` float32
            ``low_res_logits`` of each kept mask (see the module docstring for the multimask
            convention with ``mask_input``).

        Raises:
            ValueError: a non-finite or out-of-range coordinate, a malformed point or box, or a
                ``mask_input`` that is not ``(S/4, S/4)`` real-valued and finite. Checked for every
                object before the model runs.
        """
        import torch

        height, width = embedding.original_size
        side = self.low_res_size
        out = empty_output(height, width, len(prompts), low_res=side)
        tokens = [prompt_tokens(p) for p in prompts]
        mask_inputs = [
            None if p.mask_input is None else check_mask_input(p.mask_input, side, index=i)
            for i, p in enumerate(prompts)
        ]
        empty = [i for i, (coords, _) in enumerate(tokens) if not coords]
        if empty:
            logger.warning("SAM2: objects %s have neither a box nor points; their masks are empty", empty)
        size = self.image_size
        # Original pixels -> the model's S x S frame (what Sam2Processor does to input points).
        scale = np.array([size / width, size / height], dtype=np.float64)
        scaled: dict[int, np.ndarray] = {}
        for i, (pts, _) in enumerate(tokens):
            if pts:
                with np.errstate(over="ignore", invalid="ignore"):
                    scaled[i] = (np.asarray(pts, dtype=np.float64) * scale).astype(np.float32)
                if not np.isfinite(scaled[i]).all():
                    raise ValueError(f"object {i} has a coordinate too large for the model (it overflows "
                                     f"float32 in the {size}x{size} model frame): {prompts[i]!r}")
        has_mask = [m is not None for m in mask_inputs]
        with torch.inference_mode():
            for group in self._groups(tokens, has_mask):
                g = len(group)
                length = max(len(tokens[i][0]) for i in group)
                coords = np.zeros((g, length, 2), dtype=np.float32)
                labels = np.full((g, length), LABEL_PAD, dtype=np.int64)
                for row, i in enumerate(group):
                    coords[row, : len(tokens[i][0])] = scaled[i]
                    labels[row, : len(tokens[i][1])] = tokens[i][1]
                refine = has_mask[group[0]]
                if refine:
                    # One object per image row: (g, 1, ...) prompts, the embedding expanded to g rows.
                    features = [f.expand(g, *f.shape[1:]) for f in embedding.features]
                    masks_in = np.stack([mask_inputs[i] for i in group])[:, None]  # (g, 1, s, s)
                    extra = {"input_masks": torch.from_numpy(masks_in).to(self.device, self.dtype)}
                    coords, labels = coords[:, None], labels[:, None]
                else:
                    features, extra = list(embedding.features), {}
                    coords, labels = coords[None], labels[None]
                result = self.model(
                    image_embeddings=features,
                    input_points=torch.from_numpy(coords).to(self.device),
                    input_labels=torch.from_numpy(labels).to(self.device),
                    multimask_output=not refine,
                    **extra,
                )
                iou = result.iou_scores.reshape(g, -1).float()  # (g, 3), or (g, 1) with a mask input
                candidates = result.pred_masks.reshape(g, iou.shape[1], *result.pred_masks.shape[-2:])
                best = iou.argmax(dim=-1)  # (g,)
                rows = torch.arange(g, device=best.device)
                logits = candidates[rows, best].float()  # (g, S/4, S/4)
                masks = self.processor.post_process_masks(
                    [logits[:, None]], [[height, width]], mask_threshold=0.0, binarize=True
                )[0][:, 0]  # (g, H, W) bool
                out.masks[group] = masks.cpu().numpy()
                out.scores[group] = iou[rows, best].cpu().numpy()
                assert out.low_res_logits is not None
                out.low_res_logits[group] = logits.cpu().numpy()
        return out

    def segment(self, image: np.ndarray, prompts: Sequence[ObjectPrompt]) -> SegmenterOutput:
        """Segment every prompted object of one image (see :class:`Segmenter`).

        Args:
            image: ``(H, W, 3)`` uint8 RGB, original resolution.
            prompts: one :class:`ObjectPrompt` per object, original-image pixels.

        Returns:
            :class:`SegmenterOutput` with ``(len(prompts), H, W)`` bool masks, float32 scores and
            ``(len(prompts), S/4, S/4)`` float32 ``low_res_logits``. No prompts: ``(0, H, W)``
            masks, and the model is not run.
        """
        check_image(image)
        prompts = list(prompts)
        if not prompts:
            return empty_output(image.shape[0], image.shape[1], low_res=self.low_res_size)
        return self.decode(self.encode(image), prompts)

    def close(self) -> None:
        """Drop the cached embeddings."""
        self.cache.clear()
