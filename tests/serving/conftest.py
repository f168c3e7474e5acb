"""Fixtures for the serving tests: loopback fake vLLM servers and fast-retrying clients."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fake_vllm import FakeVLLM
from serving_support import FAST

from segzero_tool.reasoners.openai_compat import OpenAICompatReasoner


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

