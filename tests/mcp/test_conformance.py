"""The MCP conformance suite (npm ``@modelcontextprotocol/conformance``) against a real
``segzero-mcp --http`` subprocess, started as a user would (default startup, tiny random models).

Install the suite first with ``bash tests/mcp/conformance/install.sh`` (into ``.conformance/`` at the
repository root; ``SEGZERO_CONFORMANCE_DIR`` points elsewhere); without it this module skips.

Every scenario the suite has is run. The protocol scenarios a product server must pass are asserted;
``logging-set-level`` / ``completion-complete`` are asserted only when the server declares the
``logging`` / ``completions`` capability; the rest call the suite's own fixture tools, prompts and
resources (``test_image_content``, ``test://static-text``, ...) and are expected failures. A scenario
the suite has that is in none of these lists fails ``test_every_suite_scenario_is_listed``, so a
suite upgrade is noticed.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from served import ServedProcess  # noqa: E402

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
INSTALL_SCRIPT = "tests/mcp/conformance/install.sh"
READY_TIMEOUT = 60.0  # seconds for the server to answer initialize (it does at once; models load in the background)
SUITE_TIMEOUT = 300.0  # seconds for the whole suite (about 2 s on 2 cores)

#: Scenarios a product server must pass.
MUST_PASS = [
    "server-initialize",
    "ping",
    "tools-list",
    "tools-call-error",
    "server-sse-multiple-streams",
    "resources-list",
    "prompts-list",
    "dns-rebinding-protection",
]

#: Scenarios asserted only when the server declares the capability in its initialize result.
NEEDS_CAPABILITY = {
    "logging-set-level": "logging",
    "completion-complete": "completions",
}

#: Scenarios that call the suite's own fixture tool/prompt/resource, which segzero-mcp does not have.
FIXTURE_ONLY = {
    # passes vacuously today: the suite accepts any text content, here segzero-mcp's "Unknown tool" error
    "tools-call-simple-text": "tool test_simple_text",
    "tools-call-image": "tool test_image_content",
    "tools-call-audio": "tool test_audio_content",
    "tools-call-embedded-resource": "tool test_embedded_resource",
    "tools-call-mixed-content": "tool test_multiple_content_types",
    "tools-call-with-logging": "tool test_tool_with_logging",
    "tools-call-with-progress": "tool test_tool_with_progress",
    "tools-call-sampling": "tool test_sampling",
    "tools-call-elicitation": "tool test_elicitation",
    "elicitation-sep1034-defaults": "tool test_elicitation_sep1034_defaults",
    "elicitation-sep1330-enums": "tool test_elicitation_sep1330_enums",
    "json-schema-2020-12": "tool json_schema_2020_12_tool",
    "server-sse-polling": "tool test_reconnection",
    "resources-read-text": "resource test://static-text",
    "resources-read-binary": "resource test://static-binary",
    "resources-templates-read": "resource template test://template/{id}/data",
    "resources-subscribe": "resource test://watched-resource",
    "resources-unsubscribe": "resource test://watched-resource",
    "prompts-get-simple": "prompt test_simple_prompt",
    "prompts-get-with-args": "prompt test_prompt_with_arguments",
    "prompts-get-embedded-resource": "prompt test_prompt_with_embedded_resource",
    "prompts-get-with-image": "prompt test_prompt_with_image",
}


def _suite_runner() -> list[str] | None:
    """The suite's CLI: ``bin/conformance`` (written by the install script) in the suite folder."""
    env = os.environ.get("SEGZERO_CONFORMANCE_DIR")
    folder = Path(env) if env else REPO / ".conformance"
    for cli in (folder / "bin" / "conformance", folder / "node_modules" / ".bin" / "conformance"):
        if cli.is_file() and os.access(cli, os.X_OK):
            return [str(cli)]
    return None


RUNNER = _suite_runner()
if RUNNER is None:
    pytest.skip(f"the MCP conformance suite is not installed: run `bash {INSTALL_SCRIPT}` "
                "(or set SEGZERO_CONFORMANCE_DIR to where it is installed)", allow_module_level=True)


# --- the server -----------------------------------------------------------------------------------


def _server_command() -> list[str]:
    """``segzero-mcp`` as installed beside this Python (a virtual env's bin/), else on PATH."""
    for candidate in (Path(sys.executable).parent / "segzero-mcp", shutil.which("segzero-mcp")):
        if candidate and Path(candidate).is_file():
            return [str(candidate)]
    return [sys.executable, "-m", "segzero_tool.mcp_server"]  # same entry point, if the script is missing


