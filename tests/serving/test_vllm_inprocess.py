"""The in-process vLLM backend: the install hint when vLLM is missing, and the engine, sampling and
chat arguments it builds, checked against a fake ``vllm`` module put in ``sys.modules``."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest
from fake_vllm import ANSWER
from scripted import BoxSegmenter
from serving_support import COFFEE, request

from segzero_tool import SegZeroPipeline
from segzero_tool.cli import main
from segzero_tool.errors import DeviceError, MissingDependencyError
from segzero_tool.reasoners.structured import answer_grammar, answer_regex
from segzero_tool.reasoners.vllm_inprocess import VLLMReasoner


class _Record:
    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs


@pytest.fixture
def fake_vllm(monkeypatch):
    """A ``vllm`` package with ``LLM``, ``SamplingParams`` and ``sampling_params.StructuredOutputsParams``."""
    calls: dict[str, list[Any]] = {"llm": [], "chat": []}

    class LLM:
        def __init__(self, model: str, **kwargs: Any) -> None:
            calls["llm"].append({"model": model, **kwargs})

        def get_default_sampling_params(self) -> Any:
            return types.SimpleNamespace(repetition_penalty=1.05, temperature=0.1, top_p=0.001, top_k=1)

        def chat(self, messages: Any, sampling_params: Any = None, use_tqdm: bool = True, **kw: Any) -> list[Any]:
            calls["chat"].append({"messages": messages, "sampling_params": sampling_params, "use_tqdm": use_tqdm})
            return [types.SimpleNamespace(
                prompt_token_ids=list(range(1000)),
                outputs=[types.SimpleNamespace(text=ANSWER, token_ids=list(range(40)), finish_reason="stop")],
            ) for _ in messages]

    vllm = types.ModuleType("vllm")
    vllm.LLM = LLM
    vllm.SamplingParams = type("SamplingParams", (_Record,), {})
    sampling = types.ModuleType("vllm.sampling_params")
    sampling.StructuredOutputsParams = type("StructuredOutputsParams", (_Record,), {})
    vllm.sampling_params = sampling
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", sampling)
    return calls


def test_missing_vllm_says_how_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` raises ImportError
    with pytest.raises(MissingDependencyError, match=r'pip install "segzero-tool\[vllm\]"'):
        VLLMReasoner.from_pretrained("Ricky06662/VisionReasoner-7B")
    with pytest.raises(MissingDependencyError, match="--reasoner-backend openai"):
        SegZeroPipeline.from_pretrained("visionreasoner-7b", BoxSegmenter(), reasoner_backend="vllm")
    assert main(["segment", str(COFFEE), "q", "--reasoner-backend", "vllm", "--no-masks"]) == 5
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("segzero: error: the vllm reasoner backend needs vLLM")


def test_engine_arguments(fake_vllm):
    VLLMReasoner.from_pretrained("Ricky06662/VisionReasoner-7B")
    assert fake_vllm["llm"][-1] == {
        "model": "Ricky06662/VisionReasoner-7B", "dtype": "auto", "tensor_parallel_size": 1,
        "gpu_memory_utilization": 0.9, "max_model_len": 4096, "limit_mm_per_prompt": {"image": 1},
        "mm_processor_kwargs": {"min_pixels": 3136, "max_pixels": 705600}, "generation_config": "auto",
        "seed": 0, "trust_remote_code": False,
    }
    VLLMReasoner.from_pretrained("Ricky06662/Seg-Zero-7B", dtype="bf16", tensor_parallel_size=2,
                                 gpu_memory_utilization=0.8, enforce_eager=True)
    args = fake_vllm["llm"][-1]
    assert args["dtype"] == "bfloat16" and args["tensor_parallel_size"] == 2 and args["mm_encoder_tp_mode"] == "data"
    assert args["max_model_len"] == 3072 and args["gpu_memory_utilization"] == 0.8 and args["enforce_eager"] is True


def test_unsupported_settings(fake_vllm):
    with pytest.raises(ValueError, match="serve-reasoner --data-parallel 2"):
        VLLMReasoner.from_pretrained("Ricky06662/VisionReasoner-7B", data_parallel_size=2)
    with pytest.raises(DeviceError, match="CUDA_VISIBLE_DEVICES=1"):
        VLLMReasoner.from_pretrained("Ricky06662/VisionReasoner-7B", device="cuda:1")
    with pytest.raises(DeviceError):
        VLLMReasoner.from_pretrained("Ricky06662/VisionReasoner-7B", device="cpu")
    assert fake_vllm["llm"] == []


def test_batched_chat_and_sampling_params(fake_vllm):
    reasoner = VLLMReasoner.from_pretrained("Ricky06662/VisionReasoner-7B")
    reqs = [request(budget=100), request(fmt="segzero", budget=50), request(fmt="grounding", budget=70)]
    outs = reasoner.generate(reqs)
    [chat] = fake_vllm["chat"]  # one call for all requests
    assert len(chat["messages"]) == 3
    conv = chat["messages"][1]
    assert conv == [{"role": "user", "content": [{"type": "image_pil", "image_pil": reqs[1].image},
                                                  {"type": "text", "text": reqs[1].prompt}]}]
    params = [p.kwargs for p in chat["sampling_params"]]
    assert [p["max_tokens"] for p in params] == [100, 50, 70]
    assert all(p["temperature"] == 0.0 and p["repetition_penalty"] == 1.05 for p in params)
    assert "top_p" not in params[0]  # only the checkpoint's penalties are kept; greedy otherwise
    assert [p["structured_outputs"].kwargs for p in params] == [
        {"regex": answer_regex("list")}, {"regex": answer_regex("single")}, {"regex": answer_regex("list")}]
    assert outs[0].text == ANSWER and outs[0].finish_reason == "stop"
    assert (outs[0].prompt_tokens, outs[0].completion_tokens) == (1000, 40)


@pytest.mark.parametrize(("mode", "key"), [("grammar", "grammar"), ("off", None)])
def test_structured_output_modes(fake_vllm, mode, key):
    VLLMReasoner.from_pretrained("Ricky06662/VisionReasoner-7B", structured_outputs=mode).generate([request()])
    params = fake_vllm["chat"][-1]["sampling_params"][0].kwargs
    if key is None:
        assert "structured_outputs" not in params
    else:
        assert params["structured_outputs"].kwargs == {"grammar": answer_grammar("list")}


@pytest.mark.parametrize("mode", ["regex", "grammar"])
def test_a_free_form_request_is_not_constrained(fake_vllm, mode):
    """The self-check loop's verdict (structured=False) must not be forced into the answer grammar."""
    import dataclasses

    reasoner = VLLMReasoner.from_pretrained("Ricky06662/VisionReasoner-7B", structured_outputs=mode)
    reasoner.generate([dataclasses.replace(request(), structured=False), request()])
    free, constrained = (p.kwargs for p in fake_vllm["chat"][-1]["sampling_params"])
    assert "structured_outputs" not in free and "structured_outputs" in constrained


def test_pipeline_with_the_vllm_backend(fake_vllm):
    with SegZeroPipeline.from_pretrained("visionreasoner-7b", BoxSegmenter(), reasoner_backend="vllm",
                                         reasoner_kwargs={"structured_outputs": "regex"}) as pipe:
        results = pipe.segment_many([(COFFEE, "the cup"), (COFFEE, "the spoon")], progress=False)
        assert pipe.reasoner.name == "vllm"
    assert [len(r.objects) for r in results] == [2, 2]
    assert len(fake_vllm["chat"]) == 1 and len(fake_vllm["chat"][0]["messages"]) == 2
    assert fake_vllm["chat"][0]["sampling_params"][0].kwargs["max_tokens"] == 2048
