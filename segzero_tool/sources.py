"""One intake for images: every form a caller can name an image in, under one policy.

Both adapters (the MCP server and the LangChain tool) and library code go through this module, so
the same checks apply everywhere. Accepted forms:

* a local path (``str`` or :class:`os.PathLike`, or a ``file://`` URL): must lie inside
  :attr:`ImagePolicy.allowed_roots`, checked after resolving ``~``, ``..`` and symlinks;
* an ``http(s)`` URL: only when :attr:`ImagePolicy.allow_urls`; see :func:`afetch_url`;
* a ``data:`` URL or bare base64 text: size-checked before decoding;
* a handle such as ``segzero://results/<id>/overlay.png`` (any ``scheme://`` that is not a
  network scheme): passed to the caller's ``resolve_handle`` callback (the core knows no store);
* in-process values: ``bytes``/``bytearray``/``memoryview``, a PIL image, a numpy array or a
  :class:`~segzero_tool.images.LoadedImage`, passed through unchanged.

Public API::

    ImagePolicy(allowed_roots=(cwd,), allow_urls=False, allow_private_urls=False, url_timeout_s=15.0,
                max_download_bytes=25_000_000, max_base64_bytes=25_000_000, max_file_bytes=None,
                max_redirects=5, reader="this program", roots_hint=..., urls_hint=...,
                private_urls_hint=...)
    classify_source(source, policy=None) -> SourceKind
    resolve_local_path(path, policy) -> Path
    decode_base64_image(data, policy_or_max_bytes) -> bytes
    is_public_address(address) -> bool
    fetch_url(url, policy, *, transport=None, resolve=None) -> bytes            # sync
    afetch_url(url, policy, *, client=None, resolve=None) -> bytes              # async
    load_source(source, policy, *, resolve_handle=None, transport=None, resolve=None)
        -> bytes | Path | PIL.Image.Image | np.ndarray | LoadedImage          # sync
    aload_source(source, policy, *, resolve_handle=None, client=None, resolve=None)  # async, same result
    load_image_source(source, policy, *, max_pixels=DEFAULT_MAX_PIXELS, ...) -> LoadedImage
    aload_image_source(source, policy, *, max_pixels=DEFAULT_MAX_PIXELS, ...) -> LoadedImage

Every refusal is an :class:`~segzero_tool.errors.ImageSourceRejected` (a ``SegZeroError`` and
``ValueError``, exit code 2) whose message says what was wrong and what to do; the policy's
``reader`` ("this server", "this tool") and ``*_hint`` texts (how to change the policy, e.g.
"ask the operator to start the server with --allow-urls") make the messages fit the adapter.
Decoding errors of the image itself come later, from :func:`~segzero_tool.images.load_image`.

Guarantees:

* Whether a path outside the allowed roots exists is never observable: such paths (absolute,
  relative, with ``..``, through a symlink pointing out, ``file://``) get the same message whether
  or not they exist, and the file system is only consulted about paths inside the roots. (A path
  whose symlinks resolve *into* a root names a file inside the roots and is treated as one.)
* URL downloads connect to the very address that was checked: the host is resolved once, every
  address is checked (loopback, private, link-local, reserved, CGNAT, multicast, IPv4-mapped,
  6to4 and NAT64 are refused unless ``allow_private_urls``), and the request goes to the checked
  IP with the original ``Host`` header (and, for https, the TLS server name via the httpcore
  ``sni_hostname`` extension, so the certificate is verified for the real name). No second name
  lookup happens, so DNS rebinding cannot reach a private address. Redirects are followed by hand,
  each hop checked and pinned the same way.

``httpx``/``anyio`` are imported only when a URL is fetched or an async function runs.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import inspect
import ipaddress
import math
import os
import re
import socket
import stat
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union
from urllib.parse import unquote, urlsplit

import numpy as np

from .errors import ImageSourceRejected
from .images import DEFAULT_MAX_PIXELS, LoadedImage, load_image

if TYPE_CHECKING:
    import httpx
    from PIL import Image

SourceKind = Literal["path", "url", "data_url", "base64", "resource", "bytes", "pil", "array", "loaded"]
#: host name -> IP address strings (sync or async).
Resolver = Callable[[str], Awaitable[Sequence[str]] | Sequence[str]]
#: handle text (``segzero://...``) -> an image value (bytes, Path, PIL image, array, LoadedImage); sync or async.
HandleResolver = Callable[[str], Any]
Source = Union[str, os.PathLike, bytes, bytearray, memoryview, "Image.Image", np.ndarray, LoadedImage]
Loaded = Union[bytes, Path, "Image.Image", np.ndarray, LoadedImage]

#: Schemes fetched over the network by :func:`fetch_url`.
HTTP_SCHEMES = frozenset({"http", "https"})
#: Other network schemes: classified as URLs so that :func:`fetch_url` refuses them by name.
_OTHER_NETWORK_SCHEMES = frozenset({"ftp", "ftps", "sftp", "ssh", "scp", "ws", "wss", "gopher", "smb", "ldap",
                                    "ldaps", "dict", "tftp", "telnet", "rtsp", "s3", "gs"})
_PASSTHROUGH = frozenset({"bytes", "pil", "array", "loaded"})
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
_BASE64_RE = re.compile(r"^[A-Za-z0-9+/_\-]+={0,2}$")
_WHITESPACE_RE = re.compile(r"\s+")
_LEGACY_IPV4_RE = re.compile(r"^(0[xX][0-9a-fA-F]+|[0-9]+)(\.(0[xX][0-9a-fA-F]+|[0-9]+)){0,3}$")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_MIN_BASE64_CHARS = 64
_MAX_PATH_CHARS = 4096
_MAX_URL_CHARS = 8192
_MAX_ADDRESSES_TRIED = 4
_MAX_TIMEOUT_S = 86_400.0  # a longer timeout would overflow socket timeouts; a day is "no limit" here
_HINT_SOURCES = "pass a file path inside the allowed folders, an http(s) URL (if enabled), a data: URL or base64"


def _cwd_roots() -> tuple[Path, ...]:
    return (Path.cwd(),)


@dataclass(frozen=True)
class ImagePolicy:
    """Which image sources are accepted, and their limits.

    Attributes:
        allowed_roots: local files must lie inside one of these folders (resolved with ``realpath``
            at construction; default: the current working directory; a single path is accepted as
            one root; ``None`` means the working directory). An empty tuple refuses every local path.
        allow_urls: fetch ``http``/``https`` URLs at all.
        allow_private_urls: also fetch from loopback, private, link-local, reserved, multicast and
            unspecified addresses (IPv4 and IPv6, IPv4-mapped IPv6 included). Off by default (SSRF).
        url_timeout_s: the whole download (name lookup, redirects and body) must finish in this time.
        max_download_bytes: largest body accepted from a URL.
        max_base64_bytes: largest decoded ``data:`` URL or base64 payload.
        max_file_bytes: largest local file accepted (``None``: no limit beyond ``max_pixels``).
        max_redirects: redirects followed per download; each hop is checked like the first URL.
        reader: how messages name the reader ("this server", "this tool").
        roots_hint, urls_hint, private_urls_hint: how the caller can change the policy, ending the
            messages that refuse a path outside the roots, a URL, or a private address.
    """

    allowed_roots: tuple[Path, ...] = field(default_factory=_cwd_roots)
    allow_urls: bool = False
    allow_private_urls: bool = False
    url_timeout_s: float = 15.0
    max_download_bytes: int = 25_000_000
    max_base64_bytes: int = 25_000_000
    max_file_bytes: int | None = None
    max_redirects: int = 5
    reader: str = "this program"
    roots_hint: str = "add the folder to the allowed roots of the image policy"
    urls_hint: str = "enable URL fetching in the image policy (allow_urls=True)"
    private_urls_hint: str = "allow private addresses in the image policy (allow_private_urls=True)"

    def __post_init__(self) -> None:
        roots: Any = self.allowed_roots
        if roots is None:
            roots = _cwd_roots()
        elif isinstance(roots, (str, os.PathLike)):
            roots = (roots,)
        resolved = []
        for root in roots:
            if not isinstance(root, (str, os.PathLike)):
                raise TypeError(f"allowed_roots must hold folder paths, got {type(root).__name__}")
            resolved.append(Path(os.path.realpath(Path(root).expanduser())))
        object.__setattr__(self, "allowed_roots", tuple(resolved))
        for name in ("allow_urls", "allow_private_urls"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        timeout = self.url_timeout_s
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not (
                math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"url_timeout_s must be a finite number of seconds above 0, got {timeout!r}")
        for name in ("max_download_bytes", "max_base64_bytes", "max_file_bytes", "max_redirects"):
            value = getattr(self, name)
            if value is None and name == "max_file_bytes":
                continue
            low = 0 if name == "max_redirects" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be a whole number of at least {low}, got {value!r}")
        for name in ("reader", "roots_hint", "urls_hint", "private_urls_hint"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"{name} must be text, got {type(getattr(self, name)).__name__}")


def _policy_for(policy: ImagePolicy | int) -> ImagePolicy:
    if isinstance(policy, ImagePolicy):
        return policy
    if isinstance(policy, int) and not isinstance(policy, bool):
        return ImagePolicy(allowed_roots=(), max_base64_bytes=policy)
    raise TypeError(f"policy must be an ImagePolicy (or a byte limit), got {type(policy).__name__}")


def _check_policy(policy: object) -> None:
    if not isinstance(policy, ImagePolicy):
        raise TypeError(f"policy must be an ImagePolicy, got {type(policy).__name__}")


def _reject_type(source: object) -> ImageSourceRejected:
    return ImageSourceRejected(
        f"the image must be a file path, URL, data: URL or base64 text (or, from code, bytes, a PIL image or a "
        f"numpy array), got {type(source).__name__}; {_HINT_SOURCES}")


# --- local paths ---------------------------------------------------------------------------------


def _roots_text(policy: ImagePolicy) -> str:
    return ", ".join(str(r) for r in policy.allowed_roots) or "(none)"


def _outside(shown: str, policy: ImagePolicy) -> ImageSourceRejected:
    return ImageSourceRejected(
        f"{shown} is outside the folders {policy.reader} may read ({_roots_text(policy)}). Pass the path of a file "
        f"inside one of them, send the image as a data: URL or base64 instead, or {policy.roots_hint}.")


def _path_text(path: object) -> str:
    if isinstance(path, str):
        text = path.strip()
    elif isinstance(path, os.PathLike):
        text = os.fspath(path)
        if not isinstance(text, str):
            raise ImageSourceRejected("byte-string paths are not supported; pass the path as text")
    else:
        raise _reject_type(path)
    if text[:5].lower() == "file:":
        try:
            parts = urlsplit(text)
        except ValueError:
            raise ImageSourceRejected("the file URL is malformed; pass file:///absolute/path or a plain path, or "
                                      "send the image as a data: URL or base64") from None
        if parts.netloc not in ("", "localhost"):
            raise ImageSourceRejected(f"the file URL names the host {parts.netloc[:100]!r}; only local files "
                                      "(file:///absolute/path) are supported, or send the image as a data: URL "
                                      "or base64")
        text = unquote(parts.path)
    return text


def _expand_home(text: str) -> str:
    """``~`` and ``~/...`` only: ``~user`` is taken literally, so no user name is looked up."""
    if text == "~" or text.startswith("~/"):
        home = os.path.expanduser("~")
        return text if home == "~" else home + text[1:]
    return text


def _inside_candidates(text: str, policy: ImagePolicy) -> list[Path]:
    """The resolved candidates of ``text`` that lie inside a root (absolute: itself; relative: against
    the working directory, then each root). Touches the file system only to resolve symlinks."""
    given = _expand_home(text)
    if os.path.isabs(given):
        bases = [""]
    else:
        try:
            bases = [os.getcwd()]
        except OSError:
            bases = []
        bases += [str(r) for r in policy.allowed_roots]
    found: list[Path] = []
    for base in bases:
        try:
            candidate = Path(os.path.realpath(os.path.join(base, given)))
        except (OSError, ValueError):
            continue
        if candidate not in found and any(candidate.is_relative_to(r) for r in policy.allowed_roots):
            found.append(candidate)
    return found


def _stat_kind(path: Path) -> tuple[str, int]:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return "missing", 0
    if stat.S_ISREG(st.st_mode):
        return "file", st.st_size
    return ("dir" if stat.S_ISDIR(st.st_mode) else "other"), 0


def _find_inside_file(text: str, policy: ImagePolicy) -> Path | None:
    """The regular file ``text`` names inside the roots, or ``None``; never raises."""
    if not policy.allowed_roots or len(text) > _MAX_PATH_CHARS or "\x00" in text:
        return None
    try:
        candidates = _inside_candidates(_path_text(text), policy)
    except ImageSourceRejected:
        return None
    return next((c for c in candidates if _stat_kind(c)[0] == "file"), None)


def resolve_local_path(path: str | os.PathLike, policy: ImagePolicy) -> Path:
    """Resolve a local image path and check that it lies inside an allowed root.

    ``~`` is expanded and ``..`` and symlinks are resolved (``realpath``) *before* the check, so
    neither can lead outside the roots. A ``file://`` URL is accepted as its path. A relative path
    is looked up against the working directory first, then against each root in order. Every path
    outside the roots gets the same message whether or not it exists.

    Returns:
        The resolved path of an existing regular file inside one of the roots.

    Raises:
        ImageSourceRejected: empty, NUL, too long, outside every root, missing, not a regular file,
            or larger than ``policy.max_file_bytes``.
    """
    _check_policy(policy)
    text = _path_text(path)
    if not text:
        raise ImageSourceRejected(f"the image path is empty; {_HINT_SOURCES}")
    if "\x00" in text:
        raise ImageSourceRejected("the image path contains a NUL character; pass a plain file path, or send the "
                                  "image as a data: URL or base64")
    if len(text) > _MAX_PATH_CHARS:
        raise ImageSourceRejected(f"the image path is {len(text):,} characters long, longer than any file path; "
                                  "pass a shorter path, or send the image as a data: URL or base64")
    if not policy.allowed_roots:
        raise ImageSourceRejected(f"{policy.reader} reads no local files (no allowed folders are configured); send "
                                  f"the image as a data: URL or base64, or {policy.roots_hint}")
    shown = repr(text)
    inside = _inside_candidates(text, policy)
    if not inside:
        raise _outside(shown, policy)
    kinds = [(c, *_stat_kind(c)) for c in inside]
    for candidate, kind, size in kinds:
        if kind == "file":
            limit = policy.max_file_bytes
            if limit is not None and size > limit:
                raise ImageSourceRejected(f"{shown}: the file has {size:,} bytes, more than {policy.reader}'s limit "
                                          f"of {limit:,}; send a smaller (downscaled or JPEG-compressed) image")
            return candidate
    first_kind = kinds[0][1]
    if first_kind == "dir":
        raise ImageSourceRejected(f"{shown} is a folder, not an image file; pass the path of one image file")
    if first_kind == "other":
        raise ImageSourceRejected(f"{shown} is not a regular file; pass the path of an image file")
    cwd_note = "" if os.path.isabs(_expand_home(text)) else (
        f" Relative paths are resolved against {policy.reader}'s working directory and the allowed folders.")
    raise ImageSourceRejected(f"no such file: {shown} (looked for {', '.join(str(c) for c in inside)}); check "
                              f"the name, or list the folder first.{cwd_note}")


# --- base64 and data URLs ------------------------------------------------------------------------


def _max_encoded_chars(max_bytes: int) -> int:
    return 4 * math.ceil(max_bytes / 3)


def _too_large(what: str, policy: ImagePolicy) -> str:
    return (f"the {what} is larger than {policy.reader}'s limit of {policy.max_base64_bytes:,} bytes; send a "
            "smaller or more compressed image (e.g. JPEG, or resize it), or a file path / URL instead")


def decode_base64_image(data: str, policy: ImagePolicy | int) -> bytes:
    """Decode a ``data:`` URL (``data:image/png;base64,...``) or a bare base64 string.

    Whitespace and line breaks are ignored, the URL-safe alphabet (``-``, ``_``) is accepted and
    missing ``=`` padding is restored. The size limit (``policy.max_base64_bytes``, or ``policy``
    itself when it is an ``int``) is checked on the encoded length before decoding and again on
    the decoded bytes.

    Raises:
        ImageSourceRejected: not text, not base64, a ``data:`` URL without ``;base64`` or of a
            non-image type, empty, cut off, or larger than the limit.
    """
    policy = _policy_for(policy)
    if not isinstance(data, str):
        raise ImageSourceRejected(f"base64 image data must be text, got {type(data).__name__}")
    text = data.strip()
    limit = policy.max_base64_bytes
    what = "base64 image"
    if text[:5].lower() == "data:":
        header, sep, payload = text.partition(",")
        if not sep:
            raise ImageSourceRejected("the data: URL has no comma; expected data:image/png;base64,<base64 data>")
        params = [p.strip().lower() for p in header[5:].split(";")]
        if "base64" not in params[1:]:
            raise ImageSourceRejected("only base64 data: URLs are accepted (data:image/png;base64,<base64 data>); "
                                      "encode the image bytes as base64")
        media = params[0]
        if media and not (media.startswith("image/") or media == "application/octet-stream"):
            raise ImageSourceRejected(f"the data: URL has media type {media[:60]!r}; send an image (image/png, "
                                      "image/jpeg, ...) as data:image/png;base64,<base64 data>")
        text, what = payload, "data: URL"
    # A cheap bound on the raw length first (generous for line breaks), then the exact one.
    if len(text) > 2 * _max_encoded_chars(limit) + 1024:
        raise ImageSourceRejected(_too_large(what, policy))
    compact = _WHITESPACE_RE.sub("", text)
    if not compact:
        raise ImageSourceRejected(f"the {what} is empty; send the base64-encoded bytes of an image file "
                                  "(data:image/png;base64,<base64 data>)")
    if len(compact) > _max_encoded_chars(limit) + 4:
        raise ImageSourceRejected(_too_large(what, policy))
    if not _BASE64_RE.match(compact):
        raise ImageSourceRejected(f"the {what} is not valid base64 (it contains characters outside A-Z a-z 0-9 + / "
                                  "= or the URL-safe - _); send the image file's bytes base64-encoded, e.g. as a "
                                  "data: URL")
    standard = compact.rstrip("=").replace("-", "+").replace("_", "/")
    if len(standard) % 4 == 1:
        raise ImageSourceRejected(f"the {what} is not valid base64 (its length is impossible; was it cut off?); "
                                  "send the complete base64 text, e.g. as a data: URL")
    try:
        raw = base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ImageSourceRejected(f"the {what} is not valid base64; send the image file's bytes base64-encoded, "
                                  "e.g. as a data: URL") from None
    if not raw:
        raise ImageSourceRejected(f"the {what} decodes to no data; send the base64-encoded bytes of an image file")
    if len(raw) > limit:
        raise ImageSourceRejected(_too_large(what, policy))
    return raw


# --- addresses -----------------------------------------------------------------------------------


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
        ip = ipaddress.ip_address(str(address).split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None and not is_public_address(str(embedded)):
            return False
    return bool(ip.is_global) and not (ip.is_multicast or ip.is_loopback or ip.is_link_local or ip.is_private
                                       or ip.is_reserved or ip.is_unspecified)


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


def _normalise_address(address: object) -> str | None:
    text = str(address)
    ip_text, pct, zone = text.partition("%")
    try:
        ip = ipaddress.ip_address(ip_text)
    except ValueError:
        return None
    return f"{ip}%{zone}" if pct and zone and isinstance(ip, ipaddress.IPv6Address) else str(ip)


async def _system_resolve(host: str) -> list[str]:
    import anyio

    infos = await anyio.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


# --- URLs ----------------------------------------------------------------------------------------


def _redact(url: httpx.URL) -> str:
    try:
        text = str(url.copy_with(username=None, password=None, query=None, fragment=None))
    except Exception:  # pragma: no cover - defensive: a URL that cannot be re-serialised
        text = "(the URL)"
    return text if len(text) <= 200 else text[:197] + "..."


async def _checked_addresses(url: httpx.URL, policy: ImagePolicy, resolve: Resolver) -> tuple[list[str], bool]:
    """Resolve ``url``'s host once and check every address; ``(addresses, host_is_literal)``."""
    scheme = url.scheme.lower()
    if scheme not in HTTP_SCHEMES:
        raise ImageSourceRejected(f"the URL scheme {scheme[:20] + ':' if scheme else '(none)'} is not supported; only "
                                  "http:// and https:// URLs can be fetched")
    host = url.raw_host.decode("ascii", "replace")
    if not host:
        raise ImageSourceRejected(f"the URL {_redact(url)!r} has no host name; pass a complete http(s) URL")
    literal = _literal_ip(host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            answer = resolve(host)
            if inspect.isawaitable(answer):
                answer = await answer
        except (OSError, UnicodeError) as exc:
            raise ImageSourceRejected(f"the host {host[:100]!r} could not be resolved ({exc}); check the URL") from None
        addresses = []
        for item in answer or ():
            normalised = _normalise_address(item)
            if normalised is None:
                raise ImageSourceRejected(f"the host {host[:100]!r} resolved to {str(item)[:60]!r}, which is not an "
                                          "IP address; check the URL")
            if normalised not in addresses:
                addresses.append(normalised)
        if not addresses:
            raise ImageSourceRejected(f"the host {host[:100]!r} has no addresses; check the URL")
    if not policy.allow_private_urls:
        blocked = [a for a in addresses if not is_public_address(a)]
        if blocked:
            raise ImageSourceRejected(
                f"the URL host {host[:100]!r} points to a non-public address ({blocked[0]}: loopback, private, "
                f"link-local or reserved), which {policy.reader} does not fetch; use a public URL, send the image as "
                f"a data: URL or base64, or {policy.private_urls_hint}")
    return addresses, literal is not None


async def _send_pinned(client: httpx.AsyncClient, url: httpx.URL, addresses: list[str],
                       literal: bool) -> httpx.Response:
    """GET ``url`` from one of the checked ``addresses`` (no second lookup): the URL names the IP,
    ``Host`` keeps the original name, and for https ``sni_hostname`` makes TLS verify that name."""
    import httpx

    headers = {"Accept": "image/*", "Host": url.netloc.decode("ascii")}
    extensions = {} if literal or url.scheme.lower() != "https" else {"sni_hostname": url.raw_host.decode("ascii")}
    last: httpx.ConnectError | None = None
    for address in addresses[:_MAX_ADDRESSES_TRIED]:
        request = client.build_request("GET", url.copy_with(host=address), headers=headers, extensions=extensions)
        try:
            return await client.send(request, stream=True, follow_redirects=False)
        except httpx.ConnectError as exc:  # try the next checked address
            last = exc
    assert last is not None
    raise last


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


async def _read_body(response: httpx.Response, url: httpx.URL, policy: ImagePolicy) -> bytes:
    limit = policy.max_download_bytes
    too_large = (f"the image at {_redact(url)} is larger than {policy.reader}'s download limit of {limit:,} bytes; "
                 "use a smaller image, or send it as a data: URL or base64")
    declared = response.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise ImageSourceRejected(too_large)
    chunks: list[bytes] = []
    total = 0
    async for chunk in response.aiter_bytes():
        total += len(chunk)
        if total > limit:
            raise ImageSourceRejected(too_large)
        chunks.append(chunk)
    if total == 0:
        raise ImageSourceRejected(f"{_redact(url)} returned an empty body; check that the URL points to an image file")
    return b"".join(chunks)


async def _download(url: httpx.URL, policy: ImagePolicy, client: httpx.AsyncClient, resolve: Resolver) -> bytes:
    import httpx

    redirects = 0
    while True:
        addresses, literal = await _checked_addresses(url, policy, resolve)
        response = await _send_pinned(client, url, addresses, literal)
        try:
            peer = _peer_address(response)  # defence in depth (e.g. a caller's client behind a proxy)
            if peer is not None and not policy.allow_private_urls and not is_public_address(peer):
                raise ImageSourceRejected(f"the URL host {url.host[:100]!r} connected to the non-public address "
                                          f"{peer}; {policy.reader} does not fetch from private networks")
            if response.status_code in _REDIRECT_STATUSES:
                location = response.headers.get("location")
                if not location:
                    raise ImageSourceRejected(f"{_redact(url)} answered a redirect without a Location; use the final "
                                              "URL")
                redirects += 1
                if redirects > policy.max_redirects:
                    raise ImageSourceRejected(f"{_redact(url)} redirected more than {policy.max_redirects} times; use "
                                              "the final image URL directly")
                try:
                    url = url.join(location)
                except (httpx.InvalidURL, ValueError, UnicodeError) as exc:
                    raise ImageSourceRejected(f"{_redact(url)} redirected to an invalid URL ({exc})") from None
                continue
            if not 200 <= response.status_code < 300:
                raise ImageSourceRejected(f"{_redact(url)} answered HTTP {response.status_code}; check that the URL "
                                          "points to an image that is publicly readable")
            return await _read_body(response, url, policy)
        finally:
            await response.aclose()


def _timeout_message(url: httpx.URL, policy: ImagePolicy) -> str:
    return (f"downloading {_redact(url)} took longer than {policy.url_timeout_s:g} s; try a faster or smaller "
            "source, or send the image as a data: URL or base64")


async def afetch_url(url: str, policy: ImagePolicy, *, client: httpx.AsyncClient | None = None,
                     resolve: Resolver | None = None) -> bytes:
    """Download an image from an ``http(s)`` URL under ``policy`` (async).

    The host is resolved once per hop and every address checked; the request then connects to the
    first checked address (the next ones if it cannot connect) with the original ``Host`` header and,
    for https, ``sni_hostname`` set to the host name, so TLS verifies the real name and no second
    lookup can be rebound to a private address. Redirects are followed by hand, each hop checked and
    pinned the same way, at most ``policy.max_redirects`` times. A ``Content-Length`` over
    ``policy.max_download_bytes`` is refused before reading, and the streamed body is cut off as
    soon as it passes the limit. Lookups, redirects and body together must finish within
    ``policy.url_timeout_s``. (A ``client`` configured with a proxy connects to the proxy; the
    address it reports as the peer is checked too.)

    Args:
        url: the URL as the caller wrote it.
        policy: URL switches and limits.
        client: an ``httpx.AsyncClient`` to use (tests pass one with a mock transport); by default a
            fresh client that ignores proxy environment variables and keeps no connection alive (so a
            TLS connection verified for one name is never reused for another) is used and closed.
        resolve: host name -> IP address strings (sync or async); by default the system resolver.

    Raises:
        ImageSourceRejected: URLs disabled, bad scheme or host, non-public address, too many
            redirects, HTTP error status, too large, timeout, or a network failure.
    """
    if not isinstance(url, str):
        raise _reject_type(url)
    _check_policy(policy)
    if not policy.allow_urls:
        raise ImageSourceRejected(f"fetching URLs is disabled in {policy.reader}; send the image as a data: URL or "
                                  f"base64, or a local file path, or {policy.urls_hint}")
    text = url.strip()
    if len(text) > _MAX_URL_CHARS:
        raise ImageSourceRejected(f"the URL is {len(text):,} characters long, more than the {_MAX_URL_CHARS:,} "
                                  "accepted; pass a shorter URL or send the image as a data: URL or base64")
    import anyio
    import httpx

    try:
        current = httpx.URL(text)
    except (httpx.InvalidURL, TypeError, ValueError, UnicodeError) as exc:
        raise ImageSourceRejected(f"{text[:200]!r} is not a valid URL ({exc}); pass a complete http(s) URL") from None
    seconds = min(policy.url_timeout_s, _MAX_TIMEOUT_S)
    own_client = client is None
    # No kept-alive connections: a connection verified for one host name is never reused for another.
    http = client or httpx.AsyncClient(timeout=httpx.Timeout(seconds), follow_redirects=False, trust_env=False,
                                       limits=httpx.Limits(max_keepalive_connections=0))
    try:
        with anyio.fail_after(seconds):
            return await _download(current, policy, http, resolve or _system_resolve)
    except ImageSourceRejected:
        raise
    except (TimeoutError, httpx.TimeoutException):
        raise ImageSourceRejected(_timeout_message(current, policy)) from None
    except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, ValueError, UnicodeError) as exc:
        raise ImageSourceRejected(f"downloading {_redact(current)} failed ({type(exc).__name__}: {exc}); check the "
                                  "URL, or send the image as a data: URL or base64") from None
    finally:
        if own_client:
            await http.aclose()