def _initialize(port: int) -> dict[str, Any] | None:
    """POST ``initialize``; the result, or None while the server does not answer it yet."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "conformance-probe", "version": "0"}}})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/mcp", body=body, headers={
            "Content-Type": "application/json", "Accept": "application/json, text/event-stream"})
        resp = conn.getresponse()
        text = resp.read().decode("utf-8", "replace")
        session = resp.getheader("mcp-session-id")
        if resp.status != 200:
            return None
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()
    if session:  # end the probe's session, as a client would
        with contextlib.suppress(OSError, http.client.HTTPException):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("DELETE", "/mcp", headers={"mcp-session-id": session})
            conn.getresponse().read()
            conn.close()
    messages = [line[5:].strip() for line in text.splitlines() if line.startswith("data:")] or [text]
    for message in messages:
        with contextlib.suppress(ValueError):
            answer = json.loads(message)
            if isinstance(answer, dict) and answer.get("id") == 1 and "result" in answer:
                return answer["result"]
    return None


class Server(ServedProcess):
    """``segzero-mcp --http --port PORT ARGS``; ready when it answers ``initialize`` (kept in ``initialize``)."""

    ready_timeout = READY_TIMEOUT
    what = "segzero-mcp"

    def __init__(self, folder: Path, args: list[str]) -> None:
        super().__init__(folder, args)
        self.initialize: dict[str, Any] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def command(self, port: int) -> list[str]:
        return [*_server_command(), "--http", "--port", str(port), *self.args]

    def environment(self) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("SEGZERO", "FASTMCP"))}
        return {**keep, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}

    def ready(self) -> bool:
        result = _initialize(self.port)
        if result is not None:
            self.initialize = result
        return result is not None


@pytest.fixture(scope="module")
def server(tiny_models, tmp_path_factory):
    """``segzero-mcp --http`` on a free loopback port with the tiny random models (default startup)."""
    folder = tmp_path_factory.mktemp("conformance-server")
    srv = Server(folder, ["--reasoner", str(tiny_models["reasoner"]), "--segmenter", str(tiny_models["segmenter"]),
                          "--device", "cpu"])
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


# --- the suite ------------------------------------------------------------------------------------

_RESULT_DIR = re.compile(r"^server-(?P<scenario>.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(scope="module")
def suite_run(server: Server, tmp_path_factory) -> dict[str, Any]:
    """Every scenario of the suite (``--suite all``) in one run against ``server``: the run's output, and
    per scenario its checks (from its checks.json) and its part of the output. One Node start instead of
    one per scenario keeps the module fast on 2 cores."""
    out = tmp_path_factory.mktemp("conformance-results")
    proc = subprocess.run([*RUNNER, "server", "--url", server.url, "--suite", "all", "--output-dir", str(out)],
                          capture_output=True, text=True, timeout=SUITE_TIMEOUT, stdin=subprocess.DEVNULL)
    output = _ANSI.sub("", proc.stdout + proc.stderr)
    checks: dict[str, list[dict[str, Any]]] = {}
    for folder in sorted(out.iterdir()):
        match = _RESULT_DIR.match(folder.name)
        if match and (folder / "checks.json").is_file():
            checks[match["scenario"]] = json.loads((folder / "checks.json").read_text())
    sections = {m[1]: m[2] for m in re.finditer(r"=== Running scenario: (\S+) ===\n(.*?)(?=\n=== |\Z)", output, re.S)}
    return {"output": output, "checks": checks, "sections": sections}


def _report(scenario: str, checks: list[dict[str, Any]], output: str, server: Server) -> str:
    lines = [f"conformance scenario {scenario!r} failed against {server.url}"]
    for check in checks:
        if check.get("status") in ("FAILURE", "WARNING"):
            details = json.dumps(check.get("details"), default=str)[:800]
            lines.append(f"  {check.get('status')} {check.get('id')}: {check.get('errorMessage', '')}\n"
                         f"    details: {details}")
    if not checks:
        lines.append("  (the suite wrote no checks.json for it)")
    lines.append("--- suite output ---\n" + output[-3000:])
    lines.append("--- server log (tail) ---\n" + server.log_tail(2000))
    return "\n".join(lines)


def _passed(checks: list[dict[str, Any]]) -> bool:
    """The suite's own verdict for a server scenario (no FAILURE check), and at least one SUCCESS."""
    statuses = [c.get("status") for c in checks]
    return "FAILURE" not in statuses and "SUCCESS" in statuses


def _scenario_params() -> list[Any]:
    params: list[Any] = [pytest.param(s, id=s) for s in MUST_PASS]
    params += [pytest.param(s, id=s) for s in NEEDS_CAPABILITY]
    params += [pytest.param(s, id=s, marks=pytest.mark.xfail(
        reason=f"calls the suite's own fixture {what} that a product server does not have", strict=False))
        for s, what in FIXTURE_ONLY.items()]
    return params


@pytest.mark.parametrize("scenario", _scenario_params())
def test_conformance_scenario(scenario: str, server: Server, suite_run: dict[str, Any], request) -> None:
    capability = NEEDS_CAPABILITY.get(scenario)
    if capability and capability not in (server.initialize.get("capabilities") or {}):
        request.applymarker(pytest.mark.xfail(
            reason=f"the server does not declare the {capability!r} capability in its initialize result",
            strict=False))
    checks = suite_run["checks"].get(scenario, [])
    output = suite_run["sections"].get(scenario) or suite_run["output"]
    assert _passed(checks), _report(scenario, checks, output, server)


@functools.cache
def _suite_scenarios() -> tuple[str, ...]:
    proc = subprocess.run([*RUNNER, "list", "--server"], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, check=True)
    return tuple(re.findall(r"^\s*-\s+(\S+)", proc.stdout, flags=re.MULTILINE))


def test_every_suite_scenario_is_listed() -> None:
    """A scenario the suite has (e.g. after an upgrade) must be put in one of this module's lists."""
    suite = _suite_scenarios()
    assert suite, "`conformance list --server` listed no scenarios"
    listed = {*MUST_PASS, *NEEDS_CAPABILITY, *FIXTURE_ONLY}
    unlisted = [s for s in suite if s not in listed]
    assert not unlisted, (f"the conformance suite has scenarios this module does not list: {unlisted}; add each "
                          "to MUST_PASS, NEEDS_CAPABILITY or FIXTURE_ONLY in tests/mcp/test_conformance.py")


def test_every_listed_scenario_is_in_the_suite() -> None:
    """A listed scenario the suite no longer has (renamed, removed) would otherwise pass unnoticed as xfail."""
    suite = set(_suite_scenarios())
    gone = [s for s in [*MUST_PASS, *NEEDS_CAPABILITY, *FIXTURE_ONLY] if s not in suite]
    assert not gone, f"scenarios listed in tests/mcp/test_conformance.py that the suite no longer has: {gone}"
