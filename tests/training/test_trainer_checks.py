"""What ``segzero-train`` checks before anything loads, and what reaches the model in a training step.

* dataset errors: one line, exit 2; a mistyped local path fails at once, before the hub is asked;
* missing packages the run needs (tensorboard for ``report_to: tensorboard``, deepspeed under a DeepSpeed
  accelerate config): one line, exit 5, with the ``pip install`` to run;
* ``--num-processes`` never overrides the launched world size;
* a processor that pads on the right is refused (TRL #5785), and in a real CPU training step with prompts of
  different lengths every forward call gets image tokens, ``pixel_values`` and ``mm_token_type_ids`` that match
  each prompt's image;
* the attention implementation picked when the recipe leaves it unset.
"""

from __future__ import annotations

import contextlib
import json
import time

import numpy as np
import pytest

pytest.importorskip("trl")
pytest.importorskip("scipy")


@pytest.fixture
def offline(monkeypatch):
    """No hub: the environment variables, and the constants the hub libraries read them into at import."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    for var in ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "ACCELERATE_USE_DEEPSPEED"):
        monkeypatch.delenv(var, raising=False)


def _err_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("segzero-train: error: "), err
    return err


# --- datasets ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["./data/typo", "data/typo", "~/no-such-folder-xyz/set", "runs/a/b",
                                   "missing.jsonl", "/no/such/set.parquet"])
def test_mistyped_dataset_path_fails_at_once(value, tmp_path, capsys, monkeypatch, offline):
    from segzero_tool.training import data as data_mod  # noqa: F401  (imported before the clock starts)
    from segzero_tool.training import train as train_mod

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()  # "data/typo": the first folder exists here, so it is a path, not a hub id

    def no_hub(*args, **kwargs):
        raise AssertionError("the hub was asked")

    import datasets

    monkeypatch.setattr(datasets, "load_dataset", no_hub)
    start = time.perf_counter()
    rc = train_mod.main(["--recipe", "lora-24gb", "--model", str(tmp_path / "no-model"), "--dataset", value,
                         "--output-dir", str(tmp_path / "out"), "--cpu"])
    elapsed = time.perf_counter() - start
    assert rc == 2
    err = _err_line(capsys)
    assert repr(value) in err and "no such file or folder" in err
    assert elapsed < 1.0, f"{elapsed:.2f} s"


def test_hub_ids_are_not_taken_for_paths(tmp_path, monkeypatch):
    from segzero_tool.training.data import check_dataset_source, looks_like_path

    monkeypatch.chdir(tmp_path)
    for hub_id in ("Ricky06662/VisionReasoner_multi_object_1k_840", "Ricky06662/refCOCOg_9k_840", "squad"):
        assert not looks_like_path(hub_id)
        check_dataset_source(hub_id)  # no error: the hub decides
    (tmp_path / "data").mkdir()
    assert looks_like_path("data/typo") and not looks_like_path("owner/data")


def test_dataset_errors_are_one_line_exit_2(tmp_path, capsys, offline):
    import datasets

    from segzero_tool.training import train as train_mod

    no_columns = tmp_path / "no-columns"
    datasets.Dataset.from_dict({"question": ["a", "b"]}).save_to_disk(str(no_columns))
    not_a_set = tmp_path / "not-a-set"
    not_a_set.mkdir()
    (not_a_set / "notes.txt").write_text("hello\nworld\n")
    capsys.readouterr()  # the progress bars of save_to_disk
    for folder, words in ((no_columns, "lacks column"), (not_a_set, "not a `datasets` save_to_disk folder")):
        rc = train_mod.main(["--recipe", "lora-24gb", "--model", str(tmp_path / "no-model"), "--dataset",
                             str(folder), "--output-dir", str(tmp_path / "out"), "--report-to", "none", "--cpu"])
        assert rc == 2
        assert words in _err_line(capsys)


@pytest.mark.parametrize(("value", "words"), [
    ("evalset/missing.jsonl", "no such file or folder"),
    ("{tmp}/broken.jsonl", "not valid JSON"),
])
def test_a_bad_local_eval_dataset_fails_before_the_model(tmp_path, capsys, offline, value, words):
    """A mistyped --eval-dataset used to surface at the first evaluation, eval_steps steps into the run."""
    from segzero_tool.training import train as train_mod

    (tmp_path / "broken.jsonl").write_text('{"image": "a.jpg", "query"\n')
    (tmp_path / "train-set").mkdir()  # exists: the training set's own check passes
    rc = train_mod.main(["--recipe", "lora-24gb", "--model", str(tmp_path / "no-model"), "--dataset",
                         str(tmp_path / "train-set"), "--output-dir", str(tmp_path / "out"),
                         "--report-to", "none", "--cpu", "--eval-dataset", value.format(tmp=tmp_path),
                         "--eval-steps", "5"])
    assert rc == 2
    line = _err_line(capsys)
    assert "--eval-dataset" in line and words in line


# --- packages ----------------------------------------------------------------------------------------


def _pretend_missing(monkeypatch, *names):
    from segzero_tool.training import train as train_mod

    real = train_mod._missing
    monkeypatch.setattr(train_mod, "_missing", lambda module: module in names or real(module))


def test_report_to_tensorboard_without_tensorboard_exit_5(tmp_path, capsys, monkeypatch, offline):
    from segzero_tool.training import train as train_mod

    _pretend_missing(monkeypatch, "tensorboard", "tensorboardX")
    rc = train_mod.main(["--recipe", "lora-24gb", "--model", str(tmp_path / "no-model"), "--dataset",
                         "owner/not-downloaded", "--output-dir", str(tmp_path / "out"), "--cpu"])
    assert rc == 5
    err = _err_line(capsys)
    assert "report_to: tensorboard" in err and 'pip install "segzero-tool[train]"' in err
    # --report-to none needs no tensorboard: the run goes on to the dataset (unreachable: a one-line exit 2)
    import datasets

    def unreachable(*args, **kwargs):
        raise ConnectionError("no network\n(twice)")

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    rc = train_mod.main(["--recipe", "lora-24gb", "--model", str(tmp_path / "no-model"), "--dataset",
                         "owner/not-downloaded", "--output-dir", str(tmp_path / "out"), "--cpu", "--report-to", "none"])
    assert rc == 2 and "owner/not-downloaded" in _err_line(capsys)


def test_wandb_without_wandb_exit_5(tmp_path, capsys, monkeypatch, offline):
    from segzero_tool.training import train as train_mod

    _pretend_missing(monkeypatch, "wandb")
    rc = train_mod.main(["--recipe", "lora-24gb", "--model", str(tmp_path / "no-model"), "--dataset",
                         "owner/x", "--output-dir", str(tmp_path / "out"), "--cpu", "--report-to", "wandb"])
    assert rc == 5 and "pip install wandb" in _err_line(capsys)


def test_deepspeed_config_without_deepspeed_exit_5(tmp_path, capsys, monkeypatch, offline):
    from segzero_tool.training import train as train_mod
    from segzero_tool.training.config import load_recipe

    _pretend_missing(monkeypatch, "deepspeed")
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")  # what `accelerate launch --config_file zero2.yaml` sets
    rc = train_mod.main(["--recipe", "lora-24gb", "--model", str(tmp_path / "no-model"), "--dataset",
                         "owner/x", "--output-dir", str(tmp_path / "out")])
    assert rc == 5
    err = _err_line(capsys)
    assert 'pip install "segzero-tool[deepspeed]"' in err and "ACCELERATE_USE_DEEPSPEED" in err
    assert train_mod.deepspeed_requested(load_recipe("lora-24gb"))
    assert not train_mod.deepspeed_requested(load_recipe("lora-24gb"), use_cpu=True)
    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED")
    assert not train_mod.deepspeed_requested(load_recipe("lora-24gb"))
    assert train_mod.deepspeed_requested(load_recipe("lora-24gb", {"grpo": {"deepspeed": "ds.json"}}))


# --- world size ----------------------------------------------------------------------------------------


def test_num_processes_must_match_the_launched_world_size(tmp_path, capsys, monkeypatch, offline):
    from segzero_tool.training import train as train_mod

    argv = ["--recipe", "lora-24gb", "--model", str(tmp_path / "no-model"), "--dataset", "owner/x",
            "--output-dir", str(tmp_path / "out"), "--cpu", "--report-to", "none", "--num-processes", "4"]
    assert train_mod.main(argv) == 2
    err = _err_line(capsys)
    assert "for 4 process(es)" in err and "this run has 1" in err and "WORLD_SIZE unset" in err
    assert "accelerate launch --num_processes 4" in err
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert train_mod.main(argv) == 2
    assert "this run has 2 (WORLD_SIZE=2)" in _err_line(capsys)


def test_default_num_processes_is_the_launched_world_size(monkeypatch, offline):
    from segzero_tool.training.config import check_world_size, detect_num_processes, load_recipe, plan_for

    assert detect_num_processes() == 1
    monkeypatch.setenv("WORLD_SIZE", "8")
    assert detect_num_processes() == 8
    recipe = load_recipe("visionreasoner-7b")
    check_world_size(plan_for(recipe, detect_num_processes()))  # no error


def _rows(queries_and_frames):
    from PIL import Image

    from segzero_tool.training.data import to_grpo_row

    rng = np.random.default_rng(0)
    rows = []
    for query, frame in queries_and_frames:
        image = Image.fromarray(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8))
        solution = json.dumps([{"bbox_2d": [10, 20, 300, 400], "point_2d": [155, 210]}])
        rows.append(to_grpo_row(image, query, solution, "visionreasoner", frame_size=frame))
    return rows


def _tiny_recipe(model, out, **extra):
    from segzero_tool.training.config import recipe_from_dict

    return recipe_from_dict({
        "model": str(model), "output_dir": str(out), "rewards": "visionreasoner", "frame_size": 112,
        "num_generations": 2, "prompts_per_step": 2, "per_device_train_batch_size": 2, "max_steps": 1,
        "save_steps": 100, "max_completion_length": 8, "report_to": "none", "gradient_checkpointing": False,
        "bf16": False, "min_pixels": None, "max_pixels": None, **extra,
    })


@pytest.mark.slow
def test_trainer_checks_accelerates_world_size_before_the_model(tmp_path, monkeypatch, tiny_models, offline):
    """A plan for 2 processes in a 1-process run: refused after the GRPOConfig (accelerate's own count)."""
    import datasets
    import trl

    from segzero_tool.training import config as config_mod
    from segzero_tool.training import train as train_mod
    from segzero_tool.training.config import BatchSizeError, plan_for

    def boom(*a, **k):
        raise AssertionError("the trainer was built before the check")

    monkeypatch.setattr(trl, "GRPOTrainer", boom)
    monkeypatch.setattr(config_mod, "launched_world_size", lambda: 2)  # the environment says 2, accelerate 1
    recipe = _tiny_recipe(tiny_models["reasoner"], tmp_path / "out")
    ds = datasets.Dataset.from_list(_rows([("the cup", 112), ("the dog", 112)]))
    with pytest.raises(BatchSizeError, match="this run has 1"):
        train_mod.run_training(recipe, plan=plan_for(recipe, 2), use_cpu=True, train_dataset=ds)


# --- the processor and what reaches the model ------------------------------------------------------------


@pytest.mark.slow
def test_right_padded_processor_is_refused(tmp_path, monkeypatch, tiny_models, offline):
    import datasets
    import trl
    from transformers import AutoProcessor

    from segzero_tool.training import train as train_mod
    from segzero_tool.training.config import plan_for

    def boom(*a, **k):
        raise AssertionError("the trainer was built with a right-padded processor")

    monkeypatch.setattr(trl, "GRPOTrainer", boom)
    recipe = _tiny_recipe(tiny_models["reasoner"], tmp_path / "out")
    ds = datasets.Dataset.from_list(_rows([("the cup", 112), ("the dog", 112)]))
    right = AutoProcessor.from_pretrained(str(tiny_models["reasoner"]), padding_side="right")
    with pytest.raises(train_mod.TrainingSetupError, match="left padding"):
        train_mod.run_training(recipe, plan=plan_for(recipe, 1), use_cpu=True, train_dataset=ds, processor=right)
    with pytest.raises(train_mod.TrainingSetupError, match="#5785"):
        train_mod.check_processor_padding(right)
    train_mod.check_processor_padding(AutoProcessor.from_pretrained(str(tiny_models["reasoner"]),
                                                                    padding_side="left"))
    assert train_mod.load_processor(recipe).tokenizer.padding_side == "left"


class _InputChecker:
    """A forward pre-hook (``with_kwargs=True``) that checks, per sample, that the model's image inputs match
    the prompt. Per sample, the image placeholder tokens among attended positions must number the merged
    patches of that sample's image: ``image_grid_thw`` row / spatial_merge_size**2 in the loss pass (which gets
    ``pixel_values``, whose rows must be all the patches), the rows of its encoded image in the generation
    prefill (transformers encodes the images first and passes ``mm_encoder_outputs``); ``mm_token_type_ids``
    must mark exactly the placeholder positions."""

    def __init__(self, model):
        self.image_token_id = int(model.config.image_token_id)
        self.merge = int(model.config.vision_config.spatial_merge_size)
        self.calls: list[dict] = []
        self.failures: list[str] = []

    def __call__(self, module, args, kwargs):
        import torch

        input_ids = kwargs.get("input_ids", args[0] if args else None)
        pixel_values, grid = kwargs.get("pixel_values"), kwargs.get("image_grid_thw")
        encoded = (kwargs.get("mm_encoder_outputs") or {}).get("image")
        if input_ids is None or (pixel_values is None and encoded is None):  # decoding steps after the prompt
            return None
        rows = int(input_ids.shape[0])
        mask = kwargs.get("attention_mask")
        mask = torch.ones_like(input_ids) if mask is None else mask
        mm = kwargs.get("mm_token_type_ids")
        call = {"kind": "pixels" if pixel_values is not None else "encoded", "rows": rows, "mm": mm is not None,
                "tokens": [], "left_padded": bool((mask[:, 0] == 0).any())}
        self.calls.append(call)

        def fail(msg):
            self.failures.append(f"call {len(self.calls)} ({call['kind']}): {msg}")

        if pixel_values is not None:
            if grid is None or grid.shape[0] != rows:  # one image per prompt in these rows
                fail(f"image_grid_thw rows {None if grid is None else grid.shape[0]} != batch {rows}")
                return None
            if pixel_values.shape[0] != int(grid.prod(-1).sum()):
                fail(f"pixel_values rows {pixel_values.shape[0]} != patches {int(grid.prod(-1).sum())}")
            expected = [int(g.prod()) // self.merge**2 for g in grid]
        else:
            features = list(encoded.pooler_output)
            if len(features) != rows:
                fail(f"{len(features)} encoded images for {rows} prompts")
                return None
            expected = [int(f.shape[0]) for f in features]
        is_image = input_ids == self.image_token_id
        if mm is not None and mm.shape != input_ids.shape:
            fail(f"mm_token_type_ids shape {tuple(mm.shape)} != input_ids {tuple(input_ids.shape)}")
            mm = None
        for b in range(rows):
            attended = int((is_image[b] & (mask[b] == 1)).sum())
            call["tokens"].append(attended)
            if attended != expected[b] or int(is_image[b].sum()) != expected[b]:
                fail(f"sample {b}: {attended} attended image tokens ({int(is_image[b].sum())} in all), its image "
                     f"has {expected[b]} merged patches")
            if mm is not None and not torch.equal(mm[b] == 1, is_image[b]):
                fail(f"sample {b}: mm_token_type_ids mark {int((mm[b] == 1).sum())} positions, not the "
                     f"{int(is_image[b].sum())} image tokens")
        return None


def _checking_callback(checkers):
    from transformers import TrainerCallback

    class Hook(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            checker = _InputChecker(model)
            model.register_forward_pre_hook(checker, with_kwargs=True)
            checkers.append(checker)

    return Hook()


# prompts of different lengths and images of different sizes, so left padding and per-sample slicing matter
_QUERIES = [("cup", 112), ("the small red cup on the left side of the old wooden kitchen table", 168)]


@pytest.mark.slow
def test_image_inputs_reaching_the_model_match_each_prompt(tmp_path, tiny_models, offline):
    import datasets

    from segzero_tool.training import train as train_mod
    from segzero_tool.training.config import plan_for

    recipe = _tiny_recipe(tiny_models["reasoner"], tmp_path / "out", per_device_train_batch_size=4)
    ds = datasets.Dataset.from_list(_rows(_QUERIES))
    checkers: list[_InputChecker] = []
    trainer = train_mod.run_training(recipe, plan=plan_for(recipe, 1), use_cpu=True, train_dataset=ds,
                                     callbacks=[_checking_callback(checkers)])
    assert trainer.state.global_step == 1
    (checker,) = checkers
    assert not checker.failures, checker.failures
    calls = checker.calls
    assert {c["kind"] for c in calls} == {"pixels", "encoded"}, calls  # the loss pass and the generation prefill
    assert all(c["mm"] for c in calls), calls
    assert any(c["left_padded"] for c in calls), calls  # the prompts' lengths differ: padding was exercised
    assert {16, 36} <= {t for c in calls for t in c["tokens"]}, calls  # 112 px: 8x8 patches / 4; 168 px: 12x12 / 4


@pytest.mark.slow
def test_the_checker_catches_a_right_padded_processor(tmp_path, tiny_models, offline):
    """The regression test's own check: TRL's GRPOTrainer handed a right-padded processor (what #5785 was)
    passes image markers that miss the image tokens, and the checker sees it on the first forward that gets
    the processor's output (with transformers 5.24 the forward then also fails, in the rope index)."""
    import datasets
    from transformers import AutoProcessor
    from trl import GRPOTrainer

    from segzero_tool.training import train as train_mod
    from segzero_tool.training.config import plan_for
    from segzero_tool.training.rewards import get_reward_funcs

    recipe = _tiny_recipe(tiny_models["reasoner"], tmp_path / "out", per_device_train_batch_size=4)
    args = train_mod.build_grpo_config(recipe, plan_for(recipe, 1), use_cpu=True)
    right = AutoProcessor.from_pretrained(str(tiny_models["reasoner"]), padding_side="right")
    with train_mod.third_party_checkpointing_alias_silenced():  # as run_training builds and trains
        trainer = GRPOTrainer(model=recipe.model, reward_funcs=list(get_reward_funcs("visionreasoner")), args=args,
                              train_dataset=datasets.Dataset.from_list(_rows(_QUERIES)), processing_class=right)
        checker = _InputChecker(trainer.model)
        for model in (trainer.model, getattr(trainer, "ref_model", None)):
            if model is not None:
                model.register_forward_pre_hook(checker, with_kwargs=True)
        with contextlib.suppress(RuntimeError):  # the shape error of the rope index, after the checker has run
            trainer.train()
    assert any("mm_token_type_ids mark" in f or "image tokens" in f for f in checker.failures), checker.calls


# --- attention ---------------------------------------------------------------------------------------------


def test_attention_implementation_pick(monkeypatch):
    import torch

    from segzero_tool.training import train as train_mod
    from segzero_tool.training.config import load_recipe, plan_for

    recipe = load_recipe("lora-24gb")
    assert train_mod.pick_attn_implementation(recipe, use_cpu=True) == "sdpa"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    real = train_mod._missing
    monkeypatch.setattr(train_mod, "_missing", lambda m: False if m == "flash_attn" else real(m))
    assert train_mod.pick_attn_implementation(recipe) == "flash_attention_2"
    assert train_mod.pick_attn_implementation(recipe, use_cpu=True) == "sdpa"
    no_bf16 = load_recipe("lora-24gb", {"bf16": False})
    assert train_mod.pick_attn_implementation(no_bf16) == "sdpa"
    forced = load_recipe("lora-24gb", {"attn_implementation": "eager"})
    assert train_mod.pick_attn_implementation(forced) == "eager"
    monkeypatch.setattr(train_mod, "_missing", lambda m: True if m == "flash_attn" else real(m))
    assert train_mod.pick_attn_implementation(recipe) == "sdpa"
    recipe = load_recipe("lora-24gb", {"bf16": False})
    args = train_mod.build_grpo_config(recipe, plan_for(recipe, 1), use_cpu=True)
    assert args.model_init_kwargs["attn_implementation"] == "sdpa"
