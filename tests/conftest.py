"""Session-wide tiny random models, built from configs and saved like real checkpoints."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """``{"reasoner": Path, "segmenter": Path}`` of tiny random Qwen2.5-VL and SAM2 folders."""
    from segzero_tool.testing.tiny_qwen import build_tiny_qwen2_5_vl
    from segzero_tool.testing.tiny_sam2 import build_tiny_sam2

    root = tmp_path_factory.mktemp("tiny-models")
    return {
        "reasoner": build_tiny_qwen2_5_vl(root / "reasoner", seed=0),
        "segmenter": build_tiny_sam2(root / "segmenter", seed=0),
    }


@pytest.fixture
def no_loading(monkeypatch):
    """Any model load fails the test: errors must come first."""
    from segzero_tool.pipeline import SegZeroPipeline

    def boom(*a, **k):
        raise AssertionError("a model was loaded before the check")

    monkeypatch.setattr(SegZeroPipeline, "from_pretrained", classmethod(boom))
