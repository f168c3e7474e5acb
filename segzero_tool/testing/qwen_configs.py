"""The published architectures of Qwen2.5-VL-3B-Instruct and Qwen2.5-VL-7B-Instruct, as transformers configs.

The numbers are those of each checkpoint's ``config.json`` on the hub (no download here): the language model's
dimensions, its multimodal rotary embedding (``mrope_section`` [16, 24, 24] of head_dim 128), the vision tower
(32 blocks of width 1280, windowed attention of 112 pixels with full attention in blocks 7, 15, 23 and 31, patch
14, 2x2 merge) and the special-token ids. Building either config on the ``meta`` device gives the released
parameter counts: :data:`PARAMETER_COUNTS`.

Used by the dry-run tests (config only, no weights) and by ``benchmarks/train_gpu_check.py`` (random weights of
the real size).

Example:
    >>> config = qwen2_5_vl_config("3b")  # doctest: +SKIP
    >>> config.save_pretrained(folder)  # a folder the dry run reads  # doctest: +SKIP
"""

from __future__ import annotations

import copy
from typing import Any

#: Parameters of each architecture (a meta-device build of the config; the released checkpoints' counts).
PARAMETER_COUNTS = {"3b": 3_754_622_976, "7b": 8_292_166_656}

#: Hub ids the dimensions come from.
HUB_IDS = {"3b": "Qwen/Qwen2.5-VL-3B-Instruct", "7b": "Qwen/Qwen2.5-VL-7B-Instruct"}

#: Qwen2.5-VL's special-token ids (both sizes share the tokenizer).
TOKEN_IDS = {
    "bos_token_id": 151643,  # <|endoftext|>
    "eos_token_id": 151645,  # <|im_end|>
    "vision_start_token_id": 151652,
    "vision_end_token_id": 151653,
    "image_token_id": 151655,
    "video_token_id": 151656,
}

_VISION: dict[str, Any] = {
    "depth": 32,
    "hidden_act": "silu",
    "hidden_size": 1280,
    "intermediate_size": 3420,
    "num_heads": 16,
    "in_channels": 3,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "window_size": 112,
    "fullatt_block_indexes": [7, 15, 23, 31],
    "tokens_per_second": 2,
}

_ROPE = {"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [16, 24, 24]}

_TEXT: dict[str, dict[str, Any]] = {
    "3b": {
        "hidden_size": 2048,
        "intermediate_size": 11008,
        "num_hidden_layers": 36,
        "num_attention_heads": 16,
        "num_key_value_heads": 2,
        "vocab_size": 151936,
        "max_window_layers": 70,
        "tie_word_embeddings": True,
    },
    "7b": {
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "vocab_size": 152064,
        "max_window_layers": 28,
        "tie_word_embeddings": False,
    },
}

_TEXT_COMMON: dict[str, Any] = {
    "hidden_act": "silu",
    "max_position_embeddings": 128000,
    "rms_norm_eps": 1e-6,
    "sliding_window": 32768,
    "use_sliding_window": False,
    "attention_dropout": 0.0,
    "initializer_range": 0.02,
    "rope_parameters": _ROPE,
    "bos_token_id": TOKEN_IDS["bos_token_id"],
    "eos_token_id": TOKEN_IDS["eos_token_id"],
}

SIZES = tuple(_TEXT)

_VISION_TOKEN_KEYS = ("vision_start_token_id", "vision_end_token_id", "image_token_id", "video_token_id")


def text_config(size: str) -> dict[str, Any]:
    """The language model's config keys of ``size`` ("3b" or "7b"), as a fresh dict."""
    return copy.deepcopy({**_TEXT_COMMON, **_TEXT[_check(size)]})


def vision_config(size: str) -> dict[str, Any]:
    """The vision tower's config keys of ``size``; its output width is the language model's hidden size."""
    return copy.deepcopy({**_VISION, "out_hidden_size": _TEXT[_check(size)]["hidden_size"]})


def qwen2_5_vl_config(size: str, **overrides: Any) -> Any:
    """``transformers.Qwen2_5_VLConfig`` of Qwen2.5-VL-3B-Instruct (``"3b"``) or -7B-Instruct (``"7b"``).

    Args:
        size: ``"3b"`` or ``"7b"`` (case-insensitive).
        overrides: top-level config keys to replace (e.g. other special-token ids for another tokenizer).

    Raises:
        ValueError: an unknown size.
    """
    from transformers import Qwen2_5_VLConfig

    size = _check(size)
    text = text_config(size)
    kwargs: dict[str, Any] = {"text_config": text, "vision_config": vision_config(size),
                              "tie_word_embeddings": text["tie_word_embeddings"],
                              **{k: TOKEN_IDS[k] for k in _VISION_TOKEN_KEYS}}
    kwargs.update(overrides)
    return Qwen2_5_VLConfig(**kwargs)


def _check(size: str) -> str:
    key = str(size).lower()
    if key not in _TEXT:
        raise ValueError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
    return key


__all__ = ["HUB_IDS", "PARAMETER_COUNTS", "SIZES", "TOKEN_IDS", "qwen2_5_vl_config", "text_config", "vision_config"]
