"""``segzero-train --dry-run``: will this run fit, before renting the GPUs?

Loads the recipe and its batch plan (already checked by the caller), the first rows of the dataset (so a bad
dataset fails now, not after the model loaded) and the model's config only (no weights), estimates the peak
GPU memory per device with :mod:`.memory_plan`, prints the plan and each term with its formula, and
compares it with ``--gpu-memory`` (GiB; default: the first CUDA device's memory when there is one).

Exit 0: it fits (or no GPU size is known: the estimate is printed). Exit 2: it does not fit; the output
names settings that make it fit (a smaller generation batch through ``grpo: {steps_per_generation: N}``,
gradient checkpointing, LoRA, ZeRO-3, and with colocated vLLM a smaller ``vllm_gpu_memory_utilization`` that still
holds vLLM's weights and KV cache, or vLLM in server mode). Exit 2 also when colocated vLLM's share of the GPU is
too small for vLLM itself (its weights + the KV cache of one generate call + 1 GiB): vLLM would not start.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any, TextIO

from .config import BatchPlan, Recipe, RecipeError
from .memory_plan import (
    GIB,
    STRATEGIES,
    MemoryEstimate,
    RunShape,
    dims_from_config,
    estimate_memory,
    vllm_needs,
)

#: Image tokens of one frame are what the prompt holds besides the text: (frame / 28)^2 for Qwen2.5-VL.
_TEXT_TOKENS = 200


def add_dry_run_options(p: Any) -> None:
    """The ``--dry-run`` flags of ``segzero-train``."""
    d = p.add_argument_group("dry run (no weights loaded)")
    d.add_argument("--dry-run", action="store_true",
                   help="check the recipe, the batch plan, the dataset's first rows and the model config, print the "
                        "estimated peak GPU memory per device; exit 0 if it fits, 2 (with settings that fit) if not")
    d.add_argument("--gpu-memory", type=float, metavar="GIB",
                   help="memory of one GPU in GiB for --dry-run (default: this machine's first GPU)")
    d.add_argument("--strategy", default="auto", choices=("auto", *STRATEGIES),
                   help="sharding for --dry-run (default: read from accelerate launch, else ddp / single)")


def detect_strategy(world_size: int, environ: dict[str, str] | None = None) -> str:
    """The sharding of this launch, read from what ``accelerate launch`` exports: DeepSpeed with its ZeRO
    stage, FSDP, else DDP for several processes and ``single`` for one."""
    env = os.environ if environ is None else environ
    if env.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true":
        stage = env.get("ACCELERATE_DEEPSPEED_ZERO_STAGE", "2").strip()
        return f"zero{stage}" if f"zero{stage}" in STRATEGIES else "zero2"
    if env.get("ACCELERATE_USE_FSDP", "").lower() == "true":
        return "fsdp"
    return "ddp" if world_size > 1 else "single"


def device_memory_bytes() -> int | None:
    """Total memory of CUDA device 0, or ``None`` without one (torch is imported only here)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a core dependency
        return None
    if not torch.cuda.is_available():
        return None
    return int(torch.cuda.get_device_properties(0).total_memory)


