"""Where images may come from, and the checks on each source.

A tool caller (usually a language model) names an image as a local path, an ``http(s)`` URL, a
``data:`` URL, a bare base64 string, or an MCP resource URI. This module decides which one it is
(:func:`classify_source`) and turns it into bytes or a checked path (:func:`load_source`), refusing
with :class:`InputRejected` and a message that says what was wrong and what to do instead:

* local paths must lie inside the allowed roots, checked after resolving ``~``, ``..`` and symlinks;
* URLs are off unless enabled; when enabled only ``http``/``https`` to public addresses (unless
  private ones are allowed), every redirect re-checked, with a size limit and a timeout;
* base64 payloads have a size limit that is checked before decoding.

Nothing here keeps global state: every limit comes from an :class:`InputPolicy`.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import math
import os
import re
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import unquote, urlsplit

from segzero_tool.errors import SegZeroError

if TYPE_CHECKING:  # httpx and anyio (the ``mcp`` extra) are imported when a URL or base64 is loaded
    import httpx

SourceKind = Literal["path", "url", "data_url", "base64", "resource"]
Resolver = Callable[[str], Awaitable[list[str]]]
ResourceReader = Callable[[str], Awaitable[bytes]]

#: Schemes fetched over the network by :func:`fetch_url`.
HTTP_SCHEMES = frozenset({"http", "https"})
#: Other network schemes: classified as URLs so that :func:`fetch_url` refuses them by name.
_OTHER_NETWORK_SCHEMES = frozenset({"ftp", "ftps", "sftp", "ssh", "scp", "ws", "wss", "gopher", "smb", "ldap",
                                    "ldaps", "dict", "tftp", "telnet", "rtsp", "s3", "gs"})
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
_BASE64_RE = re.compile(r"^[A-Za-z0-9+/_\-]+={0,2}$")
_WHITESPACE_RE = re.compile(r"\s+")
_LEGACY_IPV4_RE = re.compile(r"^(0[xX][0-9a-fA-F]+|[0-9]+)(\.(0[xX][0-9a-fA-F]+|[0-9]+)){0,3}$")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_MIN_BASE64_CHARS = 64
_MAX_PATH_CHARS = 4096
_HINT_SOURCES = "pass a file path inside the allowed folders, an http(s) URL (if enabled), a data: URL or base64"


class InputRejected(SegZeroError, ValueError):
    """An image source was refused; the message says why and what to do instead."""

    exit_code = 2


def _default_roots() -> tuple[Path, ...]:
    return (Path.cwd(),)


@dataclass(frozen=True)
class InputPolicy:
    """Which image sources are accepted, and their limits.

    Attributes:
        allowed_roots: local files must lie inside one of these folders (resolved with
            ``realpath`` at construction; default: the current working directory). An empty tuple
            refuses every local path.
        allow_urls: fetch ``http``/``https`` URLs at all.
        allow_private_urls: also fetch from loopback, private, link-local, reserved, multicast and
            unspecified addresses (IPv4 and IPv6, IPv4-mapped IPv6 included). Off by default (SSRF).
        url_timeout_s: the whole download (name lookup, redirects and body) must finish in this time.
        max_download_bytes: largest body accepted from a URL.
        max_base64_bytes: largest decoded ``data:`` URL or base64 payload.
        max_redirects: redirects followed per download; each hop is checked like the first URL.
    """

    allowed_roots: tuple[Path, ...] = field(default_factory=_default_roots)
    allow_urls: bool = False
    allow_private_urls: bool = False
    url_timeout_s: float = 15.0
    max_download_bytes: int = 25_000_000
    max_base64_bytes: int = 25_000_000
    max_redirects: int = 5

    def __post_init__(self) -> None:
        roots = tuple(Path(os.path.realpath(Path(r).expanduser())) for r in self.allowed_roots)
        object.__setattr__(self, "allowed_roots", roots)
        if not self.url_timeout_s > 0:
            raise ValueError(f"url_timeout_s must be positive, got {self.url_timeout_s}")
        for name in ("max_download_bytes", "max_base64_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.max_redirects < 0:
            raise ValueError(f"max_redirects must be 0 or more, got {self.max_redirects}")


# --- local paths ---------------------------------------------------------------------------------


def _roots_text(policy: InputPolicy) -> str:
    return ", ".join(str(r) for r in policy.allowed_roots) or "(none)"


def _outside_message(shown: str, policy: InputPolicy) -> str:
    return (
        f"{shown} is outside the folders this server may read ({_roots_text(policy)}). Pass a file inside one "
        "of them, send the image as a data: URL or base64 instead, or ask the server operator to allow the "
        "folder with --allow-root DIR or SEGZERO_MCP_ROOTS."
    )


def _strip_file_scheme(path: str) -> str:
    if not path.lower().startswith("file:"):
        return path
    parts = urlsplit(path)
    if parts.netloc not in ("", "localhost"):
        raise InputRejected(f"file URL {path!r} names the host {parts.netloc!r}; only local files "
                            "(file:///absolute/path) are supported")
    return unquote(parts.path)


def _inside(path: Path, policy: InputPolicy) -> bool:
    return any(path.is_relative_to(root) for root in policy.allowed_roots)


def resolve_local_path(path: str, policy: InputPolicy) -> Path:
    """Resolve a local image path and check that it lies inside an allowed root.

    ``~`` is expanded and ``..`` and symlinks are resolved (``realpath``) *before* the check, so
    neither can lead outside the roots. A ``file://`` URL is accepted as its path. A relative path
    is looked up against the working directory first, then against each root in order.

    Args:
        path: the path as the caller wrote it.
        policy: the allowed roots.

    Returns:
        The resolved path of an existing regular file inside one of the roots.

    Raises:
        InputRejected: empty path, outside every root, missing, or not a regular file.
    """
    text = _strip_file_scheme(path.strip())
    if not text:
        raise InputRejected(f"the image path is empty; {_HINT_SOURCES}")
    if "\x00" in text:
        raise InputRejected("the image path contains a NUL character; pass a plain file path")
    if not policy.allowed_roots:
        raise InputRejected("this server reads no local files (no allowed folders are configured); send the "
                            "image as a data: URL or base64, or ask the operator to add --allow-root DIR")
    given = Path(text).expanduser()
    bases = [Path.cwd(), *policy.allowed_roots] if not given.is_absolute() else [Path("/")]
    candidates: list[Path] = []
    for base in bases:
        resolved = Path(os.path.realpath(base / given))
        if resolved not in candidates:
            candidates.append(resolved)
    inside = [c for c in candidates if _inside(c, policy)]
    if not inside:
        raise InputRejected(_outside_message(repr(path), policy))
    for candidate in inside:
        if candidate.is_file():
            return candidate
    first = inside[0]
    if first.is_dir():
        raise InputRejected(f"{path!r} is a folder, not an image file; pass the path of one image file")
    if first.exists():
        raise InputRejected(f"{path!r} is not a regular file; pass the path of an image file")
    raise InputRejected(f"no such file: {path!r} (looked for {', '.join(str(c) for c in inside)}); check the "
                        f"name, or list the folder first. Relative paths are resolved against the server's "
                        f"working directory ({Path.cwd()}) and the allowed folders.")


# --- base64 and data URLs ------------------------------------------------------------------------


def _max_encoded_chars(max_bytes: int) -> int:
    return 4 * math.ceil(max_bytes / 3)


def decode_base64_image(data: str, policy: InputPolicy) -> bytes:
    """Decode a ``data:`` URL (``data:image/png;base64,...``) or a bare base64 string.

    Whitespace and line breaks are ignored, the URL-safe alphabet (``-``, ``_``) is accepted and
    missing ``=`` padding is restored. The size limit is checked on the encoded length before
    decoding and again on the decoded bytes.

    Args:
        data: the ``data:`` URL or base64 text.
        policy: supplies ``max_base64_bytes``.

    Returns:
        The decoded bytes (not yet checked to be an image).

    Raises:
        InputRejected: not base64, a ``data:`` URL without ``;base64`` or of a non-image type,
            empty, or larger than the limit.
    """
    text = data.strip()
    limit = policy.max_base64_bytes
    if text[:5].lower() == "data:":
        header, sep, payload = text.partition(",")
        if not sep:
            raise InputRejected("the data: URL has no comma; expected data:image/png;base64,<base64 data>")
        params = [p.strip().lower() for p in header[5:].split(";")]
        if "base64" not in params[1:]:
            raise InputRejected("only base64 data: URLs are accepted (data:image/png;base64,<base64 data>); "
                                "encode the image bytes as base64")
        media = params[0]
        if media and not (media.startswith("image/") or media == "application/octet-stream"):
            raise InputRejected(f"the data: URL has media type {media!r}; send an image (image/png, image/jpeg, ...)")
        text = payload
        what = "data: URL"
    else:
        what = "base64 image"
    # A cheap bound on the raw length first (generous for line breaks), then the exact one.
    if len(text) > 2 * _max_encoded_chars(limit) + 1024:
        raise InputRejected(_too_large(what, limit))
    compact = _WHITESPACE_RE.sub("", text)
    if not compact:
        raise InputRejected(f"the {what} is empty; send the base64-encoded bytes of an image file")
    if len(compact) > _max_encoded_chars(limit) + 4:
        raise InputRejected(_too_large(what, limit))
    if not _BASE64_RE.match(compact):
        raise InputRejected(f"the {what} is not valid base64 (it contains characters outside A-Z a-z 0-9 + / = "
                            "or the URL-safe - _); send the image file's bytes base64-encoded")
    standard = compact.rstrip("=").replace("-", "+").replace("_", "/")
    if len(standard) % 4 == 1:
        raise InputRejected(f"the {what} is not valid base64 (its length is impossible; was it cut off?); "
                            "send the complete base64 text")
    standard += "=" * (-len(standard) % 4)
    try:
        raw = base64.b64decode(standard, validate=True)
    except (binascii.Error, ValueError):
        raise InputRejected(f"the {what} is not valid base64; send the image file's bytes base64-encoded") from None
    if not raw:
        raise InputRejected(f"the {what} decodes to no data; send the base64-encoded bytes of an image file")
    if len(raw) > limit:
        raise InputRejected(_too_large(what, limit))
    return raw


def _too_large(what: str, limit: int) -> str:
    return (f"the {what} is larger than this server's limit of {limit:,} bytes; send a smaller or more "
            "compressed image (e.g. JPEG, or resize it), or a file path / URL instead")


# --- URLs ----------------------------------------------------------------------------------------


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_public_address(address: str) -> bool:
    """True when ``address`` (an IPv4 or IPv6 literal) is a globally routable unicast address.

    Loopback, private, link-local, shared (CGNAT), reserved, documentation, multicast and
    unspecified addresses are not public; IPv6 addresses that embed an IPv4 address
    (IPv4-mapped, 6to4, NAT64) are judged by the embedded address. Unparsable text is not public.
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None and not is_public_address(str(embedded)):
            return False
    return bool(ip.is_global) and not (ip.is_multicast or ip.is_loopback or ip.is_link_local or ip.is_private
                                       or ip.is_reserved or ip.is_unspecified)


