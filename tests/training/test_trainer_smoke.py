"""CPU smoke run of segzero-train: tiny random Qwen2.5-VL, 4 rows, group size 2, 2 steps, then --resume."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("trl")
pytest.importorskip("peft")
pytest.importorskip("scipy")

pytestmark = pytest.mark.slow


def length_shaping_reward(completions, **kwargs):
    """Varies with random text, so advantages are non-zero and parameters move (field notes)."""
    from segzero_tool.training.rewards import completion_text

    return [len(completion_text(c)) / 16.0 for c in completions]


def _rows():
    from PIL import Image

    from segzero_tool.training.data import to_grpo_row

    rng = np.random.default_rng(0)
    rows = []
    for i in range(4):
        image = Image.fromarray(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8))
        solution = json.dumps([{"bbox_2d": [10 + i, 20, 300, 400], "point_2d": [155, 210]}])
        rows.append(to_grpo_row(image, f"the red cup {i}", solution, "visionreasoner", frame_size=112))
    return rows


def _recipe(model, out):
    from segzero_tool.training.config import recipe_from_dict

    return recipe_from_dict({
        "model": str(model), "output_dir": str(out), "rewards": "visionreasoner", "frame_size": 112,
        "num_generations": 2, "prompts_per_step": 2, "per_device_train_batch_size": 2, "max_steps": 2,
        "save_steps": 2, "max_completion_length": 8, "report_to": "none", "gradient_checkpointing": False,
        "bf16": False, "learning_rate": 1e-2, "entropy_coef": 0.0, "min_pixels": None, "max_pixels": None,
    })


def test_cpu_smoke_run_checkpoint_and_resume(tmp_path, tiny_models):
    import datasets
    import torch
    from transformers import AutoModelForImageTextToText

    from segzero_tool import SegZeroPipeline
    from segzero_tool.reasoners.transformers import TransformersReasoner
    from segzero_tool.training import train as train_mod
    from segzero_tool.training.config import plan_for

    out = tmp_path / "run"
    ds = datasets.Dataset.from_list(_rows())
    recipe = _recipe(tiny_models["reasoner"], out)
    from PIL import Image

    from segzero_tool.training.config import apply_overrides

    Image.fromarray(np.zeros((64, 64, 3), dtype=np.uint8)).save(tmp_path / "e.png")
    Image.fromarray(np.full((64, 64), 255, dtype=np.uint8)).save(tmp_path / "m.png")
    (tmp_path / "eval.jsonl").write_text(json.dumps({"image": "e.png", "query": "the cup", "mask": "m.png"}) + "\n")
    recipe = apply_overrides(recipe, {"eval_dataset": str(tmp_path / "eval.jsonl"), "eval_steps": 2,
                                      "eval_segmenter": "box", "eval_limit": 1})
    initial = AutoModelForImageTextToText.from_pretrained(tiny_models["reasoner"]).state_dict()

    trainer = train_mod.run_training(recipe, plan=plan_for(recipe, 1), use_cpu=True, train_dataset=ds,
                                     extra_reward_funcs=[length_shaping_reward])
    assert trainer.state.global_step == 2
    logged = {k for entry in trainer.state.log_history for k in entry}
    from segzero_tool.training.rewards import get_reward_funcs

    names = [f.__name__ for f in get_reward_funcs("visionreasoner")] + ["length_shaping_reward"]
    for name in names:
        assert any(k.startswith(f"rewards/{name}") for k in logged), sorted(logged)
    assert any("completion" in k and "length" in k for k in logged)
    assert "kl" in logged and "eval/giou" in logged  # periodic evaluation through segzero_tool.eval
    assert (out / "eval" / "step-2").is_dir()

    trained = trainer.model.state_dict()
    changed = [k for k, v in initial.items() if k in trained and not torch.equal(v, trained[k].cpu())]
    assert changed, "no parameter moved"

    checkpoint = out / "checkpoint-2"
    assert (checkpoint / "config.json").exists() and (checkpoint / "processor_config.json").exists()
    from transformers import AutoProcessor

    AutoProcessor.from_pretrained(str(checkpoint))  # the trainer saves processing_class in each checkpoint
    assert (out / "final" / "config.json").exists()
    reasoner = TransformersReasoner.from_pretrained(str(checkpoint), device="cpu")
    pipe = SegZeroPipeline.from_pretrained(reasoner, train_mod._BoxSegmenter(), device="cpu", max_new_tokens=8)
    result = pipe.segment(np.zeros((64, 64, 3), dtype=np.uint8), "the cup")
    assert result is not None

    # --resume through the command line, in-process: one more step from checkpoint-2
    data_dir = tmp_path / "data"
    ds.remove_columns(["prompt"]).save_to_disk(str(data_dir))
    recipe_file = tmp_path / "recipe.yaml"
    import yaml

    recipe_file.write_text(yaml.safe_dump({k: v for k, v in recipe.__dict__.items() if k != "name"}))
    rc = train_mod.main(["--recipe", str(recipe_file), "--dataset", str(data_dir), "--output-dir", str(out),
                         "--max-steps", "3", "--save-steps", "1", "--resume", "--cpu"])
    assert rc == 0
    state = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3


def test_resume_without_checkpoint_is_a_clear_error(tmp_path, capsys, tiny_models):
    from segzero_tool.training import train as train_mod

    rc = train_mod.main(["--recipe", "lora-24gb", "--model", str(tiny_models["reasoner"]),
                         "--output-dir", str(tmp_path / "empty"), "--resume", "--cpu"])
    assert rc == 2
    assert "no checkpoint" in capsys.readouterr().err
