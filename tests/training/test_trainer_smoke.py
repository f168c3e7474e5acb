"""CPU smoke run of segzero-train: tiny random Qwen2.5-VL, 4 rows, group size 2, 2 steps, then --resume.

The run logs with the recipes' own ``report_to: tensorboard`` (so a missing tensorboard fails here, as it would
on a user's first run), and the metric names the READMEs document are checked against what was logged.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("trl")
pytest.importorskip("peft")
pytest.importorskip("scipy")
pytest.importorskip("tensorboard")

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
        "save_steps": 2, "max_completion_length": 8, "gradient_checkpointing": False,
        "bf16": False, "learning_rate": 1e-2, "entropy_coef": 0.0, "min_pixels": None, "max_pixels": None,
    })


REPO = Path(__file__).resolve().parents[2]


def _documented_names(text: str, start: str) -> set[str]:
    """The backticked metric names of the paragraph / bullet of ``text`` that begins with ``start``."""
    i = text.index(start)
    j = min(k for k in (text.find("\n* ", i + 1), text.find("\n\n", i + 1), len(text)) if k > 0)
    return set(re.findall(r"`([^`\s]+)`", text[i:j]))


def _tensorboard_tags(folder: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags: set[str] = set()
    for run in {f.parent for f in folder.rglob("events.out.tfevents.*")}:
        acc = EventAccumulator(str(run))
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
    return tags


def test_cpu_smoke_run_checkpoint_and_resume(tmp_path, tiny_models, monkeypatch):
    import datasets
    import torch
    from transformers import AutoModelForImageTextToText

    from segzero_tool import SegZeroPipeline
    from segzero_tool.reasoners.transformers import TransformersReasoner
    from segzero_tool.training import train as train_mod
    from segzero_tool.training.config import plan_for

    monkeypatch.delenv("TENSORBOARD_LOGGING_DIR", raising=False)
    out = tmp_path / "run"
    ds = datasets.Dataset.from_list(_rows())
    recipe = _recipe(tiny_models["reasoner"], out)
    assert recipe.report_to == "tensorboard"  # the recipes' default, not switched off for the test
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

    # TensorBoard event files under output_dir, holding the names the READMEs document
    assert list((out / "runs").rglob("events.out.tfevents.*")), sorted(p.name for p in out.rglob("*"))
    tags = _tensorboard_tags(out / "runs")
    training_readme = (REPO / "training" / "README.md").read_text(encoding="utf-8")
    documented = _documented_names(training_readme, "* Logs (")
    tb_names = {n for n in documented if re.fullmatch(r"train/[\w/<>]+", n)}
    assert {"train/eval/giou", "train/eval/ciou", "train/kl", "train/reward"} <= tb_names, documented
    expanded = {n.replace("<function>", f) for n in tb_names for f in names} if tb_names else set()
    assert expanded <= tags, f"documented but not logged: {sorted(expanded - tags)}; logged: {sorted(tags)}"
    history = {n for n in documented if not n.startswith(("train/", "output_dir/", "/"))
               and "/" in n and "<" not in n and "*" not in n}
    assert {"eval/giou"} <= history and history <= logged, (sorted(history - logged), sorted(logged))
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Training the reasoner"):]
    section = section[: section.index("\n## ", 1)]
    for name in re.findall(r"`(train/eval/[a-z]+|eval/[a-z]+)`", section):
        assert name in (tags if name.startswith("train/") else logged), name

    trained = trainer.model.state_dict()
    changed = [k for k, v in initial.items() if k in trained and not torch.equal(v, trained[k].cpu())]
    assert changed, "no parameter moved"

    checkpoint = out / "checkpoint-2"
    assert (checkpoint / "config.json").exists() and (checkpoint / "processor_config.json").exists()
    from transformers import AutoProcessor

    AutoProcessor.from_pretrained(str(checkpoint))  # the trainer saves processing_class in each checkpoint
    assert (out / "final" / "config.json").exists()
    reasoner = TransformersReasoner.from_pretrained(str(checkpoint), device="cpu")
    from segzero_tool.training.eval_callback import BoxSegmenter

    pipe = SegZeroPipeline.from_pretrained(reasoner, BoxSegmenter(), device="cpu", max_new_tokens=8)
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
