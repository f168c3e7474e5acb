"""Every shipped recipe fits the launches its documentation gives, checked through ``segzero-train --dry-run`` (the
CLI's own code path) with the environment ``accelerate launch`` would set for the named accelerate config; the
matrix in training/README.md ("The shipped recipes on their launches") is what the dry run says; and the one
documented non-fitting combination (ZeRO-2 with colocated vLLM) is exit 2 naming ZeRO-3 / FSDP."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from segzero_tool.testing.qwen_configs import SIZES, qwen2_5_vl_config
from segzero_tool.training import memory_plan
from segzero_tool.training import train as train_mod

REPO = Path(__file__).resolve().parents[2]
ACCELERATE = REPO / "training" / "accelerate"
TRAINING_README = (REPO / "training" / "README.md").read_text(encoding="utf-8")

@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Folders holding only Qwen2.5-VL-7B-Instruct's / -3B-Instruct's config.json (published dimensions, no
    weights), by recipe model size."""
    out = {}
    for size in SIZES:
        folder = tmp_path_factory.mktemp(f"qwen-{size}-config")
        qwen2_5_vl_config(size).save_pretrained(folder)
        out[size] = folder
    return out


@pytest.fixture(scope="module")
def datasets_on_disk(tmp_path_factory):
    """Two rows of each dataset kind, saved to disk (the dry run reads the first rows)."""
    import io

    import datasets
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (840, 840), (90, 120, 150)).save(buf, format="JPEG")
    solutions = {"visionreasoner": json.dumps([{"bbox_2d": [10, 20, 300, 400], "point_2d": [100, 200]}]),
                 "segzero": "<box>(10,10),(100,100)</box><points>(30,30),(60,60)</points>"}
    out = {}
    for kind, solution in solutions.items():
        folder = tmp_path_factory.mktemp(f"rows-{kind}")
        datasets.Dataset.from_dict(
            {"problem": ["the cup", "the spoon"], "solution": [solution, solution],
             "image": [{"bytes": buf.getvalue(), "path": None}] * 2},
            features=datasets.Features({"problem": datasets.Value("string"), "solution": datasets.Value("string"),
                                        "image": datasets.Image()})).save_to_disk(str(folder))
        out[kind] = folder
    return out


@pytest.fixture(autouse=True)
def _count_once(monkeypatch):
    """The meta-device parameter count of each config, once (the dry run builds the model for every call)."""
    cache: dict[str, int] = {}
    real = memory_plan.count_parameters

    def cached(config):
        key = config.to_json_string()
        if key not in cache:
            cache[key] = real(config)
        return cache[key]

    monkeypatch.setattr(memory_plan, "count_parameters", cached)


def launch_env(config_file: str) -> dict[str, str]:
    """What ``accelerate launch --config_file training/accelerate/<config_file>`` exports to each process that the
    dry run reads: the world size and the sharding."""
    config = yaml.safe_load((ACCELERATE / config_file).read_text(encoding="utf-8"))
    env = {"WORLD_SIZE": str(config["num_processes"])}
    if config["distributed_type"] == "DEEPSPEED":
        env |= {"ACCELERATE_USE_DEEPSPEED": "true",
                "ACCELERATE_DEEPSPEED_ZERO_STAGE": str(config["deepspeed_config"]["zero_stage"])}
    elif config["distributed_type"] == "FSDP":
        env["ACCELERATE_USE_FSDP"] = "true"
    return env