def _run_async(make: Callable[[], Awaitable[Any]]) -> Any:
    """Run a coroutine to completion from sync code (in a private thread when a loop is running here)."""

    async def main() -> Any:
        return await make()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="segzero-sources") as pool:
        return pool.submit(asyncio.run, main()).result()


def fetch_url(url: str, policy: ImagePolicy, *, transport: Any = None, resolve: Resolver | None = None) -> bytes:
    """:func:`afetch_url` for sync code (runs it in a private event loop). ``transport`` is an
    ``httpx`` async transport to use instead of the network (e.g. ``httpx.MockTransport``)."""

    async def run() -> bytes:
        client = None
        if transport is not None:
            import httpx

            client = httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(min(policy.url_timeout_s,
                                                                                     _MAX_TIMEOUT_S)),
                                       follow_redirects=False, trust_env=False)
        try:
            return await afetch_url(url, policy, client=client, resolve=resolve)
        finally:
            if client is not None:
                await client.aclose()

    return _run_async(run)


# --- dispatch ------------------------------------------------------------------------------------


def _is_pil(value: object) -> bool:
    module = sys.modules.get("PIL.Image")  # a PIL image exists only once PIL.Image is imported
    return module is not None and isinstance(value, module.Image)


def classify_source(source: object, policy: ImagePolicy | None = None) -> SourceKind:
    """Say what kind of image source ``source`` is.

    Text:

    * ``data_url``: starts with ``data:``;
    * ``url``: ``http://`` or ``https://`` (and other network schemes such as ``ftp://``, so that
      :func:`fetch_url` refuses them by name);
    * ``resource``: a URI with any other scheme followed by ``://`` (``segzero://results/...``);
    * ``base64``: at least 64 characters (whitespace not counted) of the base64 alphabet only (no
      ``.`` or ``\\``; ``/`` is allowed because JPEG data starts with ``/9j/``), unless ``policy``
      is given and the text names an existing file *inside its roots* (then ``path``);
    * ``path``: ``file://`` URLs, and anything else.

    Without a policy the answer depends on the text alone; with one, only paths inside the roots
    are looked up, so the answer never depends on files outside them.

    Other values: ``path`` (``os.PathLike``), ``bytes`` (bytes, bytearray, memoryview), ``pil``,
    ``array`` (numpy) and ``loaded`` (:class:`LoadedImage`).

    Raises:
        ImageSourceRejected: any other type (``None``, numbers, lists, ...).
    """
    if isinstance(source, str):
        text = source.strip()
        match = _SCHEME_RE.match(text)
        if match and len(match.group(1)) > 1:  # a one-letter "scheme" is a Windows drive letter
            scheme = match.group(1).lower()
            if scheme == "data":
                return "data_url"
            if scheme in HTTP_SCHEMES or scheme in _OTHER_NETWORK_SCHEMES:
                return "url"
            if scheme != "file" and text[match.end():].startswith("//"):
                return "resource"
            return "path"
        compact = _WHITESPACE_RE.sub("", text)
        if len(compact) >= _MIN_BASE64_CHARS and _BASE64_RE.match(compact):
            if policy is not None and _find_inside_file(text, policy) is not None:
                return "path"
            return "base64"
        return "path"
    if isinstance(source, os.PathLike):
        return "path"
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "bytes"
    if isinstance(source, LoadedImage):
        return "loaded"
    if isinstance(source, np.ndarray):
        return "array"
    if _is_pil(source):
        return "pil"
    raise _reject_type(source)


