"""The tiny random Qwen2.5-VL behind the fake server answers exactly as it does in-process: the
frame travels losslessly (PNG) and the chat turn is the same, so greedy decoding gives the same text."""

from __future__ import annotations

import pytest
from fake_vllm import FakeVLLM
from scripted import BoxSegmenter
from serving_support import COFFEE

from segzero_tool import SegZeroPipeline

pytestmark = pytest.mark.slow


def test_tiny_transformers_model_behind_the_server(tiny_models):
    from segzero_tool.reasoners.transformers import TransformersReasoner

    folder = str(tiny_models["reasoner"])
    local = TransformersReasoner.from_pretrained(folder, device="cpu", progress=False)
    with FakeVLLM(models=[folder], reasoner=local) as server:
        remote = SegZeroPipeline.from_pretrained(folder, BoxSegmenter(), reasoner_backend="openai",
                                                 reasoner_kwargs={"base_url": server.url, "api_key_env": None,
                                                                  "structured_outputs": "off"})
        inproc = SegZeroPipeline(local, BoxSegmenter())
        try:
            got = remote.segment(COFFEE, "What can I have if I'm thirsty?", max_new_tokens=12)
            want = inproc.segment(COFFEE, "What can I have if I'm thirsty?", max_new_tokens=12)
        finally:
            remote.close()
    assert server.rejected == [] and server.requests[0]["model"] == folder
    assert got.raw_output == want.raw_output and got.parse_status == want.parse_status
    assert got.reasoner == folder
