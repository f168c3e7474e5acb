"""Shared constants and request builders for the serving tests.

Test modules import these by this module's unique name (``from serving_support import ...``),
never from ``conftest``: several folders have a ``conftest.py``, and which one ``import conftest``
finds depends on the order pytest collected them in.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from segzero_tool.prompts import build_prompt
from segzero_tool.reasoners.base import ReasonerRequest

REPO = Path(__file__).resolve().parents[2]
COFFEE = REPO / "examples" / "coffee.png"  # 600 x 400
#: A 600 x 400 image that is cheap to encode (for the concurrency tests: client and server share 2 cores).
PLAIN = np.full((400, 600, 3), 180, np.uint8)

#: Retries without real waiting, so fault tests stay fast.
FAST = {"backoff": 0.01, "max_backoff": 0.05, "timeout": 5.0, "connect_timeout": 1.0}


def frame(color: tuple[int, int, int] = (200, 30, 30), size: int = 840) -> Image.Image:
    return Image.new("RGB", (size, size), color)


def request(query: str = "what can I drink?", fmt: str = "visionreasoner", budget: int = 64) -> ReasonerRequest:
    return ReasonerRequest(frame(), build_prompt(query, fmt), budget)
