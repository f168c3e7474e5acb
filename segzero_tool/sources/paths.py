"""Local image paths: resolve ``~``, ``..`` and symlinks, then keep every answer inside the allowed
roots, so that nothing about files outside them is observable (:func:`resolve_local_path`)."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..errors import ImageSourceRejected
from .policy import _HINT_SOURCES, _MAX_PATH_CHARS, ImagePolicy, _check_policy, _reject_type


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
