"""``segzero eval``: a full run with the oracle backend and the tiny SAM2, resume, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from eval_oracle import oracle_answers, write_oracle_folder

from segzero_tool.cli import main
from segzero_tool.testing.synthetic import write_jsonl, write_lisa

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def cli_setup(tmp_path, synthetic, tiny_models):
    data = write_jsonl(synthetic, tmp_path / "data")
    oracle = write_oracle_folder(tmp_path / "oracle", oracle_answers(synthetic, garbage=("syn002",)))
    models = ["--reasoner-backend", "eval_oracle:OracleReasoner", "--reasoner", str(oracle),
              "--segmenter", str(tiny_models["segmenter"]), "--device", "cpu"]
    return data, models


def test_cli_eval_writes_everything_and_resumes(tmp_path, cli_setup, capsys):
    data, models = cli_setup
    run = tmp_path / "run"
    rc = main(["eval", str(data), "--out", str(run), "--batch-size", "4", "--worst", "3", *models])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "overall" in out and "gIoU" in out and "cIoU" in out and "short queries" in out
    assert "empty union: skip" in out and "840x840" in out
    assert "dataset" in err and "loading models" in err
    for name in ("manifest.json", "samples.jsonl", "results.json", "results.md", "worst.png", "worst.html"):
        assert (run / name).exists(), name
    data_json = json.loads((run / "results.json").read_text())
    assert data_json["summary"]["overall"]["samples"] == 10 and len(data_json["worst"]) == 3
    assert data_json["manifest"]["models"]["reasoner_backend"] == "eval_oracle:OracleReasoner"
    assert len((run / "samples.jsonl").read_text().splitlines()) == 10
    # the same command again: everything is read back, nothing recomputed or duplicated
    rc = main(["eval", str(data), "--out", str(run), "--batch-size", "4", "--worst", "3", *models])
    out2, err2 = capsys.readouterr()
    assert rc == 0 and "10 of 10 samples already done" in err2
    assert len((run / "samples.jsonl").read_text().splitlines()) == 10
    assert json.loads((run / "results.json").read_text())["summary"]["overall"]["giou"] == pytest.approx(
        data_json["summary"]["overall"]["giou"])
    # other settings: refused in one line (exit 2) before loading models; --force starts over
    rc = main(["eval", str(data), "--out", str(run), "--max-objects", "3", *models])
    err3 = capsys.readouterr().err
    assert rc == 2 and "max_objects: 50 then, 3 now" in err3
    assert err3.strip().splitlines()[-1].startswith("segzero: error:") and "Traceback" not in err3
    rc = main(["eval", str(data), "--out", str(run), "--max-objects", "3", "--limit", "2", "--force", "--worst", "0",
               *models])
    assert rc == 0 and len((run / "samples.jsonl").read_text().splitlines()) == 2
    assert list(run.glob("samples.jsonl.replaced-*"))


def test_cli_eval_lisa_folder_split_and_ignore_flag(tmp_path, synthetic, cli_setup, capsys):
    _, models = cli_setup
    root = tmp_path / "ReasonSeg"
    write_lisa(synthetic[:4], root, split="val")
    write_lisa(synthetic[4:6], root, split="test")
    rc = main(["eval", str(root), "--out", str(tmp_path / "r"), *models])
    assert rc == 9 and "choose one with --split (test, val)" in capsys.readouterr().err
    rc = main(["eval", str(root), "--split", "val", "--no-ignore-as-foreground", "--out", str(tmp_path / "r"),
               "--empty-union", "zero", *models])
    out = capsys.readouterr().out
    assert rc == 0 and "ignore regions: not foreground" in out and "empty union: zero" in out
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["dataset"]["ignore_as_foreground"] is False and manifest["dataset"]["split"] == "val"
    # the other rasterisation is a different dataset: refused before loading any model
    rc = main(["eval", str(root), "--split", "val", "--out", str(tmp_path / "r"), "--reasoner", "nowhere/x"])
    assert rc == 2 and "dataset.ignore_as_foreground: False then, True now" in capsys.readouterr().err


@pytest.mark.parametrize(("args", "code", "message"), [
    (["eval", "{tmp}/missing.jsonl"], 9, "no such file or folder"),
    (["eval", "{tmp}/missing_dir/"], 9, "no such file or folder"),
    (["eval", "{data}", "--batch-size", "0"], 2, "--batch-size must be positive"),
    (["eval", "{data}", "--limit", "-1"], 2, "--limit must be >= 0"),
])
def test_cli_eval_errors_are_one_line(tmp_path, synthetic, capsys, args, code, message):
    data = write_jsonl(synthetic[:2], tmp_path / "data")
    args = [a.replace("{tmp}", str(tmp_path)).replace("{data}", str(data)) for a in args]
    rc = main(args)
    err = capsys.readouterr().err
    assert rc == code and message in err and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("segzero: error:")


def test_cli_eval_unknown_hub_id_offline(tmp_path):
    pytest.importorskip("datasets")
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    proc = subprocess.run([sys.executable, "-m", "segzero_tool", "eval", "someorg/not-a-dataset",
                           "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert proc.returncode == 9, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("segzero: error: could not load dataset 'someorg/not-a-dataset' from the Hugging Face hub")
    assert "save_to_disk" in last and "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()


def test_cli_eval_checks_its_run_folder_before_loading_models(tmp_path, synthetic, capsys):
    data = write_jsonl(synthetic[:2], tmp_path / "data")
    afile = tmp_path / "a-file"
    afile.write_text("x")
    for out, message in ((afile, "is an existing file, not a folder"), (afile / "run", "is a file")):
        rc = main(["eval", str(data), "--out", str(out), "--reasoner", "nowhere/x"])
        err = capsys.readouterr().err
        assert rc == 2 and message in err and "loading" not in err and "Traceback" not in err
        assert err.strip().splitlines() == [err.strip().splitlines()[-1]]
        assert err.strip().startswith("segzero: error: --out")
    if os.geteuid() != 0:  # root may write anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            rc = main(["eval", str(data), "--out", str(ro / "run"), "--reasoner", "nowhere/x"])
            err = capsys.readouterr().err
            assert rc == 2 and "is not writable" in err and "loading" not in err
        finally:
            ro.chmod(0o700)


def test_cli_eval_runs_in_reference_mode_by_default_and_writes_it(tmp_path, cli_setup, capsys):
    data, models = cli_setup
    rc = main(["eval", str(data), "--out", str(tmp_path / "ref"), "--worst", "0", "--limit", "3", *models])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "in reference mode" in err and "compat: reference (" in out
    assert json.loads((tmp_path / "ref" / "results.json").read_text())["manifest"]["compat"] == "reference"
    assert "| compat | reference (" in (tmp_path / "ref" / "results.md").read_text()
    rc = main(["eval", str(data), "--out", str(tmp_path / "rep"), "--worst", "0", "--limit", "3", "--compat", "repair",
               *models])
    out = capsys.readouterr().out
    assert rc == 0 and "compat: repair (" in out
    assert json.loads((tmp_path / "rep" / "manifest.json").read_text())["compat"] == "repair"
    # another mode on the same folder: refused in one line before loading models
    rc = main(["eval", str(data), "--out", str(tmp_path / "ref"), "--compat", "repair", *models])
    err = capsys.readouterr().err
    assert rc == 2 and "compat: 'reference' then, 'repair' now" in err and "loading models" not in err


def test_cli_eval_bad_compat_is_one_line(tmp_path, synthetic):
    data = write_jsonl(synthetic[:2], tmp_path / "data")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SEGZERO_")}, "SEGZERO_COMPAT": "exact",
           "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    proc = subprocess.run([sys.executable, "-m", "segzero_tool", "eval", str(data), "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "segzero: error: environment: SEGZERO_COMPAT must be one of reference, repair, got 'exact'"]
    proc = subprocess.run([sys.executable, "-m", "segzero_tool", "eval", str(data), "--compat", "exact"],
                          capture_output=True, text=True, env={**env, "SEGZERO_COMPAT": "repair"}, timeout=120)
    assert proc.returncode == 2 and "--compat" in proc.stderr and "'exact'" in proc.stderr
