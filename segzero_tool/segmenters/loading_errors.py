"""The ``from_pretrained`` loading steps the transformers segmenters share (SAM2, SAM 3 tracker, SAM 3 concept).

* :func:`hub_access`: before anything is downloaded, how a hub id loads (:func:`segzero_tool.hub.check_hub_access`);
  for a gated model (``facebook/sam3``) an unreachable hub is reported as a :class:`~segzero_tool.errors.GatedModelError`
  that also says how to get access.
* :func:`load_pretrained`: run the backend's ``from_pretrained`` calls with its revision / ``local_files_only``
  keywords, progress bars as asked and the hub kept off for ``local_files_only=True``
  (:func:`segzero_tool.hub.files_only`), and turn what they raise into one typed error: a missing optional package
  into :class:`~segzero_tool.errors.MissingDependencyError`, the hub refusing a gated repository into
  :class:`~segzero_tool.errors.GatedModelError`, anything else that says the files are wrong or missing into
  :class:`~segzero_tool.errors.ModelLoadError` ("could not load NAME from WHERE: ...; HINT").

Each backend keeps its own wording (model name, role, hints); the hub helpers are looked up on
:mod:`segzero_tool.hub` at call time, so that tests patching them there see every backend use the patch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import HubUnreachableError, MissingDependencyError, ModelLoadError

#: What a failed ``from_pretrained`` raises when the files are wrong or missing (everything else propagates).
LOAD_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, RuntimeError, KeyError)


def hub_download_hint(source: str) -> str:
    """The advice for a hub id that did not load (the SAM2 and SAM 3 tracker backends)."""
    return (f"check the id and your network, or download it first (`hf download {source}`) and pass the folder; "
            "offline runs need HF_HUB_OFFLINE=1 and a filled cache")


def hub_access(
    source: str,
    *,
    what: str,
    revision: str | None,
    local_files_only: bool | None,
    known_gated: bool = False,
) -> bool | None:
    """:func:`segzero_tool.hub.check_hub_access` for the hub id ``source``; return its ``local_files_only``.

    Raises:
        GatedModelError: ``known_gated`` and the hub cannot be reached (the files are not cached).
        HubUnreachableError: otherwise, when the hub cannot be reached and the files are not cached.
    """
    from .. import hub

    try:
        return hub.check_hub_access(source, what=what, revision=revision, local_files_only=local_files_only)
    except HubUnreachableError as exc:
        if known_gated:  # say how to get access as well as how to bring the files here
            raise hub.gated_unavailable_error(exc.message, source, what=what) from exc
        raise


def load_pretrained(
    processor_cls: Any,
    model_cls: Any,
    *,
    source: str,
    folder: str | Path | None,
    dtype: Any,
    name: str,
    what: str,
    revision: str | None,
    local_files_only: bool | None,
    progress: bool,
    folder_hint: str,
    hub_hint: str,
    known_gated: bool = False,
    gated_errors: tuple[type[BaseException], ...] = (),
    errors: tuple[type[BaseException], ...] = LOAD_ERRORS,
    max_text: int | None = None,
) -> tuple[Any, Any]:
    """``(processor, model)``: ``processor_cls.from_pretrained(source)`` then ``model_cls.from_pretrained(source,
    dtype=dtype)`` (both with ``revision`` and ``local_files_only`` when given), with the errors they raise
    made into one typed error each.

    Args:
        processor_cls: the transformers processor class (``Sam2Processor``, ...).
        model_cls: the transformers model class (``Sam2Model``, ...).
        source: the hub id or folder, as given.
        folder: the local folder, ``None`` for a hub id.
        dtype: the model's torch dtype.
        name: the model in messages ("SAM2", "SAM 3").
        what: the model's role in gated-model messages ("segmenter", "SAM 3 concept model").
        revision: hub branch, tag or commit.
        local_files_only: ``True`` never touches the network; ``None`` leaves the transformers default.
        progress: show download / loading progress bars.
        folder_hint: the advice when a folder did not load.
        hub_hint: the advice when a hub id did not load.
        known_gated: ``source`` is a hub id known to be gated.
        gated_errors: for a hub id, the exceptions whose causes are searched for the hub refusing a gated
            repository (:func:`segzero_tool.hub.gated_error`); ``()``: none are.
        errors: the exceptions that become :class:`ModelLoadError` (the others propagate).
        max_text: fold the exception's text to one line of at most this many characters (``None``: as it is).

    Raises:
        MissingDependencyError: loading needs an optional package that is not installed.
        GatedModelError: the hub refused the gated repository, or a known-gated model is neither cached nor
            downloadable.
        ModelLoadError: loading raised one of ``errors``.
    """
    from .. import hub

    kwargs: dict[str, Any] = {}
    if revision is not None:
        kwargs["revision"] = revision
    if local_files_only is not None:
        kwargs["local_files_only"] = local_files_only
    where = f"folder {str(folder)!r}" if folder is not None else f"hub id {source!r}"
    try:
        with hub.progress_bars(progress), hub.files_only(local_files_only):
            processor = processor_cls.from_pretrained(source, **kwargs)
            model = model_cls.from_pretrained(source, dtype=dtype, **kwargs)
            return processor, model
    except ImportError as exc:
        raise MissingDependencyError(f"loading the {name} processor needs an optional package: {exc}") from exc
    except Exception as exc:  # transformers / huggingface_hub raise many kinds; each becomes one typed error
        if folder is None and isinstance(exc, gated_errors):
            refused = hub.gated_error(exc, source, what=what, known_gated=known_gated)
            if refused is not None:
                raise refused from exc
        if not isinstance(exc, errors):
            raise
        if (folder is None and known_gated and isinstance(exc, OSError)
                and not hub.in_hub_cache(source, revision=revision)):
            raise hub.gated_unavailable_error(f"{what} {source!r} could not be loaded from the local Hugging Face "
                                              f"cache ({type(exc).__name__})", source, what=what) from exc
        hint = folder_hint if folder is not None else hub_hint
        text = str(exc) if max_text is None else " ".join(str(exc).split())[:max_text]
        raise ModelLoadError(f"could not load {name} from {where}: {type(exc).__name__}: {text}; {hint}") from exc


__all__ = ["LOAD_ERRORS", "hub_access", "hub_download_hint", "load_pretrained"]
