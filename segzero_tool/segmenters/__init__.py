"""Segmenter backends: :class:`~segzero_tool.segmenters.base.Segmenter` and its implementations.

Backends are imported lazily by :mod:`segzero_tool.backends`; importing this package loads no model
library.
"""

from .base import ObjectPrompt, Segmenter, SegmenterOutput, image_key

__all__ = ["ObjectPrompt", "Segmenter", "SegmenterOutput", "image_key"]
