"""The LangChain tool's ``ToolMessage`` (``content_and_artifact``) goes through the chat models' OFFLINE
request builders (no API key, no network) without error, inside ``[HumanMessage, AIMessage(tool_calls),
ToolMessage]``: OpenAI Chat Completions and Responses (``ChatOpenAI._get_request_payload``, with and
without ``use_responses_api``) and Anthropic Messages (``ChatAnthropic._get_request_payload``).
Checked against langchain-openai 1.7.4, langchain-anthropic 1.7.10, langchain-core 1.8.3.
The same chain for the MCP server's results, and why an image in a Chat Completions ``role: "tool"``
message converts offline but is refused by the live API: tests/mcp/test_client_payloads.py.
"""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("langchain_openai")
pytest.importorskip("langchain_anthropic")

from langchain_core.messages import AIMessage, HumanMessage, ToolMessage  # noqa: E402

from segzero_tool.agents import SegmentByReasoningTool  # noqa: E402

QUERY = "What can I have if I'm thirsty?"
CHAT, RESPONSES, ANTHROPIC = "openai-chat-completions", "openai-responses", "anthropic-messages"


def request_payload(converter: str, messages: list[Any]) -> dict[str, Any]:
    if converter == ANTHROPIC:
        from langchain_anthropic import ChatAnthropic

        return ChatAnthropic(model="claude-sonnet-4-5", api_key="offline")._get_request_payload(messages)
    from langchain_openai import ChatOpenAI

    model = ChatOpenAI(model="gpt-4o-mini", api_key="offline", use_responses_api=converter == RESPONSES)
    return model._get_request_payload(messages)


def tool_parts(converter: str, payload: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``(parts, item)``: the tool answer's content parts in the payload, and the item holding them."""
    if converter == CHAT:
        [item] = [m for m in payload["messages"] if m["role"] == "tool"]
        out = item["content"]
    elif converter == RESPONSES:
        [item] = [i for i in payload["input"] if i.get("type") == "function_call_output"]
        out = item["output"]
    else:
        [item] = [b for m in payload["messages"] if m["role"] == "user" and isinstance(m["content"], list)
                  for b in m["content"] if isinstance(b, dict) and b.get("type") == "tool_result"]
        out = item["content"]
    return ([{"type": "text", "text": out}] if isinstance(out, str) else list(out)), item


def run(tool: SegmentByReasoningTool, **args: Any) -> tuple[ToolMessage, list[Any]]:
    message = tool.invoke({"type": "tool_call", "id": "call_1", "name": tool.name, "args": args})
    assert isinstance(message, ToolMessage)
    return message, [HumanMessage(f"Look at the photo. {QUERY}"),
                     AIMessage("", tool_calls=[{"type": "tool_call", "id": "call_1", "name": tool.name,
                                                "args": args}]),
                     message]


@pytest.fixture(params=[CHAT, RESPONSES, ANTHROPIC])
def converter(request: pytest.FixtureRequest) -> str:
    return request.param


def test_default_tool_message_converts(converter, make_pipeline, coffee):
    message, messages = run(SegmentByReasoningTool.from_pipeline(make_pipeline()), image=str(coffee), query=QUERY)
    assert message.status == "success" and isinstance(message.content, str)

    parts, _ = tool_parts(converter, request_payload(converter, messages))

    assert [p["type"] for p in parts] in (["text"], ["input_text"])
    assert parts[0]["text"] == message.content and "Found 2 object(s)" in parts[0]["text"]


def test_include_image_tool_message_converts_with_a_base64_image(converter, make_pipeline, coffee):
    tool = SegmentByReasoningTool.from_pipeline(make_pipeline(), include_image=True)
    message, messages = run(tool, image=str(coffee), query=QUERY)
    text_block, image_block = message.content
    assert image_block["type"] == "image" and image_block["mime_type"] == "image/jpeg"

    parts, _ = tool_parts(converter, request_payload(converter, messages))

    assert len(parts) == 2 and "Found 2 object(s)" in parts[0]["text"]
    image = parts[1]
    if converter == ANTHROPIC:
        assert image["type"] == "image"
        assert image["source"] == {"type": "base64", "media_type": "image/jpeg", "data": image_block["base64"]}
    else:
        url = image["image_url"]["url"] if converter == CHAT else image["image_url"]
        assert image["type"] == ("image_url" if converter == CHAT else "input_image")
        assert url == f"data:image/jpeg;base64,{image_block['base64']}"


def test_tool_error_message_converts(converter, make_pipeline, tmp_path):
    tool = SegmentByReasoningTool.from_pipeline(make_pipeline(), allowed_roots=(tmp_path,))
    message, messages = run(tool, image="/etc/passwd", query=QUERY)
    assert message.status == "error"

    parts, item = tool_parts(converter, request_payload(converter, messages))

    assert "outside the folders" in parts[0]["text"]
    if converter == ANTHROPIC:
        assert item["is_error"] is True
