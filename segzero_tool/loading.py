"""Loading the two models of :meth:`~segzero_tool.pipeline.SegZeroPipeline.from_pretrained`.

:func:`load_models` resolves every registry name, backend class and optional extra of both models
before it loads either (a typo in the segmenter's settings does not wait for the reasoner to load),
then loads them, naming each in the log and the progress reports (:func:`backend_label`).
:func:`resolve_verifier` and :func:`load_verifier` do the same for the self-check loop's verifier, a
second reasoner loaded by name like the first.
"""

from __future__ import annotations

import logging
from typing import Any

from .backends import build_backend, resolve_reasoner_class, resolve_segmenter_class
from .errors import BackendError, UnknownModelError
from .progress import report
from .prompts import PromptFormat
from .reasoners.base import Reasoner
from .registry import ModelEntry, get_preset, is_no_reasoner, resolve_model
from .segmenters.base import Segmenter

#: The log lines keep the pipeline's logger name (``INFO segzero_tool.pipeline: loading reasoner ...``),
#: which logging filters and the CLI's ``--verbose`` output have always shown.
logger = logging.getLogger("segzero_tool.pipeline")


def backend_label(backend: str, model: str, cls: type) -> str:
    """How a model being loaded is named in logs and progress: ``Ricky06662/VisionReasoner-7B
    (transformers backend)`` for built-in backends; a plugin by its own class, with the model
    argument it receives (``my_pkg.mod:MyReasoner (model argument: ...)``)."""
    if ":" not in backend and "." not in backend:
        return f"{model} ({backend} backend)"
    return f"{cls.__module__}:{cls.__qualname__} (model argument: {model})"


def _check_segmenter_extra(cls: type) -> None:
    """Raise :class:`MissingDependencyError` now when the segmenter backend's optional package
    (Meta's ``sam2`` for the ``sam2`` backend) is not installed."""
    if cls.__module__ == "segzero_tool.segmenters.meta_sam2":
        from .segmenters.meta_sam2 import import_sam2

        import_sam2()


def load_models(
    reasoner: str | Reasoner | None,
    segmenter: str | Segmenter | None,
    *,
    preset: str | None,
    reasoner_backend: str,
    segmenter_backend: str,
    device: str | None,
    dtype: Any,
    reasoner_device: str | None,
    segmenter_device: str | None,
    reasoner_kwargs: dict[str, Any] | None,
    segmenter_kwargs: dict[str, Any] | None,
    prompt_format: str | PromptFormat | None,
    max_new_tokens: int | None,
    with_segmenter: bool,
) -> tuple[Reasoner | None, Segmenter | None, str | PromptFormat | None, int | None]:
    """The models of :meth:`~segzero_tool.pipeline.SegZeroPipeline.from_pretrained` (same arguments).

    ``reasoner="none"`` (:data:`~segzero_tool.registry.NO_REASONER`) loads no reasoner (``None`` is
    returned for it): only the segmenter is resolved and loaded.

    Returns:
        ``(reasoner, segmenter, prompt_format, max_new_tokens)``: the loaded (or given) models, and the
        prompt format and token budget to use (those given, else the registry entry's of a reasoner
        loaded here; ``None`` leaves the pipeline's default).
    """
    p = get_preset(preset or "default")
    reasoner = p.reasoner if reasoner is None else reasoner
    segmenter = p.segmenter if segmenter is None else segmenter
    fmt = prompt_format
    budget = max_new_tokens
    # Resolve every name, backend class and optional extra of both models before loading
    # either, so that a typo in the segmenter's settings does not wait for the reasoner to load.
    entry = rcls = sentry = scls = None
    no_reasoner = is_no_reasoner(reasoner)
    if no_reasoner and not with_segmenter:
        raise BackendError("nothing to load: reasoner 'none' without a segmenter; load a segmenter "
                           "(a pipeline without a reasoner segments from prompts) or name a reasoner")
    if not isinstance(reasoner, Reasoner) and not no_reasoner:
        entry = resolve_model(reasoner, "reasoner")
        rcls = resolve_reasoner_class(reasoner_backend)
    if with_segmenter and not isinstance(segmenter, Segmenter):
        sentry = resolve_model(segmenter, "segmenter")
        scls = resolve_segmenter_class(segmenter_backend)
        _check_segmenter_extra(scls)
    reasoner_obj: Reasoner | None
    if no_reasoner:
        reasoner_obj = None
        logger.info("no reasoner: segmenting from prompts only")
    elif isinstance(reasoner, Reasoner):
        reasoner_obj = reasoner
    else:
        assert entry is not None and rcls is not None
        fmt = fmt or entry.prompt_format
        budget = budget or entry.max_new_tokens
        reasoner_obj = _build_reasoner(entry, rcls, reasoner_backend, reasoner_device or device, dtype,
                                       reasoner_kwargs, "reasoner")
    segmenter_obj: Segmenter | None
    if not with_segmenter:
        segmenter_obj = None
    elif isinstance(segmenter, Segmenter):
        segmenter_obj = segmenter
    else:
        assert sentry is not None and scls is not None
        kw = {"device": segmenter_device or device, **(segmenter_kwargs or {})}
        label = backend_label(segmenter_backend, sentry.hub_id, scls)
        logger.info("loading segmenter %s", label)
        report("loading", f"loading segmenter {label}")
        segmenter_obj = build_backend(scls, sentry.hub_id, kw)
    return reasoner_obj, segmenter_obj, fmt, budget


