"""A tiny random SAM 3 concept checkpoint (``Sam3Model`` + ``Sam3Processor``) for tests: no downloads, CPU-fast.

:func:`build_tiny_sam3_concept` writes a folder that loads with ``Sam3Model.from_pretrained(path)`` and
``Sam3Processor.from_pretrained(path)``, so through
:meth:`~segzero_tool.segmenters.concept.Sam3ConceptSegmenter.from_pretrained` exactly like ``facebook/sam3``:

* a CLIP-style tokenizer (transformers' ``CLIPTokenizer``, the class ``facebook/sam3`` uses: byte-level BPE
  with ``</w>`` word ends, ``<|startoftext|>`` / ``<|endoftext|>``) trained on the spot with ``tokenizers``
  on a few noun phrases; every byte is in its alphabet, so no phrase is ever unknown;
* a ``Sam3ImageProcessor`` at 112 x 112 pixels (patch 14: an 8 x 8 grid);
* a 2-layer ViT (hidden 32), a 2-layer CLIP text encoder (hidden 32, 32 positions like SAM 3's), one
  DETR encoder / decoder layer with 20 queries, and the geometry encoder and mask decoder at hidden 32,
  with random weights drawn from ``seed`` (about 0.26 M parameters).

Random weights give random instances (scores near 0.25): tests that need a known answer script the
concept model instead. Building takes well under a second once torch and transformers are imported.
"""

from __future__ import annotations

import json
import logging
import pathlib
from typing import Any

logger = logging.getLogger(__name__)

#: CLIP's special tokens (ids 0 and 1 in the tiny vocabulary).
SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>")
#: Side of the tiny model's square input.
TINY_IMAGE_SIZE = 112
_VOCAB_SIZE = 600
_CORPUS = ("person", "a person with a hat", "the red cup", "yellow school bus", "dog", "cat on a mat", "car",
           "coffee cup", "spoon", "bottle", "chair", "tree", "window", "0123456789")


def _build_tokenizer() -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import CLIPTokenizer

    bpe = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=_VOCAB_SIZE, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), end_of_word_suffix="</w>",
                                  show_progress=False)
    bpe.train_from_iterator(_CORPUS, trainer)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(pair.split(" ", 1)) if isinstance(pair, str) else tuple(pair) for pair in model["merges"]]
    return CLIPTokenizer(vocab=model["vocab"], merges=merges)


def tiny_sam3_config(vocab_size: int, bos_token_id: int = 0, eos_token_id: int = 1) -> Any:
    """The tiny ``Sam3Config`` (see the module docstring)."""
    from transformers import Sam3Config

    grid = TINY_IMAGE_SIZE // 14
    hidden = {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}
    return Sam3Config(
        vision_config={
            "backbone_config": {"model_type": "sam3_vit_model", "num_hidden_layers": 2, "image_size": TINY_IMAGE_SIZE,
                                "patch_size": 14, "window_size": grid // 2, "global_attn_indexes": [1],
                                "pretrain_image_size": TINY_IMAGE_SIZE, **hidden},
            "fpn_hidden_size": 32,
            "backbone_feature_sizes": [[grid * 4, grid * 4], [grid * 2, grid * 2], [grid, grid]],
        },
        text_config={"model_type": "clip_text_model", "vocab_size": vocab_size, "projection_dim": 32,
                     "num_hidden_layers": 2, "max_position_embeddings": 32, "bos_token_id": bos_token_id,
                     "eos_token_id": eos_token_id, "pad_token_id": eos_token_id, **hidden},
        geometry_encoder_config={"num_layers": 1, **hidden},
        detr_encoder_config={"num_layers": 1, **hidden},
        detr_decoder_config={"num_layers": 1, "num_queries": 20, **hidden},
        mask_decoder_config={"hidden_size": 32, "num_attention_heads": 2},
    )


def build_tiny_sam3_concept(path: str | pathlib.Path, *, seed: int = 0) -> pathlib.Path:
    """Build and save a tiny random SAM 3 concept checkpoint (model + processor) into ``path``.

    Args:
        path: folder to write (created if missing; existing files are overwritten).
        seed: seed of the random weights; the same seed gives identical weights.

    Returns:
        The folder, as a :class:`pathlib.Path`.
    """
    import torch
    from transformers import Sam3ImageProcessor, Sam3Model, Sam3Processor
    from transformers.utils import logging as hf_logging

    tokenizer = _build_tokenizer()
    ids = [tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS]
    config = tiny_sam3_config(len(tokenizer), *ids)
    out = pathlib.Path(path)
    out.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG untouched
        torch.manual_seed(seed)
        model = Sam3Model(config).eval()
    processor = Sam3Processor(
        image_processor=Sam3ImageProcessor(size={"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE}),
        tokenizer=tokenizer)
    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # "Writing model shards": tests save often
    try:
        model.save_pretrained(out)
        processor.save_pretrained(out)
    finally:
        if enabled:
            hf_logging.enable_progress_bar()
    logger.debug("saved tiny Sam3Model to %s", out)
    return out


__all__ = ["SPECIAL_TOKENS", "TINY_IMAGE_SIZE", "build_tiny_sam3_concept", "tiny_sam3_config"]
