# /// script
# requires-python = ">=3.10"
# dependencies = ["segzero-tool[langchain]", "langchain-anthropic"]
# ///
"""A chat model that sees through ``segment_by_reasoning``: "segment what I could drink".

The model (Claude through ``langchain-anthropic`` by default; any tool-calling chat model works)
calls the tool, reads the objects it found and answers citing them by index and box.

Usage::

    pip install -e ".[langchain]" langchain-anthropic
    export ANTHROPIC_API_KEY=...
    python examples/agents/drink_agent.py examples/coffee.png "segment what I could drink"
    python examples/agents/drink_agent.py photo.jpg "what could I drink?" --preset light --device cpu
    python examples/agents/drink_agent.py photo.jpg "..." --model openai:gpt-4.1      # any provider:model

Offline (no API key, no model download), with tiny random models and a scripted stand-in for the
chat model (the random reasoner finds nothing, but every step runs)::

    segzero make-tiny-models .tiny
    python examples/agents/drink_agent.py examples/coffee.png "segment what I could drink" \
        --reasoner .tiny/reasoner --segmenter .tiny/segmenter --offline
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from segzero_tool.agents.chat_agent import build_segmentation_agent
from segzero_tool.agents.tool import SegmentByReasoningTool
from segzero_tool.result import SegmentationResult
from segzero_tool.settings import PipelineSettings

DEFAULT_MODEL = "anthropic:claude-sonnet-4-5"


class OfflineModel(BaseChatModel):
    """A scripted stand-in: calls the tool with the user's request, then cites what it found."""

    image: str

    @property
    def _llm_type(self) -> str:
        return "offline-stand-in"

    def bind_tools(self, tools, **kwargs):
        return self

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        last = messages[-1]
        if isinstance(last, HumanMessage):
            call = {"name": "segment_by_reasoning", "args": {"image": self.image, "query": last.text}, "id": "call-1"}
            msg = AIMessage("", tool_calls=[call])
        else:
            found = re.findall(r"#(\d+): box (\[[^\]]*\])", last.text)
            msg = AIMessage("You could drink from " + ", ".join(f"#{i} (box {b})" for i, b in found) + "."
                            if found else "The segmenter found nothing to drink in this image.")
        return ChatResult(generations=[ChatGeneration(message=msg)])


def chat_model(spec: str, image: str, offline: bool) -> BaseChatModel:
    if offline:
        return OfflineModel(image=image)
    from segzero_tool.agents.graphs import AgentModelError, load_chat_model

    try:
        return load_chat_model(spec)
    except AgentModelError as exc:
        sys.exit(f"error: {exc} (or run with --offline)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("image", nargs="?", default="examples/coffee.png")
    p.add_argument("request", nargs="?", default="segment what I could drink")
    p.add_argument("--model", default=os.environ.get("SEGZERO_AGENT_MODEL", DEFAULT_MODEL),
                   help=f"provider:model of the chat model (default {DEFAULT_MODEL})")
    p.add_argument("--offline", action="store_true", help="a scripted stand-in instead of a real chat model")
    p.add_argument("--preset", help="segzero preset: default, light, paper")
    p.add_argument("--reasoner", help="reasoner name, hub id or folder")
    p.add_argument("--segmenter", help="segmenter name, hub id or folder")
    p.add_argument("--device", help="auto, cpu, cuda, ...")
    p.add_argument("--out", type=Path, help="write the overlay of each tool call here")
    args = p.parse_args(argv)

    model = chat_model(args.model, args.image, args.offline)  # fail fast, before loading the models
    settings = PipelineSettings.resolve(overrides={"preset": args.preset, "reasoner": args.reasoner,
                                                   "segmenter": args.segmenter, "device": args.device})
    tool = SegmentByReasoningTool.from_settings(settings)  # loads the models once
    agent = build_segmentation_agent(model, tool, json_artifacts=False)

    request = args.request if args.offline else f"Image: {args.image}\n\n{args.request}"
    for update in agent.stream({"messages": [HumanMessage(request)]}, stream_mode="updates"):
        for node, value in update.items():
            for msg in value["messages"]:
                if isinstance(msg, AIMessage) and msg.tool_calls:
                    for call in msg.tool_calls:
                        print(f"[{node}] tool call {call['name']}({call['args']})")
                elif isinstance(msg, ToolMessage):
                    print(f"[{node}] {msg.content if isinstance(msg.content, str) else msg.content[0]['text']}")
                    if args.out and isinstance(msg.artifact, SegmentationResult):
                        args.out.mkdir(parents=True, exist_ok=True)
                        msg.artifact.overlay().save(args.out / f"overlay_{msg.tool_call_id}.png")
                else:
                    print(f"[{node}] {msg.text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
