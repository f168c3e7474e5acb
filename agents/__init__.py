"""LangChain tool and LangGraph agents for segzero-tool (``segzero_tool.agents``).

* :class:`SegmentByReasoningTool` (``segment_by_reasoning``): the pipeline as a LangChain tool
  (``agents/tool.py``; needs the ``langchain`` extra);
* :func:`make_steering_tools`: ``segment_by_prompts``, ``refine_object``, ``inspect_result`` and
  ``select_objects`` sharing one store of live results with ``segment_by_reasoning`` (``agents/steering.py``);
* :func:`make_phrase_tool` (``segment_phrase``): every instance of a noun phrase with SAM 3, in the same
  store (``agents/phrase.py``);
* :class:`TrackByReasoningTool` / :func:`make_track_tool` (``track_by_reasoning``): the objects a query finds,
  followed through a video's frames (``agents/track.py``; needs the ``video`` extra);
* :func:`object_geometry` and friends: grasp point, orientation, box, area and 3-D point of a mask
  (``agents/geometry.py``; numpy and OpenCV only).

Names are imported lazily, so ``import segzero_tool.agents`` pulls in neither LangChain nor torch.
"""

from __future__ import annotations

from segzero_tool.lazy import lazy_exports

#: public name -> submodule that defines it
_EXPORTS: dict[str, str] = {
    "SegmentArgs": "tool",
    "SegmentByReasoningTool": "tool",
    "summarize_result": "tool",
    "decode_base64_image": "tool",
    "SegmentByPromptsTool": "steering",
    "RefineObjectTool": "steering",
    "InspectResultTool": "steering",
    "SelectObjectsTool": "steering",
    "make_steering_tools": "steering",
    "new_result_store": "steering",
    "SegmentPhraseTool": "phrase",
    "make_phrase_tool": "phrase",
    "TrackByReasoningTool": "track",
    "make_track_tool": "track",
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

__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
