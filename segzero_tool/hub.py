"""Shared loading helpers for hub ids and local model folders (used by every backend)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from .errors import ModelLoadError


def looks_like_path(text: str) -> bool:
    """True for strings that can only be a path: hub ids are ``name`` or ``owner/name``."""
    return (
        os.path.isabs(text)
        or text.startswith((".", "~", "\\"))
        or text.count("/") > 1
        or "\\" in text
        or text.endswith("/")
        or (len(text) > 1 and text[1] == ":")
    )


def local_folder(source: str | os.PathLike[str], *, what: str, file_hint: str, example_id: str) -> str | None:
    """Return the expanded folder for a local ``source``; ``None`` when it is a hub id.

    Args:
        source: a hub id or a folder.
        what: the model's role for messages ("reasoner", "SAM2 model").
        file_hint: what to pass instead when ``source`` is a file.
        example_id: a hub id to suggest.

    Raises:
        ModelLoadError: ``source`` is a file, or looks like a path but no such folder exists.
    """
    text = os.fspath(source)
    expanded = os.path.expanduser(text)
    if os.path.isdir(expanded):
        return expanded
    if os.path.exists(expanded):
        raise ModelLoadError(f"{what} path {text!r} is a file; {file_hint}")
    if looks_like_path(text):
        raise ModelLoadError(
            f"{what} folder {text!r} does not exist; check the path, or pass a Hugging Face Hub id "
            f"such as {example_id!r}"
        )
    return None


@contextlib.contextmanager
def progress_bars(enabled: bool) -> Iterator[None]:
    """Hide huggingface_hub's download bars and transformers' loading bars when ``enabled`` is False."""
    if enabled:
        yield
        return
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
    from transformers.utils import logging as hf_logging

    hub_was_disabled = are_progress_bars_disabled()
    tf_was_enabled = hf_logging.is_progress_bar_enabled()
    disable_progress_bars()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if not hub_was_disabled:
            enable_progress_bars()
        if tf_was_enabled:
            hf_logging.enable_progress_bar()
