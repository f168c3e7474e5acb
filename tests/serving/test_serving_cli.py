"""The command line with a served reasoner (`segzero segment --reasoner-backend openai`), the settings
that carry base URLs, and `segzero serve-reasoner`."""

from __future__ import annotations

import json
import shlex

import pytest
from serving_support import COFFEE

from segzero_tool import serve as serve_mod
from segzero_tool.cli import main
from segzero_tool.serve import build_serve_command, recommended_max_model_len, visual_tokens
from segzero_tool.settings import PipelineSettings, SettingsError

VR_COMMAND = (
    "vllm serve Ricky06662/VisionReasoner-7B --served-model-name visionreasoner-7b Ricky06662/VisionReasoner-7B "
    "--host 127.0.0.1 --port 8000 --dtype bfloat16 --max-model-len 4096 --limit-mm-per-prompt '{\"image\": 1}' "
    "--mm-processor-kwargs '{\"min_pixels\": 3136, \"max_pixels\": 705600}' --generation-config auto "
    "--gpu-memory-utilization 0.9"
)


def test_cli_segment_through_the_server(server, tiny_models, tmp_path, capsys):
    out = tmp_path / "res"
    rc = main(["segment", str(COFFEE), "What can I have if I'm thirsty?", "--reasoner-backend", "openai",
               "--reasoner-base-url", server.url, "--reasoner-api-key-env", "SEGZERO_TEST_UNSET_KEY",
               "--segmenter", str(tiny_models["segmenter"]), "--device", "cpu", "--out", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "The cup holds coffee." in printed and "2 object(s)" in printed
    data = json.loads((out / "result.json").read_text())
    assert data["parse_status"] == "ok" and len(data["objects"]) == 2
    [rec] = server.requests
    assert rec["model"] == "visionreasoner-7b" and rec["max_tokens"] == 2048 and "structured_outputs" in rec


def test_cli_options_reach_the_client(make_server, capsys):
    server = make_server(models=["qwen-vl-max"], owned_by="system")
    rc = main(["segment", str(COFFEE), "the cup", "--json", "--no-masks", "--reasoner", "qwen2.5-vl-7b-instruct",
               "--reasoner-backend", "openai", "--reasoner-base-url", server.root, "--reasoner-model-name", "qwen-vl-max",
               "--structured-outputs", "grammar", "--image-format", "jpeg", "--max-new-tokens", "300"])
    assert rc == 0
    assert len(json.loads(capsys.readouterr().out)["objects"]) == 2
    rec = server.requests[0]
    assert rec["model"] == "qwen-vl-max" and list(rec["structured_outputs"]) == ["grammar"]
    assert rec["image_url_prefix"].startswith("data:image/jpeg") and rec["max_tokens"] == 300
    assert rec["prompt"].startswith("Locate every object")  # the grounding format of the registry entry


def test_cli_server_down_is_one_line_exit_8(capsys, monkeypatch):
    import socket

    from segzero_tool.reasoners import openai_pool

    async def no_wait(delay, token):  # the default retries, without their backoff sleeps
        return None

    monkeypatch.setattr(openai_pool, "_sleep", no_wait)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rc = main(["segment", str(COFFEE), "q", "--no-masks", "--reasoner-backend", "openai",
               "--reasoner-base-url", f"http://127.0.0.1:{port}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 8
    assert err[-1].startswith(f"segzero: error: cannot connect to http://127.0.0.1:{port}/v1")
    assert "segzero serve-reasoner --model visionreasoner-7b" in err[-1]


def test_cli_unknown_served_model_exit_4(server, capsys):
    rc = main(["segment", str(COFFEE), "q", "--no-masks", "--reasoner", "seg-zero-7b",
               "--reasoner-backend", "openai", "--reasoner-base-url", server.url])
    assert rc == 4
    assert "the server serves: visionreasoner-7b, Ricky06662/VisionReasoner-7B" in capsys.readouterr().err


def test_settings_carry_remote_options(tmp_path):
    s = PipelineSettings.resolve(environ={"SEGZERO_REASONER_BACKEND": "openai",
                                          "SEGZERO_REASONER_BASE_URL": "http://a:8000/v1,http://b:8000/v1",
                                          "SEGZERO_STRUCTURED_OUTPUTS": "off"})
    assert s.remote_reasoner_kwargs() == {"base_url": "http://a:8000/v1,http://b:8000/v1", "structured_outputs": "off"}
    assert PipelineSettings(reasoner_backend="vllm", structured_outputs="grammar").remote_reasoner_kwargs() == {
        "structured_outputs": "grammar"}
    assert PipelineSettings().remote_reasoner_kwargs() == {}
    with pytest.raises(SettingsError, match="reasoner_base_url only apply to reasoner_backend 'openai'"):
        PipelineSettings(reasoner_base_url="http://a:8000").remote_reasoner_kwargs()
    with pytest.raises(SettingsError, match="image_format"):
        PipelineSettings(reasoner_backend="vllm", image_format="jpeg").remote_reasoner_kwargs()


def test_cli_remote_option_without_the_backend_is_exit_2(capsys):
    assert main(["segment", str(COFFEE), "q", "--no-masks", "--reasoner-base-url", "http://127.0.0.1:1/v1"]) == 2
    assert "add --reasoner-backend openai" in capsys.readouterr().err


# --- serve-reasoner ----------------------------------------------------------------------------


def test_serve_reasoner_print(capsys):
    assert main(["serve-reasoner", "--print"]) == 0
    assert capsys.readouterr().out.strip() == VR_COMMAND
    assert main(["serve-reasoner", "--model", "seg-zero-7b", "--tensor-parallel", "2", "--data-parallel", "4",
                 "--port", "9000", "--host", "0.0.0.0", "--gpu-memory-utilization", "0.85", "--print",
                 "--", "--enforce-eager"]) == 0
    assert capsys.readouterr().out.strip() == (
        "vllm serve Ricky06662/Seg-Zero-7B --served-model-name seg-zero-7b Ricky06662/Seg-Zero-7B "
        "--host 0.0.0.0 --port 9000 --dtype bfloat16 --max-model-len 3072 --limit-mm-per-prompt '{\"image\": 1}' "
        "--mm-processor-kwargs '{\"min_pixels\": 3136, \"max_pixels\": 705600}' --generation-config auto "
        "--gpu-memory-utilization 0.85 --tensor-parallel-size 2 --mm-encoder-tp-mode data --data-parallel-size 4 "
        "--enforce-eager"
    )


def test_serve_reasoner_options():
    argv = build_serve_command("qwen2.5-vl-3b-instruct", max_model_len=8192, dtype="fp16", frame_size=560,
                               served_model_name="light")
    line = shlex.join(argv)
    assert "--served-model-name light --host" in line and "--max-model-len 8192" in line
    assert "--dtype float16" in line and '"max_pixels": 313600' in line
    assert build_serve_command("someorg/my-vlm")[3:5] == ["--served-model-name", "someorg/my-vlm"]
    assert visual_tokens(840) == 900 and recommended_max_model_len(2048) == 4096
    assert recommended_max_model_len(1024) == 3072
    for bad in ({"tensor_parallel": 0}, {"gpu_memory_utilization": 1.5}, {"dtype": "int4"}):
        with pytest.raises(ValueError):
            build_serve_command("visionreasoner-7b", **bad)


def test_serve_reasoner_errors(capsys, monkeypatch):
    monkeypatch.setattr(serve_mod, "_vllm_executable", lambda: None)
    assert main(["serve-reasoner"]) == 5  # no vLLM and no --print
    captured = capsys.readouterr()
    assert captured.out.strip() == VR_COMMAND  # the command is printed first
    assert captured.err.strip() == ('segzero: error: vLLM is not installed here: pip install "segzero-tool[vllm]" '
                                    "(Linux with a CUDA GPU), or pass --print to only print the command")
    assert main(["serve-reasoner", "--model", "sam2.1-hiera-large", "--print"]) == 4
    assert main(["serve-reasoner", "--tensor-parallel", "0", "--print"]) == 2


def test_serve_reasoner_runs_vllm(capsys, monkeypatch):
    seen: list[list[str]] = []
    monkeypatch.setattr(serve_mod, "_vllm_executable", lambda: ["/opt/bin/vllm"])
    monkeypatch.setattr(serve_mod.os, "execvp", lambda file, args: seen.append([file, *args]))
    assert main(["serve-reasoner", "--port", "8001"]) == 0
    assert seen[0][:4] == ["/opt/bin/vllm", "/opt/bin/vllm", "serve", "Ricky06662/VisionReasoner-7B"]
    assert "--port" in seen[0] and seen[0][seen[0].index("--port") + 1] == "8001"
