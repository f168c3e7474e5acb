"""A robotics planner as a LangGraph ``StateGraph``: task → perception → geometry → plan → checks →
human approval → execution.

>>> from langgraph.checkpoint.memory import InMemorySaver
>>> from langgraph.types import Command
>>> graph = build_planner_graph(pipe, checkpointer=InMemorySaver())        # pipe: a SegZeroPipeline
>>> cfg = {"configurable": {"thread_id": "kitchen-1"}}
>>> out = graph.invoke({"task": "put the thing I can drink from next to the sink", "image": "kitchen.jpg"}, cfg)
>>> out["__interrupt__"][0].value["steps"]          # the plan, waiting for approval
>>> graph.invoke(Command(resume={"approved": True}), cfg)["status"]
'executed'

With ``frames`` instead of ``image`` (a video path or a frame folder; a live camera goes in
``config["configurable"]["frames"]``), the planner segments the newest frame, tracks its targets after the
approval, re-queries a lost one and reports each target's latest geometry in ``targets`` (:mod:`.tracking`).
"""

from __future__ import annotations

from .graph import DRY_RUN, Executor, build_planner_graph
from .planning import build_plan, check_plan, place_point
from .state import PlannerInput, PlannerState, TaskSpec
from .task import parse_task_llm, parse_task_rules, refine_query_rules

__all__ = [
    "DRY_RUN",
    "Executor",
    "PlannerInput",
    "PlannerState",
    "TaskSpec",
    "build_plan",
    "build_planner_graph",
    "check_plan",
    "parse_task_llm",
    "parse_task_rules",
    "place_point",
    "refine_query_rules",
]
