"""Loading the two models of :meth:`~segzero_tool.pipeline.SegZeroPipeline.from_pretrained`.

:func:`load_models` resolves every registry name, backend class and optional extra of both models
before it loads either (a typo in the segmenter's settings does not wait for the reasoner to load),
then loads them, naming each in the log and the progress reports (:func:`backend_label`).
"""

from __future__ import annotations

import logging
from typing import Any

from .backends import build_backend, resolve_reasoner_class, resolve_segmenter_class
from .errors import BackendError
from .progress import report
from .prompts import PromptFormat
from .reasoners.base import Reasoner
from .registry import get_preset, is_no_reasoner, resolve_model
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
        kw = {"device": reasoner_device or device, "dtype": dtype, **(reasoner_kwargs or {})}
        label = backend_label(reasoner_backend, entry.hub_id, rcls)
        logger.info("loading reasoner %s", label)
        report("loading", f"loading reasoner {label}")
        reasoner_obj = build_backend(rcls, entry.hub_id, kw)
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


__all__ = ["backend_label", "load_models"]
