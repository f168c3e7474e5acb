"""A ``segment_by_reasoning`` result goes through each LangChain MCP client and then through the chat
models' OFFLINE request builders (no API key, no network) into provider request payloads (issue #10).

The chain under test: server -> MCP session -> client (MCP content blocks -> LangChain content blocks
-> ``ToolMessage``) -> ``[HumanMessage, AIMessage(tool_calls), ToolMessage]`` -> request payload of

* OpenAI Chat Completions: ``ChatOpenAI(...)._get_request_payload`` (-> ``_convert_message_to_dict``),
* OpenAI Responses API: ``ChatOpenAI(..., use_responses_api=True)._get_request_payload``
  (-> ``_construct_responses_api_payload`` / ``_construct_responses_api_input``),
* Anthropic Messages: ``ChatAnthropic(...)._get_request_payload`` (-> ``_format_messages``).

Checked against langchain-openai 1.7.4, langchain-anthropic 1.7.10, langchain-core 1.8.3,
langchain-mcp-adapters 0.3.2 on mcp 1.30.0, and langchain 1.5.2 (``langchain.mcp``) with fastmcp 4.2.3
on mcp 2.3.0.

Why: both clients turn a ``resource_link`` block into an image block (``image/*``) or a file block
(anything else) whose ``url`` is our ``segzero://`` URI, and langchain-openai's Chat Completions
conversion refuses file URLs ("OpenAI Chat Completions does not support file URLs."). So by default
the server sends only a text block (every URI is in that text and in the structured content), plus an
inline base64 image with ``include_overlay=true``; ``resource_link`` blocks only with
``--resource-links`` (``ServerSettings(resource_links=True)``), whose trade-off is documented below.

Clients:

* ``langchain-mcp-adapters`` over an in-memory session of the real server (mcp 1.x only: the adapters
  require ``mcp<2``, so these cases skip under the mcp 2.x check).
* ``langchain.mcp`` (``MCPAdapter`` over the in-process server): the ``langchain`` package (1.5.2
  checked) has its own MCP client (beta: ``langchain.mcp.MCPAdapter`` / ``as_langchain_tool``, the same
  block conversion as the adapters). It needs the ``langchain[mcp]`` extra, ``fastmcp>=4.0.11``, which is
  built on mcp 2.x (``mcp.server.mcpserver``, ``mcp.types.version``): it cannot be imported next to
  mcp 1.x, and fastmcp is not in the dev extra, so these cases skip unless fastmcp is installed on the
  mcp 2.x line.

Not covered offline: what the providers' servers accept. The OpenAI SDK types a Chat Completions
``role: "tool"`` message as text parts only (``ChatCompletionToolMessageParam``), and the API answers an
image there with 400 "Image URLs are only allowed for messages with role 'user', but this message with
role 'tool' contains an image URL" (reported in OpenHands/OpenHands#7700). langchain-openai still puts
the ``include_overlay`` picture there as an ``image_url`` part: the conversion works, the live Chat
Completions request does not (leave ``include_overlay`` off there; the Responses API's
``function_call_output`` and Anthropic's ``tool_result`` take images).
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import AsyncIterator
from typing import Any

import pytest

pytest.importorskip("mcp")
pytest.importorskip("langchain_openai")
pytest.importorskip("langchain_anthropic")

from langchain_core.messages import AIMessage, HumanMessage, ToolMessage  # noqa: E402
from scripted import ScriptedReasoner  # noqa: E402

from segzero_tool.mcp_server import compat  # noqa: E402

pytestmark = pytest.mark.anyio

TOOL = "segment_by_reasoning"
QUERY = "What can I have if I'm thirsty?"
NOTHING = "<think>Nothing here can be drunk.</think><answer>[]</answer>"
ADAPTERS, LANGCHAIN_MCP = "langchain-mcp-adapters", "langchain.mcp"
CHAT, RESPONSES, ANTHROPIC = "openai-chat-completions", "openai-responses", "anthropic-messages"


# --- clients ----------------------------------------------------------------------------------------


def _require(client: str) -> None:
    if client == ADAPTERS:
        pytest.importorskip("langchain_mcp_adapters")
        if compat.SDK_MAJOR >= 2:
            pytest.skip("langchain-mcp-adapters requires mcp<2; this environment has mcp 2.x")
        return
    try:
        _import_langchain_mcp()
    except ImportError as exc:
        pytest.skip(f"langchain.mcp is not usable here (needs langchain[mcp]: fastmcp>=4 on mcp 2.x): {exc}")


def _import_langchain_mcp() -> Any:
    from langchain_core._api import LangChainBetaWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LangChainBetaWarning)
        from langchain.mcp import MCPAdapter
    return MCPAdapter


@pytest.fixture(params=[ADAPTERS, LANGCHAIN_MCP])
def client(request: pytest.FixtureRequest) -> str:
    _require(request.param)
    return request.param


@contextlib.asynccontextmanager
async def mcp_tool(client: str, server: Any) -> AsyncIterator[Any]:
    """The LangChain tool that ``client`` makes of the server's ``segment_by_reasoning``, connected."""
    if client == ADAPTERS:
        from langchain_mcp_adapters.tools import load_mcp_tools
        from mcp.shared.memory import create_connected_server_and_client_session

        async with create_connected_server_and_client_session(server) as session:
            yield {t.name: t for t in await load_mcp_tools(session)}[TOOL]
    else:
        async with _import_langchain_mcp()(server) as adapter:  # in-process MCPServer target
            yield {t.name: t for t in await adapter.list_tools()}[TOOL]