def _build_reasoner(entry: ModelEntry, cls: type[Reasoner], backend: str, device: str | None, dtype: Any,
                    kwargs: dict[str, Any] | None, role: str) -> Reasoner:
    kw = {"device": device, "dtype": dtype, **(kwargs or {})}
    label = backend_label(backend, entry.hub_id, cls)
    logger.info("loading %s %s", role, label)
    report("loading", f"loading {role} {label}")
    return build_backend(cls, entry.hub_id, kw)


#: Backends whose ``structured_outputs`` would force the segmentation answer's shape (``auto``: a regex
#: on vLLM) onto the verifier, whose answer is ``{"keep": [...]}`` or ``{"retry": "..."}``: a verifier
#: loaded with them gets ``structured_outputs="off"`` unless its kwargs say otherwise.
_STRUCTURED_BACKENDS = frozenset({"openai", "vllm"})


def resolve_verifier(verifier: str, backend: str | None) -> tuple[ModelEntry, type[Reasoner]]:
    """The registry entry and backend class of a verifier named by registry name, hub id or folder,
    checked without loading anything (so that a typo fails before the models load).

    Raises:
        UnknownModelError: the name is not a reasoner (the message starts with ``verifier``).
        BackendError: an unknown backend or bad import path.
    """
    if is_no_reasoner(verifier):
        raise BackendError("verifier 'none' is not a model; omit the verifier to use the reasoner")
    try:
        entry = resolve_model(verifier, "reasoner")
    except UnknownModelError as exc:
        raise UnknownModelError(f"verifier: {exc}") from None
    return entry, resolve_reasoner_class(backend or "transformers")


def load_verifier(
    verifier: str,
    *,
    backend: str | None = None,
    device: str | None = None,
    dtype: Any = "auto",
    kwargs: dict[str, Any] | None = None,
    resolved: tuple[ModelEntry, type[Reasoner]] | None = None,
) -> Reasoner:
    """Load the self-check loop's verifier: a reasoner named by registry name, hub id or local folder,
    with ``backend`` (default ``transformers``; ``openai``, ``vllm`` or ``package.module:Class``), on
    ``device`` / ``dtype``, with the backend's ``kwargs`` (e.g. ``base_url`` for ``openai``).

    ``resolved``: what :func:`resolve_verifier` returned for these arguments (not resolved again).
    """
    backend = backend or "transformers"
    entry, cls = resolved if resolved is not None else resolve_verifier(verifier, backend)
    kw = dict(kwargs or {})
    if backend.strip().lower() in _STRUCTURED_BACKENDS:
        kw.setdefault("structured_outputs", "off")
    return _build_reasoner(entry, cls, backend, device, dtype, kw, "verifier")


__all__ = ["backend_label", "load_models", "load_verifier", "resolve_verifier"]
