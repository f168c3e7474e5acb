"""The two MCP Python SDK lines behind one small surface.

``segzero-tool[mcp]`` accepts ``mcp>=1.24,<3``: the 1.x line (what ``langchain-mcp-adapters`` pins,
``mcp<2``) and the 2.x line. Everything else in the server imports SDK names from here only.

============================  =====================================  ==========================================
what                          mcp 1.x                                mcp 2.x
============================  =====================================  ==========================================
server class                  ``mcp.server.fastmcp.FastMCP``         ``mcp.server.mcpserver.MCPServer``
tool context                  ``mcp.server.fastmcp.Context``         ``mcp.server.mcpserver.Context``
tool / resource errors        ``...fastmcp.exceptions.ToolError``    ``...mcpserver.exceptions.ToolError``,
                              / ``ResourceError``                    ``ResourceNotFoundError``
low-level server              ``FastMCP._mcp_server``                ``MCPServer._lowlevel_server``
HTTP settings                 ``FastMCP(host=, port=, ...)``         ``MCPServer.streamable_http_app(...)``
                              then ``streamable_http_app()``         keyword arguments
wire types                    ``mcp.types`` (camelCase fields)       ``mcp.types`` = ``mcp_types`` (snake_case
                                                                     fields with camelCase aliases,
                                                                     ``populate_by_name``)
============================  =====================================  ==========================================

Wire types are built with their camelCase names (``structuredContent=``, ``isError=``, ``mimeType=``),
which both lines accept, and read back through ``model_dump(by_alias=True)`` (see :func:`dump`).

A tool annotated ``-> Annotated[CallToolResult, Model]`` is handled alike by both lines
(``func_metadata``): ``Model``'s JSON schema is advertised as the tool's ``outputSchema`` and the
returned ``CallToolResult`` (our own content blocks plus ``structuredContent``) is passed through
after its structured content is validated against ``Model``.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from typing import Any, BinaryIO

import anyio
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import CallToolResult, Completion, ImageContent, ResourceLink, TextContent, ToolAnnotations

try:  # mcp 2.x
    from mcp.server.mcpserver import Context
    from mcp.server.mcpserver import MCPServer as Server
    from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError

    SDK_MAJOR = 2
except ImportError:  # mcp 1.x
    from mcp.server.fastmcp import Context  # type: ignore[no-redef,assignment]
    from mcp.server.fastmcp import FastMCP as Server  # type: ignore[no-redef,assignment]
    from mcp.server.fastmcp.exceptions import ResourceError, ToolError  # type: ignore[no-redef,assignment]

    ResourceNotFoundError = ResourceError  # type: ignore[misc,assignment]
    SDK_MAJOR = 1

try:
    from importlib.metadata import version as _version

    SDK_VERSION = _version("mcp")
except Exception:  # pragma: no cover - not installed as a distribution
    SDK_VERSION = "unknown"

__all__ = [
    "SDK_MAJOR", "SDK_VERSION", "Server", "Context", "ToolError", "ResourceError", "ResourceNotFoundError",
    "CallToolResult", "Completion", "TextContent", "ImageContent", "ResourceLink", "ToolAnnotations",
    "TransportSecuritySettings", "new_server", "tool_result", "lowlevel_server", "streamable_http_app",
    "serve_stdio", "divert_stdout", "dump", "set_server_version", "resource_not_found_as_invalid_params",
    "RESOURCE_NOT_FOUND_CODE",
]


def new_server(name: str, *, instructions: str, lifespan: Any, log_level: str = "INFO", version: str = "",
               host: str = "127.0.0.1", port: int = 8765, path: str = "/mcp",
               transport_security: TransportSecuritySettings | None = None) -> Any:
    """A ``FastMCP`` (1.x) or ``MCPServer`` (2.x).

    1.x takes its HTTP settings here; 2.x takes them in :func:`streamable_http_app` (they are
    remembered on the returned object for that).
    """
    level = log_level.upper()
    if SDK_MAJOR >= 2:
        server = Server(name, instructions=instructions, version=version, lifespan=lifespan, log_level=level)
    else:
        server = Server(name, instructions=instructions, lifespan=lifespan, log_level=level, host=host, port=port,
                        streamable_http_path=path, transport_security=transport_security)
    server._segzero_http = {"host": host, "path": path, "transport_security": transport_security}
    return server


def tool_result(content: list[Any], structured: dict[str, Any] | None = None) -> CallToolResult:
    """A successful ``CallToolResult`` with our own content blocks and structured content."""
    return CallToolResult(content=content, structuredContent=structured, isError=False)


def lowlevel_server(server: Any) -> Any:
    """The low-level ``mcp.server.lowlevel.Server`` inside a FastMCP/MCPServer."""
    low = getattr(server, "_lowlevel_server", None) or getattr(server, "_mcp_server", None)
    if low is None:  # pragma: no cover - an SDK this module does not know
        raise RuntimeError(f"cannot find the low-level server of {type(server).__name__} (mcp {SDK_VERSION})")
    return low


def streamable_http_app(server: Any) -> Any:
    """The SDK's Starlette app for streamable HTTP (its lifespan runs the session manager)."""
    http = server._segzero_http
    if SDK_MAJOR >= 2:
        return server.streamable_http_app(streamable_http_path=http["path"],
                                          transport_security=http["transport_security"], host=http["host"])
    return server.streamable_http_app()


