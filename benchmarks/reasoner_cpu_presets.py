"""Which reasoner suits the ``light`` preset on a CPU: prefill and decode time of the candidate architectures.

For each requested architecture x dtype the model is built **directly in that dtype** from its published
config with random weights (the cost of a forward pass does not depend on the weight values; nothing is
downloaded), then one request is run the way the pipeline sends it:

* ``qwen2.5-vl-3b`` (registry ``qwen2.5-vl-3b-instruct``, :func:`segzero_tool.testing.qwen_configs.qwen2_5_vl_config`
  ``"3b"``): the 840x840 square frame (Qwen2.5-VL's 28-pixel grid: 30x30 merged tokens = **900 visual tokens**)
  and the ``grounding`` prompt;
* ``qwen3-vl-2b`` / ``qwen3-vl-4b`` (registry ``qwen3-vl-2b-instruct`` / ``-4b-``,
  :func:`segzero_tool.testing.tiny_qwen3.qwen3_vl_config`): the aspect-preserving frame of
  :func:`segzero_tool.frame.aspect_frame_size` (an 840x840 image -> 832x832, Qwen3-VL's 32-pixel grid: 26x26
  = **676 visual tokens**) and the ``qwen3vl`` prompt;
* ``qwen2.5-vl-7b`` (the VisionReasoner-7B architecture of the ``default`` preset, ``visionreasoner`` prompt,
  900 visual tokens), for reference.

One user turn ``[image, text]``, batch 1, ``torch.set_num_threads(--threads)`` (default 2), attention ``sdpa``
(what ``TransformersReasoner`` picks on a CPU). The text is tokenised with the offline **tiny byte-level BPE**
of :mod:`segzero_tool.testing.tiny_qwen` (the real tokenizers cannot be downloaded here; it spends somewhat
more tokens on the prompt text than Qwen's tokenizer would); the vision placeholders and the image processing
are Qwen's (Qwen2.5-VL: patch 14, merge 2, CLIP mean/std; Qwen3-VL: patch 16, merge 2, mean/std 0.5).

One measurement = one greedy ``generate`` of ``--new-tokens + 1`` forced tokens (``min_new_tokens``) with a
streamer that timestamps every token and hooks on the vision tower:

* **prefill** = time from the ``generate`` call to the first new token (processor output -> vision tower ->
  the whole prompt through the language model -> first token), i.e. time to first token;
* **vision tower** = the vision tower's own forward inside that prefill (hooks, no extra call);
* **decode** = (time of the last token - time of the first) / ``--new-tokens``, in ms per token.

Warm-up: each combination's first ``generate`` is a warm-up and ``--repeat`` timed runs follow, unless that
first run's prefill took more than ``--slow-s`` (default 180 s): then it is kept as the **only** run (no
warm-up), which the table says. The estimated wait for a typical answer is ``prefill + 150 x decode``
(``--answer-tokens``): one object's JSON answer.

Memory: before building, the parameter count (a ``meta``-device build) x bytes per parameter + 1.5 GiB is
compared with the available RAM (psutil); a combination that would not fit becomes a "skipped: needs N GiB"
row. Each model is freed (references dropped, ``gc.collect()``) before the next. Results are written after every
combination (so an interrupted run keeps what it measured) to ``results/reasoner_cpu_presets.{json,md}``
(``--name``), with the machine (CPU model, cores, torch) and the load average around each combination.

Usage::

    python benchmarks/reasoner_cpu_presets.py                                  # the recorded run (see README)
    python benchmarks/reasoner_cpu_presets.py --arch qwen3-vl-4b --dtype bf16  # one more combination
    python benchmarks/reasoner_cpu_presets.py --small --no-write               # smoke test (seconds)

``--small`` shrinks every architecture to 2 text layers / 2 vision blocks of narrow width (same classes,
image handling, prompt and vocabulary) to check the script; its numbers say nothing about the real models.
"""

from __future__ import annotations