async def _system_resolve(host: str) -> list[str]:
    import anyio

    infos = await anyio.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _literal_ip(host: str) -> str | None:
    """The address a host written as an IP literal means, including legacy IPv4 forms that the C
    resolver accepts (``127.1``, ``2130706433``, ``0x7f000001``); ``None`` for host names."""
    text = host.strip("[]").split("%", 1)[0]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    if _LEGACY_IPV4_RE.match(text):
        try:
            return str(ipaddress.IPv4Address(socket.inet_aton(text)))
        except OSError:
            return None
    return None


async def _check_url(url: httpx.URL, policy: InputPolicy, resolve: Resolver) -> None:
    scheme = url.scheme.lower()
    if scheme not in HTTP_SCHEMES:
        raise InputRejected(f"the URL scheme {scheme + ':' if scheme else '(none)'} is not supported; only http:// "
                            "and https:// URLs can be fetched")
    host = url.host
    if not host:
        raise InputRejected(f"the URL {_redact(url)!r} has no host name; pass a complete http(s) URL")
    literal = _literal_ip(host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            addresses = await resolve(host)
        except (OSError, UnicodeError) as exc:
            raise InputRejected(f"the host {host!r} could not be resolved ({exc}); check the URL") from None
        if not addresses:
            raise InputRejected(f"the host {host!r} has no addresses; check the URL")
    if policy.allow_private_urls:
        return
    blocked = [a for a in addresses if not is_public_address(a)]
    if blocked:
        raise InputRejected(
            f"the URL host {host!r} points to a non-public address ({blocked[0]}: loopback, private, link-local "
            "or reserved), which this server does not fetch; use a public URL, send the image as a data: URL or "
            "base64, or ask the operator to start the server with --allow-private-urls "
            "(SEGZERO_MCP_ALLOW_PRIVATE_URLS=1)"
        )


def _peer_address(response: httpx.Response) -> str | None:
    stream = response.extensions.get("network_stream")
    if stream is None:
        return None
    try:
        addr = stream.get_extra_info("server_addr")
    except Exception:  # pragma: no cover - transport specific
        return None
    if isinstance(addr, tuple) and addr:
        return str(addr[0])
    return None


def _redact(url: httpx.URL) -> str:
    text = str(url.copy_with(username=None, password=None, query=None, fragment=None))
    return text if len(text) <= 200 else text[:197] + "..."


async def fetch_url(url: str, policy: InputPolicy, *, client: httpx.AsyncClient | None = None,
                    resolve: Resolver | None = None) -> bytes:
    """Download an image from an ``http(s)`` URL under ``policy``.

    Redirects are followed by hand: every hop's scheme and host addresses are checked again before
    it is requested, at most ``policy.max_redirects`` times. The body is streamed and the download
    stops as soon as it passes ``policy.max_download_bytes`` (a larger ``Content-Length`` is refused
    before reading). Name lookup, redirects and body together must finish within
    ``policy.url_timeout_s``.

    Residual risk (DNS rebinding): the host name is resolved for the check and again by the HTTP
    client when it connects, so a hostile name server could answer a public address first and a
    private one second. The connection is not pinned to the checked address; instead, where the
    transport reports it, the address actually connected to is checked again before any of the
    body is read, so no private content is ever returned, though the request itself may have
    reached the private host. Run the server behind an egress firewall if that matters. (A
    ``client`` configured with a proxy connects to the proxy, so the proxy's address is checked.)

    Args:
        url: the URL as the caller wrote it.
        policy: URL switches and limits.
        client: an ``httpx.AsyncClient`` to use (tests pass one with a mock transport); by default a
            fresh client that ignores proxy environment variables is used and closed.
        resolve: host name -> IP address strings; by default the system resolver in a worker thread.

    Returns:
        The body bytes.

    Raises:
        InputRejected: URLs disabled, bad scheme or host, non-public address, too many redirects,
            HTTP error status, too large, timeout, or a network failure.
    """
    import anyio
    import httpx

    if not policy.allow_urls:
        raise InputRejected("fetching URLs is disabled on this server; send the image as a data: URL or base64, "
                            "or a local file path, or ask the operator to start the server with --allow-urls "
                            "(SEGZERO_MCP_ALLOW_URLS=1)")
    try:
        current = httpx.URL(url.strip())
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise InputRejected(f"{url!r} is not a valid URL ({exc}); pass a complete http(s) URL") from None
    resolver = resolve or _system_resolve
    own_client = client is None
    http = client or httpx.AsyncClient(timeout=httpx.Timeout(policy.url_timeout_s), follow_redirects=False,
                                       trust_env=False)
    try:
        with anyio.fail_after(policy.url_timeout_s):
            return await _download(current, policy, http, resolver)
    except TimeoutError:
        raise InputRejected(_timeout_message(current, policy)) from None
    except httpx.TimeoutException:
        raise InputRejected(_timeout_message(current, policy)) from None
    except httpx.HTTPError as exc:
        raise InputRejected(f"downloading {_redact(current)} failed ({type(exc).__name__}: {exc}); check the URL, "
                            "or send the image as a data: URL or base64") from None
    finally:
        if own_client:
            await http.aclose()


def _timeout_message(url: httpx.URL, policy: InputPolicy) -> str:
    return (f"downloading {_redact(url)} took longer than {policy.url_timeout_s:g} s; try a faster or smaller "
            "source, or send the image as a data: URL or base64")


async def _download(url: httpx.URL, policy: InputPolicy, client: httpx.AsyncClient, resolve: Resolver) -> bytes:
    import httpx

    redirects = 0
    while True:
        await _check_url(url, policy, resolve)
        request = client.build_request("GET", url, headers={"Accept": "image/*"})
        response = await client.send(request, stream=True, follow_redirects=False)
        try:
            peer = _peer_address(response)
            if peer is not None and not policy.allow_private_urls and not is_public_address(peer):
                raise InputRejected(f"the URL host {url.host!r} connected to the non-public address {peer}; "
                                    "this server does not fetch from private networks")
            if response.status_code in _REDIRECT_STATUSES:
                location = response.headers.get("location")
                if not location:
                    raise InputRejected(f"{_redact(url)} answered a redirect without a Location; use the final URL")
                redirects += 1
                if redirects > policy.max_redirects:
                    raise InputRejected(f"{_redact(url)} redirected more than {policy.max_redirects} times; "
                                        "use the final image URL directly")
                try:
                    url = url.join(location)
                except (httpx.InvalidURL, ValueError) as exc:
                    raise InputRejected(f"{_redact(url)} redirected to an invalid URL ({exc})") from None
                continue
            if not 200 <= response.status_code < 300:
                raise InputRejected(f"{_redact(url)} answered HTTP {response.status_code}; check that the URL "
                                    "points to an image that is publicly readable")
            return await _read_body(response, url, policy.max_download_bytes)
        finally:
            await response.aclose()


async def _read_body(response: httpx.Response, url: httpx.URL, limit: int) -> bytes:
    too_large = (f"the image at {_redact(url)} is larger than this server's download limit of {limit:,} bytes; "
                 "use a smaller image")
    declared = response.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise InputRejected(too_large)
    chunks: list[bytes] = []
    total = 0
    async for chunk in response.aiter_bytes():
        total += len(chunk)
        if total > limit:
            raise InputRejected(too_large)
        chunks.append(chunk)
    if total == 0:
        raise InputRejected(f"{_redact(url)} returned an empty body; check that the URL points to an image file")
    return b"".join(chunks)


# --- dispatch ------------------------------------------------------------------------------------


def _looks_like_existing_file(text: str) -> bool:
    if len(text) > _MAX_PATH_CHARS:
        return False
    try:
        return os.path.isfile(os.path.expanduser(text))
    except (OSError, ValueError):
        return False


def classify_source(source: str) -> SourceKind:
    """Say what kind of image source ``source`` is.

    * ``data_url``: starts with ``data:``;
    * ``url``: ``http://`` or ``https://`` (and other network schemes such as ``ftp://``, so that
      :func:`fetch_url` refuses them by name);
    * ``path``: ``file://`` URLs, and anything that is not one of the others;
    * ``resource``: a URI with any other scheme followed by ``://`` (``segzero://results/...``);
    * ``base64``: at least 64 characters (whitespace not counted) of the base64 alphabet only, with
      no ``.`` or ``\\`` and that is not an existing file. ``/`` is allowed because it belongs to the
      base64 alphabet (JPEG data starts with ``/9j/``).
    """
    text = source.strip()
    match = _SCHEME_RE.match(text)
    if match and len(match.group(1)) > 1:  # a one-letter "scheme" is a Windows drive letter
        scheme = match.group(1).lower()
        if scheme == "data":
            return "data_url"
        if scheme in HTTP_SCHEMES or scheme in _OTHER_NETWORK_SCHEMES:
            return "url"
        if scheme == "file":
            return "path"
        if text[match.end():].startswith("//"):
            return "resource"
        return "path"
    compact = _WHITESPACE_RE.sub("", text)
    if len(compact) >= _MIN_BASE64_CHARS and _BASE64_RE.match(compact) and not _looks_like_existing_file(text):
        return "base64"
    return "path"


async def load_source(source: str, policy: InputPolicy, *, read_resource: ResourceReader | None = None,
                      client: httpx.AsyncClient | None = None, resolve: Resolver | None = None) -> bytes | Path:
    """Turn an image source into bytes or a checked local path.

    Args:
        source: a path, ``http(s)`` URL, ``data:`` URL, base64 text or resource URI.
        policy: the checks to apply.
        read_resource: reads a resource URI (the server passes a reader of its own resources);
            without it resource URIs are refused.
        client: passed to :func:`fetch_url`.
        resolve: passed to :func:`fetch_url`.

    Returns:
        A :class:`~pathlib.Path` for local files (inside the roots), otherwise the image bytes.

    Raises:
        InputRejected: the source was refused (see the individual functions).
    """
    if not isinstance(source, str):
        raise InputRejected(f"the image must be given as text (a path, URL, data: URL or base64), got "
                            f"{type(source).__name__}")
    if not source.strip():
        raise InputRejected(f"the image is empty; {_HINT_SOURCES}")
    kind = classify_source(source)
    if kind == "path":
        return resolve_local_path(source, policy)
    if kind == "url":
        return await fetch_url(source, policy, client=client, resolve=resolve)
    if kind in ("data_url", "base64"):
        import anyio

        # A long path without a dot looks like base64; it may name a file relative to a root.
        maybe_path = kind == "base64" and "/" in source and len(source) <= _MAX_PATH_CHARS
        if maybe_path:
            try:
                return resolve_local_path(source, policy)
            except InputRejected:
                pass
        try:
            return await anyio.to_thread.run_sync(decode_base64_image, source, policy)
        except InputRejected as exc:
            if not maybe_path:
                raise
            raise InputRejected(f"the image is neither valid base64 nor a file inside the allowed folders "
                                f"({exc}); check the path, or send the complete base64 text") from None
    if read_resource is None:
        raise InputRejected(f"resource URIs such as {source.strip()[:80]!r} cannot be read here; {_HINT_SOURCES}")
    return await read_resource(source.strip())
