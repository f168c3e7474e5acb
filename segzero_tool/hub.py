"""Shared loading helpers for hub ids and local model folders (used by every backend)."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from .errors import GatedModelError, HubUnreachableError, ModelLoadError

logger = logging.getLogger(__name__)

#: Seconds the reachability probe waits for the hub to answer (name lookup, connect and the first
#: response together); ``SEGZERO_HUB_PROBE_TIMEOUT`` overrides it.
HUB_PROBE_TIMEOUT_S = 5.0
#: Seconds a probe's verdict is reused (the reasoner and the segmenter of one run probe once).
_PROBE_TTL_S = 60.0
_probe_lock = threading.Lock()
_probe_cache: dict[str, tuple[float, str | None]] = {}


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


def hub_endpoint() -> str:
    """The Hugging Face Hub endpoint downloads go to (``HF_ENDPOINT``, default https://huggingface.co)."""
    from huggingface_hub import constants

    return constants.ENDPOINT


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) forbids downloads."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _probe_timeout() -> float:
    raw = os.environ.get("SEGZERO_HUB_PROBE_TIMEOUT", "")
    try:
        value = float(raw)
    except ValueError:
        return HUB_PROBE_TIMEOUT_S
    return value if value > 0 else HUB_PROBE_TIMEOUT_S


def probe_hub(repo_id: str, filename: str = "config.json", *, revision: str | None = None,
              timeout: float | None = None) -> str | None:
    """Ask the hub for ``filename`` of ``repo_id`` the way a download starts, within ``timeout`` seconds.

    One ``HEAD`` request for the file's ``resolve`` URL through huggingface_hub's own client, so the
    proxies and certificates of downloads apply (no token is sent). The whole probe, name lookup included, runs in a daemon
    thread, so a resolver or a route that hangs costs ``timeout`` seconds, not minutes. A success,
    a redirect, or an error the hub itself signs (``X-Error-Code``, 401, 403: a missing repository
    or file, a gated model) count as reachable: the download then reports those in its own words.
    A failed connection is remembered for a minute per endpoint.

    Returns:
        ``None`` when the hub answered, else the reason in a few words.
    """
    endpoint = hub_endpoint().rstrip("/")
    timeout = _probe_timeout() if timeout is None else timeout
    with _probe_lock:
        hit = _probe_cache.get(endpoint)
        if hit is not None and time.monotonic() - hit[0] < _PROBE_TTL_S:
            return hit[1]
    url = f"{endpoint}/{repo_id}/resolve/{quote(revision or 'main', safe='')}/{filename}"
    outcome: list[tuple[str | None, bool]] = []  # (reason, whether the connection itself failed)

    def attempt() -> None:
        try:
            response = _head(url, timeout)
        except Exception as exc:  # httpx, ssl and socket errors: all mean "not reachable"
            outcome.append((_reason(exc, timeout), True))
            return
        signed = any(h.lower().startswith("x-error-") for h in response.headers)
        if response.status_code < 400 or response.status_code in (401, 403) or signed:
            outcome.append((None, False))
        else:
            outcome.append((f"HTTP {response.status_code} without the hub's error headers: something "
                            "else answered", False))

    worker = threading.Thread(target=attempt, name="segzero-hub-probe", daemon=True)
    worker.start()
    worker.join(timeout + 0.5)
    reason, failed = outcome[0] if outcome else (f"no answer within {timeout:g} s", True)
    if failed:
        with _probe_lock:
            _probe_cache[endpoint] = (time.monotonic(), reason)
    return reason


def _head(url: str, timeout: float) -> Any:
    """``HEAD url`` through huggingface_hub's own HTTP client (its proxies, certificates and any
    ``set_client_factory`` of the user's), without following redirects; plain httpx when that
    client is of an unknown kind."""
    try:
        from huggingface_hub.utils import get_session

        session = get_session()
    except Exception:
        session = None
    if session is not None and hasattr(session, "follow_redirects"):  # httpx / httpx2 (huggingface_hub >= 1)
        return session.head(url, timeout=timeout, follow_redirects=False)
    if session is not None and hasattr(session, "mount"):  # requests (huggingface_hub 0.x)
        return session.head(url, timeout=timeout, allow_redirects=False)
    import httpx

    with httpx.Client(timeout=timeout, trust_env=True, follow_redirects=False) as client:
        return client.head(url)


def _reason(exc: BaseException, timeout: float) -> str:
    if "timeout" in type(exc).__name__.lower() or isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s"
    text = str(exc) or exc.__class__.__name__
    cause = exc.__cause__ or exc.__context__
    while cause is not None and not str(cause):
        cause = cause.__cause__ or cause.__context__
    if cause is not None and str(cause) != text:
        text = str(cause)
    lowered = text.lower()
    if "name or service not known" in lowered or "nodename nor servname" in lowered or "getaddrinfo" in lowered \
            or "temporary failure in name resolution" in lowered:
        return "host name not found"
    if "connection refused" in lowered:
        return "connection refused"
    return " ".join(text.split())[:160]