import argparse
import copy
import gc
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_model, write_result  # noqa: E402

QUERY = "What can I have if I'm thirsty?"
IMAGE = 840
ANSWER_TOKENS = 150

#: arch -> (family, size, registry name, prompt format, visual tokens expected for the 840x840 image)
ARCHS: dict[str, tuple[str, str, str, str, int]] = {
    "qwen2.5-vl-3b": ("qwen2_5_vl", "3b", "qwen2.5-vl-3b-instruct", "grounding", 900),
    "qwen3-vl-2b": ("qwen3_vl", "2b", "qwen3-vl-2b-instruct", "qwen3vl", 676),
    "qwen3-vl-4b": ("qwen3_vl", "4b", "qwen3-vl-4b-instruct", "qwen3vl", 676),
    "qwen2.5-vl-7b": ("qwen2_5_vl", "7b", "visionreasoner-7b", "visionreasoner", 900),
}
DTYPES = {"fp32": 4, "bf16": 2}
RESERVE_GIB = 1.5  # activations (the largest: one vision attention map, ~0.5 GiB), Python: on top of the weights


def _processors(tmp: str) -> dict[str, Any]:
    """Offline processors with Qwen's real image geometry and pixel bounds (tiny BPE tokenizer)."""
    from transformers import AutoProcessor

    from segzero_tool.testing.tiny_qwen import build_tiny_qwen2_5_vl
    from segzero_tool.testing.tiny_qwen3 import build_tiny_qwen3_vl

    q25 = build_tiny_qwen2_5_vl(Path(tmp) / "q25")
    q3 = build_tiny_qwen3_vl(Path(tmp) / "q3")
    return {
        # Qwen2.5-VL's defaults (56*56 .. 28*28*1280): 840x840 stays 840x840.
        "qwen2_5_vl": AutoProcessor.from_pretrained(q25, size={"shortest_edge": 56 * 56,
                                                               "longest_edge": 28 * 28 * 1280}),
        # Qwen3-VL's defaults (65,536 .. 16,777,216 pixels): the 832x832 frame stays 832x832.
        "qwen3_vl": AutoProcessor.from_pretrained(q3, size={"shortest_edge": 65536, "longest_edge": 16777216}),
    }


def _config(family: str, size: str, ids: dict[str, int], small: bool) -> Any:
    """The published config with the tiny tokenizer's special-token ids (and narrowed with ``small``)."""
    from segzero_tool.testing.tiny_qwen import _vision_token_ids

    vis_ids = _vision_token_ids(ids)
    if family == "qwen2_5_vl":
        from segzero_tool.testing.qwen_configs import qwen2_5_vl_config, text_config, vision_config

        text, vision = text_config(size), vision_config(size)
        text.update(bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"])
        if small:
            text.update(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
                        num_key_value_heads=2, max_window_layers=2,
                        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [8, 12, 12]})
            vision.update(depth=2, hidden_size=128, intermediate_size=256, num_heads=2, out_hidden_size=256,
                          fullatt_block_indexes=[1])
        return qwen2_5_vl_config(size, text_config=text, vision_config=vision, **vis_ids)
    from transformers import Qwen3VLConfig

    from segzero_tool.testing.tiny_qwen3 import qwen3_vl_config

    cfg = qwen3_vl_config(size).to_dict()
    text, vision = cfg["text_config"], cfg["vision_config"]
    text.update(bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"])
    if small:
        text.update(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, head_dim=64,
                    rope_parameters={"rope_type": "default", "rope_theta": 5_000_000.0, "mrope_section": [12, 10, 10],
                                     "mrope_interleaved": True})
        vision.update(depth=2, hidden_size=128, intermediate_size=256, num_heads=2, out_hidden_size=256,
                      deepstack_visual_indexes=[1])
    return Qwen3VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=cfg.get("tie_word_embeddings", False),
                         **vis_ids)


