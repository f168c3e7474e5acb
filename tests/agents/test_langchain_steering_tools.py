"""The LangChain steering tools (``make_steering_tools``): segment_by_prompts -> inspect_result ->
refine_object -> select_objects over one shared store of live results (also ``segment_by_reasoning``'s),
tool errors instead of tracebacks, the inspection picture through the OpenAI and Anthropic converters
(offline request builders), async, and the ``langchain-tests`` unit suite for ``segment_by_prompts``."""

from __future__ import annotations

import asyncio
import base64
import re
from typing import Any

import pytest

pytest.importorskip("langchain_core")

from langchain_core.messages import AIMessage, HumanMessage, ToolMessage  # noqa: E402
from scripted import BoxSegmenter  # noqa: E402

from segzero_tool import SegZeroPipeline  # noqa: E402
from segzero_tool.agents import (  # noqa: E402
    InspectResultTool,
    SegmentByPromptsTool,
    SegmentByReasoningTool,
    make_steering_tools,
    new_result_store,
)
from segzero_tool.result import SegmentationResult  # noqa: E402

RID = re.compile(r"result_id (r-[0-9a-f]{16})")
OBJECTS = [{"box": [10, 10, 100, 100], "label": "cup"}, {"points": [[300, 200]]}]


def call(tool, **args: Any) -> ToolMessage:
    message = tool.invoke({"type": "tool_call", "id": "call_1", "name": tool.name, "args": args})
    assert isinstance(message, ToolMessage)
    return message


def rid_of(message: ToolMessage) -> str:
    text = message.content if isinstance(message.content, str) else message.content[0]["text"]
    return RID.search(text).group(1)


@pytest.fixture
def no_reasoner_tools():
    return make_steering_tools(SegZeroPipeline(None, BoxSegmenter()))


def test_names_and_schemas(no_reasoner_tools, make_pipeline):
    assert [t.name for t in no_reasoner_tools] == ["segment_by_prompts", "refine_object", "inspect_result",
                                                  "select_objects"]
    stores = {id(t.handles) for t in no_reasoner_tools}
    assert len(stores) == 1
    with_reasoning = make_steering_tools(make_pipeline())
    assert [t.name for t in with_reasoning][0] == "segment_by_reasoning"
    assert len({id(t.handles) for t in with_reasoning}) == 1
    schema = no_reasoner_tools[0].tool_call_schema.model_json_schema()
    assert set(schema["properties"]) == {"image", "objects", "query"}
    assert set(no_reasoner_tools[1].tool_call_schema.model_json_schema()["properties"]) == {
        "result_id", "index", "add_points", "remove_points", "box"}


def test_prompt_inspect_refine_select(no_reasoner_tools, coffee):
    prompts, refine, inspect, select = no_reasoner_tools
    first = call(prompts, image=str(coffee), objects=OBJECTS)
    assert first.status == "success" and first.content.startswith("Found 2 object(s) from 2 prompted objects")
    assert isinstance(first.artifact, SegmentationResult) and first.artifact.objects[0].box == (10, 10, 100, 100)
    rid = rid_of(first)

    seen = call(inspect, result_id=rid, crops=True)
    text, image = seen.content
    assert text["type"] == "text" and f"result_id {rid}" in text["text"] and "#0" in text["text"]
    assert image["type"] == "image" and image["mime_type"] in ("image/png", "image/jpeg")
    assert base64.b64decode(image["base64"])[:4] in (b"\x89PNG", b"\xff\xd8\xff\xe0", b"\xff\xd8\xff\xdb")
    assert seen.artifact is first.artifact

    better = call(refine, result_id=rid, index=0, remove_points=[[20, 20]])
    rid2 = rid_of(better)
    assert rid2 != rid and f"the earlier result {rid} is unchanged" in better.content
    assert better.artifact.objects[0].negative_points == ((20, 20),)
    assert not better.artifact.objects[0].mask[20, 20] and first.artifact.objects[0].mask[20, 20]
    assert first.artifact.objects[0].area == 91 * 91  # the old result is as it was

    final = call(select, result_id=rid2, indices=[0])
    assert len(final.artifact.objects) == 1 and final.artifact.objects[0].label == "cup"
    # the image of an earlier result (and so its cached embedding) is reused by id
    again = call(prompts, image=rid2, objects='[{"box": [1, 2, 30, 40]}]')
    assert again.status == "success" and again.artifact.image is first.artifact.image


