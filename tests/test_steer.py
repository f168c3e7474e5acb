"""The steering core (segzero_tool.steer, segzero_tool.prompt_objects) and the pipeline without a reasoner."""

from __future__ import annotations

import asyncio
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scripted import BoxSegmenter

from segzero_tool import SegZeroPipeline
from segzero_tool.errors import (
    BackendError,
    ImageTooLargeError,
    NoReasonerError,
    PromptError,
    RefinementNotSupported,
    SegZeroError,
)
from segzero_tool.parsing import ParseStatus
from segzero_tool.prompt_objects import MAX_POINTS, PromptObject, parse_prompt_objects
from segzero_tool.result import SegmentationResult, SegmentedObject
from segzero_tool.segmenters.base import ObjectPrompt, Segmenter, SegmenterOutput
from segzero_tool.settings import PipelineSettings
from segzero_tool.steer import PROMPTS_FORMAT, refine_object, segment_by_prompts, select_objects
from segzero_tool.summary import summarize

REPO = Path(__file__).resolve().parents[1]
W, H = 64, 48
SIZE = (W, H)


def _image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


class RefiningSegmenter(Segmenter):
    """Box (or 3x3 around the first point) minus 3x3 around each negative point; logits = call number."""

    name = "refining"
    supports_refinement = True

    def __init__(self) -> None:
        self.calls: list[list[ObjectPrompt]] = []
        self.model_id = "refining"

    def segment(self, image: np.ndarray, prompts: Sequence[ObjectPrompt]) -> SegmenterOutput:
        h, w = image.shape[:2]
        self.calls.append(list(prompts))
        masks = np.zeros((len(prompts), h, w), bool)
        for k, p in enumerate(prompts):
            if p.box is not None:
                x1, y1, x2, y2 = (int(v) for v in p.box)
                masks[k, y1:y2 + 1, x1:x2 + 1] = True
            for x, y in p.points if p.box is None else ():
                masks[k, max(0, y - 1):y + 2, max(0, x - 1):x + 2] = True
            for x, y in p.negative_points:
                masks[k, max(0, y - 1):y + 2, max(0, x - 1):x + 2] = False
        logits = np.full((len(prompts), 256, 256), float(len(self.calls)), np.float32)
        return SegmenterOutput(masks, np.full(len(prompts), 0.5, np.float32), logits)


class PlainSegmenter(RefiningSegmenter):
    """The same masks, no refinement support and no logits (like a backend written before refinement)."""

    name = "plain"
    supports_refinement = False

    def segment(self, image: np.ndarray, prompts: Sequence[ObjectPrompt]) -> SegmenterOutput:
        out = super().segment(image, prompts)
        return SegmenterOutput(out.masks, out.scores)


# --- reading the caller's objects ----------------------------------------------------------------


def test_valid_objects_accept_lists_tuples_and_numpy_numbers() -> None:
    got = parse_prompt_objects(
        [{"box": (np.int64(2), 3.4, np.float32(20.6), 30), "points": [[5, 6]], "negative_points": np.array([[7, 8]]),
          "label": "cup"},
         {"points": [(np.int32(1), 2.5)]}],
        SIZE, max_objects=5)
    assert got == [PromptObject((2, 3, 21, 30), ((5, 6),), ((7, 8),), "cup", ()),
                   PromptObject(None, ((1, 3),), (), None, ())]


def test_box_outside_is_clamped_and_reported() -> None:
    [obj] = parse_prompt_objects([{"box": [-5, 10, 100, 47]}], SIZE, max_objects=5)
    assert obj.box == (0, 10, 63, 47)
    assert obj.issues == ("objects[0].box [-5, 10, 100, 47] extends outside the 64x48 image; clamped to [0, 10, 63, 47]",)


def test_inverted_box_is_reordered_and_reported() -> None:
    [obj] = parse_prompt_objects([{"box": [30, 40, 10, 5]}], SIZE, max_objects=5)
    assert obj.box == (10, 5, 30, 40)
    assert obj.issues == ("objects[0].box [30, 40, 10, 5] was inverted; reordered to [10, 5, 30, 40]",)


