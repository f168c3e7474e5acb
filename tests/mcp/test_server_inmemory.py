"""The MCP server through an in-memory client: schemas, results, resources, bad input, parse
failures, cancellation and the busy limit (tiny SAM2 or a box segmenter, scripted reasoners)."""

from __future__ import annotations

import asyncio
import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from segzero_tool.masks import rle_decode

pytestmark = pytest.mark.anyio


def _text(result: dict) -> str:
    return "\n".join(c["text"] for c in result["content"] if c["type"] == "text")


def _png(contents: list[dict]) -> np.ndarray:
    (c,) = contents
    assert c["mimeType"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(c["blob"]))))


async def test_tool_and_resource_templates_are_described(make_server, kit):
    async with kit.connect_memory(make_server()) as client:
        tools = await client.list_tools()
        assert [t["name"] for t in tools] == ["segment_by_reasoning", "segment_by_prompts", "refine_object", "inspect_result", "select_objects",
            "track_by_reasoning"]
        tool = tools[0]
        templates = {t["uriTemplate"] for t in await client.list_resource_templates()}
    assert tool["name"] == "segment_by_reasoning"
    assert len(tool["description"]) > 1000 and "COCO" in tool["description"] and "top-left" in tool["description"]
    props = tool["inputSchema"]["properties"]
    assert set(props) == {"image", "query", "prompt_format", "max_objects", "mask_encoding", "include_overlay", "verify",
                          "verify_rounds"}
    assert all(len(p["description"]) > 60 for p in props.values())
    assert sorted(tool["inputSchema"]["required"]) == ["image", "query"]
    assert props["max_objects"]["anyOf"][0] == {"maximum": 100, "minimum": 1, "type": "integer"}
    assert props["mask_encoding"]["enum"] == ["rle", "polygons", "none"] and props["mask_encoding"]["default"] == "rle"
    out = tool["outputSchema"]
    assert {"result_id", "reasoning", "objects", "image_width", "image_height", "timings_ms", "parse_status",
            "parse_issues", "mask_uris"} <= set(out["properties"])
    assert tool["annotations"]["readOnlyHint"] is True
    assert {t for t in templates if t.startswith("segzero://results/")} == {"segzero://results/{result_id}/mask.png", "segzero://results/{result_id}/overlay.png",
                         "segzero://results/{result_id}/objects/{index}/mask.png",
                         "segzero://results/{result_id}/result.json"}


async def test_call_with_local_path_and_tiny_sam2(make_server, kit, image_root, tiny_segmenter):
    server = make_server(segmenter=tiny_segmenter)
    progress: list[tuple[float, str | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, message))

    async with kit.connect_memory(server) as client:
        res = await client.call({"image": str(image_root / "coffee.png"), "query": "What can I have if I'm thirsty?"},
                                progress=on_progress)
        assert res.get("isError") is not True, res
        out = res["structuredContent"]
        assert out["parse_status"] == "ok" and out["reasoning"] == "The cup holds coffee."
        assert (out["image_width"], out["image_height"]) == (600, 400)
        assert [o["box"] for o in out["objects"]] == kit.BOXES
        assert out["objects"][0]["points"] == [[int(378 * 600 / 840 + 0.5), int(420 * 400 / 840 + 0.5)]]
        for o in out["objects"]:
            mask = rle_decode(o["rle"])
            assert mask.shape == (400, 600) and int(mask.sum()) == o["area"]
            assert 0.0 <= o["score"] <= 1.0 or np.isfinite(o["score"])
        assert out["raw_output"] is None and set(out["timings_ms"]) >= {"reason", "segment", "total"}
        rid = out["result_id"]
        assert out["mask_uris"] == [f"segzero://results/{rid}/objects/{i}/mask.png" for i in range(2)]
        text = _text(res)
        assert "Found 2 object(s)" in text and "The cup holds coffee." in text and rid in text
        for uri in (out["union_mask_uri"], *out["mask_uris"], out["overlay_uri"], out["result_uri"]):
            assert uri in text  # every URI is in the text (and the structured content)
        assert [c["type"] for c in res["content"]] == ["text"]  # no resource links unless asked for
        union = _png(await client.read(out["union_mask_uri"]))
        assert union.shape == (400, 600) and set(np.unique(union)) <= {0, 255}
        expected = np.logical_or(*[rle_decode(o["rle"]) for o in out["objects"]])
        assert np.array_equal(union > 0, expected)
        first = _png(await client.read(out["mask_uris"][0]))
        assert np.array_equal(first > 0, rle_decode(out["objects"][0]["rle"]))
        overlay = _png(await client.read(out["overlay_uri"]))
        assert overlay.shape == (400, 600, 3)
        (doc,) = await client.read(out["result_uri"])
        data = json.loads(doc["text"])
        assert data["parse_status"] == "ok" and len(data["objects"]) == 2 and "rle" in data["union"]
    messages = {m.split(" (")[0] for _, m in progress}  # (2.x may run callbacks concurrently: order not checked)
    assert {"loading image", "reasoning", "segmenting 2 object(s)", "encoding", "done"} <= messages, progress
    assert any(m.startswith("queued: 0 running, 0 waiting") for m in messages), progress
    values = sorted(v for v, _ in progress)
    assert len(set(values)) == len(values) and values[-1] == 6  # strictly increasing values, to the total


