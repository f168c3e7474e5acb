"""Images sent as text: decode a ``data:`` URL or bare base64 under the policy's size limit
(:func:`decode_base64_image`)."""

from __future__ import annotations

import base64
import binascii
import math
import re

from ..errors import ImageSourceRejected
from .policy import ImagePolicy, _policy_for

_BASE64_RE = re.compile(r"^[A-Za-z0-9+/_\-]+={0,2}$")
_WHITESPACE_RE = re.compile(r"\s+")


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
