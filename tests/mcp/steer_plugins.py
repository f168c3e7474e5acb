"""A segmenter plugin that loads slowly (``--segmenter-backend steer_plugins:SlowLoadingSegmenter
--segmenter FOLDER``, with ``tests/`` and ``tests/mcp/`` on ``PYTHONPATH``): ``FOLDER/load_s`` holds the
seconds its ``from_pretrained`` sleeps; then it is a :class:`scripted.BoxSegmenter`."""

from __future__ import annotations

import time
from pathlib import Path

from scripted import BoxSegmenter


class SlowLoadingSegmenter(BoxSegmenter):
    name = "slow-box"

    @classmethod
    def from_pretrained(cls, folder: str, **kwargs: object) -> SlowLoadingSegmenter:
        path = Path(folder) / "load_s"
        time.sleep(float(path.read_text()) if path.exists() else 0.0)
        return cls()
