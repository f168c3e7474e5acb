"""The COCO export of batch records, read back with pycocotools as users' tools read it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

import segzero_tool
from segzero_tool.batch.coco import CocoExportError, coco_from_records, write_coco
from segzero_tool.masks import mask_bbox, rle_counts, rle_decode, rle_encode


def blob(h: int, w: int, x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y1 : y2 + 1, x1 : x2 + 1] = True
    return m


def obj(k: int, mask: np.ndarray | None, score: float | None = 0.9) -> dict:
    box = (mask_bbox(mask) if mask is not None else None) or (0, 0, 5, 5)
    return {"index": k, "box": list(box), "points": [[box[0], box[1]]], "score": score,
            "area": int(mask.sum()) if mask is not None else 0,
            "mask": rle_encode(mask) if mask is not None else None}


def record(index: int, image: str, query: str, objects=(), *, size=(40, 30), category=None, status="ok",
           error=None, error_type=None, rid=None) -> dict:
    return {"index": index, "id": rid or f"r{index}", "image": image, "query": query, "category": category,
            "status": status, "error": error, "error_type": error_type,
            "image_size": list(size) if size is not None else None, "parse_status": "ok" if status == "ok" else None,
            "reasoning": None, "raw_output": None, "issues": [], "truncated": False, "objects": list(objects)}


def load(tmp_path: Path, records) -> tuple[COCO, dict, Path]:
    path = write_coco(records, tmp_path / "out" / "coco.json")
    return COCO(str(path)), json.loads(path.read_text(encoding="utf-8")), path


def check_masks(coco: COCO, records) -> None:
    """Every annotation is the mask of the object it names, with pycocotools' area and bbox."""
    by_id = {r["id"]: r for r in records}
    for ann in coco.loadAnns(coco.getAnnIds()):
        o = by_id[ann["segzero"]["record_id"]]["objects"][ann["segzero"]["object_index"]]
        want = rle_decode(o["mask"])
        assert np.array_equal(coco.annToMask(ann).astype(bool), want)
        seg = {"size": ann["segmentation"]["size"], "counts": ann["segmentation"]["counts"].encode()}
        assert ann["bbox"] == mask_utils.toBbox(seg).tolist()
        assert ann["area"] == int(mask_utils.area(seg)) == int(want.sum()) == o["area"]
        x1, y1, x2, y2 = o["box"]
        assert ann["bbox"] == ([x1, y1, x2 - x1 + 1, y2 - y1 + 1] if want.any() else [0, 0, 0, 0])
        img = coco.imgs[ann["image_id"]]
        assert [img["height"], img["width"]] == ann["segmentation"]["size"] and ann["iscrowd"] == 0


def test_several_queries_on_one_image_share_the_image(tmp_path):
    h, w = 30, 40
    records = [
        record(0, "imgs/a.jpg", "the red cup", [obj(0, blob(h, w, 2, 3, 10, 12)), obj(1, blob(h, w, 20, 0, 39, 29))]),
        record(1, "imgs/a.jpg", "the table", [obj(0, blob(h, w, 0, 20, 39, 29), score=None)]),
        record(2, "imgs/b.jpg", "the red cup", [obj(0, blob(60, 50, 5, 5, 6, 6))], size=(50, 60)),
    ]
    coco, data, path = load(tmp_path, records)
    assert path == tmp_path / "out" / "coco.json"
    assert data["images"] == [{"id": 1, "file_name": "imgs/a.jpg", "width": 40, "height": 30},
                              {"id": 2, "file_name": "imgs/b.jpg", "width": 50, "height": 60}]
    assert data["categories"] == [{"id": 1, "name": "the red cup", "supercategory": "segzero"},
                                  {"id": 2, "name": "the table", "supercategory": "segzero"}]
    assert [(a["id"], a["image_id"], a["category_id"]) for a in data["annotations"]] == [
        (1, 1, 1), (2, 1, 1), (3, 1, 2), (4, 2, 1)]
    assert [a["score"] for a in data["annotations"]] == [0.9, 0.9, 1.0, 0.9]
    assert data["info"]["version"] == segzero_tool.__version__ and data["info"]["description"] == "segzero batch"
    assert data["licenses"] == [] and "date_created" in data["info"]
    assert len(coco.getAnnIds(imgIds=[1])) == 3 and coco.getCatIds(catNms=["the table"]) == [2]
    check_masks(coco, records)


def test_category_column_names_categories(tmp_path):
    h, w = 30, 40
    records = [
        record(0, "a.jpg", "the mug on the left", [obj(0, blob(h, w, 0, 0, 3, 3))], category="cup"),
        record(1, "b.jpg", "a cup near the sink", [obj(0, blob(h, w, 4, 4, 9, 9))], category="cup"),
        record(2, "c.jpg", "the dog", [obj(0, blob(h, w, 1, 1, 2, 2))], category="dog"),
        record(3, "d.jpg", "no category here", [obj(0, blob(h, w, 1, 1, 1, 1))], category=None),
    ]
    coco, data, _ = load(tmp_path, records)
    assert [c["name"] for c in data["categories"]] == ["cup", "dog", "no category here"]
    assert [a["category_id"] for a in data["annotations"]] == [1, 1, 2, 3]
    check_masks(coco, records)


