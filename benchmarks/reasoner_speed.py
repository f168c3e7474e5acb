"""Reasoner throughput: prefill and decode tokens/s of the Qwen2.5-VL-7B architecture (random weights).

The model is built from the published Qwen2.5-VL-7B-Instruct hyper-parameters (:func:`config_7b`, i.e.
``segzero_tool.testing.qwen_configs.qwen2_5_vl_config("7b")``; 8,292,166,656 parameters, the published
8.29B) with random weights: the cost of a forward pass does not depend on the weight values, and no
download is needed. It runs in bf16 on CUDA with the
attention implementation the project's ``TransformersReasoner`` would pick (flash-attention 2 when
installed, else sdpa).

Prompt (as the pipeline sends it): one user turn ``[image, text]`` rendered by a Qwen2.5-VL-style
chat template (default system prompt), the text being ``segzero_tool.prompts.build_prompt(query)``
(VisionReasoner format), and an 840x840 image, which Qwen2.5-VL's image processor turns into
60x60 patches = **900 visual tokens**. The text is tokenised with the **tiny byte-level BPE of
``segzero_tool.testing.tiny_qwen``** (the real Qwen tokenizer cannot be downloaded here); the
model's vocabulary stays 152,064 so the ids fit, and the config's special-token ids are pointed at
the tiny tokenizer's. The tiny BPE spends more tokens on the text than Qwen's tokenizer would (247;
an estimated 130-160 with Qwen's, which splits numbers into single digits), so the prompt is 1,147
tokens instead of roughly 1,030-1,060; tok/s figures are affected only slightly. Pass ``--processor DIR``
(a folder holding a real Qwen2.5-VL processor) to use the real tokenizer.

Measured per batch size (default 1 and 16, identical requests, so no padding):

* prefill: one forward pass over the whole prompt (vision tower + text model, filling the KV cache,
  logits of the last position only, as ``generate`` does); prefill tok/s = prompt tokens x batch /
  time. The vision tower alone is timed too.
* decode: greedy ``generate`` with ``min_new_tokens = max_new_tokens`` (so the length is forced);
  the time of ``N + 1`` new tokens minus the time of 1 new token (both include the same prefill) is
  the time of ``N`` decode steps; decode tok/s = N x batch / that time.

Usage::

    python benchmarks/reasoner_speed.py                          # CUDA, bf16 -> results/reasoner_cuda.*
    python benchmarks/reasoner_speed.py --batch-sizes 1,4,16 --new-tokens 256
    python benchmarks/reasoner_speed.py --allow-cpu --small      # smoke test of this script on CPU

Without a CUDA device it prints a note and exits 0 without writing anything, unless both
``--allow-cpu`` and ``--small`` are given. ``--small`` swaps in a **smoke-test model**: the same
classes, vocabulary, image handling and attention pattern, but 2 text layers and 2 vision blocks
with narrow widths (text hidden 448 = 7 heads x 64 with 1 KV head, like 7B's 28:4 ratio and
mrope_section [8, 12, 12] in 7B's 2:3:3 proportion; vision hidden 160), so the script runs on a CPU
in seconds (defaults then: batch sizes 1 and 2, 8 decode steps, 1 timed run, no warm-up). Its
numbers say nothing about the 7B model; they go to
``results/reasoner_smoke_<device>.{json,md}``, never to ``reasoner_cuda.*``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402

FRAME = 840
QUERY = "What can I have if I'm thirsty?"


def config_7b(token_ids: dict[str, int], *, small: bool = False) -> Any:
    """``Qwen2_5_VLConfig`` of the 7B model (or the 2-layer smoke-test model), with ``token_ids``.

    The dimensions are :func:`segzero_tool.testing.qwen_configs.qwen2_5_vl_config` ``("7b")``'s (the
    published Qwen2.5-VL-7B-Instruct ``config.json``); only the special-token ids are the tokenizer's.

    Args:
        token_ids: ids of ``<|image_pad|>``, ``<|video_pad|>``, ``<|vision_start|>``,
            ``<|vision_end|>``, ``<|endoftext|>`` and ``<|im_end|>`` in the tokenizer used.
        small: the smoke-test model (see the module docstring).
    """
    from segzero_tool.testing.qwen_configs import qwen2_5_vl_config, text_config, vision_config

    text = text_config("7b")
    text.update(bos_token_id=token_ids["<|endoftext|>"], eos_token_id=token_ids["<|im_end|>"],
                pad_token_id=token_ids["<|endoftext|>"])
    vision = vision_config("7b")
    if small:
        text.update(hidden_size=448, intermediate_size=2368, num_hidden_layers=2, num_attention_heads=7,
                    num_key_value_heads=1, max_window_layers=2,
                    rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [8, 12, 12]})
        vision.update(depth=2, hidden_size=160, intermediate_size=428, num_heads=2, out_hidden_size=448,
                      fullatt_block_indexes=[1])
    return qwen2_5_vl_config(
        "7b",
        text_config=text,
        vision_config=vision,
        image_token_id=token_ids["<|image_pad|>"],
        video_token_id=token_ids["<|video_pad|>"],
        vision_start_token_id=token_ids["<|vision_start|>"],
        vision_end_token_id=token_ids["<|vision_end|>"],
    )


def _processor(folder: str | None, tmp: str) -> tuple[Any, str]:
    """The Qwen2.5-VL processor (tiny tokenizer unless ``folder``), with Qwen's default pixel bounds."""
    from transformers import AutoProcessor

    if folder is None:
        from segzero_tool.testing.tiny_qwen import build_tiny_qwen2_5_vl

        folder, label = str(build_tiny_qwen2_5_vl(Path(tmp) / "tiny")), "tiny byte-level BPE (segzero_tool.testing.tiny_qwen)"
    else:
        label = f"processor from {folder}"
    # Qwen2.5-VL's defaults (56*56 .. 28*28*1280): an 840x840 frame stays 840x840 = 900 visual tokens.
    # (``size``, not ``min_pixels``/``max_pixels``: transformers 5.23 warns those are deprecated.)
    processor = AutoProcessor.from_pretrained(folder, size={"shortest_edge": 56 * 56, "longest_edge": 28 * 28 * 1280},
                                              padding_side="left")
    return processor, label