async def test_resource_links_on_request(make_server, kit, image_root):
    async with kit.connect_memory(make_server(resource_links=True)) as client:
        res = await client.call({"image": str(image_root / "coffee.png"), "query": "the cup"})
    out = res["structuredContent"]
    links = [c["uri"] for c in res["content"] if c["type"] == "resource_link"]
    assert links == [out["union_mask_uri"], *out["mask_uris"], out["overlay_uri"], out["result_uri"]]
    assert res["content"][0]["type"] == "text"


async def test_polygons_none_and_max_objects(make_server, kit, image_root):
    async with kit.connect_memory(make_server()) as client:
        args = {"image": str(image_root / "coffee.png"), "query": "the cup"}
        poly = (await client.call({**args, "mask_encoding": "polygons"}))["structuredContent"]
        none = (await client.call({**args, "mask_encoding": "none"}))["structuredContent"]
        one = (await client.call({**args, "max_objects": 1}))["structuredContent"]
        too_many = await client.call({**args, "max_objects": 101})
    x1, y1, x2, y2 = kit.BOXES[0]
    (ring,) = poly["objects"][0]["polygons"]
    xs, ys = ring[0::2], ring[1::2]
    assert (min(xs), min(ys), max(xs), max(ys)) == (x1, y1, x2, y2)
    assert poly["objects"][0]["rle"] is None and poly["mask_encoding"] == "polygons"
    assert none["objects"][0]["rle"] is None and none["objects"][0]["polygons"] is None
    assert none["objects"][0]["area"] == (x2 - x1 + 1) * (y2 - y1 + 1)
    assert len(one["objects"]) == 1 and any("max_objects" in i or "kept" in i for i in one["parse_issues"])
    assert too_many["isError"] is True


async def test_overlay_is_small_and_not_in_structured_content(make_server, kit, image_root):
    server = make_server(overlay_max_side=256, overlay_max_bytes=12_000)
    async with kit.connect_memory(server) as client:
        res = await client.call({"image": str(image_root / "coffee.png"), "query": "the cup", "include_overlay": True})
    (img,) = [c for c in res["content"] if c["type"] == "image"]
    assert len(img["data"]) <= 12_000
    pic = Image.open(io.BytesIO(base64.b64decode(img["data"])))
    assert max(pic.size) <= 256 and pic.format in ("PNG", "JPEG")
    assert img["mimeType"] == f"image/{pic.format.lower()}"
    assert img["data"][:100] not in json.dumps(res["structuredContent"])
    assert len(json.dumps(res["structuredContent"])) < 5000


