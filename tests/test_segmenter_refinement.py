"""Refinement through the segmenter layer (issue #12): negative points, a previous mask
(``mask_input``) and the low-resolution logits of the kept mask.

The transformers backend runs on the tiny random SAM2 (image side 256, so ``S/4 = 64``), loaded
through ``from_pretrained`` as in ``test_segmenter_transformers.py``; the base-class contract is
checked with small custom segmenters, and the deterministic ``BoxSegmenter`` test double too.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest

from segzero_tool.errors import RefinementNotSupported, SegZeroError
from segzero_tool.segmenters.base import ObjectPrompt, Segmenter, SegmenterOutput, check_mask_input

sys.path.insert(0, str(Path(__file__).parent))
from scripted import LOW_RES, BoxSegmenter  # noqa: E402

# --- the API: ObjectPrompt, SegmenterOutput, the refusal contract (no torch needed) ----------------


def test_object_prompt_keeps_positional_construction_and_defaults() -> None:
    p = ObjectPrompt((1, 2, 3, 4), ((5, 6),))
    assert p.box == (1, 2, 3, 4) and p.points == ((5, 6),)
    assert p.negative_points == () and p.mask_input is None and not p.refines
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.negative_points = ((1, 1),)  # type: ignore[misc]
    assert ObjectPrompt(None, (), ((1, 1),)).refines
    assert ObjectPrompt(None, mask_input=np.zeros((4, 4), np.float32)).refines


def test_object_prompt_equality_compares_mask_by_value_and_hash_ignores_it() -> None:
    mask = np.arange(16, dtype=np.float32).reshape(4, 4)
    a = ObjectPrompt((1, 2, 3, 4), negative_points=((1, 1),), mask_input=mask)
    b = ObjectPrompt((1, 2, 3, 4), negative_points=((1, 1),), mask_input=mask.copy())
    c = ObjectPrompt((1, 2, 3, 4), negative_points=((1, 1),), mask_input=mask + 1)
    d = ObjectPrompt((1, 2, 3, 4), negative_points=((1, 1),))
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a != c and a != d and d != a
    assert ObjectPrompt((1, 2, 3, 4), ((5, 6),)) == ObjectPrompt((1, 2, 3, 4), ((5, 6),))
    assert ObjectPrompt((1, 2, 3, 4)) != ObjectPrompt((1, 2, 3, 4), negative_points=((0, 0),))


def test_object_prompt_repr_is_short_and_unchanged_for_plain_prompts() -> None:
    assert repr(ObjectPrompt((1, 2, 3, 4), ((5, 6),))) == "ObjectPrompt(box=(1, 2, 3, 4), points=((5, 6),))"
    text = repr(ObjectPrompt(None, (), ((1, 2),), np.zeros((256, 256), np.float32)))
    assert text == "ObjectPrompt(box=None, points=(), negative_points=((1, 2),), mask_input=<(256, 256) float32>)"


def test_segmenter_output_checks_low_res_logits_shape() -> None:
    masks, scores = np.zeros((2, 5, 5), bool), np.zeros(2, np.float32)
    assert SegmenterOutput(masks, scores).low_res_logits is None
    assert SegmenterOutput(masks, scores, np.zeros((2, 64, 64), np.float32)).low_res_logits.shape == (2, 64, 64)
    for bad in (np.zeros((3, 64, 64)), np.zeros((64, 64))):
        with pytest.raises(ValueError, match="low_res_logits"):
            SegmenterOutput(masks, scores, bad)


def test_check_mask_input() -> None:
    out = check_mask_input(np.ones((8, 8), np.float64), 8)
    assert out.dtype == np.float32 and out.flags.c_contiguous
    assert check_mask_input(np.ones((8, 8), np.int16), 8).dtype == np.float32
    with pytest.raises(ValueError, match=r"mask_input of object 3 must have shape \(8, 8\)"):
        check_mask_input(np.ones((8, 9), np.float32), 8, index=3)
    for bad, match in ((np.ones((8, 8), bool), "float logits"), (np.ones((8, 8), complex), "float logits"),
                       (np.ones((8, 8), object), "float logits"), ("mask", "numpy array"),
                       (np.full((8, 8), np.inf), "not finite"), (np.full((8, 8), 1e39), "not finite")):
        with pytest.raises(ValueError, match=match):
            check_mask_input(bad, 8)


class PlainSegmenter(Segmenter):
    """A backend written without refinement in mind (supports_refinement stays False)."""

    name = "plain"

    def __init__(self) -> None:
        self.calls = 0

    def segment(self, image, prompts):
        self.calls += 1
        n = len(list(prompts))
        return SegmenterOutput(np.zeros((n, *image.shape[:2]), bool), np.zeros(n, np.float32))


@pytest.mark.parametrize(
    "prompt",
    [ObjectPrompt((0, 0, 4, 4), negative_points=((1, 1),)),
     ObjectPrompt((0, 0, 4, 4), mask_input=np.zeros((256, 256), np.float32))],
)
def test_backend_without_refinement_refuses_with_a_typed_error(prompt: ObjectPrompt) -> None:
    seg = PlainSegmenter()
    assert Segmenter.supports_refinement is False and seg.supports_refinement is False
    with pytest.raises(RefinementNotSupported) as info:
        seg.segment(np.zeros((8, 8, 3), np.uint8), [ObjectPrompt((0, 0, 2, 2)), prompt])
    assert seg.calls == 0  # refused before the backend ran: never silently ignored
    message = str(info.value)
    assert "'plain'" in message and "PlainSegmenter" in message and "objects [1]" in message
    assert "transformers SAM2 backend" in message
    assert isinstance(info.value, SegZeroError) and info.value.exit_code == 5


def test_backend_without_refinement_still_segments_plain_prompts() -> None:
    seg = PlainSegmenter()
    prompts = (p for p in [ObjectPrompt((0, 0, 2, 2)), ObjectPrompt(None, ((1, 1),))])  # any iterable
    out = seg.segment(np.zeros((8, 8, 3), np.uint8), prompts)
    assert out.masks.shape == (2, 8, 8) and seg.calls == 1


def test_subclass_of_a_refusing_backend_refuses_and_declaring_support_lets_prompts_through() -> None:
    class Child(PlainSegmenter):
        def segment(self, image, prompts):
            return super().segment(image, prompts)

    refining = ObjectPrompt((0, 0, 4, 4), negative_points=((1, 1),))
    with pytest.raises(RefinementNotSupported):
        Child().segment(np.zeros((8, 8, 3), np.uint8), [refining])

    class Supporting(PlainSegmenter):
        supports_refinement = True

    assert Supporting().segment(np.zeros((8, 8, 3), np.uint8), [refining]).masks.shape == (1, 8, 8)


def test_backends_that_support_refinement() -> None:
    pytest.importorskip("torch")
    from segzero_tool.segmenters.meta_sam2 import MetaSam2Segmenter
    from segzero_tool.segmenters.transformers_sam2 import TransformersSam2Segmenter

    assert TransformersSam2Segmenter.supports_refinement is True
    assert MetaSam2Segmenter.supports_refinement is True
    assert BoxSegmenter.supports_refinement is True


# --- BoxSegmenter (tests/scripted.py) --------------------------------------------------------------


def _old_box_masks(shape, prompts):
    """BoxSegmenter's algorithm before refinement existed, for the byte-identity check."""
    h, w = shape
    masks = np.zeros((len(prompts), h, w), bool)
    for k, p in enumerate(prompts):
        if p.box is not None:
            x1, y1, x2, y2 = (int(v) for v in p.box)
            masks[k, y1 : y2 + 1, x1 : x2 + 1] = True
        else:
            x, y = (int(v) for v in p.points[0])
            masks[k, max(0, y - 1) : y + 2, max(0, x - 1) : x + 2] = True
    return masks


