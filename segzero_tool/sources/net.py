"""Images from the network: check every address a host resolves to, then download from that very
address (pinned, redirects followed by hand) under the policy's limits (:func:`afetch_url`,
:func:`fetch_url`, :func:`is_public_address`). ``httpx``/``anyio`` are imported only when used."""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..errors import ImageSourceRejected
from .policy import ImagePolicy, Resolver, _check_policy, _reject_type

if TYPE_CHECKING:
    import httpx

#: Schemes fetched over the network by :func:`fetch_url`.
HTTP_SCHEMES = frozenset({"http", "https"})
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_LEGACY_IPV4_RE = re.compile(r"^(0[xX][0-9a-fA-F]+|[0-9]+)(\.(0[xX][0-9a-fA-F]+|[0-9]+)){0,3}$")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_MAX_URL_CHARS = 8192
_MAX_ADDRESSES_TRIED = 4
_MAX_TIMEOUT_S = 86_400.0  # a longer timeout would overflow socket timeouts; a day is "no limit" here


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
