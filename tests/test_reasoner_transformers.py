"""TransformersReasoner on tiny random Qwen2.5-VL / Qwen2-VL checkpoints built on the spot (CPU only)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from segzero_tool.errors import DeviceError, ModelLoadError  # noqa: E402
from segzero_tool.reasoners.base import ReasonerOutput, ReasonerRequest  # noqa: E402
from segzero_tool.reasoners.transformers import TransformersReasoner  # noqa: E402
from segzero_tool.testing.tiny_qwen import build_tiny_qwen2_5_vl, build_tiny_qwen2_vl  # noqa: E402

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[1]


def _image(seed: int, size: int = 840) -> Image.Image:
    """A random RGB reasoning frame (size x size)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-qwen")
    return {
        "qwen2.5-vl": build_tiny_qwen2_5_vl(root / "qwen2.5-vl", seed=0),
        "qwen2-vl": build_tiny_qwen2_vl(root / "qwen2-vl", seed=0),
    }


@pytest.fixture(scope="module")
def reasoner(tiny_dirs: dict[str, Path]) -> Iterator[TransformersReasoner]:
    r = TransformersReasoner.from_pretrained(str(tiny_dirs["qwen2.5-vl"]), device="cpu", max_batch_size=2)
    yield r
    r.close()


@pytest.fixture(scope="module")
def requests_() -> list[ReasonerRequest]:
    # Different prompt lengths, so batches really are left-padded; one image of another size.
    return [
        ReasonerRequest(image=_image(0), prompt="find the dog", max_new_tokens=12),
        ReasonerRequest(
            image=_image(1), prompt="the red cup on the left, with bbox and points", max_new_tokens=12
        ),
        ReasonerRequest(image=_image(2, size=336), prompt="a", max_new_tokens=12),
    ]


def test_loads_on_cpu_float32(reasoner: TransformersReasoner) -> None:
    import torch

    assert reasoner.name == "transformers"
    assert reasoner.device.type == "cpu"
    assert reasoner.dtype == torch.float32
    assert reasoner.processor.tokenizer.padding_side == "left"
    assert not reasoner.model.training


def test_one_output_per_request_in_order(reasoner: TransformersReasoner, requests_) -> None:
    outputs = reasoner.generate(requests_)
    assert len(outputs) == len(requests_)
    assert all(isinstance(o, ReasonerOutput) for o in outputs)
    # Order: each output matches the same request generated alone.
    for request, output in zip(requests_, outputs, strict=True):
        assert reasoner.generate([request])[0] == output
    for output in outputs:
        assert output.finish_reason in {"stop", "length"}
        assert 1 <= output.completion_tokens <= 12
        assert output.prompt_tokens > 0
    # Longer prompt text -> more prompt tokens (same image size: same visual-token count).
    assert outputs[1].prompt_tokens > outputs[0].prompt_tokens


def test_batched_equals_unbatched(reasoner: TransformersReasoner, requests_) -> None:
    # Greedy decoding with left padding: padded positions are masked out and rotary positions are
    # computed from the attention mask, so the tiny float32 model gives the same tokens batched
    # (chunks of 2, then of 3) as alone. If this ever flakes on another CPU through float noise,
    # compare completion_tokens / determinism instead: the greedy argmax of a random model can tie.
    alone = [reasoner.generate([r])[0] for r in requests_]
    assert reasoner.generate(requests_) == alone  # max_batch_size=2: chunks [0, 1], [2]
    reasoner.max_batch_size = 3
    try:
        assert reasoner.generate(requests_) == alone
    finally:
        reasoner.max_batch_size = 2


def test_mixed_budgets_are_cut_per_request(reasoner: TransformersReasoner, requests_) -> None:
    # A chunk runs with the largest budget; each output is cut to its own budget afterwards.
    short = ReasonerRequest(image=requests_[0].image, prompt=requests_[0].prompt, max_new_tokens=2)
    mixed = reasoner.generate([short, requests_[1]])
    assert mixed[0] == reasoner.generate([short])[0]
    assert mixed[1] == reasoner.generate([requests_[1]])[0]


def test_small_budget_finishes_with_length(reasoner: TransformersReasoner) -> None:
    [output] = reasoner.generate([ReasonerRequest(image=_image(0), prompt="find the dog", max_new_tokens=1)])
    assert output.completion_tokens == 1
    # A random model almost never emits EOS as its first token; if it did, finish_reason is "stop".
    eos_first = output.text == ""
    assert output.finish_reason == ("stop" if eos_first else "length")


