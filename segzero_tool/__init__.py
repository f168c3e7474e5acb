"""segzero-tool: segment by reasoning.

A vision-language reasoner (VisionReasoner / Seg-Zero, Qwen2.5-VL) reads the image and the query and
writes boxes and points; a frozen SAM2 turns them into masks. ``import segzero_tool`` is light: torch
and transformers load only when a model does.

>>> from segzero_tool import SegZeroPipeline
>>> pipe = SegZeroPipeline.from_pretrained()
>>> result = pipe.segment("photo.jpg", "What can I have if I'm thirsty?")
"""

from __future__ import annotations

from .errors import (
    BackendError,
    DeviceError,
    ImageLoadError,
    ImageTooLargeError,
    MissingDependencyError,
    ModelLoadError,
    QueryError,
    SegZeroError,
    UnknownModelError,
)
from .frame import DEFAULT_FRAME_SIZE, ReasoningFrame
from .images import LoadedImage, load_image
from .parsing import FrameObject, ParsedOutput, ParseStatus, parse_output
from .pipeline import SegZeroPipeline
from .prompts import PromptFormat, build_prompt
from .reasoners.base import Reasoner, ReasonerOutput, ReasonerRequest
from .registry import MODELS, PRESETS, resolve_model
from .result import SegmentationResult, SegmentedObject
from .segmenters.base import ObjectPrompt, Segmenter, SegmenterOutput

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
    "ObjectPrompt",
    "ParseStatus",
    "ParsedOutput",
    "PromptFormat",
    "QueryError",
    "Reasoner",
    "ReasonerOutput",
    "ReasonerRequest",
    "ReasoningFrame",
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
    "resolve_model",
]