def test_box_segmenter_is_unchanged_for_plain_prompts() -> None:
    prompts = [ObjectPrompt((2, 3, 20, 30), ((5, 5),)), ObjectPrompt(None, ((0, 0), (9, 9))),
               ObjectPrompt((0, 0, 500, 500))]
    for shape in ((40, 30), (300, 700)):
        seg = BoxSegmenter(score=0.5)
        out = seg.segment(np.zeros((*shape, 3), np.uint8), prompts)
        assert np.array_equal(out.masks, _old_box_masks(shape, prompts))
        assert out.scores.tolist() == [0.5] * 3 and seg.calls == [((*shape, 3), prompts)]


def test_box_segmenter_refinement_is_deterministic() -> None:
    seg = BoxSegmenter()
    image = np.zeros((40, 30, 3), np.uint8)
    first = seg.segment(image, [ObjectPrompt((2, 3, 10, 12))])
    assert first.low_res_logits.shape == (1, LOW_RES, LOW_RES) and first.low_res_logits.dtype == np.float32
    assert set(np.unique(first.low_res_logits)) == {-10.0, 10.0}
    # Feeding the logits back alone reproduces the mask exactly (images up to 256 a side).
    again = seg.segment(image, [ObjectPrompt(None, mask_input=first.low_res_logits[0])])
    assert np.array_equal(again.masks, first.masks)
    # A negative point clears the 3x3 square around it; the previous mask is OR-ed with the new box.
    refined = seg.segment(image, [ObjectPrompt((20, 30, 25, 35), negative_points=((2, 3),),
                                               mask_input=first.low_res_logits[0])])
    expected = first.masks[0].copy()
    expected[30:36, 20:26] = True
    expected[2:5, 1:4] = False
    assert np.array_equal(refined.masks[0], expected)
    with pytest.raises(ValueError, match="mask_input"):
        seg.segment(image, [ObjectPrompt(None, mask_input=np.zeros((64, 64), np.float32))])


