"""The steering tools over MCP (issue #12): ``segment_by_prompts``, ``refine_object``, ``inspect_result``
and ``select_objects``, with and without a reasoner; live results by id (expiry with a fake clock);
every bad input a tool error that says what to send; random JSON never crashes the server; and a real
``segzero-mcp --reasoner none`` stdio subprocess running the README's worked example."""

from __future__ import annotations

import base64
import io
import json
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from segzero_tool.masks import rle_decode

pytestmark = pytest.mark.anyio

STEERING = ["segment_by_prompts", "refine_object", "inspect_result", "select_objects"]
README = Path(__file__).resolve().parents[2] / "README.md"

#: The README's worked example (section "Without a local reasoner"): the agent's four turns, exactly.
TURNS: list[tuple[str, dict[str, Any]]] = [
    ("segment_by_prompts", {"image": "coffee.png", "objects": [
        {"box": [172, 18, 410, 300], "label": "cup"}, {"points": [[365, 285]], "label": "spoon"}],
        "mask_encoding": "none"}),
    ("inspect_result", {"result_id": "<id 1>", "crops": True}),
    ("refine_object", {"result_id": "<id 1>", "index": 1, "add_points": [[405, 110]],
                       "remove_points": [[300, 250]], "mask_encoding": "none"}),
    ("select_objects", {"result_id": "<id 2>", "indices": [1, 0]}),
]


def _text(result: dict) -> str:
    return "\n".join(c["text"] for c in result["content"] if c["type"] == "text")


@pytest.fixture(scope="module")
def tiny_sam2_dir(tmp_path_factory) -> Path:
    from segzero_tool.testing.tiny_sam2 import build_tiny_sam2

    return build_tiny_sam2(tmp_path_factory.mktemp("tiny-sam2") / "segmenter", seed=0)


@pytest.fixture(scope="module")
def tiny_pipe(tiny_sam2_dir):
    """A pipeline without a reasoner (``reasoner="none"``) on the tiny random SAM2."""
    from segzero_tool.pipeline import SegZeroPipeline

    return SegZeroPipeline.from_pretrained("none", str(tiny_sam2_dir), device="cpu")


@pytest.fixture
def steer_server(image_root, kit):
    """``steer_server(pipe=None, reasoner=False, clock=None, **settings) -> server``."""
    from segzero_tool.mcp_server import ServerSettings, create_server
    from segzero_tool.mcp_server.service import SegZeroService
    from segzero_tool.pipeline import SegZeroPipeline

    def make(pipe: Any = None, *, reasoner: bool = False, clock: Any = None, **kw: Any) -> Any:
        kw.setdefault("roots", (image_root,))
        settings = ServerSettings(**kw)
        if pipe is None:
            pipe = SegZeroPipeline(kit.ScriptedReasoner(kit.ANSWER) if reasoner else None, kit.BoxSegmenter())
        svc = SegZeroService(settings, pipe, **({"clock": clock} if clock is not None else {}))
        return create_server(settings, service=svc)

    return make


# --- listing -----------------------------------------------------------------------------------------


async def test_tools_listed_with_and_without_a_reasoner(steer_server, kit):
    async with kit.connect_memory(steer_server(reasoner=True)) as client:
        tools = {t["name"]: t for t in await client.list_tools()}
    assert list(tools) == ["segment_by_reasoning", *STEERING, "track_by_reasoning"]  # PyAV is in dev
    async with kit.connect_memory(steer_server()) as client:
        bare = {t["name"]: t for t in await client.list_tools()}
        status = json.loads((await client.read("segzero://status"))[0]["text"])
        templates = {t["uriTemplate"] for t in await client.list_resource_templates()}
    assert list(bare) == STEERING and "segment_by_reasoning" not in bare
    assert status["models"]["reasoner"] == "none" and status["models"]["reasoner_loaded"] == "none"
    assert status["tools"] == STEERING and status["live_results"]["max_count"] == 16
    assert "segzero://results/{result_id}/overlay.png" in templates
    props = bare["segment_by_prompts"]["inputSchema"]["properties"]
    assert {"image", "result_id", "objects", "mask_encoding", "include_overlay"} <= set(props)
    assert bare["segment_by_prompts"]["inputSchema"]["required"] == ["objects"]
    assert props["objects"]["items"]["properties"]["box"]["minItems"] == 4
    assert set(bare["refine_object"]["inputSchema"]["properties"]) >= {"result_id", "index", "add_points",
                                                                       "remove_points", "box"}
    assert set(bare["inspect_result"]["inputSchema"]["properties"]) == {"result_id", "indices", "crops"}
    assert sorted(bare["select_objects"]["inputSchema"]["required"]) == ["indices", "result_id"]
    for name in STEERING:
        assert len(bare[name]["description"]) > 300 and "outputSchema" in bare[name]