def run_shape(recipe: Recipe, plan: BatchPlan, strategy: str) -> RunShape:
    """The estimate's inputs from a recipe and its batch plan."""
    steps = int(recipe.grpo.get("steps_per_generation") or plan.gradient_accumulation_steps)
    image_tokens = (recipe.frame_size // 28) ** 2
    prompt = recipe.max_prompt_length or image_tokens + _TEXT_TOKENS
    return RunShape(
        per_device_train_batch_size=plan.per_device_train_batch_size, steps_per_generation=steps,
        max_prompt_length=int(prompt), max_completion_length=recipe.max_completion_length,
        frame_size=recipe.frame_size, world_size=plan.num_processes, strategy=strategy, lora=recipe.lora,
        lora_r=recipe.lora_r, lora_targets=tuple(recipe.lora_target_modules), beta=recipe.beta,
        gradient_checkpointing=recipe.gradient_checkpointing, use_vllm=recipe.use_vllm, vllm_mode=recipe.vllm_mode,
        vllm_gpu_memory_utilization=recipe.vllm_gpu_memory_utilization,
        vllm_tensor_parallel_size=recipe.vllm_tensor_parallel_size,
        param_bytes=2 if recipe.bf16 else 4,
    )


def _valid_steps(plan: BatchPlan, num_generations: int) -> list[int]:
    """``steps_per_generation`` values that keep the training the same, largest first: each generate call makes
    whole groups (per device x processes x steps a multiple of the group size) and an optimizer step is a whole
    number of calls (the accumulation steps a multiple of the steps)."""
    out = []
    for k in range(plan.gradient_accumulation_steps, 0, -1):
        if plan.gradient_accumulation_steps % k == 0 and \
                (plan.per_device_train_batch_size * plan.num_processes * k) % num_generations == 0:
            out.append(k)
    return out


#: A suggested setting must leave this share of the GPU free (the estimate is an estimate).
SUGGESTION_MARGIN = 0.10


def vllm_share_is_enough(dims: Any, shape: RunShape, memory: int) -> bool:
    """Whether colocated vLLM's ``vllm_gpu_memory_utilization x memory`` holds what vLLM needs
    (:func:`memory_plan.vllm_needs`); true without colocated vLLM."""
    if not (shape.use_vllm and shape.vllm_mode == "colocate"):
        return True
    return shape.vllm_gpu_memory_utilization * memory >= vllm_needs(dims, shape)[0]


def suggestions(dims: Any, shape: RunShape, recipe: Recipe, plan: BatchPlan, memory: int) -> list[str]:
    """Settings that make the estimate fit ``memory`` bytes with :data:`SUGGESTION_MARGIN` to spare, each tried
    on its own from the recipe's (colocated vLLM's share is of the whole ``memory`` and must stay enough for
    vLLM itself)."""
    found: list[str] = []
    budget = int(memory * (1 - SUGGESTION_MARGIN))

    def fits(changed: RunShape) -> bool:
        return (estimate_memory(dims, changed, device_memory=memory).fits(budget)
                and vllm_share_is_enough(dims, changed, memory))

    if not shape.use_vllm:
        for k in _valid_steps(plan, recipe.num_generations):
            if k < shape.steps_per_generation and fits(dataclasses.replace(shape, steps_per_generation=k)):
                found.append(f"grpo: {{steps_per_generation: {k}}} (generate {shape.per_device_train_batch_size * k} "
                             "completions per call instead of "
                             f"{shape.generated_per_call}; same optimizer steps)")
                break
    if shape.use_vllm and shape.vllm_mode == "colocate":
        for hundredths in range(int(round(shape.vllm_gpu_memory_utilization * 100)) - 5, 0, -5):
            util = hundredths / 100
            if fits(dataclasses.replace(shape, vllm_gpu_memory_utilization=util)):
                found.append(f"vllm_gpu_memory_utilization: {util} in the recipe ({util * memory / GIB:.1f} GiB for "
                             "vLLM, still enough for its weights and KV cache)")
                break
        if fits(dataclasses.replace(shape, vllm_mode="server")):
            found.append("--vllm-mode server --vllm-server-base-url URL (vLLM on other GPUs: trl vllm-serve)")
    for label, change in (("gradient_checkpointing: true", {"gradient_checkpointing": True}),
                          ("lora: true", {"lora": True}),
                          ("ZeRO-3 (training/accelerate/zero3.yaml) or FSDP (fsdp.yaml)", {"strategy": "zero3"})):
        if all(getattr(shape, key) == value for key, value in change.items()):
            continue
        if change.get("strategy") and (shape.world_size == 1 or shape.strategy == "fsdp"):
            continue
        if fits(dataclasses.replace(shape, **change)):
            found.append(label)
    return found


def dry_run(recipe: Recipe, plan: BatchPlan, *, gpu_memory_gib: float | None = None, strategy: str = "auto",
            load_rows: bool = True, out: TextIO | None = None, config: Any = None) -> int:
    """Print the plan and the memory estimate; return 0 if it fits (or no size is known), 2 if not.

    Args:
        recipe, plan: the run (the plan is already validated).
        gpu_memory_gib: memory of one GPU in GiB (default: CUDA device 0's, if any).
        strategy: ``auto`` (:func:`detect_strategy`) or one of :data:`memory_plan.STRATEGIES`.
        load_rows: open the first 2 rows of ``recipe.dataset`` (raises its ``TrainingDataError``).
        config: the model config (default: ``AutoConfig.from_pretrained(recipe.model)``; no weights).
    """
    out = out or sys.stdout
    if strategy == "auto":
        strategy = detect_strategy(plan.num_processes)
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be auto or one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if load_rows and recipe.dataset:
        from .data import load_training_dataset

        rows = load_training_dataset(recipe.dataset, kind=recipe.dataset_kind,  # type: ignore[arg-type]
                                     split=recipe.dataset_split, limit=2, frame_size=recipe.frame_size)
        print(f"dataset: {recipe.dataset} (first {len(rows)} rows read)", file=out)
    if config is None:
        from transformers import AutoConfig

        try:
            config = AutoConfig.from_pretrained(recipe.model)
        except (OSError, ValueError) as exc:
            raise RecipeError(f"model {recipe.model!r}: its config cannot be read ({' '.join(str(exc).split())[:200]}); "
                              "give a hub id or a local folder with config.json (--model)") from None
    dims = dims_from_config(config)
    shape = run_shape(recipe, plan, strategy)
    memory = int(gpu_memory_gib * GIB) if gpu_memory_gib is not None else device_memory_bytes()
    estimate: MemoryEstimate = estimate_memory(dims, shape, device_memory=memory)
    print(f"recipe {recipe.name}: model {recipe.model} ({dims.params / 1e9:.2f}B parameters), {plan.describe()}",
          file=out)
    print(f"sharding: {strategy} over {plan.num_processes} process(es); generation: "
          + ("vLLM (" + recipe.vllm_mode + ")" if recipe.use_vllm else
             f"{shape.generated_per_call} completions per generate call (steps_per_generation "
             f"{shape.steps_per_generation})"), file=out)
    print("estimated peak GPU memory per device (formulas: training/README.md, 'Dry run'):", file=out)
    print(estimate.table(), file=out)
    if shape.use_vllm and shape.vllm_mode == "colocate":
        print(f"  vLLM needs inside its share: {vllm_needs(dims, shape)[1]}", file=out)
    if memory is None:
        print("no GPU here and no --gpu-memory: give --gpu-memory GIB to check the fit", file=out)
        return 0
    if estimate.fits(memory) and not vllm_share_is_enough(dims, shape, memory):
        need = vllm_needs(dims, shape)[0]
        print(f"segzero-train: error: vLLM's share ({shape.vllm_gpu_memory_utilization} x {memory / GIB:.0f} GiB = "
              f"{shape.vllm_gpu_memory_utilization * memory / GIB:.1f} GiB) is less than vLLM needs "
              f"({need / GIB:.1f} GiB: {vllm_needs(dims, shape)[1]}); vLLM would not start", file=sys.stderr)
        fixes = suggestions(dims, dataclasses.replace(shape, vllm_gpu_memory_utilization=1.0), recipe, plan, memory)
        fixes = [f for f in fixes if f.startswith(("vllm_gpu_memory_utilization", "--vllm-mode"))]
        if fixes:
            print(f"settings that fit with {100 * SUGGESTION_MARGIN:.0f}% to spare (each on its own):", file=sys.stderr)
            for fix in fixes:
                print(f"  {fix}", file=sys.stderr)
        return 2
    if estimate.fits(memory):
        print(f"fits: {estimate.peak / GIB:.1f} GiB of {memory / GIB:.0f} GiB "
              f"({100 * (1 - estimate.peak / memory):.0f}% left)", file=out)
        return 0
    print(f"segzero-train: error: the estimate ({estimate.peak / GIB:.1f} GiB) does not fit {memory / GIB:.0f} GiB "
          "per device", file=sys.stderr)
    fixes = suggestions(dims, shape, recipe, plan, memory)
    if fixes:
        print(f"settings that fit with {100 * SUGGESTION_MARGIN:.0f}% to spare (each on its own):", file=sys.stderr)
        for fix in fixes:
            print(f"  {fix}", file=sys.stderr)
    else:
        print("no single setting makes it fit: use a GPU with more memory, more GPUs with ZeRO-3, or a smaller "
              "model", file=sys.stderr)
    return 2


__all__ = ["add_dry_run_options", "detect_strategy", "device_memory_bytes", "dry_run", "run_shape", "suggestions",
           "vllm_share_is_enough"]