# --- transformers SAM2 on the tiny random model ------------------------------------------------------

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("torchvision")

from segzero_tool.segmenters.transformers_sam2 import (  # noqa: E402
    NO_MASK_LOGIT,
    TransformersSam2Segmenter,
)
from segzero_tool.testing import tiny_sam2  # noqa: E402

SIDE = 64  # S/4 for the tiny model (image side 256)


def _image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_sam2.build_tiny_sam2(tmp_path_factory.mktemp("tiny_sam2"), seed=0)


@pytest.fixture(scope="module")
def seg(tiny_dir: Path) -> TransformersSam2Segmenter:
    return TransformersSam2Segmenter.from_pretrained(str(tiny_dir), device="cpu", progress=False)


def _fresh(seg: TransformersSam2Segmenter, **kwargs) -> TransformersSam2Segmenter:
    return TransformersSam2Segmenter(seg.model, seg.processor, device="cpu", **kwargs)


class _Calls:
    """Records the keyword arguments of every forward call of a module (a forward pre-hook)."""

    def __init__(self, module) -> None:
        self.module, self.kwargs = module, []

    def _hook(self, _module, _args, kwargs):
        self.kwargs.append(dict(kwargs))

    def __enter__(self) -> _Calls:
        self.handle = self.module.register_forward_pre_hook(self._hook, with_kwargs=True)
        return self

    def __exit__(self, *exc) -> None:
        self.handle.remove()


