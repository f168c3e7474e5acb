"""GRPO recipes: a YAML file -> :class:`Recipe`, CLI overrides, and the batch arithmetic checked up front.

A recipe states the protocol's numbers in the protocol's units (``prompts_per_step`` prompts, each sampled
``num_generations`` times); :func:`validate_batch_arithmetic` turns them into TRL's units (completions per
device per micro-batch, gradient accumulation) **before any model loads**, and says which numbers to change
when they do not divide (Seg-Zero issue #65: a ``ZeroDivisionError`` / assert deep inside veRL).

TRL's rule (``GRPOConfig.__post_init__``, trl 1.x): ``generation_batch_size = per_device_train_batch_size x
num_processes x steps_per_generation`` (``steps_per_generation`` defaults to ``gradient_accumulation_steps``)
must be divisible by ``num_generations``. We also want exactly one optimizer step per generation batch of
``prompts_per_step x num_generations`` completions, as in the reference (one PPO epoch, ``num_iterations=1``).

Example:
    >>> recipe = load_recipe("visionreasoner-7b")
    >>> plan = validate_batch_arithmetic(num_generations=8, prompts_per_step=16,
    ...                                  per_device_train_batch_size=2, num_processes=8)
    >>> plan.gradient_accumulation_steps, plan.completions_per_step
    (8, 128)
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segzero_tool.errors import SegZeroError

RECIPES_DIR = Path(__file__).resolve().parent / "recipes"

REWARD_SETS = ("segzero", "segzero-soft", "visionreasoner")


class RecipeError(SegZeroError, ValueError):
    """A recipe file is missing, malformed, or has unknown keys / values of the wrong type."""


class BatchSizeError(SegZeroError, ValueError):
    """The batch numbers do not divide the way GRPO needs.

    Attributes:
        numbers: the numbers involved (``num_generations``, ``prompts_per_step``, ...).
        suggestions: working alternatives, each a dict of settings.
    """

    def __init__(self, message: str, *, numbers: dict[str, Any], suggestions: list[dict[str, int]]):
        super().__init__(message)
        self.numbers = numbers
        self.suggestions = suggestions


@dataclass(frozen=True)
class BatchPlan:
    """What :func:`validate_batch_arithmetic` found: TRL's batch settings for one optimizer step."""

    num_generations: int
    prompts_per_step: int
    per_device_train_batch_size: int
    num_processes: int
    gradient_accumulation_steps: int

    @property
    def completions_per_step(self) -> int:
        """Completions (= rows of the loss) per optimizer step: prompts_per_step x num_generations."""
        return self.per_device_train_batch_size * self.num_processes * self.gradient_accumulation_steps

    def describe(self) -> str:
        return (
            f"{self.prompts_per_step} prompts x {self.num_generations} generations = {self.completions_per_step} "
            f"completions per optimizer step = {self.per_device_train_batch_size} per device x "
            f"{self.num_processes} process(es) x {self.gradient_accumulation_steps} accumulation steps"
        )