@pytest.mark.parametrize(
    ("image", "query", "message"),
    [
        ("{outside}", "the cup", "outside the folders"),
        ("../../../../../../etc/passwd", "the cup", "outside the folders"),
        ("file:///etc/passwd", "the cup", "outside the folders"),
        ("{root}/link.png", "the cup", "outside the folders"),
        ("{root}/missing.png", "the cup", "no such file"),
        ("{root}/broken.png", "the cup", "could not be used"),
        ("{root}/coffee.png", "   ", "query is empty"),
        ("https://example.com/cat.png", "the cup", "fetching URLs is disabled"),
        ("http://169.254.169.254/latest/meta-data", "the cup", "fetching URLs is disabled"),
        ("{big_base64}", "the cup", "larger than this server's limit"),
        ("data:text/plain;base64,aGVsbG8=", "the cup", "media type"),
        ("segzero://results/0000/overlay.png", "the cup", "unknown or expired result id"),
    ],
)
async def test_bad_input_is_a_tool_error_and_the_server_keeps_serving(make_server, kit, image_root, image, query,
                                                                       message):
    big = base64.b64encode(kit.COFFEE.read_bytes()).decode()
    image = (image.replace("{root}", str(image_root)).replace("{outside}", str(kit.COFFEE))
             .replace("{big_base64}", big))
    reasoner = kit.ScriptedReasoner(kit.ANSWER)
    async with kit.connect_memory(make_server(reasoner=reasoner, max_base64_bytes=10_000)) as client:
        res = await client.call({"image": image, "query": query})
        assert res["isError"] is True, res
        assert message in _text(res), _text(res)
        assert "Traceback" not in _text(res) and reasoner.calls == []
        ok = await client.call({"image": str(image_root / "coffee.png"), "query": "the cup"})
        assert ok.get("isError") is not True and len(ok["structuredContent"]["objects"]) == 2


async def test_images_as_data_url_base64_and_own_resource(make_server, kit, image_root):
    raw = base64.b64encode(kit.COFFEE.read_bytes()).decode()
    async with kit.connect_memory(make_server()) as client:
        for image in (f"data:image/png;base64,{raw}", raw):
            res = await client.call({"image": image, "query": "the cup"})
            assert res["structuredContent"]["image_width"] == 600, _text(res)
        again = await client.call({"image": res["structuredContent"]["overlay_uri"], "query": "the cup"})
        assert again["structuredContent"]["image_width"] == 600, _text(again)


async def test_unparseable_model_output_is_a_normal_result(make_server, kit, image_root):
    reasoner = kit.ScriptedReasoner("I am not sure what you mean, sorry.")
    async with kit.connect_memory(make_server(reasoner=reasoner)) as client:
        res = await client.call({"image": str(image_root / "coffee.png"), "query": "the cup"})
    assert res.get("isError") is not True
    out = res["structuredContent"]
    assert out["parse_status"] == "no_answer" and out["objects"] == []
    assert out["raw_output"] == "I am not sure what you mean, sorry."
    assert "did not write an answer in the expected format" in _text(res) and "rephras" not in _text(res)
    assert "--prompt-format" in _text(res)


async def test_answer_cut_off_by_the_budget_says_so_and_names_the_flag(make_server, kit, image_root):
    from segzero_tool.reasoners.base import ReasonerOutput

    class Truncating(kit.ScriptedReasoner):
        def generate(self, requests):
            return [ReasonerOutput('<think>' + 'hmm ' * 50, finish_reason="length") for _ in requests]

    async with kit.connect_memory(make_server(reasoner=Truncating("x"))) as client:
        res = await client.call({"image": str(image_root / "coffee.png"), "query": "the cup"})
    text = _text(res)
    assert res["structuredContent"]["truncated"] is True
    assert "token budget" in text and "--max-new-tokens" in text and "Try a more concrete query" not in text


async def test_unknown_result_and_object_are_resource_errors(make_server, kit, image_root):
    async with kit.connect_memory(make_server()) as client:
        with pytest.raises(kit.McpError, match="unknown or expired result id") as info:
            await client.read("segzero://results/0123456789abcdef/mask.png")
        assert info.value.error.code == -32602  # SEP-2164: Invalid params
        with pytest.raises(kit.McpError) as info:
            await client.read("segzero://nothing/here")
        assert info.value.error.code == -32602
        rid = (await client.call({"image": str(image_root / "coffee.png"), "query": "q"}))["structuredContent"][
            "result_id"]
        with pytest.raises(kit.McpError, match="no object #7"):
            await client.read(f"segzero://results/{rid}/objects/7/mask.png")
        assert len(_png(await client.read(f"segzero://results/{rid}/objects/1/mask.png"))) == 400


