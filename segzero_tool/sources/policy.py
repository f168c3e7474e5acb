"""What the intake accepts and how it words refusals: :class:`ImagePolicy`, the shared type
aliases and limits, and the message helpers every other module of :mod:`segzero_tool.sources` uses."""

from __future__ import annotations

import math
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union

from ..errors import ImageSourceRejected

if TYPE_CHECKING:  # numpy and the image module are imported only when an image is decoded
    import numpy as np
    from PIL import Image

    from ..images import LoadedImage

SourceKind = Literal["path", "url", "data_url", "base64", "resource", "bytes", "pil", "array", "loaded"]
#: host name -> IP address strings (sync or async).
Resolver = Callable[[str], Awaitable[Sequence[str]] | Sequence[str]]
#: handle text (``segzero://...``) -> an image value (bytes, Path, PIL image, array, LoadedImage); sync or async.
HandleResolver = Callable[[str], Any]
Source = Union[str, os.PathLike, bytes, bytearray, memoryview, "Image.Image", "np.ndarray", "LoadedImage"]
Loaded = Union[bytes, Path, "Image.Image", "np.ndarray", "LoadedImage"]

_MAX_PATH_CHARS = 4096
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
