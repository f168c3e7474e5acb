"""Where a video may come from, for the tools that take one by name (the MCP tool and the LangChain tool
``track_by_reasoning``): the image intake's rules (:class:`~segzero_tool.sources.ImagePolicy`) applied to
a video file or a folder of frames.

* a local path (or ``file://`` URL) must resolve (``~``, ``..``, symlinks) inside the policy's allowed
  roots, to a file (the video) or a folder (its frames); a path outside gets the same message whether it
  exists or not, as for images;
* an ``http(s)`` URL is downloaded only when the policy allows URLs, with the same checks and limits as an
  image download (public addresses unless ``allow_private_urls``, ``max_download_bytes``, the timeout),
  into a file of the caller's folder;
* ``data:`` URLs and base64 are not taken for videos (too large to pass as text).

Refusals are :class:`~segzero_tool.errors.ImageSourceRejected` whose message says what to send instead.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import ImageSourceRejected
from .paths import _expand_home, _inside_candidates, _path_text, _roots_text, _stat_kind
from .policy import _MAX_PATH_CHARS, ImagePolicy, _check_policy

#: File name suffixes kept for a downloaded video (the decoder also sniffs the content).
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi", ".mpg", ".mpeg", ".ogv", ".gif"})
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
_FORMS = "the path of a video file (MP4, WebM, MOV, ...) or of a folder of frames"


def is_video_url(source: object) -> bool:
    """Whether ``source`` is an ``http(s)`` URL (text)."""
    return isinstance(source, str) and source.strip()[:8].lower().startswith(("http://", "https://"))


def _reject_form(text: str, policy: ImagePolicy) -> None:
    scheme = _SCHEME_RE.match(text)
    name = scheme.group(1).lower() if scheme else ""
    if name == "data":
        raise ImageSourceRejected(f"a video cannot be sent as a data: URL or base64; pass {_FORMS} inside the "
                                  f"folders {policy.reader} may read")
    if scheme and len(name) > 1 and name != "file":  # one letter: a Windows drive
        raise ImageSourceRejected(f"{name}: URLs are not read as videos; pass {_FORMS}"
                                  + (", or an http(s) URL" if policy.allow_urls else ""))


def resolve_video_path(source: str | os.PathLike[str], policy: ImagePolicy) -> Path:
    """The video file or frame folder ``source`` names, checked against ``policy``'s allowed roots.

    Returns:
        The resolved path of an existing regular file or folder inside one of the roots.

    Raises:
        ImageSourceRejected: empty, NUL, too long, not a path (data: URL, base64, another scheme), outside
            every root (the same message whether or not it exists), missing, or neither file nor folder.
    """
    _check_policy(policy)
    text = _path_text(source) if not isinstance(source, str) else source.strip()
    if not text:
        raise ImageSourceRejected(f"the video is empty; pass {_FORMS}")
    if "\x00" in text:
        raise ImageSourceRejected(f"the video path contains a NUL character; pass {_FORMS}")
    _reject_form(text, policy)
    text = _path_text(text)  # file:// URLs become their path
    if len(text) > _MAX_PATH_CHARS:
        raise ImageSourceRejected(f"the video path is {len(text):,} characters long, longer than any file path; "
                                  f"pass {_FORMS}")
    if not policy.allowed_roots:
        raise ImageSourceRejected(f"{policy.reader} reads no local files (no allowed folders are configured); "
                                  f"{policy.roots_hint}")
    shown = repr(text)
    inside = _inside_candidates(text, policy)
    if not inside:
        raise ImageSourceRejected(f"{shown} is outside the folders {policy.reader} may read "
                                  f"({_roots_text(policy)}). Pass {_FORMS} inside one of them, or "
                                  f"{policy.roots_hint}.")
    kinds = [(c, _stat_kind(c)[0]) for c in inside]
    for candidate, kind in kinds:
        if kind in ("file", "dir"):
            return candidate
    if kinds[0][1] == "other":
        raise ImageSourceRejected(f"{shown} is neither a file nor a folder; pass {_FORMS}")
    cwd_note = "" if os.path.isabs(_expand_home(text)) else (
        f" Relative paths are resolved against {policy.reader}'s working directory and the allowed folders.")
    raise ImageSourceRejected(f"no such video file or folder: {shown} (looked for "
                              f"{', '.join(str(c) for c in inside)}); check the name, or list the folder first."
                              f"{cwd_note}")


def download_name(url: str) -> str:
    """A file name for a downloaded video: ``video`` plus the URL path's suffix when it is a video one."""
    try:
        suffix = Path(urlsplit(url.strip()).path).suffix.lower()
    except ValueError:
        suffix = ""
    return "video" + (suffix if suffix in VIDEO_SUFFIXES else ".mp4")


def _refuse_url(policy: ImagePolicy) -> None:
    if not policy.allow_urls:
        raise ImageSourceRejected(f"{policy.reader} does not download video URLs; pass {_FORMS} inside the "
                                  f"allowed folders, or {policy.urls_hint}")


def fetch_video(url: str, policy: ImagePolicy, folder: str | os.PathLike[str]) -> Path:
    """Download ``url`` under ``policy`` (the image download's checks and limits) into ``folder``."""
    from .net import fetch_url

    _refuse_url(policy)
    path = Path(folder) / download_name(url)
    path.write_bytes(fetch_url(url.strip(), policy))
    return path


async def afetch_video(url: str, policy: ImagePolicy, folder: str | os.PathLike[str]) -> Path:
    """:func:`fetch_video` for async callers (the download does not block the event loop)."""
    import anyio

    from .net import afetch_url

    _refuse_url(policy)
    data = await afetch_url(url.strip(), policy)
    path = Path(folder) / download_name(url)
    await anyio.to_thread.run_sync(path.write_bytes, data)
    return path


__all__ = ["VIDEO_SUFFIXES", "afetch_video", "download_name", "fetch_video", "is_video_url", "resolve_video_path"]