async def test_cancel_stops_the_work_and_frees_the_slot(make_server, kit, image_root):
    reasoner, segmenter = kit.GatedReasoner(), kit.BoxSegmenter()
    server = make_server(reasoner=reasoner, segmenter=segmenter, max_concurrency=1, max_queue=0)
    args = {"image": str(image_root / "coffee.png"), "query": "the cup"}
    async with kit.connect_memory(server) as client:
        await client.call_and_cancel(args, reasoner.started)
        for _ in range(500):  # the slot is released once the worker thread has really stopped
            if server.segzero.gate.running == 0:
                break
            await asyncio.sleep(0.01)
        assert reasoner.cancelled == 1 and segmenter.calls == [] and len(server.segzero.store) == 0
        assert server.segzero.gate.running == 0
        reasoner.release.set()
        res = await client.call(args)
        assert res.get("isError") is not True and len(res["structuredContent"]["objects"]) == 2


async def test_busy_beyond_the_queue_then_serves_again(make_server, kit, image_root):
    reasoner = kit.GatedReasoner()
    server = make_server(reasoner=reasoner, max_concurrency=1, max_queue=0)
    args = {"image": str(image_root / "coffee.png"), "query": "the cup"}
    async with kit.connect_memory(server) as client:
        first = asyncio.ensure_future(client.call(args))
        await kit.wait_event(reasoner.started, 20)
        busy = await client.call(args)
        assert busy["isError"] is True
        assert "busy: 1 calls running and 0 queued" in _text(busy) and "retry" in _text(busy)
        reasoner.release.set()
        assert (await first)["structuredContent"]["parse_status"] == "ok"
        assert (await client.call(args))["structuredContent"]["parse_status"] == "ok"


async def test_lazy_loads_once_on_first_calls(kit, image_root, tiny_models, monkeypatch, tmp_path):
    from segzero_tool.mcp_server import ServerSettings, create_server
    from segzero_tool.settings import PipelineSettings

    builds = []
    original = PipelineSettings.build_pipeline

    def counting(self, **kw):
        builds.append(kw)
        return original(self, **kw)

    monkeypatch.setattr(PipelineSettings, "build_pipeline", counting)
    pipeline = PipelineSettings(reasoner=str(kit.script_folder(tmp_path)), reasoner_backend="scripted:ScriptedReasoner",
                                segmenter=str(tiny_models["segmenter"]), device="cpu")
    server = create_server(ServerSettings(pipeline=pipeline, lazy=True, roots=(image_root,), max_objects=5))
    args = {"image": str(image_root / "coffee.png"), "query": "the cup"}
    async with kit.connect_memory(server) as client:
        assert not server.segzero.loaded
        results = await asyncio.gather(client.call(args), client.call(args))
    assert [len(r["structuredContent"]["objects"]) for r in results] == [2, 2]
    assert len(builds) == 1 and builds[0]["max_objects"] == 5


async def test_result_ids_and_indices_complete(make_server, kit, image_root):
    from mcp.types import ResourceTemplateReference

    async with kit.connect_memory(make_server()) as client:
        rids = [(await client.call({"image": str(image_root / "coffee.png"), "query": "q"}))["structuredContent"][
            "result_id"] for _ in range(2)]
        ref = ResourceTemplateReference(type="ref/resource", uri="segzero://results/{result_id}/objects/{index}/mask.png")
        session = client.session
        ids = await session.complete(ref, {"name": "result_id", "value": ""})
        assert ids.completion.values == rids[::-1]  # most recent first
        one = await session.complete(ref, {"name": "result_id", "value": rids[0][:6]})
        assert rids[0] in one.completion.values
        idx = await session.complete(ref, {"name": "index", "value": ""}, context_arguments={"result_id": rids[1]})
        assert idx.completion.values == ["0", "1"]
