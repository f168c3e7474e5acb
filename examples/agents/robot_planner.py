# /// script
# requires-python = ">=3.10"
# dependencies = ["segzero-tool[langchain]"]
# ///
"""The robotics planner: "put the thing I can drink from next to the sink" → pick / place targets.

Streams every node's update, asks you (``input()``) when a precondition fails and before anything
is executed, and resumes the paused graph with your answer (``Command(resume=...)``, same thread).

Usage::

    pip install -e ".[langchain]"
    python examples/agents/robot_planner.py kitchen.jpg "put the thing I can drink from next to the sink"
    python examples/agents/robot_planner.py kitchen.jpg "pick up the mug" --depth depth.npy \
        --depth-scale 0.001 --intrinsics 615,615,320,240 --max-depth 1.2 --preset light
    python examples/agents/robot_planner.py kitchen.jpg "..." --model anthropic:claude-sonnet-4-5  # LLM task parser

Without models (a synthetic kitchen and a scripted segmenter)::

    python examples/agents/robot_planner.py --demo
    python examples/agents/robot_planner.py --demo --yes     # approve without asking
"""

from __future__ import annotations

import argparse
import json
import uuid
from typing import Any

import numpy as np
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from segzero_tool.agents.planner import build_planner_graph

TASK = "put the thing I can drink from next to the sink"


def demo_scene() -> tuple[np.ndarray, Any]:
    """A 640x480 'kitchen': a mug on the left, a sink on the right; a segmenter that knows them."""
    from segzero_tool.parsing import ParseStatus
    from segzero_tool.result import SegmentationResult, SegmentedObject

    h, w = 480, 640
    image = np.full((h, w, 3), 200, np.uint8)
    yy, xx = np.mgrid[:h, :w]
    mug = (abs(xx - 150) < 25) & (abs(yy - 300) < 35)
    mug |= ((xx - 185) ** 2 + (yy - 300) ** 2 <= 14**2) & ((xx - 185) ** 2 + (yy - 300) ** 2 >= 8**2) & (xx >= 175)
    sink = (xx >= 400) & (xx <= 560) & (yy >= 200) & (yy <= 330)
    image[mug] = (180, 40, 40)
    image[sink] = (120, 120, 140)
    known = {"drink": mug, "mug": mug, "cup": mug, "sink": sink}

    def segment(img: Any, query: str) -> SegmentationResult:
        masks = [m for k, m in known.items() if k in query.lower()][:1]
        objects = []
        for m in masks:
            ys, xs = np.nonzero(m)
            objects.append(SegmentedObject(box=(int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())),
                                           points=((int(xs.mean()), int(ys.mean())),), score=0.95, mask=m))
        return SegmentationResult(query=query, prompt_format="visionreasoner", reasoning="(scripted demo)",
                                  raw_output="", parse_status=ParseStatus.OK if objects else ParseStatus.NO_OBJECTS,
                                  image_size=(w, h), objects=objects)

    return image, segment


def ask(prompt: str, auto: str | None) -> str:
    if auto is not None:
        print(f"{prompt}{auto}  (--yes)")
        return auto
    try:
        return input(prompt)
    except EOFError:  # not interactive: the safe answer
        print()
        return ""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("image", nargs="?", help="the camera image (omit with --demo)")
    p.add_argument("task", nargs="?", default=TASK)
    p.add_argument("--demo", action="store_true", help="a synthetic scene and a scripted segmenter (no models)")
    p.add_argument("--depth", help=".npy depth map aligned with the image")
    p.add_argument("--depth-scale", type=float, default=1.0, help="metres per depth unit (0.001 for mm)")
    p.add_argument("--intrinsics", help="fx,fy,cx,cy in pixels")
    p.add_argument("--max-depth", type=float, help="reach of the robot in metres")
    p.add_argument("--max-attempts", type=int, default=2, help="automatic re-queries before asking you")
    p.add_argument("--model", help="provider:model chat model for the task parser (default: rules)")
    p.add_argument("--preset", help="segzero preset: default, light, paper")
    p.add_argument("--reasoner", help="reasoner name, hub id or folder")
    p.add_argument("--segmenter", help="segmenter name, hub id or folder")
    p.add_argument("--device", help="auto, cpu, cuda, ...")
    p.add_argument("--yes", action="store_true", help="approve the plan and proceed without asking")
    args = p.parse_args(argv)

    if args.demo:
        if args.image is not None and args.task == TASK:  # `--demo "pick up the mug"`: the one positional is the task
            args.task = args.image
        image, segmenter = demo_scene()
    elif not args.image:
        p.error("give an image, or --demo")
    else:
        from segzero_tool.settings import PipelineSettings

        image = args.image
        segmenter = PipelineSettings.resolve(overrides={
            "preset": args.preset, "reasoner": args.reasoner, "segmenter": args.segmenter, "device": args.device,
        }).build_pipeline()
    model = None
    if args.model:
        from segzero_tool.agents.graphs import load_chat_model

        model = load_chat_model(args.model)

    graph = build_planner_graph(segmenter, model=model, checkpointer=InMemorySaver(), max_attempts=args.max_attempts,
                                max_depth_m=args.max_depth, depth_scale=args.depth_scale)
    state: dict[str, Any] = {"task": args.task, "image": image}
    if args.depth:
        state["depth"] = np.load(args.depth)
    if args.intrinsics:
        state["intrinsics"] = [float(v) for v in args.intrinsics.split(",")]
    config = {"configurable": {"thread_id": str(uuid.uuid4())}}

    payload: Any = state
    while True:
        pending = None
        for update in graph.stream(payload, config, stream_mode="updates"):
            for node, value in update.items():
                if node == "__interrupt__":
                    pending = value[0].value
                    continue
                for line in (value or {}).get("log", []):
                    print(f"[{node}] {line}")
        if pending is None:
            break
        if pending["type"] == "approval":
            print("\nPlan:\n  " + "\n  ".join(pending["steps"]))
            answer = ask("Execute it? [y/N] ", "y" if args.yes else None).strip().lower()
            ok = answer in ("y", "yes")
            feedback = "" if ok else ask("Why not? ", "" if args.yes else None)
            payload = Command(resume={"approved": ok, "feedback": feedback})
        else:
            print("\n" + pending["question"])
            answer = ask("> ", "abort" if args.yes else None)  # a number picks a candidate; words re-query
            payload = Command(resume=answer)

    final = graph.get_state(config).values
    print(f"\nstatus: {final['status']}")
    for step in final.get("plan", []):
        keep = {k: step[k] for k in ("step", "action", "point", "point_3d", "orientation_deg", "status") if k in step}
        print(json.dumps(keep))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