def test_point_outside_is_clamped_and_reported() -> None:
    [obj] = parse_prompt_objects([{"points": [[10, 10], [64, 50]], "negative_points": [[-3, 2]]}], SIZE,
                                 max_objects=5)
    assert obj.points == ((10, 10), (63, 47)) and obj.negative_points == ((0, 2),)
    assert obj.issues == ("objects[0].points[1] (64, 50) lies outside the 64x48 image; clamped to (63, 47)",
                          "objects[0].negative_points[0] (-3, 2) lies outside the 64x48 image; clamped to (0, 2)")


@pytest.mark.parametrize(("objects", "words"), [
    ([{"box": [70, 0, 90, 10]}], ["objects[0].box", "entirely outside the 64x48 image", "x in 0..63", "y in 0..47"]),
    ([{"box": [-9, -9, -1, -1]}], ["objects[0].box", "entirely outside"]),
    ([{"points": [[100, 100], [-5, 3]]}], ["objects[0].points all lie outside the 64x48 image", "or a box"]),
    ([], ["objects is empty", "send at least one object"]),
    ({"box": [1, 2, 3, 4]}, ["objects must be a list"]),
    ("[{}]", ["objects must be a list"]),
    (None, ["objects must be a list"]),
    ([{"box": [1, 2, 3, 4]}] * 4, ["4 entries", "cap of 3 objects", "send at most 3"]),
    ([{"negative_points": [[3, 3]]}], ["objects[0] has only negative points", "send a box", "positive point"]),
    ([{}], ["objects[0] has no box and no points"]),
    ([{"box": None, "points": None}], ["objects[0] has no box and no points"]),
    ([{"box": [1, 2, 3, 4]}, {"box": [1, 2, 3, 4]}, {"points": [[1, "2"]]}],
     ["objects[2].points[0] must be 2 numbers [x, y] in image pixels; got [1, '2']: item 1, '2' (str) is not a number"]),
    ([{"box": [1, 2, 3, 4], "mask": 1}], ["objects[0] has unknown key(s) ['mask']", "box, points, negative_points, label"]),
    ([[1, 2, 3, 4]], ["objects[0] must be an object {box?, points?, negative_points?, label?}"]),
    ([{"box": [1, 2, 3, 4], "label": 5}], ["objects[0].label must be a string"]),
    ([{"box": [1, 2, 3, 4], "label": "x" * 201}], ["at most 200 characters"]),
    ([{"points": [[1, 1]] * (MAX_POINTS + 1)}], [f"has {MAX_POINTS + 1} points", f"at most {MAX_POINTS}"]),
    ([{"points": [1, 2]}], ["objects[0].points[0] must be 2 numbers [x, y]"]),
    ([{"points": "1,2"}], ["objects[0].points must be a list of points"]),
])
def test_bad_objects_raise_one_prompt_error(objects, words) -> None:
    with pytest.raises(PromptError) as info:
        parse_prompt_objects(objects, SIZE, max_objects=3)
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize(("box", "why"), [
    ("1,2,3,4", "(str)"), ([1, 2, 3], "got 3 value(s)"), ([1, 2, 3, 4, 5], "got 5 value(s)"),
    ([1, 2, 3, float("nan")], "not a finite number"), ([1, 2, float("inf"), 4], "not a finite number"),
    ([1, 2, 3, 1e12], "beyond ±1,000,000 pixels"), ([1, 2, 3, 10**400], "beyond ±1,000,000 pixels"),
    ([1, 2, 3, True], "item 3, True (bool) is not a number"), ([1, 2, 3, None], "not a number"),
    ([1, 2, 3, [4]], "not a number"),
    ({"x1": 1}, "(dict)"), (5, "(int)"),
])
def test_bad_box_says_what_to_send(box, why) -> None:
    with pytest.raises(PromptError) as info:
        parse_prompt_objects([{"box": box}], SIZE, max_objects=3)
    text = str(info.value)
    assert text.startswith("objects[0].box") and "must be 4 numbers [x1, y1, x2, y2] in image pixels" in text
    assert why in text


