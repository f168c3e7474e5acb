"""The result type and its conversions: RLE, polygons, PNGs, overlay, JSON round trip."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from segzero_tool.masks import mask_bbox, mask_to_polygons, polygons_to_mask, rle_area, rle_decode, rle_encode
from segzero_tool.parsing import ParseStatus
from segzero_tool.result import SegmentationResult, SegmentedObject


def _disc(h, w, cx, cy, r):
    yy, xx = np.mgrid[:h, :w]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


def _ring(h, w):
    return _disc(h, w, 40, 30, 20) & ~_disc(h, w, 40, 30, 10)


def _l_shape(h, w):
    m = np.zeros((h, w), bool)
    m[5:50, 5:15] = True
    m[40:50, 5:60] = True
    return m


MASKS = {
    "disc": _disc(60, 80, 30, 30, 15),
    "ring": _ring(60, 80),
    "l": _l_shape(60, 80),
    "pixel": np.pad(np.ones((1, 1), bool), ((10, 49), (10, 69))),
    "empty": np.zeros((60, 80), bool),
    "full": np.ones((60, 80), bool),
}


@pytest.mark.parametrize("name", list(MASKS))
def test_rle_round_trip_identical(name):
    m = MASKS[name]
    rle = rle_encode(m)
    assert rle["size"] == [60, 80] and isinstance(rle["counts"], str)
    back = rle_decode(rle)
    assert back.dtype == bool and np.array_equal(back, m)
    assert rle_encode(back) == rle
    assert rle_area(rle) == int(m.sum())
    json.dumps(rle)  # serialisable


def test_rle_decode_uncompressed_counts():
    m = MASKS["l"]
    # column-major run lengths starting with zeros
    flat = m.T.reshape(-1).astype(np.uint8)
    counts, cur, n = [], 0, 0
    for v in flat:
        if v == cur:
            n += 1
        else:
            counts.append(n)
            cur, n = v, 1
    counts.append(n)
    assert np.array_equal(rle_decode({"size": [60, 80], "counts": counts}), m)


@pytest.mark.parametrize("name", ["disc", "l", "full", "ring"])
def test_polygon_round_trip_close(name):
    m = MASKS[name]
    polys = mask_to_polygons(m, tolerance=0)
    back = polygons_to_mask(polys, 60, 80)
    # outer contours only: the ring's hole is filled, so compare with the filled shape for it
    target = _disc(60, 80, 40, 30, 20) if name == "ring" else m
    iou = (back & target).sum() / (back | target).sum()
    assert iou > 0.95, iou


def test_polygons_of_empty_mask():
    assert mask_to_polygons(MASKS["empty"]) == []
    assert mask_to_polygons(MASKS["pixel"])  # a single pixel still yields a polygon


def test_mask_bbox():
    assert mask_bbox(MASKS["l"]) == (5, 5, 59, 49)
    assert mask_bbox(MASKS["empty"]) is None


def _result(with_masks=True):
    objs = [
        SegmentedObject(box=(15, 15, 45, 45), points=((30, 30),), score=0.9,
                        mask=MASKS["disc"] if with_masks else None, frame_box=(158, 210, 473, 630),
                        frame_points=((315, 420),)),
        SegmentedObject(box=(5, 5, 59, 49), points=(), score=0.5, mask=MASKS["l"] if with_masks else None,
                        label="shelf"),
    ]
    img = np.zeros((60, 80, 3), np.uint8)
    return SegmentationResult(query="q", prompt_format="visionreasoner", reasoning="because",
                              raw_output="<think>because</think>...", parse_status=ParseStatus.OK,
                              image_size=(80, 60), objects=objs, timings={"total": 12.0}, image=img)


def test_result_views():
    r = _result()
    assert r.ok
    assert r.union_mask.sum() == (MASKS["disc"] | MASKS["l"]).sum()
    assert r.masks.shape == (2, 60, 80)
    assert r.boxes.tolist() == [[15, 15, 45, 45], [5, 5, 59, 49]]
    assert r.objects[0].area == int(MASKS["disc"].sum())
    assert "2 object(s)" in r.summary()


def test_to_dict_and_back():
    r = _result()
    d = json.loads(r.to_json("both"))
    assert d["objects"][0]["box"] == [15, 15, 45, 45]
    assert d["objects"][0]["frame_points"] == [[315, 420]]
    assert d["objects"][1]["label"] == "shelf"
    assert "rle" in d["union"] and "polygons" in d["union"]
    back = SegmentationResult.from_dict(json.loads(r.to_json("rle")))
    assert back.parse_status is ParseStatus.OK
    assert np.array_equal(back.objects[0].mask, MASKS["disc"])
    assert back.objects[0].points == ((30, 30),)
    poly = SegmentationResult.from_dict(json.loads(r.to_json("polygons")))
    assert poly.objects[1].mask is not None
    none = r.to_dict("none")
    assert "rle" not in none["objects"][0] and "union" not in none


def test_save_writes_every_file(tmp_path):
    written = _result().save(tmp_path / "out")
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["mask_0.png", "mask_1.png", "mask_union.png", "overlay.png", "result.json"]
    assert set(written) == {"mask_0", "mask_1", "mask_union", "overlay", "result"}
    m0 = np.asarray(Image.open(tmp_path / "out" / "mask_0.png"))
    assert m0.shape == (60, 80) and set(np.unique(m0)) <= {0, 255}
    assert np.array_equal(m0 > 0, MASKS["disc"])
    assert json.loads((tmp_path / "out" / "result.json").read_text())["query"] == "q"
    assert not list((tmp_path / "out").glob("*.tmp"))


def test_overlay_bounded_and_coloured():
    big = _result()
    big.image = np.zeros((60, 80, 3), np.uint8)
    ov = big.overlay(max_side=40)
    assert max(ov.size) == 40 and ov.size == (40, 30)
    full = np.asarray(big.overlay(max_side=None))
    assert full.shape == (60, 80, 3)
    assert full[30, 30].sum() > 0  # the disc is tinted


def test_result_without_masks_serialises():
    r = _result(with_masks=False)
    d = r.to_dict()
    assert d["objects"][0]["area"] == 0 and "rle" not in d["objects"][0]
    assert r.union_mask.sum() == 0


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 25), st.integers(1, 25), st.integers(0, 2**32 - 1), st.floats(0.0, 1.0),
)
def test_rle_encode_matches_pycocotools(h, w, seed, density):
    from pycocotools import mask as mask_utils

    m = np.random.default_rng(seed).random((h, w)) < density
    ref = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    assert rle_encode(m) == {"size": [h, w], "counts": ref["counts"].decode("ascii")}


def test_save_gives_files_the_plain_open_mode(tmp_path):
    import os
    import stat

    if not hasattr(os, "fchmod"):
        pytest.skip("POSIX file modes")
    old = os.umask(0o027)
    try:
        _result().save(tmp_path / "out")
        (tmp_path / "plain").write_text("x")
    finally:
        os.umask(old)
    plain = stat.S_IMODE((tmp_path / "plain").stat().st_mode)
    assert plain == 0o640
    for p in (tmp_path / "out").iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == plain, p.name


def test_save_removes_only_its_own_stale_masks(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for name in ("mask_7.png", "mask_01.png", "mask_x.png", "other.png"):
        (out / name).write_bytes(b"old")
    written = _result().save(out)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["mask_0.png", "mask_01.png", "mask_1.png", "mask_union.png", "mask_x.png", "other.png",
                     "overlay.png", "result.json"]
    assert set(written) == {"mask_0", "mask_1", "mask_union", "overlay", "result"}
    _result().save(out, masks=False)
    assert sorted(p.name for p in out.glob("mask_*.png")) == ["mask_01.png", "mask_x.png"]


def test_to_dict_always_has_the_union_field():
    with_masks = _result().to_dict("rle")
    assert with_masks["union"]["area"] > 0
    without = _result(with_masks=False).to_dict("rle")
    assert "union" in without and without["union"] is None  # masks not computed
    empty = _result()
    empty.objects = []
    d = empty.to_dict("polygons")
    assert d["union"] == {"area": 0, "polygons": []}
    assert "union" not in _result().to_dict("none")  # no mask encoding at all
