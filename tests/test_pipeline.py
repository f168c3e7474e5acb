"""Pipeline wiring with test doubles: exact boxes, points, masks, timings and error paths."""

import asyncio

import numpy as np
import pytest
from scripted import BoxSegmenter, ScriptedReasoner

from segzero_tool import ParseStatus, SegZeroPipeline
from segzero_tool.errors import ImageLoadError, QueryError
from segzero_tool.prompts import build_prompt

ANSWER = ('<think>The glass holds water.</think><answer>[{"bbox_2d": [84,84,420,420], "point_2d": [210,210]}, '
          '{"bbox_2d": [500,600,700,800], "point_2d": [600,700]}]</answer>')


def _image(w=1680, h=420):
    return np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)


def test_segment_exact_geometry():
    r, s = ScriptedReasoner(ANSWER), BoxSegmenter()
    pipe = SegZeroPipeline(r, s)
    res = pipe.segment(_image(), "What can I drink?")
    # frame 840x840 -> image 1680x420: x * 2, y * 0.5 with int(v*f+0.5)
    assert res.parse_status is ParseStatus.OK and res.ok
    assert [o.box for o in res.objects] == [(168, 42, 840, 210), (1000, 300, 1400, 400)]
    assert [o.points for o in res.objects] == [((420, 105),), ((1200, 350),)]
    assert res.reasoning == "The glass holds water."
    assert res.image_size == (1680, 420) and res.frame_size == (840, 840)
    assert res.masks.shape == (2, 420, 1680)
    assert res.objects[0].area == (840 - 168 + 1) * (210 - 42 + 1)
    assert res.objects[0].score == pytest.approx(0.75)
    assert res.union_mask.sum() == res.objects[0].area + res.objects[1].area
    assert set(res.timings) >= {"load", "resize", "reason", "parse", "segment", "total"}
    # the reasoner saw the 840x840 frame and the exact prompt
    req = r.calls[0][0]
    assert req.image.size == (840, 840)
    assert req.prompt == build_prompt("What can I drink?")
    assert req.max_new_tokens == 2048
    # one decoder batch with both objects, in original pixels
    assert len(s.calls) == 1 and len(s.calls[0][1]) == 2


def test_point_outside_box_dropped_and_clamping():
    ans = '<think>t</think><answer>[{"bbox_2d": [-50, 10, 2000, 100], "point_2d": [830, 830]}]</answer>'
    res = SegZeroPipeline(ScriptedReasoner(ans), BoxSegmenter()).segment(_image(840, 840), "x")
    obj = res.objects[0]
    assert obj.box == (0, 10, 839, 100)
    assert obj.points == ()
    assert any("outside its box" in s for s in obj.issues)
    assert any("clamped" in s for s in obj.issues)


def test_inverted_box_reordered():
    ans = '<think>t</think><answer>[{"bbox_2d": [400, 400, 100, 100], "point_2d": [200, 200]}]</answer>'
    res = SegZeroPipeline(ScriptedReasoner(ans), BoxSegmenter()).segment(_image(840, 840), "x")
    assert res.objects[0].box == (100, 100, 400, 400)
    assert res.objects[0].points == ((200, 200),)


def test_segzero_format_and_rounding():
    ans = '<think>t</think><answer>{"bbox": [10,100,200,210], "points_1": [30,110], "points_2": [35,180]}</answer>'
    pipe = SegZeroPipeline(ScriptedReasoner(ans), BoxSegmenter(), prompt_format="segzero", rounding="segzero")
    res = pipe.segment(_image(420, 420), "x")
    assert res.prompt_format == "segzero"
    assert res.objects[0].box == (5, 50, 100, 105)
    assert res.objects[0].points == ((15, 55), (18, 90))  # round(35*0.5)=18 (banker's on 17.5 -> 18)


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        ("<think>nothing to drink</think><answer>[]</answer>", ParseStatus.NO_OBJECTS),
        ("complete garbage", ParseStatus.NO_ANSWER),
        ('<think>t</think><answer>[{"bbox_2d": [NaN, 1, 2, 3]}]</answer>', ParseStatus.INVALID_OBJECTS),
    ],
)
def test_empty_results_are_well_defined(answer, status):
    s = BoxSegmenter()
    res = SegZeroPipeline(ScriptedReasoner(answer), s).segment(_image(64, 48), "x")
    assert res.parse_status is status
    assert res.objects == [] and not res.ok
    assert res.union_mask.shape == (48, 64) and not res.union_mask.any()
    assert s.calls == []  # SAM not run without objects
    assert res.raw_output == answer