def _encoder_spy(monkeypatch: pytest.MonkeyPatch, segmenter: TransformersSam2Segmenter) -> list[int]:
    calls: list[int] = []
    original = segmenter.model.get_image_embeddings

    def spy(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(segmenter.model, "get_image_embeddings", spy)
    return calls


def _logits(rng_seed: int = 1) -> np.ndarray:
    return (np.random.default_rng(rng_seed).normal(size=(SIDE, SIDE)) * 4).astype(np.float32)


BOX, POINT, NEG = (5.0, 5.0, 50.0, 80.0), (20.0, 30.0), (40.0, 70.0)


def test_low_res_size_is_a_quarter_of_the_input_side(seg: TransformersSam2Segmenter) -> None:
    assert seg.image_size == 256 and seg.low_res_size == SIDE


def test_negative_points_become_label_zero_tokens_after_the_positives(seg: TransformersSam2Segmenter) -> None:
    s = _fresh(seg)
    image = _image(97, 61)
    with _Calls(s.model) as model:
        plain = s.segment(image, [ObjectPrompt(BOX, (POINT,))])
        negative = s.segment(image, [ObjectPrompt(BOX, (POINT,), ((30.5, 48.5), NEG))])
    before, after = model.kwargs
    assert before["input_labels"][0, 0].tolist() == [2, 3, 1]
    assert after["input_labels"][0, 0].tolist() == [2, 3, 1, 0, 0]
    scale = torch.tensor([256 / 61, 256 / 97])
    expected = torch.tensor([BOX[:2], BOX[2:], POINT, (30.5, 48.5), NEG]) * scale
    assert torch.allclose(after["input_points"][0, 0], expected)
    assert after.get("input_masks") is None
    assert after["multimask_output"] is True  # no previous mask: the first-click convention
    assert negative.scores[0] != pytest.approx(plain.scores[0], abs=1e-6)
    assert not np.array_equal(negative.low_res_logits, plain.low_res_logits)


def test_negative_only_prompt_runs(seg: TransformersSam2Segmenter) -> None:
    with _Calls(seg.model) as model:
        out = seg.segment(_image(97, 61), [ObjectPrompt(None, negative_points=(NEG,))])
    assert model.kwargs[0]["input_labels"][0, 0].tolist() == [0]
    assert out.masks.shape == (1, 97, 61) and np.isfinite(out.scores).all()


def test_low_res_logits_are_the_kept_candidates_logits(seg: TransformersSam2Segmenter) -> None:
    image = _image(97, 61)
    prompts = [ObjectPrompt(BOX, (POINT,)), ObjectPrompt((0, 0, 60, 96), (POINT,)), ObjectPrompt(None, (NEG,))]
    out = seg.segment(image, prompts)
    assert out.low_res_logits.shape == (3, SIDE, SIDE) and out.low_res_logits.dtype == np.float32
    # Post-processing the returned logits gives the returned masks.
    again = seg.processor.post_process_masks(
        [torch.from_numpy(out.low_res_logits)[:, None]], [[97, 61]], mask_threshold=0.0, binarize=True
    )[0][:, 0].numpy()
    assert np.array_equal(again, out.masks)
    # They are the candidate with the best predicted IoU of a plain multimask forward.
    embedding = seg.encode(image)
    for k, prompt in enumerate(prompts[:2]):
        pts = torch.tensor([[[prompt.box[:2], prompt.box[2:], prompt.points[0]]]]) * torch.tensor([256 / 61, 256 / 97])
        with torch.inference_mode():
            ref = seg.model(image_embeddings=list(embedding.features), input_points=pts.float(),
                            input_labels=torch.tensor([[[2, 3, 1]]]), multimask_output=True)
        best = int(ref.iou_scores[0, 0].argmax())
        np.testing.assert_allclose(out.low_res_logits[k], ref.pred_masks[0, 0, best].numpy(), atol=1e-5)
        assert out.scores[k] == pytest.approx(float(ref.iou_scores[0, 0, best]), abs=1e-6)


def test_mask_input_reaches_input_masks_with_single_mask_output(seg: TransformersSam2Segmenter) -> None:
    s = _fresh(seg)
    image = _image(97, 61)
    previous = _logits()
    with _Calls(s.model) as model, _Calls(s.model.prompt_encoder) as encoder:
        out = s.segment(image, [ObjectPrompt(BOX, (POINT,), (NEG,), previous)])
    (call,) = model.kwargs
    assert call["input_masks"].shape == (1, 1, SIDE, SIDE) and call["input_masks"].dtype == torch.float32
    assert torch.equal(call["input_masks"][0, 0], torch.from_numpy(previous))
    assert call["input_points"].shape == (1, 1, 4, 2) and call["input_labels"][0, 0].tolist() == [2, 3, 1, 0]
    assert call["multimask_output"] is False  # SAM2's refinement convention with a previous mask
    assert encoder.kwargs[0]["input_masks"].shape == (1, 1, SIDE, SIDE)  # the mask embedding is used
    # Equals a direct single-mask forward with the same mask.
    embedding = s.encode(image)
    with torch.inference_mode():
        ref = s.model(image_embeddings=list(embedding.features), input_points=call["input_points"],
                      input_labels=call["input_labels"], input_masks=call["input_masks"], multimask_output=False)
    assert ref.pred_masks.shape[2] == 1
    np.testing.assert_allclose(out.low_res_logits[0], ref.pred_masks[0, 0, 0].numpy(), atol=1e-5)
    assert out.scores[0] == pytest.approx(float(ref.iou_scores[0, 0, 0]), abs=1e-6)


def test_mask_input_changes_the_result(seg: TransformersSam2Segmenter) -> None:
    image = _image(97, 61)
    a = seg.segment(image, [ObjectPrompt(BOX, (POINT,), mask_input=_logits(1))])
    b = seg.segment(image, [ObjectPrompt(BOX, (POINT,), mask_input=_logits(2))])
    assert not np.array_equal(a.low_res_logits, b.low_res_logits)


def test_masked_objects_batch_one_per_row_and_equal_one_at_a_time(seg: TransformersSam2Segmenter) -> None:
    s = _fresh(seg)
    image = _image(97, 61)
    prompts = [ObjectPrompt((i, i, 40 + i, 60 + i), ((20 + i, 30 + i),), mask_input=_logits(i)) for i in range(3)]
    with _Calls(s.model) as model, _Calls(s.model.mask_decoder) as decoder:
        batch = s.segment(image, prompts)
    assert len(decoder.kwargs) == 1
    assert model.kwargs[0]["input_masks"].shape == (3, 1, SIDE, SIDE)
    assert model.kwargs[0]["input_points"].shape == (3, 1, 3, 2)
    for k, prompt in enumerate(prompts):
        alone = s.segment(image, [prompt])
        assert batch.scores[k] == pytest.approx(alone.scores[0], abs=1e-5)
        np.testing.assert_allclose(batch.low_res_logits[k], alone.low_res_logits[0], atol=1e-4)


def test_mixing_objects_with_and_without_mask_input(seg: TransformersSam2Segmenter) -> None:
    s = _fresh(seg)
    image = _image(97, 61)
    plain = [ObjectPrompt(BOX, (POINT,)), ObjectPrompt((10, 10, 40, 50), ((20, 20),))]
    masked = [ObjectPrompt(BOX, (POINT,), mask_input=_logits(3)), ObjectPrompt((0, 0, 30, 30), ((9, 9),), mask_input=_logits(4))]
    mixed = [plain[0], masked[0], ObjectPrompt(None), plain[1], masked[1]]
    with _Calls(s.model) as model:
        out = s.segment(image, mixed)
    assert len(model.kwargs) == 2  # same token count: one batch without masks, one with
    assert sorted(c["multimask_output"] for c in model.kwargs) == [False, True]
    assert [c.get("input_masks") is None for c in model.kwargs].count(True) == 1
    only_plain = s.segment(image, plain)
    assert np.array_equal(out.masks[[0, 3]], only_plain.masks) and np.array_equal(out.scores[[0, 3]], only_plain.scores)
    assert np.array_equal(out.low_res_logits[[0, 3]], only_plain.low_res_logits)
    only_masked = s.segment(image, masked)
    np.testing.assert_allclose(out.low_res_logits[[1, 4]], only_masked.low_res_logits, atol=1e-5)
    assert not out.masks[2].any() and out.scores[2] == 0 and (out.low_res_logits[2] == NO_MASK_LOGIT).all()


def test_padded_mode_keeps_masked_and_plain_objects_apart(seg: TransformersSam2Segmenter) -> None:
    s = _fresh(seg, batching="padded")
    mixed = [ObjectPrompt(BOX, (POINT,)), ObjectPrompt(None, ((9, 9),)), ObjectPrompt(BOX, mask_input=_logits()),
             ObjectPrompt(None, ((9, 9), (1, 1), (2, 2)), mask_input=_logits(5))]
    with _Calls(s.model) as model:
        out = s.segment(_image(97, 61), mixed)
    assert len(model.kwargs) == 2
    with_mask = next(c for c in model.kwargs if c.get("input_masks") is not None)
    assert with_mask["input_points"].shape == (2, 1, 3, 2) and with_mask["input_labels"][0, 0].tolist() == [2, 3, -10]
    assert out.low_res_logits.shape == (4, SIDE, SIDE)


def test_mask_only_prompt_uses_a_not_a_point_token(seg: TransformersSam2Segmenter) -> None:
    with _Calls(seg.model) as model:
        out = seg.segment(_image(97, 61), [ObjectPrompt(None, mask_input=_logits())])
    assert model.kwargs[0]["input_labels"][0, 0].tolist() == [-1]
    assert out.scores[0] > 0 and out.masks.shape == (1, 97, 61)


def test_refinement_round_trip_uses_the_cached_embedding(seg: TransformersSam2Segmenter, monkeypatch) -> None:
    s = _fresh(seg)
    calls = _encoder_spy(monkeypatch, s)
    image = _image(97, 61, seed=7)
    first = s.segment(image, [ObjectPrompt(BOX, (POINT,)), ObjectPrompt((0, 0, 60, 96))])
    refined = s.segment(image.copy(), [ObjectPrompt(BOX, (POINT,), (NEG,), first.low_res_logits[0])])
    assert len(calls) == 1 and (s.cache.hits, s.cache.misses) == (1, 1)
    assert refined.masks.shape == (1, 97, 61) and refined.low_res_logits.shape == (1, SIDE, SIDE)
    embedding = s.encode(image)  # decode() on an explicit embedding: no encoder either
    again = s.decode(embedding, [ObjectPrompt(BOX, (POINT,), (NEG,), first.low_res_logits[0])])
    assert len(calls) == 1 and np.array_equal(again.low_res_logits, refined.low_res_logits)


def test_zero_prompts_give_empty_low_res_logits(seg: TransformersSam2Segmenter) -> None:
    out = seg.segment(_image(20, 30), [])
    assert out.low_res_logits.shape == (0, SIDE, SIDE)


@pytest.mark.parametrize(
    ("prompt", "match"),
    [
        (ObjectPrompt(BOX, negative_points=((float("nan"), 2),)), "non-finite"),
        (ObjectPrompt(BOX, negative_points=((1.0, float("-inf")),)), "non-finite"),
        (ObjectPrompt(BOX, negative_points=((1e39, 2.0),)), "too large"),
        (ObjectPrompt(BOX, negative_points=((1, 2, 3),)), "negative point must be"),
        (ObjectPrompt(BOX, negative_points=((None, 2),)), "negative point must be"),
        (ObjectPrompt(BOX, negative_points=(("x", 2),)), "negative point must be"),
        (ObjectPrompt(BOX, negative_points=(5,)), "negative point must be"),
        (ObjectPrompt(BOX, negative_points=None), "negative points must be a sequence"),
        (ObjectPrompt(BOX, negative_points=np.array([[1.0, np.nan]])), "non-finite"),
        (ObjectPrompt(BOX, mask_input=np.zeros((256, 256), np.float32)), r"\(64, 64\)"),
        (ObjectPrompt(BOX, mask_input=np.zeros((1, SIDE, SIDE), np.float32)), r"\(64, 64\)"),
        (ObjectPrompt(BOX, mask_input=np.zeros((SIDE, SIDE), bool)), "float logits"),
        (ObjectPrompt(BOX, mask_input=np.zeros((SIDE, SIDE), object)), "float logits"),
        (ObjectPrompt(BOX, mask_input=np.full((SIDE, SIDE), np.nan, np.float32)), "not finite"),
        (ObjectPrompt(BOX, mask_input=np.full((SIDE, SIDE), 1e300)), "not finite"),
        (ObjectPrompt(BOX, mask_input=torch.zeros(SIDE, SIDE)), "numpy array"),
    ],
)
def test_hostile_values_are_refused_before_the_model_runs(seg: TransformersSam2Segmenter, prompt, match) -> None:
    s = _fresh(seg)
    image = _image(40, 30)
    s.encode(image)
    with _Calls(s.model) as model, pytest.raises(ValueError, match=match):
        s.segment(image, [ObjectPrompt(BOX, (POINT,)), prompt])  # a valid object first
    assert model.kwargs == []


def test_huge_but_representable_negative_point_runs(seg: TransformersSam2Segmenter) -> None:
    out = seg.segment(_image(40, 30), [ObjectPrompt(BOX, (POINT,), ((1e30, -1e30),))])
    assert out.masks.shape == (1, 40, 30) and np.isfinite(out.scores).all()


def test_negative_points_as_a_numpy_array(seg: TransformersSam2Segmenter) -> None:
    image = _image(40, 30)
    as_array = seg.segment(image, [ObjectPrompt(BOX, (POINT,), np.array([NEG, (3.0, 4.0)]))])
    as_tuple = seg.segment(image, [ObjectPrompt(BOX, (POINT,), (NEG, (3.0, 4.0)))])
    assert np.array_equal(as_array.low_res_logits, as_tuple.low_res_logits)
    assert ObjectPrompt(BOX, negative_points=np.zeros((0, 2))).refines is False


def test_integer_and_float64_mask_inputs_are_accepted(seg: TransformersSam2Segmenter) -> None:
    image = _image(40, 30)
    as32 = seg.segment(image, [ObjectPrompt(BOX, mask_input=np.round(_logits()).astype(np.float32))])
    as_int = seg.segment(image, [ObjectPrompt(BOX, mask_input=np.round(_logits()).astype(np.int32))])
    as64 = seg.segment(image, [ObjectPrompt(BOX, mask_input=np.round(_logits()).astype(np.float64))])
    assert np.array_equal(as32.low_res_logits, as_int.low_res_logits)
    assert np.array_equal(as32.low_res_logits, as64.low_res_logits)


def test_refinement_in_bfloat16(tiny_dir: Path) -> None:
    """The mask input follows the model's dtype (bf16 on CUDA by default); logits come back float32."""
    s = TransformersSam2Segmenter.from_pretrained(str(tiny_dir), device="cpu", dtype="bf16", progress=False)
    image = _image(97, 61)
    first = s.segment(image, [ObjectPrompt(BOX, (POINT,)), ObjectPrompt((0, 0, 60, 96))])
    with _Calls(s.model) as model:
        refined = s.segment(image, [ObjectPrompt(BOX, (POINT,), (NEG,), first.low_res_logits[0]),
                                    ObjectPrompt((0, 0, 60, 96), mask_input=first.low_res_logits[1])])
    assert all(c["input_masks"].dtype == torch.bfloat16 for c in model.kwargs)
    assert first.low_res_logits.dtype == refined.low_res_logits.dtype == np.float32
    assert np.isfinite(refined.scores).all() and refined.masks.shape == (2, 97, 61)