def test_the_same_picture_is_decoded_once(monkeypatch, make_pipeline, coffee):
    """Both LangChain tools load images through the pipeline's decoded-image cache."""
    import segzero_tool.images as images

    decodes = []
    real = images._open_pil
    monkeypatch.setattr(images, "_open_pil", lambda *a, **k: decodes.append(1) or real(*a, **k))
    pipe = make_pipeline()
    (prompts,) = [t for t in make_steering_tools(pipe) if t.name == "segment_by_prompts"]
    a = call(prompts, image=str(coffee), objects=OBJECTS)
    b = call(prompts, image=str(coffee), objects=OBJECTS)
    assert len(decodes) == 1 and a.artifact.image is b.artifact.image
    SegmentByReasoningTool(pipeline=pipe).invoke({"image": str(coffee), "query": "the cup"})
    assert len(decodes) == 1 and pipe.image_cache.stats()["hits"] == 2


def test_a_reasoning_result_can_be_refined(make_pipeline, coffee):
    tools = make_steering_tools(make_pipeline())
    reason, _, refine, inspect, select = tools
    msg = call(reason, image=str(coffee), query="what can I drink?")
    rid = rid_of(msg)
    assert "Found 2 object(s) for the query" in msg.content
    refined = call(refine, result_id=rid, index=1, add_points=[[450, 300]])
    assert refined.status == "success" and refined.artifact.query == "what can I drink?"
    assert call(select, result_id=rid_of(refined), indices=[1]).artifact.objects[0].box == \
        msg.artifact.objects[1].box
    assert call(inspect, result_id=rid, indices=[1]).status == "success"


def test_an_existing_reasoning_tool_joins_the_store(make_pipeline, coffee):
    store = new_result_store()
    reason = SegmentByReasoningTool.from_pipeline(make_pipeline())
    assert reason.handles is None and "result_id" not in call(reason, image=str(coffee), query="q").content
    tools = make_steering_tools(make_pipeline(), handles=store, reasoning_tool=reason)
    assert tools[0] is reason and all(t.handles is store for t in tools)
    assert rid_of(call(reason, image=str(coffee), query="q")) in store


@pytest.mark.parametrize(("tool_index", "args", "message"), [
    (0, {"image": "examples/coffee.png", "objects": []}, "objects is empty"),
    (0, {"image": "examples/coffee.png", "objects": [{"box": ["a", 1, 2, 3]}]}, "objects[0].box must be 4 numbers"),
    (0, {"image": "examples/coffee.png", "objects": [{"box": [5000, 5000, 6000, 6000]}]}, "lies entirely outside"),
    (0, {"image": "examples/coffee.png", "objects": [{"negative_points": [[5, 5]]}]}, "only negative points"),
    (0, {"image": "/etc/passwd", "objects": [{"box": [1, 1, 5, 5]}]}, "outside the folders"),
    (0, {"image": "r-0123456789abcdef", "objects": [{"box": [1, 1, 5, 5]}]}, "unknown result id"),
    (0, {"image": "", "objects": [{"box": [1, 1, 5, 5]}]}, "`image` is empty"),
    (1, {"result_id": "r-0123456789abcdef", "index": 0, "add_points": [[1, 1]]}, "unknown result id"),
    (1, {"result_id": "RID", "index": 9, "add_points": [[1, 1]]}, "index must be an integer from 0 to 1"),
    (1, {"result_id": "RID", "index": 0}, "nothing to refine"),
    (1, {"result_id": "RID", "index": "x"}, "Invalid arguments for refine_object"),
    (2, {"result_id": "RID", "indices": [7]}, "indices [7] out of range"),
    (2, {"result_id": 5}, "Invalid arguments for inspect_result"),
    (3, {"result_id": "RID", "indices": [5]}, "indices[0] must be an object index (0 to 1); got 5"),
    (3, {"result_id": "nope", "indices": [0]}, "unknown result id 'nope'"),
])
def test_bad_input_is_a_tool_error_not_a_traceback(no_reasoner_tools, coffee, tool_index, args, message):
    rid = rid_of(call(no_reasoner_tools[0], image=str(coffee), objects=OBJECTS))
    args = {k: (rid if v == "RID" else v) for k, v in args.items()}
    msg = call(no_reasoner_tools[tool_index], **args)
    assert msg.status == "error" and message in msg.content, msg.content
    assert "Traceback" not in msg.content


