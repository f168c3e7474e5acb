"""The Ray engine: identical records to the local engine (Ray on this machine, 2 CPUs), kill-and-resume through the
CLI, the config computed without loading models, and the vLLM processor pieces (the processor itself needs vLLM and
a GPU: not run here)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from segzero_tool.batch.engine_local import LocalEngine  # noqa: E402
from segzero_tool.batch.engine_ray import (  # noqa: E402
    RayEngine,
    explode_chunk,
    outputs_of_rows,
    stage_config,
    vllm_postprocess,
    vllm_preprocess,
)
from segzero_tool.batch.job import run_batch  # noqa: E402
from segzero_tool.batch.stages import StageConfig, decode_row  # noqa: E402
from segzero_tool.settings import PipelineSettings  # noqa: E402

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent
ANSWER = ('<think>Two things.</think><answer>[{"bbox_2d": [168,126,588,672], "point_2d": [378,420]}, '
          '{"bbox_2d": [600,100,800,300], "point_2d": [700,200]}]</answer>')


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray for the module (2 CPUs; tests/ importable on the workers for the plugin)."""
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING",
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)])}})
    yield ray
    ray.shutdown()


def _script(folder: Path, answer: str = ANSWER) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "script.json").write_text(json.dumps([answer]))
    return folder


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A folder of 8 small PNGs (one corrupt) and a JSONL table (two queries on one image, a missing image)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("ray-batch")
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(7):
        w, h = (48 + 8 * i, 40 + 4 * i)
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(images / f"img{i}.png")
    (images / "broken.png").write_bytes(b"\x89PNG not really")
    table = root / "rows.jsonl"
    lines = [{"id": "a", "image": "images/img0.png", "query": "the red cup"},
             {"id": "b", "image": "images/img0.png", "query": "the blue cup"},
             {"id": "c", "image": "images/nowhere.png", "query": "anything"},
             {"id": "d", "image": "images/img3.png", "query": "the dog"}]
    table.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return {"root": root, "images": images, "table": table}


@pytest.fixture(scope="module")
def settings(tiny_models, data):
    return PipelineSettings(reasoner=str(_script(data["root"] / "scripted")), reasoner_backend="scripted:ScriptedReasoner",
                            segmenter=str(tiny_models["segmenter"]), device="cpu")


def _records(out: Path) -> list[dict]:
    lines = (out / "results.jsonl").read_text().splitlines()
    recs = [json.loads(x) for x in lines]
    assert len({r["id"] for r in recs}) == len(recs), "duplicate records"
    return sorted(recs, key=lambda r: r["index"])


def _coco(out: Path) -> dict:
    coco = json.loads((out / "coco.json").read_text())
    coco["info"].pop("date_created", None)
    return coco


def test_config_without_loading(settings, tiny_models, tmp_path, no_loading):
    # the scripted plugin and the tiny SAM2: what the pipeline would be built with (no model loads here)
    config = stage_config(settings)
    assert isinstance(config, StageConfig)
    assert config.prompt_format == "visionreasoner" and config.frame_size == 840


def test_config_equals_the_pipelines(settings, tiny_models):
    assert stage_config(settings) == StageConfig.of(settings.build_pipeline(with_verifier=False))
    tiny = PipelineSettings(reasoner=str(tiny_models["reasoner"]), segmenter=str(tiny_models["segmenter"]),
                            device="cpu", max_new_tokens=7, rounding="segzero", frame_size=112)
    assert stage_config(tiny) == StageConfig.of(tiny.build_pipeline(with_verifier=False))
    registered = PipelineSettings(reasoner="visionreasoner-7b", prompt_format="qwen3vl", compat="reference")
    config = stage_config(registered)
    assert (config.prompt_format, config.compat) == ("qwen3vl", "reference")


def test_ray_records_identical_to_local(ray_session, settings, data, tmp_path):
    pipe = settings.build_pipeline(with_verifier=False)
    models = {"reasoner": "m", "reasoner_backend": "b", "segmenter": "s", "segmenter_backend": "t"}
    engine = RayEngine(settings, models=models, reasoner_actors=2, segmenter_actors=2)
    assert engine.config == StageConfig.of(pipe)
    for name, source, query in (("folder", data["images"], "the thing"), ("table", data["table"], None)):
        local = run_batch(LocalEngine(pipe, models=models), source, tmp_path / f"local-{name}", query=query,
                          batch_size=3, png_masks=True, progress=False)
        remote = run_batch(engine, source, tmp_path / f"ray-{name}", query=query, batch_size=3, png_masks=True,
                           progress=False)
        assert remote.summary["engine"] == "ray" and remote.summary["complete"]
        assert remote.computed == local.computed == len(_records(tmp_path / f"local-{name}"))
        assert _records(tmp_path / f"ray-{name}") == _records(tmp_path / f"local-{name}")
        assert _coco(tmp_path / f"ray-{name}") == _coco(tmp_path / f"local-{name}")
        lm, rm = tmp_path / f"local-{name}" / "masks", tmp_path / f"ray-{name}" / "masks"
        names = sorted(p.name for p in lm.iterdir())
        assert names and names == sorted(p.name for p in rm.iterdir())
        assert all((lm / n).read_bytes() == (rm / n).read_bytes() for n in names)
        assert not (tmp_path / f"ray-{name}" / "shards").exists()
        types = {r["error_type"] for r in _records(tmp_path / f"ray-{name}")}
        assert types - {None} == ({"ImageLoadError"} if name == "folder" else {"missing_image"})
    engine.close()
    assert ray.is_initialized()  # started by the fixture, not by the engine: left running


