"""Tiny random Qwen2.5-VL / Qwen2-VL checkpoints for tests (no downloads, CPU-fast).

The builders write a folder that loads with ``AutoProcessor.from_pretrained(path)`` and
``AutoModelForImageTextToText.from_pretrained(path)``, exactly like a hub checkpoint:

* a byte-level BPE tokenizer trained on the spot with ``tokenizers`` (the initial alphabet is all
  256 byte-level symbols, so no text is ever unknown) wrapped in transformers' ``Qwen2Tokenizer``,
  with the Qwen special tokens and the config's token ids pointing at them;
* a chat template that renders like Qwen2.5-VL's (default system prompt, vision placeholders,
  ``add_generation_prompt``);
* a ``Qwen2VLImageProcessor`` bounded to 56*56 .. 224*224 pixels, so an 840x840 reasoning frame
  becomes at most 16x16 patches (64 visual tokens);
* a 2-layer text model (hidden 64, 4 heads / 2 KV heads, mrope_section [2, 3, 3]) and a 2-block
  vision tower (hidden 32) with random weights drawn from ``seed``.

Random weights produce gibberish: the answers never parse. Building takes about 0.5 s once torch
and transformers are imported.

Example:
    >>> path = build_tiny_qwen2_5_vl(tmp_path / "tiny-qwen2.5-vl")  # doctest: +SKIP
    >>> TransformersReasoner.from_pretrained(str(path))  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import logging
import pathlib
from collections.abc import Iterator
from typing import Any

logger = logging.getLogger(__name__)

#: Qwen's special tokens, in the order they get ids 0..6 in the tiny vocabulary.
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

#: Pixel bounds of the tiny image processor (Qwen's defaults are 56*56 .. 28*28*1280).
TINY_MIN_PIXELS = 56 * 56
TINY_MAX_PIXELS = 224 * 224

_VOCAB_SIZE = 512

# Text the tiny BPE learns its merges from: the shapes of prompts and answers this package handles.
_CORPUS = (
    "You are a helpful assistant.",
    "Please find 'the red cup on the left' with bboxs and points.",
    "Compare the difference between objects and find the most closely matched one.",
    "Output the thinking process in <think> </think> and final answer in <answer> </answer> tags.",
    '<think>The object is the dog next to the door.</think><answer>[{"bbox_2d": [10, 20, 300, 400], '
    '"point_2d": [155, 210]}]</answer>',
    '<answer>{"bbox": [12, 34, 560, 780], "points_1": [100, 200], "points_2": [300, 400]}</answer>',
    '0123456789 [], {}: "" \n',
)

# The Jinja text both tiny templates (this one and tiny_qwen3's) share: one <|im_start|>role ... <|im_end|> block
# per message, vision placeholders for image and video parts (optionally numbered with add_vision_id), and
# "<|im_start|>assistant\n" on request. Qwen2.5-VL's adds a default system turn (``default_system_turn``).
_TEMPLATE_HEAD = """\
{%- set counts = namespace(image=0, video=0) -%}
{%- for message in messages -%}
"""
_TEMPLATE_DEFAULT_SYSTEM_TURN = """\
  {%- if loop.first and message['role'] != 'system' -%}
    {{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' -}}
  {%- endif -%}
"""
_TEMPLATE_MESSAGES = """\
  {{- '<|im_start|>' + message['role'] + '\\n' -}}
  {%- if message['content'] is string -%}
    {{- message['content'] -}}
  {%- else -%}
    {%- for part in message['content'] -%}
      {%- if part['type'] == 'image' or 'image' in part or 'image_url' in part -%}
        {%- set counts.image = counts.image + 1 -%}
        {%- if add_vision_id -%}{{- 'Picture ' + counts.image|string + ': ' -}}{%- endif -%}
        {{- '<|vision_start|><|image_pad|><|vision_end|>' -}}
      {%- elif part['type'] == 'video' or 'video' in part -%}
        {%- set counts.video = counts.video + 1 -%}
        {%- if add_vision_id -%}{{- 'Video ' + counts.video|string + ': ' -}}{%- endif -%}
        {{- '<|vision_start|><|video_pad|><|vision_end|>' -}}
      {%- elif 'text' in part -%}
        {{- part['text'] -}}
      {%- endif -%}
    {%- endfor -%}
  {%- endif -%}
  {{- '<|im_end|>\\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
  {{- '<|im_start|>assistant\\n' -}}
{%- endif -%}
"""


def _chat_template(*, default_system_turn: bool) -> str:
    """A Qwen-style chat template; ``default_system_turn``: "You are a helpful assistant." when the first
    message is not a system message (Qwen2.5-VL's template does this, Qwen3-VL's does not)."""
    return _TEMPLATE_HEAD + (_TEMPLATE_DEFAULT_SYSTEM_TURN if default_system_turn else "") + _TEMPLATE_MESSAGES


# Renders like Qwen2.5-VL's template: a default system turn when the first message is not a system
# message, then the shared message blocks (see _chat_template).
_CHAT_TEMPLATE = _chat_template(default_system_turn=True)


def build_tiny_qwen2_5_vl(path: str | pathlib.Path, *, seed: int = 0) -> pathlib.Path:
    """Build and save a tiny random Qwen2.5-VL checkpoint (model + processor) into ``path``.

    Args:
        path: folder to write (created if missing; existing files are overwritten).
        seed: seed of the random weights; the same seed gives identical weights and files.

    Returns:
        The folder, as a :class:`pathlib.Path`.
    """
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
    )

    tokenizer, ids = _build_tokenizer()
    config = Qwen2_5_VLConfig(
        text_config=_text_config(len(tokenizer), ids),
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 64,
            "fullatt_block_indexes": [1],
            "window_size": 56,
        },
        **_vision_token_ids(ids),
    )
    return _save(path, seed, Qwen2_5_VLForConditionalGeneration, config, Qwen2_5_VLProcessor, tokenizer, ids)


def build_tiny_qwen2_vl(path: str | pathlib.Path, *, seed: int = 0) -> pathlib.Path:
    """Build and save a tiny random Qwen2-VL checkpoint (model + processor) into ``path``.

    Same tokenizer, template and text model as :func:`build_tiny_qwen2_5_vl`; the vision tower is
    Qwen2-VL's (embed dim 32, MLP ratio 2, no windowed attention).

    Args:
        path: folder to write (created if missing; existing files are overwritten).
        seed: seed of the random weights; the same seed gives identical weights and files.

    Returns:
        The folder, as a :class:`pathlib.Path`.
    """
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor

    tokenizer, ids = _build_tokenizer()
    config = Qwen2VLConfig(
        text_config=_text_config(len(tokenizer), ids),
        vision_config={"depth": 2, "embed_dim": 32, "hidden_size": 64, "mlp_ratio": 2, "num_heads": 2},
        **_vision_token_ids(ids),
    )
    return _save(path, seed, Qwen2VLForConditionalGeneration, config, Qwen2VLProcessor, tokenizer, ids)


def _build_tokenizer() -> tuple[Any, dict[str, int]]:
    """Train a byte-level BPE on :data:`_CORPUS` and wrap it in ``Qwen2Tokenizer``.

    Returns:
        ``(tokenizer, ids)`` where ``ids`` maps each of :data:`SPECIAL_TOKENS` to its id.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=_VOCAB_SIZE,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_CORPUS, trainer)
    model = json.loads(bpe.to_str())["model"]
    # Qwen2Tokenizer wants merges as tuples: lists raise "failed to extract enum PyMerges".
    merges = [tuple(pair.split(" ", 1)) if isinstance(pair, str) else tuple(pair) for pair in model["merges"]]
    tokenizer = Qwen2Tokenizer(
        vocab=model["vocab"],
        merges=merges,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=[t for t in SPECIAL_TOKENS if t not in ("<|endoftext|>", "<|im_end|>")],
    )
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    return tokenizer, ids


def _text_config(vocab_size: int, ids: dict[str, int]) -> dict[str, Any]:
    """Text-model config: hidden 64, 2 layers, 4 heads / 2 KV heads (head_dim 16 = 2 * (2+3+3))."""
    return {
        "vocab_size": vocab_size,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [2, 3, 3]},
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }


def _vision_token_ids(ids: dict[str, int]) -> dict[str, int]:
    return {
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
    }


def _save(
    path: str | pathlib.Path,
    seed: int,
    model_cls: Any,
    config: Any,
    processor_cls: Any,
    tokenizer: Any,
    ids: dict[str, int],
) -> pathlib.Path:
    """Instantiate the random model under a forked RNG, attach the processor and save both."""
    from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    pixels = {"min_pixels": TINY_MIN_PIXELS, "max_pixels": TINY_MAX_PIXELS}
    processor = processor_cls(
        image_processor=Qwen2VLImageProcessor(**pixels),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(**pixels),
        chat_template=_CHAT_TEMPLATE,
    )
    sampling = {"temperature": 0.1, "top_p": 0.001, "top_k": 1}
    return _save_checkpoint(path, seed, model_cls, config, processor, ids, sampling=sampling, log=logger)


def _save_checkpoint(
    path: str | pathlib.Path,
    seed: int,
    model_cls: Any,
    config: Any,
    processor: Any,
    ids: dict[str, int],
    *,
    sampling: dict[str, Any],
    log: logging.Logger,
) -> pathlib.Path:
    """Instantiate ``model_cls(config)`` under a forked RNG seeded with ``seed``, give it an Instruct-like
    sampling generation config (``sampling``: temperature, top_p, top_k) and save it with ``processor``
    into ``path`` (shared by the tiny Qwen2-VL / Qwen2.5-VL / Qwen3-VL builders)."""
    import torch
    from transformers import GenerationConfig

    out = pathlib.Path(path)
    out.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG untouched
        torch.manual_seed(seed)
        model = model_cls(config).eval()
    # Like the released Instruct checkpoints: sampling settings that greedy callers must neutralise.
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
        do_sample=True,
        **sampling,
    )
    with _quiet_progress_bar():
        model.save_pretrained(out)
        processor.save_pretrained(out)
    log.debug("saved tiny %s to %s", type(model).__name__, out)
    return out


@contextlib.contextmanager
def _quiet_progress_bar() -> Iterator[None]:
    """Hide transformers' "Writing model shards" bar (restored afterwards): tests save often."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