def test_eos_finishes_with_stop(tiny_dirs: dict[str, Path]) -> None:
    # A random model rarely emits EOS, so declare its third greedy token an EOS token: the wrapped
    # model's generation config decides what stops generation. Also covers the object constructor.
    loaded = TransformersReasoner.from_pretrained(str(tiny_dirs["qwen2.5-vl"]), device="cpu")
    model, processor = loaded.model, loaded.processor
    request = ReasonerRequest(image=_image(0), prompt="find the dog", max_new_tokens=8)
    chat = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": request.prompt}]}]
    text = processor.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    inputs = processor(text=[text], images=[request.image], return_tensors="pt")
    free = model.generate(**inputs, max_new_tokens=3, do_sample=False)[
        0, inputs["input_ids"].shape[1] :
    ].tolist()
    eos = free[2]
    stop_at = free.index(eos)  # the token may already occur earlier (random models repeat themselves)
    model.generation_config.eos_token_id = [eos]
    stopping = TransformersReasoner(model, processor, model_id="tiny")
    [output] = stopping.generate([request])
    assert output.finish_reason == "stop"
    assert output.completion_tokens == stop_at + 1  # the text's tokens plus the EOS token
    assert output.text == processor.tokenizer.decode(free[:stop_at], skip_special_tokens=True)
    stopping.close()


def test_empty_request_list(reasoner: TransformersReasoner) -> None:
    assert reasoner.generate([]) == []


def test_qwen2_vl_family(tiny_dirs: dict[str, Path], requests_) -> None:
    with TransformersReasoner.from_pretrained(tiny_dirs["qwen2-vl"], device="cpu", progress=False) as r:
        assert type(r.model).__name__ == "Qwen2VLForConditionalGeneration"
        outputs = r.generate(requests_[:2])
        assert len(outputs) == 2
        assert outputs == [r.generate([q])[0] for q in requests_[:2]]
    assert r.model is None  # closed by the context manager


def test_pixel_bounds_are_passed_to_the_processor(tiny_dirs: dict[str, Path]) -> None:
    r = TransformersReasoner.from_pretrained(
        str(tiny_dirs["qwen2.5-vl"]), device="cpu", min_pixels=28 * 28, max_pixels=112 * 112
    )
    try:
        size = r.processor.image_processor.size
        assert (size["shortest_edge"], size["longest_edge"]) == (28 * 28, 112 * 112)
    finally:
        r.close()


def test_missing_folder_raises_model_load_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelLoadError, match="no-such-model"):
        TransformersReasoner.from_pretrained(str(missing), device="cpu")


def test_folder_without_checkpoint_raises_model_load_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="local folder"):
        TransformersReasoner.from_pretrained(str(tmp_path), device="cpu")


def test_unfetchable_hub_id_raises_model_load_error() -> None:
    # local_files_only: fail from the (empty) cache at once instead of retrying the network.
    with pytest.raises(ModelLoadError, match="segzero-tests/not-a-model"):
        TransformersReasoner.from_pretrained("segzero-tests/not-a-model", device="cpu", local_files_only=True)


def test_cuda_without_gpu_raises_device_error(tiny_dirs: dict[str, Path]) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    with pytest.raises(DeviceError):
        TransformersReasoner.from_pretrained(str(tiny_dirs["qwen2.5-vl"]), device="cuda")


def test_close_frees_the_model(tiny_dirs: dict[str, Path]) -> None:
    r = TransformersReasoner.from_pretrained(str(tiny_dirs["qwen2.5-vl"]), device="cpu")
    r.close()
    r.close()  # idempotent
    assert r.model is None
    with pytest.raises(RuntimeError, match="closed"):
        r.generate([ReasonerRequest(image=_image(0), prompt="x", max_new_tokens=1)])


def test_import_does_not_import_torch() -> None:
    code = (
        "import sys, segzero_tool.reasoners.transformers, segzero_tool.testing.tiny_qwen; "
        "heavy = [m for m in ('torch', 'transformers') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_progress_reports_tokens_against_the_budget(reasoner: TransformersReasoner) -> None:
    from segzero_tool.progress import progress_reporting

    events = []
    with progress_reporting(events.append):
        (out,) = reasoner.generate([ReasonerRequest(Image.new("RGB", (56, 56)), "describe", max_new_tokens=12)])
    tokens = [e for e in events if e.stage == "reasoning"]
    assert tokens and all(e.total == 12 for e in tokens)
    assert [e.done for e in tokens] == sorted(e.done for e in tokens) and tokens[-1].done <= 12
    assert tokens[-1].message == f"generated {tokens[-1].done:g}/12 tokens"
    assert tokens[-1].done >= out.completion_tokens - 1
    from segzero_tool.reasoners.transformers import _stopping_criteria

    assert _stopping_criteria(4, 10) is None  # no sink and no cancel token: nothing runs per token


def test_progress_sink_errors_never_break_generation(reasoner: TransformersReasoner) -> None:
    from segzero_tool.progress import progress_reporting

    def broken(event):
        raise RuntimeError("sink down")

    with progress_reporting(broken):
        (out,) = reasoner.generate([ReasonerRequest(Image.new("RGB", (56, 56)), "describe", max_new_tokens=5)])
    assert out.completion_tokens is not None
