"""The peak-memory estimate of a GRPO run (segzero_tool.training.memory_plan): its terms against hand
computations, the real model's parameter counts (meta build, PEFT), and the published hardware guidance."""

from __future__ import annotations

import pytest

from segzero_tool.testing.qwen_configs import PARAMETER_COUNTS, qwen2_5_vl_config
from segzero_tool.training.memory_plan import (
    FRAGMENTATION,
    GIB,
    ModelDims,
    RunShape,
    count_parameters,
    dims_from_config,
    estimate_memory,
)

# Qwen2.5-VL-3B-Instruct and -7B-Instruct: their published config.json (segzero_tool.testing.qwen_configs); the
# parameter counts are those of a meta build of each config (test_published_parameter_counts)
QWEN_3B = dims_from_config(qwen2_5_vl_config("3b"), params=PARAMETER_COUNTS["3b"])
QWEN_7B = dims_from_config(qwen2_5_vl_config("7b"), params=PARAMETER_COUNTS["7b"])


def test_published_dimensions_and_parameter_counts():
    assert QWEN_3B == ModelDims(params=3_754_622_976, hidden=2048, layers=36, heads=16, kv_heads=2,
                                intermediate=11008, vocab=151936, vision_hidden=1280, vision_intermediate=3420,
                                patch_size=14, spatial_merge_size=2)
    assert QWEN_7B == ModelDims(params=8_292_166_656, hidden=3584, layers=28, heads=28, kv_heads=4,
                                intermediate=18944, vocab=152064, vision_hidden=1280, vision_intermediate=3420,
                                patch_size=14, spatial_merge_size=2)
    for size in ("3b", "7b"):  # meta device: no memory
        assert count_parameters(qwen2_5_vl_config(size)) == PARAMETER_COUNTS[size]


def _term(estimate, name):
    (term,) = [t for t in estimate.terms if t.name == name]
    return term


def _run(**kw) -> RunShape:
    base = {"per_device_train_batch_size": 2, "steps_per_generation": 8, "max_prompt_length": 1300,
            "max_completion_length": 1024}
    return RunShape(**{**base, **kw})


def test_kv_cache_of_one_generate_call():
    # lora-24gb on one GPU: 16 prompts x 8 generations = 128 completions in one call (2 per device x 64 steps)
    e = estimate_memory(QWEN_3B, _run(steps_per_generation=64, lora=True))
    kv = _term(e, "kv cache (generate)")
    assert kv.bytes == 2 * 36 * 2 * 128 * 2 * (1300 + 1024) * 128
    assert 10 * GIB < kv.bytes < 10.5 * GIB and "128 sequences" in kv.formula
    # a generation batch 8x smaller has an 8x smaller cache
    assert _term(estimate_memory(QWEN_3B, _run(lora=True)), "kv cache (generate)").bytes * 8 == kv.bytes


def test_peak_is_static_plus_the_larger_phase():
    e = estimate_memory(QWEN_3B, _run(lora=True))
    static, gen, train = e.phase("static"), e.phase("generation"), e.phase("training")
    assert e.peak == pytest.approx((static + max(gen, train)) * FRAGMENTATION, abs=1)
    assert "peak" in e.table() and "kv cache (generate)" in e.table()


def test_sharding_by_strategy():
    full = {s: estimate_memory(QWEN_7B, _run(world_size=8, strategy=s)) for s in ("ddp", "zero1", "zero2", "zero3")}
    w, g, o = "weights", "gradients", "optimizer states"
    assert _term(full["ddp"], w).bytes == QWEN_7B.params * 2 == _term(full["zero2"], w).bytes
    assert _term(full["zero3"], w).bytes == QWEN_7B.params * 2 // 8
    assert _term(full["zero1"], g).bytes == QWEN_7B.params * 2 and _term(full["zero2"], g).bytes == QWEN_7B.params * 2 // 8
    # DeepSpeed keeps fp32 master weights and moments (12 bytes), sharded from ZeRO-1 on; plain DDP bf16 moments
    assert _term(full["zero1"], o).bytes == QWEN_7B.params * 12 // 8
    assert _term(full["ddp"], o).bytes == QWEN_7B.params * 4
    assert full["zero3"].peak < full["zero2"].peak < full["zero1"].peak < full["ddp"].peak


