"""Choosing a backend by short name or import path (``package.module:Class``).

Reasoner backends: ``transformers`` (in-process, the default), ``openai`` (any OpenAI-compatible
server, vLLM first of all) and ``vllm`` (vLLM in-process, optional extra). Segmenter backends: ``transformers``
(SAM2 via ``Sam2Model``, the default; a SAM 3 checkpoint given to it loads with
:class:`~segzero_tool.segmenters.transformers_sam3.TransformersSam3Segmenter`, see
:func:`build_backend`) and ``sam2`` (Meta's package, optional extra). Any other value
of the form ``package.module:Class`` imports that class, which must subclass
:class:`~segzero_tool.reasoners.base.Reasoner` or :class:`~segzero_tool.segmenters.base.Segmenter`.
A class with a ``from_pretrained(model, **kwargs)`` classmethod is built with it, otherwise with
``Class(**kwargs)``.
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import BackendError
from .reasoners.base import Reasoner
from .segmenters.base import Segmenter

REASONER_BACKENDS: dict[str, str] = {
    "transformers": "segzero_tool.reasoners.transformers:TransformersReasoner",
    "openai": "segzero_tool.reasoners.openai_compat:OpenAICompatReasoner",
    "vllm": "segzero_tool.reasoners.vllm_inprocess:VLLMReasoner",
}
SEGMENTER_BACKENDS: dict[str, str] = {
    "transformers": "segzero_tool.segmenters.transformers_sam2:TransformersSam2Segmenter",
    "sam2": "segzero_tool.segmenters.meta_sam2:MetaSam2Segmenter",
}


def import_object(path: str) -> Any:
    """Import ``package.module:attr`` (``package.module.attr`` is accepted too)."""
    if ":" in path:
        module_name, _, attr = path.partition(":")
    else:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise BackendError(f"bad import path {path!r}; use 'package.module:ClassName'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendError(f"cannot import module {module_name!r} for backend {path!r}: {exc}") from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise BackendError(f"module {module_name!r} has no attribute {attr!r} (backend {path!r})") from None
    return obj


def _resolve(spec: str, table: dict[str, str], base: type, kind: str) -> type:
    key = spec.strip()
    target = table.get(key.lower())
    if target is None:
        if ":" not in key and "." not in key:
            raise BackendError(
                f"unknown {kind} backend {spec!r}; choose one of: {', '.join(table)}, "
                "or give an import path 'package.module:ClassName'"
            )
        target = key
    cls = import_object(target)
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise BackendError(f"{target!r} is not a subclass of {base.__module__}.{base.__name__}")
    return cls


def resolve_reasoner_class(spec: str) -> type[Reasoner]:
    return _resolve(spec, REASONER_BACKENDS, Reasoner, "reasoner")


def resolve_segmenter_class(spec: str) -> type[Segmenter]:
    return _resolve(spec, SEGMENTER_BACKENDS, Segmenter, "segmenter")


#: The segmenter class that stands in for the default ``transformers`` one when the model is SAM 3.
SAM3_SEGMENTER = "segzero_tool.segmenters.transformers_sam3:TransformersSam3Segmenter"


def _sam3_instead(cls: type, model: str | None) -> type:
    """``TransformersSam3Segmenter`` when ``cls`` is the default ``transformers`` segmenter (SAM2) and
    ``model`` is a SAM 3 checkpoint (the ``sam3`` registry entry's hub id, or a folder / cached hub id
    whose ``config.json`` has a SAM 3 model type); else ``cls``."""
    if model is None or f"{cls.__module__}:{cls.__qualname__}" != SEGMENTER_BACKENDS["transformers"]:
        return cls
    from .segmenters.transformers_sam3 import is_sam3_checkpoint

    return import_object(SAM3_SEGMENTER) if is_sam3_checkpoint(model) else cls


def build_backend(cls: type, model: str | None, kwargs: dict[str, Any]) -> Any:
    """Instantiate a backend class via ``from_pretrained(model, **kwargs)`` or ``cls(**kwargs)``.

    The default segmenter backend (``transformers``, SAM2) given a SAM 3 checkpoint builds
    :class:`~segzero_tool.segmenters.transformers_sam3.TransformersSam3Segmenter` instead (same options).
    """
    cls = _sam3_instead(cls, model)
    factory = getattr(cls, "from_pretrained", None)
    if callable(factory) and model is not None:
        return factory(model, **kwargs)
    return cls(**kwargs)
