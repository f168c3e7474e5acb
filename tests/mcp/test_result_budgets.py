"""Results sized for an agent's context: 50 objects with detailed masks on a 3000x2000 image.

Through a real MCP client: the text content stays under 8,000 characters and holds no base64, the
whole tool result stays under ``--max-result-bytes`` (512 KiB by default), every object keeps its
box, points, score, area and mask URI, and the masks that did not fit are listed with their URIs and
the reason. A property test drives :func:`encode_result` over object counts, image sizes, mask
detail, encodings and budgets.
"""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from segzero_tool.segmenters.base import Segmenter, SegmenterOutput

pytestmark = pytest.mark.anyio

_B64_RUN = re.compile(r"[A-Za-z0-9+/]{200,}")


class SpeckledSegmenter(Segmenter):
    """Masks that fill each box with fine random speckle: worst case for RLE and polygons."""

    name = "speckled"
    model_id = "speckled"

    def __init__(self, density: float = 0.5, seed: int = 0) -> None:
        self.density, self.seed = density, seed

    def segment(self, image, prompts):
        h, w = image.shape[:2]
        rng = np.random.default_rng(self.seed)
        masks = np.zeros((len(prompts), h, w), bool)
        for k, p in enumerate(prompts):
            x1, y1, x2, y2 = p.box
            masks[k, y1:y2 + 1, x1:x2 + 1] = rng.random((y2 - y1 + 1, x2 - x1 + 1)) < self.density
        return SegmenterOutput(masks, np.full(len(prompts), 0.9, np.float32))


def fifty_objects() -> str:
    objs = []
    for i in range(50):
        x, y = 20 + (i % 10) * 80, 20 + (i // 10) * 160
        objs.append({"bbox_2d": [x, y, x + 70, y + 150], "point_2d": [x + 35, y + 75], "label": f"thing {i}"})
    return "<think>" + "Many things are visible. " * 40 + "</think><answer>" + json.dumps(objs) + "</answer>"


@pytest.fixture
def big_image(image_root):
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 255, (2000, 3000, 3), dtype=np.uint8)
    path = image_root / "big.png"
    Image.fromarray(pixels).save(path, compress_level=1)
    return path


def _wire(res: dict) -> int:
    return len(json.dumps(res, ensure_ascii=False).encode("utf-8"))


@pytest.mark.slow
@pytest.mark.parametrize("encoding", ["rle", "polygons"])
async def test_fifty_detailed_masks_on_a_3000x2000_image_stay_within_the_budgets(make_server, kit, big_image,
                                                                                 encoding):
    server = make_server(reasoner=kit.ScriptedReasoner(fifty_objects()), segmenter=SpeckledSegmenter(0.5))
    async with kit.connect_memory(server) as client:
        res = await client.call({"image": "big.png", "query": "every thing", "mask_encoding": encoding,
                                 "include_overlay": True})
        out = res["structuredContent"]
        assert res.get("isError") is not True and len(out["objects"]) == 50
        assert _wire(res) <= 512 * 1024, _wire(res)
        (text,) = [c["text"] for c in res["content"] if c["type"] == "text"]
        assert len(text) < 8000 and not _B64_RUN.search(text)
        for o in out["objects"]:
            assert o["box"] and o["points"] and o["score"] == pytest.approx(0.9) and o["area"] > 0
            assert o["mask_uri"].startswith(f"segzero://results/{out['result_id']}/objects/")
        left = {m["index"]: m["mask_uri"] for m in out["masks_left_out"]}
        inline = {o["index"] for o in out["objects"] if o[encoding] is not None}
        assert left and inline | set(left) == set(range(50)) and not inline & set(left)
        assert all(left[i] == out["objects"][i]["mask_uri"] for i in left)
        assert "--max-result-bytes" in out["masks_left_out_reason"]
        assert f"Masks of {len(left)} object(s)" in text and out["result_uri"] in text
        (img,) = [c for c in res["content"] if c["type"] == "image"]
        Image.open(io.BytesIO(base64.b64decode(img["data"]))).verify()
        # a left-out mask is readable as its resource, at full resolution
        i = min(left)
        (blob,) = await client.read(left[i])
        mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(blob["blob"]))))
        assert mask.shape == (2000, 3000) and int((mask > 0).sum()) == out["objects"][i]["area"]