@dataclass
class Recipe:
    """One training configuration. Every key of a recipe YAML is a field here (unknown keys are errors).

    Protocol numbers (segzero-protocol.md section 2.2-2.3) are the defaults where both papers agree.
    """

    name: str = "custom"
    # --- model and data ---
    model: str = "Qwen/Qwen2.5-VL-7B-Instruct"
    dataset: str | None = None
    dataset_kind: str = "auto"
    dataset_split: str = "train"
    dataset_limit: int | None = None
    frame_size: int = 840
    rewards: str = "visionreasoner"
    reward_extra: list[str] = field(default_factory=list)  # e.g. [mask_point] (our extension)
    reward_mode: str = "reference"  # "fixed": the rewards' bug-fixed variants (training/rewards.py)
    output_dir: str = "runs/grpo"
    # None: flash_attention_2 when flash_attn is importable and the run is on CUDA in bf16, else sdpa
    # (train.pick_attn_implementation)
    attn_implementation: str | None = None
    min_pixels: int | None = 3136
    max_pixels: int | None = 12845056
    # --- GRPO batch (protocol units) ---
    num_generations: int = 8
    prompts_per_step: int = 16
    per_device_train_batch_size: int = 8
    gradient_accumulation_steps: int | None = None  # None: derived from the numbers above
    # --- optimisation ---
    learning_rate: float = 1e-6
    lr_scheduler_type: str = "constant"
    warmup_steps: int = 0
    weight_decay: float = 0.01
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    max_grad_norm: float = 1.0
    num_train_epochs: float = 1.0
    max_steps: int = -1
    bf16: bool = True
    gradient_checkpointing: bool = True
    seed: int = 42
    # --- GRPO loss and sampling ---
    beta: float = 5e-3
    epsilon: float = 0.2
    loss_type: str = "bnpo"
    scale_rewards: str = "group"
    entropy_coef: float = 1e-3
    use_bias_correction_kl: bool = False
    mask_truncated_completions: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    max_completion_length: int = 2000
    max_prompt_length: int | None = 1300  # recorded only: TRL 1.x GRPOConfig has no prompt truncation
    # --- generation backend ---
    use_vllm: bool = False
    vllm_mode: str = "colocate"
    vllm_gpu_memory_utilization: float = 0.5
    vllm_tensor_parallel_size: int = 1
    vllm_server_base_url: str | None = None
    # --- LoRA ---
    lora: bool = False
    lora_r: int = 64
    lora_alpha: int = 128
    lora_dropout: float = 0.05
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    merge_lora: bool = True
    # --- checkpoints and logs ---
    save_steps: int = 100
    save_total_limit: int | None = None
    logging_steps: int = 1
    report_to: str = "tensorboard"
    log_completions: bool = False
    # --- periodic evaluation (segzero_tool.eval) ---
    eval_dataset: str | None = None
    eval_split: str | None = None
    eval_steps: int = 0  # 0: no periodic evaluation
    eval_limit: int | None = 100
    eval_segmenter: str | None = None  # e.g. sam2.1-hiera-large, a folder, or "box" (box-shaped masks)
    eval_batch_size: int = 8
    # --- anything else GRPOConfig accepts, passed through verbatim (names checked against trl) ---
    grpo: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.rewards not in REWARD_SETS:
            raise RecipeError(f"rewards must be one of {', '.join(REWARD_SETS)}, got {self.rewards!r}")
        if self.vllm_mode not in ("colocate", "server"):
            raise RecipeError(f"vllm_mode must be 'colocate' or 'server', got {self.vllm_mode!r}")
        if self.report_to not in ("none", "tensorboard", "wandb", "all"):
            raise RecipeError(f"report_to must be tensorboard, wandb, all or none, got {self.report_to!r}")
        for key in ("num_generations", "prompts_per_step", "per_device_train_batch_size", "max_completion_length"):
            if int(getattr(self, key)) < 1:
                raise RecipeError(f"{key} must be >= 1, got {getattr(self, key)}")


_FIELDS = {f.name: f for f in dataclasses.fields(Recipe)}


def recipe_names() -> list[str]:
    """Names of the recipes shipped in ``training/recipes`` (file stems)."""
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def resolve_recipe_path(spec: str | os.PathLike[str]) -> Path:
    """A YAML path, or the name of a shipped recipe (``visionreasoner-7b``)."""
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    shipped = RECIPES_DIR / f"{path.stem}.yaml"
    if shipped.is_file():  # a shipped name, or its repository path run from another folder
        return shipped
    raise RecipeError(f"no recipe file {str(spec)!r}; shipped recipes: {', '.join(recipe_names())}")


def _check_keys(data: dict[str, Any], where: str) -> None:
    unknown = [k for k in data if k not in _FIELDS]
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, list(_FIELDS), n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise RecipeError(
            f"{where}: unknown key(s) {', '.join(hints)}. Other GRPOConfig fields go under 'grpo:'; "
            f"recipe keys: {', '.join(sorted(_FIELDS))}"
        )