def _prepare(source: object, policy: ImagePolicy) -> tuple[SourceKind, Any]:
    _check_policy(policy)
    kind = classify_source(source, policy)
    if isinstance(source, str):
        if not source.strip():
            raise ImageSourceRejected(f"the image is empty; {_HINT_SOURCES}")
        return kind, source.strip()
    if kind == "bytes":
        return kind, bytes(source)  # type: ignore[call-overload]
    return kind, source


def _decode_text(kind: SourceKind, text: str, policy: ImagePolicy) -> bytes:
    if kind == "data_url":
        return decode_base64_image(text, policy)
    try:
        return decode_base64_image(text, policy)
    except ImageSourceRejected as exc:
        if "/" not in text or len(text) > _MAX_PATH_CHARS:
            raise
        # A long path without a dot looks like base64; classify_source found no such file inside the roots.
        raise ImageSourceRejected(f"the image is neither valid base64 nor a file inside the allowed folders ({exc}); "
                                  "check the path, or send the complete base64 text") from None


def _local(kind: SourceKind, value: Any, policy: ImagePolicy) -> Loaded:
    """The steps that need no network: passthrough, paths, data: URLs and base64."""
    if kind in _PASSTHROUGH:
        return value
    if kind == "path":
        return resolve_local_path(value, policy)
    return _decode_text(kind, value, policy)


