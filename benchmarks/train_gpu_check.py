"""GPU check of the LoRA recipe (issue #13): a few GRPO steps of ``lora-24gb`` on the Qwen2.5-VL-3B architecture with
random weights, step time and peak memory next to the dry-run estimate of the same settings.

One command, offline (``HF_HUB_OFFLINE=1`` is set here; nothing is downloaded)::

    python benchmarks/train_gpu_check.py                      # CUDA: 3B, 3 steps -> results/train_gpu_check_cuda.*
    python benchmarks/train_gpu_check.py --arch tiny --cpu --steps 1 --no-write   # CPU proof of this script

What it does:

1. **Model**: ``--arch 3b`` builds Qwen2.5-VL-3B-Instruct's published config
   (:func:`segzero_tool.testing.qwen_configs.qwen2_5_vl_config`, 3.75B parameters) with random weights, in bf16,
   directly on the GPU (no CPU initialisation), and saves it with a processor that works offline: the tiny
   byte-level BPE tokenizer and chat template of :mod:`segzero_tool.testing.tiny_qwen` (451 ids, all below the
   model's 151,936; the config's special-token ids point at the tokenizer's) and Qwen2.5-VL's image processor
   (patch 14, merge 2, 3136 .. 12845056 pixels: an 840x840 frame is 60x60 patches = 900 visual tokens). Random
   weights rarely sample ``<|im_end|>``, so every completion runs to ``max_completion_length``: the worst case
   of the budget. ``--arch tiny`` uses :func:`~segzero_tool.testing.tiny_qwen.build_tiny_qwen2_5_vl` instead.
2. **Data**: ``--rows`` (32) VisionReasoner rows (840x840 JPEG, a JSON list of ``bbox_2d`` / ``point_2d``),
   saved with ``save_to_disk``: training reads them through ``load_training_dataset`` like ``--dataset DIR``.
3. **Dry run**: ``segzero_tool.training.dry_run.dry_run`` for the very recipe that trains (printed), and the
   estimate as numbers (``run_shape`` + ``estimate_memory``), with ``--gpu-memory`` = this GPU's memory.
4. **Training**: ``run_training`` with the ``lora-24gb`` recipe and these overrides, said in the output:
   ``--steps`` optimizer steps (3), ``--prompts-per-step`` (4) x the recipe's 8 generations (per device 2, so
   16 accumulation steps; ``steps_per_generation`` stays the recipe's 16 when it divides, so one generate call
   makes 32 completions as in the full recipe), ``max_completion_length`` capped at ``--max-completion-length``
   (256; the recipe's 1024 would make every random-weight step ~4x longer), ``report_to none``, no
   checkpoints, no merged model (the adapter is saved). A ``TrainerCallback`` records each optimizer step's wall
   time (from the previous step's end; the first step includes warm-up) and, on CUDA,
   ``torch.cuda.max_memory_allocated`` / ``max_memory_reserved`` (peaks reset after each step) and the device's
   used memory (``mem_get_info``, CUDA context included). On the CPU the process's peak RSS stands in for the
   memory (not comparable with the GPU estimate).
5. **Result**: ``results/train_gpu_check_<device>.json`` / ``.md`` (``train_gpu_check_tiny_<device>.*`` for the
   tiny arch): device, versions, settings, step times, peaks, the estimate's terms and measured / estimated.

Exit status: 0 done; 2 ``--arch 3b`` without CUDA (one line), or a recipe / batch error.
"""

from __future__ import annotations

import os

# Offline before anything from the hub is imported: nothing here downloads.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402

GIB = 1024**3
FRAME = 840
RECIPE = "lora-24gb"


# --- model ---------------------------------------------------------------------------------------------------


