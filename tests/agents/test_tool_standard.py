"""The ``langchain-tests`` standard suites for ``segment_by_reasoning``.

* unit: a scripted reasoner and the exact-mask box segmenter (no model weights);
* integration: the tiny random Qwen2.5-VL + tiny random SAM2 loaded through ``from_pretrained``
  (random weights write garbage, so the tool must return a well-formed "nothing found" result),
  and the scripted reasoner + tiny SAM2 with the overlay image in the content (objects found).

The suites read their configuration from properties, so the models are built by a class-scoped
fixture (reusing the session's ``tiny_models``) that stores the pipeline on the class.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langchain_tests")

from langchain_tests.integration_tests import ToolsIntegrationTests  # noqa: E402
from langchain_tests.unit_tests import ToolsUnitTests  # noqa: E402
from scripted import BoxSegmenter, ScriptedReasoner  # noqa: E402

from segzero_tool import ParseStatus, SegZeroPipeline  # noqa: E402
from segzero_tool.agents import SegmentByReasoningTool  # noqa: E402

pytestmark = pytest.mark.anyio

COFFEE = Path(__file__).resolve().parents[2] / "examples" / "coffee.png"
ANSWER = ('<think>The cup holds coffee.</think><answer>[{"bbox_2d": [168,126,588,672], "point_2d": [378,420]}, '
          '{"bbox_2d": [600,700,800,830], "point_2d": [700,760]}]</answer>')
EXAMPLE = {"image": str(COFFEE), "query": "What can I have if I'm thirsty?"}


class TestSegmentToolUnit(ToolsUnitTests):
    @property
    def tool_constructor(self) -> type[SegmentByReasoningTool]:
        return SegmentByReasoningTool

    @property
    def tool_constructor_params(self) -> dict[str, Any]:
        return {"pipeline": SegZeroPipeline(ScriptedReasoner(ANSWER), BoxSegmenter())}

    @property
    def tool_invoke_params_example(self) -> dict[str, Any]:
        return {**EXAMPLE, "max_objects": 3}


class _TinyModelTools:
    """Builds ``pipeline`` once per class from the session's tiny model folders."""

    pipeline: SegZeroPipeline | None = None
    tool_kwargs: dict[str, Any] = {}

    @staticmethod
    def build(models: dict[str, Path]) -> SegZeroPipeline:
        raise NotImplementedError

    @pytest.fixture(autouse=True, scope="class")
    @classmethod
    def _tiny_pipeline(cls, tiny_models: dict[str, Path]) -> None:
        cls.pipeline = cls.build(tiny_models)

    @property
    def tool_constructor(self) -> type[SegmentByReasoningTool]:
        return SegmentByReasoningTool

    @property
    def tool_constructor_params(self) -> dict[str, Any]:
        return {"pipeline": self.pipeline, **self.tool_kwargs}

    @property
    def tool_invoke_params_example(self) -> dict[str, Any]:
        return dict(EXAMPLE)


@pytest.mark.slow
class TestSegmentToolIntegrationTinyModels(_TinyModelTools, ToolsIntegrationTests):
    """Random tiny Qwen2.5-VL + random tiny SAM2: garbage text, so a well-formed empty result."""

    @staticmethod
    def build(models: dict[str, Path]) -> SegZeroPipeline:
        return SegZeroPipeline.from_pretrained(str(models["reasoner"]), str(models["segmenter"]), device="cpu",
                                               max_new_tokens=8)

    def test_nothing_found_is_well_formed(self, tool: SegmentByReasoningTool) -> None:
        msg = tool.invoke({"name": tool.name, "args": EXAMPLE, "id": "1", "type": "tool_call"})
        assert msg.status == "success" and msg.artifact.objects == []
        assert msg.artifact.parse_status is not ParseStatus.OK
        assert msg.content.startswith("No object found for the query")


@pytest.mark.slow
class TestSegmentToolIntegrationScripted(_TinyModelTools, ToolsIntegrationTests):
    """Scripted reasoner + tiny SAM2, with the overlay as an image block: list content, objects found."""

    tool_kwargs = {"include_image": True, "overlay_max_side": 128}

    @staticmethod
    def build(models: dict[str, Path]) -> SegZeroPipeline:
        return SegZeroPipeline.from_pretrained(ScriptedReasoner(ANSWER), str(models["segmenter"]), device="cpu")

    def test_objects_and_image_block(self, tool: SegmentByReasoningTool) -> None:
        msg = tool.invoke({"name": tool.name, "args": EXAMPLE, "id": "1", "type": "tool_call"})
        text, image = msg.content
        assert text["text"].startswith("Found 2 object(s)") and image["type"] == "image"
        assert msg.artifact.masks.shape == (2, 400, 600)