async def test_without_a_reasoner_segment_by_reasoning_is_refused(steer_server, kit):
    from segzero_tool.errors import NoReasonerError

    server = steer_server()
    async with kit.connect_memory(server) as client:
        res = await client.call({"image": "coffee.png", "query": "the cup"})
    assert res["isError"] is True
    with pytest.raises(NoReasonerError, match="segment_by_prompts"):
        await server.segzero.segment("coffee.png", "the cup")


def test_reasoner_none_from_flags_and_environment(image_root):
    from segzero_tool.mcp_server import ServerSettings
    from segzero_tool.mcp_server.service import SegZeroService, describe_models, preflight

    for settings in (ServerSettings.from_args(["--reasoner", "none", "--allow-root", str(image_root)], environ={}),
                     ServerSettings.from_env({"SEGZERO_REASONER": "none"}, ServerSettings(roots=(image_root,)))):
        assert settings.pipeline.no_reasoner
        preflight(settings)  # the reasoner is not resolved
        svc = SegZeroService(settings)
        assert not svc.has_reasoner and svc.tool_names() == STEERING
        assert svc.status()["models"]["reasoner"] == "none"
        assert "no reasoner" in describe_models(settings)
    live = ServerSettings.from_args(["--live-results", "3", "--live-store-bytes", "5MB", "--live-ttl", "60"],
                                    environ={})
    assert (live.live_results, live.live_store_bytes, live.live_ttl_s) == (3, 5_000_000, 60.0)
    env = ServerSettings.from_env({"SEGZERO_MCP_LIVE_RESULTS": "2", "SEGZERO_MCP_LIVE_TTL": "5",
                                   "SEGZERO_MCP_LIVE_STORE_BYTES": "1MB"})
    assert (env.live_results, env.live_store_bytes, env.live_ttl_s) == (2, 1_000_000, 5.0)


# --- happy paths -------------------------------------------------------------------------------------


async def test_prompt_refine_inspect_select_on_tiny_sam2(steer_server, kit, image_root, tiny_pipe):
    async with kit.connect_memory(steer_server(tiny_pipe)) as client:
        first = await client.call({"image": str(image_root / "coffee.png"), "objects": [
            {"box": [172, 18, 410, 300], "label": "cup"}, {"points": [[365, 285]], "negative_points": [[440, 300]]}]},
            name="segment_by_prompts")
        assert first.get("isError") is not True, first
        out = first["structuredContent"]
        rid = out["result_id"]
        assert out["prompt_format"] == "prompts" and (out["image_width"], out["image_height"]) == (600, 400)
        assert [o["box"] for o in out["objects"]] == [[172, 18, 410, 300], None]
        assert [o["label"] for o in out["objects"]] == ["cup", None]
        for o in out["objects"]:
            assert rle_decode(o["rle"]).shape == (400, 600) and rle_decode(o["rle"]).sum() == o["area"]
        assert rid in _text(first)
        before = (await client.read(out["result_uri"]))[0]["text"]
        mask_before = (await client.read(out["mask_uris"][1]))[0]["blob"]

        # the same image again by result_id (embedding cached)
        again = await client.call({"result_id": rid, "objects": [{"box": [0, 0, 50, 50]}]}, name="segment_by_prompts")
        assert again.get("isError") is not True and again["structuredContent"]["result_id"] != rid

        refined = await client.call({"result_id": rid, "index": 1, "add_points": [[405, 110]],
                                     "remove_points": [[300, 250]]}, name="refine_object")
        assert refined.get("isError") is not True, refined
        new = refined["structuredContent"]
        assert new["result_id"] != rid and new["objects"][1]["points"] == [[365, 285], [405, 110]]
        assert new["objects"][0] == {**out["objects"][0], "mask_uri": new["objects"][0]["mask_uri"]}
        # the old result and its resources are unchanged
        assert (await client.read(out["result_uri"]))[0]["text"] == before
        assert (await client.read(out["mask_uris"][1]))[0]["blob"] == mask_before
        again_old = await client.call({"result_id": rid}, name="inspect_result")
        assert again_old.get("isError") is not True

        seen = await client.call({"result_id": new["result_id"], "crops": True}, name="inspect_result")
        assert seen.get("isError") is not True, seen
        kinds = [c["type"] for c in seen["content"]]
        assert kinds == ["text", "image"]
        picture = Image.open(io.BytesIO(base64.b64decode(seen["content"][1]["data"])))
        assert picture.size == (seen["structuredContent"]["width"], seen["structuredContent"]["height"])
        assert seen["structuredContent"]["indices"] == [0, 1] and seen["structuredContent"]["crops"] is True
        assert "#0" in _text(seen) and "#1" in _text(seen)

        picked = await client.call({"result_id": new["result_id"], "indices": [1, 0], "mask_encoding": "polygons"},
                                   name="select_objects")
        assert picked.get("isError") is not True, picked
        final = picked["structuredContent"]
        assert final["result_id"] not in (rid, new["result_id"]) and final["mask_encoding"] == "polygons"
        assert [o["box"] for o in final["objects"]] == [None, [172, 18, 410, 300]]
        union = np.asarray(Image.open(io.BytesIO(base64.b64decode(
            (await client.read(final["union_mask_uri"]))[0]["blob"]))))
        assert union.shape == (400, 600)


