"""Speed of ``segment_phrase`` (SAM 3 concept segmentation) per image, on the released architecture.

``Sam3Model`` is built from transformers' ``Sam3Config()`` defaults (the released ``facebook/sam3``
architecture: a 32-layer ViT on 1008 x 1008 inputs, the CLIP-style text encoder, the DETR encoder and decoder
with 200 queries, the mask decoder) with random weights (the cost does not depend on the weights; the real
ones are gated and cannot be downloaded here), with the offline CLIP tokenizer of
``segzero_tool.testing.tiny_sam3_concept`` (text length is what costs, not the vocabulary), wrapped in
``Sam3ConceptSegmenter``. Timed on one 1280 x 720 RGB image through ``segzero_tool.phrase.segment_phrase``
with ``threshold=0`` and ``max_instances=10`` (so that ten masks are upsampled, as for a busy scene):

* ``first_phrase_ms``: a phrase on a picture not seen before (image encoder + text encoder + detector +
  masks);
* ``next_phrase_ms``: another phrase on the same picture (the image encoder's output is cached);
* ``encoder_ms``: ``get_vision_features`` alone.

Usage::

    python benchmarks/phrase_speed.py                    # CPU, float32 -> results/phrase_speed_cpu.{json,md}
    python benchmarks/phrase_speed.py --device cuda [--dtype bf16] --repeat 5
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402

PHRASES = ("yellow school bus", "person with a hat", "red cup", "dog", "bottle", "chair")


def build(device: str, dtype: str) -> tuple[Any, int]:
    import torch
    from transformers import Sam3Config, Sam3ImageProcessor, Sam3Model, Sam3Processor

    from segzero_tool.segmenters.concept import Sam3ConceptSegmenter
    from segzero_tool.testing.tiny_sam3_concept import SPECIAL_TOKENS, _build_tokenizer

    tokenizer = _build_tokenizer()
    ids = [tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS]
    config = Sam3Config()
    config.text_config.bos_token_id, config.text_config.eos_token_id = ids
    config.text_config.pad_token_id = ids[1]
    torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    torch.manual_seed(0)
    with torch.device(device):
        model = Sam3Model(config).to(torch_dtype).eval()
    side = config.vision_config.backbone_config.image_size
    processor = Sam3Processor(image_processor=Sam3ImageProcessor(size={"height": side, "width": side}),
                              tokenizer=tokenizer)
    params = sum(p.numel() for p in model.parameters())
    return Sam3ConceptSegmenter(model, processor, device=device, model_id="sam3-architecture-random"), params


def measure(device: str, dtype: str, repeat: int) -> dict[str, Any]:
    import torch

    from segzero_tool.phrase import segment_phrase

    seg, params = build(device, dtype)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (720, 1280, 3), dtype=np.uint8) for _ in range(repeat + 1)]

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def run(image: np.ndarray, phrase: str) -> float:
        sync()
        t0 = time.perf_counter()
        segment_phrase(image, phrase, segmenter=seg, threshold=0.0, max_instances=10)
        sync()
        return (time.perf_counter() - t0) * 1000.0

    run(images[0], PHRASES[0])  # warm-up (first allocations, lazy imports)
    first, nxt, enc = [], [], []
    for i in range(repeat):
        image = images[i + 1]
        first.append(run(image, PHRASES[i % len(PHRASES)]))
        nxt.append(run(image, PHRASES[(i + 1) % len(PHRASES)]))
        pixels = seg.processor.image_processor(images=image, return_tensors="pt")["pixel_values"]
        sync()
        t0 = time.perf_counter()
        with torch.inference_mode():
            seg.model.get_vision_features(pixel_values=pixels.to(device, seg.dtype))
        sync()
        enc.append((time.perf_counter() - t0) * 1000.0)
    out = {"device": device, "dtype": dtype, "params": params, "repeat": repeat,
           "first_phrase_ms": round(statistics.median(first), 1), "next_phrase_ms": round(statistics.median(nxt), 1),
           "encoder_ms": round(statistics.median(enc), 1), "torch": torch.__version__,
           "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine()}
    if device.startswith("cuda"):
        out["gpu"] = torch.cuda.get_device_name(0)
    seg = None  # drop the model before the next measurement (run() is done with it)
    gc.collect()
    return out


def markdown(r: dict[str, Any]) -> str:
    where = r.get("gpu") or f"CPU ({r['threads']} threads)"
    return "\n".join([
        "# `segment_phrase` per image (SAM 3 concept model, released architecture, random weights)",
        "",
        f"{r['params'] / 1e6:.0f}M parameters, {r['dtype']}, {where}, torch {r['torch']}. One 1280x720 image, "
        f"`threshold=0`, `max_instances=10`; medians of {r['repeat']} after one warm-up.",
        "",
        "| first phrase on a picture | another phrase on the same picture (encoder cached) | image encoder alone |",
        "|---|---|---|",
        f"| **{r['first_phrase_ms'] / 1000:.2f} s** | **{r['next_phrase_ms'] / 1000:.2f} s** | "
        f"{r['encoder_ms'] / 1000:.2f} s |",
        "",
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="fp32", choices=("fp32", "bf16", "fp16"))
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    if args.device == "cpu":
        import torch

        torch.set_num_threads(min(torch.get_num_threads(), 2))
    result = measure(args.device, args.dtype, args.repeat)
    text = markdown(result)
    print(text)
    if not args.no_write:
        name = "phrase_speed_cpu" if args.device == "cpu" else "phrase_speed_cuda"
        print("wrote", write_result(name, result, text))


if __name__ == "__main__":
    main()
