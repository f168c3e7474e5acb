"""One entry for every image form: say what a source is (:func:`classify_source`) and hand it to
the right loader (:func:`load_source`, :func:`aload_source`), optionally decoding the result
(:func:`load_image_source`, :func:`aload_image_source`)."""

from __future__ import annotations

import inspect
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ImageSourceRejected
from ..limits import DEFAULT_MAX_PIXELS
from .encoded import _BASE64_RE, _WHITESPACE_RE, decode_base64_image
from .net import HTTP_SCHEMES, _run_async, afetch_url, fetch_url
from .paths import _find_inside_file, resolve_local_path
from .policy import (
    _HINT_SOURCES,
    _MAX_PATH_CHARS,
    HandleResolver,
    ImagePolicy,
    Loaded,
    Resolver,
    Source,
    SourceKind,
    _check_policy,
    _reject_type,
)

if TYPE_CHECKING:
    import httpx

    from ..images import LoadedImage

#: Other network schemes: classified as URLs so that :func:`fetch_url` refuses them by name.
_OTHER_NETWORK_SCHEMES = frozenset({"ftp", "ftps", "sftp", "ssh", "scp", "ws", "wss", "gopher", "smb", "ldap",
                                    "ldaps", "dict", "tftp", "telnet", "rtsp", "s3", "gs"})
_PASSTHROUGH = frozenset({"bytes", "pil", "array", "loaded"})
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
_MIN_BASE64_CHARS = 64


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
    if _is_loaded(source):
        return "loaded"
    if _is_array(source):
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


def _is_array(value: Any) -> bool:
    """A numpy array (without importing numpy: if it is not imported, nothing is an array)."""
    numpy = sys.modules.get("numpy")
    return numpy is not None and isinstance(value, numpy.ndarray)


def _is_loaded(value: Any) -> bool:
    """A :class:`~segzero_tool.images.LoadedImage` (likewise without importing the module)."""
    images = sys.modules.get("segzero_tool.images")
    return images is not None and isinstance(value, images.LoadedImage)


def _handle_result(value: Any, handle: str) -> Loaded:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, Path) or _is_array(value) or _is_loaded(value) or _is_pil(value):
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
                      resolve: Resolver | None = None, cache: Any = None) -> LoadedImage:
    """:func:`load_source`, then decode with :func:`~segzero_tool.images.load_image` (RGB uint8,
    ``max_pixels`` checked from the header; ``cache``: a
    :class:`~segzero_tool.image_cache.DecodedImageCache`, e.g. the pipeline's ``image_cache``, so that
    the same file or bytes are decoded once). Raises ``ImageSourceRejected`` or ``ImageLoadError``."""
    loaded = load_source(source, policy, resolve_handle=resolve_handle, transport=transport, resolve=resolve)
    from ..images import load_image

    return load_image(loaded, max_pixels=max_pixels, cache=cache)


async def aload_image_source(source: Source, policy: ImagePolicy, *, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                             resolve_handle: HandleResolver | None = None, client: httpx.AsyncClient | None = None,
                             resolve: Resolver | None = None, cache: Any = None) -> LoadedImage:
    """:func:`aload_source`, then :func:`~segzero_tool.images.load_image` in a worker thread (``cache``:
    as in :func:`load_image_source`)."""
    import anyio

    loaded = await aload_source(source, policy, resolve_handle=resolve_handle, client=client, resolve=resolve)
    from ..images import load_image

    return await anyio.to_thread.run_sync(lambda: load_image(loaded, max_pixels=max_pixels, cache=cache))