def build_model(arch: str, folder: Path, *, on_cuda: bool) -> dict[str, Any]:
    """Write a random-weights checkpoint of ``arch`` with an offline processor into ``folder``."""
    from segzero_tool.testing.tiny_qwen import build_tiny_qwen2_5_vl

    if arch == "tiny":
        build_tiny_qwen2_5_vl(folder, seed=0)
        return {"model": "tiny random Qwen2.5-VL (segzero_tool.testing.tiny_qwen)"}
    import torch
    from transformers import AutoProcessor, GenerationConfig, Qwen2_5_VLForConditionalGeneration

    from segzero_tool.testing.qwen_configs import HUB_IDS, qwen2_5_vl_config

    # The tiny checkpoint's processor: a byte-level BPE + Qwen's chat template, no download.
    tiny = build_tiny_qwen2_5_vl(folder.parent / f"{folder.name}-tiny-processor", seed=0)
    processor = AutoProcessor.from_pretrained(tiny)
    processor.image_processor.size = {"shortest_edge": 3136, "longest_edge": 12845056}  # Qwen2.5-VL preprocessor_config
    tok = processor.tokenizer
    ids = {name: tok.convert_tokens_to_ids(tok_str) for name, tok_str in (
        ("pad", "<|endoftext|>"), ("eos", "<|im_end|>"), ("image", "<|image_pad|>"), ("video", "<|video_pad|>"),
        ("vision_start", "<|vision_start|>"), ("vision_end", "<|vision_end|>"))}
    config = qwen2_5_vl_config(arch, image_token_id=ids["image"], video_token_id=ids["video"],
                               vision_start_token_id=ids["vision_start"], vision_end_token_id=ids["vision_end"])
    config.text_config.bos_token_id = ids["pad"]
    config.text_config.eos_token_id = ids["eos"]
    config.text_config.pad_token_id = ids["pad"]
    assert len(tok) <= config.text_config.vocab_size
    t0 = time.perf_counter()
    torch.manual_seed(0)
    with torch.device("cuda" if on_cuda else "cpu"):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=torch.bfloat16)
    if on_cuda:
        torch.cuda.synchronize()
    built = time.perf_counter() - t0
    model.generation_config = GenerationConfig(bos_token_id=ids["pad"], eos_token_id=[ids["eos"], ids["pad"]],
                                               pad_token_id=ids["pad"])
    params = sum(p.numel() for p in model.parameters())
    t0 = time.perf_counter()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    saved = time.perf_counter() - t0
    del model
    if on_cuda:
        torch.cuda.empty_cache()
    return {"model": f"{HUB_IDS[arch]} architecture, random weights (bf16)", "parameters": params,
            "build_s": round(built, 1), "save_s": round(saved, 1),
            "tokenizer": f"tiny byte-level BPE ({len(tok)} ids) of segzero_tool.testing.tiny_qwen"}


# --- data ----------------------------------------------------------------------------------------------------


