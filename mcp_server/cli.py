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


MISSING_EXTRA = ("the MCP server needs the 'mcp' extra, which is not installed; install it with: "
                 'pip install "segzero-tool[mcp]"')


def _missing_extra() -> str | None:
    """The one-line message when the ``mcp`` extra (the MCP SDK, anyio, uvicorn) is missing."""
    import importlib.util

    for module in ("mcp", "anyio"):
        try:
            if importlib.util.find_spec(module) is None:
                return MISSING_EXTRA
        except (ImportError, ValueError):
            return MISSING_EXTRA
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server until the client disconnects (stdio) or the process is interrupted (HTTP).

    The server answers ``initialize`` at once: the models load in a background thread that starts
    right away (``--lazy``: on the first call instead), and a call that arrives earlier waits for them
    with progress notifications.
    """
    from segzero_tool.errors import SegZeroError

    from .settings import ServerSettings

    try:
        settings = ServerSettings.from_args(argv)
    except SegZeroError as exc:
        return _fail(str(exc), exc.exit_code)
    _setup_logging(settings.log_level)
    missing = _missing_extra()
    if missing is not None:
        return _fail(missing, 5)
    wire = service = None
    if settings.transport == "stdio":
        from .compat import divert_stdout

        wire = divert_stdout()  # from here on, stray prints go to stderr, the protocol to `wire`
    try:
        import anyio

        from segzero_tool import __version__

        from .compat import SDK_VERSION, serve_stdio
        from .server import create_server, serve_http
        from .service import SegZeroService, preflight

        log.info("segzero-mcp %s (mcp %s), %s transport", __version__, SDK_VERSION, settings.transport)
        preflight(settings)  # unknown names and broken plugins exit now, with their codes
        service = SegZeroService(settings)
        if not settings.lazy:
            service.start_loading()  # in the background: the protocol is served meanwhile
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
    except ImportError as exc:  # a dependency of the mcp extra is missing or broken
        return _fail(f"{exc}; {MISSING_EXTRA}", 5)
    finally:
        if service is not None:
            service.close()
        if wire is not None:
            wire.close()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
