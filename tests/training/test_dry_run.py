"""``segzero-train --dry-run``: the plan and the memory estimate from the model config alone, exit 0 when it fits,
2 with settings that fit when not; the shipped LoRA recipe fits a 24 GB GPU."""

from __future__ import annotations

import json

import pytest

from segzero_tool.testing.qwen_configs import qwen2_5_vl_config
from segzero_tool.training import train as train_mod
from segzero_tool.training.dry_run import detect_strategy


@pytest.fixture(scope="module")
def qwen_3b_config(tmp_path_factory):
    """A folder holding only Qwen2.5-VL-3B-Instruct's config.json (its published dimensions; no weights)."""
    folder = tmp_path_factory.mktemp("qwen-3b-config")
    qwen2_5_vl_config("3b").save_pretrained(folder)
    return folder


def _dataset(tmp_path):
    """Two VisionReasoner-shaped rows saved to disk."""
    import io

    import datasets
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (840, 840), (90, 120, 150)).save(buf, format="JPEG")
    solution = json.dumps([{"bbox_2d": [10, 20, 300, 400], "point_2d": [100, 200]}])
    folder = tmp_path / "rows"
    datasets.Dataset.from_dict(
        {"problem": ["the cup", "the spoon"], "solution": [solution, solution],
         "image": [{"bytes": buf.getvalue(), "path": None}] * 2},
        features=datasets.Features({"problem": datasets.Value("string"), "solution": datasets.Value("string"),
                                    "image": datasets.Image()})).save_to_disk(str(folder))
    return folder


def _dry(capsys, *argv):
    """Run ``segzero-train --dry-run ARGV``; stderr without the datasets progress bars."""
    capsys.readouterr()
    code = train_mod.main(["--dry-run", *map(str, argv)])
    out, err = capsys.readouterr()
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip() and "examples/s]" not in line]
    return code, out, "\n".join(lines)


