"""Fixtures of the video tests: a tiny random SAM2 video checkpoint (it loads as the image segmenter too)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_video_model(tmp_path_factory):
    """Folder of a tiny random ``Sam2VideoModel`` + processors (``build_tiny_sam2_video``)."""
    from segzero_tool.testing.tiny_sam2 import build_tiny_sam2_video

    return build_tiny_sam2_video(tmp_path_factory.mktemp("tiny-video") / "sam2-video", seed=0)
