"""No network: the README's hub command fails in seconds with a few lines that say what to do, and a
model already in the local Hugging Face cache still loads with the hub down.

The hub is "down" by pointing ``HF_ENDPOINT`` at a closed local port, at a local socket that accepts
connections and never answers (the timeout path), at an unroutable address, or by ``HF_HUB_OFFLINE``.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from segzero_tool.errors import HubUnreachableError, ModelLoadError
from segzero_tool.hub import check_hub_access, probe_hub

REPO = Path(__file__).resolve().parents[1]
COFFEE = REPO / "examples" / "coffee.png"
#: The README's main command, as written there.
HUB_COMMAND = ["segment", "examples/coffee.png", "What can I have if I'm thirsty?", "--out", "results/"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _silent_server() -> Iterator[int]:
    """A port that accepts TCP connections (the kernel's backlog) and never answers a request."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield s.getsockname()[1]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SEGZERO_", "HF_")) and k not in ("TRANSFORMERS_OFFLINE",)}
    env.update({"HF_HOME": str(tmp_path / "hf"), "PYTHONPATH": str(REPO), **extra})
    return env


def _segzero(*args: str, env: dict[str, str], cwd: Path = REPO, timeout: float = 300):
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "segzero_tool", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=timeout)
    return proc, time.monotonic() - t0


def _assert_clear_hub_error(proc: subprocess.CompletedProcess, elapsed: float, *, offline_hint: bool = True) -> None:
    assert proc.returncode == 7, proc.stderr
    assert elapsed < 25, f"took {elapsed:.1f} s"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) <= 8, proc.stderr
    assert len(set(lines)) == len(lines), f"a line printed twice:\n{proc.stderr}"
    assert "Retrying" not in proc.stderr and "Traceback" not in proc.stderr
    error = [line for line in lines if line.startswith("segzero: error:")]
    assert len(error) == 1, proc.stderr
    assert "Ricky06662/VisionReasoner-7B" in error[0]
    assert "--reasoner DIR --segmenter DIR" in proc.stderr  # local folders
    assert "segzero make-tiny-models" in proc.stderr
    assert ("HF_HUB_OFFLINE=1" in proc.stderr) is offline_hint, proc.stderr


def test_readme_hub_command_with_the_hub_port_closed(tmp_path):
    proc, elapsed = _segzero(*HUB_COMMAND, env=_env(tmp_path, HF_ENDPOINT=f"http://127.0.0.1:{_closed_port()}"))
    _assert_clear_hub_error(proc, elapsed)
    assert "unreachable (connection refused)" in proc.stderr


def test_readme_hub_command_when_the_hub_never_answers(tmp_path):
    with _silent_server() as port:
        proc, elapsed = _segzero(*HUB_COMMAND, env=_env(tmp_path, HF_ENDPOINT=f"http://127.0.0.1:{port}"))
    _assert_clear_hub_error(proc, elapsed)
    assert "no answer within 5 s" in proc.stderr


def test_readme_hub_command_with_an_unroutable_hub(tmp_path):
    # a black hole on most networks (the connect times out); some sandboxes answer for every address,
    # which is not a hub either
    proc, elapsed = _segzero(*HUB_COMMAND, env=_env(tmp_path, HF_ENDPOINT="http://10.255.255.1"))
    _assert_clear_hub_error(proc, elapsed)


def test_offline_mode_without_the_model_cached(tmp_path):
    proc, elapsed = _segzero(*HUB_COMMAND, env=_env(tmp_path, HF_HUB_OFFLINE="1"))
    _assert_clear_hub_error(proc, elapsed, offline_hint=False)
    assert "not in the local Hugging Face cache" in proc.stderr and "HF_HUB_OFFLINE is set" in proc.stderr