def test_no_model_loads_on_the_driver_and_a_worker_load_error_arrives_typed(ray_session, settings, data, tmp_path,
                                                                             no_loading):
    """``no_loading`` makes any model load in this process (the driver) fail the test; the workers load theirs."""
    import dataclasses

    from slow_plugins import slow_folder

    from segzero_tool.errors import ModelLoadError

    job = run_batch(RayEngine(settings), data["table"], tmp_path / "ok", batch_size=2, progress=False)
    assert job.summary["complete"] and job.summary["ok"] == 3
    broken = dataclasses.replace(settings, reasoner_backend="slow_plugins:SlowLoadingReasoner",
                                 reasoner=str(slow_folder(tmp_path, ANSWER, fail_loads=100)))
    with pytest.raises(ModelLoadError, match="simulated load failure"):
        run_batch(RayEngine(broken), data["table"], tmp_path / "broken", batch_size=2, progress=False)


def test_kill_and_resume(settings, data, tmp_path):
    from slow_plugins import slow_folder

    folder = slow_folder(tmp_path, ANSWER, answer_s=0.6)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)])}
    cmd = [sys.executable, "-m", "segzero_tool", "batch", str(data["images"]), "--query", "the thing", "--out",
           str(out), "--engine", "ray", "--batch-size", "1", "--reasoner-backend", "slow_plugins:SlowLoadingReasoner",
           "--reasoner", str(folder), "--segmenter", settings.segmenter, "--device", "cpu", "--no-coco"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 120

    def written() -> int:
        n = sum(len(p.read_text().splitlines()) for p in (out / "shards").glob("*.jsonl")) if (out / "shards").is_dir() else 0
        return n + (len((out / "results.jsonl").read_text().splitlines()) if (out / "results.jsonl").exists() else 0)

    while written() < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()[1].decode()[-3000:]
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it started
    proc.wait()
    assert 2 <= written() < 8
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming" in again.stderr or "merged" in again.stderr
    whole = tmp_path / "whole"  # uninterrupted (the local engine: its records are the Ray engine's, as tested above)
    run_batch(settings.build_pipeline(with_verifier=False), data["images"], whole, query="the thing", batch_size=1,
              coco=False, progress=False)
    assert _records(out) == _records(whole)


def test_vllm_rows(settings, data):
    """The vLLM path's own pieces: rows for the processor, its pre/postprocess, and back to finish_rows' inputs."""
    import pickle

    from segzero_tool.batch.inputs import read_batch_input
    from segzero_tool.prompts import PromptFormat, build_prompt

    config = stage_config(settings)
    pipe = config.pipeline()
    rows = read_batch_input(data["table"]).rows
    item = {"chunk": 0, "decoded": pickle.dumps([decode_row(pipe, r) for r in rows])}
    exploded = explode_chunk(item)
    assert [r["pos"] for r in exploded] == [0, 1, 2, 3]
    pre = [vllm_preprocess(r) for r in exploded]
    first = pre[0]["messages"][0]
    assert first["role"] == "user" and first["content"][0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert first["content"][1]["text"] == build_prompt("the red cup", PromptFormat.VISIONREASONER)
    assert pre[0]["sampling_params"] == {"temperature": 0.0, "max_tokens": config.max_new_tokens}
    assert pre[2]["sampling_params"]["max_tokens"] == 1  # the missing image: a dummy request, its error record kept
    post = [vllm_postprocess({**p, "generated_text": ANSWER, "num_generated_tokens": 40}) for p in pre]
    decoded, outputs = outputs_of_rows(list(reversed(post)))
    assert [d.row.id for d in decoded] == ["a", "b", "c", "d"] and decoded[2].error is not None
    assert [o.text for o in outputs] == [ANSWER] * 3 and outputs[0].finish_reason == "stop"


def test_vllm_processor_config(settings):
    pytest.importorskip("ray.data.llm", exc_type=ImportError)
    from segzero_tool.batch.engine_ray import vllm_processor_config

    cfg = vllm_processor_config(settings, stage_config(settings), actors=2, batch_size=16)
    assert cfg.concurrency == 2 and cfg.batch_size == 16