async def test_inspect_stays_within_the_overlay_budget(steer_server, kit, image_root):
    budget = 20_000
    async with kit.connect_memory(steer_server(overlay_max_bytes=budget)) as client:
        first = await client.call({"image": str(image_root / "coffee.png"), "objects": [
            {"box": [10 + 25 * k, 10 + 15 * k, 200 + 25 * k, 200 + 10 * k]} for k in range(12)]},
            name="segment_by_prompts")
        rid = first["structuredContent"]["result_id"]
        seen = await client.call({"result_id": rid, "crops": True, "indices": [0, 3, 5]}, name="inspect_result")
    assert seen.get("isError") is not True, seen
    (image,) = [c for c in seen["content"] if c["type"] == "image"]
    assert len(image["data"]) <= budget and seen["structuredContent"]["indices"] == [0, 3, 5]


async def test_reasoning_results_can_be_steered(steer_server, kit, image_root):
    async with kit.connect_memory(steer_server(reasoner=True)) as client:
        res = await client.call({"image": str(image_root / "coffee.png"), "query": "the cup"})
        rid = res["structuredContent"]["result_id"]
        seen = await client.call({"result_id": rid}, name="inspect_result")
        refined = await client.call({"result_id": rid, "index": 0, "add_points": [[300, 200]]}, name="refine_object")
        picked = await client.call({"result_id": rid, "indices": [1]}, name="select_objects")
    assert seen.get("isError") is not True and refined.get("isError") is not True, (seen, refined)
    assert [o["box"] for o in picked["structuredContent"]["objects"]] == [kit.BOXES[1]]


# --- bad input ---------------------------------------------------------------------------------------

BAD = [
    ("segment_by_prompts", {"objects": [{"box": [0, 0, 5, 5]}]}, "send exactly one of image"),
    ("segment_by_prompts", {"image": "coffee.png", "result_id": "x", "objects": [{"box": [0, 0, 5, 5]}]},
     "send exactly one of image"),
    ("segment_by_prompts", {"image": "coffee.png", "objects": []}, "objects is empty"),
    ("segment_by_prompts", {"image": "coffee.png", "objects": [{"box": [0, 0, 5, 5]}] * 4}, "over the cap of 3"),
    ("segment_by_prompts", {"image": "coffee.png", "objects": [{"negative_points": [[5, 5]]}]},
     "only negative points"),
    ("segment_by_prompts", {"image": "coffee.png", "objects": [{"box": ["a", 0, 5, 5]}]}, "is not a number"),
    ("segment_by_prompts", {"image": "coffee.png", "objects": [{"box": [700, 500, 900, 600]}]}, "objects[0].box"),
    ("segment_by_prompts", {"image": "coffee.png", "objects": [{"boxx": [0, 0, 5, 5]}]}, "unknown key"),
    ("segment_by_prompts", {"image": "coffee.png", "objects": [5]}, "objects[0] must be an object"),
    ("segment_by_prompts", {"result_id": "0123456789abcdef", "objects": [{"box": [0, 0, 5, 5]}]},
     "segment_by_prompts with image"),
    ("refine_object", {"result_id": "nope", "index": 0, "add_points": [[1, 1]]}, "unknown result id 'nope'"),
    ("refine_object", {"result_id": "<rid>", "index": 7, "add_points": [[1, 1]]}, "from 0 to 1"),
    ("refine_object", {"result_id": "<rid>", "index": 0}, "nothing to refine"),
    ("refine_object", {"result_id": "<rid>", "index": 0, "add_points": [[1, "x"]]}, "is not a number"),
    ("inspect_result", {"result_id": "<rid>", "indices": [0, 9]}, "indices[1] must be an object index (0 to 1)"),
    ("inspect_result", {"result_id": "gone"}, "segment_by_prompts with image"),
    ("select_objects", {"result_id": "<rid>", "indices": [2]}, "indices[0] must be an object index (0 to 1)"),
    ("select_objects", {"result_id": "<rid>", "indices": [0, 0]}, "repeats object 0"),
]


