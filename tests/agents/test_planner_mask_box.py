"""The planner checks that a mask agrees with the box the reasoner gave: a mask far outside its box (or
a speck in it) fails the ``mask_box`` precondition, is refined once with the reasoner's point as a click
(the pipeline's ``refine_object``, restarting from the box), and only then is the human asked."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

pytest.importorskip("langgraph")

from langgraph.checkpoint.memory import InMemorySaver  # noqa: E402
from langgraph.types import Command  # noqa: E402

from segzero_tool.agents.geometry import box_agreement  # noqa: E402
from segzero_tool.agents.planner import build_planner_graph  # noqa: E402
from segzero_tool.agents.planner.planning import mask_box_problem  # noqa: E402
from segzero_tool.parsing import ParseStatus  # noqa: E402
from segzero_tool.result import SegmentationResult, SegmentedObject  # noqa: E402

W, H = 640, 480
IMAGE = np.zeros((H, W, 3), np.uint8)
BOX = (100, 100, 200, 200)
POINT = (150, 150)


def rect(x1, y1, x2, y2):
    m = np.zeros((H, W), bool)
    m[y1 : y2 + 1, x1 : x2 + 1] = True
    return m


GOOD = rect(110, 105, 195, 198)
FAR = rect(400, 300, 500, 400)  # the segmenter's mask lies far outside the reasoner's box


class BoxedSegmenter:
    """``segment`` answers with the reasoner's BOX and POINT but the mask ``first``; ``refine_object``
    records its call and gives ``refined`` as the new mask (or raises)."""

    def __init__(self, first, refined=GOOD, fail=False):
        self.first, self.refined, self.fail = first, refined, fail
        self.calls: list[str] = []
        self.refines: list[dict] = []

    def segment(self, image, query):
        self.calls.append(query)
        obj = SegmentedObject(box=BOX, points=(POINT,), score=0.9, mask=self.first)
        return SegmentationResult(query=query, prompt_format="visionreasoner", reasoning="r", raw_output="",
                                  parse_status=ParseStatus.OK, image_size=(W, H), objects=[obj], image=image)

    def refine_object(self, result, index, *, add_points=(), remove_points=(), box=None):
        self.refines.append({"index": index, "add_points": [list(p) for p in add_points], "box": box})
        if self.fail:
            raise RuntimeError("no refinement here")
        objects = list(result.objects)
        objects[index] = dataclasses.replace(objects[index], mask=self.refined)
        return dataclasses.replace(result, objects=objects)


def test_box_agreement():
    assert box_agreement(GOOD, BOX)["inside"] == 1.0
    assert box_agreement(FAR, BOX) == {"inside": 0.0, "coverage": 0.0}
    half = box_agreement(rect(150, 100, 250, 200), BOX)
    assert half["inside"] == pytest.approx(51 / 101, abs=1e-3) and half["coverage"] == pytest.approx(51 / 101, 1e-3)
    assert box_agreement(np.zeros((H, W), bool), BOX) == {"inside": 0.0, "coverage": 0.0}
    assert mask_box_problem({"box": list(BOX), "agreement": box_agreement(GOOD, BOX)}) is None
    assert "0% of the mask inside it" in mask_box_problem({"box": list(BOX), "agreement": box_agreement(FAR, BOX)})
    speck = box_agreement(rect(150, 150, 152, 152), BOX)
    assert speck["inside"] == 1.0 and mask_box_problem({"box": list(BOX), "agreement": speck}) is not None
    assert mask_box_problem({"box": list(BOX)}) is None  # nothing to compare


def test_a_mask_that_agrees_passes_without_refinement():
    seg = BoxedSegmenter(GOOD)
    out = build_planner_graph(seg, require_approval=False).invoke({"task": "open the fridge", "image": IMAGE})
    assert out["status"] == "executed" and seg.refines == []
    assert out["objects"]["target"]["objects"][0]["agreement"]["inside"] == 1.0


def test_a_mask_off_its_box_is_refined_with_the_reasoners_point():
    seg = BoxedSegmenter(FAR)
    out = build_planner_graph(seg, require_approval=False).invoke({"task": "open the fridge", "image": IMAGE})
    assert seg.refines == [{"index": 0, "add_points": [list(POINT)], "box": list(BOX)}]
    assert seg.calls == ["the fridge"]  # refined on the kept result: no second segmentation
    obj = out["objects"]["target"]["objects"][0]
    assert obj["refined"] is True and obj["agreement"]["inside"] == 1.0
    gx, gy = out["plan"][0]["point"]
    assert GOOD[gy, gx]  # the plan acts on the refined mask
    assert out["status"] == "executed"
    assert any("refined with a click at (150, 150)" in line for line in out["log"])


def test_still_off_after_the_refinement_asks_the_human():
    seg = BoxedSegmenter(FAR, refined=FAR)
    graph = build_planner_graph(seg, checkpointer=InMemorySaver(), require_approval=False)
    cfg = {"configurable": {"thread_id": "off"}}
    out = graph.invoke({"task": "open the fridge", "image": IMAGE}, cfg)
    [pending] = [i.value for i in out["__interrupt__"]]
    assert len(seg.refines) == 1
    assert pending["kind"] == "mask_off_box" and pending["role"] == "target"
    assert "does not match the box [100, 100, 200, 200]" in pending["question"]
    assert "after a refinement click" in pending["question"]
    out = graph.invoke(Command(resume={"proceed": True}), cfg)
    assert out["status"] == "executed" and len(seg.refines) == 1


def test_without_refine_object_the_human_is_asked_at_once():
    seg = BoxedSegmenter(FAR)
    graph = build_planner_graph(seg.segment, checkpointer=InMemorySaver(), require_approval=False)
    cfg = {"configurable": {"thread_id": "plain"}}
    out = graph.invoke({"task": "open the fridge", "image": IMAGE}, cfg)
    [pending] = [i.value for i in out["__interrupt__"]]
    assert pending["kind"] == "mask_off_box" and "after a refinement click" not in pending["question"]
    assert graph.invoke(Command(resume={"abort": True}), cfg)["status"] == "aborted"


def test_a_failing_refinement_asks_the_human():
    seg = BoxedSegmenter(FAR, fail=True)
    graph = build_planner_graph(seg, checkpointer=InMemorySaver(), require_approval=False)
    out = graph.invoke({"task": "open the fridge", "image": IMAGE}, {"configurable": {"thread_id": "fail"}})
    [pending] = [i.value for i in out["__interrupt__"]]
    assert len(seg.refines) == 1 and pending["kind"] == "mask_off_box"


def test_with_a_real_pipeline_and_box_segmenter():
    """Through SegZeroPipeline.refine_object (the exact-mask BoxSegmenter fills the box: it agrees)."""
    from scripted import BoxSegmenter, ScriptedReasoner

    from segzero_tool import SegZeroPipeline

    answer = '<think>t</think><answer>[{"bbox_2d": [84,84,420,420], "point_2d": [210,210]}]</answer>'
    pipe = SegZeroPipeline(ScriptedReasoner(answer), BoxSegmenter())
    out = build_planner_graph(pipe, require_approval=False).invoke({"task": "open the fridge", "image": IMAGE})
    assert out["status"] == "executed"
    assert out["objects"]["target"]["objects"][0]["agreement"] == {"inside": 1.0, "coverage": 1.0}