@pytest.mark.slow
async def test_a_smaller_budget_is_honoured_and_none_needs_no_leaving_out(make_server, kit, big_image):
    server = make_server(reasoner=kit.ScriptedReasoner(fifty_objects()), segmenter=SpeckledSegmenter(0.3),
                         max_result_bytes=100_000)
    async with kit.connect_memory(server) as client:
        small = await client.call({"image": "big.png", "query": "every thing"})
        boxes = await client.call({"image": "big.png", "query": "every thing", "mask_encoding": "none"})
    assert _wire(small) <= 100_000 and len(small["structuredContent"]["masks_left_out"]) >= 45
    assert boxes["structuredContent"]["masks_left_out"] == [] and _wire(boxes) < 100_000


def _result(n: int, w: int, h: int, density: float, seed: int):
    from segzero_tool.parsing import ParseStatus
    from segzero_tool.result import SegmentationResult, SegmentedObject

    rng = np.random.default_rng(seed)
    objects = []
    for i in range(n):
        x1, y1 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x2, y2 = int(rng.integers(x1, w)), int(rng.integers(y1, h))
        mask = np.zeros((h, w), bool)
        mask[y1:y2 + 1, x1:x2 + 1] = rng.random((y2 - y1 + 1, x2 - x1 + 1)) < density
        objects.append(SegmentedObject(box=(x1, y1, x2, y2), points=((x1, y1),), score=0.5, mask=mask,
                                       label="big red mug " * int(rng.integers(0, 30)) or None, issues=("clamped",) * (i % 3)))
    return SegmentationResult(query=("what can I drink? " * 111)[:1999], prompt_format="visionreasoner", reasoning="why " * 3000,
                              raw_output="", parse_status=ParseStatus.OK, image_size=(w, h), objects=objects,
                              parse_issues=tuple(f"issue {i}" for i in range(n)), timings={"total": 1.0},
                              frame_size=(840, 840), truncated=False, image=np.zeros((h, w, 3), np.uint8))


def test_text_never_cuts_a_uri_with_long_object_lines():
    from segzero_tool.mcp_server.results import encode_result
    from segzero_tool.parsing import ParseStatus
    from segzero_tool.result import SegmentationResult, SegmentedObject

    objects = [SegmentedObject(box=(1000 + i, 1234 + i, 5000 + i, 5432 + i), points=((3000 + i, 3333 + i),),
                               score=0.5, label="a long label for this object " * 2) for i in range(50)]
    result = SegmentationResult(query="every thing", prompt_format="visionreasoner", reasoning="why " * 300,
                                raw_output="", parse_status=ParseStatus.OK, image_size=(6000, 6000), objects=objects,
                                parse_issues=(), timings={}, frame_size=(840, 840), truncated=False)
    enc = encode_result(result, "0123456789abcdef", mask_encoding="none", max_bytes=524_288)
    assert 7000 < len(enc.text) < 8000 and enc.text.endswith("/result.json.")
    assert "segzero://results/0123456789abcdef/result.json" in enc.text and "more object(s)" in enc.text


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(0, 100), w=st.integers(1, 400), h=st.integers(1, 400), density=st.sampled_from([0.0, 0.05, 0.5, 1]),
       encoding=st.sampled_from(["rle", "polygons", "none"]), budget=st.sampled_from([65_536, 200_000, 524_288]),
       overlay=st.booleans(), seed=st.integers(0, 2**16))
def test_encoded_results_always_fit_their_budgets(n, w, h, density, encoding, budget, overlay, seed):
    from segzero_tool.mcp_server.results import encode_result

    result = _result(n, w, h, density, seed)
    picture = result.overlay(max_side=256) if overlay else None
    enc = encode_result(result, "abc", mask_encoding=encoding, max_bytes=budget, picture=picture)
    out = enc.output
    assert enc.wire_bytes() <= budget
    assert len(enc.text) < 8000 and not _B64_RUN.search(enc.text)
    for uri in (out.result_uri, out.union_mask_uri, out.overlay_uri):  # never cut off
        assert uri in enc.text
    assert len(out.objects) == n and all(o.mask_uri for o in out.objects)
    key = {"rle": "rle", "polygons": "polygons"}.get(encoding)
    if key:
        inline = {o.index for o in out.objects if getattr(o, key) is not None}
        left = {m.index for m in out.masks_left_out}
        assert inline | left == {i for i, o in enumerate(result.objects)} and not inline & left