async def test_bad_input_is_a_tool_error_saying_what_to_send(steer_server, kit, image_root):
    async with kit.connect_memory(steer_server(max_objects=3)) as client:
        first = await client.call({"image": "coffee.png", "objects": [{"box": [0, 0, 50, 50]}, {"box": [9, 9, 99, 99]}]},
                                  name="segment_by_prompts")
        rid = first["structuredContent"]["result_id"]
        for name, args, expected in BAD:
            args = {k: (rid if v == "<rid>" else v) for k, v in args.items()}
            res = await client.call(args, name=name)
            assert res["isError"] is True, (name, args, res)
            assert expected in _text(res), (name, args, _text(res))
        ok = await client.call({"result_id": rid}, name="inspect_result")  # still serving
    assert ok.get("isError") is not True


async def test_an_expired_handle_says_what_to_send_and_its_resources_stay(steer_server, kit):
    now = [1000.0]
    server = steer_server(clock=lambda: now[0], live_ttl_s=60)
    async with kit.connect_memory(server) as client:
        first = await client.call({"image": "coffee.png", "objects": [{"box": [0, 0, 50, 50]}]},
                                  name="segment_by_prompts")
        out = first["structuredContent"]
        now[0] += 61
        for name, args in (("refine_object", {"index": 0, "add_points": [[3, 3]]}), ("inspect_result", {}),
                           ("select_objects", {"indices": [0]}),
                           ("segment_by_prompts", {"objects": [{"box": [0, 0, 5, 5]}]})):
            res = await client.call({"result_id": out["result_id"], **args}, name=name)
            assert res["isError"] is True and "expired after 60 s" in _text(res), res
            assert "call segment_by_prompts with image and objects" in _text(res)
        assert json.loads((await client.read(out["result_uri"]))[0]["text"])["objects"]  # still readable


async def test_live_results_are_bounded_by_count(steer_server, kit):
    async with kit.connect_memory(steer_server(live_results=2)) as client:
        ids = []
        for _ in range(3):
            res = await client.call({"image": "coffee.png", "objects": [{"box": [0, 0, 50, 50]}]},
                                    name="segment_by_prompts")
            ids.append(res["structuredContent"]["result_id"])
        old = await client.call({"result_id": ids[0]}, name="inspect_result")
        newest = await client.call({"result_id": ids[2]}, name="inspect_result")
    assert old["isError"] is True and "evicted" in _text(old)
    assert newest.get("isError") is not True


# --- random JSON never crashes the server ------------------------------------------------------------


