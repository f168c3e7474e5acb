"""TransformersSam2Segmenter on a tiny random SAM2 (built once per module), plus the cache and configs."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from segzero_tool.errors import ModelLoadError
from segzero_tool.segmenters.base import ObjectPrompt
from segzero_tool.segmenters.cache import EmbeddingCache

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("torchvision")

from segzero_tool.segmenters.transformers_sam2 import TransformersSam2Segmenter  # noqa: E402
from segzero_tool.testing import tiny_sam2  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_sam2.build_tiny_sam2(tmp_path_factory.mktemp("tiny_sam2"), seed=0)


@pytest.fixture(scope="module")
def seg(tiny_dir: Path) -> TransformersSam2Segmenter:
    return TransformersSam2Segmenter.from_pretrained(str(tiny_dir), device="cpu", progress=False)


def _fresh(seg: TransformersSam2Segmenter, **kwargs) -> TransformersSam2Segmenter:
    """A new segmenter (own cache) sharing the loaded model and processor."""
    return TransformersSam2Segmenter(seg.model, seg.processor, device="cpu", **kwargs)


class _Counter:
    """Counts forward calls of a module through a hook; use as a context manager."""

    def __init__(self, module) -> None:
        self.module, self.calls, self.kwargs = module, 0, []

    def _hook(self, _module, args, kwargs):
        self.calls += 1
        self.kwargs.append(kwargs)

    def __enter__(self) -> _Counter:
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


MIXED = [
    ObjectPrompt(box=(5, 5, 50, 80), points=((20, 30),)),  # 3 tokens
    ObjectPrompt(box=None, points=((10, 10), (40, 60))),  # 2 tokens
    ObjectPrompt(box=(0, 0, 60, 96)),  # 2 tokens
    ObjectPrompt(box=(30, 40, 55, 90), points=((35, 50), (45, 70))),  # 4 tokens
    ObjectPrompt(box=None, points=((50, 20),)),  # 1 token
]


# --- tiny model, configs ---------------------------------------------------------------------------


def test_tiny_checkpoint_reloads_with_matching_processor(tiny_dir: Path) -> None:
    from transformers import Sam2Model, Sam2Processor

    model = Sam2Model.from_pretrained(tiny_dir)
    processor = Sam2Processor.from_pretrained(tiny_dir)
    assert model.config.prompt_encoder_config.image_size == 256
    assert processor.target_size == 256
    assert processor.image_processor.size["height"] == processor.image_processor.size["width"] == 256
    assert processor.image_processor.mask_size["height"] == 64
    assert sum(p.numel() for p in model.parameters()) < 1_000_000


def test_build_is_deterministic_per_seed(tmp_path: Path) -> None:
    from transformers import Sam2Model

    a = Sam2Model.from_pretrained(tiny_sam2.build_tiny_sam2(tmp_path / "a", seed=3))
    b = Sam2Model.from_pretrained(tiny_sam2.build_tiny_sam2(tmp_path / "b", seed=3))
    c = Sam2Model.from_pretrained(tiny_sam2.build_tiny_sam2(tmp_path / "c", seed=4))
    wa, wb, wc = (m.mask_decoder.iou_token.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


@pytest.mark.parametrize("arch", sorted(tiny_sam2.PUBLISHED_PARAMS))
def test_real_arch_param_counts_match_published(arch: str) -> None:
    full = tiny_sam2.count_parameters(arch, include_memory=True)  # meta device: no memory used
    image_only = tiny_sam2.count_parameters(arch)
    published = tiny_sam2.PUBLISHED_PARAMS[arch]
    assert abs(full - published) / published < 0.02, (arch, full, published)
    # The image-only Sam2Model lacks the ~7.5M parameters of the video memory modules.
    assert 0.7 * published < image_only < full


def test_hiera_tiny_matches_transformers_defaults() -> None:
    from transformers import Sam2HieraDetConfig

    default = Sam2HieraDetConfig()
    ours = tiny_sam2.sam2_config("hiera-tiny").vision_config.backbone_config
    for field in (
        "embed_dim_per_stage",
        "num_attention_heads_per_stage",
        "blocks_per_stage",
        "global_attention_blocks",
        "window_size_per_stage",
        "window_positional_embedding_background_size",
    ):
        assert list(getattr(ours, field)) == list(getattr(default, field)), field


def test_config_rejects_global_attention_on_pooling_block(monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    bad = dataclasses.replace(tiny_sam2.ARCHS["tiny-test"], global_blocks=(2,))  # block 2 starts stage 2
    monkeypatch.setitem(tiny_sam2.ARCHS, "bad", bad)
    with pytest.raises(ValueError, match="query-pooling"):
        tiny_sam2.sam2_config("bad")
    with pytest.raises(ValueError, match="unknown SAM2 architecture"):
        tiny_sam2.sam2_config("hiera-huge")


# --- segment(): shapes, batching, equivalence ------------------------------------------------------


@pytest.mark.parametrize("shape", [(97, 61), (300, 200), (61, 97), (8, 8), (1, 1)])
def test_masks_have_original_image_shape(seg: TransformersSam2Segmenter, shape: tuple[int, int]) -> None:
    height, width = shape
    prompts = [
        ObjectPrompt(box=(0, 0, width - 1, height - 1), points=((width / 2, height / 2),)),
        ObjectPrompt(box=None, points=((width / 3, height / 3),)),
    ]
    out = seg.segment(_image(height, width), prompts)
    assert out.masks.shape == (2, height, width) and out.masks.dtype == bool
    assert out.scores.shape == (2,) and out.scores.dtype == np.float32
    assert np.all((out.scores >= 0) & (out.scores <= 1))


def test_dtype_auto_is_float32_on_cpu(seg: TransformersSam2Segmenter) -> None:
    assert seg.dtype == torch.float32 and seg.device == "cpu"


def test_prompts_are_scaled_to_model_frame(seg: TransformersSam2Segmenter) -> None:
    s = _fresh(seg)
    with _Counter(s.model.prompt_encoder) as spy:
        s.segment(_image(97, 61), [ObjectPrompt(box=(0, 0, 61, 97), points=((30.5, 48.5),))])
    points = spy.kwargs[0]["input_points"][0, 0]
    labels = spy.kwargs[0]["input_labels"][0, 0]
    assert torch.allclose(points, torch.tensor([[0.0, 0.0], [256.0, 256.0], [128.0, 128.0]]))
    assert labels.tolist() == [2, 3, 1]  # box corners then the positive point (as Meta's predictor)
    assert spy.kwargs[0]["input_boxes"] is None


def test_box_encoding_equals_transformers_input_boxes(seg: TransformersSam2Segmenter) -> None:
    image = _image(97, 61)
    box, point = (5.0, 5.0, 50.0, 80.0), (20.0, 30.0)
    ours = seg.segment(image, [ObjectPrompt(box=box, points=(point,))])
    processor = seg.processor
    inputs = processor(
        images=image,
        input_boxes=[[list(box)]],
        input_points=[[[list(point)]]],
        input_labels=[[[1]]],
        return_tensors="pt",
    )
    with torch.inference_mode():
        ref = seg.model(
            pixel_values=inputs["pixel_values"],
            input_points=inputs["input_points"],
            input_labels=inputs["input_labels"],
            input_boxes=inputs["input_boxes"],
            multimask_output=True,
        )
    best = int(ref.iou_scores[0, 0].argmax())
    ref_mask = processor.post_process_masks(ref.pred_masks[:, :, best : best + 1], inputs["original_sizes"])[
        0
    ]
    assert ours.scores[0] == pytest.approx(float(ref.iou_scores[0, 0, best]), abs=1e-5)
    assert np.array_equal(ours.masks[0], ref_mask[0, 0].numpy())


def test_uniform_prompts_run_in_one_decoder_batch(seg: TransformersSam2Segmenter) -> None:
    s = _fresh(seg)
    prompts = [ObjectPrompt(box=(i, i, 40 + i, 60 + i), points=((20 + i, 30 + i),)) for i in range(4)]
    image = _image(97, 61)
    s.encode(image)
    with _Counter(s.model.mask_decoder) as decoder:
        out = s.segment(image, prompts)
    assert decoder.calls == 1 and out.masks.shape == (4, 97, 61)


def test_mixed_prompts_exact_mode_groups_by_length(seg: TransformersSam2Segmenter) -> None:
    s = _fresh(seg)  # batching="exact"
    image = _image(97, 61)
    s.encode(image)
    with _Counter(s.model.mask_decoder) as decoder:
        out = s.segment(image, MIXED)
    assert decoder.calls == 4  # token lengths 3, 2, 4, 1
    assert out.masks.shape == (5, 97, 61)


def test_mixed_prompts_padded_mode_is_one_decoder_batch(seg: TransformersSam2Segmenter) -> None:
    s = _fresh(seg, batching="padded")
    image = _image(97, 61)
    s.encode(image)
    with _Counter(s.model.mask_decoder) as decoder, _Counter(s.model.prompt_encoder) as encoder:
        out = s.segment(image, MIXED)
    assert decoder.calls == 1 and encoder.calls == 1
    labels = encoder.kwargs[0]["input_labels"][0]
    assert labels.shape == (5, 4)
    assert labels[4].tolist() == [1, -10, -10, -10]  # transformers' padding label
    assert out.masks.shape == (5, 97, 61) and out.masks.dtype == bool


def _single(s: TransformersSam2Segmenter, image: np.ndarray, prompt: ObjectPrompt):
    out = s.segment(image, [prompt])
    return out.masks[0], out.scores[0]


def test_exact_batch_equals_one_object_at_a_time(seg: TransformersSam2Segmenter) -> None:
    image = _image(97, 61)
    batch = seg.segment(image, MIXED)
    for k, prompt in enumerate(MIXED):
        mask, score = _single(seg, image, prompt)
        assert batch.scores[k] == pytest.approx(score, abs=1e-5)
        assert np.mean(batch.masks[k] != mask) <= 1e-3  # only pixels at a ~0 logit may flip


def test_padded_batch_is_exact_only_for_unpadded_objects(seg: TransformersSam2Segmenter) -> None:
    """SAM2's decoder has no attention mask: a padding token (label -10, a zero embedding) is still
    attended to, so padded objects drift from their one-at-a-time result; the longest are exact."""
    s = _fresh(seg, batching="padded")
    image = _image(97, 61)
    batch = s.segment(image, MIXED)
    mask, score = _single(seg, image, MIXED[3])  # the 4-token object: no padding
    assert batch.scores[3] == pytest.approx(score, abs=1e-5)
    assert np.mean(batch.masks[3] != mask) <= 1e-3
    drift = [abs(batch.scores[k] - _single(seg, image, MIXED[k])[1]) for k in (0, 1, 2, 4)]
    assert max(drift) > 1e-5  # the tiny model is not degenerate: padding is visible


def test_zero_prompts_do_not_run_the_model(seg: TransformersSam2Segmenter, monkeypatch) -> None:
    s = _fresh(seg)
    calls = _encoder_spy(monkeypatch, s)
    with _Counter(s.model.mask_decoder) as decoder:
        out = s.segment(_image(40, 30), [])
    assert out.masks.shape == (0, 40, 30) and out.masks.dtype == bool and out.scores.shape == (0,)
    assert calls == [] and decoder.calls == 0 and s.cache.misses == 0


def test_empty_object_gets_empty_mask(seg: TransformersSam2Segmenter) -> None:
    out = seg.segment(_image(50, 40), [ObjectPrompt(box=None), ObjectPrompt(box=(1, 1, 30, 30))])
    assert not out.masks[0].any() and out.scores[0] == 0.0
    assert out.scores[1] > 0


@pytest.mark.parametrize(
    "bad",
    [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 4), np.uint8), np.zeros((10, 10, 3), np.float32), [[0]]],
)
def test_rejects_bad_images(seg: TransformersSam2Segmenter, bad) -> None:
    with pytest.raises(ValueError):
        seg.segment(bad, [ObjectPrompt(box=(0, 0, 5, 5))])


def test_rejects_non_finite_coordinates(seg: TransformersSam2Segmenter) -> None:
    with pytest.raises(ValueError, match="non-finite"):
        seg.segment(_image(20, 20), [ObjectPrompt(box=(0, 0, float("nan"), 5))])


# --- the embedding cache ---------------------------------------------------------------------------


def test_second_call_on_same_content_hits_cache(seg: TransformersSam2Segmenter, monkeypatch) -> None:
    s = _fresh(seg)
    calls = _encoder_spy(monkeypatch, s)
    image = _image(97, 61, seed=5)
    first = s.segment(image, MIXED)
    second = s.segment(image.copy(), MIXED)  # same content, different array
    assert len(calls) == 1
    assert (s.cache.hits, s.cache.misses) == (1, 1)
    assert np.array_equal(first.masks, second.masks) and np.array_equal(first.scores, second.scores)
    s.segment(_image(97, 61, seed=6), MIXED)
    assert len(calls) == 2 and len(s.cache) == 2


def test_encode_then_segment_reuses_embedding(seg: TransformersSam2Segmenter, monkeypatch) -> None:
    s = _fresh(seg)
    calls = _encoder_spy(monkeypatch, s)
    image = _image(64, 48)
    embedding = s.encode(image)
    assert embedding.original_size == (64, 48)
    assert [tuple(f.shape) for f in embedding.features] == [(1, 8, 64, 64), (1, 16, 32, 32), (1, 64, 16, 16)]
    s.segment(image, MIXED[:1])
    assert len(calls) == 1 and s.cache.hits == 1


def test_cache_size_zero_disables_cache(seg: TransformersSam2Segmenter, monkeypatch) -> None:
    s = _fresh(seg, cache_size=0)
    calls = _encoder_spy(monkeypatch, s)
    image = _image(97, 61)
    a = s.segment(image, MIXED[:2])
    b = s.segment(image, MIXED[:2])
    assert len(calls) == 2 and len(s.cache) == 0 and s.cache.hits == 0
    assert np.array_equal(a.masks, b.masks)


def test_cache_time_to_live() -> None:
    now = [0.0]
    cache: EmbeddingCache[int] = EmbeddingCache(4, ttl_s=10, clock=lambda: now[0])
    cache.put("a", 1)
    cache.put("b", 2)
    now[0] = 8.0
    assert cache.get("a") == 1  # used again: a lives until 18
    now[0] = 12.0
    assert cache.get("b") is None and "a" in cache  # b was idle for 12 s
    now[0] = 18.5
    assert len(cache) == 0 and cache.stats()["expired"] == 2 and cache.stats()["ttl_s"] == 10.0
    with pytest.raises(ValueError, match="ttl_s must be a positive number"):
        EmbeddingCache(2, ttl_s=0)


def test_cache_lru_eviction_and_counters() -> None:
    cache: EmbeddingCache[int] = EmbeddingCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now most recent
    cache.put("c", 3)  # evicts b
    assert "b" not in cache and cache.get("b") is None
    assert cache.get("c") == 3 and len(cache) == 2
    assert cache.stats() == {"size": 2, "capacity": 2, "hits": 2, "misses": 1, "expired": 0,
                             "ttl_s": None}
    assert cache.get_or_compute("d", lambda: 4) == 4 and "a" not in cache
    cache.clear()
    assert len(cache) == 0 and cache.hits == cache.misses == 0
    off: EmbeddingCache[int] = EmbeddingCache(0)
    off.put("a", 1)
    assert not off.enabled and off.get("a") is None and len(off) == 0
    with pytest.raises(ValueError):
        EmbeddingCache(-1)


def test_cache_is_thread_safe() -> None:
    cache: EmbeddingCache[int] = EmbeddingCache(8)

    def work(offset: int) -> None:
        for i in range(500):
            cache.put(f"k{(i + offset) % 20}", i)
            cache.get(f"k{i % 20}")

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(cache) == 8 and cache.hits + cache.misses == 2000


# --- loading errors, import cost ---------------------------------------------------------------------


def test_missing_folder_raises_model_load_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        TransformersSam2Segmenter.from_pretrained(str(tmp_path / "nope"), device="cpu")


def test_folder_without_checkpoint_raises_model_load_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="transformers SAM2 checkpoint"):
        TransformersSam2Segmenter.from_pretrained(str(tmp_path), device="cpu", progress=False)


def test_file_instead_of_folder_raises_model_load_error(tmp_path: Path) -> None:
    checkpoint = tmp_path / "sam2.1_hiera_large.pt"
    checkpoint.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelLoadError, match="'sam2' backend"):
        TransformersSam2Segmenter.from_pretrained(checkpoint, device="cpu")


def test_uncached_hub_id_offline_raises_model_load_error() -> None:
    with pytest.raises(ModelLoadError, match="hub id"):
        TransformersSam2Segmenter.from_pretrained(
            "segzero-tool-tests/no-such-sam2", device="cpu", local_files_only=True, progress=False
        )


def test_importing_backends_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "import segzero_tool.segmenters.transformers_sam2, segzero_tool.segmenters.meta_sam2\n"
        "import segzero_tool.segmenters.cache, segzero_tool.testing.tiny_sam2\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
