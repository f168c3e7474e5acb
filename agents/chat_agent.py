"""A tool-calling chat agent that sees through ``segment_by_reasoning``.

>>> from langchain_anthropic import ChatAnthropic
>>> from segzero_tool.agents import SegmentByReasoningTool
>>> from segzero_tool.agents.chat_agent import build_segmentation_agent
>>> agent = build_segmentation_agent(ChatAnthropic(model="claude-sonnet-4-5"),
...                                  SegmentByReasoningTool.from_pipeline(pipe))
>>> out = agent.invoke({"messages": [("user", "examples/coffee.png: segment what I could drink")]})
>>> out["messages"][-1].text       # an answer citing "#0 (box [x1, y1, x2, y2])"

The graph is the classic loop: ``agent`` (the chat model with the tools bound) → ``tools`` (a
``ToolNode``) → ``agent`` … until the model answers without tool calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

from langchain_core.messages import AnyMessage, SystemMessage, ToolMessage
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import BaseTool
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langgraph.checkpoint.base import BaseCheckpointSaver

DEFAULT_SYSTEM_PROMPT = """\
You help people find things in images. You cannot see the images yourself; you see them through the \
`segment_by_reasoning` tool, which reasons about an image and returns one box, point(s) and mask per object.

When to call it: whenever the user asks to find, segment, point at, count, measure or pick up something in \
an image, or asks a question whose answer depends on what is in the image or where it is ("what could I \
drink here?"). Pass the image exactly as the user gave it (a file path, a data: URL or base64) and a \
query in plain words; the user's own request is often the best query, since the tool can reason \
("something to drink from"). Make one request per call. If nothing is found, try once more with a more \
concrete query, then tell the user.

How to answer: cite every object you mention by its index and box exactly as the tool reported them, e.g. \
"#0 (box [120, 60, 419, 320])", and say what it is. Boxes are [x1, y1, x2, y2] and points (x, y) in pixels \
of the original image, origin at the top-left corner, x to the right, y down. Never invent objects or \
coordinates the tool did not return."""


class AgentState(TypedDict):
    """The chat agent's state: the conversation (``add_messages`` reducer)."""

    messages: Annotated[list[AnyMessage], add_messages]


def _json_artifact(message: Any, mask_encoding: str) -> Any:
    """Replace a ``SegmentationResult`` artifact by ``result.to_dict(mask_encoding)`` (JSON-ready)."""
    from segzero_tool.result import SegmentationResult

    if isinstance(message, ToolMessage) and isinstance(message.artifact, SegmentationResult):
        return message.model_copy(update={"artifact": message.artifact.to_dict(mask_encoding)})
    return message


def build_segmentation_agent(
    model: BaseChatModel,
    tool: BaseTool | Sequence[BaseTool],
    *,
    system_prompt: str | None = None,
    checkpointer: BaseCheckpointSaver | None = None,
    json_artifacts: bool = True,
    mask_encoding: str = "rle",
    name: str = "segmentation_agent",
) -> Any:
    """Compile a tool-calling agent graph around ``segment_by_reasoning`` (and any other tools).

    Args:
        model: any chat model that supports tool calling (``bind_tools``), e.g. ``ChatAnthropic``.
        tool: a :class:`~segzero_tool.agents.tool.SegmentByReasoningTool`, or a list of tools.
        system_prompt: replaces :data:`DEFAULT_SYSTEM_PROMPT`; ``""`` sends none. It is prepended to
            every model call and not stored in the conversation.
        checkpointer: e.g. ``InMemorySaver()`` to keep conversations per ``thread_id``.
        json_artifacts: store each ``SegmentationResult`` artifact in the state as
            ``result.to_dict(mask_encoding)`` (JSON-ready, rebuilt with
            ``SegmentationResult.from_dict``), so checkpoints and the LangGraph server can serialise
            it; ``False`` keeps the live objects (fine without a checkpointer).
        mask_encoding: ``rle`` (default), ``polygons``, ``both`` or ``none`` for those dicts.
        name: the graph's name.

    Returns:
        The compiled graph: ``invoke({"messages": [...]})`` → ``{"messages": [...]}``; nodes
        ``agent`` and ``tools``.

    Raises:
        ValueError: no tools.
        TypeError: the model does not support tool calling.
    """
    from langgraph.graph import START, StateGraph
    from langgraph.prebuilt import ToolNode, tools_condition

    tools = [tool] if isinstance(tool, BaseTool) else list(tool)
    if not tools:
        raise ValueError("build_segmentation_agent needs at least one tool (a SegmentByReasoningTool)")
    try:
        bound = model.bind_tools(tools)
    except NotImplementedError:
        raise TypeError(f"{type(model).__name__} does not support tool calling (bind_tools); "
                        "use a chat model that does, such as ChatAnthropic") from None
    prompt = DEFAULT_SYSTEM_PROMPT if system_prompt is None else system_prompt

    def _messages(state: dict[str, Any]) -> list[AnyMessage]:
        return [SystemMessage(prompt), *state["messages"]] if prompt else list(state["messages"])

    def call_model(state: dict[str, Any]) -> dict[str, Any]:
        return {"messages": [bound.invoke(_messages(state))]}

    async def acall_model(state: dict[str, Any]) -> dict[str, Any]:
        return {"messages": [await bound.ainvoke(_messages(state))]}

    wrappers: dict[str, Any] = {}
    if json_artifacts:
        def wrap(request: Any, execute: Any) -> Any:
            return _json_artifact(execute(request), mask_encoding)

        async def awrap(request: Any, execute: Any) -> Any:
            return _json_artifact(await execute(request), mask_encoding)

        wrappers = {"wrap_tool_call": wrap, "awrap_tool_call": awrap}

    g = StateGraph(AgentState)
    g.add_node("agent", RunnableLambda(call_model, afunc=acall_model, name="agent"))
    g.add_node("tools", ToolNode(tools, **wrappers))
    g.add_edge(START, "agent")
    g.add_conditional_edges("agent", tools_condition, ["tools", "__end__"])
    g.add_edge("tools", "agent")
    return g.compile(checkpointer=checkpointer, name=name)


__all__ = ["DEFAULT_SYSTEM_PROMPT", "AgentState", "build_segmentation_agent"]