def test_random_json_arguments_never_crash_the_server(steer_server, kit, image_root):
    from anyio.from_thread import start_blocking_portal
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    server = steer_server(max_objects=5)
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers(-10**7, 10**7) | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=12),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=12)
    number = st.integers(-50, 700) | st.floats(-50, 700) | json_values
    point = st.lists(number, min_size=0, max_size=3)
    points = st.lists(point, max_size=3) | json_values
    obj = st.fixed_dictionaries({}, optional={"box": st.lists(number, max_size=5) | json_values, "points": points,
                                              "negative_points": points, "label": json_values})
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(kit.connect_memory(server)) as client:
        first = portal.call(partial(client.call, {"image": "coffee.png", "objects": [
            {"box": [0, 0, 50, 50]}, {"points": [[300, 200]]}]}, name="segment_by_prompts"))
        rid = first["structuredContent"]["result_id"]
        rid_value = st.just(rid) | json_values
        image = st.sampled_from(["coffee.png", "broken.png", "missing.png", "", "aGVsbG8="]) | json_values
        arguments = {
            "segment_by_prompts": st.fixed_dictionaries({}, optional={
                "image": image, "result_id": rid_value, "objects": st.lists(obj, max_size=6) | json_values,
                "mask_encoding": st.sampled_from(["rle", "polygons", "none"]) | json_values,
                "include_overlay": json_values, "bogus": json_values}),
            "refine_object": st.fixed_dictionaries({}, optional={
                "result_id": rid_value, "index": st.integers(-2, 3) | json_values, "add_points": points,
                "remove_points": points, "box": st.lists(number, max_size=5) | json_values}),
            "inspect_result": st.fixed_dictionaries({}, optional={
                "result_id": rid_value, "indices": st.lists(st.integers(-1, 3), max_size=3) | json_values,
                "crops": json_values}),
            "select_objects": st.fixed_dictionaries({}, optional={
                "result_id": rid_value, "indices": st.lists(st.integers(-1, 3), max_size=3) | json_values}),
        }

        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
        @given(data=st.data())
        def check(data: Any) -> None:
            name = data.draw(st.sampled_from(STEERING))
            args = data.draw(arguments[name])
            res = portal.call(partial(client.call, args, name=name))
            assert isinstance(res["content"], list) and res["content"], res
            if res.get("isError"):
                assert _text(res).strip(), res
            elif name != "inspect_result":
                assert res["structuredContent"]["result_id"]

        check()
        alive = portal.call(partial(client.call, {"result_id": rid}, name="inspect_result"))
    assert alive.get("isError") is not True


# --- a real stdio subprocess: the README's worked example --------------------------------------------


def _turn_args(args: dict[str, Any], ids: list[str]) -> dict[str, Any]:
    return {k: (ids[int(v[4:-1]) - 1] if isinstance(v, str) and v.startswith("<id ") else v) for k, v in args.items()}


def test_readme_shows_the_worked_example_turns_verbatim():
    text = README.read_text()
    start = text.index("### Without a local reasoner (`--reasoner none`)")
    section = text[start:text.index("\n## ", start)]
    for name, args in TURNS:
        assert f"{name} {json.dumps(args)}" in section, (name, args)


@pytest.mark.slow
async def test_stdio_reasoner_none_runs_the_worked_example(kit, tiny_sam2_dir, image_root, tmp_path):
    args = ["-m", "segzero_tool.mcp_server", "--reasoner", "none", "--segmenter", str(tiny_sam2_dir),
            "--device", "cpu", "--allow-root", str(image_root)]
    errlog = tmp_path / "stderr.txt"
    with open(errlog, "w") as err:
        async with kit.connect_stdio(args, kit.server_env(), image_root, err) as client:
            t0 = time.monotonic()
            tools = await client.list_tools()
            assert [t["name"] for t in tools] == STEERING and time.monotonic() - t0 < 5
            ids: list[str] = []
            replies = []
            for name, turn in TURNS:
                res = await client.call(_turn_args(turn, ids), name=name)
                assert res.get("isError") is not True, (name, res)
                replies.append(res)
                if name != "inspect_result":
                    ids.append(res["structuredContent"]["result_id"])
            status = json.loads((await client.read("segzero://status"))[0]["text"])
    first, seen, refined, picked = (r.get("structuredContent") for r in replies)
    # the README's abbreviated replies
    assert "#0: box [172, 18, 410, 300]; score 0.70" in _text(replies[0]) and "label 'cup'" in _text(replies[0])
    assert "#1: box none; point (365, 285); score 0.64" in _text(replies[0])
    assert "- #0 box [172, 18, 410, 300] score 0.70 area 2,871 px (1.2% of the image); label 'cup'" in _text(replies[1])
    assert "- #1 box none points (365, 285) score 0.64 area 4,494 px (1.9% of the image); label 'spoon'" in _text(
        replies[1])
    assert "#1: box none; points (365, 285), (405, 110)" in _text(replies[2])
    assert "#0: box none; points (365, 285), (405, 110)" in _text(replies[3])
    assert [(o["index"], o["box"], o["points"], o["label"]) for o in first["objects"]] == [
        (0, [172, 18, 410, 300], [], "cup"), (1, None, [[365, 285]], "spoon")]
    assert first["mask_encoding"] == "none" and first["objects"][0]["rle"] is None
    assert [c["type"] for c in replies[1]["content"]] == ["text", "image"] and seen["indices"] == [0, 1]
    assert seen["crops"] is True and "#1" in _text(replies[1])
    assert refined["result_id"] != first["result_id"]
    assert refined["objects"][1]["points"] == [[365, 285], [405, 110]]
    assert [o["label"] for o in picked["objects"]] == ["spoon", "cup"]
    assert picked["objects"][0]["rle"] is not None and len(set(ids)) == 3
    assert status["models"]["reasoner"] == "none" and status["state"] == "ready"
    assert "no reasoner" in errlog.read_text()


