"""Building training sets from masks: grouping by image, resuming, the `segzero-train build-dataset` command,
and `--dataset file.jsonl` taken directly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("scipy")

from segzero_tool.training import build_data as B  # noqa: E402
from segzero_tool.training import data as D  # noqa: E402
from segzero_tool.training import rewards as R  # noqa: E402


def _scene(folder: Path) -> Path:
    """Two pictures: a.jpg with a red and a blue box (three lines: the red box twice, in other words) and
    b.png with one box; masks as PNG files, one as RLE. Returns the JSONL."""
    from segzero_tool.masks import rle_encode

    folder.mkdir(parents=True, exist_ok=True)
    img = np.zeros((200, 300, 3), np.uint8)
    img[20:80, 30:120] = (200, 0, 0)
    img[100:180, 150:280] = (0, 0, 200)
    Image.fromarray(img).save(folder / "a.jpg")
    Image.fromarray(np.ascontiguousarray(img[:, ::-1])).save(folder / "b.png")
    red = np.zeros((200, 300), bool)
    red[20:80, 30:120] = True
    blue = np.zeros((200, 300), bool)
    blue[100:180, 150:280] = True
    Image.fromarray(red.astype(np.uint8) * 255).save(folder / "red.png")
    Image.fromarray(blue.astype(np.uint8) * 255).save(folder / "blue.png")
    rle = rle_encode(blue[:, ::-1].copy())
    lines = [
        {"id": "r1", "image": "a.jpg", "query": "The red box.", "mask": "red.png"},
        {"id": "b1", "image": "a.jpg", "query": "the blue box?", "mask": "blue.png"},
        {"id": "r2", "image": "a.jpg", "query": "the thing at the top left", "mask": "red.png"},
        {"id": "x1", "image": "b.png", "query": "the box on the left", "mask": {"size": rle["size"],
                                                                                  "counts": rle["counts"]}},
    ]
    path = folder / "masks.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.fixture
def scene(tmp_path):
    return _scene(tmp_path / "src")


def _rows(folder: Path) -> list[dict]:
    return list(datasets.load_from_disk(str(folder))["train"])


def test_group_by_image_makes_one_multi_object_row_per_picture(scene, tmp_path):
    report = B.BuildReport()
    out = B.build_training_dataset(scene, tmp_path / "vr", group_by_image=True, progress=False, report=report)
    rows = _rows(out)
    assert [r["id"] for r in rows] == ["r1_b1", "x1"]
    assert rows[0]["problem"] == "'the red box' and 'the blue box'"  # the repeated red box keeps its first words
    objs = D.parse_visionreasoner_solution(rows[0]["solution"])
    assert len(objs) == 2
    assert objs[0]["bbox_2d"] == [int(30 * 2.8 + 0.5), int(20 * 4.2 + 0.5), int(119 * 2.8 + 0.5), int(79 * 4.2 + 0.5)]
    assert (rows[0]["img_width"], rows[0]["img_height"]) == (300, 200)
    # the mask column is the union of the row's objects: every point of the ground truth lies inside it
    text = f"<think>x</think><answer>{rows[0]['solution']}</answer>"
    assert R.mask_point_reward([text], mask=[rows[0]["mask"]]) == [1.0]
    assert sum(f([text], solution=[rows[0]["solution"]])[0] for f in R.VISIONREASONER_REWARDS) == 7.0
    assert (report.rows, report.objects, report.samples, report.duplicate_expressions) == (2, 3, 4, 1)
    built = json.loads((out / "build.json").read_text())
    assert built["settings"]["group_by_image"] is True and built["counts"]["objects"] == 3
    # without grouping: one row per line, the repeated expression included
    flat = _rows(B.build_training_dataset(scene, tmp_path / "flat", progress=False))
    assert [r["id"] for r in flat] == ["r1", "b1", "r2", "x1"]
    assert flat[2]["problem"] == "'the thing at the top left'"


def test_grouping_needs_the_multi_object_format(scene, tmp_path):
    with pytest.raises(D.TrainingDataError, match="multi-object"):
        B.build_training_dataset(scene, tmp_path / "s", kind="segzero", group_by_image=True, progress=False)
    with pytest.raises(D.TrainingDataError, match="frame_size"):
        B.build_training_dataset(scene, tmp_path / "s", frame_size=0, progress=False)
    assert not (tmp_path / "s").exists()


def test_group_samples_keys():
    class S:
        def __init__(self, id, image, image_id=None):
            self.id, self.image, self.image_id = id, image, image_id

    samples = [S("a", "x.jpg"), S("b", np.zeros(1), "7"), S("c", "./x.jpg"), S("d", np.zeros(1), "7"), S("e", None)]
    assert B.group_samples(samples, by_image=True) == [[0, 2], [1, 3], [4]]
    assert B.group_samples(samples, by_image=False) == [[0], [1], [2], [3], [4]]


def test_an_interrupted_build_resumes_and_matches_an_uninterrupted_one(scene, tmp_path):
    whole = _rows(B.build_training_dataset(scene, tmp_path / "whole", shard_size=1, progress=False))
    calls = {"n": 0}

    def sam_then_crash(image, box, point):  # accepts every object, then the "machine" dies on the 3rd
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        mask = np.zeros(image.shape[:2], bool)
        mask[box[1]:box[3] + 1, box[0]:box[2] + 1] = True
        return mask

    out = tmp_path / "part"
    with pytest.raises(KeyboardInterrupt):
        B.build_training_dataset(scene, out, shard_size=1, progress=False, sam_filter=sam_then_crash,
                                 sam_filter_name="box-sam")
    assert not out.exists()
    state = json.loads((tmp_path / "part.partial" / "progress.json").read_text())
    assert state["groups_done"] == 2 and len(state["shards"]) == 2
    # other settings: refused, with what changed
    with pytest.raises(D.TrainingDataError, match="other settings.*group_by_image"):
        B.build_training_dataset(scene, out, shard_size=1, progress=False, sam_filter=sam_then_crash,
                                 sam_filter_name="box-sam", group_by_image=True)
    report = B.BuildReport()
    B.build_training_dataset(scene, out, shard_size=1, progress=False, sam_filter=sam_then_crash,
                             sam_filter_name="box-sam", report=report)
    assert report.resumed_groups == 2 and calls["n"] == 5  # only the two remaining samples were read again
    assert not (tmp_path / "part.partial").exists()
    resumed = _rows(out)
    assert [(r["id"], r["problem"], r["solution"], r["mask"]) for r in resumed] == \
           [(r["id"], r["problem"], r["solution"], r["mask"]) for r in whole]
    assert [np.asarray(r["image"]).tobytes() for r in resumed] == [np.asarray(r["image"]).tobytes() for r in whole]
    assert report.rows == 4 and report.samples == 4


def test_restart_and_a_broken_partial_build(scene, tmp_path):
    partial = tmp_path / "o.partial"
    partial.mkdir()
    (partial / "progress.json").write_text("{not json")
    with pytest.raises(D.TrainingDataError, match="unreadable partial build.*--restart"):
        B.build_training_dataset(scene, tmp_path / "o", progress=False)
    out = B.build_training_dataset(scene, tmp_path / "o", progress=False, restart=True)
    assert len(_rows(out)) == 4 and not partial.exists()


def test_build_training_rows_in_memory(scene):
    rows, report = B.build_training_rows(scene, kind="segzero", progress=False, limit=2)
    assert rows["id"] == ["r1", "b1"] and report.rows == 2
    assert rows[0]["problem"] == "The red box."
    assert D.parse_segzero_solution(rows[0]["solution"])[0] == [84, 84, 333, 332]


# --- --dataset file.jsonl ---------------------------------------------------------------------------------


def test_load_training_dataset_takes_the_evaluation_jsonl(scene):
    rows = D.load_training_dataset(scene, frame_size=840)
    assert len(rows) == 4 and "mask" in rows.column_names
    assert rows[0]["problem"] == "'the red box'"
    assert rows[0]["prompt"][0]["content"][1]["text"].startswith("\nPlease find")
    seg = D.load_training_dataset(scene, kind="segzero", limit=1, frame_size=840)
    assert len(seg) == 1 and seg[0]["solution"].startswith("<box>")


def test_load_training_dataset_takes_jsonl_rows_and_keeps_their_bytes(tmp_path):
    import io

    frame = Image.fromarray(np.random.default_rng(0).integers(0, 255, (840, 840, 3), dtype=np.uint8))
    buf = io.BytesIO()
    frame.save(buf, format="JPEG", quality=95)
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "f.jpg").write_bytes(buf.getvalue())
    Image.new("RGB", (30, 20)).save(tmp_path / "imgs" / "small.png")
    sol = json.dumps([{"bbox_2d": [1, 2, 30, 40], "point_2d": [5, 6]}])
    lines = [{"problem": "'a'", "solution": sol, "image": "imgs/f.jpg"},
             {"problem": "'b'", "solution": sol, "image": str(tmp_path / "imgs" / "small.png")}]
    path = tmp_path / "rows.jsonl"
    path.write_text("# my rows\n" + "\n".join(json.dumps(x) for x in lines) + "\n\n")
    rows = D.load_training_dataset(path)
    assert len(rows) == 2 and set(rows.column_names) == {"problem", "solution", "image", "prompt"}
    raw = rows.cast_column("image", datasets.Image(decode=False))
    assert raw[0]["image"]["bytes"] == buf.getvalue()  # stored as it was, not re-encoded
    assert rows[1]["image"].size == (840, 840)


@pytest.mark.parametrize(("content", "words"), [
    ('{"problem": "a", "solution": "[]"}\n', "missing image"),
    ('{"problem": "a", "solution": "[]", "image": "nope.jpg"}\n', "cannot be read"),
    ('{"problem": 3, "solution": "[]", "image": "x.jpg"}\n', "non-empty strings"),
    ('{"foo": 1}\n', "training rows"),
    ("[1, 2]\n", "JSON object"),
    ('{"problem": "a", "solution": "[]", "image": "x.jpg"\n', "not JSON"),
    ("\n# only a comment\n", "no rows"),
    ('{"image": "nope.jpg", "query": "q", "mask": "m.png"}\n', "does not exist"),
])
def test_bad_jsonl_sources_are_one_line_errors(tmp_path, content, words):
    from segzero_tool.eval.samples import DatasetError

    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(DatasetError, match=words) as info:
        D.load_training_dataset(path)
    assert "\n" not in str(info.value)


# --- the command, as a user runs it -------------------------------------------------------------------------


def _cli(*args, cwd):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "segzero_tool.training", "build-dataset", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300, env=env)


def test_build_dataset_command(scene, tmp_path):
    done = _cli(str(scene), "built", "--group-by-image", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "wrote built: 2 row(s), 3 object(s) from 4 sample(s)" in done.stdout
    assert "1 repeated expression(s) of one object" in done.stdout
    assert "segzero-train --recipe lora-24gb --dataset built" in done.stdout
    assert "building training rows" in done.stderr and "2/2" in done.stderr  # the progress bar
    assert "Saving the dataset" not in done.stderr
    assert len(_rows(tmp_path / "built")) == 2
    # the folder it wrote is a training set
    assert len(D.load_training_dataset(tmp_path / "built")) == 2


@pytest.mark.parametrize(("args", "words"), [
    (["missing.jsonl", "o"], "no such file or folder"),
    (["src/ReasonSeg", "o"], "no such file or folder"),  # ./src exists: a typo, never a hub id
    (["{scene}", "o", "--kind", "segzero", "--group-by-image"], "multi-object format"),
    (["{scene}", "o", "--limit", "0"], "--limit must be at least 1"),
    (["{scene}", "o", "--frame-size", "-5"], "frame_size"),
    (["{scene}", "o", "--shard-size", "0"], "--shard-size"),
    (["{scene}", "o", "--kind", "other"], "invalid choice"),
    (["{scene}", "{scene}"], "already exists"),
    (["{scene}", "o", "--sam-filter", "{tmp}/no-model"], "segzero-train build-dataset: error:"),
])
def test_build_dataset_command_errors_are_one_line(scene, tmp_path, args, words):
    args = [a.format(scene=scene, tmp=tmp_path) for a in args]
    done = _cli(*args, "-q", cwd=tmp_path)
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = [x for x in done.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and words in lines[0], done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "o").exists()


def test_segzero_train_help_names_the_builder(capsys):
    from segzero_tool.training import train as T

    with pytest.raises(SystemExit):
        T.main(["--help"])
    assert "segzero-train build-dataset SOURCE OUT" in " ".join(capsys.readouterr().out.split())


@pytest.mark.slow
def test_train_one_cpu_step_on_a_masks_jsonl(scene, tmp_path, tiny_models, capsys):
    """`segzero-train --dataset masks.jsonl` as a user runs it: the evaluation JSONL is turned into rows and
    one CPU step trains on them."""
    pytest.importorskip("trl")
    import yaml

    from segzero_tool.training import train as T

    recipe = {
        "model": str(tiny_models["reasoner"]), "output_dir": str(tmp_path / "run"), "rewards": "visionreasoner",
        "frame_size": 112, "num_generations": 2, "prompts_per_step": 2, "per_device_train_batch_size": 2,
        "max_steps": 1, "save_steps": 100, "max_completion_length": 8, "report_to": "none",
        "gradient_checkpointing": False, "bf16": False, "min_pixels": None, "max_pixels": None,
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert T.main(["--recipe", str(path), "--dataset", str(scene), "--cpu"]) == 0
    assert (tmp_path / "run" / "final" / "config.json").is_file()


def test_build_from_a_refcoco_folder_grouped_by_image(tmp_path):
    """RefCOCO in LISA's refer_seg layout, val split: image 1 holds refs 1 and 2, image 2 ref 3. Grouped rows
    keep each object's first sentence (every ref has two: the second is the same mask again)."""
    from segzero_tool.eval.datasets import load_eval_dataset
    from segzero_tool.testing.synthetic import write_refer_folder

    folder = write_refer_folder(tmp_path / "data")
    samples = list(load_eval_dataset(folder, split="val"))
    report = B.BuildReport()
    out = B.build_training_dataset(folder, tmp_path / "vr", split="val", group_by_image=True, progress=False,
                                   report=report)
    rows = _rows(out)
    assert len(rows) == 2 and report.samples == len(samples) == 6 and report.duplicate_expressions == 3
    first = {s.id.split("_")[0]: s.query for s in reversed(samples)}  # ref id -> its first sentence
    assert rows[0]["problem"] == " and ".join(
        "'" + first[r].strip().strip(".?!").lower() + "'" for r in ("1", "2"))
    assert len(D.parse_visionreasoner_solution(rows[0]["solution"])) == 2
    assert (rows[0]["img_width"], rows[0]["img_height"]) == (64, 48)
    # the box of ref 1's rectangle polygon (x 4..30, y 6..40), in the 840 frame
    box = D.parse_visionreasoner_solution(rows[0]["solution"])[0]["bbox_2d"]
    assert abs(box[0] - 4 * 840 / 64) <= 14 and abs(box[3] - 40 * 840 / 48) <= 18