def write_rows(folder: Path, n: int) -> None:
    """``n`` VisionReasoner rows (840x840 JPEG with a few boxes, their ``bbox_2d`` / ``point_2d``) on disk."""
    import datasets
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    problems, solutions, images = [], [], []
    for i in range(n):
        base = np.linspace(40, 200, FRAME, dtype=np.uint8)
        img = Image.fromarray(np.stack([np.tile(base, (FRAME, 1)), np.tile(base[:, None], (1, FRAME)),
                                        np.full((FRAME, FRAME), 90 + i % 100, np.uint8)], axis=-1))
        draw = ImageDraw.Draw(img)
        objects = []
        for _ in range(1 + i % 3):
            x0, y0 = (int(v) for v in rng.integers(0, FRAME - 200, 2))
            w, h = (int(v) for v in rng.integers(60, 200, 2))
            draw.rectangle([x0, y0, x0 + w, y0 + h], fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
            objects.append({"bbox_2d": [x0, y0, x0 + w, y0 + h], "point_2d": [x0 + w // 2, y0 + h // 2]})
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=90)
        problems.append(f"the coloured boxes in picture {i}")
        solutions.append(json.dumps(objects))
        images.append({"bytes": buf.getvalue(), "path": None})
    features = datasets.Features({"problem": datasets.Value("string"), "solution": datasets.Value("string"),
                                  "image": datasets.Image()})
    datasets.Dataset.from_dict({"problem": problems, "solution": solutions, "image": images},
                               features=features).save_to_disk(str(folder))


# --- recipe, dry run -----------------------------------------------------------------------------------------


def make_recipe(args: argparse.Namespace, model: Path, dataset: Path, output: Path) -> tuple[Any, Any, list[str]]:
    """The ``lora-24gb`` recipe with this check's overrides, its validated plan and the overrides in words."""
    import dataclasses

    from segzero_tool.training.config import check_grpo_overrides, load_recipe, plan_for

    shipped = load_recipe(RECIPE)
    overrides: dict[str, Any] = {
        "model": str(model), "dataset": str(dataset), "output_dir": str(output), "max_steps": args.steps,
        "save_steps": 1_000_000, "prompts_per_step": args.prompts_per_step,
        "max_completion_length": min(args.max_completion_length, shipped.max_completion_length),
        "report_to": "none", "merge_lora": False,
    }
    if args.cpu:
        overrides["bf16"] = False  # run_training trains in fp32 on the CPU; the estimate follows
    if args.arch == "tiny":  # the tiny processor's bounds: an 840x840 frame -> 16x16 patches, not 60x60
        from segzero_tool.testing.tiny_qwen import TINY_MAX_PIXELS, TINY_MIN_PIXELS

        overrides |= {"min_pixels": TINY_MIN_PIXELS, "max_pixels": TINY_MAX_PIXELS}
    recipe = load_recipe(RECIPE, overrides)
    plan = plan_for(recipe, 1)
    per_call = plan.per_device_train_batch_size
    wanted = int(shipped.grpo.get("steps_per_generation") or plan.gradient_accumulation_steps)
    valid = [k for k in range(1, plan.gradient_accumulation_steps + 1)
             if plan.gradient_accumulation_steps % k == 0 and (per_call * k) % plan.num_generations == 0]
    steps_per_generation = max(k for k in valid if k <= wanted) if any(k <= wanted for k in valid) else min(valid)
    recipe = dataclasses.replace(recipe, grpo={**recipe.grpo, "steps_per_generation": steps_per_generation})
    check_grpo_overrides(recipe, plan)
    said = [f"max_steps {args.steps}", f"prompts_per_step {recipe.prompts_per_step} (recipe: "
            f"{shipped.prompts_per_step})",
            f"max_completion_length {recipe.max_completion_length} (recipe: {shipped.max_completion_length})",
            f"steps_per_generation {steps_per_generation} (recipe: {shipped.grpo.get('steps_per_generation')}): "
            f"{per_call * steps_per_generation} completions per generate call",
            "report_to none", "no checkpoints", "merge_lora false (adapter saved)"]
    if args.cpu:
        said.append("fp32 on the CPU (bf16 false)")
    if args.arch == "tiny":
        said.append(f"pixels {recipe.min_pixels}..{recipe.max_pixels} (the tiny processor's; the estimate still "
                    f"counts {FRAME}x{FRAME} frames)")
    return recipe, plan, said


def estimate(recipe: Any, plan: Any, model: Path, gpu_memory: int | None) -> tuple[int, str, dict[str, Any]]:
    """Run the dry run (exit status, its printed text) and the estimate as numbers, for ``recipe``."""
    from transformers import AutoConfig

    from segzero_tool.training.dry_run import dry_run, run_shape
    from segzero_tool.training.memory_plan import dims_from_config, estimate_memory

    config = AutoConfig.from_pretrained(model)
    out = io.StringIO()
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = dry_run(recipe, plan, gpu_memory_gib=None if gpu_memory is None else gpu_memory / GIB,
                       strategy="single", out=out, config=config)
    dims = dims_from_config(config)
    shape = run_shape(recipe, plan, "single")
    est = estimate_memory(dims, shape, device_memory=gpu_memory)
    numbers = {
        "peak_gib": est.peak / GIB,
        "static_gib": est.phase("static") / GIB,
        "generation_gib": est.phase("generation") / GIB,
        "training_gib": est.phase("training") / GIB,
        "terms_gib": {t.name: t.bytes / GIB for t in est.terms},
        "parameters": dims.params,
        "sequence_tokens": shape.sequence_tokens,
        "generated_per_call": shape.generated_per_call,
    }
    return code, out.getvalue() + err.getvalue(), numbers


# --- measurement ---------------------------------------------------------------------------------------------


def make_callback(on_cuda: bool) -> Any:
    from transformers import TrainerCallback

    class StepRecorder(TrainerCallback):
        """Wall time of each optimizer step (previous step's end -> this step's end) and the memory peaks."""

        def __init__(self) -> None:
            self.steps: list[dict[str, float]] = []
            self.logs: list[dict[str, Any]] = []
            self.at_train_begin: dict[str, float] = {}
            self._t = 0.0

        def _sync(self) -> None:
            if on_cuda:
                import torch

                torch.cuda.synchronize()

        def on_train_begin(self, args, state, control, **kwargs):
            self._sync()
            if on_cuda:
                import torch

                self.at_train_begin = {"allocated_gib": torch.cuda.memory_allocated() / GIB,
                                       "reserved_gib": torch.cuda.memory_reserved() / GIB}
                torch.cuda.reset_peak_memory_stats()
            self._t = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self._sync()
            now = time.perf_counter()
            row = {"step": state.global_step, "seconds": now - self._t}
            if on_cuda:
                import torch

                free, total = torch.cuda.mem_get_info()
                row |= {"max_allocated_gib": torch.cuda.max_memory_allocated() / GIB,
                        "max_reserved_gib": torch.cuda.max_memory_reserved() / GIB,
                        "device_used_gib": (total - free) / GIB}
                torch.cuda.reset_peak_memory_stats()
            else:
                row["peak_rss_gib"] = _peak_rss_gib()
            self.steps.append(row)
            self._t = time.perf_counter()

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs:
                self.logs.append(dict(logs))

    return StepRecorder()


def _peak_rss_gib() -> float:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return kib / (GIB if platform.system() == "Darwin" else 1024**2)


# --- report --------------------------------------------------------------------------------------------------


def summarize(steps: list[dict[str, float]], on_cuda: bool) -> dict[str, Any]:
    times = [s["seconds"] for s in steps]
    out: dict[str, Any] = {"step_seconds": [round(t, 3) for t in times], "first_step_s": times[0] if times else None,
                           "rest_median_s": statistics.median(times[1:]) if len(times) > 1 else None}
    if on_cuda:
        out["peak_allocated_gib"] = max(s["max_allocated_gib"] for s in steps)
        out["peak_reserved_gib"] = max(s["max_reserved_gib"] for s in steps)
        out["device_used_gib_after_steps"] = max(s["device_used_gib"] for s in steps)
    else:
        out["peak_rss_gib"] = max(s["peak_rss_gib"] for s in steps)
    return out


def markdown(result: dict[str, Any]) -> str:
    m, e, s = result["measured"], result["estimate"], result["settings"]
    lines = [f"# GPU check: {RECIPE} on the {result['arch']} architecture ({result['device_name']})", "",
             f"{result['date']}; torch {result['versions']['torch']}, transformers "
             f"{result['versions']['transformers']}, trl {result['versions']['trl']}, peft "
             f"{result['versions']['peft']}; {result['model']['model']}; total {result['total_s']:.0f} s "
             f"(model written in {result['model_s']:.0f} s, training incl. loading {result['train_s']:.0f} s).", "",
             "Overrides of the recipe: " + "; ".join(s["overrides"]) + ".", "",
             "| | measured | dry-run estimate | measured / estimated |", "|---|---|---|---|"]
    first = m["first_step_s"]
    rest = m["rest_median_s"]
    lines.append(f"| step time, first (warm-up) | {first:.2f} s | - | - |")
    lines.append(f"| step time, median of the rest | {'-' if rest is None else f'{rest:.2f} s'} | - | - |")
    if "peak_reserved_gib" in m:
        lines.append(f"| peak reserved (torch) | {m['peak_reserved_gib']:.2f} GiB | {e['peak_gib']:.2f} GiB | "
                     f"{m['peak_reserved_gib'] / e['peak_gib']:.2f} |")
        lines.append(f"| peak allocated (torch) | {m['peak_allocated_gib']:.2f} GiB | {e['peak_gib']:.2f} GiB | "
                     f"{m['peak_allocated_gib'] / e['peak_gib']:.2f} |")
        lines.append(f"| device used after a step (incl. CUDA context) | {m['device_used_gib_after_steps']:.2f} GiB "
                     "| - | - |")
        lines.append(f"| allocated at train begin (weights + adapters) | {m['at_train_begin']['allocated_gib']:.2f} "
                     f"GiB | {e['terms_gib']['weights'] + e['terms_gib'].get('lora adapters', 0):.2f} GiB "
                     "(weights + lora adapters) | - |")
    else:
        lines.append(f"| peak RSS of the process (CPU; not comparable) | {m['peak_rss_gib']:.2f} GiB | "
                     f"{e['peak_gib']:.2f} GiB | {m['peak_rss_gib'] / e['peak_gib']:.2f} |")
    lines += ["", f"Estimate: static {e['static_gib']:.2f} + max(generation {e['generation_gib']:.2f}, training "
              f"{e['training_gib']:.2f}) GiB x 1.1 = {e['peak_gib']:.2f} GiB; terms: "
              + ", ".join(f"{k} {v:.2f}" for k, v in e["terms_gib"].items()) + " GiB.", "",
              "Per step: " + ", ".join(
                  f"{r['step']}: {r['seconds']:.2f} s"
                  + (f" / {r['max_allocated_gib']:.2f} alloc / {r['max_reserved_gib']:.2f} reserved GiB"
                     if "max_allocated_gib" in r else "") for r in m["steps"]) + "."]
    return "\n".join(lines) + "\n"


# --- main ----------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", choices=("3b", "tiny"), default="3b",
                    help="3b: Qwen2.5-VL-3B-Instruct's architecture (CUDA only); tiny: the CPU proof")
    ap.add_argument("--steps", type=int, default=3, help="optimizer steps (default 3)")
    ap.add_argument("--cpu", action="store_true", help="train on the CPU in fp32 (with --arch tiny)")
    ap.add_argument("--prompts-per-step", type=int, default=4, help="prompts per optimizer step (recipe: 16)")
    ap.add_argument("--max-completion-length", type=int, default=256, help="cap of the recipe's 1024")
    ap.add_argument("--rows", type=int, default=32, help="rows of the synthetic training set")
    ap.add_argument("--work-dir", help="where the model, rows and run go (default: a temporary folder, removed)")
    ap.add_argument("--out-dir", help="results folder (default: benchmarks/results)")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args(argv)
    if args.steps < 1 or args.rows < 1 or args.prompts_per_step < 1 or args.max_completion_length < 1:
        ap.error("--steps, --rows, --prompts-per-step and --max-completion-length must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    on_cuda = torch.cuda.is_available() and not args.cpu
    if args.arch == "3b" and not on_cuda:
        why = "--cpu given" if args.cpu else "no CUDA device"
        print(f"train_gpu_check: --arch 3b needs a CUDA GPU ({why}); run --arch tiny --cpu for the CPU proof",
              file=sys.stderr)
        return 2
    if args.rows < args.prompts_per_step:
        print(f"train_gpu_check: --rows {args.rows} is fewer than --prompts-per-step {args.prompts_per_step}",
              file=sys.stderr)
        return 2
    import logging

    import peft
    import transformers
    import trl

    from segzero_tool.errors import SegZeroError
    from segzero_tool.training.train import report_error, run_training

    logging.basicConfig(level=logging.WARNING)
    start = time.perf_counter()
    device_name = torch.cuda.get_device_name(0) if on_cuda else (platform.processor() or platform.machine())
    gpu_memory = int(torch.cuda.get_device_properties(0).total_memory) if on_cuda else None
    with contextlib.ExitStack() as stack:
        work = Path(args.work_dir) if args.work_dir else Path(stack.enter_context(
            tempfile.TemporaryDirectory(prefix="train-gpu-check-")))
        work.mkdir(parents=True, exist_ok=True)
        model_dir, rows_dir, run_dir = work / f"qwen2.5-vl-{args.arch}-random", work / "rows", work / "run"
        print(f"[1/4] writing the random {args.arch} model to {model_dir} ...", flush=True)
        t0 = time.perf_counter()
        model_info = build_model(args.arch, model_dir, on_cuda=on_cuda)
        model_s = time.perf_counter() - t0
        print(f"      {model_info} ({model_s:.1f} s)", flush=True)
        write_rows(rows_dir, args.rows)
        try:
            recipe, plan, said = make_recipe(args, model_dir, rows_dir, run_dir)
            print(f"[2/4] dry run: {RECIPE} with " + "; ".join(said), flush=True)
            code, text, est = estimate(recipe, plan, model_dir, gpu_memory)
        except SegZeroError as exc:
            return report_error(exc)
        print(text.rstrip(), flush=True)
        print(f"      (dry run exit {code})", flush=True)
        print(f"[3/4] training {args.steps} step(s) on {'CUDA' if on_cuda else 'the CPU'}: {plan.describe()}",
              flush=True)
        recorder = make_callback(on_cuda)
        if on_cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        try:
            trainer = run_training(recipe, plan=plan, use_cpu=not on_cuda, callbacks=[recorder])
        except SegZeroError as exc:
            return report_error(exc)
        train_s = time.perf_counter() - t0
        if trainer.state.global_step != args.steps or len(recorder.steps) != args.steps:
            print(f"train_gpu_check: trained {trainer.state.global_step} of {args.steps} steps", file=sys.stderr)
            return 1
    measured = summarize(recorder.steps, on_cuda) | {"steps": recorder.steps,
                                                     "at_train_begin": recorder.at_train_begin}
    lengths = [log["completions/mean_length"] for log in recorder.logs if "completions/mean_length" in log]
    result: dict[str, Any] = {
        "arch": args.arch, "device": "cuda" if on_cuda else "cpu", "device_name": device_name,
        "gpu_memory_gib": None if gpu_memory is None else gpu_memory / GIB,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__,
                     "peft": peft.__version__},
        "model": model_info, "model_s": model_s, "train_s": train_s, "total_s": time.perf_counter() - start,
        "date": time.strftime("%Y-%m-%d"),
        "settings": {"recipe": RECIPE, "overrides": said, "plan": plan.describe(), "rows": args.rows,
                     "frame": FRAME, "completion_mean_length": lengths},
        "measured": measured, "estimate": est, "dry_run_exit": code,
    }
    if on_cuda:
        result["ratio_reserved_to_estimate"] = measured["peak_reserved_gib"] / est["peak_gib"]
        result["ratio_allocated_to_estimate"] = measured["peak_allocated_gib"] / est["peak_gib"]
    else:
        result["ratio_rss_to_estimate"] = measured["peak_rss_gib"] / est["peak_gib"]
    print("[4/4] result", flush=True)
    md = markdown(result)
    print(md, flush=True)
    name = f"train_gpu_check_{'' if args.arch == '3b' else args.arch + '_'}{result['device']}"
    if not args.no_write:
        if args.out_dir:
            import _common

            _common.RESULTS = Path(args.out_dir)
        path = write_result(name, {k: v for k, v in result.items() if k != "date"}, md)
        print(f"wrote {path} and {path.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
