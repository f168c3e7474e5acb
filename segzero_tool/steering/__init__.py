"""The calling agent steers the segmenter: prompts in, masks out; refine one object; keep some objects.

:mod:`.objects` checks the caller's JSON-like prompt objects; :mod:`.ops` runs the segmenter. The MCP
server, the LangChain tools and the CLI are adapters over these functions.

>>> from segzero_tool.steering import refine_object, segment_by_prompts, select_objects
>>> result = segment_by_prompts(segmenter, "photo.jpg", [{"box": [10, 20, 200, 240]}])
>>> better = refine_object(segmenter, result, 0, remove_points=[[120, 60]])
>>> final = select_objects(better, [0])
"""

from __future__ import annotations

from .objects import MAX_COORDINATE, MAX_LABEL_CHARS, MAX_POINTS, PromptObject, parse_prompt_objects
from .ops import DEFAULT_MAX_PROMPT_OBJECTS, PROMPTS_FORMAT, refine_object, segment_by_prompts, select_objects

__all__ = ["DEFAULT_MAX_PROMPT_OBJECTS", "MAX_COORDINATE", "MAX_LABEL_CHARS", "MAX_POINTS", "PROMPTS_FORMAT",
           "PromptObject", "parse_prompt_objects", "refine_object", "segment_by_prompts", "select_objects"]