def in_hub_cache(repo_id: str, filename: str = "config.json", *, revision: str | None = None) -> bool:
    """True when ``filename`` of ``repo_id`` (at ``revision``) is in the local Hugging Face cache
    (``HF_HOME`` / ``HF_HUB_CACHE``)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, filename, revision=revision)
    except Exception:  # an id the hub would refuse anyway (bad characters): not cached
        return False
    return isinstance(found, str)


def hub_cache_dir() -> str:
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def check_hub_access(
    source: str,
    *,
    what: str,
    revision: str | None = None,
    local_files_only: bool | None = None,
    filename: str = "config.json",
) -> bool | None:
    """Decide how a backend loads ``source`` before any download starts; return its ``local_files_only``.

    A local folder, an explicit ``local_files_only=True`` or a reachable hub change nothing. When
    ``HF_HUB_OFFLINE`` is set or the hub does not answer within :data:`HUB_PROBE_TIMEOUT_S`, a model
    in the local cache loads from there (``True``: no request is made, so no retry loop runs), and
    one that is not raises at once instead of after minutes of retries.

    Args:
        source: the hub id (``owner/name``) or folder the backend was given.
        what: the model's role, for messages ("reasoner", "segmenter").
        revision: hub branch, tag or commit.
        local_files_only: the caller's own setting.
        filename: a file the repository must hold (``config.json`` for transformers checkpoints).

    Raises:
        HubUnreachableError: the files must come from the hub and the hub cannot be reached.
    """
    if local_files_only or os.path.isdir(os.path.expanduser(source)):
        return local_files_only
    cached = in_hub_cache(source, filename, revision=revision)
    if hub_offline():
        if cached:
            return True
        raise HubUnreachableError(
            f"{what} {source!r} is not in the local Hugging Face cache ({hub_cache_dir()}) and HF_HUB_OFFLINE "
            "is set, so it cannot be downloaded",
            model_id=source, offline=True,
        )
    if local_files_only is False:  # the caller insists on asking the hub
        return False
    reason = probe_hub(source, filename, revision=revision)
    if reason is None:
        return local_files_only
    if cached:
        logger.info("the Hugging Face Hub (%s) is unreachable: %s; loading %s %s from the local cache",
                    hub_endpoint(), reason, what, source)
        return True
    raise HubUnreachableError(
        f"cannot download {what} {source!r}: the Hugging Face Hub at {hub_endpoint()} is unreachable "
        f"({reason}) and the model is not in the local cache ({hub_cache_dir()})",
        model_id=source,
    )


def _gated_advice(model_id: str) -> str:
    return (f"request access at https://huggingface.co/{model_id} and log in with `hf auth login` (or set "
            "HF_TOKEN to a token of the account that has access)")


def gated_error(exc: BaseException, model_id: str, *, what: str, known_gated: bool = False) -> GatedModelError | None:
    """The one-line :class:`GatedModelError` for a load that failed because the hub refused a gated
    repository, else ``None``.

    ``exc`` and every exception it was raised from are looked at (transformers wraps huggingface_hub's
    errors in ``OSError``): a ``GatedRepoError`` always counts; with ``known_gated`` (the caller knows
    ``model_id`` is gated, e.g. ``facebook/sam3``) so does any other 401 / 403 ``HfHubHTTPError`` and
    transformers' "gated repo" message.
    """
    try:
        from huggingface_hub.errors import GatedRepoError, HfHubHTTPError
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
        return None
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not e for e in chain):
        chain.append(current)
        current = current.__cause__ or current.__context__
    http = [e for e in chain if isinstance(e, HfHubHTTPError)]
    status = getattr(getattr(http[0], "response", None), "status_code", None) if http else None
    refused = any(isinstance(e, GatedRepoError) for e in chain) or (known_gated and (
        status in (401, 403) or any("gated repo" in str(e).lower() for e in chain)))
    if not refused:
        return None
    reason = ("this machine is not logged in" if status == 401
              else "the token in use has no access to it" if status == 403 else "access was refused")
    code = f" (HTTP {status})" if status in (401, 403) else ""
    return GatedModelError(
        f"{what} {model_id!r} is a gated model on the Hugging Face Hub and {reason}{code}: {_gated_advice(model_id)}",
        model_id=model_id,
    )


def gated_unavailable_error(message: str, model_id: str, *, what: str) -> GatedModelError:
    """One line for a gated model whose files must come from the hub when they cannot (the hub is
    unreachable, ``HF_HUB_OFFLINE`` or ``local_files_only`` is set) and are not cached: ``message``
    (what happened, e.g. a :class:`HubUnreachableError`'s ``message``), how to get access, and how to
    bring the files here."""
    return GatedModelError(
        f"{' '.join(message.split())}; {what} {model_id!r} is a gated model: {_gated_advice(model_id)}, "
        f"then download it where the hub is reachable (`hf download {model_id} --local-dir DIR`) and pass "
        "the folder",
        model_id=model_id,
    )


_offline_lock = threading.Lock()
_offline_depth = 0
_offline_saved = False


@contextlib.contextmanager
def files_only(local_files_only: bool | None) -> Iterator[None]:
    """While loading with ``local_files_only=True``, keep every hub request off (huggingface_hub's
    offline mode), not only those that get the flag: transformers still asks the hub for an
    ``adapter_config.json``, and with the hub down each such request costs half a minute of retries.
    Process-wide for the duration of the load; nesting and concurrent loads are counted."""
    global _offline_depth, _offline_saved
    if not local_files_only:
        yield
        return
    from huggingface_hub import constants

    with _offline_lock:
        if _offline_depth == 0:
            _offline_saved = constants.HF_HUB_OFFLINE
            constants.HF_HUB_OFFLINE = True
        _offline_depth += 1
    try:
        yield
    finally:
        with _offline_lock:
            _offline_depth -= 1
            if _offline_depth == 0:
                constants.HF_HUB_OFFLINE = _offline_saved