def test_errors_zero_objects_and_maskless_objects(tmp_path):
    h, w = 30, 40
    records = [
        record(0, "a.jpg", "q0", [obj(0, blob(h, w, 0, 0, 5, 5))]),
        record(1, "missing.jpg", "q1", size=None, status="error", error="no such file", error_type="ImageLoadError"),
        record(2, "", "q2", size=None, status="error", error="no image", error_type="missing_image"),
        record(3, "b.jpg", "q3", [], status="ok"),  # found nothing: the image is listed, no annotation
        record(4, "c.jpg", "q4", status="error", error="too long", error_type="QueryError"),  # decoded, then failed
        record(5, "d.jpg", "q5", [obj(0, None), obj(1, blob(h, w, 39, 29, 39, 29))]),
    ]
    coco, data, _ = load(tmp_path, records)
    assert [i["file_name"] for i in data["images"]] == ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    assert [c["name"] for c in data["categories"]] == ["q0", "q1", "q2", "q3", "q4", "q5"]
    assert [(a["segzero"]["record_id"], a["segzero"]["object_index"]) for a in data["annotations"]] == [
        ("r0", 0), ("r5", 1)]
    check_masks(coco, records)


def test_records_out_of_order_are_taken_by_index(tmp_path):
    h, w = 30, 40
    records = [record(i, f"{i}.jpg", f"q{i}", [obj(0, blob(h, w, i, i, i + 3, i + 2))]) for i in range(4)]
    coco, data, _ = load(tmp_path, [records[2], records[0], records[3], records[1]])
    assert [i["file_name"] for i in data["images"]] == ["0.jpg", "1.jpg", "2.jpg", "3.jpg"]
    assert [a["segzero"]["record_id"] for a in data["annotations"]] == ["r0", "r1", "r2", "r3"]
    check_masks(coco, records)


def test_load_res_and_evaluation(tmp_path):
    h, w = 30, 40
    records = [
        record(0, "a.jpg", "cup", [obj(0, blob(h, w, 2, 3, 20, 12)), obj(1, blob(h, w, 25, 15, 39, 29))]),
        record(1, "a.jpg", "table", [obj(0, blob(h, w, 0, 20, 39, 29))]),
        record(2, "b.jpg", "cup", [obj(0, blob(h, w, 0, 0, 15, 15))]),
    ]
    coco, data, _ = load(tmp_path, records)
    dt = coco.loadRes(data["annotations"])  # the export as detections against itself
    assert len(dt.getAnnIds()) == 4
    for ann in dt.loadAnns(dt.getAnnIds()):
        assert np.array_equal(dt.annToMask(ann), coco.annToMask(coco.anns[ann["id"]]))
    ev = COCOeval(coco, dt, "segm")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)


def test_empty_and_unicode(tmp_path):
    coco, data, _ = load(tmp_path, [])
    assert data["images"] == data["categories"] == data["annotations"] == []
    rec = record(0, "猫/ねこ.jpg", "le chat noir", [obj(0, blob(30, 40, 1, 1, 4, 4))])
    coco, data, path = load(tmp_path, [rec])
    assert data["images"][0]["file_name"] == "猫/ねこ.jpg" and "猫" in path.read_text(encoding="utf-8")
    check_masks(coco, [rec])


def test_uncompressed_counts_are_compressed(tmp_path):
    m = blob(30, 40, 3, 4, 20, 9)
    rec = record(0, "a.jpg", "q", [obj(0, m)])
    rec["objects"][0]["mask"] = {"size": [30, 40], "counts": rle_counts(m)}
    coco, data, _ = load(tmp_path, [rec])
    assert data["annotations"][0]["segmentation"] == rle_encode(m)
    assert np.array_equal(coco.annToMask(data["annotations"][0]).astype(bool), m)


@pytest.mark.parametrize("mask, match", [
    ({"size": [30, 40], "counts": "\x7f\x7f"}, "not a COCO RLE"),
    ({"size": [30, 40], "counts": "0"}, "not a COCO RLE"),
    ({"size": [30], "counts": ""}, "not a COCO RLE"),
    ({"counts": "abc"}, "not a COCO RLE"),
    ("not a dict", "not a COCO RLE"),
    (rle_encode(blob(20, 40, 0, 0, 1, 1)), "the mask is 40 x 20 but image 'a.jpg' is 40 x 30"),
])
def test_damaged_masks_are_typed_errors(tmp_path, mask, match):
    rec = record(0, "a.jpg", "q", [obj(0, blob(30, 40, 0, 0, 1, 1))])
    rec["objects"][0]["mask"] = mask
    with pytest.raises(CocoExportError, match=match):
        coco_from_records([rec])
    assert not (tmp_path / "coco.json").exists()
    with pytest.raises(CocoExportError, match="record 'r0' object 0"):
        write_coco([rec], tmp_path / "coco.json")
    assert not (tmp_path / "coco.json").exists()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(masks=st.lists(arrays(np.bool_, st.tuples(st.integers(1, 24), st.integers(1, 24)),
                             elements=st.booleans()), min_size=1, max_size=4))
def test_any_masks_round_trip(tmp_path, masks):
    records = [record(i, f"{i}.png", "q", [obj(0, m)], size=(m.shape[1], m.shape[0])) for i, m in enumerate(masks)]
    coco, data, _ = load(tmp_path, records)
    assert len(data["annotations"]) == len(masks)
    for ann, m in zip(data["annotations"], masks, strict=True):
        assert np.array_equal(coco.annToMask(ann).astype(bool), m)
        seg = {"size": ann["segmentation"]["size"], "counts": ann["segmentation"]["counts"].encode()}
        assert ann["bbox"] == mask_utils.toBbox(seg).tolist() and ann["area"] == int(m.sum())
    check_masks(coco, records)