def test_prompt_error_is_a_value_error_with_exit_code_2() -> None:
    assert issubclass(PromptError, SegZeroError) and issubclass(PromptError, ValueError)
    assert PromptError.exit_code == 2


def test_long_values_are_cut_in_messages() -> None:
    with pytest.raises(PromptError) as info:
        parse_prompt_objects([{"box": ["x" * 100_000, 1, 2, 3]}], SIZE, max_objects=3)
    assert len(str(info.value)) < 400


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=300),
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=40,
)
COORD = st.one_of(st.integers(-100, 200), st.floats(allow_nan=True, allow_infinity=True), JSON)
OBJECT = st.dictionaries(
    st.sampled_from(["box", "points", "negative_points", "label", "other"]),
    st.one_of(st.lists(COORD, max_size=5), st.lists(st.lists(COORD, max_size=3), max_size=4), JSON),
    max_size=4,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(objects=st.one_of(JSON, st.lists(OBJECT, max_size=5), st.lists(JSON, max_size=4)))
def test_any_json_gives_a_result_or_one_prompt_error(objects) -> None:
    try:
        result = segment_by_prompts(BoxSegmenter(), _image(), objects, max_objects=4)
    except PromptError as exc:
        assert str(exc) and len(str(exc)) < 1000
        return
    assert isinstance(result, SegmentationResult) and 1 <= len(result.objects) <= 4
    for obj in result.objects:
        assert obj.mask is not None and obj.mask.shape == (H, W)
        if obj.box is not None:
            x1, y1, x2, y2 = obj.box
            assert 0 <= x1 <= x2 < W and 0 <= y1 <= y2 < H
        assert all(0 <= x < W and 0 <= y < H for x, y in (*obj.points, *obj.negative_points))
    json.loads(result.to_json())


# --- segment_by_prompts -----------------------------------------------------------------------------


def test_segment_by_prompts_returns_the_pipeline_result_type_from_one_segmenter_call() -> None:
    seg = BoxSegmenter()
    result = segment_by_prompts(seg, _image(), [{"box": [2, 3, 10, 12], "points": [[5, 5]], "label": "cup"},
                                                {"points": [[30, 30]]}], query="the cups")
    assert len(seg.calls) == 1 and seg.calls[0][1] == [ObjectPrompt((2, 3, 10, 12), ((5, 5),)),
                                                      ObjectPrompt(None, ((30, 30),))]
    assert (result.prompt_format, result.reasoner, result.reasoning, result.raw_output) == (PROMPTS_FORMAT, None, "", "")
    assert result.parse_status is ParseStatus.OK and result.ok and result.query == "the cups"
    assert result.image_size == result.frame_size == (W, H) and result.segmenter == "box"
    a, b = result.objects
    assert (a.box, a.points, a.label, a.score) == ((2, 3, 10, 12), ((5, 5),), "cup", 0.75)
    assert (b.box, b.points) == (None, ((30, 30),))
    assert a.area == 9 * 10 and b.area == 9
    assert np.array_equal(result.image, _image())
    assert set(result.timings) == {"load", "segment", "total"}


def test_result_json_has_negative_points_only_when_given_and_never_logits() -> None:
    seg = RefiningSegmenter()
    result = segment_by_prompts(seg, _image(), [{"box": [2, 3, 20, 22], "negative_points": [[5, 5]]},
                                                {"box": [30, 3, 40, 12]}])
    d = result.to_dict()
    assert d["objects"][0]["negative_points"] == [[5, 5]] and "negative_points" not in d["objects"][1]
    assert "low_res_logits" not in result.to_json()
    assert result.objects[0].low_res_logits.shape == (256, 256)
    back = SegmentationResult.from_dict(json.loads(result.to_json()))
    assert back.objects[0].negative_points == ((5, 5),) and back.objects[0].low_res_logits is None
    assert back.prompt_format == PROMPTS_FORMAT and back.reasoner is None
    assert seg.calls[0][0].negative_points == ((5, 5),)
    assert not result.objects[0].mask[4:7, 4:7].any()  # the negative click was honoured


def test_summary_and_save_work_on_a_prompts_result(tmp_path) -> None:
    result = segment_by_prompts(BoxSegmenter(), _image(), [{"box": [2, 3, 10, 12], "label": "cup"}])
    text = summarize(result)
    assert "Found 1 object(s)" in text and "#0: box [2, 3, 10, 12]" in text and "Reasoning: (none)" in text
    assert result.summary().startswith("1 object(s) in 64x48 image")
    written = result.save(tmp_path)
    assert json.loads(written["result"].read_text())["prompt_format"] == "prompts"


def test_image_may_be_bytes_or_an_earlier_result() -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(_image()).save(buf, format="PNG")
    first = segment_by_prompts(BoxSegmenter(), buf.getvalue(), [{"box": [1, 1, 5, 5]}])
    again = segment_by_prompts(BoxSegmenter(), first, [{"points": [[9, 9]]}])
    assert np.array_equal(first.image, _image()) and again.image is first.image
    rebuilt = SegmentationResult.from_dict(first.to_dict())
    with pytest.raises(PromptError, match="carries no image.*segment_by_prompts with the image"):
        segment_by_prompts(BoxSegmenter(), rebuilt, [{"points": [[9, 9]]}])


def test_negative_points_need_a_refining_segmenter() -> None:
    with pytest.raises(RefinementNotSupported):
        segment_by_prompts(PlainSegmenter(), _image(), [{"box": [1, 1, 9, 9], "negative_points": [[3, 3]]}])


def test_bad_objects_never_reach_the_segmenter() -> None:
    seg = BoxSegmenter()
    with pytest.raises(PromptError):
        segment_by_prompts(seg, _image(), [{"box": [1, 1, 9, 9]}, {"box": [1, 1, "9", 9]}])
    assert seg.calls == []


# --- refine_object --------------------------------------------------------------------------------


def _two(seg: Segmenter) -> SegmentationResult:
    return segment_by_prompts(seg, _image(), [{"box": [2, 2, 20, 20], "points": [[10, 10]]}, {"box": [30, 5, 50, 25]}])


def test_refine_makes_a_new_result_and_leaves_the_old_one_unchanged() -> None:
    seg = RefiningSegmenter()
    old = _two(seg)
    masks_before = old.masks.copy()
    old_objects = list(old.objects)
    new = refine_object(seg, old, 0, add_points=[[15, 15]], remove_points=[[5, 5]])
    assert new is not old and new.objects is not old.objects
    assert old.objects == old_objects and np.array_equal(old.masks, masks_before)
    assert old.objects[0].points == ((10, 10),) and old.objects[0].negative_points == ()
    a = new.objects[0]
    assert (a.box, a.points, a.negative_points) == ((2, 2, 20, 20), ((10, 10), (15, 15)), ((5, 5),))
    assert not a.mask[4:7, 4:7].any() and old.objects[0].mask[4:7, 4:7].all()
    assert new.objects[1] is old.objects[1]
    assert not np.array_equal(new.union_mask, old.union_mask)
    [prompt] = seg.calls[-1]
    assert prompt.box == (2, 2, 20, 20) and prompt.points == ((10, 10), (15, 15))
    assert np.array_equal(prompt.mask_input, old.objects[0].low_res_logits)  # the previous logits fed back
    assert float(a.low_res_logits[0, 0]) == 2.0 and float(old.objects[0].low_res_logits[0, 0]) == 1.0
    again = refine_object(seg, new, 0, remove_points=[[18, 18]])
    assert again.objects[0].negative_points == ((5, 5), (18, 18))
    assert np.array_equal(seg.calls[-1][0].mask_input, a.low_res_logits)


def test_refine_with_a_new_box_starts_from_the_box() -> None:
    seg = RefiningSegmenter()
    old = _two(seg)
    new = refine_object(seg, old, 1, box=[60, 40, 28, 3])
    assert new.objects[1].box == (28, 3, 60, 40) and seg.calls[-1][0].mask_input is None
    assert new.objects[1].issues == ("box [60, 40, 28, 3] was inverted; reordered to [28, 3, 60, 40]",)
    assert new.objects[1].area == 33 * 38 and old.objects[1].box == (30, 5, 50, 25)


def test_refine_keeps_a_reference_mode_prompt() -> None:
    seg = RefiningSegmenter()
    obj = SegmentedObject(box=(0, 0, 10, 10), points=((5, 5),), prompt_box=(-3, 0, 10, 12), prompt_points=((5, 5),))
    result = SegmentationResult("q", "visionreasoner", "", "", ParseStatus.OK, SIZE, [obj], image=_image())
    new = refine_object(seg, result, 0, add_points=[[7, 7]])
    assert seg.calls[-1][0].box == (-3, 0, 10, 12) and seg.calls[-1][0].points == ((5, 5), (7, 7))
    assert new.objects[0].segmenter_prompt == ((-3, 0, 10, 12), ((5, 5), (7, 7)))
    assert seg.calls[-1][0].mask_input is None  # a reasoner result carries no logits


@pytest.mark.parametrize("index", [2, -1, True, 1.0, "0", None])
def test_refine_index_out_of_range_says_the_valid_range(index) -> None:
    seg = RefiningSegmenter()
    with pytest.raises(PromptError, match=r"index must be an integer from 0 to 1 \(the result has 2 object\(s\)\)"):
        refine_object(seg, _two(seg), index, add_points=[[1, 1]])


def test_refine_refuses_nothing_to_do_bad_points_no_image_and_no_objects() -> None:
    seg = RefiningSegmenter()
    result = _two(seg)
    with pytest.raises(PromptError, match="nothing to refine: send add_points"):
        refine_object(seg, result, 0)
    with pytest.raises(PromptError, match=r"add_points\[0\] must be 2 numbers \[x, y\] .*item 1, nan is not a finite"):
        refine_object(seg, result, 0, add_points=[[1, float("nan")]])
    with pytest.raises(PromptError, match="remove_points must be a list of points"):
        refine_object(seg, result, 0, remove_points="here")
    with pytest.raises(PromptError, match="box .* lies entirely outside"):
        refine_object(seg, result, 0, box=[100, 100, 200, 200])
    with pytest.raises(PromptError, match="carries no image"):
        refine_object(seg, SegmentationResult.from_dict(result.to_dict()), 0, add_points=[[1, 1]])
    with pytest.raises(PromptError, match="has no objects"):
        refine_object(seg, select_objects(result, []), 0, add_points=[[1, 1]])


def test_refine_on_a_segmenter_without_refinement() -> None:
    seg = PlainSegmenter()
    result = _two(seg)
    assert result.objects[0].low_res_logits is None
    new = refine_object(seg, result, 0, add_points=[[15, 15]])  # positive clicks need no refinement support
    assert new.objects[0].points == ((10, 10), (15, 15)) and seg.calls[-1][0].mask_input is None
    with pytest.raises(RefinementNotSupported):
        refine_object(seg, result, 0, remove_points=[[5, 5]])


def test_a_reasoning_result_keeps_its_logits_and_refines_from_them() -> None:
    from scripted import ScriptedReasoner

    answer = ('<think>x</think><answer>[{"bbox_2d": [100, 100, 400, 400], "point_2d": [200, 200]}]</answer>')
    seg = RefiningSegmenter()
    pipe = SegZeroPipeline(ScriptedReasoner(answer), seg)
    result = pipe.segment(_image(), "the thing")
    obj = result.objects[0]
    assert obj.low_res_logits is not None and obj.low_res_logits.shape == (256, 256)
    refined = pipe.refine_object(result, 0, remove_points=[[obj.box[0] + 1, obj.box[1] + 1]])
    assert np.array_equal(seg.calls[-1][0].mask_input, obj.low_res_logits)
    assert refined.reasoner == "scripted" and refined.reasoning == "x" and refined.query == "the thing"
    assert "low_res_logits" not in result.to_json()


# --- select_objects -------------------------------------------------------------------------------


def test_select_keeps_the_given_order_and_recomputes_the_union() -> None:
    result = segment_by_prompts(BoxSegmenter(), _image(), [{"box": [0, 0, 3, 3]}, {"box": [10, 10, 11, 11]},
                                                          {"box": [20, 20, 24, 24]}])
    picked = select_objects(result, [2, np.int64(0)])
    assert [o.box for o in picked.objects] == [(20, 20, 24, 24), (0, 0, 3, 3)]
    assert picked.to_dict()["union"]["area"] == 25 + 16 and int(picked.union_mask.sum()) == 41
    assert len(result.objects) == 3 and int(result.union_mask.sum()) == 45
    assert picked.image is result.image and picked.prompt_format == PROMPTS_FORMAT
    empty = select_objects(result, [])
    assert empty.objects == [] and not empty.union_mask.any()


@pytest.mark.parametrize(("indices", "words"), [
    ([0, 0], "indices[1] repeats object 0"), ([3], "indices[0] must be an object index (0 to 2)"),
    ([-1], "(0 to 2)"), ([True], "got True"), ("01", "indices must be a list"), (2, "indices must be a list"),
    ([0.0], "got 0.0"),
])
def test_select_refuses_duplicates_and_out_of_range(indices, words) -> None:
    result = segment_by_prompts(BoxSegmenter(), _image(), [{"box": [0, 0, 3, 3]}] * 3)
    with pytest.raises(PromptError) as info:
        select_objects(result, indices)
    assert words in str(info.value)


# --- a pipeline without a reasoner ----------------------------------------------------------------


def test_pipeline_without_reasoner_refuses_reasoning_and_says_what_to_use() -> None:
    pipe = SegZeroPipeline(None, BoxSegmenter())
    for call in (lambda: pipe.segment(_image(), "cups"), lambda: pipe.segment_many([(_image(), "cups")]),
                 lambda: asyncio.run(pipe.asegment(_image(), "cups"))):
        with pytest.raises(NoReasonerError, match="no reasoner.*segment_by_prompts"):
            call()
    pipe.close()


def test_pipeline_steering_methods_use_its_segmenter_and_limits() -> None:
    seg = RefiningSegmenter()
    pipe = SegZeroPipeline(None, seg, max_objects=2, max_pixels=W * H)
    result = pipe.segment_by_prompts(_image(), [{"box": [1, 1, 9, 9]}, {"points": [[20, 20]]}])
    refined = pipe.refine_object(result, 0, remove_points=[[5, 5]])
    final = pipe.select_objects(refined, [0])
    assert len(seg.calls) == 2 and [o.negative_points for o in final.objects] == [((5, 5),)]
    with pytest.raises(PromptError, match="cap of 2 objects"):
        pipe.segment_by_prompts(_image(), [{"box": [1, 1, 9, 9]}] * 3)
    assert len(pipe.segment_by_prompts(_image(), [{"box": [1, 1, 9, 9]}] * 3, max_objects=3).objects) == 3
    with pytest.raises(ImageTooLargeError):
        pipe.segment_by_prompts(np.zeros((H + 1, W, 3), np.uint8), [{"box": [1, 1, 9, 9]}])
    with pytest.raises(ValueError, match="no segmenter"):
        SegZeroPipeline(None, None).segment_by_prompts(_image(), [{"box": [1, 1, 9, 9]}])


def test_from_pretrained_reasoner_none_loads_only_the_segmenter(monkeypatch) -> None:
    import segzero_tool.loading as loading

    def no(*_a, **_k):
        raise AssertionError("the reasoner must not be resolved")

    monkeypatch.setattr(loading, "resolve_reasoner_class", no)
    seg = BoxSegmenter()
    for name in ("none", " None "):
        pipe = SegZeroPipeline.from_pretrained(reasoner=name, segmenter=seg, reasoner_backend="no.such:Backend")
        assert pipe.reasoner is None and pipe.segmenter is seg
    with pytest.raises(BackendError, match="nothing to load"):
        SegZeroPipeline.from_pretrained(reasoner="none", with_segmenter=False)


def test_settings_accept_reasoner_none_without_loading_anything() -> None:
    s = PipelineSettings.resolve(environ={"SEGZERO_REASONER": "none"})
    assert s.no_reasoner and not PipelineSettings().no_reasoner
    s = PipelineSettings.resolve(environ={}, overrides={"reasoner": "none", "segmenter_backend": "scripted:BoxSegmenter"})
    pipe = s.build_pipeline()
    assert pipe.reasoner is None and isinstance(pipe.segmenter, BoxSegmenter)
    assert pipe.segment_by_prompts(_image(), [{"box": [1, 1, 4, 4]}]).objects[0].area == 16


# --- the embedding cache, on the tiny random SAM2 -------------------------------------------------


@pytest.fixture(scope="module")
def tiny_sam2_dir(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("torchvision")
    from segzero_tool.testing import tiny_sam2

    return tiny_sam2.build_tiny_sam2(tmp_path_factory.mktemp("sam"), seed=0)


def _encoder_calls(monkeypatch, pipe: SegZeroPipeline) -> list[int]:
    model = pipe.segmenter.model
    calls: list[int] = []
    original = model.get_image_embeddings

    def spy(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(model, "get_image_embeddings", spy)
    return calls


def test_tiny_sam2_second_call_and_refine_skip_the_encoder(tiny_sam2_dir, monkeypatch) -> None:
    pipe = SegZeroPipeline.from_pretrained(reasoner="none", segmenter=str(tiny_sam2_dir), device="cpu")
    calls = _encoder_calls(monkeypatch, pipe)
    prompts: list[list[ObjectPrompt]] = []
    segment = pipe.segmenter.segment

    def record(image, given):
        prompts.append(list(given))
        return segment(image, given)

    monkeypatch.setattr(pipe.segmenter, "segment", record)
    image = np.random.default_rng(3).integers(0, 256, (97, 61, 3), dtype=np.uint8)
    first = pipe.segment_by_prompts(image, [{"box": [5, 5, 50, 80], "points": [[20, 30]]}, {"points": [[40, 60]]}])
    assert len(calls) == 1
    second = pipe.segment_by_prompts(image.copy(), [{"box": [0, 0, 30, 30]}])
    assert len(calls) == 1  # same content: the cached embedding
    refined = pipe.refine_object(first, 0, add_points=[[30, 40]], remove_points=[[10, 70]])
    assert len(calls) == 1  # refine: the cached embedding too
    logits = first.objects[0].low_res_logits  # (S/4, S/4): 64 x 64 for the tiny model's 256-pixel input
    assert logits.shape == (64, 64) and logits.dtype == np.float32
    assert np.array_equal(prompts[-1][0].mask_input, logits)  # the previous logits were fed back
    assert refined.objects[0].negative_points == ((10, 70),) and refined.objects[0].mask.shape == (97, 61)
    assert not np.array_equal(refined.objects[0].low_res_logits, first.objects[0].low_res_logits)
    assert refined.objects[1] is first.objects[1] and second.objects[0].box == (0, 0, 30, 30)
    assert math.isfinite(refined.objects[0].score)
    pipe.segment_by_prompts(np.zeros((97, 61, 3), np.uint8), [{"box": [0, 0, 30, 30]}])
    assert len(calls) == 2  # another image: encoded once


# --- the README's subsection, run as written (the tiny random SAM2 for sam2.1-hiera-tiny) ---------


def _readme_section(title: str) -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    start = readme.index(title + "\n")
    ends = [i for i in (readme.find("\n## ", start), readme.find("\n### ", start + len(title))) if i > 0]
    return readme[start:min(ends)]


def test_readme_prompts_subsection_runs_as_written(tiny_sam2_dir, tmp_path, monkeypatch) -> None:
    import re

    section = _readme_section("### Your own boxes and points: no reasoner")
    [code] = re.findall(r"(?ms)^```python\n(.*?)^```", section)
    code = code.replace('"sam2.1-hiera-tiny"', repr(str(tiny_sam2_dir)))
    code = code.replace('"examples/coffee.png"', repr(str(REPO / "examples" / "coffee.png")))
    monkeypatch.chdir(tmp_path)
    real = SegZeroPipeline.from_pretrained
    made: list[SegZeroPipeline] = []
    encoder: list[list[int]] = []

    def from_pretrained(*args, **kwargs):
        pipe = real(*args, **kwargs)
        made.append(pipe)
        encoder.append(_encoder_calls(monkeypatch, pipe))
        return pipe

    monkeypatch.setattr(SegZeroPipeline, "from_pretrained", from_pretrained)
    scope: dict = {"SegZeroPipeline": SegZeroPipeline}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - the README's own example
    [pipe] = made
    result, better, final = scope["result"], scope["better"], scope["final"]
    # "loads only the segmenter; its segment raises NoReasonerError"
    assert pipe.reasoner is None
    with pytest.raises(NoReasonerError):
        pipe.segment(REPO / "examples" / "coffee.png", "the cup")
    # "the same SegmentationResult ..., prompt_format "prompts", reasoner None and no reasoning text"
    assert isinstance(result, SegmentationResult) and (result.prompt_format, result.reasoner, result.reasoning) == (
        "prompts", None, "")
    # "each object keeps its box, points, negative_points and label"
    cup, spoon = result.objects
    assert (cup.box, cup.label) == ((172, 18, 410, 300), "cup")
    assert (spoon.box, spoon.points, spoon.negative_points, spoon.label) == (None, ((365, 285),), ((440, 300),), "spoon")
    # "a second call on the same image, and every refine_object, skips the image encoder"
    assert encoder == [[1]]
    # "a new result (the old one is left unchanged) ... extra positive and negative clicks"
    assert result.objects[1] is spoon and spoon.points == ((365, 285),)
    assert better.objects[1].points == ((365, 285), (405, 110))
    assert better.objects[1].negative_points == ((440, 300), (300, 250))
    # "select_objects keeps the objects at the given indices, in that order"
    assert [o.label for o in final.objects] == ["spoon", "cup"]
    assert (tmp_path / "results" / "result.json").is_file() and (tmp_path / "results" / "mask_1.png").is_file()
    # "The same functions take any segmenter in segzero_tool.steer"
    import segzero_tool.steer as steer

    assert {"segment_by_prompts", "refine_object", "select_objects"} <= set(steer.__all__)


def test_the_adapters_read_a_prompts_result() -> None:
    """The MCP server's store and encoder and the LangChain tool's text take a result made from prompts."""
    pytest.importorskip("mcp")
    pytest.importorskip("langchain_core")
    from segzero_tool.agents.tool import summarize_result
    from segzero_tool.mcp_server.results import encode_result
    from segzero_tool.mcp_server.store import ResultStore

    result = segment_by_prompts(RefiningSegmenter(), _image(), [{"box": [1, 1, 9, 9], "negative_points": [[4, 4]],
                                                                 "label": "a"}, {"points": [[20, 20]]}])
    store = ResultStore()
    rid = store.put(result)
    encoded = encode_result(result, rid, mask_encoding="rle", max_bytes=100_000, stored=store.get(rid).result_dict)
    out = encoded.output
    assert out.prompt_format == "prompts" and out.parse_status == "ok" and len(out.objects) == 2
    assert "Found 2 object(s)" in encoded.text and len(store.mask_png(rid, 0)) > 0
    assert "#1: box none; point (20, 20)" in summarize_result(result)