def dry(capsys, monkeypatch, models, datasets_on_disk, recipe: str, config_file: str | None, gpu_gib: float,
        *flags: str) -> tuple[int, float, str, str]:
    """``segzero-train --recipe RECIPE FLAGS --dry-run --gpu-memory GPU_GIB`` as launched with ``config_file``
    (None: a plain 1-process run); returns the exit status, the estimated peak (GiB), stdout and stderr."""
    from segzero_tool.training.config import load_recipe

    for key in ("WORLD_SIZE", "ACCELERATE_USE_DEEPSPEED", "ACCELERATE_DEEPSPEED_ZERO_STAGE", "ACCELERATE_USE_FSDP"):
        monkeypatch.delenv(key, raising=False)
    for key, value in (launch_env(config_file) if config_file else {}).items():
        monkeypatch.setenv(key, value)
    shipped = load_recipe(recipe)
    size = "3b" if "3B" in shipped.model else "7b"
    capsys.readouterr()
    code = train_mod.main(["--recipe", recipe, *flags, "--model", str(models[size]), "--dataset",
                           str(datasets_on_disk[shipped.dataset_kind]), "--dry-run", "--gpu-memory", str(gpu_gib)])
    out, err = capsys.readouterr()
    peak = re.search(r"= peak ([\d.]+) GiB", out)
    return code, float(peak.group(1)) if peak else float("nan"), out, err


def _documented_launches() -> set[tuple[str, str | None, bool]]:
    """(recipe, accelerate config or None, --use-vllm) of every launch line in the recipes' and accelerate configs'
    comments and the two READMEs (continuation lines joined)."""
    sources = [*sorted((REPO / "training" / "recipes").glob("*.yaml")), *sorted(ACCELERATE.glob("*.yaml")),
               REPO / "training" / "README.md", REPO / "README.md"]
    found = set()
    for path in sources:
        text = re.sub(r"\\\n[#\s]*", " ", path.read_text(encoding="utf-8"))
        for line in text.splitlines():
            m = re.search(r"accelerate launch --config_file training/accelerate/([\w-]+\.yaml)\b.*?--recipe ([\w-]+)"
                          r"(.*)", line)
            if m:
                found.add((m.group(2), m.group(1), "--use-vllm" in m.group(3)))
                continue
            m = re.search(r"segzero-train --recipe ([\w-]+)(.*)", line)
            if m and "--dry-run" not in line and "--resume" not in line and m.group(1) in _RECIPES:
                found.add((m.group(1), None, "--use-vllm" in m.group(2)))
    return found


_RECIPES = ("segzero-7b", "visionreasoner-7b", "lora-24gb")


def test_the_launch_lines_are_found():
    launches = _documented_launches()
    for recipe in ("segzero-7b", "visionreasoner-7b"):
        assert (recipe, "zero3.yaml", True) in launches and (recipe, "fsdp.yaml", True) in launches
        assert (recipe, "zero2.yaml", False) in launches
        assert (recipe, "zero2.yaml", True) not in launches  # ZeRO-2 + colocated vLLM does not fit 80 GB
    assert ("visionreasoner-7b", "multinode-zero3.yaml", True) in launches
    assert ("lora-24gb", None, False) in launches


@pytest.mark.parametrize("launch", sorted(_documented_launches(), key=str), ids=str)
def test_every_documented_launch_fits(launch, capsys, monkeypatch, models, datasets_on_disk):
    """The 7B recipes on 80 GB GPUs (8 processes, or 16 for multinode-zero3.yaml); lora-24gb on one 24 GB GPU,
    with --use-vllm on 48 GB (its comment)."""
    recipe, config_file, vllm = launch
    gpu = 80 if config_file else (48 if vllm else 24)
    code, peak, out, err = dry(capsys, monkeypatch, models, datasets_on_disk, recipe, config_file, gpu,
                               *(["--use-vllm"] if vllm else []))
    assert code == 0, (launch, out, err)
    assert "fits:" in out and peak <= 0.9 * gpu, (launch, peak)  # 10% to spare: the estimate is an estimate


def _readme_matrix() -> list[tuple[str, str, bool, list[tuple[float, bool]]]]:
    rows = []
    for line in TRAINING_README.splitlines():
        m = re.match(r"\| `([\w-]+)` \| `([\w-]+\.yaml)` \| (vLLM colocate [\d.]+|generate) \|(.*)\|$", line)
        if m:
            cells = [c.strip() for c in m.group(4).split("|")]
            rows.append((m.group(1), m.group(2), m.group(3) != "generate",
                         [(float(c.split()[0]), c.endswith("fits")) for c in cells]))
    return rows


