"""SAM 3 tracker configurations for tests and benchmarks, and a builder for tiny random checkpoints.

Nothing here downloads weights. :func:`sam3_tracker_config` returns a transformers
``Sam3TrackerConfig`` for

* ``"tiny-test"``: a very small model (image size 224, patch 14, a 2-layer ViT of width 32, prompt
  encoder / mask decoder hidden size 32) that builds, saves and runs in well under a second on a CPU;
* ``"real"``: the released ``facebook/sam3`` tracker architecture, which is what transformers'
  ``Sam3TrackerConfig()`` defaults are (checkpoint ``facebook/sam3`` in its docstrings): a 32-layer
  ViT of width 1024 (16 heads, MLP 4736, windows of 24 with global attention in layers 7, 15, 23
  and 31, RoPE) on 1008 x 1008 inputs with patch 14, a 256-wide FPN at 288 / 144 / 72 px, and
  SAM2's prompt encoder and mask decoder at width 256: 458.3M parameters, 454.0M of them in the
  image encoder. For timing the real architecture with random weights.

:func:`build_tiny_sam3_tracker` saves a random ``Sam3TrackerModel`` plus a matching
``Sam3TrackerProcessor`` into a folder that
:meth:`~segzero_tool.segmenters.transformers_sam3.TransformersSam3Segmenter.from_pretrained` loads.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: Architectures known to :func:`sam3_tracker_config`.
ARCHS = ("tiny-test", "real")

#: Parameters of the image-prompt ``Sam3TrackerModel`` built from ``sam3_tracker_config("real")``
#: (the released checkpoint's tracker part: vision encoder, prompt encoder, mask decoder).
REAL_TRACKER_PARAMS = 458_260_369


def sam3_tracker_config(arch: str = "tiny-test") -> Any:
    """Build a transformers ``Sam3TrackerConfig``.

    Args:
        arch: ``"tiny-test"`` or ``"real"`` (see the module docstring).

    Returns:
        ``transformers.Sam3TrackerConfig``. The vision feature maps are ``4g``, ``2g`` and ``g``
        pixels per side for an embedding grid of ``g = image / 14``; the low-resolution masks (and
        ``mask_input``) are ``4g`` per side.

    Raises:
        ValueError: unknown ``arch``.
    """
    from transformers import Sam3TrackerConfig

    if arch == "real":
        return Sam3TrackerConfig()
    if arch != "tiny-test":
        raise ValueError(f"unknown SAM 3 tracker architecture {arch!r}; choose one of {list(ARCHS)}")
    from transformers.models.sam3.configuration_sam3 import Sam3VisionConfig, Sam3ViTConfig
    from transformers.models.sam3_tracker.configuration_sam3_tracker import (
        Sam3TrackerMaskDecoderConfig,
        Sam3TrackerPromptEncoderConfig,
    )

    size, patch, hidden = 224, 14, 32
    grid = size // patch
    backbone = Sam3ViTConfig(
        hidden_size=hidden, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=size,
        patch_size=patch, window_size=8, global_attn_indexes=[1], pretrain_image_size=size,
    )
    vision = Sam3VisionConfig(
        backbone_config=backbone, fpn_hidden_size=hidden,
        backbone_feature_sizes=[[4 * grid, 4 * grid], [2 * grid, 2 * grid], [grid, grid]],
    )
    prompt = Sam3TrackerPromptEncoderConfig(hidden_size=hidden, image_size=size, patch_size=patch)
    decoder = Sam3TrackerMaskDecoderConfig(hidden_size=hidden, mlp_dim=64, num_attention_heads=2,
                                           iou_head_hidden_dim=hidden)
    return Sam3TrackerConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)


def sam3_tracker_processor(config: Any) -> Any:
    """A ``Sam3TrackerProcessor`` (with SAM 3's image processor) for ``config``: inputs resized to the
    model's square side, mask size four times the embedding grid."""
    from transformers import Sam3TrackerProcessor
    from transformers.models.sam3.image_processing_sam3 import Sam3ImageProcessor

    size = int(config.prompt_encoder_config.image_size)
    low = 4 * (size // int(config.prompt_encoder_config.patch_size))
    image_processor = Sam3ImageProcessor(size={"height": size, "width": size},
                                         mask_size={"height": low, "width": low})
    return Sam3TrackerProcessor(image_processor=image_processor)


def build_tiny_sam3_tracker(path: str | Path, *, seed: int = 0, arch: str = "tiny-test") -> Path:
    """Save a randomly initialised ``Sam3TrackerModel`` and a matching ``Sam3TrackerProcessor`` into ``path``.

    Args:
        path: target folder (created if missing).
        seed: torch seed for the random weights; the same seed gives the same weights.
        arch: ``"tiny-test"`` (unit tests) or ``"real"`` (1.8 GB of float32 weights).

    Returns:
        ``path`` as a :class:`~pathlib.Path`; ``TransformersSam3Segmenter.from_pretrained(path)`` loads it.
    """
    from transformers import Sam3TrackerModel

    from .tiny_sam2 import save_random

    config = sam3_tracker_config(arch)
    out = save_random(Sam3TrackerModel, config, sam3_tracker_processor(config), path, seed=seed)
    logger.debug("saved random SAM 3 tracker %s (seed %d) to %s", arch, seed, out)
    return out


def build_tiny_sam3_tracker_video(path: str | Path, *, seed: int = 0) -> Path:
    """Save a tiny random ``Sam3TrackerVideoModel`` (SAM 3's tracker with its video memory) and a
    ``Sam3TrackerVideoProcessor`` into ``path``; :func:`segzero_tool.video.tracker.load_tracker` loads it.

    The FPN is 128 wide: transformers' memory attention reads 64-channel memories and splits each object
    pointer into ``hidden / 64`` tokens, which needs a width above 64.
    """
    from transformers import Sam3TrackerVideoConfig, Sam3TrackerVideoModel, Sam3TrackerVideoProcessor
    from transformers.models.sam2_video.video_processing_sam2_video import Sam2VideoVideoProcessor
    from transformers.models.sam3.configuration_sam3 import Sam3VisionConfig, Sam3ViTConfig
    from transformers.models.sam3.image_processing_sam3 import Sam3ImageProcessor
    from transformers.models.sam3_tracker_video.configuration_sam3_tracker_video import (
        Sam3TrackerVideoMaskDecoderConfig,
        Sam3TrackerVideoPromptEncoderConfig,
    )

    from .tiny_sam2 import save_random

    size, patch, hidden = 224, 14, 128
    grid = size // patch
    backbone = Sam3ViTConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                             image_size=size, patch_size=patch, window_size=8, global_attn_indexes=[1],
                             pretrain_image_size=size)
    vision = Sam3VisionConfig(backbone_config=backbone, fpn_hidden_size=hidden,
                              backbone_feature_sizes=[[4 * grid, 4 * grid], [2 * grid, 2 * grid], [grid, grid]])
    config = Sam3TrackerVideoConfig(
        vision_config=vision,
        prompt_encoder_config=Sam3TrackerVideoPromptEncoderConfig(hidden_size=hidden, image_size=size,
                                                                  patch_size=patch),
        mask_decoder_config=Sam3TrackerVideoMaskDecoderConfig(hidden_size=hidden, mlp_dim=64, num_attention_heads=2,
                                                              iou_head_hidden_dim=hidden),
        image_size=size, memory_attention_hidden_size=hidden, memory_attention_feed_forward_hidden_size=2 * hidden,
        memory_attention_num_layers=1, memory_attention_rope_feat_sizes=[grid, grid],
        memory_encoder_hidden_size=hidden, mask_downsampler_embed_dim=hidden, memory_fuser_embed_dim=hidden,
        memory_fuser_intermediate_dim=2 * hidden, memory_fuser_num_layers=1,
    )
    low = 4 * grid
    processor = Sam3TrackerVideoProcessor(
        image_processor=Sam3ImageProcessor(size={"height": size, "width": size},
                                           mask_size={"height": low, "width": low}),
        video_processor=Sam2VideoVideoProcessor(size={"height": size, "width": size}), target_size=size,
    )
    out = save_random(Sam3TrackerVideoModel, config, processor, path, seed=seed)
    return out


__all__ = ["ARCHS", "REAL_TRACKER_PARAMS", "build_tiny_sam3_tracker", "build_tiny_sam3_tracker_video", "sam3_tracker_config",
           "sam3_tracker_processor"]