def test_max_objects_cap():
    items = ", ".join(f'{{"bbox_2d": [{i},{i},{i + 5},{i + 5}]}}' for i in range(20))
    pipe = SegZeroPipeline(ScriptedReasoner(f"<think>t</think><answer>[{items}]</answer>"), BoxSegmenter(),
                           max_objects=4)
    res = pipe.segment(_image(840, 840), "x")
    assert len(res.objects) == 4
    assert any("kept the first 4" in s for s in res.parse_issues)


def test_bad_inputs_fail_before_models_run(tmp_path):
    r = ScriptedReasoner(ANSWER)
    pipe = SegZeroPipeline(r, BoxSegmenter())
    with pytest.raises(QueryError):
        pipe.segment(_image(), "")
    with pytest.raises(ImageLoadError):
        pipe.segment(tmp_path / "missing.png", "x")
    with pytest.raises(ImageLoadError):
        pipe.segment_many([(_image(), "fine"), (tmp_path / "missing.png", "x")])
    assert r.calls == []


def test_segment_many_batches_reasoner_and_groups_segmenter():
    r, s = ScriptedReasoner(ANSWER), BoxSegmenter()
    pipe = SegZeroPipeline(r, s)
    a, b = _image(), _image(100, 100)
    results = pipe.segment_many([(a, "q1"), (b, "q2"), (a.copy(), "q3")], progress=False)
    assert len(r.calls) == 1 and len(r.calls[0]) == 3  # one batched reasoner call
    assert len(s.calls) == 2  # two distinct images -> two segmenter calls
    assert len(s.calls[0][1]) == 4  # both queries on image a share one decoder batch
    assert [res.query for res in results] == ["q1", "q2", "q3"]
    assert results[0].objects[0].box == results[2].objects[0].box
    assert np.array_equal(results[0].objects[0].mask, results[2].objects[0].mask)


def test_no_masks_mode():
    s = BoxSegmenter()
    res = SegZeroPipeline(ScriptedReasoner(ANSWER), s).segment(_image(), "x", compute_masks=False)
    assert s.calls == [] and res.objects[0].mask is None and len(res.objects) == 2


def test_async_segment():
    pipe = SegZeroPipeline(ScriptedReasoner(ANSWER), BoxSegmenter())
    res = asyncio.run(pipe.asegment(_image(), "x"))
    assert len(res.objects) == 2 and res.objects[0].mask is not None
    assert "total" in res.timings


def test_truncated_budget_flagged():
    class Cut(ScriptedReasoner):
        def generate(self, requests):
            outs = super().generate(requests)
            for o in outs:
                o.finish_reason = "length"
            return outs

    res = SegZeroPipeline(Cut("<think>long thoughts"), BoxSegmenter()).segment(_image(50, 50), "x")
    assert res.truncated
    assert res.parse_status is ParseStatus.NO_ANSWER


def test_custom_frame_size():
    ans = '<think>t</think><answer>[{"bbox_2d": [10, 10, 20, 20]}]</answer>'
    r = ScriptedReasoner(ans)
    res = SegZeroPipeline(r, BoxSegmenter(), frame_size=28).segment(_image(56, 56), "x")
    assert r.calls[0][0].image.size == (28, 28)
    assert res.objects[0].box == (20, 20, 40, 40)


def test_from_pretrained_with_objects_and_import_path(tmp_path):
    (tmp_path / "script.json").write_text('["<think>t</think><answer>[]</answer>"]')
    pipe = SegZeroPipeline.from_pretrained(str(tmp_path), BoxSegmenter(), reasoner_backend="scripted:ScriptedReasoner")
    assert isinstance(pipe.reasoner, ScriptedReasoner)
    assert pipe.segment(_image(10, 10), "x").parse_status is ParseStatus.NO_OBJECTS
    pipe2 = SegZeroPipeline.from_pretrained(ScriptedReasoner(ANSWER), with_segmenter=False)
    assert pipe2.segmenter is None


def test_constructor_validation():
    with pytest.raises(ValueError):
        SegZeroPipeline(ScriptedReasoner(ANSWER), None, frame_size=0)
    with pytest.raises(ValueError):
        SegZeroPipeline(ScriptedReasoner(ANSWER), None, max_objects=0)


def test_add_masks_after_reasoning_only():
    s = BoxSegmenter()
    pipe = SegZeroPipeline(ScriptedReasoner(ANSWER), s)
    res = pipe.segment(_image(), "x", compute_masks=False)
    assert res.objects[0].mask is None and s.calls == []
    pipe.add_masks(res)
    assert len(s.calls) == 1 and res.objects[0].mask is not None and "segment" in res.timings
    full = pipe.segment(_image(), "x")
    assert np.array_equal(res.union_mask, full.union_mask)
    with pytest.raises(ValueError, match="no segmenter"):
        SegZeroPipeline(ScriptedReasoner(ANSWER), None).add_masks(res)
