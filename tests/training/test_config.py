"""Recipes load and validate; batch arithmetic errors are typed and name the numbers; CLI overrides apply."""

from __future__ import annotations

import pytest

from segzero_tool.training.config import (
    BatchSizeError,
    RecipeError,
    apply_overrides,
    detect_num_processes,
    load_recipe,
    plan_for,
    recipe_from_dict,
    recipe_names,
    validate_batch_arithmetic,
)


def test_shipped_recipes_load_and_validate():
    assert {"segzero-7b", "visionreasoner-7b", "lora-24gb"} <= set(recipe_names())
    for name in recipe_names():
        recipe = load_recipe(name)
        for gpus in (1, 2, 4, 8):
            plan = plan_for(recipe, gpus)
            assert plan.completions_per_step == recipe.prompts_per_step * recipe.num_generations


def test_protocol_numbers():
    sz, vr = load_recipe("segzero-7b"), load_recipe("visionreasoner-7b")
    for r in (sz, vr):
        assert (r.num_generations, r.prompts_per_step, r.learning_rate, r.weight_decay) == (8, 16, 1e-6, 0.01)
        assert (r.temperature, r.top_p, r.epsilon, r.max_grad_norm, r.warmup_steps) == (1.0, 1.0, 0.2, 1.0, 0)
        assert r.lr_scheduler_type == "constant" and r.bf16 and r.gradient_checkpointing
        assert r.max_prompt_length == 1300
    assert (sz.beta, sz.max_completion_length, sz.save_steps, sz.rewards) == (5e-3, 1300, 50, "segzero")
    assert (vr.beta, vr.max_completion_length, vr.save_steps, vr.rewards) == (1e-2, 2000, 100, "visionreasoner")
    assert load_recipe("lora-24gb").lora
    assert plan_for(vr, 8).gradient_accumulation_steps == 8