@pytest.mark.slow
def test_sam_filter_from_a_model_folder(scene, tmp_path, tiny_models, capsys):
    """`--sam-filter FOLDER` loads the segmenter through the public backends and asks it once per object."""
    from segzero_tool.training import build_cli

    code = build_cli.main([str(scene), str(tmp_path / "f"), "--sam-filter", str(tiny_models["segmenter"]),
                           "--device", "cpu", "-q"])
    out, err = capsys.readouterr()
    # random weights: the tiny SAM2 draws nothing like the ground truth, so every object is rejected
    assert code == 2 and "4 object(s) rejected by the SAM filter" in err, (out, err)
    assert not (tmp_path / "f").exists()


def test_workers_build_the_same_rows_and_resume_across_worker_counts(scene, tmp_path):
    serial = _rows(B.build_training_dataset(scene, tmp_path / "one", progress=False))
    report = B.BuildReport()
    parallel = _rows(B.build_training_dataset(scene, tmp_path / "two", progress=False, workers=2, report=report))
    assert [(r["id"], r["solution"], r["mask"]) for r in parallel] == [(r["id"], r["solution"], r["mask"]) for r in serial]
    assert (report.rows, report.samples) == (4, 4)
    with pytest.raises(D.TrainingDataError, match="workers must be a positive integer"):
        B.build_training_dataset(scene, tmp_path / "x", workers=0, progress=False)
    with pytest.raises(D.TrainingDataError, match="--workers 1"):
        B.build_training_dataset(scene, tmp_path / "x", workers=2, sam_filter=lambda *a: None, progress=False)


def test_a_row_id_names_its_first_three_samples(tmp_path):
    img = np.full((40, 80, 3), 128, np.uint8)
    Image.fromarray(img).save(tmp_path / "p.png")
    lines = []
    for k in range(4):
        m = np.zeros((40, 80), np.uint8)
        m[5:30, k * 20 + 2:k * 20 + 15] = 255
        Image.fromarray(m).save(tmp_path / f"m{k}.png")
        lines.append(json.dumps({"id": f"a{k}", "image": "p.png", "query": f"part {k}", "mask": f"m{k}.png"}))
    (tmp_path / "s.jsonl").write_text("\n".join(lines))
    rows = _rows(B.build_training_dataset(tmp_path / "s.jsonl", tmp_path / "o", group_by_image=True, progress=False))
    assert [r["id"] for r in rows] == ["a0_a1_a2"]
    assert rows[0]["problem"] == "'part 0' and 'part 1' and 'part 2' and 'part 3'"
    assert len(D.parse_visionreasoner_solution(rows[0]["solution"])) == 4