async def call_tool(client: str, server: Any, **args: Any) -> ToolMessage:
    async with mcp_tool(client, server) as tool:
        message = await tool.ainvoke({"type": "tool_call", "id": "call_1", "name": TOOL, "args": args})
    assert isinstance(message, ToolMessage) and message.tool_call_id == "call_1"
    return message


# --- the chat models' offline request builders -------------------------------------------------------


def conversation(message: ToolMessage, args: dict[str, Any]) -> list[Any]:
    """What an agent sends after the tool ran: the question, the model's tool call, the tool's answer."""
    return [HumanMessage(f"Look at coffee.png. {QUERY}"),
            AIMessage("", tool_calls=[{"type": "tool_call", "id": message.tool_call_id, "name": TOOL,
                                       "args": args}]),
            message]


def request_payload(converter: str, messages: list[Any]) -> dict[str, Any]:
    if converter == ANTHROPIC:
        from langchain_anthropic import ChatAnthropic

        return ChatAnthropic(model="claude-sonnet-4-5", api_key="offline")._get_request_payload(messages)
    from langchain_openai import ChatOpenAI

    model = ChatOpenAI(model="gpt-4o-mini", api_key="offline", use_responses_api=converter == RESPONSES)
    return model._get_request_payload(messages)


def tool_output(converter: str, payload: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``(parts, item)``: the tool answer's content parts in the payload, and the item holding them."""
    if converter == CHAT:
        [item] = [m for m in payload["messages"] if m["role"] == "tool"]
        assert item["tool_call_id"] == "call_1"
        out = item["content"]
    elif converter == RESPONSES:
        [item] = [i for i in payload["input"] if i.get("type") == "function_call_output"]
        assert item["call_id"] == "call_1"
        out = item["output"]
    else:
        [item] = [b for m in payload["messages"] if m["role"] == "user" and isinstance(m["content"], list)
                  for b in m["content"] if isinstance(b, dict) and b.get("type") == "tool_result"]
        assert item["tool_use_id"] == "call_1"
        out = item["content"]
    parts = [{"type": "text", "text": out}] if isinstance(out, str) else list(out)
    return parts, item


def text_of(parts: list[dict[str, Any]]) -> str:
    return "\n".join(p["text"] for p in parts if p.get("type") in ("text", "input_text"))


def non_text(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in parts if p.get("type") not in ("text", "input_text")]


def inline_image(converter: str, part: dict[str, Any]) -> tuple[str, str]:
    """``(mime_type, base64)`` of an inline image part, in the converter's own shape."""
    if converter == ANTHROPIC:
        assert part["type"] == "image" and part["source"]["type"] == "base64", part.get("source", part)
        return part["source"]["media_type"], part["source"]["data"]
    url = part["image_url"]["url"] if converter == CHAT else part["image_url"]
    assert part["type"] == ("image_url" if converter == CHAT else "input_image")
    assert url.startswith("data:image/") and ";base64," in url, url[:60]
    header, data = url.split(",", 1)
    return header[len("data:"):].split(";")[0], data


@pytest.fixture(params=[CHAT, RESPONSES, ANTHROPIC])
def converter(request: pytest.FixtureRequest) -> str:
    return request.param


def uris(out: dict[str, Any]) -> list[str]:
    """Every URI of a result as the structured content gives it."""
    return [*out["mask_uris"], out["union_mask_uri"], out["overlay_uri"], out["result_uri"]]


# --- the default server ------------------------------------------------------------------------------


async def test_default_result_is_text_only_and_converts(client, converter, make_server):
    args = {"image": "coffee.png", "query": QUERY}
    message = await call_tool(client, make_server(), **args)
    parts, _ = tool_output(converter, request_payload(converter, conversation(message, args)))

    out = message.artifact["structured_content"]
    assert message.status == "success" and len(out["objects"]) == 2
    assert [b["type"] for b in message.content] == ["text"], "default result: one text block, no links"
    text = text_of(parts)
    assert non_text(parts) == []
    assert out["result_id"] in text and "Found 2 object(s)" in text
    missing = [u for u in uris(out) if u not in text]
    assert not missing, f"URIs only in the structured content, not in the text the model reads: {missing}"


async def test_overlay_arrives_as_base64_image(client, converter, make_server):
    args = {"image": "coffee.png", "query": QUERY, "include_overlay": True}
    message = await call_tool(client, make_server(), **args)
    parts, _ = tool_output(converter, request_payload(converter, conversation(message, args)))

    out = message.artifact["structured_content"]
    assert [b["type"] for b in message.content] == ["text", "image"]
    sent = message.content[1]
    assert sent["mime_type"] in ("image/png", "image/jpeg") and "url" not in sent
    assert out["result_id"] in text_of(parts) and all(u in text_of(parts) for u in out["mask_uris"])
    [image] = non_text(parts)
    assert inline_image(converter, image) == (sent["mime_type"], sent["base64"])


async def test_tool_error_converts_as_failed_tool_output(client, converter, make_server):
    args = {"image": "/etc/passwd", "query": "q"}
    message = await call_tool(client, make_server(), **args)
    assert message.status == "error" and message.artifact is None

    parts, item = tool_output(converter, request_payload(converter, conversation(message, args)))

    assert "outside the folders" in text_of(parts) and non_text(parts) == []
    if converter == ANTHROPIC:
        assert item["is_error"] is True


async def test_zero_objects_result_is_text_only_and_converts(client, converter, make_server):
    args = {"image": "coffee.png", "query": QUERY}
    message = await call_tool(client, make_server(ScriptedReasoner(NOTHING)), **args)
    parts, _ = tool_output(converter, request_payload(converter, conversation(message, args)))

    out = message.artifact["structured_content"]
    assert message.status == "success" and out["objects"] == [] and out["parse_status"] == "no_objects"
    assert [b["type"] for b in message.content] == ["text"]
    assert out["result_id"] in text_of(parts) and "No object" in text_of(parts) and non_text(parts) == []


# --- --resource-links: the links come back, with a known cost ---------------------------------------

#: What each converter does with the resource_link blocks (segzero:// URLs), as of the versions above.
#: Chat Completions refuses the result.json file block; the Responses API and Anthropic builders pass
#: the segzero:// URLs on unchanged (input_image / input_file, image / document ``url`` sources), which
#: a provider cannot fetch: the offline conversion works, the live request is expected to be refused.
LINK_PARTS = {
    RESPONSES: {"input_image": lambda p: p["image_url"], "input_file": lambda p: p["file_url"]},
    ANTHROPIC: {"image": lambda p: p["source"]["url"], "document": lambda p: p["source"]["url"]},
}


async def test_resource_links_option_keeps_the_links(client, converter, make_server):
    args = {"image": "coffee.png", "query": QUERY}
    message = await call_tool(client, make_server(resource_links=True), **args)
    out = message.artifact["structured_content"]
    linked = {b["url"]: b["type"] for b in message.content if b["type"] != "text"}
    assert linked == {**{u: "image" for u in out["mask_uris"]}, out["union_mask_uri"]: "image",
                      out["overlay_uri"]: "image", out["result_uri"]: "file"}
    assert message.content[0]["type"] == "text" and out["result_id"] in message.content[0]["text"]

    messages = conversation(message, args)
    if converter == CHAT:  # the documented trade-off of --resource-links
        with pytest.raises(ValueError, match="does not support file URLs"):
            request_payload(converter, messages)
        return
    parts, _ = tool_output(converter, request_payload(converter, messages))
    assert out["result_id"] in text_of(parts)
    passed_on = {LINK_PARTS[converter][p["type"]](p) for p in non_text(parts)}
    assert passed_on == set(uris(out)), json.dumps(non_text(parts))[:500]
