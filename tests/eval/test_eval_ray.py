"""``segzero eval --engine ray``: the same records and numbers as the local engine (Ray on this machine)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from eval_oracle import oracle_answers, write_oracle_folder

from segzero_tool.cli import main
from segzero_tool.eval.records import strip_timings
from segzero_tool.testing.synthetic import write_jsonl

EVAL_TESTS = Path(__file__).resolve().parent


def _samples(run: Path) -> list[dict]:
    recs = [strip_timings(json.loads(x)) for x in (run / "samples.jsonl").read_text().splitlines()]
    assert len({r["id"] for r in recs}) == len(recs)
    return sorted(recs, key=lambda r: r["index"])


def test_ray_flags_need_engine_ray(tmp_path, synthetic, capsys, no_loading):
    data = write_jsonl(synthetic, tmp_path / "data")
    rc = main(["eval", str(data), "--out", str(tmp_path / "run"), "--ray-reasoner-actors", "2"])
    err = capsys.readouterr().err
    assert rc == 2 and "--ray-reasoner-actors applies to --engine ray" in err and "Traceback" not in err


def test_eval_ray_equals_local(tmp_path, synthetic, tiny_models, capsys, monkeypatch):
    pytest.importorskip("ray")
    import ray

    data = write_jsonl(synthetic, tmp_path / "data")
    oracle = write_oracle_folder(tmp_path / "oracle", oracle_answers(synthetic, garbage=("syn002",)))
    models = ["--reasoner-backend", "eval_oracle:OracleReasoner", "--reasoner", str(oracle),
              "--segmenter", str(tiny_models["segmenter"]), "--device", "cpu", "--batch-size", "3", "--worst", "0"]
    assert main(["eval", str(data), "--out", str(tmp_path / "local"), *models]) == 0
    capsys.readouterr()
    # the Ray started by the command inherits this environment: the plugin module is importable on its workers
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(EVAL_TESTS), os.environ.get("PYTHONPATH", "")]))
    if ray.is_initialized():
        ray.shutdown()
    rc = main(["eval", str(data), "--out", str(tmp_path / "ray"), "--engine", "ray", "--ray-reasoner-actors", "2",
               "--ray-decode-cpus", "0.5", *models])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert not ray.is_initialized()  # started and shut down by the command
    assert _samples(tmp_path / "ray") == _samples(tmp_path / "local")
    results = {k: json.loads((tmp_path / k / "results.json").read_text()) for k in ("local", "ray")}
    summaries = {k: {group: {n: v for n, v in numbers.items() if n != "mean_latency_ms"}
                     for group, numbers in r["summary"].items()} for k, r in results.items()}
    assert summaries["ray"] == summaries["local"]  # every number but the latency
    overall = results["ray"]["summary"]["overall"]
    assert overall["samples"] == 10 and overall["giou"] == results["local"]["summary"]["overall"]["giou"]
    assert results["ray"]["manifest"]["models"] == results["local"]["manifest"]["models"]
    assert "gIoU" in out and "starting 2 pipeline actor(s) on Ray" in err and "loading models" not in err
