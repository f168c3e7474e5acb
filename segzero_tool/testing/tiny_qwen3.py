"""Tiny random Qwen3-VL checkpoints for tests, and the published Qwen3-VL architectures as configs.

:func:`build_tiny_qwen3_vl` writes a folder that loads with ``AutoProcessor.from_pretrained(path)`` and
``AutoModelForImageTextToText.from_pretrained(path)`` (model type ``qwen3_vl``), exactly like a hub
checkpoint:

* the offline byte-level BPE tokenizer of :mod:`segzero_tool.testing.tiny_qwen` (Qwen's special
  tokens, nothing downloaded);
* a chat template that renders like Qwen3-VL's: **no** default system turn (Qwen2.5-VL's template adds
  "You are a helpful assistant."; Qwen3-VL's does not), vision placeholders, ``add_generation_prompt``;
* Qwen3-VL's image geometry: 16-pixel patches merged 2x2 (so 32-pixel steps, not Qwen2.5-VL's 28), mean
  and std 0.5, bounded to 64*64 .. 224*224 pixels here (at most 7x7 merged tokens = 49 visual tokens);
* a 2-layer text model (hidden 64, 4 heads / 2 KV heads, head_dim 16, interleaved mrope [2, 3, 3]) and a
  2-block vision tower (hidden 32, deepstack from block 1) with random weights drawn from ``seed``.

Random weights produce gibberish: the answers never parse. :func:`qwen3_vl_config` gives the published
architectures (``2b``, ``4b``, ``8b``) for benchmarks (random weights of the real size, or a meta-device
build for memory plans).

Example:
    >>> path = build_tiny_qwen3_vl(tmp_path / "tiny-qwen3-vl")  # doctest: +SKIP
    >>> TransformersReasoner.from_pretrained(str(path))  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import logging
import pathlib
from typing import Any

from .tiny_qwen import _build_tokenizer, _chat_template, _save_checkpoint, _text_config, _vision_token_ids

logger = logging.getLogger(__name__)

#: Pixel bounds of the tiny image processor (Qwen3-VL's defaults are 65,536 .. 16,777,216).
TINY_MIN_PIXELS = 64 * 64
TINY_MAX_PIXELS = 224 * 224

# Renders like Qwen3-VL-Instruct's template for what this package sends (one user turn [image, text]):
# a system turn only when one is given, then the message blocks shared with tiny_qwen's template.
_CHAT_TEMPLATE = _chat_template(default_system_turn=False)


def build_tiny_qwen3_vl(path: str | pathlib.Path, *, seed: int = 0) -> pathlib.Path:
    """Build and save a tiny random Qwen3-VL checkpoint (model + processor) into ``path``.

    Args:
        path: folder to write (created if missing; existing files are overwritten).
        seed: seed of the random weights; the same seed gives identical weights and files.

    Returns:
        The folder, as a :class:`pathlib.Path`.
    """
    from transformers import (
        Qwen2VLImageProcessor,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    tokenizer, ids = _build_tokenizer()
    config = Qwen3VLConfig(
        text_config={
            **_text_config(len(tokenizer), ids),
            "head_dim": 16,
            "rope_parameters": {"rope_type": "default", "rope_theta": 5_000_000.0, "mrope_section": [2, 3, 3],
                                "mrope_interleaved": True},
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 64,
            "patch_size": 16,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "num_position_embeddings": 64,  # an 8x8 grid, interpolated to the image's patch grid
            "deepstack_visual_indexes": [1],
        },
        **_vision_token_ids(ids),
    )
    geometry = {"patch_size": 16, "temporal_patch_size": 2, "merge_size": 2,
                "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}
    size = {"shortest_edge": TINY_MIN_PIXELS, "longest_edge": TINY_MAX_PIXELS}
    processor = Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=size, **geometry),
        tokenizer=tokenizer,
        video_processor=Qwen3VLVideoProcessor(size=size, **geometry),
        chat_template=_CHAT_TEMPLATE,
    )
    sampling = {"temperature": 0.7, "top_p": 0.8, "top_k": 20}
    return _save_checkpoint(path, seed, Qwen3VLForConditionalGeneration, config, processor, ids,
                            sampling=sampling, log=logger)


# --- the published architectures -------------------------------------------------------------------

#: Hub ids the dimensions come from.
HUB_IDS = {"2b": "Qwen/Qwen3-VL-2B-Instruct", "4b": "Qwen/Qwen3-VL-4B-Instruct", "8b": "Qwen/Qwen3-VL-8B-Instruct"}

#: Qwen3-VL's special-token ids (every size shares the Qwen3 tokenizer).
TOKEN_IDS = {
    "bos_token_id": 151643,  # <|endoftext|>
    "eos_token_id": 151645,  # <|im_end|>
    "vision_start_token_id": 151652,
    "vision_end_token_id": 151653,
    "image_token_id": 151655,
    "video_token_id": 151656,
}

_ROPE = {"rope_type": "default", "rope_theta": 5_000_000.0, "mrope_section": [24, 20, 20], "mrope_interleaved": True}

# Text models: Alibaba's Pai-Megatron-Patch Qwen3-VL checkpoint converter (qwen3_vl/run_8xH20.sh: layers,
# hidden, FFN, heads, query groups, kv-channels 128, mrope 24/20/20, vocab 151936, 262144 positions, untied
# embeddings for 8B only).
_TEXT: dict[str, dict[str, Any]] = {
    "2b": {"hidden_size": 2048, "intermediate_size": 6144, "num_hidden_layers": 28, "num_attention_heads": 16},
    "4b": {"hidden_size": 2560, "intermediate_size": 9728, "num_hidden_layers": 36, "num_attention_heads": 32},
    "8b": {"hidden_size": 4096, "intermediate_size": 12288, "num_hidden_layers": 36, "num_attention_heads": 32},
}
_TIED = {"2b": True, "4b": True, "8b": False}

# Vision towers: 2B and 4B share a 24-block, 1024-wide ViT (deepstack from blocks 5, 11, 17); 8B has the
# 27-block, 1152-wide one (deepstack 8, 16, 24; transformers' Qwen3VLVisionConfig defaults). The merger
# projects to the text width. Not checked against the hub's config.json files (no network here).
_SMALL_VIT = {"depth": 24, "hidden_size": 1024, "intermediate_size": 4096, "deepstack_visual_indexes": [5, 11, 17]}
_LARGE_VIT = {"depth": 27, "hidden_size": 1152, "intermediate_size": 4304, "deepstack_visual_indexes": [8, 16, 24]}
_VIT = {"2b": _SMALL_VIT, "4b": _SMALL_VIT, "8b": _LARGE_VIT}


def qwen3_vl_config(size: str) -> Any:
    """The published architecture of Qwen3-VL-``size``-Instruct (``2b``, ``4b`` or ``8b``) as a
    ``Qwen3VLConfig`` (no weights; build it on the ``meta`` device for parameter counts).

    Raises:
        ValueError: an unknown size.
    """
    from transformers import Qwen3VLConfig

    key = str(size).strip().lower()
    if key not in _TEXT:
        raise ValueError(f"unknown Qwen3-VL size {size!r}; choose one of: {', '.join(_TEXT)}")
    text = {
        **copy.deepcopy(_TEXT[key]),
        "num_key_value_heads": 8,
        "head_dim": 128,
        "hidden_act": "silu",
        "vocab_size": 151936,
        "max_position_embeddings": 262144,
        "rms_norm_eps": 1e-6,
        "rope_parameters": copy.deepcopy(_ROPE),
        "bos_token_id": TOKEN_IDS["bos_token_id"],
        "eos_token_id": TOKEN_IDS["eos_token_id"],
        "tie_word_embeddings": _TIED[key],
    }
    vision = {
        **copy.deepcopy(_VIT[key]),
        "num_heads": 16,
        "hidden_act": "gelu_pytorch_tanh",
        "patch_size": 16,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "num_position_embeddings": 2304,
        "out_hidden_size": _TEXT[key]["hidden_size"],
    }
    ids = {k: v for k, v in TOKEN_IDS.items() if k.startswith(("vision", "image", "video"))}
    return Qwen3VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=_TIED[key], **ids)


__all__ = ["HUB_IDS", "TINY_MAX_PIXELS", "TINY_MIN_PIXELS", "TOKEN_IDS", "build_tiny_qwen3_vl", "qwen3_vl_config"]
