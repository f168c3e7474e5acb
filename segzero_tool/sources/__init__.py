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

Layout: :mod:`.policy` (:class:`ImagePolicy`, type aliases, wording), :mod:`.paths` (local paths and
roots), :mod:`.encoded` (``data:`` URLs and base64), :mod:`.net` (address checks, pinned downloads,
redirects) and :mod:`.dispatch` (classification and the ``load_*`` entry points). Import from this
package; the submodules are internal.
"""

from __future__ import annotations

from ..errors import ImageSourceRejected
from .dispatch import aload_image_source, aload_source, classify_source, load_image_source, load_source
from .encoded import decode_base64_image
from .net import HTTP_SCHEMES, afetch_url, fetch_url, is_public_address
from .paths import resolve_local_path
from .policy import HandleResolver, ImagePolicy, Resolver, SourceKind
from .policy import Loaded as Loaded  # type aliases used in signatures; public as before, not in __all__
from .policy import Source as Source

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