@pytest.mark.slow
async def test_stdio_reasoner_none_lists_tools_while_the_segmenter_loads(kit, image_root, tmp_path):
    import os

    folder = tmp_path / "slow-segmenter"
    folder.mkdir()
    (folder / "load_s").write_text("60")
    env = kit.server_env()
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), env["PYTHONPATH"]])
    args = ["-m", "segzero_tool.mcp_server", "--reasoner", "none", "--segmenter", str(folder),
            "--segmenter-backend", "steer_plugins:SlowLoadingSegmenter", "--allow-root", str(image_root)]
    with open(tmp_path / "stderr.txt", "w") as err:
        async with kit.connect_stdio(args, env, image_root, err) as client:
            t0 = time.monotonic()
            tools = await client.list_tools()
            status = json.loads((await client.read("segzero://status"))[0]["text"])
            stale = await client.call({"result_id": "0123456789abcdef"}, name="inspect_result")
            elapsed = time.monotonic() - t0
    assert [t["name"] for t in tools] == STEERING
    assert status["state"] == "loading" and status["models"]["reasoner"] == "none"
    assert stale["isError"] is True and "unknown result id" in _text(stale)  # answered without the models
    assert elapsed < 10, elapsed


# --- segment_by_reasoning(verify=true): the self-check loop -------------------------------------------


async def test_segment_by_reasoning_verify_keeps_what_the_verifier_keeps(steer_server, kit, image_root):
    from segzero_tool.pipeline import SegZeroPipeline

    reasoner = kit.ScriptedReasoner([kit.ANSWER, '<think>only #1</think><answer>{"keep": [1]}</answer>'])
    async with kit.connect_memory(steer_server(SegZeroPipeline(reasoner, kit.BoxSegmenter()))) as client:
        (tool,) = [t for t in await client.list_tools() if t["name"] == "segment_by_reasoning"]
        props = tool["inputSchema"]["properties"]
        assert props["verify"]["default"] is False and props["verify_rounds"]["default"] == 2
        assert "verification" in tool["outputSchema"]["properties"]
        res = await client.call({"image": "coffee.png", "query": "the cup", "verify": True})
        plain = await client.call({"image": "coffee.png", "query": "the cup"})
        bad = await client.call({"image": "coffee.png", "query": "the cup", "verify": True, "verify_rounds": 9})
    assert res.get("isError") is not True, res
    out = res["structuredContent"]
    assert [o["box"] for o in out["objects"]] == [kit.BOXES[1]]
    assert out["verification"] is not None and "verif" in " ".join(out["parse_issues"])
    assert len(reasoner.calls) == 3  # reason, verify; then the plain call reasons only
    assert plain["structuredContent"]["verification"] is None and len(plain["structuredContent"]["objects"]) == 2
    assert bad["isError"] is True


async def test_an_answer_does_not_wait_for_the_overlay_resource(steer_server, kit, image_root, monkeypatch):
    """Without include_overlay the overlay.png resource is drawn after the answer; reading it waits for it."""
    import asyncio
    import threading

    from segzero_tool.mcp_server import service as service_mod

    started, release = threading.Event(), threading.Event()
    real = service_mod._overlay_png

    def slow(result, max_side):
        started.set()
        assert release.wait(20)
        return real(result, max_side)

    monkeypatch.setattr(service_mod, "_overlay_png", slow)
    async with kit.connect_memory(steer_server()) as client:
        res = await client.call({"image": str(image_root / "coffee.png"), "objects": [{"box": [10, 10, 100, 100]}]},
                                name="segment_by_prompts")
        assert res.get("isError") is not True and started.wait(20)  # answered while the drawing waits
        rid = res["structuredContent"]["result_id"]
        reading = asyncio.ensure_future(client.read(f"segzero://results/{rid}/overlay.png"))
        await asyncio.sleep(0.2)
        assert not reading.done()  # the read waits for the drawing ...
        release.set()
        (content,) = await reading  # ... and then gets it
    import base64

    assert base64.b64decode(content["blob"])[:4] == b"\x89PNG"
