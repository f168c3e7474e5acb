"""SAM2 configurations for tests and benchmarks, and a builder for tiny random checkpoints.

Nothing here downloads weights. :func:`sam2_config` returns a transformers ``Sam2Config`` for

* ``"tiny-test"``: a very small model (image size 256, hiera dims 16/32/64/128, prompt encoder /
  mask decoder hidden size 64) that builds, saves and runs in well under a second on a CPU;
* ``"hiera-tiny"``, ``"hiera-small"``, ``"hiera-base-plus"``, ``"hiera-large"``: the published
  SAM 2 / 2.1 image-encoder hyper-parameters (image size 1024), for timing the real architectures
  with random weights.

:func:`build_tiny_sam2` saves a random ``Sam2Model`` plus a matching ``Sam2Processor`` into a
folder that ``Sam2Model.from_pretrained`` / ``Sam2Processor.from_pretrained`` reload.

The published parameter counts (SAM 2.1 model card / README) include the video memory modules
(memory attention, memory encoder, object-pointer projections), which the image-only
``Sam2Model`` does not have; see :data:`PUBLISHED_PARAMS` and :func:`count_parameters`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _HieraSpec:
    """Hiera image-encoder hyper-parameters (one entry per stage where a tuple has 4 items)."""

    image_size: int
    embed_dims: tuple[int, int, int, int]
    heads: tuple[int, int, int, int]
    blocks: tuple[int, int, int, int]
    global_blocks: tuple[int, ...]
    window_sizes: tuple[int, int, int, int]
    window_pos_bkg: tuple[int, int]
    hidden: int = 256  # FPN width = prompt-encoder / mask-decoder hidden size
    decoder_mlp: int = 2048
    decoder_heads: int = 8
    iou_head_hidden: int = 256


#: Architectures known to :func:`sam2_config`. The real ones follow Meta's ``sam2.1_hiera_*.yaml``
#: (embed dim, heads doubling per stage, blocks per stage, global-attention block indices, window
#: spec, window positional-embedding background size), which is also what transformers'
#: ``convert_sam2_to_hf.py`` uses; ``Sam2HieraDetConfig()`` defaults are hiera-tiny.
ARCHS: dict[str, _HieraSpec] = {
    "tiny-test": _HieraSpec(
        image_size=256,
        embed_dims=(16, 32, 64, 128),
        heads=(1, 1, 2, 2),
        blocks=(1, 1, 2, 1),
        global_blocks=(3,),
        window_sizes=(8, 4, 4, 2),
        window_pos_bkg=(4, 4),
        hidden=64,
        decoder_mlp=128,
        decoder_heads=4,
        iou_head_hidden=64,
    ),
    "hiera-tiny": _HieraSpec(
        image_size=1024,
        embed_dims=(96, 192, 384, 768),
        heads=(1, 2, 4, 8),
        blocks=(1, 2, 7, 2),
        global_blocks=(5, 7, 9),
        window_sizes=(8, 4, 14, 7),
        window_pos_bkg=(7, 7),
    ),
    "hiera-small": _HieraSpec(
        image_size=1024,
        embed_dims=(96, 192, 384, 768),
        heads=(1, 2, 4, 8),
        blocks=(1, 2, 11, 2),
        global_blocks=(7, 10, 13),
        window_sizes=(8, 4, 14, 7),
        window_pos_bkg=(7, 7),
    ),
    "hiera-base-plus": _HieraSpec(
        image_size=1024,
        embed_dims=(112, 224, 448, 896),
        heads=(2, 4, 8, 16),
        blocks=(2, 3, 16, 3),
        global_blocks=(12, 16, 20),
        window_sizes=(8, 4, 14, 7),
        window_pos_bkg=(14, 14),
    ),
    "hiera-large": _HieraSpec(
        image_size=1024,
        embed_dims=(144, 288, 576, 1152),
        heads=(2, 4, 8, 16),
        blocks=(2, 6, 36, 4),
        global_blocks=(23, 33, 43),
        window_sizes=(8, 4, 16, 8),
        window_pos_bkg=(7, 7),
    ),
}

# tiny-test with a 128-wide FPN: transformers' SAM2 video memory attention reads 64-channel memories (its
# cross-attention key/value width is fixed at 64) and splits each object pointer into hidden/64 tokens, which
# needs hidden > 64.
ARCHS["tiny-video-test"] = replace(ARCHS["tiny-test"], hidden=128, decoder_mlp=256)

#: Published total parameter counts of the SAM 2.1 checkpoints (image encoder, prompt encoder,
#: mask decoder *and* the video memory modules).
PUBLISHED_PARAMS: dict[str, float] = {
    "hiera-tiny": 38.9e6,
    "hiera-small": 46.0e6,
    "hiera-base-plus": 80.8e6,
    "hiera-large": 224.4e6,
}


def _spec(arch: str) -> _HieraSpec:
    try:
        return ARCHS[arch]
    except KeyError:
        raise ValueError(f"unknown SAM2 architecture {arch!r}; choose one of {sorted(ARCHS)}") from None


def _check_spec(arch: str, spec: _HieraSpec) -> None:
    """Reject specs that build a broken Hiera (shape mismatches or Meta's ZeroDivisionError)."""
    stage_starts = [sum(spec.blocks[:i]) for i in range(4)]
    pooled = set(stage_starts[1:])  # the first block of stages 1..3 does query pooling
    clash = sorted(pooled.intersection(spec.global_blocks))
    if clash:
        raise ValueError(
            f"{arch}: blocks {clash} would be both global-attention and query-pooling blocks "
            "(Meta's Hiera divides the window size by the query stride there)"
        )
    if max(spec.global_blocks) >= sum(spec.blocks):
        raise ValueError(f"{arch}: global attention block index beyond the {sum(spec.blocks)} blocks")
    if spec.image_size % 64:
        raise ValueError(f"{arch}: image size must be a multiple of 64 (got {spec.image_size})")
    side = spec.image_size // 4
    if side % spec.window_sizes[0]:
        raise ValueError(f"{arch}: first-stage window {spec.window_sizes[0]} must divide {side}")


def sam2_config(arch: str = "tiny-test") -> Any:
    """Build a transformers ``Sam2Config`` for one of :data:`ARCHS`.

    Args:
        arch: ``"tiny-test"``, ``"hiera-tiny"``, ``"hiera-small"``, ``"hiera-base-plus"`` or
            ``"hiera-large"``.

    Returns:
        ``transformers.Sam2Config``. The vision feature maps are ``image/4``, ``image/8`` and
        ``image/16`` pixels per side; the prompt encoder works on an ``image/16`` grid.

    Raises:
        ValueError: unknown ``arch``.
    """
    from transformers import (
        Sam2Config,
        Sam2HieraDetConfig,
        Sam2MaskDecoderConfig,
        Sam2PromptEncoderConfig,
        Sam2VisionConfig,
    )

    spec = _spec(arch)
    _check_spec(arch, spec)
    size = spec.image_size
    backbone = Sam2HieraDetConfig(
        hidden_size=spec.embed_dims[0],
        num_attention_heads=spec.heads[0],
        image_size=[size, size],
        embed_dim_per_stage=list(spec.embed_dims),
        num_attention_heads_per_stage=list(spec.heads),
        blocks_per_stage=list(spec.blocks),
        global_attention_blocks=list(spec.global_blocks),
        window_size_per_stage=list(spec.window_sizes),
        window_positional_embedding_background_size=list(spec.window_pos_bkg),
    )
    vision = Sam2VisionConfig(
        backbone_config=backbone,
        backbone_channel_list=list(reversed(spec.embed_dims)),
        backbone_feature_sizes=[[size // 4, size // 4], [size // 8, size // 8], [size // 16, size // 16]],
        fpn_hidden_size=spec.hidden,
    )
    prompt = Sam2PromptEncoderConfig(hidden_size=spec.hidden, image_size=size, patch_size=16)
    decoder = Sam2MaskDecoderConfig(
        hidden_size=spec.hidden,
        mlp_dim=spec.decoder_mlp,
        num_attention_heads=spec.decoder_heads,
        iou_head_hidden_dim=spec.iou_head_hidden,
    )
    return Sam2Config(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)


def count_parameters(arch: str, *, include_memory: bool = False) -> int:
    """Count the parameters of an architecture without allocating its weights (meta device).

    Args:
        arch: a key of :data:`ARCHS`.
        include_memory: count transformers' ``Sam2VideoModel`` built on the same image encoder,
            i.e. with the memory attention / memory encoder / object-pointer modules that the
            published numbers (:data:`PUBLISHED_PARAMS`) include. ``False`` counts the image-only
            ``Sam2Model`` that the segmenter uses.

    Returns:
        The number of parameters.
    """
    import torch

    config = sam2_config(arch)
    with torch.device("meta"):
        if include_memory:
            from transformers import Sam2VideoModel

            model = Sam2VideoModel(sam2_video_config(arch))
        else:
            from transformers import Sam2Model

            model = Sam2Model(config)
    return sum(p.numel() for p in model.parameters())


def sam2_processor(image_size: int) -> Any:
    """A ``Sam2Processor`` whose image processor resizes to ``image_size`` squared.

    Args:
        image_size: the model's input side in pixels (``config.prompt_encoder_config.image_size``).

    Returns:
        ``transformers.Sam2Processor`` with mask size ``image_size // 4`` (the decoder's low-res
        mask side).
    """
    from transformers import Sam2ImageProcessor, Sam2Processor

    image_processor = Sam2ImageProcessor(
        size={"height": image_size, "width": image_size},
        mask_size={"height": image_size // 4, "width": image_size // 4},
    )
    return Sam2Processor(image_processor=image_processor)


def _spread_weights(model: Any) -> None:
    """Redraw the weights so that a random model's outputs are not degenerate.

    transformers initialises SAM2 with std 0.02 and zero biases, which gives mask logits of about
    1e-4: every mask is threshold noise and every predicted IoU is 0.5, so tests could not tell a
    right mask from a wrong one. Matrices get std ``1/sqrt(fan_in)``, vectors (biases, embeddings
    of shape ``(n,)``) std 0.1, layer-norm scales stay 1. The image-wide positional encoding is set
    equal to the prompt encoder's, as in the released checkpoints.
    """
    import math

    import torch

    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() >= 2:
                param.normal_(0.0, 1.0 / math.sqrt(param[0].numel()))
            elif not ("norm" in name and name.endswith("weight")):
                param.normal_(0.0, 0.1)
        model.shared_image_embedding.positional_embedding.copy_(
            model.prompt_encoder.shared_embedding.positional_embedding
        )


def build_tiny_sam2(path: str | Path, *, seed: int = 0, arch: str = "tiny-test") -> Path:
    """Save a randomly initialised ``Sam2Model`` and a matching ``Sam2Processor`` into ``path``.

    Args:
        path: target folder (created if missing).
        seed: torch seed for the random weights; the same seed gives the same weights.
        arch: a key of :data:`ARCHS`; only ``"tiny-test"`` is small enough for unit tests.

    Returns:
        ``path`` as a :class:`~pathlib.Path`. ``Sam2Model.from_pretrained(path)`` and
        ``Sam2Processor.from_pretrained(path)`` reload what was saved.
    """
    from transformers import Sam2Model

    config = sam2_config(arch)
    out = save_random(Sam2Model, config, sam2_processor(config.prompt_encoder_config.image_size), path, seed=seed)
    logger.debug("saved random SAM2 %s (seed %d) to %s", arch, seed, out)
    return out


def save_random(model_cls: Any, config: Any, processor: Any, path: str | Path, *, seed: int) -> Path:
    """Build ``model_cls(config)`` with seeded random weights (:func:`_spread_weights`), save it and ``processor``
    into ``path`` (created if missing). The caller's global RNG state is neither used nor disturbed."""
    import torch

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_cls(config).eval()
        _spread_weights(model)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def sam2_video_config(arch: str = "tiny-video-test") -> Any:
    """A transformers ``Sam2VideoConfig`` (image encoder of :func:`sam2_config` plus the memory modules).

    The released architectures keep transformers' memory defaults (256-wide memory attention, 64-channel
    memories, 7 memory frames, 16 object pointers). Smaller FPN widths (``tiny-video-test``) get memory modules
    of their own width, with the 64-channel memories transformers requires.
    """
    from transformers import Sam2VideoConfig

    config = sam2_config(arch)
    spec = _spec(arch)
    size = spec.image_size
    memory: dict[str, Any] = {}
    if spec.hidden != 256:
        memory = {
            "memory_attention_hidden_size": spec.hidden,
            "memory_attention_feed_forward_hidden_size": 2 * spec.hidden,
            "memory_attention_num_layers": 1,
            "memory_encoder_hidden_size": spec.hidden,
            "mask_downsampler_embed_dim": spec.hidden,
            "memory_fuser_embed_dim": spec.hidden,
            "memory_fuser_intermediate_dim": 2 * spec.hidden,
            "memory_fuser_num_layers": 1,
        }
    return Sam2VideoConfig(
        vision_config=config.vision_config.to_dict(),
        prompt_encoder_config=config.prompt_encoder_config.to_dict(),
        mask_decoder_config=config.mask_decoder_config.to_dict(),
        image_size=size,
        memory_attention_rope_feat_sizes=[size // 16, size // 16],
        **memory,
    )


def sam2_video_processor(image_size: int) -> Any:
    """A ``Sam2VideoProcessor`` (image and video processors) resizing to ``image_size`` squared."""
    from transformers import Sam2ImageProcessor, Sam2VideoProcessor, Sam2VideoVideoProcessor

    image_processor = Sam2ImageProcessor(
        size={"height": image_size, "width": image_size},
        mask_size={"height": image_size // 4, "width": image_size // 4},
    )
    video_processor = Sam2VideoVideoProcessor(size={"height": image_size, "width": image_size})
    return Sam2VideoProcessor(image_processor=image_processor, video_processor=video_processor,
                              target_size=image_size)


def build_tiny_sam2_video(path: str | Path, *, seed: int = 0, arch: str = "tiny-video-test") -> Path:
    """Save a random ``Sam2VideoModel`` with its processors into ``path``, as the hub's SAM 2.1 repositories
    hold them: the same folder loads as the image segmenter (``Sam2Model`` takes the shared weights) and as
    the video tracker (``Sam2VideoModel`` + ``Sam2VideoProcessor``).

    Args:
        path: target folder (created if missing).
        seed: torch seed of the random weights.
        arch: a key of :data:`ARCHS`; ``tiny-video-test`` is small enough for unit tests.
    """
    from transformers import Sam2VideoModel

    config = sam2_video_config(arch)
    out = save_random(Sam2VideoModel, config, sam2_video_processor(config.prompt_encoder_config.image_size), path,
                      seed=seed)
    logger.debug("saved random SAM2 video model %s (seed %d) to %s", arch, seed, out)
    return out
