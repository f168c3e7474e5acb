"""The tool-calling chat agent, driven end to end by fake chat models over a scripted pipeline; and
the ``langgraph dev`` entry points (agents/graphs.py, langgraph.json)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("langgraph")

from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel, GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langgraph.checkpoint.memory import InMemorySaver

from segzero_tool.agents.chat_agent import DEFAULT_SYSTEM_PROMPT, build_segmentation_agent
from segzero_tool.agents.tool import SegmentByReasoningTool
from segzero_tool.result import SegmentationResult

REPO = Path(__file__).resolve().parents[2]
COFFEE = str(REPO / "examples" / "coffee.png")  # 600 x 400
CUP = ('<think>The mug holds coffee.</think><answer>[{"bbox_2d": [168,126,588,672], "point_2d": [378,420], '
       '"label": "mug"}]</answer>')
CUP_BOX = [int(168 * 600 / 840 + 0.5), int(126 * 400 / 840 + 0.5), int(588 * 600 / 840 + 0.5),
           int(672 * 400 / 840 + 0.5)]


def make_tool(answer: str = CUP) -> SegmentByReasoningTool:
    from scripted import BoxSegmenter, ScriptedReasoner

    from segzero_tool import SegZeroPipeline

    return SegmentByReasoningTool.from_pipeline(SegZeroPipeline(ScriptedReasoner(answer), BoxSegmenter()))


def tool_call(query: str, image: str = COFFEE, call_id: str = "call-1") -> AIMessage:
    return AIMessage("", tool_calls=[{"name": "segment_by_reasoning", "args": {"image": image, "query": query},
                                      "id": call_id}])


class ScriptedToolModel(GenericFakeChatModel):
    """``GenericFakeChatModel`` plus a no-op ``bind_tools`` (it records the tools)."""

    bound: list = []

    def bind_tools(self, tools, **kwargs):
        self.bound = list(tools)
        return self


class CitingModel(BaseChatModel):
    """Calls the tool for the user's request, then answers by citing the objects the tool reported
    (the '#i: box [...]' lines of the tool's content), as a good model would."""

    seen: list = []

    @property
    def _llm_type(self) -> str:
        return "citing-fake"

    def bind_tools(self, tools, **kwargs):
        return self

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        self.seen.append(list(messages))
        last = messages[-1]
        if isinstance(last, HumanMessage):
            image, _, request = last.text.partition(": ")
            msg = tool_call(request, image)
        else:
            found = re.findall(r"#(\d+): box (\[[^\]]*\])", last.text)
            msg = AIMessage("You could drink from " + ", ".join(f"#{i} (box {b})" for i, b in found) + "."
                            if found else "I found nothing to drink.")
        return ChatResult(generations=[ChatGeneration(message=msg)])


def test_segment_what_i_could_drink_end_to_end():
    model = CitingModel()
    agent = build_segmentation_agent(model, make_tool())
    out = agent.invoke({"messages": [HumanMessage(f"{COFFEE}: segment what I could drink")]})
    human, call, result, answer = out["messages"]
    assert call.tool_calls[0]["args"] == {"image": COFFEE, "query": "segment what I could drink"}
    assert isinstance(result, ToolMessage) and result.status == "success"
    assert f"#0: box {CUP_BOX}" in result.content and "original-image pixels" in result.content
    assert answer.text == f"You could drink from #0 (box {CUP_BOX})."
    # the system prompt goes to the model on every call but is not stored in the conversation
    assert all(isinstance(m[0], SystemMessage) and m[0].content == DEFAULT_SYSTEM_PROMPT for m in model.seen)
    assert len(model.seen) == 2 and not any(isinstance(m, SystemMessage) for m in out["messages"])


def test_artifacts_are_json_ready_and_rebuild_the_result():
    model = ScriptedToolModel(messages=iter([tool_call("what can I drink?"), AIMessage("#0 is the mug.")]))
    agent = build_segmentation_agent(model, make_tool(), checkpointer=InMemorySaver())
    cfg = {"configurable": {"thread_id": "t"}}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. langgraph's "Deserializing unregistered type"
        agent.invoke({"messages": [("user", "what can I drink?")]}, cfg)
        msg = agent.get_state(cfg).values["messages"][2]
    assert [t.name for t in model.bound] == ["segment_by_reasoning"]
    json.dumps(msg.artifact)
    result = SegmentationResult.from_dict(msg.artifact)
    assert list(result.objects[0].box) == CUP_BOX
    x1, y1, x2, y2 = CUP_BOX
    assert result.objects[0].mask.sum() == (x2 - x1 + 1) * (y2 - y1 + 1)


def test_live_artifacts_without_json_conversion():
    model = ScriptedToolModel(messages=iter([tool_call("the mug"), AIMessage("#0.")]))
    out = build_segmentation_agent(model, make_tool(), json_artifacts=False).invoke({"messages": [("user", "hi")]})
    artifact = out["messages"][2].artifact
    assert isinstance(artifact, SegmentationResult) and artifact.objects[0].label == "mug"


def test_bad_input_comes_back_as_an_error_message_and_the_loop_goes_on():
    model = ScriptedToolModel(messages=iter([tool_call("the mug", image="/no/such/photo.png"),
                                             AIMessage("I could not open that image.")]))
    out = build_segmentation_agent(model, [make_tool()]).invoke({"messages": [("user", "find the mug")]})
    err = out["messages"][2]
    assert err.status == "error" and "path" in err.content.lower()
    assert out["messages"][-1].text == "I could not open that image."


def test_streamed_updates_and_async():
    def agent():
        model = ScriptedToolModel(messages=iter([tool_call("the mug"), AIMessage("#0 (box ...)")]))
        return build_segmentation_agent(model, make_tool(), system_prompt="")

    updates = list(agent().stream({"messages": [("user", "mug?")]}, stream_mode="updates"))
    assert [next(iter(u)) for u in updates] == ["agent", "tools", "agent"]
    out = asyncio.run(agent().ainvoke({"messages": [("user", "mug?")]}))
    assert out["messages"][2].artifact["objects"][0]["box"] == CUP_BOX


def test_models_without_tool_calling_and_empty_tool_lists_are_refused():
    with pytest.raises(TypeError, match="tool calling"):
        build_segmentation_agent(FakeMessagesListChatModel(responses=[]), make_tool())
    with pytest.raises(ValueError, match="at least one tool"):
        build_segmentation_agent(ScriptedToolModel(messages=iter([])), [])


# --- langgraph dev ---------------------------------------------------------------------------------


def test_langgraph_json_points_at_graph_factories():
    cfg = json.loads((REPO / "langgraph.json").read_text())
    assert cfg["dependencies"] == ["."]
    for graph_id, spec in cfg["graphs"].items():
        path, _, attr = spec.partition(":")
        assert (REPO / path).is_file(), spec
        assert attr == graph_id and f"def {attr}(" in (REPO / path).read_text()


def test_graphs_module_imports_and_builds_without_loading_models():
    code = (
        "import sys\n"
        "from segzero_tool.agents import graphs\n"
        "g = graphs.robot_planner({'configurable': {}})\n"
        "assert sorted(g.get_graph().nodes) == ['__end__', '__start__', 'approve', 'check', 'execute', "
        "'geometry', 'observe', 'perceive', 'plan', 'resolve', 'understand_task'], g.get_graph().nodes\n"
        "assert graphs.robot_planner({}) is g\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules\n"
        "try:\n"
        "    graphs.segmentation_agent({})\n"
        "except graphs.AgentModelError as e:\n"
        "    assert 'SEGZERO_AGENT_MODEL' in str(e)\n"
        "else:\n"
        "    raise AssertionError('no model configured, yet a graph was built')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGZERO_")}
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_agent_factory_with_a_configured_model(monkeypatch):
    from segzero_tool.agents import graphs

    fake = ScriptedToolModel(messages=iter([]))
    monkeypatch.setattr(graphs, "load_chat_model", lambda spec: fake)
    graphs._agent_graph.cache_clear()
    g = graphs.segmentation_agent({"configurable": {"model": "fake:model"}})
    assert set(g.get_graph().nodes) >= {"agent", "tools"}
    assert [t.name for t in fake.bound] == ["segment_by_reasoning"]
    graphs._agent_graph.cache_clear()


def test_lazy_pipeline_loads_on_first_use(monkeypatch):
    from scripted import BoxSegmenter, ScriptedReasoner

    from segzero_tool import SegZeroPipeline
    from segzero_tool.agents.graphs import LazyPipeline

    built = []

    def build():
        built.append(1)
        return SegZeroPipeline(ScriptedReasoner(CUP), BoxSegmenter())

    lazy = LazyPipeline(build)
    tool = SegmentByReasoningTool.from_pipeline(lazy)
    assert built == []
    msg = tool.invoke({"type": "tool_call", "id": "1", "name": tool.name, "args": {"image": COFFEE, "query": "mug"}})
    assert built == [1] and msg.artifact.objects[0].label == "mug"
    asyncio.run(lazy.asegment(np.zeros((8, 8, 3), np.uint8), "mug"))
    assert built == [1]