def test_the_lora_recipe_fits_a_24_gb_gpu(capsys, tmp_path, qwen_3b_config, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    code, out, err = _dry(capsys, "--recipe", "lora-24gb", "--model", qwen_3b_config, "--dataset",
                          _dataset(tmp_path), "--gpu-memory", "24")
    assert code == 0, err
    assert "3.75B parameters" in out and "first 2 rows read" in out
    assert "kv cache (generate)" in out and "steps_per_generation 16" in out and "32 sequences" in out
    assert "fits:" in out and "error" not in err


def test_a_run_that_does_not_fit_names_the_settings_that_do(capsys, tmp_path, qwen_3b_config, monkeypatch):
    """All 128 completions in one generate call (the old lora-24gb): ~36 GiB; a smaller generation batch fits."""
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    recipe = tmp_path / "one-call.yaml"
    import yaml

    from segzero_tool.training.config import load_recipe

    base = {k: v for k, v in load_recipe("lora-24gb").__dict__.items() if k != "name"}
    base["grpo"] = {}
    recipe.write_text(yaml.safe_dump(base))
    code, out, err = _dry(capsys, "--recipe", recipe, "--model", qwen_3b_config, "--dataset", _dataset(tmp_path),
                          "--gpu-memory", "24")
    assert code == 2 and "128 sequences" in out
    lines = err.strip().splitlines()
    assert lines[0].startswith("segzero-train: error: the estimate (") and "does not fit 24 GiB" in lines[0]
    assert "settings that fit" in lines[1] and "grpo: {steps_per_generation: 16}" in err
    # the same run on a 48 GB GPU fits as it is
    code, out, _ = _dry(capsys, "--recipe", recipe, "--model", qwen_3b_config, "--dataset", _dataset(tmp_path),
                        "--gpu-memory", "48")
    assert code == 0 and "fits:" in out


def test_without_a_gpu_size_the_estimate_is_printed(capsys, tmp_path, qwen_3b_config, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr("segzero_tool.training.dry_run.device_memory_bytes", lambda: None)
    code, out, _ = _dry(capsys, "--recipe", "lora-24gb", "--model", qwen_3b_config, "--dataset", _dataset(tmp_path))
    assert code == 0 and "give --gpu-memory" in out and "peak" in out


def test_bad_model_and_dataset_are_one_line(capsys, tmp_path, qwen_3b_config, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    empty = tmp_path / "no-config"
    empty.mkdir()
    code, _, err = _dry(capsys, "--recipe", "lora-24gb", "--model", empty, "--dataset", _dataset(tmp_path))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "its config cannot be read" in err
    code, _, err = _dry(capsys, "--recipe", "lora-24gb", "--model", qwen_3b_config, "--dataset", tmp_path / "typo")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "no such file or folder" in err


def test_the_strategy_comes_from_the_launcher():
    assert detect_strategy(1, {}) == "single" and detect_strategy(4, {}) == "ddp"
    assert detect_strategy(8, {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3"}) == "zero3"
    assert detect_strategy(8, {"ACCELERATE_USE_DEEPSPEED": "true"}) == "zero2"
    assert detect_strategy(8, {"ACCELERATE_USE_FSDP": "true"}) == "fsdp"


def test_trl_takes_the_split_generation_of_the_lora_recipe():
    trl = pytest.importorskip("trl")
    from segzero_tool.training.config import grpo_config_kwargs, load_recipe, plan_for

    recipe = load_recipe("lora-24gb")
    kwargs = grpo_config_kwargs(recipe, plan_for(recipe, 1), use_cpu=True)
    kwargs["bf16"] = False
    cfg = trl.GRPOConfig(**kwargs)
    # 32 completions (4 whole groups of 8) per generate call; 64 accumulation steps of 2 = 128 per optimizer step
    assert cfg.steps_per_generation == 16 and cfg.generation_batch_size == 32
    assert cfg.gradient_accumulation_steps * cfg.per_device_train_batch_size == 128


def test_grpo_overrides_are_checked_against_the_plan(capsys, tmp_path, monkeypatch):
    import yaml

    from segzero_tool.training.config import RecipeError, check_grpo_overrides, load_recipe, plan_for

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    recipe = load_recipe("lora-24gb")
    plan = plan_for(recipe, 1)  # 2 per device x 1 x 64 accumulation steps, groups of 8
    check_grpo_overrides(recipe, plan)  # steps_per_generation 16: 32 per call, 4 calls per step
    for grpo, message in (({"steps_per_generation": 24}, r"use one of \[4, 8, 16, 32, 64\]"),
                          ({"steps_per_generation": 2}, "whole groups of 8"),
                          ({"generation_batch_size": 48}, r"use one of \[8, 16, 32, 64, 128\]"),
                          ({"gradient_accumulation_steps": 8}, "contradicts the batch plan"),
                          ({"steps_per_generation": 16, "generation_batch_size": 32}, "not both")):
        with pytest.raises(RecipeError, match=message):
            check_grpo_overrides(dataclasses_replace(recipe, grpo=grpo), plan)
    check_grpo_overrides(dataclasses_replace(recipe, grpo={"generation_batch_size": 64, "num_generations": 8}), plan)
    # through the command line: one line, exit 2, before anything loads
    bad = tmp_path / "bad.yaml"
    base = {k: v for k, v in recipe.__dict__.items() if k != "name"}
    bad.write_text(yaml.safe_dump({**base, "grpo": {"steps_per_generation": 24}}))
    assert train_mod.main(["--recipe", str(bad), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "steps_per_generation: 24" in err[0]


def dataclasses_replace(recipe, **changes):
    import dataclasses

    return dataclasses.replace(recipe, **changes)


def test_a_smaller_batch_from_the_flags_names_the_flag_that_fixes_the_generation_batch(capsys, tmp_path,
                                                                                         qwen_3b_config, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    small = ["--recipe", "lora-24gb", "--model", qwen_3b_config, "--dataset", _dataset(tmp_path),
             "--prompts-per-step", "2", "--num-generations", "2", "--per-device-batch-size", "2", "--gpu-memory", "24"]
    code, _, err = _dry(capsys, *small)
    assert code == 2 and "use one of [1, 2] (--steps-per-generation N)" in err
    code, out, _ = _dry(capsys, *small, "--steps-per-generation", "2")
    assert code == 0 and "4 completions per generate call (steps_per_generation 2)" in out
