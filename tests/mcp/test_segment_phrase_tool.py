"""The MCP tool ``segment_phrase`` (issue #14): listed only with a concept model (``--concept-model``; off by
default), every instance of a phrase as a result whose id ``inspect_result`` / ``select_objects`` /
``refine_object`` take, bad input and a gated repository as tool errors (never a crash), and a real
``segzero-mcp --concept-model FOLDER`` stdio subprocess on the tiny random SAM 3."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from segzero_tool.masks import rle_decode
from segzero_tool.segmenters.concept import ConceptInstance, ConceptSegmenter, gated_access_error

pytestmark = pytest.mark.anyio

STEERING = ["segment_by_prompts", "refine_object", "inspect_result", "select_objects"]


def _text(result: dict) -> str:
    return "\n".join(c["text"] for c in result["content"] if c["type"] == "text")


class ScriptedConcept(ConceptSegmenter):
    """Three cups on any image (a test double through the public class)."""

    model_id = "scripted-concept"

    def __init__(self) -> None:
        self.calls: list[tuple[str, float, Any]] = []

    def find(self, image, phrase, *, threshold=0.5, mask_threshold=0.5, max_instances=None):
        self.calls.append((phrase, threshold, max_instances))
        h, w = image.shape[:2]
        out = []
        for box, score in (((10, 20, 101, 121), 0.6), ((200, 100, 301, 201), 0.9), ((400, 50, 451, 91), 0.4)):
            m = np.zeros((h, w), bool)
            m[box[1]:box[3], box[0]:box[2]] = True
            out.append(ConceptInstance(box=box, score=score, mask=m))
        return out


@pytest.fixture
def phrase_server(image_root, kit):
    """``phrase_server(concept=ScriptedConcept(), **settings) -> server`` on the scripted box segmenter."""
    from segzero_tool.mcp_server import ServerSettings, create_server
    from segzero_tool.mcp_server.service import SegZeroService
    from segzero_tool.pipeline import SegZeroPipeline

    def make(concept: Any = "scripted", **kw: Any) -> Any:
        kw.setdefault("roots", (image_root,))
        settings = ServerSettings(**kw)
        pipe = SegZeroPipeline(None, kit.BoxSegmenter())
        svc = SegZeroService(settings, pipe, concept=ScriptedConcept() if concept == "scripted" else concept)
        return create_server(settings, service=svc)

    return make


async def test_listed_only_with_a_concept_model(phrase_server, kit):
    async with kit.connect_memory(phrase_server(concept=None)) as client:
        assert [t["name"] for t in await client.list_tools()] == STEERING
    server = phrase_server()
    async with kit.connect_memory(server) as client:
        tools = {t["name"]: t for t in await client.list_tools()}
        status = json.loads((await client.read("segzero://status"))[0]["text"])
    assert list(tools) == [*STEERING, "segment_phrase"]
    tool = tools["segment_phrase"]
    schema = tool["inputSchema"]
    assert schema["required"] == ["phrase"]
    assert {"phrase", "image", "result_id", "threshold", "max_instances", "mask_encoding",
            "include_overlay"} == set(schema["properties"])
    assert schema["properties"]["threshold"]["default"] == 0.5 and schema["properties"]["threshold"]["maximum"] == 1
    assert schema["properties"]["phrase"]["maxLength"] == 200
    assert "outputSchema" in tool and "inspect_result" in tool["description"] and len(tool["description"]) > 300
    assert tool["annotations"]["readOnlyHint"] is True
    assert status["tools"] == [*STEERING, "segment_phrase"]
    assert status["concept_model"]["model"] == "scripted-concept" and status["concept_model"]["state"] == "ready"


def test_settings_flag_and_environment(image_root):
    from segzero_tool.mcp_server import ServerSettings
    from segzero_tool.mcp_server.service import SegZeroService

    assert ServerSettings().concept_model == "none"
    assert ServerSettings.from_args(["--concept-model"], environ={}).concept_model == "sam3"
    assert ServerSettings.from_args(["--concept-model", "/models/sam3"], environ={}).concept_model == "/models/sam3"
    assert ServerSettings.from_args([], environ={"SEGZERO_MCP_CONCEPT_MODEL": "sam3"}).concept_model == "sam3"
    assert ServerSettings.from_args(["--concept-model", "off"], environ={}).concept_model == "none"
    on = SegZeroService(ServerSettings(concept_model="sam3", lazy=True, roots=(image_root,)))
    assert on.concept is not None and on.concept.loader.state == "idle" and "segment_phrase" in on.tool_names()
    off = SegZeroService(ServerSettings(roots=(image_root,)))
    assert off.concept is None and "segment_phrase" not in off.tool_names()


async def test_phrase_then_inspect_select_refine(phrase_server, kit, image_root):
    server = phrase_server()
    async with kit.connect_memory(server) as client:
        res = await client.call({"image": "coffee.png", "phrase": "cup"}, name="segment_phrase")
        assert res.get("isError") is not True, res
        out = res["structuredContent"]
        rid = out["result_id"]
        assert out["query"] == "cup" and out["prompt_format"] == "phrase" and out["parse_status"] == "ok"
        assert [o["box"] for o in out["objects"]] == [[200, 100, 300, 200], [10, 20, 100, 120]]
        assert [o["score"] for o in out["objects"]] == pytest.approx([0.9, 0.6])
        assert rle_decode(out["objects"][0]["rle"]).sum() == out["objects"][0]["area"] == 101 * 101
        assert rid in _text(res)

        low = await client.call({"result_id": rid, "phrase": "cup", "threshold": 0.3, "max_instances": 2,
                                 "mask_encoding": "none"}, name="segment_phrase")
        assert low.get("isError") is not True, low
        assert [o["score"] for o in low["structuredContent"]["objects"]] == pytest.approx([0.9, 0.6])
        assert any("only the best 2" in i for i in low["structuredContent"]["parse_issues"])

        seen = await client.call({"result_id": rid, "crops": True}, name="inspect_result")
        assert seen.get("isError") is not True and seen["structuredContent"]["indices"] == [0, 1]
        picked = await client.call({"result_id": rid, "indices": [1]}, name="select_objects")
        assert picked.get("isError") is not True
        assert [o["box"] for o in picked["structuredContent"]["objects"]] == [[10, 20, 100, 120]]
        refined = await client.call({"result_id": rid, "index": 0, "add_points": [[250, 150]]}, name="refine_object")
        assert refined.get("isError") is not True, refined
        assert refined["structuredContent"]["objects"][0]["points"] == [[250, 150]]

        none = await client.call({"image": "coffee.png", "phrase": "cup", "threshold": 0.95}, name="segment_phrase")
        assert none.get("isError") is not True
        assert none["structuredContent"]["objects"] == [] and none["structuredContent"]["parse_status"] == "no_objects"
        assert "lower threshold" in _text(none)
    calls = server.segzero.concept.loader.value.calls
    assert calls[0] == ("cup", 0.5, 51)  # the server's object cap (50), plus one to tell a cut-off
    assert calls[1] == ("cup", 0.3, 3)


BAD: list[tuple[dict[str, Any], str]] = [
    ({"image": "coffee.png", "phrase": "   "}, "phrase is empty"),
    ({"image": "coffee.png", "phrase": "cup\nand also"}, "control characters"),
    ({"phrase": "cup"}, "send exactly one of image"),
    ({"image": "coffee.png", "result_id": "<rid>", "phrase": "cup"}, "got both"),
    ({"result_id": "0123456789abcdef", "phrase": "cup"}, "unknown result id"),
    ({"image": "missing.png", "phrase": "cup"}, "missing.png"),
    ({"image": "broken.png", "phrase": "cup"}, "could not be used"),
    ({"image": "coffee.png", "phrase": "cup", "threshold": 1.5}, "threshold"),
    ({"image": "coffee.png", "phrase": "cup", "max_instances": 0}, "max_instances"),
    ({"image": "coffee.png", "phrase": "x" * 201}, "phrase"),
]


async def test_bad_input_is_a_tool_error(phrase_server, kit):
    async with kit.connect_memory(phrase_server()) as client:
        first = await client.call({"image": "coffee.png", "phrase": "cup"}, name="segment_phrase")
        rid = first["structuredContent"]["result_id"]
        for args, expected in BAD:
            args = {k: (rid if v == "<rid>" else v) for k, v in args.items()}
            res = await client.call(args, name="segment_phrase")
            assert res["isError"] is True, (args, res)
            assert expected in _text(res), (args, _text(res))
        ok = await client.call({"result_id": rid, "phrase": "cup"}, name="segment_phrase")  # still serving
    assert ok.get("isError") is not True


async def test_gated_model_is_a_tool_error_with_the_fix(image_root, kit, monkeypatch):
    from segzero_tool.mcp_server import ServerSettings, create_server
    from segzero_tool.mcp_server.service import SegZeroService
    from segzero_tool.pipeline import SegZeroPipeline
    from segzero_tool.segmenters.concept import Sam3ConceptSegmenter

    loads = []

    def gated(cls, name, **kw):  # what from_pretrained raises when the hub refuses the gated repository
        loads.append((name, kw))
        raise gated_access_error(OSError("You are trying to access a gated repo."), "facebook/sam3")

    monkeypatch.setattr(Sam3ConceptSegmenter, "from_pretrained", classmethod(gated))
    settings = ServerSettings(roots=(image_root,), concept_model="sam3")
    svc = SegZeroService(settings, SegZeroPipeline(None, kit.BoxSegmenter()))
    server = create_server(settings, service=svc)
    async with kit.connect_memory(server) as client:
        assert "segment_phrase" in [t["name"] for t in await client.list_tools()]
        res = await client.call({"image": "coffee.png", "phrase": "cup"}, name="segment_phrase")
        status = json.loads((await client.read("segzero://status"))[0]["text"])
        other = await client.call({"image": "coffee.png", "objects": [{"box": [0, 0, 9, 9]}]},
                                  name="segment_by_prompts")
    assert res["isError"] is True
    text = _text(res)
    assert "concept model sam3" in text and "https://huggingface.co/facebook/sam3" in text and "hf auth login" in text
    assert status["concept_model"]["state"] == "failed" and "gated" in status["concept_model"]["error"]
    assert other.get("isError") is not True  # the other tools keep working
    assert loads and loads[0][0] == "sam3"


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory) -> dict[str, Path]:
    from segzero_tool.testing.tiny_sam2 import build_tiny_sam2
    from segzero_tool.testing.tiny_sam3_concept import build_tiny_sam3_concept

    root = tmp_path_factory.mktemp("tiny-phrase")
    return {"sam2": build_tiny_sam2(root / "sam2", seed=0), "sam3": build_tiny_sam3_concept(root / "sam3", seed=0)}


async def test_tiny_sam3_in_process(kit, image_root, tiny_dirs):
    from segzero_tool.mcp_server import ServerSettings, create_server
    from segzero_tool.mcp_server.service import SegZeroService
    from segzero_tool.pipeline import SegZeroPipeline
    from segzero_tool.settings import PipelineSettings

    settings = ServerSettings(roots=(image_root,), concept_model=str(tiny_dirs["sam3"]),
                              pipeline=PipelineSettings(device="cpu"))
    svc = SegZeroService(settings, SegZeroPipeline(None, kit.BoxSegmenter()))
    async with kit.connect_memory(create_server(settings, service=svc)) as client:
        res = await client.call({"image": "coffee.png", "phrase": "coffee cup", "threshold": 0.0, "max_instances": 4,
                                 "include_overlay": True}, name="segment_phrase")
    assert res.get("isError") is not True, res
    out = res["structuredContent"]
    assert len(out["objects"]) == 4 and out["prompt_format"] == "phrase"
    assert [c["type"] for c in res["content"]][:2] == ["text", "image"]


@pytest.mark.slow
async def test_stdio_subprocess_with_the_tiny_sam3(kit, image_root, tiny_dirs, tmp_path):
    args = ["-m", "segzero_tool.mcp_server", "--reasoner", "none", "--segmenter", str(tiny_dirs["sam2"]),
            "--concept-model", str(tiny_dirs["sam3"]), "--device", "cpu", "--allow-root", str(image_root)]
    errlog = tmp_path / "stderr.txt"
    with open(errlog, "w") as err:
        async with kit.connect_stdio(args, kit.server_env(), image_root, err) as client:
            t0 = time.monotonic()
            tools = [t["name"] for t in await client.list_tools()]
            listed_s = time.monotonic() - t0
            res = await client.call({"image": "coffee.png", "phrase": "cup", "threshold": 0.0, "max_instances": 3,
                                     "mask_encoding": "none"}, name="segment_phrase")
            assert res.get("isError") is not True, res
            rid = res["structuredContent"]["result_id"]
            picked = await client.call({"result_id": rid, "indices": [2, 0]}, name="select_objects")
            refined = await client.call({"result_id": rid, "index": 1, "add_points": [[300, 200]]},
                                        name="refine_object")
            status = json.loads((await client.read("segzero://status"))[0]["text"])
    assert tools == [*STEERING, "segment_phrase"] and listed_s < 5
    assert len(res["structuredContent"]["objects"]) == 3
    assert picked.get("isError") is not True and len(picked["structuredContent"]["objects"]) == 2
    assert refined.get("isError") is not True, refined
    assert status["concept_model"]["state"] == "ready" and status["concept_model"]["model"] == str(tiny_dirs["sam3"])