def test_the_readme_matrix_is_what_the_dry_run_says(capsys, monkeypatch, models, datasets_on_disk):
    from segzero_tool.training.config import load_recipe

    rows = _readme_matrix()
    assert len(rows) == 12  # 2 recipes x (zero3, fsdp, zero2) x (vLLM, generate)
    for recipe, config_file, vllm, cells in rows:
        if vllm:
            assert f"vLLM colocate {load_recipe(recipe).vllm_gpu_memory_utilization}" in TRAINING_README
        for gpu, (documented_peak, documented_fit) in zip((80, 48, 40), cells, strict=True):
            code, peak, out, err = dry(capsys, monkeypatch, models, datasets_on_disk, recipe, config_file, gpu,
                                       *(["--use-vllm"] if vllm else []))
            where = (recipe, config_file, vllm, gpu)
            assert peak == pytest.approx(documented_peak, abs=0.05), (where, peak)
            assert code == (0 if documented_fit else 2), (where, out, err)


@pytest.mark.parametrize("recipe", ["segzero-7b", "visionreasoner-7b"])
def test_zero2_with_colocated_vllm_does_not_fit_and_names_zero3(recipe, capsys, monkeypatch, models,
                                                               datasets_on_disk):
    code, peak, out, err = dry(capsys, monkeypatch, models, datasets_on_disk, recipe, "zero2.yaml", 80, "--use-vllm")
    assert code == 2 and peak > 80 and "sharding: zero2 over 8" in out
    assert "does not fit 80 GiB" in err and "ZeRO-3 (training/accelerate/zero3.yaml) or FSDP (fsdp.yaml)" in err
    assert "--vllm-mode server" in err
    assert "vllm_gpu_memory_utilization" not in err  # no share small enough fits and still holds vLLM's weights
    # the fix it names fits
    code, _, _, _ = dry(capsys, monkeypatch, models, datasets_on_disk, recipe, "zero3.yaml", 80, "--use-vllm")
    assert code == 0


def test_a_vllm_share_too_small_for_vllm_itself_is_refused(capsys, monkeypatch, models, datasets_on_disk):
    """lora-24gb with --use-vllm on 24 GB: the memory sum fits, but 0.3 x 24 GiB cannot hold vLLM's own copy of the
    3B (7 GiB) and its KV cache, so vLLM would not start."""
    code, _, out, err = dry(capsys, monkeypatch, models, datasets_on_disk, "lora-24gb", None, 24, "--use-vllm")
    assert code == 2 and "vLLM needs inside its share" in out
    # no share both holds vLLM and fits 24 GB: only vLLM on other GPUs
    assert "vLLM would not start" in err and "--vllm-mode server" in err and "vllm_gpu_memory_utilization" not in err
    # on 32 GB a larger share does both (0.3 x 32 = 9.6 GiB is still too small)
    code, _, out, err = dry(capsys, monkeypatch, models, datasets_on_disk, "lora-24gb", None, 32, "--use-vllm")
    assert code == 2 and "vllm_gpu_memory_utilization: 0.4 in the recipe" in err
    code, _, _, _ = dry(capsys, monkeypatch, models, datasets_on_disk, "lora-24gb", None, 48, "--use-vllm")
    assert code == 0


def test_the_recipe_comments_match_the_dry_run(capsys, monkeypatch, models, datasets_on_disk):
    """The numbers each 7B recipe's comment quotes for ZeRO-3 + vLLM at 80 GB are the dry run's."""
    for recipe in ("segzero-7b", "visionreasoner-7b"):
        text = (REPO / "training" / "recipes" / f"{recipe}.yaml").read_text(encoding="utf-8")
        quoted = float(re.search(r"ZeRO-3 \+ vLLM ([\d.]+) GiB", text).group(1))
        _, peak, _, _ = dry(capsys, monkeypatch, models, datasets_on_disk, recipe, "zero3.yaml", 80, "--use-vllm")
        assert peak == pytest.approx(quoted, abs=0.05), recipe
