"""A real ``segzero-mcp`` stdio subprocess, started the way an MCP client configuration starts it
(``python -m segzero_tool.mcp_server`` = the ``segzero-mcp`` script), with the scripted reasoner and
the tiny SAM2 loaded through the command-line flags."""

from __future__ import annotations

import base64
import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def test_stdio_subprocess_lists_calls_and_reads_a_mask(kit, tiny_models, image_root, tmp_path):
    args = ["-m", "segzero_tool.mcp_server", *kit.model_args(tmp_path, tiny_models), "--allow-root", str(image_root)]
    errlog = tmp_path / "stderr.txt"
    with open(errlog, "w") as err:
        async with kit.connect_stdio(args, kit.server_env(), image_root, err) as client:
            tools = await client.list_tools()
            assert [t["name"] for t in tools] == ["segment_by_reasoning", "segment_by_prompts", "refine_object", "inspect_result", "select_objects",
            "track_by_reasoning"]
            tool = tools[0]
            assert tool["name"] == "segment_by_reasoning" and "outputSchema" in tool
            res = await client.call({"image": "coffee.png", "query": "What can I have if I'm thirsty?"})
            assert res.get("isError") is not True, res
            out = res["structuredContent"]
            assert [o["box"] for o in out["objects"]] == kit.BOXES
            (blob,) = await client.read(out["mask_uris"][1])
            mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(blob["blob"]))))
            assert mask.shape == (400, 600) and mask.max() == 255
            bad = await client.call({"image": "/etc/passwd", "query": "q"})
            assert bad["isError"] is True and "outside the folders" in bad["content"][0]["text"]
    log = errlog.read_text()
    assert "loading models" in log and "models loaded" in log  # progress on stderr


def test_cli_errors_are_one_line_with_exit_status(kit, tmp_path):
    cases = [
        (["--max-concurrency", "0"], 2, "must be at least 1"),
        (["--bogus-flag"], 2, "unrecognized arguments"),
        (["--reasoner-backend", "nope.nothing:Missing", "--reasoner", str(kit.script_folder(tmp_path))], 5, ""),
        (["--reasoner", "no-such-model"], 4, "unknown reasoner 'no-such-model'"),
        (["--segmenter-backend", "nope.nothing:Missing"], 5, "cannot import module 'nope.nothing'"),
    ]
    for argv, code, message in cases:
        proc = subprocess.run([sys.executable, "-m", "segzero_tool.mcp_server", *argv], capture_output=True,
                              text=True, env=kit.server_env(), cwd=tmp_path, timeout=120, stdin=subprocess.DEVNULL)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == code, proc.stderr
        assert lines[-1].startswith("segzero-mcp: error: ") and message in lines[-1], proc.stderr
        assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_example_client_configs_start_segzero_mcp_with_valid_flags(kit, tmp_path):
    import json

    from segzero_tool.mcp_server.settings import build_parser

    folder = kit.REPO / "examples" / "mcp"
    seen = 0
    for path in sorted(folder.glob("*.json")):
        config = json.loads(path.read_text())
        servers = config.get("servers") or config["mcpServers"]
        for entry in servers.values():
            if "command" in entry:
                assert entry["command"].endswith("segzero-mcp"), path
                build_parser().parse_args(entry["args"])  # raises SettingsError on a bad flag
                seen += 1
            else:
                assert entry["url"] == "http://127.0.0.1:8765/mcp" and "Bearer" in entry["headers"]["Authorization"]
    assert seen == 4
    # every `claude mcp add ... -- segzero-mcp ARGS` line, in the examples and in the README's client table
    import shlex

    lines = [line for line in (folder / "claude_code.md").read_text().splitlines()
             if line.startswith("claude mcp add segzero -- segzero-mcp")]
    table = [cell.strip("` ") for line in (kit.REPO / "README.md").read_text().splitlines() if line.startswith("| Claude Code")
             for cell in line.split("|") if "claude mcp add" in cell]
    assert len(lines) == 3 and len(table) == 2 and set(table) <= set(lines)
    for line in lines:
        args = shlex.split(line.split("segzero-mcp", 1)[1])
        build_parser().parse_args(args)
