"""Server settings: defaults, SEGZERO_MCP_* variables, flags over the environment, validation."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import pytest

from segzero_tool.mcp_server.security import InputPolicy
from segzero_tool.mcp_server.settings import ServerSettings, build_parser, is_loopback_host, parse_size
from segzero_tool.settings import PipelineSettings, SettingsError


def real(p: Path) -> Path:
    return Path(os.path.realpath(p))


def test_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = ServerSettings.from_args([], environ={})
    assert s == ServerSettings()
    assert s.transport == "stdio" and s.host == "127.0.0.1" and s.port == 8765 and s.path == "/mcp"
    assert s.roots == () and s.effective_roots() == (real(tmp_path),)
    assert not s.allow_urls and not s.allow_private_urls and s.auth_token is None
    assert s.pipeline.max_pixels == s.max_pixels == 40_000_000 and s.pipeline.max_objects == 50
    policy = s.input_policy()
    assert policy == InputPolicy(allowed_roots=(tmp_path,))
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.port = 1  # type: ignore[misc]


def test_from_env(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    env = {
        "SEGZERO_MCP_TRANSPORT": "HTTP", "SEGZERO_MCP_HOST": "127.0.0.2", "SEGZERO_MCP_PORT": "9000",
        "SEGZERO_MCP_PATH": "/seg", "SEGZERO_MCP_TOKEN": " s3cret ",
        "SEGZERO_MCP_ALLOWED_HOSTS": "seg.internal:9000, other:80", "SEGZERO_MCP_ALLOWED_ORIGINS": "https://app",
        "SEGZERO_MCP_ROOTS": os.pathsep.join([str(a), str(b)]),
        "SEGZERO_MCP_ALLOW_URLS": "yes", "SEGZERO_MCP_ALLOW_PRIVATE_URLS": "true",
        "SEGZERO_MCP_URL_TIMEOUT": "2.5", "SEGZERO_MCP_MAX_DOWNLOAD_BYTES": "10MB",
        "SEGZERO_MCP_MAX_BASE64_BYTES": "1_000_000", "SEGZERO_MCP_MAX_PIXELS": "1000000",
        "SEGZERO_MCP_MAX_CONCURRENCY": "4", "SEGZERO_MCP_MAX_QUEUE": "0", "SEGZERO_MCP_MAX_RESULTS": "8",
        "SEGZERO_MCP_MAX_RESULT_BYTES": "1MiB", "SEGZERO_MCP_OVERLAY_MAX_SIDE": "512",
        "SEGZERO_MCP_MAX_OBJECTS": "7", "SEGZERO_MCP_LAZY": "1", "SEGZERO_MCP_LOG_LEVEL": "debug",
        "SEGZERO_REASONER": "/models/r", "SEGZERO_DEVICE": "cpu", "SEGZERO_MCP_OVERLAY_MAX_BYTES": "",
    }
    s = ServerSettings.from_env(env)
    assert (s.transport, s.host, s.port, s.path, s.auth_token) == ("http", "127.0.0.2", 9000, "/seg", "s3cret")
    assert s.allowed_hosts == ("seg.internal:9000", "other:80") and s.allowed_origins == ("https://app",)
    assert s.roots == (real(a), real(b))
    assert s.allow_urls and s.allow_private_urls and s.url_timeout_s == 2.5
    assert s.max_download_bytes == 10_000_000 and s.max_base64_bytes == 1_000_000
    assert s.max_result_bytes == 2**20 and s.overlay_max_bytes == 800_000  # empty variable = unset
    assert (s.max_concurrency, s.max_queue, s.max_results, s.overlay_max_side) == (4, 0, 8, 512)
    assert s.lazy and s.log_level == "DEBUG"
    assert s.pipeline.reasoner == "/models/r" and s.pipeline.device == "cpu"
    assert s.pipeline.max_objects == 7 and s.pipeline.max_pixels == 1_000_000
    policy = s.input_policy()
    assert policy.allowed_roots == (real(a), real(b)) and policy.max_download_bytes == 10_000_000
    assert policy.allow_urls and policy.allow_private_urls and policy.url_timeout_s == 2.5


def test_pipeline_variables_as_fallback_for_server_limits():
    s = ServerSettings.from_env({"SEGZERO_MAX_OBJECTS": "3", "SEGZERO_MAX_PIXELS": "500"})
    assert s.max_objects == 3 and s.max_pixels == 500 and s.pipeline.max_objects == 3
    s = ServerSettings.from_env({"SEGZERO_MAX_OBJECTS": "3", "SEGZERO_MCP_MAX_OBJECTS": "9"})
    assert s.max_objects == 9 == s.pipeline.max_objects


@pytest.mark.parametrize("env, message", [
    ({"SEGZERO_MCP_ALLOW_URLS": "maybe"}, "SEGZERO_MCP_ALLOW_URLS must be a yes/no value"),
    ({"SEGZERO_MCP_PORT": "http"}, "SEGZERO_MCP_PORT must be a whole number"),
    ({"SEGZERO_MCP_PORT": "70000"}, "port must be between 0 and 65535"),
    ({"SEGZERO_MCP_TRANSPORT": "ws"}, "must be 'stdio' or 'http'"),
    ({"SEGZERO_MCP_MAX_DOWNLOAD_BYTES": "lots"}, "number of bytes"),
    ({"SEGZERO_MCP_URL_TIMEOUT": "-1"}, "positive"),
    ({"SEGZERO_MCP_ROOTS": "/definitely/not/here"}, "not an existing folder"),
    ({"SEGZERO_MCP_LOG_LEVEL": "LOUD"}, "log level"),
    ({"SEGZERO_FRAME_SIZE": "big"}, "must be an integer"),
])
def test_bad_environment_values(env, message):
    with pytest.raises(SettingsError, match=message):
        ServerSettings.from_env(env)


def test_flags_override_environment(tmp_path):
    env_root, flag_root = tmp_path / "env", tmp_path / "flag"
    env_root.mkdir()
    flag_root.mkdir()
    env = {"SEGZERO_MCP_PORT": "9000", "SEGZERO_MCP_ROOTS": str(env_root), "SEGZERO_MCP_ALLOW_URLS": "1",
           "SEGZERO_MCP_TOKEN": "from-env", "SEGZERO_REASONER": "env-reasoner", "SEGZERO_DEVICE": "cpu",
           "SEGZERO_MCP_MAX_OBJECTS": "5"}
    s = ServerSettings.from_args(["--http", "--port", "9100", "--allow-root", str(flag_root), "--no-allow-urls",
                                  "--auth-token", "from-flag", "--reasoner", "flag-reasoner", "--max-objects", "9",
                                  "--allow-host", "a:1", "--allow-host", "b:2", "--max-result-bytes", "2MB",
                                  "--url-timeout", "3", "--log-level", "warning", "--lazy"], environ=env)
    assert s.transport == "http" and s.port == 9100 and s.roots == (real(flag_root),)
    assert not s.allow_urls and s.auth_token == "from-flag" and s.allowed_hosts == ("a:1", "b:2")
    assert s.pipeline.reasoner == "flag-reasoner" and s.pipeline.device == "cpu"  # env kept where no flag
    assert s.max_objects == 9 == s.pipeline.max_objects and s.max_result_bytes == 2_000_000
    assert s.url_timeout_s == 3.0 and s.log_level == "WARNING" and s.lazy
    # without flags the environment applies
    s = ServerSettings.from_args([], environ=env)
    assert s.port == 9000 and s.allow_urls and s.auth_token == "from-env" and s.roots == (real(env_root),)


def test_pipeline_flags_and_config_file(tmp_path):
    cfg = tmp_path / "segzero.toml"
    cfg.write_text('[segzero]\nreasoner = "cfg-reasoner"\nsegmenter = "cfg-seg"\nmax_objects = 4\n')
    s = ServerSettings.from_args(["--config", str(cfg), "--segmenter", "flag-seg", "--preset", "light",
                                  "--reasoner-backend", "pkg.mod:R", "--segmenter-backend", "sam2",
                                  "--prompt-format", "segzero", "--device", "cpu", "--dtype", "fp32",
                                  "--frame-size", "448", "--max-new-tokens", "64"], environ={})
    p = s.pipeline
    assert (p.reasoner, p.segmenter, p.preset) == ("cfg-reasoner", "flag-seg", "light")
    assert (p.reasoner_backend, p.segmenter_backend, p.prompt_format) == ("pkg.mod:R", "sam2", "segzero")
    assert (p.device, p.dtype, p.frame_size, p.max_new_tokens) == ("cpu", "fp32", 448, 64)
    assert s.max_objects == 4 == p.max_objects  # the config file's cap applies when no server cap is given
    assert ServerSettings.from_args(["--config", str(cfg), "--max-objects", "6"], environ={}).max_objects == 6
    with pytest.raises(SettingsError, match="does not exist"):
        ServerSettings.from_args(["--config", str(tmp_path / "missing.toml")], environ={})


def test_auth_token_env():
    s = ServerSettings.from_args(["--auth-token-env", "MY_TOKEN"], environ={"MY_TOKEN": "abc"})
    assert s.auth_token == "abc"
    with pytest.raises(SettingsError, match="MY_TOKEN: that environment variable is unset"):
        ServerSettings.from_args(["--auth-token-env", "MY_TOKEN"], environ={})
    with pytest.raises(SettingsError, match="not allowed with"):
        ServerSettings.from_args(["--auth-token", "x", "--auth-token-env", "MY_TOKEN"], environ={})
    assert ServerSettings(auth_token="  ").auth_token is None
    assert ServerSettings(auth_token="t").public_dict()["auth_token"] == "***"


@pytest.mark.parametrize("argv, message", [
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--port", "abc"], "invalid int value"),
    (["--max-objects", "0"], "max-objects must be at least 1"),
    (["--max-queue", "-1"], "max-queue must be 0 or more"),
    (["--path", "mcp"], "must start with '/'"),
    (["--log-level", "LOUD"], "invalid choice"),
    (["--prompt-format", "xml"], "invalid choice"),
    (["--max-download-bytes", "ten"], "number of bytes"),
    (["--allow-root", "/definitely/not/here"], "not an existing folder"),
    (["--http", "--stdio"], "not allowed with"),
])
def test_bad_flags_raise_settings_error(argv, message):
    with pytest.raises(SettingsError, match=message) as info:
        ServerSettings.from_args(argv, environ={})
    assert info.value.exit_code == 2


def test_help(capsys):
    with pytest.raises(SystemExit) as info:
        ServerSettings.from_args(["--help"], environ={})
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: segzero-mcp")
    for flag in ("--http", "--allow-root", "--allow-urls", "--allow-private-urls", "--auth-token-env",
                 "--max-base64-bytes", "--max-concurrency", "--reasoner", "--segmenter-backend", "--config"):
        assert flag in out
    assert build_parser().prog == "segzero-mcp"


def test_warns_on_public_http_without_token(caplog):
    with caplog.at_level(logging.WARNING, logger="segzero_tool.mcp_server"):
        ServerSettings.from_args(["--http", "--host", "0.0.0.0"], environ={})
    assert "without an auth token" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="segzero_tool.mcp_server"):
        ServerSettings.from_args(["--http", "--host", "0.0.0.0", "--auth-token", "t"], environ={})
        ServerSettings.from_args(["--http", "--host", "localhost"], environ={})
    assert "auth token" not in caplog.text


def test_helpers():
    assert parse_size("25MB", "x") == 25_000_000 and parse_size("1KiB", "x") == 1024 and parse_size("7", "x") == 7
    assert is_loopback_host("127.0.0.1") and is_loopback_host("[::1]") and is_loopback_host("localhost")
    assert not is_loopback_host("0.0.0.0") and not is_loopback_host("example.com")


def test_replace_keeps_pipeline_in_sync():
    s = dataclasses.replace(ServerSettings(pipeline=PipelineSettings(reasoner="r")), max_pixels=123)
    assert s.pipeline.max_pixels == 123 and s.pipeline.reasoner == "r"


def test_remote_reasoner_flags_reach_the_pipeline(tmp_path):
    s = ServerSettings.from_args(
        ["--reasoner-backend", "openai", "--reasoner-base-url", "http://127.0.0.1:9/v1,http://127.0.0.1:10/v1",
         "--structured-outputs", "regex", "--image-format", "jpeg", "--allow-root", str(tmp_path)],
        environ={},
    )
    assert s.pipeline.reasoner_backend == "openai"
    assert s.pipeline.reasoner_base_url == "http://127.0.0.1:9/v1,http://127.0.0.1:10/v1"
    assert (s.pipeline.structured_outputs, s.pipeline.image_format) == ("regex", "jpeg")


def test_budget_store_request_and_link_flags():
    from segzero_tool.mcp_server.settings import ServerSettings
    from segzero_tool.settings import SettingsError

    s = ServerSettings.from_args(["--max-store-bytes", "1MB", "--max-result-bytes", "100KiB", "--max-request-bytes",
                                  "5MB", "--resource-links", "--health-path", "/healthz"], environ={})
    assert (s.max_store_bytes, s.max_result_bytes, s.max_request_bytes) == (1_000_000, 102_400, 5_000_000)
    assert s.resource_links is True and s.health_path == "/healthz"
    d = ServerSettings.from_args([], environ={"SEGZERO_MCP_RESOURCE_LINKS": "yes", "SEGZERO_MCP_MAX_STORE_BYTES": "2MiB"})
    assert d.resource_links is True and d.max_store_bytes == 2**21 and d.max_result_bytes == 512 * 1024
    with pytest.raises(SettingsError, match="at least 64KiB"):
        ServerSettings.from_args(["--max-result-bytes", "1000"], environ={})
    with pytest.raises(SettingsError, match="health path"):
        ServerSettings.from_args(["--health-path", "/mcp"], environ={})


def test_cached_embeddings_expire_with_the_live_results_unless_set():
    assert ServerSettings().pipeline.cache_ttl_s == 1800.0
    s = ServerSettings.from_args(["--live-ttl", "60"], environ={})
    assert s.live_ttl_s == 60.0 and s.pipeline.cache_ttl_s == 60.0
    s = ServerSettings.from_args(["--live-ttl", "60"], environ={"SEGZERO_CACHE_TTL_S": "600"})
    assert s.pipeline.cache_ttl_s == 600.0


def test_the_embedding_ttl_reaches_the_segmenter(monkeypatch):
    from segzero_tool.pipeline import SegZeroPipeline

    seen = {}
    monkeypatch.setattr(SegZeroPipeline, "from_pretrained", classmethod(lambda cls, *a, **k: seen.update(k)))
    ServerSettings.from_args(["--live-ttl", "90", "--reasoner", "none"], environ={}).pipeline.build_pipeline()
    assert seen["segmenter_kwargs"] == {"cache_size": 8, "cache_ttl_s": 90.0}
    with pytest.raises(SettingsError, match="SEGZERO_CACHE_TTL_S must be a positive number of seconds"):
        PipelineSettings.from_env({"SEGZERO_CACHE_TTL_S": "0"})
    with pytest.raises(SettingsError, match="'cache_ttl_s' must be a number"):
        PipelineSettings.from_env({"SEGZERO_CACHE_TTL_S": "soon"})
    with pytest.raises(SettingsError, match="SEGZERO_CACHE_TTL_S must be a positive number"):
        PipelineSettings.from_env({"SEGZERO_CACHE_TTL_S": "inf"})
