"""``langchain-mcp-adapters`` (what LangChain / LangGraph agents use) loads the tool from a real
stdio subprocess and calls it: text content for the model, the structured result as the artifact.
(The adapters require mcp<2, so this test is skipped in an mcp 2.x environment.)"""

from __future__ import annotations

import sys

import pytest

pytest.importorskip("langchain_mcp_adapters")
if int(__import__("importlib.metadata").metadata.version("mcp").split(".")[0]) >= 2:
    pytest.skip("langchain-mcp-adapters requires mcp<2; this environment has mcp 2.x", allow_module_level=True)

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def test_langchain_adapters_load_and_call_the_tool(kit, tiny_models, image_root, tmp_path):
    from langchain_mcp_adapters.client import MultiServerMCPClient
    from langchain_mcp_adapters.tools import load_mcp_tools

    client = MultiServerMCPClient({"segzero": {
        "transport": "stdio", "command": sys.executable,
        "args": ["-m", "segzero_tool.mcp_server", *kit.model_args(tmp_path, tiny_models), "--allow-root",
                 str(image_root)],
        "env": kit.server_env(), "cwd": str(image_root),
    }})
    async with client.session("segzero") as session:  # one server process for the whole test
        tools = {t.name: t for t in await load_mcp_tools(session)}
        tool = tools["segment_by_reasoning"]
        assert "reasoning" in tool.description and set(tool.args) >= {"image", "query", "mask_encoding"}
        message = await tool.ainvoke({"type": "tool_call", "id": "call-1", "name": tool.name,
                                      "args": {"image": "coffee.png", "query": "What can I have if I'm thirsty?"}})
        refused = await tool.ainvoke({"type": "tool_call", "id": "call-2", "name": tool.name,
                                      "args": {"image": "/etc/passwd", "query": "q"}})
    out = message.artifact["structured_content"]
    assert [o["box"] for o in out["objects"]] == kit.BOXES and out["parse_status"] == "ok"
    texts = [b["text"] for b in message.content if isinstance(b, dict) and b.get("type") == "text"]
    assert "Found 2 object(s)" in texts[0] and out["result_id"] in texts[0]
    assert refused.status == "error" and "outside the folders" in str(refused.content)
