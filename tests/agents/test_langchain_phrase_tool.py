"""The LangChain ``segment_phrase`` tool (issue #14): every instance of a phrase with a scripted concept
model, its result_id taken by inspect_result / select_objects / refine_object of the same store, the overlay
image block, bad input as a tool error (never a traceback), and the tiny random SAM 3 end to end."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

pytest.importorskip("langchain_core")

from langchain_core.messages import ToolMessage  # noqa: E402
from scripted import BoxSegmenter  # noqa: E402

from segzero_tool import SegZeroPipeline  # noqa: E402
from segzero_tool.agents import SegmentPhraseTool, make_phrase_tool, make_steering_tools, new_result_store  # noqa: E402
from segzero_tool.result import SegmentationResult  # noqa: E402
from segzero_tool.segmenters.concept import ConceptInstance, ConceptSegmenter  # noqa: E402

RID = re.compile(r"result_id (r-[0-9a-f]{16})")


class ScriptedConcept(ConceptSegmenter):
    """Three cups on any image (a test double through the public class)."""

    model_id = "scripted-concept"

    def find(self, image, phrase, *, threshold=0.5, mask_threshold=0.5, max_instances=None):
        h, w = image.shape[:2]
        out = []
        for box, score in (((10, 20, 101, 121), 0.6), ((200, 100, 301, 201), 0.9), ((400, 50, 451, 91), 0.4)):
            m = np.zeros((h, w), bool)
            m[box[1]:box[3], box[0]:box[2]] = True
            out.append(ConceptInstance(box=box, score=score, mask=m))
        return out


def call(tool, **args: Any) -> ToolMessage:
    message = tool.invoke({"type": "tool_call", "id": "call_1", "name": tool.name, "args": args})
    assert isinstance(message, ToolMessage)
    return message


def rid_of(message: ToolMessage) -> str:
    text = message.content if isinstance(message.content, str) else message.content[0]["text"]
    return RID.search(text).group(1)


@pytest.fixture
def tools():
    store = new_result_store()
    pipe = SegZeroPipeline(None, BoxSegmenter())
    return [make_phrase_tool(ScriptedConcept(), handles=store, pipeline=pipe), *make_steering_tools(pipe, handles=store)]


def test_schema_and_description(tools):
    phrase = tools[0]
    assert isinstance(phrase, SegmentPhraseTool) and phrase.name == "segment_phrase"
    schema = phrase.tool_call_schema.model_json_schema()
    assert set(schema["properties"]) == {"image", "phrase", "threshold", "max_instances"}
    assert schema["required"] == ["image", "phrase"]
    assert "inspect_result" in phrase.description and "select_objects" in phrase.description
    assert "http" not in schema["properties"]["image"]["description"]
    with_urls = make_phrase_tool(ScriptedConcept(), allow_urls=True)
    assert "http(s) URL" in with_urls.tool_call_schema.model_json_schema()["properties"]["image"]["description"]


def test_phrase_then_inspect_select_refine(tools, coffee):
    phrase, prompts, refine, inspect, select = tools
    first = call(phrase, image=str(coffee), phrase="cup")
    assert first.status == "success", first.content
    result = first.artifact
    assert isinstance(result, SegmentationResult) and result.prompt_format == "phrase" and result.query == "cup"
    assert [o.box for o in result.objects] == [(200, 100, 300, 200), (10, 20, 100, 120)]
    rid = rid_of(first)
    assert "2 object" in first.content or "#1" in first.content

    seen = call(inspect, result_id=rid)
    assert seen.status == "success" and seen.artifact is result
    kept = call(select, result_id=rid, indices=[1])
    assert [o.box for o in kept.artifact.objects] == [(10, 20, 100, 120)]
    better = call(refine, result_id=rid, index=0, add_points=[[250, 150]])
    assert better.status == "success" and better.artifact.objects[0].points == ((250, 150),)

    again = call(phrase, image=rid, phrase="cup", threshold=0.3, max_instances=2)  # the image reused by id
    assert again.artifact.image is result.image and len(again.artifact.objects) == 2
    assert "only the best 2" in again.content
    none = call(phrase, image=str(coffee), phrase="cup", threshold=0.95)
    assert none.status == "success" and none.artifact.objects == [] and "lower threshold" in none.content


def test_include_image_puts_the_overlay_in(coffee):
    tool = make_phrase_tool(ScriptedConcept(), include_image=True)
    text, image = call(tool, image=str(coffee), phrase="cup").content
    assert text["type"] == "text" and image["type"] == "image" and image["mime_type"] == "image/jpeg"


@pytest.mark.parametrize(("args", "message"), [
    ({"image": "COFFEE", "phrase": "  "}, "phrase is empty"),
    ({"image": "COFFEE", "phrase": "x" * 201}, "at most 200 characters"),
    ({"image": "COFFEE", "phrase": "cup", "threshold": 3}, "threshold must be a number from 0 to 1"),
    ({"image": "COFFEE", "phrase": "cup", "max_instances": 0}, "max_instances must be a whole number"),
    ({"image": "COFFEE", "phrase": "cup", "threshold": "high"}, "Invalid arguments for segment_phrase"),
    ({"image": "/etc/passwd", "phrase": "cup"}, "outside the folders"),
    ({"image": "r-0123456789abcdef", "phrase": "cup"}, "unknown result id"),
    ({"image": "", "phrase": "cup"}, "`image` is empty"),
])
def test_bad_input_is_a_tool_error_not_a_traceback(tools, coffee, args, message):
    args = {k: (str(coffee) if v == "COFFEE" else v) for k, v in args.items()}
    msg = call(tools[0], **args)
    assert msg.status == "error" and message in msg.content, msg.content
    assert "Traceback" not in msg.content


def test_concept_must_be_a_concept_model():
    with pytest.raises(ValueError, match="concept must be a concept segmenter"):
        make_phrase_tool(object())


def test_tiny_sam3_end_to_end(tmp_path, coffee):
    from segzero_tool.segmenters.concept import Sam3ConceptSegmenter
    from segzero_tool.testing.tiny_sam3_concept import build_tiny_sam3_concept

    model = Sam3ConceptSegmenter.from_pretrained(str(build_tiny_sam3_concept(tmp_path / "sam3")), device="cpu",
                                                 progress=False)
    msg = call(make_phrase_tool(model, max_instances_cap=3), image=str(coffee), phrase="coffee cup", threshold=0.0)
    assert msg.status == "success", msg.content
    assert len(msg.artifact.objects) == 3 and msg.artifact.segmenter == model.model_id