def _median_ms(fn, *, repeat: int, warmup: int, sync) -> dict[str, float]:
    for _ in range(warmup):
        fn()
        sync()
    samples = []
    for _ in range(repeat):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        samples.append((time.perf_counter() - t0) * 1000.0)
    return {"median_ms": statistics.median(samples), "min_ms": min(samples), "max_ms": max(samples), "repeat": repeat}


def _pick_attn(requested: str, device: str, dtype: Any) -> str:
    if requested != "auto":
        return requested
    try:  # the choice TransformersReasoner.from_pretrained makes
        from segzero_tool.reasoners.transformers import _pick_attention

        return _pick_attention("auto", device, dtype)
    except ImportError:
        return "sdpa"


def main() -> None:  # noqa: PLR0915 - a linear script
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-sizes", default=None, help="comma-separated batch sizes (default 1,16; 1,2 with --small)")
    ap.add_argument("--new-tokens", type=int, default=None,
                    help="decode steps N timed per batch (default 128; 8 with --small)")
    ap.add_argument("--repeat", type=int, default=None, help="timed runs per measurement (default 3; 1 with --small)")
    ap.add_argument("--warmup", type=int, default=None,
                    help="untimed runs before each measurement (default 1; 0 with --small)")
    ap.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], default=None,
                    help="weights dtype (default bf16 on CUDA, fp32 on CPU)")
    ap.add_argument("--attn", default="auto", help="attn_implementation (default: what TransformersReasoner picks)")
    ap.add_argument("--processor", default=None,
                    help="folder with a real Qwen2.5-VL processor (default: the tiny test tokenizer)")
    ap.add_argument("--query", default=QUERY, help=f"question put in the VisionReasoner prompt (default {QUERY!r})")
    ap.add_argument("--small", action="store_true", help="2-layer narrow smoke-test model instead of 7B")
    ap.add_argument("--allow-cpu", action="store_true", help="run on CPU when there is no GPU (needs --small)")
    args = ap.parse_args()

    import torch

    if torch.cuda.is_available():
        device = "cuda"
    elif args.allow_cpu and args.small:
        device = "cpu"
    else:
        print("reasoner_speed.py: no CUDA device here, so nothing was measured and nothing was written.\n"
              "The 7B architecture needs a GPU (about 17 GB of bf16 weights; prefill of one prompt takes "
              "minutes on a CPU).\nTo smoke-test this script on a CPU use: "
              "python benchmarks/reasoner_speed.py --allow-cpu --small")
        return
    if device == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
    n_new = args.new_tokens or (8 if args.small else 128)
    repeat = args.repeat or (1 if args.small else 3)
    dtype_name = args.dtype or ("bf16" if device == "cuda" else "fp32")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[dtype_name]
    batches = [int(b) for b in (args.batch_sizes or ("1,2" if args.small else "1,16")).split(",") if b.strip()]
    args.warmup = (0 if args.small else 1) if args.warmup is None else args.warmup
    cuda = device == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    from PIL import Image
    from transformers import AutoModelForImageTextToText

    from segzero_tool.prompts import build_prompt

    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        processor, tokenizer_label = _processor(args.processor, tmp)
    tok = processor.tokenizer
    names = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>", "<|endoftext|>", "<|im_end|>")
    token_ids = {n: tok.convert_tokens_to_ids(n) for n in names}
    config = config_7b(token_ids, small=args.small)
    attn = _pick_attn(args.attn, device, dtype)
    t0 = time.perf_counter()
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForImageTextToText.from_config(config, dtype=dtype, attn_implementation=attn).eval()
    build_s = time.perf_counter() - t0
    params = sum(p.numel() for p in model.parameters())
    label = ("SMOKE TEST: 2-layer narrow Qwen2.5-VL (not 7B)" if args.small
             else "Qwen2.5-VL-7B architecture")
    print(f"{label}: {params / 1e9:.3f}B parameters, {dtype_name}, attention {attn}, on {device} "
          f"(built in {build_s:.1f} s)", flush=True)

    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, size=(FRAME, FRAME, 3), dtype=np.uint8))
    prompt_text = build_prompt(args.query)
    messages = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": prompt_text}]}]
    chat = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    rows = []
    prompt_info: dict[str, Any] = {}
    for batch in batches:
        inputs = processor(text=[chat] * batch, images=[image] * batch, padding=True, return_tensors="pt").to(device)
        ids = inputs["input_ids"]
        prompt_tokens = int(ids.shape[1])
        visual = int((ids[0] == token_ids["<|image_pad|>"]).sum())
        prompt_info = {"prompt_tokens": prompt_tokens, "visual_tokens": visual, "text_tokens": prompt_tokens - visual,
                       "tokenizer": tokenizer_label, "image": f"{FRAME}x{FRAME}", "query": args.query}
        if cuda:
            torch.cuda.reset_peak_memory_stats()

        @torch.inference_mode()
        def prefill():
            model(**inputs, use_cache=True, logits_to_keep=1)

        @torch.inference_mode()
        def vision():
            model.model.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"])

        def gen(n: int):
            @torch.inference_mode()
            def run():
                out = model.generate(**inputs, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                                     temperature=None, top_p=None, top_k=None, use_cache=True,
                                     pad_token_id=token_ids["<|endoftext|>"])
                assert out.shape == (batch, prompt_tokens + n), out.shape
            return run

        pre = _median_ms(prefill, repeat=repeat, warmup=args.warmup, sync=sync)
        vis = _median_ms(vision, repeat=repeat, warmup=args.warmup, sync=sync)
        g1 = _median_ms(gen(1), repeat=repeat, warmup=args.warmup, sync=sync)
        gn = _median_ms(gen(n_new + 1), repeat=repeat, warmup=args.warmup, sync=sync)
        decode_ms = max(gn["median_ms"] - g1["median_ms"], 1e-6)
        row = {
            "batch": batch,
            "prefill_ms": pre["median_ms"],
            "prefill_tok_s": prompt_tokens * batch / (pre["median_ms"] / 1000),
            "vision_ms": vis["median_ms"],
            "generate_1_ms": g1["median_ms"],
            f"generate_{n_new + 1}_ms": gn["median_ms"],
            "decode_steps": n_new,
            "decode_ms_per_step": decode_ms / n_new,
            "decode_tok_s": n_new * batch / (decode_ms / 1000),
            "peak_memory_gb": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
            "timings": {"prefill": pre, "vision": vis, "generate_1": g1, f"generate_{n_new + 1}": gn},
        }
        rows.append(row)
        print(f"batch {batch}: prefill {pre['median_ms']:.0f} ms ({row['prefill_tok_s']:.0f} tok/s, vision "
              f"{vis['median_ms']:.0f} ms), decode {row['decode_ms_per_step']:.1f} ms/step "
              f"({row['decode_tok_s']:.0f} tok/s)", flush=True)
        if cuda:
            torch.cuda.empty_cache()
    total_s = time.perf_counter() - t_start

    head = "| batch | prompt tokens | prefill (ms) | **prefill tok/s** | of which vision tower (ms) | " \
           "decode ms/step | **decode tok/s** |" + (" peak GPU memory (GiB) |" if cuda else "")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(f"| {r['batch']} | {prompt_info['prompt_tokens']} x {r['batch']} | {r['prefill_ms']:.0f} | "
                     f"**{r['prefill_tok_s']:.0f}** | {r['vision_ms']:.0f} | {r['decode_ms_per_step']:.1f} | "
                     f"**{r['decode_tok_s']:.0f}** |" + (f" {r['peak_memory_gb']:.1f} |" if cuda else ""))
    where = torch.cuda.get_device_name(0) if cuda else f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"
    title = (f"# SMOKE TEST of reasoner_speed.py on {where}: 2-layer narrow model, NOT Qwen2.5-VL-7B" if args.small
             else f"# Qwen2.5-VL-7B architecture (random weights) on {where}")
    md = (f"{title}\n\n"
          f"{params / 1e9:.3f}B parameters, {dtype_name}, attention `{attn}`. Prompt: 840x840 image "
          f"({prompt_info['visual_tokens']} visual tokens) + VisionReasoner prompt ({prompt_info['text_tokens']} "
          f"text tokens with the {tokenizer_label}) = {prompt_info['prompt_tokens']} tokens per request. "
          f"Decode: greedy, {n_new} forced steps (time of {n_new + 1} new tokens minus time of 1). "
          f"Medians of {repeat} after {args.warmup} warm-up. Whole run {total_s:.0f} s.\n\n"
          + "\n".join(lines) + "\n"
          + ("\nThese numbers only show that the script runs; they say nothing about the 7B model.\n"
             if args.small else ""))
    name = f"reasoner_smoke_{device}" if args.small else f"reasoner_{device}"
    write_result(name, {"model": label, "small": args.small, "parameters": params, "dtype": dtype_name,
                        "attn_implementation": attn, "device": device, "prompt": prompt_info,
                        "new_tokens": n_new, "repeat": repeat, "warmup": args.warmup, "build_s": build_s,
                        "total_s": total_s, "rows": rows}, md)
    print(md)
    print(f"total {total_s:.0f} s; wrote results/{name}.json and .md")


if __name__ == "__main__":
    main()
