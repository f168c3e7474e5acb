"""The ``segzero-mcp`` command (also ``python -m segzero_tool.mcp_server``).

    segzero-mcp                                   # stdio (what an MCP client configuration starts)
    segzero-mcp --preset light --device cpu       # small models for CPUs
    segzero-mcp --http --port 8765 --auth-token-env SEGZERO_MCP_TOKEN

Settings come from flags over ``SEGZERO_MCP_*`` / ``SEGZERO_*`` environment variables (see
:mod:`.settings`). Logs and loading progress go to stderr only: on stdio, stdout carries the protocol.
Errors are one line on stderr and a non-zero exit status (the ``segzero`` command's codes).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

log = logging.getLogger("segzero_tool.mcp_server")


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level, stream=sys.stderr, format="segzero-mcp %(levelname)s %(name)s: %(message)s",
                        force=True)
    for noisy in ("httpx", "httpcore", "urllib3", "filelock", "mcp.server.lowlevel.server", "sse_starlette"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


def _fail(message: str, code: int) -> int:
    print("segzero-mcp: error: " + " ".join(message.split()), file=sys.stderr, flush=True)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server until the client disconnects (stdio) or the process is interrupted (HTTP)."""
    from segzero_tool.errors import SegZeroError

    from .settings import ServerSettings

    try:
        settings = ServerSettings.from_args(argv)
    except SegZeroError as exc:
        return _fail(str(exc), exc.exit_code)
    _setup_logging(settings.log_level)
    wire = service = None
    if settings.transport == "stdio":
        from .compat import divert_stdout

        wire = divert_stdout()  # from here on, stray prints go to stderr, the protocol to `wire`
    try:
        import anyio

        from .compat import SDK_VERSION, serve_stdio
        from .server import create_server, serve_http
        from .tool import SegZeroService

        log.info("segzero-mcp (mcp %s), %s transport", SDK_VERSION, settings.transport)
        service = SegZeroService(settings)
        if not settings.lazy:
            service.load()
        server = create_server(settings, service=service)
        if settings.transport == "http":
            anyio.run(serve_http, server, settings)
        else:
            anyio.run(serve_stdio, server, wire)
        return 0
    except SegZeroError as exc:
        return _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        print("segzero-mcp: interrupted", file=sys.stderr)
        return 130
    except ImportError as exc:  # the mcp extra is missing
        return _fail(f"{exc}; install the MCP extra: pip install 'segzero-tool[mcp]'", 5)
    finally:
        if service is not None:
            service.close()
        if wire is not None:
            wire.close()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