def test_lora_reference_and_checkpointing():
    lora = estimate_memory(QWEN_3B, _run(lora=True, beta=0.01))
    full = estimate_memory(QWEN_3B, _run(beta=0.01))
    assert "reference model" not in {t.name for t in lora.terms}  # the base model with the adapter off
    assert _term(full, "reference model").bytes == QWEN_3B.params * 2
    assert "reference model" not in {t.name for t in estimate_memory(QWEN_3B, _run()).terms}  # beta = 0
    assert _term(lora, "gradients").bytes == QWEN_3B.lora_params(64) * 4
    ckpt = _term(estimate_memory(QWEN_3B, _run(gradient_checkpointing=True)), "activations").bytes
    none = _term(estimate_memory(QWEN_3B, _run(gradient_checkpointing=False)), "activations").bytes
    assert none > 5 * ckpt


def test_colocated_vllm_takes_its_share_and_the_trainer_does_not_generate():
    e = estimate_memory(QWEN_7B, _run(use_vllm=True, vllm_gpu_memory_utilization=0.4), device_memory=80 * GIB)
    assert _term(e, "vllm (colocate)").bytes == int(0.4 * 80 * GIB) and e.phase("generation") == 0
    unknown = estimate_memory(QWEN_7B, _run(use_vllm=True))
    assert _term(unknown, "vllm (colocate)").bytes == 0 and "--gpu-memory" in _term(unknown, "vllm (colocate)").formula


def test_published_hardware_guidance():
    """VisionReasoner's README: the 7B trains on 4 x 80 GB (micro batch 2, vLLM at 0.4 of the GPU) or 8 x 46 GB
    (micro batch 1, vLLM at 0.1), parameters sharded (FSDP); the full config wants 8 x 140 GB."""
    for n, mem, micro, util in ((4, 80, 2, 0.4), (8, 46, 1, 0.1)):
        e = estimate_memory(QWEN_7B, _run(world_size=n, strategy="fsdp", per_device_train_batch_size=micro,
                                          steps_per_generation=1, beta=1e-3, use_vllm=True,
                                          vllm_gpu_memory_utilization=util), device_memory=mem * GIB)
        assert e.fits(mem * GIB), (n, mem, e.table())
    # ... and not without sharding: 8.3B params in bf16 with bf16 moments, a reference copy and vLLM's share
    assert not estimate_memory(QWEN_7B, _run(beta=1e-3, use_vllm=True, vllm_gpu_memory_utilization=0.4),
                               device_memory=80 * GIB).fits(80 * GIB)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="strategy must be one of"):
        _run(strategy="zero4")
    with pytest.raises(ValueError, match="per_device_train_batch_size must be at least 1"):
        _run(per_device_train_batch_size=0)
    with pytest.raises(ValueError, match="unknown LoRA target modules"):
        QWEN_3B.lora_params(8, ["qkv"])


def test_counts_match_the_real_model(tiny_models):
    """The meta-device count equals the loaded model's, and lora_params equals what PEFT adds."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForImageTextToText

    config = AutoConfig.from_pretrained(tiny_models["reasoner"])
    model = AutoModelForImageTextToText.from_pretrained(tiny_models["reasoner"])
    assert count_parameters(config) == sum(p.numel() for p in model.parameters())
    dims = dims_from_config(config)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    from segzero_tool.training.train import third_party_checkpointing_alias_silenced

    with third_party_checkpointing_alias_silenced():  # peft reads the model's deprecated is_gradient_checkpointing
        peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=targets,
                                                exclude_modules=r".*visual.*"))
    trainable = sum(p.numel() for p in peft.parameters() if p.requires_grad)
    assert dims.lora_params(4, targets) == trainable


def test_what_colocated_vllm_needs_inside_its_share():
    """vLLM's own weights (split by tensor parallelism) + the KV cache of one device's generate call + 1 GiB."""
    from segzero_tool.training.memory_plan import VLLM_OVERHEAD_BYTES, vllm_needs

    run = _run(use_vllm=True, max_completion_length=2000)  # 2 x 8 = 16 sequences of 3300 tokens
    need, formula = vllm_needs(QWEN_7B, run)
    kv = 2 * 28 * 4 * 128 * 2 * 3300 * 16
    assert need == QWEN_7B.params * 2 + kv + VLLM_OVERHEAD_BYTES and "16 sequences x 3300 tokens" in formula
    assert 19 * GIB < need < 20 * GIB  # a share of 0.2 x 80 GB would not start
    split, _ = vllm_needs(QWEN_7B, _run(use_vllm=True, max_completion_length=2000, vllm_tensor_parallel_size=2))
    assert split == QWEN_7B.params * 2 // 2 + kv + VLLM_OVERHEAD_BYTES