def test_recipe_by_path(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("model: some/model\nnum_generations: 4\nprompts_per_step: 4\nlearning_rate: 1e-6\n")
    recipe = load_recipe(path)
    assert (recipe.name, recipe.model, recipe.num_generations, recipe.learning_rate) == ("r", "some/model", 4, 1e-6)


def test_unknown_keys_rejected(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("num_generation: 8\n")
    with pytest.raises(RecipeError, match="num_generation.*did you mean 'num_generations'"):
        load_recipe(path)
    with pytest.raises(RecipeError, match="unknown key"):
        apply_overrides(load_recipe("segzero-7b"), {"lerning_rate": 1.0})


def test_bad_values_rejected():
    with pytest.raises(RecipeError, match="num_generations must be"):
        recipe_from_dict({"num_generations": "eight"})
    with pytest.raises(RecipeError, match="rewards must be"):
        recipe_from_dict({"rewards": "nope"})
    with pytest.raises(RecipeError, match="no recipe file"):
        load_recipe("does-not-exist")


def test_batch_arithmetic_error_names_the_numbers():
    with pytest.raises(BatchSizeError) as info:
        validate_batch_arithmetic(num_generations=8, prompts_per_step=16, per_device_train_batch_size=3,
                                  num_processes=8)
    msg = str(info.value)
    assert "prompts_per_step (16)" in msg and "num_generations (8)" in msg and "= 128" in msg
    assert "per_device_train_batch_size (3)" in msg and "num_processes (8)" in msg
    assert info.value.suggestions
    for s in info.value.suggestions:  # every suggestion really works
        validate_batch_arithmetic(num_generations=8, prompts_per_step=s["prompts_per_step"],
                                  per_device_train_batch_size=s["per_device_train_batch_size"],
                                  num_processes=s["num_processes"],
                                  gradient_accumulation_steps=s["gradient_accumulation_steps"])


def test_batch_arithmetic_explicit_accumulation_and_group_size():
    with pytest.raises(BatchSizeError, match=r"gradient_accumulation_steps \(4\) = 64"):
        validate_batch_arithmetic(num_generations=8, prompts_per_step=16, per_device_train_batch_size=2,
                                  num_processes=8, gradient_accumulation_steps=4)
    with pytest.raises(BatchSizeError, match="at least 2"):
        validate_batch_arithmetic(num_generations=1, prompts_per_step=16, per_device_train_batch_size=2)
    with pytest.raises(BatchSizeError, match="num_processes"):
        validate_batch_arithmetic(num_generations=8, prompts_per_step=16, per_device_train_batch_size=2,
                                  num_processes=3)


def test_trl_accepts_the_plan():
    trl = pytest.importorskip("trl")
    from segzero_tool.training.config import grpo_config_kwargs

    recipe = load_recipe("visionreasoner-7b")
    kwargs = grpo_config_kwargs(recipe, plan_for(recipe, 1), use_cpu=True)
    kwargs["bf16"] = False
    cfg = trl.GRPOConfig(**kwargs)
    assert cfg.generation_batch_size == 128 and cfg.num_generations == 8 and cfg.beta == 1e-2


def test_num_processes_from_env(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert detect_num_processes() == 4
    assert detect_num_processes(2) == 2
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.delenv("ACCELERATE_NUM_PROCESSES", raising=False)
    assert detect_num_processes() == 1


def test_cli_overrides_applied():
    from segzero_tool.training.train import build_parser, overrides_from_args

    args = build_parser().parse_args([
        "--recipe", "segzero-7b", "--model", "m/x", "--output-dir", "out", "--max-steps", "5", "--lora",
        "--use-vllm", "--vllm-mode", "server", "--report-to", "none", "--eval-steps", "10", "--no-merge-lora"])
    recipe = load_recipe(args.recipe, overrides_from_args(args))
    assert (recipe.model, recipe.output_dir, recipe.max_steps, recipe.lora) == ("m/x", "out", 5, True)
    assert (recipe.use_vllm, recipe.vllm_mode, recipe.report_to, recipe.eval_steps) == (True, "server", "none", 10)
    assert recipe.merge_lora is False and recipe.beta == 5e-3  # untouched keys keep the recipe's value


def test_cli_batch_error_before_model_load(capsys):
    from segzero_tool.training.train import main

    rc = main(["--recipe", "segzero-7b", "--model", "/nonexistent", "--per-device-batch-size", "3",
               "--num-processes", "8"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "batch sizes do not divide" in err and "per_device_train_batch_size=2" in err


def _checkpointing_future_warnings(record):
    return [w for w in record if issubclass(w.category, FutureWarning) and "checkpointing" in str(w.message)]


def test_gradient_checkpointing_goes_to_transformers_current_name():
    """The recipe key stays ``gradient_checkpointing``; GRPOConfig gets ``activation_checkpointing`` where the
    installed transformers has it (5.x; the old name warns there) and the old name where not (4.x)."""
    from segzero_tool.training.config import (
        grpo_config_kwargs,
        rename_checkpointing_keys,
        training_args_fields,
    )

    old = {"gradient_checkpointing": True, "gradient_checkpointing_kwargs": {"use_reentrant": False}, "seed": 1}
    assert rename_checkpointing_keys(old, {"gradient_checkpointing", "seed"}) == old  # transformers 4.x
    new = rename_checkpointing_keys(old, {"activation_checkpointing", "activation_checkpointing_kwargs"})
    assert new == {"activation_checkpointing": True, "activation_checkpointing_kwargs": {"use_reentrant": False},
                   "seed": 1}
    renamed = "activation_checkpointing" in training_args_fields()
    recipe = load_recipe("segzero-7b")
    kwargs = grpo_config_kwargs(recipe, plan_for(recipe, 8))
    assert kwargs["activation_checkpointing" if renamed else "gradient_checkpointing"] is True
    assert ("gradient_checkpointing" in kwargs) is not renamed
    # a grpo: override under either name wins over the recipe's key
    for key in ("gradient_checkpointing", "activation_checkpointing" if renamed else "gradient_checkpointing"):
        off = apply_overrides(recipe, {"grpo": {key: False}})
        kwargs = grpo_config_kwargs(off, plan_for(off, 8))
        assert kwargs["activation_checkpointing" if renamed else "gradient_checkpointing"] is False
        assert ("gradient_checkpointing" in kwargs) is not renamed


def test_building_the_grpo_config_emits_no_checkpointing_future_warning():
    import warnings

    trl = pytest.importorskip("trl")
    from segzero_tool.training.config import grpo_config_kwargs
    from segzero_tool.training.train import build_grpo_config

    for name in recipe_names():
        recipe = load_recipe(name)
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            build_grpo_config(recipe, plan_for(recipe, 1), use_cpu=True)
            kwargs = grpo_config_kwargs(recipe, plan_for(recipe, 1), use_cpu=True)
            cfg = trl.GRPOConfig(**{**kwargs, "bf16": False})
        assert not _checkpointing_future_warnings(record), (name, [str(w.message) for w in record])
        assert cfg.gradient_checkpointing is True  # the mirrored old name still reads the recipe's value


def test_the_trainer_path_emits_no_checkpointing_future_warning(tiny_models):
    """TRL reads ``model.is_gradient_checkpointing`` on every generate call (trl.models.utils), which transformers
    5.x deprecates; run_training builds and trains inside third_party_checkpointing_alias_silenced."""
    import warnings

    pytest.importorskip("trl")
    from transformers import AutoModelForImageTextToText
    from trl.models.utils import disable_gradient_checkpointing

    from segzero_tool.training.train import third_party_checkpointing_alias_silenced

    model = AutoModelForImageTextToText.from_pretrained(tiny_models["reasoner"])
    (getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable)()
    on = "is_activation_checkpointing" if hasattr(type(model), "is_activation_checkpointing") else \
        "is_gradient_checkpointing"
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with third_party_checkpointing_alias_silenced():
            with disable_gradient_checkpointing(model):
                assert not getattr(model, on)
        assert getattr(model, on)
        warnings.warn("other FutureWarnings still show", FutureWarning, stacklevel=2)
    assert not _checkpointing_future_warnings(record), [str(w.message) for w in record]
    assert any("still show" in str(w.message) for w in record)
