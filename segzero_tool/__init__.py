"""segzero-tool: segment by reasoning.

A vision-language reasoner (VisionReasoner / Seg-Zero, Qwen2.5-VL) reads the image and the query and
writes boxes and points; a frozen SAM2 turns them into masks. ``import segzero_tool`` is light: torch
and transformers load only when a model does.

>>> from segzero_tool import SegZeroPipeline
>>> pipe = SegZeroPipeline.from_pretrained()
>>> result = pipe.segment("photo.jpg", "What can I have if I'm thirsty?")
"""

from __future__ import annotations

from .lazy import lazy_exports

#: public name -> submodule that defines it (imported on first use, so that ``import segzero_tool``
#: stays light: no numpy, PIL, torch or transformers until a name that needs them is used)
_EXPORTS: dict[str, str] = {
    "BackendError": "errors",
    "DeviceError": "errors",
    "ImageLoadError": "errors",
    "ImageTooLargeError": "errors",
    "MissingDependencyError": "errors",
    "ModelLoadError": "errors",
    "NoReasonerError": "errors",
    "PromptError": "errors",
    "QueryError": "errors",
    "ResultExpired": "errors",
    "ResultHandleError": "errors",
    "ResultUnknown": "errors",
    "SegZeroError": "errors",
    "UnknownModelError": "errors",
    "DEFAULT_FRAME_SIZE": "frame",
    "ReasoningFrame": "frame",
    "ResultHandles": "handles",
    "LoadedImage": "images",
    "load_image": "images",
    "FrameObject": "parsing",
    "ParsedOutput": "parsing",
    "ParseStatus": "parsing",
    "parse_output": "parsing",
    "SegZeroPipeline": "pipeline",
    "PromptFormat": "prompts",
    "build_prompt": "prompts",
    "Reasoner": "reasoners.base",
    "ReasonerOutput": "reasoners.base",
    "ReasonerRequest": "reasoners.base",
    "MODELS": "registry",
    "PRESETS": "registry",
    "resolve_model": "registry",
    "SegmentationResult": "result",
    "SegmentedObject": "result",
    "ObjectPrompt": "segmenters.base",
    "Segmenter": "segmenters.base",
    "SegmenterOutput": "segmenters.base",
    "PromptObject": "steer",
    "parse_prompt_objects": "steer",
    "refine_object": "steer",
    "segment_by_prompts": "steer",
    "select_objects": "steer",
}

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_FRAME_SIZE",
    "MODELS",
    "PRESETS",
    "BackendError",
    "DeviceError",
    "FrameObject",
    "ImageLoadError",
    "ImageTooLargeError",
    "LoadedImage",
    "MissingDependencyError",
    "ModelLoadError",
    "NoReasonerError",
    "ObjectPrompt",
    "ParseStatus",
    "ParsedOutput",
    "PromptError",
    "PromptFormat",
    "PromptObject",
    "QueryError",
    "Reasoner",
    "ReasonerOutput",
    "ReasonerRequest",
    "ReasoningFrame",
    "ResultExpired",
    "ResultHandleError",
    "ResultHandles",
    "ResultUnknown",
    "SegZeroError",
    "SegZeroPipeline",
    "SegmentationResult",
    "SegmentedObject",
    "Segmenter",
    "SegmenterOutput",
    "UnknownModelError",
    "__version__",
    "build_prompt",
    "load_image",
    "parse_output",
    "parse_prompt_objects",
    "refine_object",
    "resolve_model",
    "segment_by_prompts",
    "select_objects",
]

__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
