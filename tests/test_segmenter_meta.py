"""MetaSam2Segmenter: the missing-dependency error, and the per-object protocol with a fake predictor.

Meta's ``sam2`` package is not installed in the test environment; the predictor is injected through
the constructor, and ``from_pretrained``'s path/config logic runs against a stub ``sam2`` module.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest

from segzero_tool.errors import MissingDependencyError, ModelLoadError
from segzero_tool.segmenters.base import ObjectPrompt, image_key

pytest.importorskip("torch")

from segzero_tool.segmenters.meta_sam2 import MISSING_SAM2_MESSAGE, MetaSam2Segmenter  # noqa: E402


def _image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


class FakePredictor:
    """Mimics SAM2ImagePredictor's state (``_features``, ``_orig_hw``, ``_is_image_set``) and outputs.

    ``predict`` returns three 0/1 float masks: candidate 0 is the box (or empty), 1 a square around
    the first point (or the box), 2 everything; the scores rank candidate ``best`` first. The masks
    depend on the features of the image that is set, so a wrongly restored state is detected. The
    low-resolution logits are ``(3, 256, 256)``, candidate ``c`` filled with ``c``. With
    ``multimask_output=False`` (as Meta's predictor) only one candidate comes back: candidate 1.
    Every call's arguments are recorded, ``mask_input`` and ``multimask_output`` included.
    """

    def __init__(self, best: int = 1) -> None:
        self.best = best
        self._features = None
        self._orig_hw = None
        self._is_image_set = False
        self._is_batch = False
        self.set_image_calls: list[str] = []
        self.predict_calls: list[dict] = []

    def set_image(self, image: np.ndarray) -> None:
        key = image_key(image)
        self.set_image_calls.append(key)
        self._features = {"image_embed": key, "high_res_feats": [key]}
        self._orig_hw = [image.shape[:2]]
        self._is_image_set = True

    def predict(self, point_coords=None, point_labels=None, box=None, mask_input=None, multimask_output=True):
        assert self._is_image_set
        self.predict_calls.append(
            {
                "point_coords": point_coords,
                "point_labels": point_labels,
                "box": box,
                "mask_input": mask_input,
                "multimask_output": multimask_output,
                "features": self._features,
            }
        )
        height, width = self._orig_hw[0]
        masks = np.zeros((3, height, width), dtype=np.float32)
        if box is not None:
            x1, y1, x2, y2 = (int(v) for v in box)
            masks[0, y1 : y2 + 1, x1 : x2 + 1] = 1.0
        if point_coords is not None:
            x, y = (int(v) for v in point_coords[0])
            masks[1, max(0, y - 2) : y + 3, max(0, x - 2) : x + 3] = 1.0
        else:
            masks[1] = masks[0]
        masks[2] = 1.0
        scores = np.array([0.1, 0.2, 0.3], dtype=np.float32)
        scores[self.best] = 0.9
        logits = np.broadcast_to(np.arange(3, dtype=np.float32)[:, None, None], (3, 256, 256)).copy()
        if not multimask_output:
            return masks[1:2], np.array([0.8], dtype=np.float32), logits[1:2]
        return masks, scores, logits


class StatelessPredictor:
    """A predictor without SAM2ImagePredictor's private state attributes."""

    def __init__(self) -> None:
        self.set_image_calls = 0
        self.shape = (0, 0)

    def set_image(self, image: np.ndarray) -> None:
        self.set_image_calls += 1
        self.shape = image.shape[:2]

    def predict(self, point_coords=None, point_labels=None, box=None, multimask_output=True):
        return np.ones((3, *self.shape), dtype=bool), np.array([0.5, 0.7, 0.6]), None


PROMPTS = [
    ObjectPrompt(box=(2, 3, 20, 30), points=((10, 12),)),
    ObjectPrompt(box=(5, 5, 15, 15)),
    ObjectPrompt(box=None, points=((30, 40), (33, 44))),
]


# --- missing dependency ----------------------------------------------------------------------------


def test_missing_sam2_raises_missing_dependency(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sam2", None)  # makes `import sam2...` raise ImportError
    monkeypatch.setitem(sys.modules, "sam2.build_sam", None)
    with pytest.raises(MissingDependencyError) as info:
        MetaSam2Segmenter.from_pretrained("facebook/sam2.1-hiera-large", device="cpu")
    assert str(info.value) == MISSING_SAM2_MESSAGE
    assert (
        str(info.value)
        == 'Meta\'s sam2 package is not installed: pip install "segzero-tool[sam2]" (see README)'
    )
    assert isinstance(info.value, ImportError)


def test_sam2_with_missing_own_dependency_names_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    package = tmp_path / "sam2"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "build_sam.py").write_text("import hydra_is_not_installed_here\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("sam2", "sam2.build_sam"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    with pytest.raises(MissingDependencyError, match="hydra_is_not_installed_here") as info:
        MetaSam2Segmenter.from_pretrained("facebook/sam2.1-hiera-large", device="cpu")
    assert MISSING_SAM2_MESSAGE in str(info.value)
    for name in ("sam2", "sam2.build_sam"):
        sys.modules.pop(name, None)


# --- the per-object protocol ---------------------------------------------------------------------


def test_one_predict_per_object_with_reference_arguments() -> None:
    fake = FakePredictor()
    seg = MetaSam2Segmenter(predictor=fake)
    image = _image(50, 40)
    out = seg.segment(image, PROMPTS)
    assert out.masks.shape == (3, 50, 40) and out.masks.dtype == bool
    assert out.scores.shape == (3,) and out.scores.dtype == np.float32
    assert len(fake.set_image_calls) == 1 and len(fake.predict_calls) == 3
    first, box_only, points_only = fake.predict_calls
    np.testing.assert_array_equal(first["point_coords"], [[10, 12]])
    np.testing.assert_array_equal(first["point_labels"], [1])
    np.testing.assert_array_equal(first["box"], [2, 3, 20, 30])
    assert first["point_coords"].dtype == np.float32 and first["box"].dtype == np.float32
    assert box_only["point_coords"] is None and box_only["point_labels"] is None
    np.testing.assert_array_equal(box_only["box"], [5, 5, 15, 15])
    assert points_only["box"] is None
    np.testing.assert_array_equal(points_only["point_coords"], [[30, 40], [33, 44]])
    np.testing.assert_array_equal(points_only["point_labels"], [1, 1])
    assert all(c["mask_input"] is None and c["multimask_output"] is True for c in fake.predict_calls)
    assert out.low_res_logits.shape == (3, 256, 256) and out.low_res_logits.dtype == np.float32
    assert (out.low_res_logits == 1.0).all()  # candidate 1 (the best) of each object


@pytest.mark.parametrize("best", [0, 1, 2])
def test_keeps_the_top_score_mask(best: int) -> None:
    fake = FakePredictor(best=best)
    seg = MetaSam2Segmenter(predictor=fake)
    image = _image(50, 40)
    out = seg.segment(image, PROMPTS[:1])
    reference = FakePredictor(best=best)
    reference.set_image(image)
    args = {k: fake.predict_calls[0][k] for k in ("point_coords", "point_labels", "box", "mask_input")}
    expected, _, _ = reference.predict(**args)
    np.testing.assert_array_equal(out.masks[0], expected[best] > 0)
    assert out.scores[0] == pytest.approx(0.9)


def test_set_image_once_per_image_and_lru_restore() -> None:
    fake = FakePredictor()
    seg = MetaSam2Segmenter(predictor=fake, cache_size=4)
    a, b = _image(50, 40, seed=1), _image(30, 60, seed=2)
    first = seg.segment(a, PROMPTS)
    again = seg.segment(a.copy(), PROMPTS)  # same content
    assert fake.set_image_calls == [image_key(a)]
    np.testing.assert_array_equal(first.masks, again.masks)
    seg.segment(b, PROMPTS[:1])
    assert len(fake.set_image_calls) == 2
    back = seg.segment(a, PROMPTS)  # restored from the LRU, no encoder run
    assert len(fake.set_image_calls) == 2
    assert fake.predict_calls[-1]["features"]["image_embed"] == image_key(a)
    assert fake._orig_hw == [(50, 40)]
    np.testing.assert_array_equal(first.masks, back.masks)
    assert seg.cache.hits == 2 and seg.cache.misses == 2


def test_cache_size_zero_reuses_only_current_image() -> None:
    fake = FakePredictor()
    seg = MetaSam2Segmenter(predictor=fake, cache_size=0)
    a, b = _image(20, 20, seed=1), _image(20, 20, seed=2)
    seg.segment(a, PROMPTS[1:2])
    seg.segment(a, PROMPTS[1:2])
    assert len(fake.set_image_calls) == 1
    seg.segment(b, PROMPTS[1:2])
    seg.segment(a, PROMPTS[1:2])
    assert len(fake.set_image_calls) == 3 and len(seg.cache) == 0


def test_zero_prompts_do_not_touch_the_predictor() -> None:
    fake = FakePredictor()
    out = MetaSam2Segmenter(predictor=fake).segment(_image(17, 9), [])
    assert out.masks.shape == (0, 17, 9) and out.scores.shape == (0,)
    assert fake.set_image_calls == [] and fake.predict_calls == []


def test_empty_object_gets_empty_mask_without_predict() -> None:
    fake = FakePredictor()
    out = MetaSam2Segmenter(predictor=fake).segment(_image(50, 40), [ObjectPrompt(box=None), PROMPTS[1]])
    assert not out.masks[0].any() and out.scores[0] == 0.0
    assert len(fake.predict_calls) == 1 and out.masks[1].any()


def test_predictor_without_state_attributes_still_works() -> None:
    fake = StatelessPredictor()
    seg = MetaSam2Segmenter(predictor=fake)
    a, b = _image(12, 10, seed=1), _image(12, 10, seed=2)
    out = seg.segment(a, PROMPTS[1:])
    seg.segment(a, PROMPTS[1:])
    seg.segment(b, PROMPTS[1:])
    seg.segment(a, PROMPTS[1:])
    assert fake.set_image_calls == 3  # no LRU, only the current image is reused
    assert out.masks.shape == (2, 12, 10) and out.masks.all()
    assert out.scores.tolist() == pytest.approx([0.7, 0.7])


def test_wrong_mask_shape_is_reported() -> None:
    fake = StatelessPredictor()
    seg = MetaSam2Segmenter(predictor=fake)
    fake.set_image(_image(5, 5))
    seg._current_key = image_key(_image(12, 10))  # pretend the image is set; the fake keeps 5x5
    with pytest.raises(RuntimeError, match="mask"):
        seg.segment(_image(12, 10), PROMPTS[1:2])


# --- from_pretrained against a stub sam2 package -------------------------------------------------


@pytest.fixture()
def stub_sam2(monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    calls = types.SimpleNamespace(build=[])
    build_sam = types.ModuleType("sam2.build_sam")
    build_sam.HF_MODEL_ID_TO_FILENAMES = {
        "facebook/sam2.1-hiera-large": ("configs/sam2.1/sam2.1_hiera_l.yaml", "sam2.1_hiera_large.pt"),
        "facebook/sam2-hiera-tiny": ("configs/sam2/sam2_hiera_t.yaml", "sam2_hiera_tiny.pt"),
    }

    def build_sam2(config_file, ckpt_path=None, device="cuda", **kwargs):
        calls.build.append((config_file, ckpt_path, device))
        return "model"

    build_sam.build_sam2 = build_sam2
    predictor_module = types.ModuleType("sam2.sam2_image_predictor")
    predictor_module.SAM2ImagePredictor = lambda model: FakePredictor()
    package = types.ModuleType("sam2")
    package.build_sam = build_sam
    monkeypatch.setitem(sys.modules, "sam2", package)
    monkeypatch.setitem(sys.modules, "sam2.build_sam", build_sam)
    monkeypatch.setitem(sys.modules, "sam2.sam2_image_predictor", predictor_module)
    return calls


def test_local_checkpoint_infers_config(stub_sam2, tmp_path: Path) -> None:
    checkpoint = tmp_path / "sam2.1_hiera_large.pt"
    checkpoint.write_bytes(b"")
    seg = MetaSam2Segmenter.from_pretrained(checkpoint, device="cpu")
    assert stub_sam2.build == [("configs/sam2.1/sam2.1_hiera_l.yaml", str(checkpoint), "cpu")]
    assert seg.autocast_dtype is None and seg.name == "sam2"
    MetaSam2Segmenter.from_pretrained(str(tmp_path), device="cpu")  # a folder with one .pt
    assert stub_sam2.build[-1][1] == str(checkpoint)


def test_local_checkpoint_with_unknown_name_needs_config(stub_sam2, tmp_path: Path) -> None:
    checkpoint = tmp_path / "finetuned.pt"
    checkpoint.write_bytes(b"")
    with pytest.raises(ModelLoadError, match="config="):
        MetaSam2Segmenter.from_pretrained(checkpoint, device="cpu")
    MetaSam2Segmenter.from_pretrained(checkpoint, config="configs/sam2/sam2_hiera_t.yaml", device="cpu")
    assert stub_sam2.build[-1][0] == "configs/sam2/sam2_hiera_t.yaml"


def test_missing_path_or_unknown_id_raises_model_load_error(stub_sam2, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="neither an existing checkpoint"):
        MetaSam2Segmenter.from_pretrained(str(tmp_path / "missing.pt"), device="cpu")
    with pytest.raises(ModelLoadError, match="exactly one"):
        MetaSam2Segmenter.from_pretrained(str(tmp_path), device="cpu")  # empty folder


def test_uncached_hub_checkpoint_offline_raises_model_load_error(stub_sam2) -> None:
    with pytest.raises(ModelLoadError, match="could not load Meta SAM2"):
        MetaSam2Segmenter.from_pretrained(
            "facebook/sam2-hiera-tiny", device="cpu", local_files_only=True, revision="0" * 40, progress=False
        )
    assert stub_sam2.build == []


# --- refinement: negative points, mask_input, low-resolution logits (issue #12) -------------------


def test_supports_refinement() -> None:
    assert MetaSam2Segmenter.supports_refinement is True


def test_negative_points_follow_positives_with_label_zero() -> None:
    fake = FakePredictor()
    seg = MetaSam2Segmenter(predictor=fake)
    seg.segment(_image(50, 40), [
        ObjectPrompt(box=(2, 3, 20, 30), points=((10, 12),), negative_points=((4, 5), (6, 7))),
        ObjectPrompt(box=(2, 3, 20, 30), negative_points=((4, 5),)),
    ])
    both, negative_only = fake.predict_calls
    np.testing.assert_array_equal(both["point_coords"], [[10, 12], [4, 5], [6, 7]])
    np.testing.assert_array_equal(both["point_labels"], [1, 0, 0])
    assert both["point_coords"].dtype == np.float32 and both["point_labels"].dtype == np.int32
    np.testing.assert_array_equal(both["box"], [2, 3, 20, 30])
    np.testing.assert_array_equal(negative_only["point_coords"], [[4, 5]])
    np.testing.assert_array_equal(negative_only["point_labels"], [0])
    assert both["multimask_output"] is negative_only["multimask_output"] is True  # no previous mask


def test_mask_input_is_passed_with_a_leading_axis_and_single_mask_output() -> None:
    fake = FakePredictor(best=2)
    seg = MetaSam2Segmenter(predictor=fake)
    previous = np.random.default_rng(0).normal(size=(256, 256)).astype(np.float64)
    out = seg.segment(_image(50, 40), [
        ObjectPrompt(box=(2, 3, 20, 30), points=((10, 12),), mask_input=previous),
        ObjectPrompt(box=(5, 5, 15, 15)),
    ])
    refined, plain = fake.predict_calls
    assert refined["mask_input"].shape == (1, 256, 256) and refined["mask_input"].dtype == np.float32
    np.testing.assert_allclose(refined["mask_input"][0], previous.astype(np.float32))
    assert refined["multimask_output"] is False and plain["multimask_output"] is True
    assert plain["mask_input"] is None
    # The single returned mask is kept (candidate 1 of the fake), the plain object keeps its best (2).
    assert out.scores.tolist() == pytest.approx([0.8, 0.9])
    assert (out.low_res_logits[0] == 1.0).all() and (out.low_res_logits[1] == 2.0).all()


def test_mask_only_prompt_runs_without_points_or_box() -> None:
    fake = FakePredictor()
    seg = MetaSam2Segmenter(predictor=fake)
    seg.segment(_image(50, 40), [ObjectPrompt(box=None, mask_input=np.zeros((256, 256), np.float32))])
    (call,) = fake.predict_calls
    assert call["point_coords"] is None and call["point_labels"] is None and call["box"] is None
    assert call["mask_input"].shape == (1, 256, 256)


def test_empty_object_gets_background_logits() -> None:
    from segzero_tool.segmenters.transformers_sam2 import NO_MASK_LOGIT

    out = MetaSam2Segmenter(predictor=FakePredictor()).segment(_image(50, 40), [ObjectPrompt(box=None), PROMPTS[1]])
    assert (out.low_res_logits[0] == NO_MASK_LOGIT).all() and (out.low_res_logits[1] == 1.0).all()


def test_predictor_without_logits_gives_none() -> None:
    out = MetaSam2Segmenter(predictor=StatelessPredictor()).segment(_image(12, 10), PROMPTS[1:])
    assert out.low_res_logits is None


@pytest.mark.parametrize(
    ("prompt", "match"),
    [
        (ObjectPrompt(box=(1, 1, 5, 5), negative_points=((float("nan"), 2),)), "non-finite"),
        (ObjectPrompt(box=(1, 1, 5, 5), negative_points=((float("inf"), 2),)), "non-finite"),
        (ObjectPrompt(box=(1, 1, 5, 5), negative_points=((1e39, 2),)), "too large"),
        (ObjectPrompt(box=(1, 1, 5, 5), negative_points=((1, 2, 3),)), "negative point"),
        (ObjectPrompt(box=(1, 1, 5, 5), mask_input=np.zeros((64, 64), np.float32)), "256, 256"),
        (ObjectPrompt(box=(1, 1, 5, 5), mask_input=np.zeros((1, 256, 256), np.float32)), "256, 256"),
        (ObjectPrompt(box=(1, 1, 5, 5), mask_input=np.zeros((256, 256), bool)), "float logits"),
        (ObjectPrompt(box=(1, 1, 5, 5), mask_input=np.full((256, 256), np.nan, np.float32)), "not finite"),
        (ObjectPrompt(box=(1, 1, 5, 5), mask_input=[[0.0] * 256] * 256), "numpy array"),
    ],
)
def test_hostile_refinement_values_are_refused_before_predict(prompt: ObjectPrompt, match: str) -> None:
    fake = FakePredictor()
    seg = MetaSam2Segmenter(predictor=fake)
    with pytest.raises(ValueError, match=match):
        seg.segment(_image(20, 20), [PROMPTS[1], prompt])
    assert fake.predict_calls == [] and fake.set_image_calls == []