def _handle_result(value: Any, handle: str) -> Loaded:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, (Path, np.ndarray, LoadedImage)) or _is_pil(value):
        return value
    raise TypeError(f"resolve_handle({handle[:80]!r}) returned {type(value).__name__}; it must return bytes, a "
                    "Path, a PIL image, a numpy array or a LoadedImage")


def _no_handles(handle: str) -> ImageSourceRejected:
    return ImageSourceRejected(f"resource URIs such as {handle[:80]!r} cannot be read here; {_HINT_SOURCES}")


def load_source(source: Source, policy: ImagePolicy, *, resolve_handle: HandleResolver | None = None,
                transport: Any = None, resolve: Resolver | None = None) -> Loaded:
    """Turn any image source into bytes, a checked local path, or the in-process value (sync).

    Args:
        source: see the module docstring for the accepted forms.
        policy: the checks to apply.
        resolve_handle: reads a handle such as ``segzero://results/...`` (sync or async); without
            it handles are refused.
        transport, resolve: passed to :func:`fetch_url`.

    Returns:
        A :class:`~pathlib.Path` for local files (inside the roots), ``bytes`` for URLs, data: URLs,
        base64 and bytes-like values; PIL images, arrays and ``LoadedImage`` unchanged; whatever
        ``resolve_handle`` returned for handles.

    Raises:
        ImageSourceRejected: the source was refused (see the individual functions).
    """
    kind, value = _prepare(source, policy)
    if kind == "url":
        return fetch_url(value, policy, transport=transport, resolve=resolve)
    if kind == "resource":
        if resolve_handle is None:
            raise _no_handles(value)
        out = resolve_handle(value)
        if inspect.isawaitable(out):
            out = _run_async(lambda: out)
        return _handle_result(out, value)
    return _local(kind, value, policy)