def divert_stdout() -> BinaryIO | None:
    """Keep stdout for the protocol only: return a private duplicate of fd 1 for the wire and point
    fd 1 at stderr, so stray prints of any library (Python or C) cannot corrupt the stdio transport.

    Returns ``None`` (nothing changed) when stdout is not a real file descriptor.
    """
    try:
        sys.stdout.flush()
        fd = sys.stdout.fileno()
        private = os.dup(fd)
        os.dup2(sys.stderr.fileno(), fd)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return None
    return os.fdopen(private, "wb", buffering=0)


async def serve_stdio(server: Any, wire_out: BinaryIO | None = None) -> None:
    """Serve over stdio; with ``wire_out`` (from :func:`divert_stdout`) the protocol goes there."""
    if wire_out is None:
        await server.run_stdio_async()
        return
    from mcp.server.stdio import stdio_server

    stdin = anyio.wrap_file(io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace"))
    stdout = anyio.wrap_file(io.TextIOWrapper(wire_out, encoding="utf-8", write_through=True))
    low = lowlevel_server(server)
    async with stdio_server(stdin=stdin, stdout=stdout) as (read_stream, write_stream):
        await low.run(read_stream, write_stream, low.create_initialization_options())


def set_server_version(server: Any, version: str) -> None:
    """Report ``version`` as ``serverInfo.version`` (mcp 1.x's FastMCP has no parameter for it and would
    report the SDK's own version)."""
    low = lowlevel_server(server)
    with contextlib.suppress(AttributeError):
        low.version = version


#: JSON-RPC "Invalid params": the code for an unknown resource since SEP-2164 (before it, -32002).
RESOURCE_NOT_FOUND_CODE = -32602


def resource_not_found_as_invalid_params(server: Any, not_found: type[BaseException]) -> None:
    """Make ``resources/read`` of an unknown resource an error with code -32602 and one clear sentence.

    mcp 2.x does so for :class:`ResourceNotFoundError` (which the resource functions raise); mcp 1.x
    answers every failed read with code 0 and a wrapped message, so there the low-level handler is
    replaced by one that translates ``not_found`` (found on the exception chain) and unknown URIs.
    """
    if SDK_MAJOR >= 2:
        return
    from mcp.shared.exceptions import McpError
    from mcp.types import ErrorData

    low = lowlevel_server(server)
    read = server.read_resource

    async def read_resource(uri: Any) -> Any:
        try:
            return await read(uri)
        except McpError:
            raise
        except Exception as exc:  # FastMCP raises ValueError / ResourceError, our error on the chain
            cause: BaseException | None = exc
            while cause is not None and not isinstance(cause, not_found):
                cause = cause.__cause__ or cause.__context__
            if cause is None and "Unknown resource" not in str(exc):
                raise
            text = str(cause) if cause is not None else f"unknown resource {str(uri)[:200]!r}; list the server's " \
                "resources and templates with resources/list and resources/templates/list"
            raise McpError(ErrorData(code=RESOURCE_NOT_FOUND_CODE, message=text, data={"uri": str(uri)})) from None

    low.read_resource()(read_resource)


def dump(obj: Any) -> Any:
    """A wire object as the JSON-ready dict the protocol sends (camelCase keys, no ``None``)."""
    return obj.model_dump(by_alias=True, mode="json", exclude_none=True)
