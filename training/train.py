"""``segzero-train``: GRPO on Qwen2-VL / Qwen2.5-VL with TRL's ``GRPOTrainer`` and the Seg-Zero / VisionReasoner rewards.

Launch commands (see training/README.md)::

    segzero-train --recipe visionreasoner-7b --dataset Ricky06662/VisionReasoner_multi_object_7k_840
    accelerate launch --config_file training/accelerate/zero2.yaml -m segzero_tool.training \\
        --recipe visionreasoner-7b --use-vllm
    segzero-train --recipe lora-24gb --dataset data/my_set --output-dir runs/lora
    segzero-train --recipe lora-24gb --dataset data/my_set --output-dir runs/lora --resume

The batch arithmetic (against the real world size), a local dataset path and the packages the run needs
(tensorboard for ``report_to: tensorboard``, deepspeed under a DeepSpeed accelerate config, ...) are checked
before anything heavy is imported or loaded. Exit status: 0 done, 2 configuration or dataset error, 5 a
missing package (the message names the extra to install). Checkpoints
(``output_dir/checkpoint-N``) hold the processor next to the weights, so they load with
``AutoModelForImageTextToText`` / ``AutoProcessor`` and ``SegZeroPipeline.from_pretrained``; the final model goes
to ``output_dir/final`` (with LoRA: merged weights there, the adapter in ``output_dir/final-adapter``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from segzero_tool.cli import OneLineErrorParser
from segzero_tool.errors import MissingDependencyError, SegZeroError

from .config import (
    BatchPlan,
    BatchSizeError,
    Recipe,
    RecipeError,
    check_grpo_fields,
    check_grpo_overrides,
    check_world_size,
    detect_num_processes,
    grpo_config_kwargs,
    load_recipe,
    plan_for,
    recipe_names,
)
from .dry_run import add_dry_run_options, dry_run
from .eval_callback import make_eval_callback

logger = logging.getLogger("segzero_tool.training")


class TrainingSetupError(SegZeroError, RuntimeError):
    """The run cannot start as asked (``--resume`` without a checkpoint, missing dataset, ...)."""


# --- command line --------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = OneLineErrorParser(  # usage errors: one line, exit 2
        prog="segzero-train",
        description="GRPO training of a Qwen2-VL / Qwen2.5-VL reasoner with the Seg-Zero / VisionReasoner rewards.",
        epilog="Build a training set from images and masks first: segzero-train build-dataset SOURCE OUT "
               "(see segzero-train build-dataset --help).",
    )
    p.add_argument("--recipe", required=True,
                   help=f"recipe YAML path or shipped name ({', '.join(recipe_names())})")
    p.add_argument("--model", help="hub id or folder of the starting checkpoint")
    p.add_argument("--dataset", help="training set: hub id, save_to_disk folder or .jsonl (rows, or images and masks)")
    p.add_argument("--dataset-kind", choices=("auto", "segzero", "visionreasoner"))
    p.add_argument("--dataset-limit", type=int, help="use the first N rows only")
    p.add_argument("--rewards", choices=("segzero", "segzero-soft", "visionreasoner"))
    p.add_argument("--output-dir")
    p.add_argument("--max-steps", type=int, help="stop after this many optimizer steps (total, also on --resume)")
    p.add_argument("--save-steps", type=int)
    p.add_argument("--per-device-batch-size", dest="per_device_train_batch_size", type=int,
                   help="completions per device per micro-batch (TRL's unit)")
    p.add_argument("--gradient-accumulation-steps", type=int, help="default: derived from the recipe")
    p.add_argument("--num-generations", type=int, help="group size")
    p.add_argument("--prompts-per-step", type=int, help="prompts per optimizer step")
    p.add_argument("--steps-per-generation", type=int, metavar="N",
                   help="micro-batches generated per generate call (TRL's steps_per_generation; sets grpo: "
                        "steps_per_generation; default: the recipe's, else all accumulation steps at once)")
    p.add_argument("--num-processes", type=int,
                   help="data-parallel processes; must equal the launched world size (WORLD_SIZE from "
                        "accelerate launch / torchrun, else 1), which is the default")
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--beta", type=float, help="KL coefficient")
    p.add_argument("--max-completion-length", type=int)
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --output-dir")
    p.add_argument("--use-vllm", action="store_true", default=None, help="generate with vLLM (when installed)")
    p.add_argument("--vllm-mode", choices=("colocate", "server"))
    p.add_argument("--vllm-server-base-url", help="server mode: URL of `trl vllm-serve`")
    p.add_argument("--lora", action="store_true", default=None, help="train a LoRA adapter")
    p.add_argument("--merge-lora", action=argparse.BooleanOptionalAction, default=None,
                   help="with LoRA, write merged weights to OUTPUT_DIR/final (default on)")
    p.add_argument("--report-to", choices=("tensorboard", "wandb", "all", "none"))
    p.add_argument("--eval-dataset", help="held-out set for segzero_tool.eval (hub id, folder, .jsonl)")
    p.add_argument("--eval-split")
    p.add_argument("--eval-steps", type=int, help="evaluate every N optimizer steps (0: never)")
    p.add_argument("--eval-limit", type=int, help="evaluate the first N samples")
    p.add_argument("--eval-segmenter", help="segmenter for evaluation: registry name, folder, or 'box'")
    p.add_argument("--cpu", action="store_true", help="train on the CPU (tests; fp32, no vLLM)")
    add_dry_run_options(p)
    p.add_argument("-v", "--verbose", action="store_true")
    return p


_OVERRIDE_KEYS = (
    "model", "dataset", "dataset_kind", "dataset_limit", "rewards", "output_dir", "max_steps", "save_steps",
    "per_device_train_batch_size", "gradient_accumulation_steps", "num_generations", "prompts_per_step",
    "learning_rate", "beta", "max_completion_length", "use_vllm", "vllm_mode", "vllm_server_base_url", "lora",
    "merge_lora", "report_to", "eval_dataset", "eval_split", "eval_steps", "eval_limit", "eval_segmenter",
)


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The recipe keys set on the command line (``None`` = not given)."""
    return {key: getattr(args, key) for key in _OVERRIDE_KEYS}


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``segzero-train``; returns the exit status: 2 for configuration and dataset errors, 5 for
    a missing package (one line on stderr each; a batch-size error adds the settings that work).
    ``segzero-train build-dataset ...`` builds a training set from masks (:mod:`.build_cli`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["build-dataset"]:
        from .build_cli import main as build_main

        return build_main(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        recipe = load_recipe(args.recipe, overrides_from_args(args))
        if args.steps_per_generation is not None:
            recipe = dataclasses.replace(recipe, grpo={**recipe.grpo, "steps_per_generation": args.steps_per_generation})
        plan = plan_for(recipe, detect_num_processes(args.num_processes))
        check_world_size(plan)  # --num-processes never overrides what was launched
        check_grpo_overrides(recipe, plan)
        if args.dry_run:
            return dry_run(recipe, plan, gpu_memory_gib=args.gpu_memory, strategy=args.strategy)
        run_training(recipe, plan=plan, resume=args.resume, use_cpu=args.cpu)
    except SegZeroError as exc:
        return report_error(exc)
    return 0


def report_error(exc: SegZeroError) -> int:
    """Print ``exc`` for the command line and return its exit status: 5 for a missing package; 2 for recipe,
    batch-size, setup and dataset errors; the error's own ``exit_code`` otherwise. One line, except that a
    batch-size error lists the settings that work below it."""
    from segzero_tool.eval.samples import DatasetError  # TrainingDataError's base; imported only when needed

    if isinstance(exc, BatchSizeError):
        print(f"segzero-train: error: {exc}", file=sys.stderr)
        return 2
    print(f"segzero-train: error: {_one_line(exc)}", file=sys.stderr)
    if isinstance(exc, MissingDependencyError):
        return 5
    if isinstance(exc, (RecipeError, TrainingSetupError, DatasetError)):
        return 2
    return int(getattr(exc, "exit_code", 1) or 1)


# --- the run -------------------------------------------------------------------------------------------


def deepspeed_requested(recipe: Recipe, *, use_cpu: bool = False) -> bool:
    """Whether this run will use DeepSpeed: ``accelerate launch`` with a DeepSpeed config sets
    ``ACCELERATE_USE_DEEPSPEED=true``, which accelerate's ``AcceleratorState`` reads (not on the CPU); or the
    recipe passes a DeepSpeed config to the trainer (``grpo: {deepspeed: ...}``)."""
    launched = os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true" and not use_cpu
    return launched or bool(recipe.grpo.get("deepspeed"))


def _missing(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except (ImportError, ValueError):  # a broken parent package, or a module without __spec__
        return True


def check_run_dependencies(recipe: Recipe, *, use_cpu: bool = False) -> None:
    """Check that what this run will import is installed, before anything loads.

    Raises:
        MissingDependencyError: one line naming the package, why the run needs it and the ``pip install``.
    """
    needs: list[tuple[tuple[str, ...], str, str]] = [  # (any of these modules, why, install hint)
        (("trl",), "training", 'pip install "segzero-tool[train]"'),
        (("datasets",), "training", 'pip install "segzero-tool[train]"'),
        (("scipy",), "the rewards' Hungarian matching", 'pip install "segzero-tool[train]"'),
    ]
    if recipe.lora:
        needs.append((("peft",), "lora: true", 'pip install "segzero-tool[train]"'))
    if recipe.report_to == "tensorboard":  # transformers' TensorBoardCallback takes either package
        needs.append((("tensorboard", "tensorboardX"), "report_to: tensorboard",
                      'pip install "segzero-tool[train]" (or --report-to none)'))
    elif recipe.report_to == "wandb":
        needs.append((("wandb",), "report_to: wandb", "pip install wandb (or --report-to none)"))
    if deepspeed_requested(recipe, use_cpu=use_cpu):
        needs.append((("deepspeed",), "the DeepSpeed accelerate config (ACCELERATE_USE_DEEPSPEED=true)",
                      'pip install "segzero-tool[deepspeed]" (or use training/accelerate/fsdp.yaml)'))
    if recipe.attn_implementation == "flash_attention_2":
        needs.append((("flash_attn",), "attn_implementation: flash_attention_2",
                      'pip install "segzero-tool[flash]"'))
    for modules, why, hint in needs:
        if all(_missing(m) for m in modules):
            raise MissingDependencyError(f"{why} needs the {modules[0]!r} package, which is not installed: {hint}")


def pick_attn_implementation(recipe: Recipe, *, use_cpu: bool = False) -> str:
    """The recipe's ``attn_implementation``, or when unset: ``flash_attention_2`` when ``flash_attn`` is
    importable and the run is on CUDA in bf16, else ``sdpa`` (as the transformers reasoner picks)."""
    if recipe.attn_implementation:
        return recipe.attn_implementation
    if use_cpu or not recipe.bf16 or _missing("flash_attn"):
        return "sdpa"
    import torch

    return "flash_attention_2" if torch.cuda.is_available() else "sdpa"


def check_processor_padding(processor: Any) -> None:
    """Refuse a processor that pads on the right.

    TRL pads the prompt ids on the left and asks the processor again for the multimodal inputs of the forward
    pass (``mm_token_type_ids`` among them); a right-padded processor shifts those against the ids and silently
    feeds the model wrong image positions (TRL issue #5785, closed as "not a TRL bug": pass a left-padded
    processor). :func:`load_processor` loads one with ``padding_side="left"``.

    Raises:
        TrainingSetupError: the processor's (or its tokenizer's) ``padding_side`` is not ``"left"``.
    """
    tokenizer = getattr(processor, "tokenizer", processor)
    side = getattr(tokenizer, "padding_side", None)
    if side != "left":
        raise TrainingSetupError(
            f"the processor pads on the {side!r} side; GRPO on a vision-language model needs left padding (TRL "
            "left-pads the prompt ids, so a right-padded processor misplaces the image tokens: TRL #5785). Load it "
            "with AutoProcessor.from_pretrained(model, padding_side='left') or set processor.tokenizer.padding_side "
            "= 'left'")


def last_checkpoint(output_dir: str | Path) -> str | None:
    """The newest ``checkpoint-N`` folder in ``output_dir`` (``None`` when there is none)."""
    from transformers.trainer_utils import get_last_checkpoint

    folder = Path(output_dir)
    return get_last_checkpoint(str(folder)) if folder.is_dir() else None


def build_grpo_config(recipe: Recipe, plan: BatchPlan, *, use_cpu: bool = False) -> Any:
    """``trl.GRPOConfig`` for a validated recipe (vLLM switched off, with a log line, when not importable)."""
    from trl import GRPOConfig

    kwargs = grpo_config_kwargs(recipe, plan, use_cpu=use_cpu)
    if kwargs.get("use_vllm") and (use_cpu or importlib.util.find_spec("vllm") is None):
        why = "--cpu" if use_cpu else "vllm is not installed (pip install 'segzero-tool[vllm]')"
        logger.warning("use_vllm requested but %s: generating with transformers' generate instead", why)
        kwargs["use_vllm"] = False
    if not use_cpu:
        kwargs.pop("use_cpu")
    # gradient_checkpointing is already activation_checkpointing where transformers renamed it (grpo_config_kwargs)
    init_kwargs = kwargs.get("model_init_kwargs")
    if isinstance(init_kwargs, dict):
        init_kwargs.setdefault("attn_implementation", pick_attn_implementation(recipe, use_cpu=use_cpu))
    check_grpo_fields(kwargs)
    return GRPOConfig(**kwargs)


def lora_config(recipe: Recipe) -> Any:
    """A PEFT ``LoraConfig`` on the language model's projections only (the vision tower stays frozen)."""
    from peft import LoraConfig

    names = "|".join(recipe.lora_target_modules)
    return LoraConfig(
        r=recipe.lora_r, lora_alpha=recipe.lora_alpha, lora_dropout=recipe.lora_dropout, task_type="CAUSAL_LM",
        # Qwen2.5-VL's vision blocks also have gate/up/down_proj: restrict to the language model.
        target_modules=rf".*language_model.*\.({names})",
    )


def load_processor(recipe: Recipe) -> Any:
    """The model's ``AutoProcessor`` with left padding and the recipe's pixel bounds."""
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(recipe.model, padding_side="left")
    size = dict(getattr(processor.image_processor, "size", None) or {})
    if recipe.min_pixels is not None and "shortest_edge" in size:
        size["shortest_edge"] = recipe.min_pixels
    if recipe.max_pixels is not None and "longest_edge" in size:
        size["longest_edge"] = recipe.max_pixels
    if size:
        processor.image_processor.size = size
    return processor


@contextlib.contextmanager
def third_party_checkpointing_alias_silenced() -> Iterator[None]:
    """Ignore transformers' FutureWarnings for the model's ``is_gradient_checkpointing`` /
    ``gradient_checkpointing_enable`` / ``gradient_checkpointing_disable`` (deprecated in 5.x for the
    ``activation_checkpointing`` names) while TRL / PEFT build and train: trl 1.16 calls them around every generate
    call (``trl.models.utils._unwrap_model_for_generation``, ``disable_gradient_checkpointing``) and peft reads
    ``is_gradient_checkpointing`` when wrapping a LoRA model (``PeftModel.__init__``). Our own code passes the new
    names (``config.rename_checkpointing_keys``); only these messages are filtered, only here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`(is_)?gradient_checkpointing(_enable|_disable)?` is deprecated",
                                category=FutureWarning)
        yield


def check_eval_dataset(recipe: Recipe) -> None:
    """A local ``--eval-dataset`` is opened now (cheap: samples load lazily), so that a typo or a broken file
    stops the run before the model loads instead of at the first evaluation, ``eval_steps`` steps in. A hub id
    is opened at the first evaluation.

    Raises:
        DatasetError: the local evaluation set is missing or unreadable.
    """
    if not recipe.eval_dataset or not recipe.eval_steps:
        return
    from segzero_tool.eval.datasets import load_eval_dataset
    from segzero_tool.eval.samples import DatasetError

    from .data import looks_like_path

    source = str(recipe.eval_dataset)
    if not (Path(source).expanduser().exists() or looks_like_path(source)):
        return
    try:
        load_eval_dataset(source, split=recipe.eval_split)
    except DatasetError as exc:
        raise DatasetError(f"--eval-dataset: {' '.join(str(exc).split())}") from None


def run_training(
    recipe: Recipe,
    *,
    plan: BatchPlan | None = None,
    resume: bool = False,
    use_cpu: bool = False,
    train_dataset: Any = None,
    processor: Any = None,
    extra_reward_funcs: Sequence[Callable[..., Any]] = (),
    callbacks: Sequence[Any] = (),
) -> Any:
    """Validate, build and run the ``GRPOTrainer``; save the final model. Returns the trainer.

    Args:
        recipe: the configuration (``load_recipe`` + overrides).
        plan: the validated batch plan (default: validated here with ``detect_num_processes()``).
        resume: continue from the last ``checkpoint-N`` in ``recipe.output_dir``.
        use_cpu: CPU training (tests): fp32, ``use_cpu=True``, no vLLM.
        train_dataset: a ready ``datasets.Dataset`` of ``to_grpo_row`` rows instead of ``recipe.dataset``.
        processor: a ready processor instead of :func:`load_processor`'s (it must pad on the left).
        extra_reward_funcs: more TRL reward functions after the recipe's set (e.g. shaping terms).
        callbacks: more ``TrainerCallback`` objects.

    Raises:
        BatchSizeError / RecipeError: before anything is loaded (also: ``plan`` made for another number of
            processes than the run has).
        TrainingDataError: a dataset path that does not exist (at once), an unreadable set (before the model).
        DatasetError: a local ``eval_dataset`` that is missing or unreadable (at once).
        MissingDependencyError: a package the run needs is not installed (before anything loads).
        TrainingSetupError: ``resume`` without a checkpoint, no dataset, a right-padded ``processor``.
    """
    from .data import check_dataset_source

    plan = plan or plan_for(recipe, detect_num_processes())  # before any model loads
    check_world_size(plan)
    if train_dataset is None:
        check_dataset_source(recipe.dataset)  # a mistyped local path fails here, before the hub is asked
    check_eval_dataset(recipe)
    logger.info("batch plan: %s", plan.describe())
    checkpoint = None
    if resume:
        checkpoint = last_checkpoint(recipe.output_dir)
        if checkpoint is None:
            raise TrainingSetupError(
                f"--resume: no checkpoint-N folder in {recipe.output_dir!r}; checkpoints are written every "
                f"save_steps={recipe.save_steps} steps. Drop --resume to start from the beginning, or point "
                "--output-dir at the earlier run.")
        logger.info("resuming from %s", checkpoint)
    elif last_checkpoint(recipe.output_dir) is not None:
        logger.warning("%s already holds checkpoints; pass --resume to continue instead of starting over",
                       recipe.output_dir)
    if train_dataset is None and not recipe.dataset:
        raise TrainingSetupError("no training set: pass --dataset (hub id or save_to_disk folder) or set "
                                 "'dataset:' in the recipe")
    check_run_dependencies(recipe, use_cpu=use_cpu)
    if processor is not None:
        check_processor_padding(processor)
    args = build_grpo_config(recipe, plan, use_cpu=use_cpu)  # raises on TRL's own conflicts, still model-free
    check_world_size(plan, args.world_size)  # accelerate's own count (PartialState), before any model loads

    from trl import GRPOTrainer

    from .data import load_training_dataset
    from .rewards import get_reward_funcs

    if train_dataset is None:
        train_dataset = load_training_dataset(recipe.dataset, kind=recipe.dataset_kind, split=recipe.dataset_split,
                                              limit=recipe.dataset_limit, frame_size=recipe.frame_size)
    reward_funcs = [*get_reward_funcs(recipe.rewards, extra=tuple(recipe.reward_extra),
                                         mode=recipe.reward_mode), *extra_reward_funcs]
    logger.info("rewards: %s", ", ".join(getattr(f, "__name__", repr(f)) for f in reward_funcs))
    if processor is None:
        processor = load_processor(recipe)
    check_processor_padding(processor)
    with third_party_checkpointing_alias_silenced():
        trainer = GRPOTrainer(
            model=recipe.model,
            reward_funcs=reward_funcs,
            args=args,
            train_dataset=train_dataset,
            processing_class=processor,
            peft_config=lora_config(recipe) if recipe.lora else None,
            callbacks=list(callbacks),
        )
    if recipe.eval_steps > 0 and recipe.eval_dataset and recipe.eval_segmenter:
        # first in the list, so the scores it adds to a step's logs reach TensorBoard / W&B too
        trainer.callback_handler.callbacks.insert(0, make_eval_callback(trainer, recipe, processor))
    elif recipe.eval_steps > 0:
        logger.info("periodic evaluation off: it needs eval_dataset and eval_segmenter as well as eval_steps")
    with third_party_checkpointing_alias_silenced():
        trainer.train(resume_from_checkpoint=checkpoint if checkpoint else None)
    save_final(trainer, recipe, processor)
    return trainer


def save_final(trainer: Any, recipe: Recipe, processor: Any) -> Path:
    """Write ``output_dir/final`` (a full HF model + processor; LoRA: merged, adapter in ``final-adapter``)."""
    final = Path(recipe.output_dir) / "final"
    if not recipe.lora:
        trainer.save_model(str(final))
        if trainer.args.should_save:
            processor.save_pretrained(str(final))
        return final
    adapter = Path(recipe.output_dir) / "final-adapter"
    trainer.save_model(str(adapter))
    if trainer.args.should_save:
        processor.save_pretrained(str(adapter))
    if recipe.merge_lora and trainer.args.should_save:
        model = trainer.accelerator.unwrap_model(trainer.model)
        merged = model.merge_and_unload()
        merged.save_pretrained(str(final))
        processor.save_pretrained(str(final))
        logger.info("merged LoRA model written to %s", final)
        return final
    return adapter


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
