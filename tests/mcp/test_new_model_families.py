"""`segzero-mcp` on the newer model families, started as a client configuration starts it (stdio subprocess):
a reasoner answering on Qwen3-VL's 0-1000 grid with the SAM 3 tracker drawing the masks, and the tiny random
Qwen3-VL loaded through the public transformers path."""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

#: On the 0-1000 grid of a 600 x 400 picture: x * 600 / 1000, y * 400 / 1000.
GRID_ANSWER = '```json\n[{"bbox_2d": [100, 250, 500, 750], "point_2d": [300, 500], "label": "cup"}]\n```'
GRID_BOX = [60, 100, 300, 300]


@pytest.fixture(scope="module")
def new_families(tmp_path_factory):
    from segzero_tool.testing.tiny_qwen3 import build_tiny_qwen3_vl
    from segzero_tool.testing.tiny_sam3 import build_tiny_sam3_tracker

    root = tmp_path_factory.mktemp("new-families")
    return {"qwen3": build_tiny_qwen3_vl(root / "qwen3"), "sam3": build_tiny_sam3_tracker(root / "sam3")}


async def test_grid_answers_and_sam3_masks_over_stdio(kit, new_families, image_root, tmp_path):
    folder = tmp_path / "grid-reasoner"
    folder.mkdir()
    (folder / "script.json").write_text(json.dumps([GRID_ANSWER]))
    args = ["-m", "segzero_tool.mcp_server", "--reasoner", str(folder), "--reasoner-backend",
            "scripted:ScriptedReasoner", "--prompt-format", "qwen3vl", "--segmenter", str(new_families["sam3"]),
            "--device", "cpu", "--allow-root", str(image_root)]
    with open(tmp_path / "stderr.txt", "w") as err:
        async with kit.connect_stdio(args, kit.server_env(), image_root, err) as client:
            res = await client.call({"image": "coffee.png", "query": "the cup"})
            assert res.get("isError") is not True, res
            out = res["structuredContent"]
            assert [o["box"] for o in out["objects"]] == [GRID_BOX]
            assert out["objects"][0]["points"] == [[180, 200]]
            assert out["mask_uris"], out  # the SAM 3 tracker drew a mask
    log = (tmp_path / "stderr.txt").read_text()
    assert "models loaded" in log


async def test_coords_flag_overrides_the_format(kit, new_families, image_root, tmp_path):
    folder = tmp_path / "grid-reasoner"
    folder.mkdir()
    (folder / "script.json").write_text(json.dumps([GRID_ANSWER]))
    args = ["-m", "segzero_tool.mcp_server", "--reasoner", str(folder), "--reasoner-backend",
            "scripted:ScriptedReasoner", "--prompt-format", "qwen3vl", "--coords", "frame", "--segmenter",
            str(new_families["sam3"]), "--device", "cpu", "--allow-root", str(image_root)]
    with open(tmp_path / "stderr.txt", "w") as err:
        async with kit.connect_stdio(args, kit.server_env(), image_root, err) as client:
            res = await client.call({"image": "coffee.png", "query": "the cup"})
            assert res.get("isError") is not True, res
            (obj,) = res["structuredContent"]["objects"]
            assert obj["box"] != GRID_BOX  # read as pixels of the reasoning frame instead


async def test_tiny_qwen3_vl_through_transformers_over_stdio(kit, new_families, image_root, tmp_path):
    """Random weights answer garbage; the point is that the public loading path serves a call."""
    args = ["-m", "segzero_tool.mcp_server", "--reasoner", str(new_families["qwen3"]), "--prompt-format", "qwen3vl",
            "--segmenter", str(new_families["sam3"]), "--device", "cpu", "--max-new-tokens", "8",
            "--allow-root", str(image_root)]
    with open(tmp_path / "stderr.txt", "w") as err:
        async with kit.connect_stdio(args, kit.server_env(), image_root, err) as client:
            res = await client.call({"image": "coffee.png", "query": "the cup", "prompt_format": "qwen3vl"})
            assert res.get("isError") is not True, res  # garbage text is a result with a parse status, not an error
            assert isinstance(res["structuredContent"]["objects"], list)
    assert "Traceback" not in (tmp_path / "stderr.txt").read_text()
