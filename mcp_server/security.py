"""Where images may come from: the MCP server's view of the core intake (:mod:`segzero_tool.sources`).

All checks live in the core; this module keeps the server's names and wording:

* :class:`InputPolicy` is the core :class:`~segzero_tool.sources.ImagePolicy` with the server's
  message texts ("this server", ``--allow-root DIR or SEGZERO_MCP_ROOTS``, ``--allow-urls``,
  ``--allow-private-urls``) as defaults;
* :class:`InputRejected` is the core :class:`~segzero_tool.errors.ImageSourceRejected` (a
  ``SegZeroError`` and ``ValueError``, exit code 2);
* :func:`load_source` (async) accepts text only (a JSON tool argument) and reads the server's own
  resource URIs through ``read_resource``; :func:`fetch_url` is the core's async download, which
  connects to the very address it checked (DNS rebinding cannot reach a private address).

``classify_source``, ``resolve_local_path``, ``decode_base64_image`` and ``is_public_address``
are the core functions themselves. New code may call :func:`segzero_tool.sources.aload_source`
(or ``aload_image_source``) with an :class:`InputPolicy` directly.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from segzero_tool import sources as _core
from segzero_tool.errors import ImageSourceRejected
from segzero_tool.sources import (
    HTTP_SCHEMES,
    ImagePolicy,
    Resolver,
    SourceKind,
    classify_source,
    decode_base64_image,
    is_public_address,
    resolve_local_path,
)

if TYPE_CHECKING:  # httpx is imported when a URL is loaded
    import httpx

ResourceReader = Callable[[str], Awaitable[bytes]]

#: The server's refusals; the same class as the core's.
InputRejected = ImageSourceRejected


@dataclass(frozen=True)
class InputPolicy(ImagePolicy):
    """The core :class:`~segzero_tool.sources.ImagePolicy` with the server's message texts.

    Attributes: as :class:`~segzero_tool.sources.ImagePolicy` (``allowed_roots`` defaults to the
    working directory; URLs and private addresses are off by default).
    """

    reader: str = "this server"
    roots_hint: str = "ask the server operator to allow the folder with --allow-root DIR or SEGZERO_MCP_ROOTS"
    urls_hint: str = "ask the operator to start the server with --allow-urls (SEGZERO_MCP_ALLOW_URLS=1)"
    private_urls_hint: str = ("ask the operator to start the server with --allow-private-urls "
                              "(SEGZERO_MCP_ALLOW_PRIVATE_URLS=1)")


async def fetch_url(url: str, policy: ImagePolicy, *, client: httpx.AsyncClient | None = None,
                    resolve: Resolver | None = None) -> bytes:
    """Download an image from an ``http(s)`` URL under ``policy``; see
    :func:`segzero_tool.sources.afetch_url` (the connection is pinned to the checked address,
    redirects are re-checked, size and time are limited).

    Raises:
        InputRejected: URLs disabled, bad scheme or host, non-public address, too many redirects,
            HTTP error status, too large, timeout, or a network failure.
    """
    return await _core.afetch_url(url, policy, client=client, resolve=resolve)


async def load_source(source: str, policy: ImagePolicy, *, read_resource: ResourceReader | None = None,
                      client: httpx.AsyncClient | None = None, resolve: Resolver | None = None) -> bytes | Path:
    """Turn an image source given as text into bytes or a checked local path.

    Args:
        source: a path, ``http(s)`` URL, ``data:`` URL, base64 text or resource URI.
        policy: the checks to apply.
        read_resource: reads a resource URI (the server passes a reader of its own resources);
            without it resource URIs are refused.
        client, resolve: passed to :func:`fetch_url`.

    Returns:
        A :class:`~pathlib.Path` for local files (inside the roots), otherwise the image bytes.

    Raises:
        InputRejected: the source was refused.
    """
    if not isinstance(source, str):
        raise InputRejected(f"the image must be given as text (a path, URL, data: URL or base64), got "
                            f"{type(source).__name__}")
    return await _core.aload_source(source, policy, resolve_handle=read_resource, client=client,  # type: ignore[return-value]
                                    resolve=resolve)


__all__ = [
    "HTTP_SCHEMES",
    "InputPolicy",
    "InputRejected",
    "ResourceReader",
    "Resolver",
    "SourceKind",
    "classify_source",
    "decode_base64_image",
    "fetch_url",
    "is_public_address",
    "load_source",
    "resolve_local_path",
]