async def aload_source(source: Source, policy: ImagePolicy, *, resolve_handle: HandleResolver | None = None,
                       client: httpx.AsyncClient | None = None, resolve: Resolver | None = None) -> Loaded:
    """:func:`load_source` for async code: file checks and base64 decoding run in a worker thread,
    URLs are fetched with :func:`afetch_url` (``client`` and ``resolve`` are passed on), and an async
    ``resolve_handle`` is awaited."""
    import anyio

    kind, value = await anyio.to_thread.run_sync(_prepare, source, policy)
    if kind == "url":
        return await afetch_url(value, policy, client=client, resolve=resolve)
    if kind == "resource":
        if resolve_handle is None:
            raise _no_handles(value)
        out = resolve_handle(value)
        if inspect.isawaitable(out):
            out = await out
        return _handle_result(out, value)
    if kind in _PASSTHROUGH:
        return value
    return await anyio.to_thread.run_sync(_local, kind, value, policy)


def load_image_source(source: Source, policy: ImagePolicy, *, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                      resolve_handle: HandleResolver | None = None, transport: Any = None,
                      resolve: Resolver | None = None) -> LoadedImage:
    """:func:`load_source`, then decode with :func:`~segzero_tool.images.load_image` (RGB uint8,
    ``max_pixels`` checked from the header). Raises ``ImageSourceRejected`` or ``ImageLoadError``."""
    loaded = load_source(source, policy, resolve_handle=resolve_handle, transport=transport, resolve=resolve)
    return load_image(loaded, max_pixels=max_pixels)


async def aload_image_source(source: Source, policy: ImagePolicy, *, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                             resolve_handle: HandleResolver | None = None, client: httpx.AsyncClient | None = None,
                             resolve: Resolver | None = None) -> LoadedImage:
    """:func:`aload_source`, then :func:`~segzero_tool.images.load_image` in a worker thread."""
    import anyio

    loaded = await aload_source(source, policy, resolve_handle=resolve_handle, client=client, resolve=resolve)
    return await anyio.to_thread.run_sync(lambda: load_image(loaded, max_pixels=max_pixels))


__all__ = [
    "HTTP_SCHEMES",
    "HandleResolver",
    "ImagePolicy",
    "ImageSourceRejected",
    "Resolver",
    "SourceKind",
    "afetch_url",
    "aload_image_source",
    "aload_source",
    "classify_source",
    "decode_base64_image",
    "fetch_url",
    "is_public_address",
    "load_image_source",
    "load_source",
    "resolve_local_path",
]
