"""Choosing the self-check loop's verifier outside Python: ``PipelineSettings.verifier*`` (flags,
``SEGZERO_VERIFIER*`` variables, config files, validation), ``SegZeroPipeline.from_pretrained(verifier=
"<name|folder>", verifier_backend=..., verifier_kwargs=...)``, ``segzero segment --verify --verifier ...``
(the verifier's verdict decides), the openai backend's arguments reaching the verifier, and ``segzero-mcp``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_support import assert_one_line as _one_line
from cli_support import run_main as _main
from cli_support import scripted_segmenter_args as _seg
from scripted import BoxSegmenter, ScriptedReasoner

from segzero_tool.errors import BackendError, UnknownModelError
from segzero_tool.pipeline import SegZeroPipeline
from segzero_tool.reasoners.openai_compat import OpenAICompatReasoner
from segzero_tool.settings import PipelineSettings, SettingsError

REPO = Path(__file__).resolve().parents[1]
COFFEE = str(REPO / "examples" / "coffee.png")  # 600x400
TWO = ('<think>Two things.</think><answer>[{"bbox_2d": [168,126,588,672], "point_2d": [378,420]}, '
       '{"bbox_2d": [600,700,800,830], "point_2d": [700,760]}]</answer>')
KEEP_0 = '<think>ok</think><answer>{"keep": [0]}</answer>'
KEEP_1 = '<think>ok</think><answer>{"keep": [1]}</answer>'
KEEP_ALL = '<think>ok</think><answer>{"keep": [0, 1]}</answer>'
BIG = "Qwen/Qwen2.5-VL-72B-Instruct"
SCRIPTED = "scripted:ScriptedReasoner"
RECORDING = "test_verifier_settings:RecordingReasoner"


class RecordingReasoner(ScriptedReasoner):
    """A scripted reasoner (``folder/script.json``) that records how it was loaded."""

    loads: list[tuple[str, dict[str, Any]]] = []

    @classmethod
    def from_pretrained(cls, folder: str, **kwargs: Any) -> RecordingReasoner:
        cls.loads.append((folder, dict(kwargs)))
        obj = cls(json.loads((Path(folder) / "script.json").read_text()))
        obj.model_id = Path(folder).name
        return obj


@pytest.fixture(autouse=True)
def _clean(monkeypatch):
    RecordingReasoner.loads = []
    for name in PipelineSettings.field_names():
        monkeypatch.delenv(PipelineSettings.ENV_PREFIX + name.upper(), raising=False)


def _script(tmp_path: Path, name: str, *answers: str) -> str:
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    folder.joinpath("script.json").write_text(json.dumps(list(answers)))
    return str(folder)


def _image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (840, 840, 3), dtype=np.uint8)


# --- settings -------------------------------------------------------------------------------------


def test_defaults_none_and_the_three_sources(tmp_path):
    s = PipelineSettings()
    assert (s.verifier, s.verifier_backend, s.verifier_base_url, s.verifier_api_key_env,
            s.verifier_model_name) == (None,) * 5
    assert s.verifier_kwargs() == {}
    cfg = tmp_path / "segzero.toml"
    cfg.write_text(f'[segzero]\nverify = true\nverifier = "{BIG}"\nverifier_backend = "openai"\n'
                   'verifier_base_url = "http://file:8000/v1"\n')
    env = {"SEGZERO_VERIFIER_BASE_URL": "http://env:8000/v1", "SEGZERO_VERIFIER_API_KEY_ENV": "BIG_KEY"}
    s = PipelineSettings.resolve(config=cfg, environ=env, overrides={"verifier_model_name": "big"})
    assert s.verify is True and s.verifier == BIG and s.verifier_backend == "openai"
    assert s.verifier_base_url == "http://env:8000/v1"  # env > file
    assert s.verifier_kwargs() == {"base_url": "http://env:8000/v1", "api_key_env": "BIG_KEY", "model_name": "big"}
    s = PipelineSettings.resolve(config=cfg, environ=env, overrides={"verifier_base_url": "http://flag:8000/v1"})
    assert s.verifier_base_url == "http://flag:8000/v1"  # flags > env
    cfg_json = tmp_path / "segzero.json"
    cfg_json.write_text(json.dumps({"verifier": "qwen2.5-vl-7b"}))
    assert PipelineSettings.resolve(config=cfg_json, environ={}).verifier == "qwen2.5-vl-7b"


def test_layers_are_checked_together_not_one_by_one(tmp_path):
    # the file's backend and URL meet their verifier only in the flags
    cfg = tmp_path / "segzero.toml"
    cfg.write_text('verifier_backend = "openai"\nverifier_base_url = "http://gpu:8000/v1"\n')
    s = PipelineSettings.resolve(config=cfg, environ={}, overrides={"verifier": BIG})
    assert s.verifier_kwargs() == {"base_url": "http://gpu:8000/v1"}
    with pytest.raises(SettingsError, match="set without --verifier"):
        PipelineSettings.resolve(config=cfg, environ={})


@pytest.mark.parametrize("environ, overrides, message", [
    ({}, {"verifier_backend": "openai"},
     "--verifier-backend (SEGZERO_VERIFIER_BACKEND) is set without --verifier (the model to load as the "
     "verifier): add --verifier NAME|HUB_ID|FOLDER"),
    ({"SEGZERO_VERIFIER_BASE_URL": "http://x/v1", "SEGZERO_VERIFIER_MODEL_NAME": "m"}, {},
     "--verifier-base-url (SEGZERO_VERIFIER_BASE_URL), --verifier-model-name (SEGZERO_VERIFIER_MODEL_NAME) are "
     "set without --verifier"),
    ({}, {"verifier": "none"}, "--verifier 'none' is not a model: omit it to use the reasoner as the verifier"),
    ({"SEGZERO_VERIFIER": "None"}, {},
     "environment: SEGZERO_VERIFIER 'None' is not a model: omit it to use the reasoner"),
    ({}, {"verifier": "  "}, "--verifier is empty; omit it to use the reasoner as the verifier"),
    ({}, {"verifier": BIG, "verifier_backend": ""}, "--verifier-backend is empty"),
    ({}, {"verifier": BIG, "verifier_base_url": "http://gpu:8000/v1"},
     "--verifier-base-url (SEGZERO_VERIFIER_BASE_URL) is only for --verifier-backend openai (or a "
     "package.module:Class), not 'transformers'; add --verifier-backend openai"),
    ({}, {"verifier": BIG, "verifier_backend": "vllm", "verifier_api_key_env": "K"},
     "--verifier-api-key-env (SEGZERO_VERIFIER_API_KEY_ENV) is only for --verifier-backend openai"),
    ({}, {"verifier": BIG, "reasoner": "none"}, "--reasoner none loads no reasoner"),
])
def test_bad_combinations(environ, overrides, message):
    with pytest.raises(SettingsError) as info:
        PipelineSettings.resolve(environ=environ, overrides=overrides)
    assert message in str(info.value)


def test_bad_value_in_a_config_file_names_the_file(tmp_path):
    cfg = tmp_path / "segzero.toml"
    cfg.write_text('verifier = "none"\n')
    with pytest.raises(SettingsError, match=r"segzero.toml: verifier 'none' is not a model"):
        PipelineSettings.resolve(config=cfg, environ={})


def test_a_custom_backend_class_takes_the_remote_settings():
    s = PipelineSettings.resolve(environ={}, overrides={"verifier": "v", "verifier_backend": "my_pkg.mod:V",
                                                        "verifier_base_url": "http://x/v1"})
    assert s.verifier_kwargs() == {"base_url": "http://x/v1"}


def test_build_pipeline_passes_the_verifier(monkeypatch):
    seen: list[dict[str, Any]] = []

    def record(cls, reasoner=None, segmenter=None, **kwargs):
        seen.append(kwargs)
        return "pipe"

    monkeypatch.setattr(SegZeroPipeline, "from_pretrained", classmethod(record))
    s = PipelineSettings.resolve(environ={}, overrides={
        "verifier": f" {BIG} ", "verifier_backend": "openai", "verifier_base_url": "http://gpu:8000/v1",
        "verifier_model_name": BIG, "device": "cpu"})
    assert s.build_pipeline() == "pipe"
    assert seen[-1]["verifier"] == BIG and seen[-1]["verifier_backend"] == "openai"
    assert seen[-1]["verifier_kwargs"] == {"base_url": "http://gpu:8000/v1", "model_name": BIG}
    s.build_pipeline(with_verifier=False)
    assert not {"verifier", "verifier_backend", "verifier_kwargs"} & set(seen[-1])
    PipelineSettings().build_pipeline()
    assert "verifier" not in seen[-1]
    PipelineSettings(verifier="v").build_pipeline()
    assert seen[-1]["verifier_backend"] == "transformers" and "verifier_kwargs" not in seen[-1]


# --- from_pretrained ------------------------------------------------------------------------------


def test_from_pretrained_loads_a_verifier_folder(tmp_path, caplog):
    reasoner = _script(tmp_path, "reasoner", TWO)
    verifier = _script(tmp_path, "verifier", KEEP_1)
    with caplog.at_level("INFO", logger="segzero_tool"):
        pipe = SegZeroPipeline.from_pretrained(reasoner, BoxSegmenter(), reasoner_backend=RECORDING,
                                               verifier=verifier, verifier_backend=RECORDING,
                                               device="cpu", dtype="fp32")
    assert [folder for folder, _ in RecordingReasoner.loads] == [reasoner, verifier]  # reasoner first
    assert RecordingReasoner.loads[1][1] == {"device": "cpu", "dtype": "fp32"}  # the reasoner's
    assert pipe.verifier is not pipe.reasoner and pipe.verifier.answers == [KEEP_1]
    assert any(r.getMessage().startswith("loading verifier test_verifier_settings:RecordingReasoner")
               for r in caplog.records)
    res = pipe.segment(_image(), "q", verify=True)
    assert res.verification["status"] == "kept" and res.verification["kept"] == [1]
    assert res.verification["verifier"] == "verifier"
    assert len(pipe.reasoner.calls) == 1 and len(pipe.verifier.calls) == 1


def test_from_pretrained_verifier_device_follows_the_reasoner_device(tmp_path):
    verifier = _script(tmp_path, "verifier", KEEP_1)
    SegZeroPipeline.from_pretrained(ScriptedReasoner(TWO), BoxSegmenter(), device="cpu", reasoner_device="cuda:1",
                                    verifier=verifier, verifier_backend=RECORDING, verifier_kwargs={"extra": 1})
    assert RecordingReasoner.loads == [(verifier, {"device": "cuda:1", "dtype": "auto", "extra": 1})]


def test_from_pretrained_checks_the_verifier_before_loading(tmp_path):
    reasoner = _script(tmp_path, "reasoner", TWO)
    with pytest.raises(UnknownModelError, match="verifier: unknown reasoner 'no-such-verifier'"):
        SegZeroPipeline.from_pretrained(reasoner, BoxSegmenter(), reasoner_backend=RECORDING,
                                        verifier="no-such-verifier")
    with pytest.raises(BackendError):
        SegZeroPipeline.from_pretrained(reasoner, BoxSegmenter(), reasoner_backend=RECORDING,
                                        verifier=reasoner, verifier_backend="no_such_pkg.mod:Cls")
    assert RecordingReasoner.loads == []  # the reasoner was not loaded


def test_from_pretrained_refuses_bad_verifier_arguments():
    with pytest.raises(TypeError, match="verifier must be a Reasoner instance, a registry name"):
        SegZeroPipeline.from_pretrained(ScriptedReasoner(TWO), BoxSegmenter(), verifier=42)
    with pytest.raises(SettingsError, match="omit it to use the reasoner"):
        SegZeroPipeline.from_pretrained(ScriptedReasoner(TWO), BoxSegmenter(), verifier="none")
    with pytest.raises(SettingsError, match="not to a ready Reasoner"):
        SegZeroPipeline.from_pretrained(ScriptedReasoner(TWO), BoxSegmenter(), verifier=ScriptedReasoner(KEEP_1),
                                        verifier_backend="openai")
    with pytest.raises(SettingsError, match="not to no verifier"):
        SegZeroPipeline.from_pretrained(ScriptedReasoner(TWO), BoxSegmenter(), verifier_kwargs={"base_url": "x"})
    v = ScriptedReasoner(KEEP_1)
    assert SegZeroPipeline.from_pretrained(ScriptedReasoner(TWO), BoxSegmenter(), verifier=v).verifier is v


def test_openai_verifier_is_built_with_its_arguments_and_no_forced_answer_shape(monkeypatch):
    monkeypatch.setenv("BIG_KEY", "secret")
    pipe = SegZeroPipeline.from_pretrained(
        ScriptedReasoner(TWO), BoxSegmenter(), verifier=BIG, verifier_backend="openai",
        verifier_kwargs={"base_url": "http://127.0.0.1:9/v1", "api_key_env": "BIG_KEY", "model_name": "big-vlm"})
    v = pipe.verifier
    try:
        assert isinstance(v, OpenAICompatReasoner) and v is not pipe.reasoner
        assert v.model_id == BIG and v.model == "big-vlm" and v.base_urls == ["http://127.0.0.1:9/v1"]
        assert v.api_key_env == "BIG_KEY"
        # the reasoner's answer regex would force the segmentation shape onto {"keep": [...]}
        assert v.structured_outputs == "off"
    finally:
        v.close()


# --- segzero segment ------------------------------------------------------------------------------


def test_segment_verifier_decides_and_is_recorded(tmp_path, capsys):
    # the reasoner would keep #0 if asked to verify; the verifier keeps #1: the verifier decides
    reasoner = _script(tmp_path, "reasoner", TWO, KEEP_0)
    verifier = _script(tmp_path, "verifier", KEEP_1)
    out = tmp_path / "out"
    code, stdout, err = _main(capsys, "segment", COFFEE, "what can I drink?", "--reasoner-backend", SCRIPTED,
                              "--reasoner", reasoner, *_seg(tmp_path), "--verify", "--verifier", verifier,
                              "--verifier-backend", SCRIPTED, "--out", str(out))
    assert code == 0, err
    assert f"verifier: {verifier}" in err  # the loading line names it
    data = json.loads((out / "result.json").read_text())
    assert data["query"] == "what can I drink?" and len(data["objects"]) == 1
    assert data["verification"]["status"] == "kept" and data["verification"]["kept"] == [1]
    assert "verification:" in stdout


def test_segment_verifier_from_the_environment(tmp_path, capsys, monkeypatch):
    reasoner = _script(tmp_path, "reasoner", TWO, KEEP_0)
    monkeypatch.setenv("SEGZERO_VERIFIER", _script(tmp_path, "verifier", KEEP_1))
    monkeypatch.setenv("SEGZERO_VERIFIER_BACKEND", SCRIPTED)
    argv = ["segment", COFFEE, "q", "--reasoner-backend", SCRIPTED, "--reasoner", reasoner, *_seg(tmp_path), "--json"]
    code, stdout, err = _main(capsys, *argv, "--verify")
    assert code == 0, err
    assert json.loads(stdout)["verification"]["kept"] == [1]
    # without --verify a verifier from the environment is not an error, and is not loaded
    monkeypatch.setenv("SEGZERO_VERIFIER_BACKEND", RECORDING)
    code, stdout, err = _main(capsys, *argv)
    assert code == 0, err
    assert "verification" not in json.loads(stdout) and RecordingReasoner.loads == []


def test_segment_openai_verifier_arguments_reach_the_backend(tmp_path, capsys, monkeypatch):
    seen: list[tuple[str, dict[str, Any]]] = []

    def fake_from_pretrained(cls, model, **kwargs):
        seen.append((model, kwargs))
        return ScriptedReasoner(KEEP_1)

    monkeypatch.setattr(OpenAICompatReasoner, "from_pretrained", classmethod(fake_from_pretrained))
    reasoner = _script(tmp_path, "reasoner", TWO, KEEP_0)
    code, stdout, err = _main(capsys, "segment", COFFEE, "q", "--reasoner-backend", SCRIPTED, "--reasoner", reasoner,
                              *_seg(tmp_path), "--json", "--verify", "--verifier", BIG, "--verifier-backend", "openai",
                              "--verifier-base-url", "http://gpu:8000/v1", "--verifier-model-name", "big",
                              "--verifier-api-key-env", "BIG_KEY", "--device", "cpu")
    assert code == 0, err
    assert seen == [(BIG, {"device": "cpu", "dtype": "auto", "base_url": "http://gpu:8000/v1",
                           "api_key_env": "BIG_KEY", "model_name": "big", "structured_outputs": "off"})]
    assert json.loads(stdout)["verification"]["kept"] == [1]


@pytest.mark.parametrize("argv, message", [
    (["--verifier", "x/y"], "--verifier is used only with --verify (the self-check loop); add --verify"),
    (["--verifier", "x/y", "--verifier-backend", "openai"], "--verifier is used only with --verify"),
    (["--verifier-base-url", "http://gpu:8000/v1"], "--verifier-base-url (SEGZERO_VERIFIER_BASE_URL) is set without"),
    (["--verify", "--verifier-backend", "openai"], "is set without --verifier"),
    (["--verify", "--verifier", "none"], "--verifier 'none' is not a model: omit it to use the reasoner"),
    (["--verify", "--verifier", "x/y", "--verifier-model-name", "m"],
     "--verifier-model-name (SEGZERO_VERIFIER_MODEL_NAME) is only for --verifier-backend openai"),
])
def test_segment_verifier_errors_are_one_line_before_loading(capsys, no_loading, argv, message):
    code, _, err = _main(capsys, "segment", COFFEE, "q", *argv)
    assert code == 2
    _one_line(err, message)


def test_segment_help_names_the_verifier_flags(capsys):
    code, out, _ = _main(capsys, "segment", "--help")
    assert code == 0
    for flag in ("--verifier NAME|HUB_ID|FOLDER", "--verifier-backend", "--verifier-base-url",
                 "--verifier-api-key-env", "--verifier-model-name"):
        assert flag in out
    assert "default: the reasoner itself" in " ".join(out.split())


# --- segzero-mcp ----------------------------------------------------------------------------------


def test_mcp_flags_reach_the_pipeline_settings(tmp_path):
    settings_mod = pytest.importorskip("segzero_tool.mcp_server.settings")
    argv = ["--verifier", BIG, "--verifier-backend", "openai", "--verifier-base-url", "http://gpu:8000/v1",
            "--verifier-api-key-env", "BIG_KEY", "--verifier-model-name", "big", "--allow-root", str(tmp_path)]
    args = settings_mod.build_parser().parse_args(argv)
    assert (args.verifier, args.verifier_backend, args.verifier_model_name) == (BIG, "openai", "big")
    s = settings_mod.ServerSettings.from_args(argv, environ={})
    p = s.pipeline
    assert p.verify is False  # callers pass verify per call; the verifier is loaded anyway
    assert (p.verifier, p.verifier_backend, p.verifier_base_url, p.verifier_api_key_env, p.verifier_model_name) == (
        BIG, "openai", "http://gpu:8000/v1", "BIG_KEY", "big")
    assert s.public_dict()["pipeline"]["verifier"] == BIG


def test_mcp_environment_and_errors(tmp_path):
    settings_mod = pytest.importorskip("segzero_tool.mcp_server.settings")
    root = ["--allow-root", str(tmp_path)]
    s = settings_mod.ServerSettings.from_args(root, environ={"SEGZERO_VERIFIER": "v", "SEGZERO_VERIFIER_BACKEND": SCRIPTED})
    assert (s.pipeline.verifier, s.pipeline.verifier_backend) == ("v", SCRIPTED)
    with pytest.raises(SettingsError, match="--verifier-backend .* is set without --verifier"):
        settings_mod.ServerSettings.from_args([*root, "--verifier-backend", "openai"], environ={})
    with pytest.raises(SettingsError, match="omit it to use the reasoner"):
        settings_mod.ServerSettings.from_args([*root, "--verifier", "none"], environ={})
