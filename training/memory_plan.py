"""Peak GPU memory of a GRPO run, estimated from the model's config alone (no weights): ``segzero-train --dry-run``.

The estimate is a sum of named terms, each with the formula it uses (``MemoryTerm.formula``, also in
training/README.md), per device, in bytes:

* **static** (held for the whole run):
  - ``weights``: every parameter in the load dtype (bf16: 2 bytes), divided by the world size under ZeRO-3 /
    FSDP (parameters sharded);
  - ``reference model``: a second bf16 copy when ``beta > 0`` and the run is not LoRA (with LoRA the
    reference is the base model with the adapter disabled: no copy); sharded like the weights;
  - ``gradients``, ``optimizer states``: for the trainable parameters (all of them, or the LoRA adapters).
    AdamW keeps two moments. Plain / FSDP runs keep them in the parameter dtype (bf16: 2 + 2 bytes, gradients
    2); DeepSpeed keeps fp32 master weights and fp32 moments (4 + 4 + 4 bytes; gradients 2). PEFT keeps LoRA
    adapters in fp32 (4 bytes; gradients 4; moments 4 + 4). ZeRO-1 shards the optimizer states, ZeRO-2 also
    the gradients, ZeRO-3 / FSDP also the weights;
  - ``vllm (colocate)``: ``gpu_memory_utilization x device memory`` when vLLM runs in the training
    process (its own weights and KV cache live in that share). That share must itself hold vLLM's copy of the
    weights, the KV cache of the sequences this device generates per call and 1 GiB of vLLM overhead
    (:func:`vllm_needs`), or vLLM stops at start-up;
  - ``cuda context``: a fixed 1 GiB (CUDA context, cuBLAS / NCCL workspaces).
* **generation** (transient, without vLLM: ``model.generate`` in the trainer): the KV cache of the sequences
  generated in one call, ``2 (K, V) x layers x kv_heads x head_dim x 2 bytes x (prompt + completion tokens)
  x sequences``, where ``sequences = per_device_train_batch_size x steps_per_generation``; and the vision
  tower's prefill on those sequences' images, one layer live at a time (inference):
  ``sequences x patches x (4 x vision_hidden + 3 x vision_intermediate) x 2 bytes``.
* **training** (transient, one micro-batch of ``per_device_train_batch_size`` sequences of ``prompt +
  completion`` tokens): activations kept for the backward pass, per layer ``2 bytes x tokens x (8 x hidden +
  4 x intermediate)`` (attention inputs and outputs, norms, the SwiGLU MLP's three projections and
  activation; no attention-score term: SDPA / FlashAttention do not store it); with gradient checkpointing
  only each layer's input ``2 bytes x tokens x hidden`` plus one layer recomputed in full. And the logits:
  the forward's ``tokens x vocab x 2 bytes`` plus one sequence's completion log-softmax in fp32
  (``completion x vocab x 4 bytes``, TRL computes it a row at a time).

Peak = static + the larger of generation and training (they do not overlap), times 1.1 for allocator
fragmentation. The numbers come from the model config (``count_parameters`` builds the model on the
``meta`` device: exact parameter counts, no memory) and the recipe's batch plan; nothing is loaded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

GIB = 1024**3
#: Fixed per-device cost: CUDA context, cuBLAS and NCCL workspaces.
CUDA_CONTEXT_BYTES = 1 * GIB
#: Multiplier for allocator fragmentation and temporaries not modelled term by term.
FRAGMENTATION = 1.10
#: Sharding strategies: what each one divides by the world size.
STRATEGIES = ("single", "ddp", "zero1", "zero2", "zero3", "fsdp")
_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class ModelDims:
    """The numbers of a Qwen2.5-VL-style model that the estimate needs."""

    params: int  # every parameter (language model, vision tower, embeddings, head)
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    vision_hidden: int
    vision_intermediate: int
    patch_size: int
    spatial_merge_size: int

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def lora_params(self, r: int, targets: tuple[str, ...] | list[str] = _LORA_TARGETS) -> int:
        """Parameters of rank-``r`` LoRA adapters on the language model's projections named in ``targets``:
        ``r x (in + out)`` per adapted matrix, per layer."""
        h, kv, i = self.hidden, self.kv_heads * self.head_dim, self.intermediate
        shapes = {"q_proj": (h, h), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (h, h),
                  "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}
        unknown = sorted(set(targets) - set(shapes))
        if unknown:
            raise ValueError(f"unknown LoRA target modules {unknown}; known: {sorted(shapes)}")
        return self.layers * sum(r * (shapes[t][0] + shapes[t][1]) for t in targets)


def dims_from_config(config: Any, params: int | None = None) -> ModelDims:
    """:class:`ModelDims` from a transformers Qwen2.5-VL / Qwen2-VL config (``text_config`` and
    ``vision_config``); ``params`` defaults to :func:`count_parameters`."""
    text = getattr(config, "text_config", None) or config
    vision = config.vision_config
    return ModelDims(
        params=count_parameters(config) if params is None else int(params),
        hidden=int(text.hidden_size), layers=int(text.num_hidden_layers), heads=int(text.num_attention_heads),
        kv_heads=int(getattr(text, "num_key_value_heads", None) or text.num_attention_heads),
        intermediate=int(text.intermediate_size), vocab=int(text.vocab_size),
        vision_hidden=int(getattr(vision, "hidden_size", None) or vision.embed_dim),
        vision_intermediate=int(getattr(vision, "intermediate_size", None) or 4 * vision.hidden_size),
        patch_size=int(vision.patch_size), spatial_merge_size=int(getattr(vision, "spatial_merge_size", 2)),
    )


def count_parameters(config: Any) -> int:
    """Exact parameter count of the model ``config`` describes, built on the ``meta`` device (no memory,
    no weights)."""
    import torch
    from transformers import AutoModelForImageTextToText

    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config)
    return int(sum(p.numel() for p in model.parameters()))


@dataclass(frozen=True)
class RunShape:
    """The recipe numbers the estimate needs (per device unless said otherwise)."""

    per_device_train_batch_size: int
    steps_per_generation: int
    max_prompt_length: int
    max_completion_length: int
    frame_size: int = 840
    world_size: int = 1
    strategy: str = "single"
    lora: bool = False
    lora_r: int = 64
    lora_targets: tuple[str, ...] = _LORA_TARGETS
    beta: float = 0.0
    gradient_checkpointing: bool = True
    use_vllm: bool = False
    vllm_mode: str = "colocate"
    vllm_gpu_memory_utilization: float = 0.3
    vllm_tensor_parallel_size: int = 1
    param_bytes: int = 2  # bf16

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        for name in ("per_device_train_batch_size", "steps_per_generation", "max_prompt_length",
                     "max_completion_length", "world_size", "frame_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")

    @property
    def generated_per_call(self) -> int:
        """Sequences one ``generate`` call makes on this device."""
        return self.per_device_train_batch_size * self.steps_per_generation

    @property
    def sequence_tokens(self) -> int:
        return self.max_prompt_length + self.max_completion_length


@dataclass(frozen=True)
class MemoryTerm:
    name: str
    phase: str  # "static", "generation" or "training"
    bytes: int
    formula: str


@dataclass(frozen=True)
class MemoryEstimate:
    terms: list[MemoryTerm] = field(default_factory=list)
    device_memory: int | None = None  # for the vLLM share and the fit check

    def phase(self, name: str) -> int:
        return sum(t.bytes for t in self.terms if t.phase == name)

    @property
    def peak(self) -> int:
        """Static + the larger transient phase, times :data:`FRAGMENTATION`."""
        return int(math.ceil((self.phase("static") + max(self.phase("generation"), self.phase("training")))
                             * FRAGMENTATION))

    def fits(self, device_memory: int) -> bool:
        return self.peak <= device_memory

    def table(self) -> str:
        """One line per term (GiB and formula), then the phases and the peak."""
        lines = [f"  {t.phase:<10} {t.name:<28} {t.bytes / GIB:8.2f} GiB   {t.formula}" for t in self.terms]
        gen, train, static = self.phase("generation"), self.phase("training"), self.phase("static")
        lines.append(f"  static {static / GIB:.2f} GiB + max(generation {gen / GIB:.2f}, training "
                     f"{train / GIB:.2f}) GiB, x {FRAGMENTATION} fragmentation = peak {self.peak / GIB:.2f} GiB")
        return "\n".join(lines)


#: vLLM's own overhead inside its share: profiling activations, CUDA graphs, sampler buffers.
VLLM_OVERHEAD_BYTES = 1 * GIB


def vllm_needs(dims: ModelDims, run: RunShape) -> tuple[int, str]:
    """Bytes a colocated vLLM needs inside its ``gpu_memory_utilization`` share, and the formula: its copy of the
    weights (``params x 2 / tensor_parallel``), the KV cache of one device's generate call (``2 x layers x kv_heads
    x head_dim x 2 x T x G``, G = per-device micro-batch x steps_per_generation) and :data:`VLLM_OVERHEAD_BYTES`.
    A smaller share makes vLLM refuse to start (no memory left for the KV cache)."""
    pb, tp = run.param_bytes, run.vllm_tensor_parallel_size
    weights = dims.params * pb // tp
    g, tokens = run.generated_per_call, run.sequence_tokens
    kv = 2 * dims.layers * dims.kv_heads * dims.head_dim * pb * tokens * g  # TRL gathers a TP group's prompts
    formula = (f"weights {dims.params / 1e9:.2f}B x {pb} bytes{f' / {tp}' if tp > 1 else ''} = {weights / GIB:.1f} GiB"
               f" + KV cache of {g} sequences x {tokens} tokens = {kv / GIB:.1f} GiB + 1 GiB overhead")
    return weights + kv + VLLM_OVERHEAD_BYTES, formula


def _shard(strategy: str, what: str) -> bool:
    """Whether ``strategy`` shards ``what`` ("optimizer", "gradients", "weights") over the world."""
    level = {"single": 0, "ddp": 0, "zero1": 1, "zero2": 2, "zero3": 3, "fsdp": 3}[strategy]
    return level >= {"optimizer": 1, "gradients": 2, "weights": 3}[what]


def estimate_memory(dims: ModelDims, run: RunShape, *, device_memory: int | None = None) -> MemoryEstimate:
    """Peak memory per device of a GRPO run (see the module docstring for every term).

    Args:
        dims: the model's numbers (:func:`dims_from_config`).
        run: the recipe's numbers.
        device_memory: bytes of one GPU; needed for vLLM's colocate share (else that term is 0 and says so).
    """
    n, s = run.world_size, run.strategy
    pb = run.param_bytes
    terms: list[MemoryTerm] = []

    def div(what: str) -> tuple[int, str]:
        return (n, f" / {n} ({s})") if _shard(s, what) and n > 1 else (1, "")

    d, note = div("weights")
    terms.append(MemoryTerm("weights", "static", dims.params * pb // d,
                            f"{dims.params / 1e9:.2f}B params x {pb} bytes{note}"))
    if run.beta > 0 and not run.lora:
        terms.append(MemoryTerm("reference model", "static", dims.params * pb // d,
                                f"beta > 0 without LoRA: a second copy, {dims.params / 1e9:.2f}B x {pb} bytes{note}"))
    if run.lora:
        trainable = dims.lora_params(run.lora_r, run.lora_targets)
        grad_b, state_b, what = 4, 8, f"LoRA r={run.lora_r}: {trainable / 1e6:.1f}M fp32 params"
        terms.append(MemoryTerm("lora adapters", "static", trainable * 4, f"{what} x 4 bytes"))
    else:
        trainable = dims.params
        deepspeed = s.startswith("zero")
        grad_b, state_b = pb, (12 if deepspeed else 2 * pb)
        what = f"{trainable / 1e9:.2f}B params"
    dg, gnote = div("gradients")
    terms.append(MemoryTerm("gradients", "static", trainable * grad_b // dg, f"{what} x {grad_b} bytes{gnote}"))
    do, onote = div("optimizer")
    state_what = ("fp32 master + 2 fp32 moments" if state_b == 12 and not run.lora else "2 AdamW moments")
    terms.append(MemoryTerm("optimizer states", "static", trainable * state_b // do,
                            f"{what} x {state_b} bytes ({state_what}){onote}"))
    if run.use_vllm and run.vllm_mode == "colocate":
        if device_memory is None:
            terms.append(MemoryTerm("vllm (colocate)", "static", 0,
                                    "gpu_memory_utilization x device memory: device memory unknown (--gpu-memory)"))
        else:
            terms.append(MemoryTerm("vllm (colocate)", "static",
                                    int(run.vllm_gpu_memory_utilization * device_memory),
                                    f"{run.vllm_gpu_memory_utilization} x {device_memory / GIB:.0f} GiB"))
    terms.append(MemoryTerm("cuda context", "static", CUDA_CONTEXT_BYTES, "fixed 1 GiB"))

    if not run.use_vllm:
        g, tokens = run.generated_per_call, run.sequence_tokens
        kv = 2 * dims.layers * dims.kv_heads * dims.head_dim * pb * tokens * g
        terms.append(MemoryTerm(
            "kv cache (generate)", "generation", kv,
            f"2 x {dims.layers} layers x {dims.kv_heads} kv heads x {dims.head_dim} x {pb} bytes x {tokens} tokens "
            f"x {g} sequences ({run.per_device_train_batch_size} per device x {run.steps_per_generation} "
            "steps_per_generation)"))
        patches = (run.frame_size // dims.patch_size) ** 2
        vision = g * patches * (4 * dims.vision_hidden + 3 * dims.vision_intermediate) * pb
        terms.append(MemoryTerm(
            "vision tower (prefill)", "generation", vision,
            f"{g} images x {patches} patches x (4 x {dims.vision_hidden} + 3 x {dims.vision_intermediate}) x "
            f"{pb} bytes, one layer live"))

    b, tokens = run.per_device_train_batch_size, run.sequence_tokens
    per_layer = pb * b * tokens * (8 * dims.hidden + 4 * dims.intermediate)
    if run.gradient_checkpointing:
        act = dims.layers * pb * b * tokens * dims.hidden + per_layer
        act_f = (f"{dims.layers} layers x {pb} bytes x {b} x {tokens} tokens x {dims.hidden} (checkpoints) + one "
                 f"layer recomputed: {pb} x {b} x {tokens} x (8 x {dims.hidden} + 4 x {dims.intermediate})")
    else:
        act = dims.layers * per_layer
        act_f = (f"{dims.layers} layers x {pb} bytes x {b} x {tokens} tokens x (8 x {dims.hidden} + "
                 f"4 x {dims.intermediate})")
    terms.append(MemoryTerm("activations", "training", act, act_f))
    logits = b * tokens * dims.vocab * pb + run.max_completion_length * dims.vocab * 4
    terms.append(MemoryTerm(
        "logits", "training", logits,
        f"{b} x {tokens} tokens x {dims.vocab} vocab x {pb} bytes + {run.max_completion_length} x {dims.vocab} x 4 "
        "(one row's fp32 log-softmax)"))
    return MemoryEstimate(terms, device_memory)


__all__ = ["CUDA_CONTEXT_BYTES", "FRAGMENTATION", "GIB", "STRATEGIES", "VLLM_OVERHEAD_BYTES", "MemoryEstimate",
           "MemoryTerm", "ModelDims", "RunShape", "count_parameters", "dims_from_config", "estimate_memory",
           "vllm_needs"]
