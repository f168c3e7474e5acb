"""Fixtures for the serving tests: loopback fake vLLM servers and fast-retrying clients."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fake_vllm import FakeVLLM
from PIL import Image

from segzero_tool.prompts import build_prompt
from segzero_tool.reasoners.base import ReasonerRequest
from segzero_tool.reasoners.openai_compat import OpenAICompatReasoner

REPO = Path(__file__).resolve().parents[2]
COFFEE = REPO / "examples" / "coffee.png"  # 600 x 400
#: A 600 x 400 image that is cheap to encode (for the concurrency tests: client and server share 2 cores).
PLAIN = np.full((400, 600, 3), 180, np.uint8)

#: Retries without real waiting, so fault tests stay fast.
FAST = {"backoff": 0.01, "max_backoff": 0.05, "timeout": 5.0, "connect_timeout": 1.0}


@pytest.fixture
def make_server() -> Iterator[Any]:
    """``make_server(**FakeVLLM kwargs)`` -> a started server, stopped after the test."""
    servers: list[FakeVLLM] = []

    def make(**kwargs: Any) -> FakeVLLM:
        server = FakeVLLM(**kwargs).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def server(make_server: Any) -> FakeVLLM:
    return make_server()


@pytest.fixture
def make_client() -> Iterator[Any]:
    """``make_client(base_url, **kwargs)`` -> an :class:`OpenAICompatReasoner` (fast retries), closed after."""
    clients: list[OpenAICompatReasoner] = []

    def make(base_url: Any, model: str = "visionreasoner-7b", **kwargs: Any) -> OpenAICompatReasoner:
        client = OpenAICompatReasoner(model, base_url=base_url, **{"api_key_env": None, **FAST, **kwargs})
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def frame(color: tuple[int, int, int] = (200, 30, 30), size: int = 840) -> Image.Image:
    return Image.new("RGB", (size, size), color)


def request(query: str = "what can I drink?", fmt: str = "visionreasoner", budget: int = 64) -> ReasonerRequest:
    return ReasonerRequest(frame(), build_prompt(query, fmt), budget)