def test_an_expired_result_says_what_to_send(coffee):
    store = new_result_store(max_count=1)
    prompts, refine, _, _ = make_steering_tools(SegZeroPipeline(None, BoxSegmenter()), handles=store)
    old = rid_of(call(prompts, image=str(coffee), objects=OBJECTS))
    call(prompts, image=str(coffee), objects=OBJECTS)
    msg = call(refine, result_id=old, index=0, add_points=[[5, 5]])
    assert msg.status == "error" and "evicted" in msg.content and "segment_by_prompts" in msg.content


def test_include_image_puts_the_overlay_in(coffee):
    prompts = make_steering_tools(SegZeroPipeline(None, BoxSegmenter()), include_image=True)[0]
    text, image = call(prompts, image=str(coffee), objects=OBJECTS).content
    assert "prompted objects" in text["text"] and image["mime_type"] == "image/jpeg"


def test_async(no_reasoner_tools, coffee):
    prompts, refine = no_reasoner_tools[:2]

    async def go():
        first = await prompts.ainvoke({"type": "tool_call", "id": "1", "name": prompts.name,
                                       "args": {"image": str(coffee), "objects": OBJECTS}})
        return await refine.ainvoke({"type": "tool_call", "id": "2", "name": refine.name,
                                     "args": {"result_id": rid_of(first), "index": 1, "add_points": [[310, 210]]}})

    assert asyncio.run(go()).status == "success"


# --- the inspection picture reaches both chat-model converters ------------------------------------

CHAT, RESPONSES, ANTHROPIC = "openai-chat-completions", "openai-responses", "anthropic-messages"


@pytest.mark.parametrize("converter", [CHAT, RESPONSES, ANTHROPIC])
def test_inspection_converts_with_its_image(converter, no_reasoner_tools, coffee):
    pytest.importorskip("langchain_openai")
    pytest.importorskip("langchain_anthropic")
    from test_tool_payloads import request_payload, tool_parts

    prompts, _, inspect, _ = no_reasoner_tools
    rid = rid_of(call(prompts, image=str(coffee), objects=OBJECTS))
    args = {"result_id": rid}
    message = call(inspect, **args)
    messages = [HumanMessage("Check the masks."),
                AIMessage("", tool_calls=[{"type": "tool_call", "id": "call_1", "name": inspect.name, "args": args}]),
                message]
    parts, _ = tool_parts(converter, request_payload(converter, messages))
    text_block, image_block = message.content
    assert len(parts) == 2 and f"result_id {rid}" in parts[0]["text"]
    mime = image_block["mime_type"]
    if converter == ANTHROPIC:
        assert parts[1]["source"] == {"type": "base64", "media_type": mime, "data": image_block["base64"]}
    else:
        url = parts[1]["image_url"]["url"] if converter == CHAT else parts[1]["image_url"]
        assert url == f"data:{mime};base64,{image_block['base64']}"


# --- langchain-tests ------------------------------------------------------------------------------

langchain_tests = pytest.importorskip("langchain_tests")
from langchain_tests.unit_tests import ToolsUnitTests  # noqa: E402


class TestSegmentByPromptsUnit(ToolsUnitTests):
    @property
    def tool_constructor(self) -> type[SegmentByPromptsTool]:
        return SegmentByPromptsTool

    @property
    def tool_constructor_params(self) -> dict[str, Any]:
        return {"pipeline": SegZeroPipeline(None, BoxSegmenter())}

    @property
    def tool_invoke_params_example(self) -> dict[str, Any]:
        return {"image": "examples/coffee.png", "objects": [{"box": [10, 10, 100, 100]}]}


class TestInspectResultUnit(ToolsUnitTests):
    @property
    def tool_constructor(self) -> type[InspectResultTool]:
        return InspectResultTool

    @property
    def tool_constructor_params(self) -> dict[str, Any]:
        return {"pipeline": SegZeroPipeline(None, BoxSegmenter())}

    @property
    def tool_invoke_params_example(self) -> dict[str, Any]:
        return {"result_id": "r-0123456789abcdef", "indices": [0], "crops": True}