def _into_hub_cache(folder: Path, cache: Path, repo_id: str) -> None:
    """Lay ``folder`` out as huggingface_hub's cache holds a downloaded repository."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    shutil.copytree(folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)


@pytest.mark.slow
def test_a_cached_model_loads_with_the_hub_down(tmp_path, tiny_models):
    cache = tmp_path / "hf" / "hub"
    _into_hub_cache(tiny_models["reasoner"], cache, "segzero-test/tiny-reasoner")
    _into_hub_cache(tiny_models["segmenter"], cache, "segzero-test/tiny-sam2")
    out = tmp_path / "out"
    proc, _ = _segzero("segment", str(COFFEE), "the cup", "--reasoner", "segzero-test/tiny-reasoner",
                       "--segmenter", "segzero-test/tiny-sam2", "--max-new-tokens", "8", "--out", str(out),
                       env=_env(tmp_path, HF_ENDPOINT=f"http://127.0.0.1:{_closed_port()}"))
    assert proc.returncode == 0, proc.stderr
    assert (out / "result.json").exists() and (out / "overlay.png").exists()
    assert "Retrying" not in proc.stderr and "error" not in proc.stderr.lower(), proc.stderr


# --- the probe and the decision, in process ----------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    status = 404
    headers_out: dict[str, str] = {}

    def do_HEAD(self) -> None:  # noqa: N802
        self.send_response(self.status)
        for key, value in self.headers_out.items():
            self.send_header(key, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def _http_server(status: int, headers: dict[str, str]) -> Iterator[str]:
    handler = type("H", (_Handler,), {"status": status, "headers_out": headers})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture()
def endpoint(monkeypatch):
    """Point huggingface_hub at a given endpoint for one test (and forget earlier probe verdicts)."""
    from huggingface_hub import constants

    from segzero_tool import hub

    monkeypatch.setattr(hub, "_probe_cache", {})
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)

    def use(url: str) -> None:
        monkeypatch.setattr(constants, "ENDPOINT", url)

    return use


@pytest.mark.parametrize(
    ("status", "headers", "reachable"),
    [
        (200, {}, True),
        (302, {"Location": "https://cdn.example/x"}, True),
        (401, {}, True),  # gated or private: the download says so in its own words
        (404, {"X-Error-Code": "RepoNotFound"}, True),  # the hub's own "no such model"
        (404, {}, False),  # something that is not a hub
        (503, {}, False),
    ],
)
def test_probe_tells_a_hub_from_something_else(endpoint, status, headers, reachable):
    with _http_server(status, headers) as url:
        endpoint(url)
        reason = probe_hub("owner/model", timeout=5)
    assert (reason is None) is reachable, reason


def test_probe_gives_up_after_its_timeout(endpoint):
    with _silent_server() as port:
        endpoint(f"http://127.0.0.1:{port}")
        t0 = time.monotonic()
        reason = probe_hub("owner/model", timeout=1)
    assert time.monotonic() - t0 < 3
    assert reason is not None and "no answer" in reason


def test_folder_and_reachable_hub_change_nothing(endpoint, tmp_path):
    assert check_hub_access(str(tmp_path), what="reasoner") is None  # a folder: no probe at all
    with _http_server(200, {}) as url:
        endpoint(url)
        assert check_hub_access("owner/model", what="reasoner") is None
        assert check_hub_access("owner/model", what="reasoner", local_files_only=False) is False


def test_unreachable_hub_uses_the_cache_or_raises(endpoint, tmp_path, monkeypatch):
    from segzero_tool import hub

    endpoint(f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setattr(hub, "in_hub_cache", lambda repo_id, filename="config.json", revision=None: True)
    assert check_hub_access("owner/model", what="reasoner") is True  # load from the cache, no requests
    monkeypatch.setattr(hub, "in_hub_cache", lambda repo_id, filename="config.json", revision=None: False)
    with pytest.raises(HubUnreachableError) as info:
        check_hub_access("owner/model", what="segmenter")
    err = info.value
    assert isinstance(err, ModelLoadError) and err.exit_code == 7 and not err.offline
    assert "segmenter 'owner/model'" in err.message and "connection refused" in err.message
    assert "HF_HUB_OFFLINE=1" in str(err) and "hf download owner/model" in str(err)


def test_offline_mode_never_probes(endpoint, monkeypatch):
    from huggingface_hub import constants

    from segzero_tool import hub

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub, "probe_hub", lambda *a, **k: pytest.fail("probed in offline mode"))
    monkeypatch.setattr(hub, "in_hub_cache", lambda repo_id, filename="config.json", revision=None: True)
    assert check_hub_access("owner/model", what="reasoner") is True
    monkeypatch.setattr(hub, "in_hub_cache", lambda repo_id, filename="config.json", revision=None: False)
    with pytest.raises(HubUnreachableError) as info:
        check_hub_access("owner/model", what="reasoner")
    assert info.value.offline and "HF_HUB_OFFLINE=1" not in str(info.value)


def test_library_log_lines_print_once(tmp_path):
    """huggingface_hub's and transformers' own handlers and ours: each warning appears once."""
    code = (
        "import logging\n"
        "from segzero_tool.cli import setup_logging\n"
        "setup_logging(0)\n"
        "from huggingface_hub.utils import logging as hub_logging\n"
        "from transformers.utils import logging as tf_logging\n"
        "hub_logging.get_logger('huggingface_hub.utils._http').warning('hub retry warning')\n"
        "tf_logging.get_logger('transformers.modeling_utils').warning('transformers warning')\n"
        "logging.getLogger('segzero_tool.x').warning('our warning')\n"
        "logging.getLogger('segzero_tool.x').info('our info')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env=_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    for text in ("hub retry warning", "transformers warning", "our warning"):
        assert proc.stderr.count(text) == 1, proc.stderr
    assert "our info" not in proc.stderr  # warnings only by default