def _param_count(config: Any) -> int:
    import torch
    from transformers import AutoModelForImageTextToText

    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(copy.deepcopy(config))
    n = sum(p.numel() for p in model.parameters())
    del model
    return n


class _Clock:
    """A ``generate`` streamer that timestamps the prompt and each new token."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def put(self, value: Any) -> None:  # noqa: ARG002 - only the moment matters
        self.times.append(time.perf_counter())

    def end(self) -> None:
        pass


def _available_gib() -> float:
    import psutil

    return psutil.virtual_memory().available / 2**30


def _measure(arch: str, dtype_name: str, processors: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from PIL import Image
    from transformers import AutoModelForImageTextToText

    from segzero_tool.frame import aspect_frame_size
    from segzero_tool.prompts import build_prompt

    family, size, registry, fmt, expect_visual = ARCHS[arch]
    processor = processors[family]
    tok = processor.tokenizer
    names = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>", "<|endoftext|>", "<|im_end|>")
    ids = {n: tok.convert_tokens_to_ids(n) for n in names}
    config = _config(family, size, ids, args.small)
    params = _param_count(config)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    need = params * DTYPES[dtype_name] / 2**30 + RESERVE_GIB
    avail = _available_gib()
    row: dict[str, Any] = {"arch": arch, "registry": registry, "dtype": dtype_name, "prompt_format": fmt,
                           "parameters": params, "needs_gib": round(need, 1), "available_gib": round(avail, 1)}
    if need > avail:
        row["skipped"] = f"needs {need:.0f} GiB, {avail:.0f} GiB available"
        print(f"{arch} {dtype_name}: skipped: {row['skipped']}", flush=True)
        return row

    # The frame each model sees of an 840x840 image, and its prompt.
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, size=(IMAGE, IMAGE, 3), dtype=np.uint8))
    if family == "qwen3_vl":
        image = image.resize(aspect_frame_size(image.size, IMAGE), Image.BILINEAR)
    messages = [{"role": "user", "content": [{"type": "image", "image": image},
                                             {"type": "text", "text": build_prompt(args.query, fmt)}]}]
    chat = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    inputs = processor(text=[chat], images=[image], return_tensors="pt")
    prompt_tokens = int(inputs["input_ids"].shape[1])
    visual = int((inputs["input_ids"][0] == ids["<|image_pad|>"]).sum())
    if visual != expect_visual and not args.small:
        raise AssertionError(f"{arch}: {visual} visual tokens, expected {expect_visual}")
    row.update(frame=f"{image.size[0]}x{image.size[1]}", prompt_tokens=prompt_tokens, visual_tokens=visual,
               text_tokens=prompt_tokens - visual)
    if "pixel_values" in inputs:
        inputs["pixel_values"] = inputs["pixel_values"].to(dtype)

    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    torch.manual_seed(0)
    model = AutoModelForImageTextToText.from_config(config, dtype=dtype, attn_implementation="sdpa").eval()
    row["build_s"] = time.perf_counter() - t0
    row["model_dtype"] = str(model.dtype).removeprefix("torch.")
    print(f"{arch} {dtype_name}: {params / 1e9:.3f}B parameters, built in {row['build_s']:.0f} s; prompt "
          f"{prompt_tokens} tokens ({visual} visual, frame {row['frame']})", flush=True)

    vis_t: list[float] = []
    visual_module = model.model.visual
    hooks = [visual_module.register_forward_pre_hook(lambda *_: vis_t.append(time.perf_counter())),
             visual_module.register_forward_hook(lambda *_: vis_t.append(time.perf_counter()))]
    n_new = args.new_tokens
    pad = ids["<|endoftext|>"]

    @torch.inference_mode()
    def one_run() -> dict[str, float]:
        vis_t.clear()
        clock = _Clock()
        start = time.perf_counter()
        out = model.generate(**inputs, max_new_tokens=n_new + 1, min_new_tokens=n_new + 1, do_sample=False,
                             temperature=None, top_p=None, top_k=None, use_cache=True, pad_token_id=pad,
                             streamer=clock)
        assert out.shape == (1, prompt_tokens + n_new + 1), out.shape
        t = clock.times  # [prompt, token 1, ..., token n_new + 1]
        assert len(t) == n_new + 2 and len(vis_t) == 2, (len(t), len(vis_t))
        return {"prefill_ms": (t[1] - start) * 1000, "vision_ms": (vis_t[1] - vis_t[0]) * 1000,
                "decode_ms_per_token": (t[-1] - t[1]) * 1000 / n_new}

    runs: list[dict[str, float]] = []
    first = one_run()
    print(f"  run 1: {first}", flush=True)
    if first["prefill_ms"] > args.slow_s * 1000 or args.warmup == 0:
        runs.append(first)
        row["warmup"] = 0
    else:
        row["warmup"] = 1
        row["warmup_run"] = first
        for i in range(args.repeat):
            runs.append(one_run())
            print(f"  run {i + 2}: {runs[-1]}", flush=True)
    for h in hooks:
        h.remove()
    row["runs"] = runs
    row["repeat"] = len(runs)
    for key in ("prefill_ms", "vision_ms", "decode_ms_per_token"):
        row[key] = statistics.median(r[key] for r in runs)
    row["decode_tokens"] = n_new
    row["answer_tokens"] = args.answer_tokens
    row["answer_s"] = (row["prefill_ms"] + args.answer_tokens * row["decode_ms_per_token"]) / 1000
    row["load_before"], row["load_after"] = round(load0, 2), round(os.getloadavg()[0], 2)
    model = visual_module = hooks = None  # free the weights (``one_run`` holds ``model`` in a cell) before the next build
    gc.collect()
    return row


def _markdown(rows: list[dict[str, Any]], args: argparse.Namespace, torch_version: str, total_s: float,
              notes: list[str]) -> str:
    head = ("| architecture (registry name) | dtype | frame -> visual tokens | prompt tokens | parameters | "
            "prefill (s) | of which vision tower (s) | decode (ms/token) | **answer of 150 tokens (s)** | runs | "
            "warm-up run: prefill (s) / decode (ms/token) | load avg before / after |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        name = f"{r['arch']} (`{r['registry']}`, `{r['prompt_format']}`)"
        if "skipped" in r:
            lines.append(f"| {name} | {r['dtype']} | | | {r['parameters'] / 1e9:.2f}B | skipped: {r['skipped']} "
                         "| | | | | | |")
            continue
        runs = f"{r['repeat']} after {r['warmup']} warm-up" if r["warmup"] else "1, no warm-up (prefill > 3 min)"
        w = r.get("warmup_run")
        warm = f"{w['prefill_ms'] / 1000:.1f} / {w['decode_ms_per_token']:.0f}" if w else ""
        lines.append(f"| {name} | {r['dtype']} | {r['frame']} -> {r['visual_tokens']} | {r['prompt_tokens']} | "
                     f"{r['parameters'] / 1e9:.2f}B | {r['prefill_ms'] / 1000:.1f} | {r['vision_ms'] / 1000:.1f} | "
                     f"{r['decode_ms_per_token']:.0f} | **{r['answer_s']:.0f}** | {runs} | {warm} | "
                     f"{r['load_before']} / {r['load_after']} |")
    title = ("# SMOKE TEST of reasoner_cpu_presets.py (2-layer narrow models, NOT the real sizes)" if args.small
             else "# Reasoner candidates for the `light` preset on CPU (random weights, published architectures)")
    machine = (f"Machine: {cpu_model() or 'unknown CPU'}, {os.cpu_count()} cores, torch {torch_version}, "
               f"{args.threads} torch threads, attention `sdpa`, batch 1. Date {time.strftime('%Y-%m-%d')}; "
               f"whole run {total_s:.0f} s.")
    method = (f"Prefill = `generate` call to the first new token (vision tower + whole prompt); vision tower = its "
              f"forward inside that prefill; decode = greedy, {args.new_tokens} forced steps after the first token. "
              f"Answer of {args.answer_tokens} tokens = prefill + {args.answer_tokens} x decode (one object's JSON). "
              "Prompt text tokenised with the tiny offline BPE of `segzero_tool.testing.tiny_qwen` "
              f"(query {args.query!r}).")
    return "\n\n".join([title, machine, method, "\n".join(lines)] + notes) + "\n"


def _bf16_estimates(rows: list[dict[str, Any]], args: argparse.Namespace) -> list[str]:
    """Estimated bf16 rows for the archs measured in fp32 only, from the fp32 -> bf16 ratios of an arch
    measured in both (the ratio is a property of this CPU's kernels: without native bf16 instructions
    torch's bf16 matmuls are far slower than its fp32 ones)."""
    done = {(r["arch"], r["dtype"]): r for r in rows if "skipped" not in r}
    pairs = [(done[(a, "fp32")], done[(a, "bf16")]) for a, d in done if d == "fp32" and (a, "bf16") in done]
    todo = [done[(a, "fp32")] for a, d in done if d == "fp32" and (a, "bf16") not in done]
    if not pairs or not todo:
        return []
    fp, bf = pairs[0]
    kp, kd = bf["prefill_ms"] / fp["prefill_ms"], bf["decode_ms_per_token"] / fp["decode_ms_per_token"]
    lines = [f"**bf16 estimates, not measured** (each fp32 row x the fp32 -> bf16 ratios measured on {fp['arch']}: "
             f"prefill x{kp:.1f}, decode x{kd:.1f}; a bf16 run of these would take longer than this benchmark's budget):",
             "", "| architecture | dtype | prefill (s) | decode (ms/token) | answer of 150 tokens (s) |",
             "|---|---|---|---|---|"]
    for r in todo:
        p, d = r["prefill_ms"] * kp / 1000, r["decode_ms_per_token"] * kd
        lines.append(f"| {r['arch']} | bf16 (est.) | ~{p:.0f} | ~{d:.0f} | ~{p + args.answer_tokens * d / 1000:.0f} |")
    return ["\n".join(lines)]


def _render(name: str, args: argparse.Namespace) -> None:
    """Rewrite ``results/<name>.md`` from its JSON (the recorded settings), plus ``--notes-file``."""
    import json

    from _common import RESULTS

    data = json.loads((RESULTS / f"{name}.json").read_text(encoding="utf-8"))
    for key in ("threads", "new_tokens", "answer_tokens", "query"):
        setattr(args, key, data[key])
    args.small = data["small"]
    notes = _bf16_estimates(data["rows"], args)
    if args.notes_file:
        notes.append(Path(args.notes_file).read_text(encoding="utf-8").strip())
    md = _markdown(data["rows"], args, data["machine"].get("torch", "?"), data["total_s"], notes)
    md = md.replace(f"Date {time.strftime('%Y-%m-%d')}", f"Date {data['date']}")
    md = md.replace(f"Machine: {cpu_model() or 'unknown CPU'}, {os.cpu_count()} cores",
                    f"Machine: {data['machine'].get('cpu_model', 'unknown CPU')}, {data['machine'].get('cpu_count')} cores")
    (RESULTS / f"{name}.md").write_text(md, encoding="utf-8")
    print(md)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="qwen3-vl-2b,qwen3-vl-4b,qwen2.5-vl-3b,qwen2.5-vl-7b",
                    help=f"comma-separated, any of {', '.join(ARCHS)} (default: all, in this order)")
    ap.add_argument("--dtype", default="fp32,bf16", help="comma-separated fp32 / bf16 (default fp32,bf16)")
    ap.add_argument("--combos", default=None,
                    help="comma-separated arch:dtype pairs, in this order (replaces --arch / --dtype)")
    ap.add_argument("--order", choices=["dtype", "arch"], default="dtype",
                    help="dtype: every arch in the first dtype, then the next dtype (default); arch: arch-major")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--new-tokens", type=int, default=8, help="decode steps timed after the first token (default 8)")
    ap.add_argument("--repeat", type=int, default=1, help="timed runs after the warm-up (default 1)")
    ap.add_argument("--warmup", type=int, choices=[0, 1], default=1, help="1: the first run is a warm-up (default)")
    ap.add_argument("--slow-s", type=float, default=180.0,
                    help="a first run whose prefill takes longer is kept as the only run (default 180)")
    ap.add_argument("--answer-tokens", type=int, default=ANSWER_TOKENS, help="tokens of a typical answer (default 150)")
    ap.add_argument("--query", default=QUERY)
    ap.add_argument("--small", action="store_true", help="2-layer narrow smoke-test models")
    ap.add_argument("--name", default=None, help="results file stem (default reasoner_cpu_presets; smoke: *_smoke)")
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("--append", action="store_true",
                    help="keep the rows of the existing results/<name>.json, replacing those of the same arch + dtype")
    ap.add_argument("--render", action="store_true",
                    help="rewrite results/<name>.md from results/<name>.json (no measurement); --notes-file adds text")
    ap.add_argument("--notes-file", default=None, help="markdown appended under the table (with --render)")
    args = ap.parse_args()
    archs = [a.strip() for a in args.arch.split(",") if a.strip()]
    dtypes = [d.strip() for d in args.dtype.split(",") if d.strip()]
    if args.combos:
        pairs = [c.strip().split(":") for c in args.combos.split(",") if c.strip()]
        if any(len(p) != 2 for p in pairs):
            ap.error("--combos takes arch:dtype pairs")
        archs, dtypes = [p[0] for p in pairs], [p[1] for p in pairs]
    for a in archs:
        if a not in ARCHS:
            ap.error(f"unknown --arch {a!r}; choose from {', '.join(ARCHS)}")
    for d in dtypes:
        if d not in DTYPES:
            ap.error(f"unknown --dtype {d!r}; choose from {', '.join(DTYPES)}")
    combos = [(a, d) for a, d in zip(archs, dtypes, strict=True)] if args.combos else \
        ([(a, d) for d in dtypes for a in archs] if args.order == "dtype" else [(a, d) for a in archs for d in dtypes])

    import torch

    torch.set_num_threads(args.threads)
    name = args.name or ("reasoner_cpu_presets_smoke" if args.small else "reasoner_cpu_presets")
    if args.render:
        _render(name, args)
        return
    t_start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    if args.append:
        import json

        from _common import RESULTS

        old = json.loads((RESULTS / f"{name}.json").read_text(encoding="utf-8"))
        redo = set(combos)
        rows = [r for r in old["rows"] if (r["arch"], r["dtype"]) not in redo]
        t_start -= old["total_s"]  # the whole run's time: the earlier invocation's + this one's
    with tempfile.TemporaryDirectory() as tmp:
        processors = _processors(tmp)
        for arch, dtype_name in combos:
            rows.append(_measure(arch, dtype_name, processors, args))
            r = rows[-1]
            if "skipped" not in r:
                print(f"{arch} {dtype_name}: prefill {r['prefill_ms'] / 1000:.1f} s (vision {r['vision_ms'] / 1000:.1f} s), "
                      f"decode {r['decode_ms_per_token']:.0f} ms/token, answer of {args.answer_tokens} tokens "
                      f"{r['answer_s']:.0f} s", flush=True)
            total_s = time.perf_counter() - t_start
            md = _markdown(rows, args, torch.__version__, total_s, _bf16_estimates(rows, args))
            if not args.no_write:
                write_result(name, {"small": args.small, "threads": args.threads, "new_tokens": args.new_tokens,
                                    "answer_tokens": args.answer_tokens, "query": args.query, "image": IMAGE,
                                    "total_s": total_s, "rows": rows}, md)
    print(md)
    if not args.no_write:
        print(f"wrote results/{name}.json and .md")


if __name__ == "__main__":
    main()
