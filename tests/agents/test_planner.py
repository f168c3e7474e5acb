"""The robotics planner graph: rule-based and LLM task parsing, perception → geometry → plan, the
precondition checks with re-query and human questions, approval interrupts and resume."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("langgraph")

from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel, GenericFakeChatModel
from langchain_core.messages import AIMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from segzero_tool.agents.geometry import Intrinsics
from segzero_tool.agents.planner import DRY_RUN, build_planner_graph, parse_task_rules, place_point
from segzero_tool.parsing import ParseStatus
from segzero_tool.result import SegmentationResult, SegmentedObject

W, H = 640, 480
TASK = "put the thing I can drink from next to the sink"


def disc(cx: int, cy: int, r: int) -> np.ndarray:
    yy, xx = np.mgrid[:H, :W]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


def cup(cx: int, cy: int) -> np.ndarray:
    """A mug seen from the side: a 50x70 body plus a ring handle on its right."""
    m = np.zeros((H, W), bool)
    m[cy - 35 : cy + 35, cx - 25 : cx + 25] = True
    ring = disc(cx + 35, cy, 14) & ~disc(cx + 35, cy, 8)
    ring[:, : cx + 25] = False
    return m | ring


def box_mask(x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[y1 : y2 + 1, x1 : x2 + 1] = True
    return m


def result_for(query: str, masks: list[np.ndarray]) -> SegmentationResult:
    objects = []
    for m in masks:
        ys, xs = np.nonzero(m)
        box = (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
        objects.append(SegmentedObject(box=box, points=((int(xs.mean()), int(ys.mean())),), score=0.9, mask=m))
    return SegmentationResult(
        query=query, prompt_format="visionreasoner", reasoning="scripted", raw_output="",
        parse_status=ParseStatus.OK if objects else ParseStatus.NO_OBJECTS, image_size=(W, H), objects=objects)


class SceneSegmenter:
    """``(image, query) -> SegmentationResult``: the first key contained in the query picks the masks
    (a list, or a callable of the query); unknown queries find nothing."""

    def __init__(self, scene: dict):
        self.scene = scene
        self.calls: list[str] = []

    def __call__(self, image, query: str) -> SegmentationResult:
        assert isinstance(image, np.ndarray) and image.shape == (H, W, 3)
        self.calls.append(query)
        for key, masks in self.scene.items():
            if key in query.lower():
                return result_for(query, masks(query) if callable(masks) else masks)
        return result_for(query, [])


CUP = cup(150, 300)
SINK = box_mask(400, 200, 560, 330)
IMAGE = np.zeros((H, W, 3), np.uint8)


def thread(name: str) -> dict:
    return {"configurable": {"thread_id": name}}


def run(graph, payload, cfg) -> tuple[list[dict], object]:
    """Stream node updates; return them and the pending interrupt value (or None)."""
    updates = list(graph.stream(payload, cfg, stream_mode="updates"))
    pending = [u["__interrupt__"][0].value for u in updates if "__interrupt__" in u]
    return updates, (pending[-1] if pending else None)


# --- task parsing --------------------------------------------------------------------------------


@pytest.mark.parametrize(("task", "expected"), [
    (TASK, ("place", "the thing I can drink from", "the sink", "next_to")),
    ("Please pick up the red mug.", ("pick", "the red mug", None, None)),
    ("grab the cup on the table", ("pick", "the cup on the table", None, None)),  # a locator, not a place
    ("take the cup to the sink", ("place", "the cup", "the sink", "next_to")),
    ("Robot, put the apple into the bowl please", ("place", "the apple", "the bowl", "in")),
    ("place the book on top of the shelf", ("place", "the book", "the shelf", "on")),
    ("put the cup in front of the kettle", ("place", "the cup", "the kettle", "in_front_of")),
    ("push the box next to the wall", ("push", "the box", "the wall", "next_to")),
    ("open the fridge", ("open", "the fridge", None, None)),
    ("close the drawer", ("close", "the drawer", None, None)),
    ("where is my phone?", ("locate", "my phone", None, None)),
    ("the cat", ("locate", "the cat", None, None)),  # no verb: just find it
])
def test_rule_based_task_parser(task, expected):
    spec = parse_task_rules(task)
    assert (spec.action, spec.target, spec.reference, spec.relation) == expected


def test_push_direction_and_empty_task():
    assert parse_task_rules("push the box to the left").direction == "left"
    with pytest.raises(ValueError, match="empty"):
        parse_task_rules("  please ")


# --- the main path -------------------------------------------------------------------------------


def test_place_next_to_sink_interrupts_then_executes_on_approval():
    seg = SceneSegmenter({"drink": [CUP], "sink": [SINK]})
    graph = build_planner_graph(seg, checkpointer=InMemorySaver())
    cfg = thread("approve")
    updates, pending = run(graph, {"task": TASK, "image": IMAGE}, cfg)
    assert [next(iter(u)) for u in updates] == ["understand_task", "perceive", "geometry", "plan", "check",
                                                "__interrupt__"]
    assert seg.calls == ["the thing I can drink from", "the sink"]
    assert pending["type"] == "approval" and len(pending["steps"]) == 2
    json.dumps(pending)  # interrupt payloads are JSON-ready

    state = graph.get_state(cfg)
    assert state.next == ("approve",) and state.values["status"] == "awaiting_approval"
    pick, place = state.values["plan"]
    assert pick["action"] == "pick" and pick["target"]["query"] == "the thing I can drink from"
    gx, gy = pick["grasp_point"]
    assert CUP[gy, gx] and not SINK[gy, gx]  # the grasp point lies inside the cup mask
    assert pick["orientation_deg"] == pytest.approx(90.0, abs=5)  # the mug is taller than wide
    assert pick["gripper_angle_deg"] == pytest.approx(0.0, abs=5) or pick["gripper_angle_deg"] > 175
    assert place["action"] == "place" and place["relation"] == "next_to" and place["side"] == "left"
    px, py = place["point"]
    assert 0 <= px < W and 0 <= py < H
    assert px < 400 and 200 <= py <= 330 and not SINK[py, px]  # beside the sink, on its roomier left side
    assert "point_3d" in place and place["point_3d"] is None  # no depth given

    out = graph.invoke(Command(resume={"approved": True}), cfg)
    assert out["status"] == "executed"
    assert [r["outcome"] for r in out["results"]] == [DRY_RUN, DRY_RUN]
    assert all(s["status"] == DRY_RUN for s in out["plan"])
    assert graph.get_state(cfg).next == ()
    assert any(line.startswith("execute: 2. place") for line in out["log"])
    assert seg.calls == ["the thing I can drink from", "the sink"]  # resuming does not re-segment


def test_rejection_executes_nothing():
    calls = []
    graph = build_planner_graph(SceneSegmenter({"drink": [CUP], "sink": [SINK]}), checkpointer=InMemorySaver(),
                                executor=lambda step, state: calls.append(step) or "done")
    cfg = thread("reject")
    graph.invoke({"task": TASK, "image": IMAGE}, cfg)
    out = graph.invoke(Command(resume={"approved": False, "feedback": "use the other cup"}), cfg)
    assert out["status"] == "rejected" and out["approval"] == {"approved": False, "feedback": "use the other cup"}
    assert calls == [] and out["results"] == []
    assert "rejected by the human: use the other cup" in out["log"][-1]


def test_executor_is_called_per_step():
    calls = []
    graph = build_planner_graph(SceneSegmenter({"cup": [CUP]}), checkpointer=InMemorySaver(),
                                executor=lambda step, state: calls.append(step["action"]) or {"ok": True})
    cfg = thread("executor")
    graph.invoke({"task": "pick up the cup", "image": IMAGE}, cfg)
    out = graph.invoke(Command(resume="yes"), cfg)
    assert calls == ["pick"] and out["results"] == [{"step": 1, "action": "pick", "outcome": {"ok": True}}]


def test_without_approval_runs_straight_through():
    graph = build_planner_graph(SceneSegmenter({"fridge": [box_mask(20, 20, 200, 460)]}), require_approval=False)
    out = graph.invoke({"task": "open the fridge", "image": IMAGE})
    assert out["status"] == "executed" and out["plan"][0]["action"] == "open"


# --- failed preconditions -------------------------------------------------------------------------


def test_not_found_requeries_then_asks_the_human():
    seg = SceneSegmenter({"mug": [CUP], "sink": [SINK]})
    graph = build_planner_graph(seg, checkpointer=InMemorySaver(), max_attempts=2)
    cfg = thread("not-found")
    _, pending = run(graph, {"task": "put the cup next to the sink", "image": IMAGE}, cfg)
    target_calls = [q for q in seg.calls if "cup" in q]
    assert len(target_calls) == 3 and target_calls[0] == "the cup"  # the query, then two refined ones
    assert len(set(target_calls)) == 3
    assert pending["type"] == "question" and pending["kind"] == "not_found" and pending["role"] == "target"
    assert "could not find 'the cup'" in pending["question"] and pending["tried"] == target_calls
    assert graph.get_state(cfg).values["attempts"] == {"target": 2}

    _, pending = run(graph, Command(resume={"query": "the mug"}), cfg)
    assert seg.calls[-1] == "the mug" and pending["type"] == "approval"
    gx, gy = graph.get_state(cfg).values["plan"][0]["grasp_point"]
    assert CUP[gy, gx]


def test_not_found_abort():
    graph = build_planner_graph(SceneSegmenter({}), checkpointer=InMemorySaver(), max_attempts=0)
    cfg = thread("abort")
    _, pending = run(graph, {"task": "pick up the unicorn", "image": IMAGE}, cfg)
    assert pending["kind"] == "not_found"
    out = graph.invoke(Command(resume={"abort": True}), cfg)
    assert out["status"] == "aborted" and out["results"] == []


def test_two_cups_are_ambiguous_and_the_human_chooses():
    cups = [cup(120, 300), cup(300, 150)]
    seg = SceneSegmenter({"drink": cups, "sink": [SINK]})
    graph = build_planner_graph(seg, checkpointer=InMemorySaver())
    cfg = thread("ambiguous")
    _, pending = run(graph, {"task": TASK, "image": IMAGE}, cfg)
    assert seg.calls[-1] == "the most prominent thing I can drink from"  # one refined re-query first
    assert pending["kind"] == "ambiguous" and [c["index"] for c in pending["candidates"]] == [0, 1]
    assert "Which one should I place?" in pending["question"]

    _, pending = run(graph, Command(resume={"choice": 1}), cfg)
    assert pending["type"] == "approval"
    pick = graph.get_state(cfg).values["plan"][0]
    assert pick["target"]["index"] == 1
    gx, gy = pick["grasp_point"]
    assert cups[1][gy, gx] and not cups[0][gy, gx]


def test_ambiguity_resolved_by_the_refined_query():
    seg = SceneSegmenter({"most prominent": [CUP], "drink": [cup(120, 300), cup(300, 150)], "sink": [SINK]})
    graph = build_planner_graph(seg, checkpointer=InMemorySaver())
    _, pending = run(graph, {"task": TASK, "image": IMAGE}, thread("refined"))
    assert pending["type"] == "approval"


def test_invalid_choice_asks_again():
    graph = build_planner_graph(SceneSegmenter({"cup": [cup(120, 300), cup(300, 150)]}),
                                checkpointer=InMemorySaver(), max_attempts=0)
    cfg = thread("bad-choice")
    run(graph, {"task": "pick up the cup", "image": IMAGE}, cfg)
    _, pending = run(graph, Command(resume=7), cfg)
    assert pending["kind"] == "ambiguous"
    _, pending = run(graph, Command(resume="#0"), cfg)
    assert pending["type"] == "approval"


# --- depth and intrinsics -------------------------------------------------------------------------


def test_depth_and_intrinsics_give_3d_points():
    depth = np.full((H, W), 800, np.uint16)  # millimetres
    depth[SINK] = 0  # invalid inside the sink; the place point is beside it
    K = Intrinsics(fx=500.0, fy=500.0, cx=320.0, cy=240.0)
    graph = build_planner_graph(SceneSegmenter({"drink": [CUP], "sink": [SINK]}), checkpointer=InMemorySaver(),
                                depth_scale=0.001)
    cfg = thread("depth")
    _, pending = run(graph, {"task": TASK, "image": IMAGE, "depth": depth, "intrinsics": K}, cfg)
    assert pending["type"] == "approval"
    pick, place = graph.get_state(cfg).values["plan"]
    for step in (pick, place):
        x, y = step["point"]
        X, Y, Z = step["point_3d"]
        assert Z == pytest.approx(0.8)
        assert X == pytest.approx((x - 320) * 0.8 / 500, abs=1e-3) and Y == pytest.approx((y - 240) * 0.8 / 500, abs=1e-3)


def test_too_far_is_unreachable_until_the_human_accepts():
    depth = np.full((H, W), 2.5, np.float32)  # metres
    graph = build_planner_graph(SceneSegmenter({"cup": [CUP]}), checkpointer=InMemorySaver(), max_depth_m=1.0)
    cfg = thread("far")
    _, pending = run(graph, {"task": "pick up the cup", "image": IMAGE, "depth": depth,
                             "intrinsics": {"fx": 500, "fy": 500, "cx": 320, "cy": 240}}, cfg)
    assert pending["kind"] == "unreachable" and "beyond the 1 m reach" in pending["question"]
    _, pending = run(graph, Command(resume={"proceed": True}), cfg)
    assert pending["type"] == "approval"
    assert graph.get_state(cfg).values["overrides"] == ["target:reachable"]


def test_depth_of_the_wrong_shape_is_refused():
    graph = build_planner_graph(SceneSegmenter({"cup": [CUP]}))
    with pytest.raises(ValueError, match="depth map has shape"):
        graph.invoke({"task": "pick up the cup", "image": IMAGE, "depth": np.ones((10, 10))})


# --- placement geometry ---------------------------------------------------------------------------


def _obj(mask: np.ndarray) -> dict:
    from segzero_tool.agents.geometry import object_geometry

    return {"index": 0, "box": None, "geometry": object_geometry(mask).to_dict()}


@pytest.mark.parametrize(("relation", "sink", "side"), [
    ("next_to", (400, 200, 560, 330), "left"),   # more room on the left
    ("next_to", (10, 200, 170, 330), "right"),   # more room on the right
    ("next_to", (0, 100, 639, 200), "below"),    # full width: neither side fits
    ("right_of", (400, 200, 560, 330), "right"),
    ("behind", (400, 200, 560, 330), "above"),
])
def test_place_point_sides_stay_in_the_image(relation, sink, side):
    point, got = place_point(relation, _obj(box_mask(*sink)), _obj(CUP), (W, H))
    assert got == side
    assert 0 <= point[0] < W and 0 <= point[1] < H and not box_mask(*sink)[point[1], point[0]]


def test_place_on_and_in_use_interior_points():
    ring = disc(320, 240, 60) & ~disc(320, 240, 30)  # a bowl seen from above: the centroid is a hole
    point, _ = place_point("on", _obj(ring), None, (W, H))
    assert ring[point[1], point[0]]
    point, side = place_point("in", _obj(disc(320, 240, 60)), None, (W, H))
    assert point == [320, 240] and side == "in"


# --- the chat model as task parser ----------------------------------------------------------------


class ToolCallingFake(GenericFakeChatModel):
    def bind_tools(self, tools, **kwargs):
        return self


def test_task_parsed_by_a_chat_model_with_structured_output():
    args = {"action": "place", "target": "the glass", "reference": "the sink", "relation": "on", "direction": None}
    model = ToolCallingFake(messages=iter([AIMessage("", tool_calls=[{"name": "TaskSpec", "args": args, "id": "1"}])]))
    graph = build_planner_graph(SceneSegmenter({"glass": [CUP], "sink": [SINK]}), model=model,
                                checkpointer=InMemorySaver())
    cfg = thread("llm")
    _, pending = run(graph, {"task": "could you set the glass down onto the sink", "image": IMAGE}, cfg)
    values = graph.get_state(cfg).values
    assert values["spec"] == args and "parsed by the chat model" in values["log"][0]
    place = values["plan"][1]
    assert place["relation"] == "on" and SINK[place["point"][1], place["point"][0]]
    assert pending["type"] == "approval"


def test_chat_model_without_tools_answers_json_and_bad_answers_fall_back_to_rules():
    json_model = FakeMessagesListChatModel(responses=[AIMessage(
        '```json\n{"action": "pick", "target": "the mug", "reference": null, "relation": null}\n```')])
    graph = build_planner_graph(SceneSegmenter({"mug": [CUP]}), model=json_model, checkpointer=InMemorySaver())
    cfg = thread("json")
    graph.invoke({"task": "I need the mug", "image": IMAGE}, cfg)
    assert graph.get_state(cfg).values["spec"]["target"] == "the mug"

    bad = FakeMessagesListChatModel(responses=[AIMessage("no idea")])
    graph = build_planner_graph(SceneSegmenter({"cup": [CUP]}), model=bad, checkpointer=InMemorySaver())
    cfg = thread("bad-json")
    graph.invoke({"task": "pick up the cup", "image": IMAGE}, cfg)
    values = graph.get_state(cfg).values
    assert values["spec"]["action"] == "pick" and "parsed by rules" in values["log"][0]


def test_chat_model_refines_queries():
    model = FakeMessagesListChatModel(responses=[
        AIMessage('{"action": "pick", "target": "the cup"}'), AIMessage("the white mug")])
    seg = SceneSegmenter({"mug": [CUP]})
    graph = build_planner_graph(seg, model=model, checkpointer=InMemorySaver(), max_attempts=1)
    _, pending = run(graph, {"task": "pick up the cup", "image": IMAGE}, thread("refine"))
    assert seg.calls == ["the cup", "the white mug"] and pending["type"] == "approval"


# --- a real pipeline as the segmenter -------------------------------------------------------------


def test_a_pipeline_is_used_through_its_segment_method():
    from scripted import BoxSegmenter

    from segzero_tool import SegZeroPipeline
    from segzero_tool.reasoners.base import Reasoner, ReasonerOutput

    class QueryReasoner(Reasoner):
        """Answers by keyword in the prompt (boxes in the 840x840 frame)."""

        def generate(self, requests):
            out = []
            for r in requests:
                if "cup" in r.prompt:
                    text = '<think>a cup</think><answer>[{"bbox_2d": [100,400,200,560], "point_2d": [150,480]}]</answer>'
                else:
                    text = "<think>nothing</think><answer>[]</answer>"
                out.append(ReasonerOutput(text, finish_reason="stop"))
            return out

    pipe = SegZeroPipeline(QueryReasoner(), BoxSegmenter())
    graph = build_planner_graph(pipe, checkpointer=InMemorySaver())
    cfg = thread("pipeline")
    _, pending = run(graph, {"task": "pick up the cup", "image": IMAGE}, cfg)
    assert pending["type"] == "approval"
    x1, y1, x2, y2 = graph.get_state(cfg).values["objects"]["target"]["objects"][0]["box"]
    gx, gy = graph.get_state(cfg).values["plan"][0]["grasp_point"]
    assert x1 <= gx <= x2 and y1 <= gy <= y2


def test_bad_segmenter_is_refused():
    with pytest.raises(TypeError, match="SegZeroPipeline or a callable"):
        build_planner_graph(42)


def test_data_url_images_reach_the_segmenter_as_bytes():
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(IMAGE).save(buf, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    seen = []

    def segment(image, query):
        seen.append(type(image))
        return result_for(query, [CUP])

    _, pending = run(build_planner_graph(segment, checkpointer=InMemorySaver()),
                     {"task": "pick up the cup", "image": url}, thread("data-url"))
    assert seen == [bytes] and pending["type"] == "approval"


def test_the_example_script_runs_its_demo():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "examples" / "agents" / "robot_planner.py"
    proc = subprocess.run([sys.executable, str(script), "--demo", "--yes"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "[check] check: all 4 checks passed" in proc.stdout and "status: executed" in proc.stdout