def _coerce(key: str, value: Any, where: str) -> Any:
    """Check / convert one value to the field's declared type (YAML reads 1e-6 as a string)."""
    if value is None:
        return None
    kind = str(_FIELDS[key].type)
    try:
        if kind.startswith("bool"):
            if isinstance(value, str):
                if value.lower() in ("true", "1", "yes", "on"):
                    return True
                if value.lower() in ("false", "0", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if kind.startswith("int"):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if kind.startswith("float"):
            return float(value)
        if kind.startswith("list"):
            return [str(v) for v in value] if isinstance(value, (list, tuple)) else [s for s in str(value).split(",") if s]
        if kind.startswith("dict"):
            if not isinstance(value, dict):
                raise ValueError(value)
            return dict(value)
        if kind.startswith("str"):
            return str(value)
    except (TypeError, ValueError):
        raise RecipeError(f"{where}: {key} must be {kind}, got {value!r}") from None
    return value


def recipe_from_dict(data: dict[str, Any], *, where: str = "recipe") -> Recipe:
    """Build a :class:`Recipe` from a mapping; unknown keys and wrongly typed values raise :class:`RecipeError`."""
    if not isinstance(data, dict):
        raise RecipeError(f"{where}: expected a mapping of keys to values, got {type(data).__name__}")
    _check_keys(data, where)
    return Recipe(**{k: _coerce(k, v, where) for k, v in data.items()})


def load_recipe(spec: str | os.PathLike[str], overrides: dict[str, Any] | None = None) -> Recipe:
    """Read a recipe YAML (path or shipped name) and apply ``overrides`` (``None`` values are ignored)."""
    import yaml

    path = resolve_recipe_path(spec)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: not valid YAML: {exc}") from exc
    recipe = recipe_from_dict(data, where=str(path))
    if data.get("name") is None:
        recipe.name = path.stem
    return apply_overrides(recipe, overrides or {})


def apply_overrides(recipe: Recipe, overrides: dict[str, Any]) -> Recipe:
    """A copy of ``recipe`` with the non-``None`` ``overrides`` applied (typed like the YAML keys)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    _check_keys(given, "overrides")
    return dataclasses.replace(recipe, **{k: _coerce(k, v, "overrides") for k, v in given.items()})


#: The environment variables accelerate reads the world size from (``accelerate.utils.environment``):
#: ``accelerate launch`` / torchrun set ``WORLD_SIZE``; MPI launchers the others.
WORLD_SIZE_VARS = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def launched_world_size() -> int:
    """The number of processes this run was launched with, read as accelerate reads it: the first of
    :data:`WORLD_SIZE_VARS` that is set, else 1 (a plain ``segzero-train`` / ``python -m``)."""
    for var in WORLD_SIZE_VARS:
        value = os.environ.get(var, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1


def detect_num_processes(flag: int | None = None) -> int:
    """The data-parallel process count to plan the batch for: the flag when given (checked against the real
    world size by :func:`check_world_size`), else :func:`launched_world_size`."""
    if flag is not None:
        if flag < 1:
            raise BatchSizeError(f"num_processes must be >= 1, got {flag}", numbers={"num_processes": flag},
                                 suggestions=[])
        return int(flag)
    return launched_world_size()


def world_size_mismatch(planned: int, actual: int) -> str:
    """The one-line error for a batch plan made for ``planned`` processes in a run of ``actual``."""
    launched = ", ".join(f"{v}={os.environ[v]}" for v in WORLD_SIZE_VARS if v in os.environ) or "WORLD_SIZE unset"
    return (
        f"the batch plan is for {planned} process(es) (--num-processes) but this run has {actual} ({launched}), "
        f"so each optimizer step would see {actual}/{planned} of the planned prompts. Launch {planned} processes "
        f"(accelerate launch --num_processes {planned} -m segzero_tool.training ..., or num_processes in the "
        "training/accelerate/ config), or drop --num-processes: the count comes from the launcher"
    )


def check_world_size(plan: BatchPlan, actual: int | None = None) -> None:
    """Raise :class:`BatchSizeError` when ``plan`` was made for another number of processes than the run has
    (``actual``: default :func:`launched_world_size`; the trainer passes accelerate's own count)."""
    actual = launched_world_size() if actual is None else int(actual)
    if plan.num_processes != actual:
        raise BatchSizeError(world_size_mismatch(plan.num_processes, actual),
                             numbers={"num_processes": plan.num_processes, "world_size": actual}, suggestions=[])


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _suggest(num_generations: int, prompts_per_step: int, per_device: int, num_processes: int) -> list[dict[str, int]]:
    """Working settings near the requested ones, best first."""
    out: list[dict[str, int]] = []
    total = prompts_per_step * num_generations
    if total % num_processes == 0:
        per_proc = total // num_processes
        # keep prompts_per_step: any per-device size dividing the per-process share, nearest first
        for pd in sorted(_divisors(per_proc), key=lambda d: (abs(d - per_device), -d))[:3]:
            out.append({"per_device_train_batch_size": pd, "gradient_accumulation_steps": per_proc // pd,
                        "prompts_per_step": prompts_per_step, "num_processes": num_processes})
    # keep per_device and num_processes: the nearest prompts_per_step that divides
    step = (per_device * num_processes) // math.gcd(per_device * num_processes, num_generations)
    for prompts in sorted({max(step, (prompts_per_step // step) * step), (prompts_per_step // step + 1) * step}):
        if prompts != prompts_per_step:
            out.append({"per_device_train_batch_size": per_device,
                        "gradient_accumulation_steps": prompts * num_generations // (per_device * num_processes),
                        "prompts_per_step": prompts, "num_processes": num_processes})
    return out


def _fmt(s: dict[str, int]) -> str:
    return (f"per_device_train_batch_size={s['per_device_train_batch_size']} "
            f"gradient_accumulation_steps={s['gradient_accumulation_steps']} "
            f"prompts_per_step={s['prompts_per_step']} (num_processes={s['num_processes']})")


def validate_batch_arithmetic(
    *,
    num_generations: int,
    prompts_per_step: int,
    per_device_train_batch_size: int,
    num_processes: int = 1,
    gradient_accumulation_steps: int | None = None,
) -> BatchPlan:
    """Check that ``prompts_per_step x num_generations`` completions split into whole micro-batches.

    ``per_device_train_batch_size`` counts **completions** (TRL's unit), not prompts. With
    ``gradient_accumulation_steps=None`` it is derived; when given, the product must match exactly.

    Raises:
        BatchSizeError: the numbers do not divide; the message names them and lists working alternatives.
    """
    numbers = {"num_generations": num_generations, "prompts_per_step": prompts_per_step,
               "per_device_train_batch_size": per_device_train_batch_size, "num_processes": num_processes,
               "gradient_accumulation_steps": gradient_accumulation_steps}
    for key, value in numbers.items():
        if value is not None and int(value) < 1:
            raise BatchSizeError(f"{key} must be >= 1, got {value}", numbers=numbers, suggestions=[])
    if num_generations < 2:
        raise BatchSizeError(
            f"num_generations={num_generations}: GRPO needs at least 2 completions per prompt to compute "
            "group-relative advantages (the protocol uses 8)", numbers=numbers, suggestions=[])
    total = prompts_per_step * num_generations
    per_pass = per_device_train_batch_size * num_processes
    if gradient_accumulation_steps is None:
        if total % per_pass == 0:
            return BatchPlan(num_generations, prompts_per_step, per_device_train_batch_size, num_processes,
                             total // per_pass)
        problem = (
            f"prompts_per_step ({prompts_per_step}) x num_generations ({num_generations}) = {total} completions per "
            f"optimizer step is not divisible by per_device_train_batch_size ({per_device_train_batch_size}) x "
            f"num_processes ({num_processes}) = {per_pass}"
        )
    else:
        got = per_pass * gradient_accumulation_steps
        if got == total:
            return BatchPlan(num_generations, prompts_per_step, per_device_train_batch_size, num_processes,
                             gradient_accumulation_steps)
        problem = (
            f"per_device_train_batch_size ({per_device_train_batch_size}) x num_processes ({num_processes}) x "
            f"gradient_accumulation_steps ({gradient_accumulation_steps}) = {got} completions per optimizer step, "
            f"but prompts_per_step ({prompts_per_step}) x num_generations ({num_generations}) = {total}"
        )
        if got % num_generations:
            problem += f"; TRL also needs that product divisible by num_generations ({num_generations})"
    suggestions = _suggest(num_generations, prompts_per_step, per_device_train_batch_size, num_processes)
    lines = "\n".join(f"  - {_fmt(s)}" for s in suggestions) or "  - (none near these numbers)"
    raise BatchSizeError(
        f"batch sizes do not divide: {problem}.\nChange per_device_train_batch_size, gradient_accumulation_steps "
        f"(or leave it unset to derive it), prompts_per_step or the number of processes. Settings that work:\n{lines}",
        numbers=numbers, suggestions=suggestions,
    )


def plan_for(recipe: Recipe, num_processes: int) -> BatchPlan:
    """:func:`validate_batch_arithmetic` on a recipe's numbers."""
    return validate_batch_arithmetic(
        num_generations=recipe.num_generations,
        prompts_per_step=recipe.prompts_per_step,
        per_device_train_batch_size=recipe.per_device_train_batch_size,
        num_processes=num_processes,
        gradient_accumulation_steps=recipe.gradient_accumulation_steps,
    )


#: Batch settings that belong to the recipe's top level, where the batch plan is checked.
_PLAN_KEYS = ("per_device_train_batch_size", "gradient_accumulation_steps", "num_generations")


def check_grpo_overrides(recipe: Recipe, plan: BatchPlan) -> None:
    """Check the recipe's ``grpo:`` block against the batch plan.

    The plan's own numbers (``per_device_train_batch_size``, ``gradient_accumulation_steps``,
    ``num_generations``) may be repeated there only with the plan's value. A generation batch
    (``steps_per_generation`` or ``generation_batch_size``) must make whole groups in each ``generate`` call and a
    whole number of calls per optimizer step, so that the step still sees ``prompts_per_step`` whole groups.

    Raises:
        RecipeError: naming the key, the plan and the values that work.
    """
    extra = recipe.grpo
    for key in _PLAN_KEYS:
        if key in extra and extra[key] != getattr(plan, key):
            raise RecipeError(f"grpo: {{{key}: {extra[key]}}} contradicts the batch plan ({plan.describe()}); set "
                              f"{key} at the recipe's top level (or with its flag) so that the plan is checked")
    per_step = plan.per_device_train_batch_size * plan.num_processes
    valid = [k for k in range(1, plan.gradient_accumulation_steps + 1)
             if plan.gradient_accumulation_steps % k == 0 and (per_step * k) % plan.num_generations == 0]
    if "steps_per_generation" in extra and "generation_batch_size" in extra:
        raise RecipeError("grpo: give steps_per_generation or generation_batch_size, not both")
    if "steps_per_generation" in extra:
        k = extra["steps_per_generation"]
        if isinstance(k, bool) or not isinstance(k, int) or k not in valid:
            raise RecipeError(f"grpo: {{steps_per_generation: {k}}} does not fit the batch plan ({plan.describe()}): "
                              f"each generate call must make whole groups of {plan.num_generations} and an optimizer "
                              f"step a whole number of calls; use one of {valid} (--steps-per-generation N)")
    if "generation_batch_size" in extra:
        g = extra["generation_batch_size"]
        if isinstance(g, bool) or not isinstance(g, int) or g % per_step or g // per_step not in valid:
            raise RecipeError(f"grpo: {{generation_batch_size: {g}}} does not fit the batch plan ({plan.describe()}); "
                              f"use one of {[per_step * k for k in valid]}")


#: transformers 5.x renamed TrainingArguments' checkpointing fields; the old names warn (FutureWarning, removed in
#: v6). The recipe keeps ``gradient_checkpointing`` (a documented key); the GRPOConfig keyword follows transformers.
_CHECKPOINTING_RENAMES = (("gradient_checkpointing", "activation_checkpointing"),
                          ("gradient_checkpointing_kwargs", "activation_checkpointing_kwargs"))


def training_args_fields() -> frozenset[str]:
    """Field names of the installed ``transformers.TrainingArguments`` (GRPOConfig's base class)."""
    from transformers import TrainingArguments

    return frozenset(f.name for f in dataclasses.fields(TrainingArguments))


def rename_checkpointing_keys(kwargs: dict[str, Any], fields: frozenset[str] | set[str] | None = None) -> dict[str, Any]:
    """``kwargs`` with ``gradient_checkpointing`` / ``gradient_checkpointing_kwargs`` under their
    ``activation_checkpointing*`` names when the installed transformers has those (>= 5.x; older ones keep the old
    names, which are then the only ones). A key given under both names keeps the new name's value."""
    fields = training_args_fields() if fields is None else fields
    out = dict(kwargs)
    for old, new in _CHECKPOINTING_RENAMES:
        if old in out and new in fields:
            value = out.pop(old)
            out.setdefault(new, value)
    return out


def grpo_config_kwargs(recipe: Recipe, plan: BatchPlan, *, use_cpu: bool = False) -> dict[str, Any]:
    """The keyword arguments of ``trl.GRPOConfig`` for ``recipe`` (recipe.grpo last, overriding). The recipe's
    ``gradient_checkpointing`` is passed as ``activation_checkpointing`` where transformers has that name
    (:func:`rename_checkpointing_keys`; the old name warns there)."""
    kwargs: dict[str, Any] = {
        "output_dir": recipe.output_dir,
        "per_device_train_batch_size": plan.per_device_train_batch_size,
        "gradient_accumulation_steps": plan.gradient_accumulation_steps,
        "num_generations": recipe.num_generations,
        "num_iterations": 1,  # one optimizer step per generation batch, single PPO epoch
        "max_completion_length": recipe.max_completion_length,
        "temperature": recipe.temperature,
        "top_p": recipe.top_p,
        "top_k": 0,  # disabled, as vLLM top_k=-1 in the reference
        "beta": recipe.beta,
        "epsilon": recipe.epsilon,
        "loss_type": recipe.loss_type,
        "scale_rewards": recipe.scale_rewards,
        "entropy_coef": recipe.entropy_coef,
        "use_bias_correction_kl": recipe.use_bias_correction_kl,
        "mask_truncated_completions": recipe.mask_truncated_completions,
        "learning_rate": recipe.learning_rate,
        "lr_scheduler_type": recipe.lr_scheduler_type,
        "warmup_steps": recipe.warmup_steps,
        "weight_decay": recipe.weight_decay,
        "adam_beta1": recipe.adam_beta1,
        "adam_beta2": recipe.adam_beta2,
        "max_grad_norm": recipe.max_grad_norm,
        "num_train_epochs": recipe.num_train_epochs,
        "max_steps": recipe.max_steps,
        "bf16": recipe.bf16 and not use_cpu,
        "gradient_checkpointing": recipe.gradient_checkpointing,
        "seed": recipe.seed,
        "save_strategy": "steps",
        "save_steps": recipe.save_steps,
        "save_total_limit": recipe.save_total_limit,
        "logging_steps": recipe.logging_steps,
        "report_to": recipe.report_to,
        "log_completions": recipe.log_completions,
        "use_vllm": recipe.use_vllm,
        "vllm_mode": recipe.vllm_mode,
        "vllm_gpu_memory_utilization": recipe.vllm_gpu_memory_utilization,
        "vllm_tensor_parallel_size": recipe.vllm_tensor_parallel_size,
        "use_cpu": use_cpu,
        "model_init_kwargs": {
            "dtype": "bfloat16" if recipe.bf16 and not use_cpu else "float32",
            **({"attn_implementation": recipe.attn_implementation} if recipe.attn_implementation else {}),
        },
    }
    if recipe.vllm_server_base_url:
        kwargs["vllm_server_base_url"] = recipe.vllm_server_base_url
    kwargs.update(rename_checkpointing_keys(recipe.grpo))
    return rename_checkpointing_keys(kwargs)


def check_grpo_fields(kwargs: dict[str, Any]) -> None:
    """Raise :class:`RecipeError` for keys the installed ``trl.GRPOConfig`` does not have (needs trl)."""
    from trl import GRPOConfig

    names = {f.name for f in dataclasses.fields(GRPOConfig)}
    unknown = [k for k in kwargs if k not in names]
    if unknown:
        raise RecipeError(f"GRPOConfig of the installed trl has no field(s) {', '.join(map(repr, unknown))} "
                          "(check the recipe's 'grpo:' block)")
