"""TransformersSam3Segmenter on a tiny random SAM 3 tracker (built once per module) loaded through the
public ``from_pretrained``; the backend picked for SAM 3 names and folders; the gated-model error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from segzero_tool.errors import GatedModelError, ModelLoadError, UnknownModelError
from segzero_tool.segmenters.base import ObjectPrompt

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("torchvision")

from scripted import ScriptedReasoner  # noqa: E402

from segzero_tool.segmenters.transformers_sam2 import TransformersSam2Segmenter  # noqa: E402
from segzero_tool.segmenters.transformers_sam3 import TransformersSam3Segmenter, is_sam3_checkpoint  # noqa: E402
from segzero_tool.testing import tiny_sam3  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
COFFEE = REPO / "examples" / "coffee.png"
ANSWER = ('<think>The cup holds coffee.</think><answer>[{"bbox_2d": [168,126,588,672], "point_2d": [378,420]}, '
          '{"bbox_2d": [600,700,800,830], "point_2d": [700,760]}]</answer>')


def _image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_sam3.build_tiny_sam3_tracker(tmp_path_factory.mktemp("tiny_sam3"), seed=0)


@pytest.fixture(scope="module")
def seg(tiny_dir: Path) -> TransformersSam3Segmenter:
    return TransformersSam3Segmenter.from_pretrained(str(tiny_dir), device="cpu", progress=False)


def _fresh(seg: TransformersSam3Segmenter, **kwargs) -> TransformersSam3Segmenter:
    """A new segmenter (own cache) sharing the loaded model and processor."""
    return TransformersSam3Segmenter(seg.model, seg.processor, device="cpu", **kwargs)


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


def _encoder_spy(monkeypatch: pytest.MonkeyPatch, segmenter: TransformersSam3Segmenter) -> list[int]:
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


def test_tiny_checkpoint_loads_as_sam3_tracker(tiny_dir: Path, seg: TransformersSam3Segmenter) -> None:
    from transformers import Sam3TrackerModel, Sam3TrackerProcessor

    assert json.loads((tiny_dir / "config.json").read_text())["model_type"] == "sam3_tracker"
    assert isinstance(seg.model, Sam3TrackerModel) and isinstance(seg.processor, Sam3TrackerProcessor)
    assert seg.image_size == 224 and seg.low_res_size == 64
    assert seg.dtype == torch.float32 and seg.device == "cpu"
    assert sum(p.numel() for p in seg.model.parameters()) < 1_000_000
    assert seg.supports_refinement and seg.model_id == str(tiny_dir)


def test_build_is_deterministic_per_seed(tmp_path: Path) -> None:
    from transformers import Sam3TrackerModel

    a, b, c = (Sam3TrackerModel.from_pretrained(tiny_sam3.build_tiny_sam3_tracker(tmp_path / n, seed=s))
               for n, s in (("a", 3), ("b", 3), ("c", 4)))
    wa, wb, wc = (m.mask_decoder.iou_token.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_real_config_is_the_released_architecture() -> None:
    config = tiny_sam3.sam3_tracker_config("real")
    vit = config.vision_config.backbone_config
    assert (vit.hidden_size, vit.num_hidden_layers, vit.num_attention_heads, vit.intermediate_size) == (1024, 32, 16,
                                                                                                         4736)
    assert (vit.image_size, vit.patch_size, list(vit.global_attn_indexes)) == (1008, 14, [7, 15, 23, 31])
    assert config.prompt_encoder_config.image_size == 1008
    from transformers import Sam3TrackerModel

    with torch.device("meta"):
        model = Sam3TrackerModel(config)
    assert sum(p.numel() for p in model.parameters()) == tiny_sam3.REAL_TRACKER_PARAMS
    with pytest.raises(ValueError, match="unknown SAM 3 tracker architecture"):
        tiny_sam3.sam3_tracker_config("huge")


# --- segment(): prompts, shapes, batching, multimask, refinement --------------------------------


@pytest.mark.parametrize("shape", [(97, 61), (300, 200), (8, 8), (1, 1)])
def test_masks_have_original_image_shape(seg: TransformersSam3Segmenter, shape: tuple[int, int]) -> None:
    height, width = shape
    prompts = [
        ObjectPrompt(box=(0, 0, width - 1, height - 1), points=((width / 2, height / 2),)),
        ObjectPrompt(box=None, points=((width / 3, height / 3),)),
    ]
    out = seg.segment(_image(height, width), prompts)
    assert out.masks.shape == (2, height, width) and out.masks.dtype == bool
    assert out.scores.shape == (2,) and out.scores.dtype == np.float32
    assert out.low_res_logits is not None and out.low_res_logits.shape == (2, 64, 64)


def test_box_and_points_are_scaled_to_model_frame(seg: TransformersSam3Segmenter) -> None:
    s = _fresh(seg)
    with _Counter(s.model.prompt_encoder) as spy:
        s.segment(_image(97, 61), [ObjectPrompt(box=(0, 0, 61, 97), points=((30.5, 48.5),),
                                                negative_points=((61, 0),))])
    points = spy.kwargs[0]["input_points"][0, 0]
    labels = spy.kwargs[0]["input_labels"][0, 0]
    assert torch.allclose(points, torch.tensor([[0.0, 0.0], [224.0, 224.0], [112.0, 112.0], [224.0, 0.0]]))
    assert labels.tolist() == [2, 3, 1, 0]  # box corners, the positive point, the negative point


def test_box_encoding_equals_transformers_input_boxes(seg: TransformersSam3Segmenter) -> None:
    image = _image(97, 61)
    box, point = (5.0, 5.0, 50.0, 80.0), (20.0, 30.0)
    ours = seg.segment(image, [ObjectPrompt(box=box, points=(point,))])
    processor = seg.processor
    inputs = processor(images=image, input_boxes=[[list(box)]], input_points=[[[list(point)]]],
                       input_labels=[[[1]]], return_tensors="pt")
    with torch.inference_mode():
        ref = seg.model(pixel_values=inputs["pixel_values"], input_points=inputs["input_points"],
                        input_labels=inputs["input_labels"], input_boxes=inputs["input_boxes"],
                        multimask_output=True)
    best = int(ref.iou_scores[0, 0].argmax())
    ref_mask = processor.post_process_masks(ref.pred_masks[:, :, best : best + 1], inputs["original_sizes"])[0]
    assert ours.scores[0] == pytest.approx(float(ref.iou_scores[0, 0, best]), abs=1e-5)
    assert np.mean(ours.masks[0] != ref_mask[0, 0].numpy()) <= 1e-3


def test_multimask_keeps_the_best_of_three(seg: TransformersSam3Segmenter) -> None:
    s = _fresh(seg)
    image = _image(97, 61)
    prompt = ObjectPrompt(box=None, points=((20, 30),))
    with _Counter(s.model.mask_decoder) as decoder:
        out = s.segment(image, [prompt])
    assert decoder.kwargs[0]["multimask_output"] is True
    embedding = s.encode(image)
    with torch.inference_mode():
        ref = s.model(image_embeddings=list(embedding.features),
                      input_points=torch.tensor([[[[20 * 224 / 61, 30 * 224 / 97]]]]),
                      input_labels=torch.tensor([[[1]]]), multimask_output=True)
    iou = ref.iou_scores[0, 0]
    assert iou.shape == (3,) and out.scores[0] == pytest.approx(float(iou.max()), abs=1e-5)


def test_negative_points_change_the_mask(seg: TransformersSam3Segmenter) -> None:
    image = _image(97, 61)
    plain = seg.segment(image, [ObjectPrompt(box=(5, 5, 50, 80))])
    negative = seg.segment(image, [ObjectPrompt(box=(5, 5, 50, 80), negative_points=((25, 40),))])
    assert plain.scores[0] != pytest.approx(negative.scores[0], abs=1e-6) or not np.array_equal(
        plain.masks[0], negative.masks[0])


def test_refinement_with_low_res_logits_is_single_mask(seg: TransformersSam3Segmenter) -> None:
    s = _fresh(seg)
    image = _image(97, 61)
    first = s.segment(image, [ObjectPrompt(box=(5, 5, 50, 80), points=((20, 30),))])
    assert first.low_res_logits is not None
    with _Counter(s.model.mask_decoder) as decoder, _Counter(s.model.prompt_encoder) as encoder:
        again = s.segment(image, [ObjectPrompt(box=(5, 5, 50, 80), points=((20, 30),), negative_points=((45, 70),),
                                               mask_input=first.low_res_logits[0])])
    assert decoder.kwargs[0]["multimask_output"] is False
    assert tuple(encoder.kwargs[0]["input_masks"].shape) == (1, 1, 64, 64)
    assert again.masks.shape == (1, 97, 61) and again.low_res_logits.shape == (1, 64, 64)
    with pytest.raises(ValueError, match=r"shape \(64, 64\)"):
        s.segment(image, [ObjectPrompt(box=(5, 5, 50, 80), mask_input=np.zeros((256, 256), np.float32))])


def test_several_objects_exact_batch_equals_one_at_a_time(seg: TransformersSam3Segmenter) -> None:
    image = _image(97, 61)
    s = _fresh(seg)
    s.encode(image)
    with _Counter(s.model.mask_decoder) as decoder:
        batch = s.segment(image, MIXED)
    assert decoder.calls == 4 and batch.masks.shape == (5, 97, 61)  # token lengths 3, 2, 4, 1
    for k, prompt in enumerate(MIXED):
        single = seg.segment(image, [prompt])
        assert batch.scores[k] == pytest.approx(single.scores[0], abs=1e-5)
        assert np.mean(batch.masks[k] != single.masks[0]) <= 1e-3


def test_uniform_objects_run_in_one_decoder_batch(seg: TransformersSam3Segmenter) -> None:
    s = _fresh(seg)
    image = _image(97, 61)
    s.encode(image)
    with _Counter(s.model.mask_decoder) as decoder:
        out = s.segment(image, [ObjectPrompt(box=(i, i, 40 + i, 60 + i), points=((20 + i, 30 + i),))
                                for i in range(4)])
    assert decoder.calls == 1 and out.masks.shape == (4, 97, 61)


def test_zero_prompts_do_not_run_the_model(seg: TransformersSam3Segmenter, monkeypatch) -> None:
    s = _fresh(seg)
    calls = _encoder_spy(monkeypatch, s)
    out = s.segment(_image(40, 30), [])
    assert out.masks.shape == (0, 40, 30) and out.scores.shape == (0,) and out.low_res_logits.shape == (0, 64, 64)
    assert calls == [] and s.cache.misses == 0


def test_empty_object_gets_empty_mask(seg: TransformersSam3Segmenter) -> None:
    out = seg.segment(_image(50, 40), [ObjectPrompt(box=None), ObjectPrompt(box=(1, 1, 30, 30))])
    assert not out.masks[0].any() and out.scores[0] == 0.0 and out.scores[1] > 0


def test_out_of_image_coordinates_run_like_sam2(seg: TransformersSam3Segmenter, tiny_sam2_seg) -> None:
    """Like the SAM2 backend, coordinates outside the image are neither clamped nor refused: they are
    scaled into the model frame as given (SAM's prompt encoder takes any finite position); the
    pipeline and steering calls check prompts against the image before they reach a segmenter."""
    prompts = [ObjectPrompt(box=(-20, -10, 200, 300), points=((100, 150),))]
    for backend in (seg, tiny_sam2_seg):
        s = type(backend)(backend.model, backend.processor, device="cpu")
        with _Counter(s.model.prompt_encoder) as spy:
            out = s.segment(_image(97, 61), prompts)
        side = s.image_size
        expected = torch.tensor([[-20 * side / 61, -10 * side / 97], [200 * side / 61, 300 * side / 97],
                                 [100 * side / 61, 150 * side / 97]])
        assert torch.allclose(spy.kwargs[0]["input_points"][0, 0], expected, atol=1e-3)
        assert out.masks.shape == (1, 97, 61)


@pytest.mark.parametrize("bad", [
    ObjectPrompt(box=(0, 0, float("nan"), 5)),
    ObjectPrompt(box=None, points=((float("inf"), 3),)),
    ObjectPrompt(box=(0, 0, 5, 5), negative_points=((1, float("-inf")),)),
])
def test_non_finite_coordinates_raise_value_error(seg: TransformersSam3Segmenter, tiny_sam2_seg, bad) -> None:
    for backend in (seg, tiny_sam2_seg):
        with pytest.raises(ValueError, match="non-finite"):
            backend.segment(_image(20, 20), [bad])


def test_overflowing_and_malformed_coordinates_raise_value_error(seg: TransformersSam3Segmenter) -> None:
    with pytest.raises(ValueError, match="too large"):
        seg.segment(_image(20, 20), [ObjectPrompt(box=(0, 0, 1e38, 5))])
    with pytest.raises(ValueError, match=r"\(x, y\)"):
        seg.segment(_image(20, 20), [ObjectPrompt(box=None, points=((1, 2, 3),))])
    with pytest.raises(ValueError):
        seg.segment(np.zeros((10, 10), np.uint8), [ObjectPrompt(box=(0, 0, 5, 5))])


# --- the embedding cache ---------------------------------------------------------------------------


def test_second_call_on_same_image_reuses_the_embedding(seg: TransformersSam3Segmenter, monkeypatch) -> None:
    s = _fresh(seg)
    calls = _encoder_spy(monkeypatch, s)
    image = _image(97, 61, seed=5)
    first = s.segment(image, MIXED)
    second = s.segment(image.copy(), MIXED[:2])  # same content, different array, other prompts
    assert len(calls) == 1 and (s.cache.hits, s.cache.misses) == (1, 1)
    assert np.array_equal(first.masks[:2], second.masks)
    s.segment(_image(97, 61, seed=6), MIXED)
    assert len(calls) == 2 and len(s.cache) == 2
    embedding = s.encode(image)
    assert [tuple(f.shape) for f in embedding.features] == [(1, 4, 64, 64), (1, 8, 32, 32), (1, 32, 16, 16)]
    assert len(calls) == 2


def test_cache_size_zero_recomputes(seg: TransformersSam3Segmenter, monkeypatch) -> None:
    s = _fresh(seg, cache_size=0)
    calls = _encoder_spy(monkeypatch, s)
    image = _image(97, 61)
    s.segment(image, MIXED[:1])
    s.segment(image, MIXED[:1])
    assert len(calls) == 2 and len(s.cache) == 0


# --- loading, backend choice, registry -------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_sam2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from segzero_tool.testing.tiny_sam2 import build_tiny_sam2

    return build_tiny_sam2(tmp_path_factory.mktemp("tiny_sam2"), seed=0)


@pytest.fixture(scope="module")
def tiny_sam2_seg(tiny_sam2_dir: Path) -> TransformersSam2Segmenter:
    return TransformersSam2Segmenter.from_pretrained(str(tiny_sam2_dir), device="cpu", progress=False)


def test_loading_errors_are_typed(tmp_path: Path, tiny_sam2_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        TransformersSam3Segmenter.from_pretrained(str(tmp_path / "nope"), device="cpu")
    with pytest.raises(ModelLoadError, match="transformers SAM 3 checkpoint"):
        TransformersSam3Segmenter.from_pretrained(str(tmp_path), device="cpu", progress=False)
    with pytest.raises(ModelLoadError, match="'sam2' checkpoint, not SAM 3"):
        TransformersSam3Segmenter.from_pretrained(str(tiny_sam2_dir), device="cpu", progress=False)


def test_registry_names_resolve() -> None:
    from segzero_tool.registry import MODELS, resolve_model

    entry = resolve_model("SAM3", "segmenter")
    assert entry.hub_id == "facebook/sam3" and entry.registered and MODELS["sam3"].kind == "segmenter"
    # transformers 5.x has no model type for SAM 3.1 (facebook/sam3.1 holds Meta's multiplex .pt): not registered
    assert "sam3.1" not in MODELS
    with pytest.raises(UnknownModelError):
        resolve_model("sam3.1", "segmenter")
    with pytest.raises(UnknownModelError, match="is a segmenter"):
        resolve_model("sam3", "reasoner")


def test_default_backend_builds_sam3_for_sam3_checkpoints(tiny_dir: Path, tiny_sam2_dir: Path) -> None:
    from segzero_tool.backends import build_backend, resolve_segmenter_class

    cls = resolve_segmenter_class("transformers")
    assert cls is TransformersSam2Segmenter
    assert is_sam3_checkpoint("facebook/sam3") and is_sam3_checkpoint(tiny_dir)
    assert not is_sam3_checkpoint(tiny_sam2_dir) and not is_sam3_checkpoint("facebook/sam2.1-hiera-large")
    sam3 = build_backend(cls, str(tiny_dir), {"device": "cpu", "progress": False, "cache_size": 3})
    assert type(sam3) is TransformersSam3Segmenter and sam3.cache.capacity == 3
    sam2 = build_backend(cls, str(tiny_sam2_dir), {"device": "cpu", "progress": False})
    assert type(sam2) is TransformersSam2Segmenter
    explicit = resolve_segmenter_class("segzero_tool.segmenters.transformers_sam3:TransformersSam3Segmenter")
    assert explicit is TransformersSam3Segmenter


@pytest.mark.slow
def test_pipeline_end_to_end_with_scripted_reasoner(tiny_dir: Path) -> None:
    from segzero_tool import SegZeroPipeline

    script = ScriptedReasoner(ANSWER)
    pipe = SegZeroPipeline.from_pretrained(script, str(tiny_dir), device="cpu")
    assert type(pipe.segmenter) is TransformersSam3Segmenter
    res = pipe.segment(COFFEE, "What can I have if I'm thirsty?")
    assert len(res.objects) == 2 and res.masks.shape == (2, 400, 600) and res.masks.dtype == bool
    assert all(np.isfinite(o.score) for o in res.objects)
    hits = pipe.segmenter.cache.hits
    pipe.segment(COFFEE, "another question")
    assert pipe.segmenter.cache.hits == hits + 1


def _cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SEGZERO_", "HF_TOKEN"))}
    env.update({"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
                "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")]), **extra})
    return env


def _script_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "script"
    folder.mkdir(exist_ok=True)
    (folder / "script.json").write_text(json.dumps([ANSWER]))
    return folder


@pytest.mark.slow
def test_cli_segment_with_a_tiny_sam3_folder(tiny_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "segzero_tool", "segment", str(COFFEE), "thirsty?", "--reasoner-backend",
         "scripted:ScriptedReasoner", "--reasoner", str(_script_folder(tmp_path)), "--segmenter", str(tiny_dir),
         "--device", "cpu", "--out", str(out)],
        capture_output=True, text=True, env=_cli_env(tmp_path), timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads((out / "result.json").read_text())
    assert data["parse_status"] == "ok" and len(data["objects"]) == 2
    assert data["objects"][0]["rle"]["size"] == [400, 600]
    with np.load(out / "logits.npz") as logits:
        assert all(logits[k].shape[-2:] == (64, 64) for k in logits.files)


# --- gated access ------------------------------------------------------------------------------------


def _gated_repo_error(filename: str = "config.json", status: int = 403):
    """A ``GatedRepoError`` made the way huggingface_hub makes it: ``hf_raise_for_status`` on the hub's
    answer for a gated repository (``X-Error-Code: GatedRepo``)."""
    import httpx2
    from huggingface_hub.utils import hf_raise_for_status

    url = f"https://huggingface.co/facebook/sam3/resolve/main/{filename}"
    response = httpx2.Response(status, headers={
        "X-Error-Code": "GatedRepo",
        "X-Error-Message": "Access to model facebook/sam3 is restricted and you are not in the authorized list.",
    }, request=httpx2.Request("GET", url))
    try:
        hf_raise_for_status(response)
    except Exception as exc:  # noqa: BLE001 - returned for the test to raise
        return exc
    raise AssertionError("hf_raise_for_status did not raise")


@pytest.fixture
def gated_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """The hub answers (the reachability probe passes) and refuses every download of the gated repo."""
    from huggingface_hub import constants
    from huggingface_hub.errors import GatedRepoError
    from transformers.utils import hub as transformers_hub

    import segzero_tool.hub as hub

    def refuse(*args, **kwargs):
        raise _gated_repo_error(kwargs.get("filename") or "config.json")

    class _Api:
        def __getattr__(self, name):
            return refuse

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setattr(hub, "probe_hub", lambda *a, **k: None)
    monkeypatch.setattr(transformers_hub, "hf_hub_download", refuse)
    monkeypatch.setattr(transformers_hub, "snapshot_download", refuse)
    monkeypatch.setattr(transformers_hub, "hf_api", lambda: _Api())
    assert isinstance(_gated_repo_error(), GatedRepoError)


def test_gated_repo_error_is_one_line_exit_7(gated_hub) -> None:
    with pytest.raises(GatedModelError) as info:
        TransformersSam3Segmenter.from_pretrained("facebook/sam3", device="cpu", progress=False)
    message = str(info.value)
    assert "\n" not in message and info.value.exit_code == 7 and isinstance(info.value, ModelLoadError)
    assert "gated" in message and "https://huggingface.co/facebook/sam3" in message
    assert "hf auth login" in message and "HF_TOKEN" in message and "HTTP 403" in message


def _error_lines(stderr: str) -> list[str]:
    """The error of a failed command: one ``segzero: error:`` line and nothing after it (before it,
    only the "loading models ..." progress line), no traceback."""
    lines = stderr.strip().splitlines()
    assert "Traceback" not in stderr, stderr
    assert lines and lines[-1].startswith("segzero: error:"), stderr
    assert all(line.startswith("loading models") for line in lines[:-1]), stderr
    assert "gated" in lines[-1]
    return lines[-1:]


def test_gated_error_through_the_cli(gated_hub, tmp_path: Path, capsys) -> None:
    from segzero_tool.cli import main

    rc = main(["segment", str(COFFEE), "q", "--reasoner-backend", "scripted:ScriptedReasoner", "--reasoner",
               str(_script_folder(tmp_path)), "--segmenter", "sam3", "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 7
    errors = _error_lines(err)
    assert "https://huggingface.co/facebook/sam3" in errors[0] and "hf auth login" in errors[0]


def test_gated_model_offline_is_one_line_exit_7(tmp_path: Path) -> None:
    """HF_HUB_OFFLINE and an empty cache: the user learns the model is gated, not only that it is missing."""
    proc = subprocess.run(
        [sys.executable, "-m", "segzero_tool", "segment", str(COFFEE), "q", "--reasoner-backend",
         "scripted:ScriptedReasoner", "--reasoner", str(_script_folder(tmp_path)), "--segmenter", "sam3",
         "--device", "cpu"],
        capture_output=True, text=True, env=_cli_env(tmp_path), timeout=300,
    )
    assert proc.returncode == 7, proc.stderr
    lines = _error_lines(proc.stderr)
    assert "gated" in lines[0] and "https://huggingface.co/facebook/sam3" in lines[0]
    assert "hf auth login" in lines[0] and "HF_HUB_OFFLINE" in lines[0]


def test_gated_model_with_local_files_only_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    with pytest.raises(GatedModelError, match="gated model") as info:
        TransformersSam3Segmenter.from_pretrained("facebook/sam3", device="cpu", local_files_only=True,
                                                  progress=False)
    assert "\n" not in str(info.value) and "hf download facebook/sam3" in str(info.value)


def test_other_hub_errors_are_not_called_gated() -> None:
    from segzero_tool.hub import gated_error

    assert gated_error(OSError("disk full"), "facebook/sam3", what="segmenter", known_gated=True) is None
    wrapped = OSError("You are trying to access a gated repo.")
    wrapped.__cause__ = _gated_repo_error(status=401)
    found = gated_error(wrapped, "org/other", what="segmenter")
    assert found is not None and "not logged in (HTTP 401)" in str(found)


def test_importing_sam3_modules_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "import segzero_tool.segmenters.transformers_sam3, segzero_tool.testing.tiny_sam3, segzero_tool.backends\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
