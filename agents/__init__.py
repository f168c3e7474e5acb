"""LangChain tool and LangGraph agents for segzero-tool (``segzero_tool.agents``).

* :class:`SegmentByReasoningTool` (``segment_by_reasoning``): the pipeline as a LangChain tool
  (``agents/tool.py``; needs the ``langchain`` extra);
* :func:`object_geometry` and friends: grasp point, orientation, box, area and 3-D point of a mask
  (``agents/geometry.py``; numpy and OpenCV only).

Names are imported lazily, so ``import segzero_tool.agents`` pulls in neither LangChain nor torch.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> submodule that defines it
_EXPORTS: dict[str, str] = {
    "SegmentArgs": "tool",
    "SegmentByReasoningTool": "tool",
    "summarize_result": "tool",
    "decode_base64_image": "tool",
    "Intrinsics": "geometry",
    "ObjectGeometry": "geometry",
    "object_geometry": "geometry",
    "result_geometry": "geometry",
    "deproject": "geometry",
    "build_segmentation_agent": "chat_agent",
    "build_planner_graph": "planner",
    "TaskSpec": "planner",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
