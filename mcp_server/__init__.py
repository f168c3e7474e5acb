"""MCP server for segzero-tool (``segzero_tool.mcp_server``): the ``segment_by_reasoning`` tool and the
steering tools ``segment_by_prompts``, ``refine_object``, ``inspect_result`` and ``select_objects``
(``segzero-mcp --reasoner none`` loads only the segmenter and serves only those four).

Run it with ``segzero-mcp`` (stdio, for an MCP client configuration) or ``segzero-mcp --http``;
build it in Python with :func:`create_server`. Needs the ``mcp`` extra
(``pip install 'segzero-tool[mcp]'``); works with the MCP Python SDK 1.x (>= 1.24) and 2.x.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_server", "ServerSettings", "SegZeroService", "main"]


def __getattr__(name: str) -> Any:  # lazy: importing the package does not import the SDK or torch
    if name == "create_server":
        from .server import create_server

        return create_server
    if name == "ServerSettings":
        from .settings import ServerSettings

        return ServerSettings
    if name == "SegZeroService":
        from .service import SegZeroService

        return SegZeroService
    if name == "main":
        from .cli import main

        return main
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
