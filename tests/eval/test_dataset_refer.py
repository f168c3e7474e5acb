"""RefCOCO / RefCOCO+ / RefCOCOg in LISA's refer_seg layout; every loader sets ``EvalSample.image_id``."""

from __future__ import annotations

import json
import os
import pickle
import shutil

import numpy as np
import pytest
from eval_oracle import oracle_answers, write_oracle_folder
from PIL import Image

from segzero_tool.cli import main
from segzero_tool.eval.dataset_refer import load_refer_folder, read_refs_pickle
from segzero_tool.eval.datasets import DatasetError, load_eval_dataset
from segzero_tool.masks import rle_encode
from segzero_tool.testing.synthetic import (
    REFER_IMAGES,
    REFER_RLE_BOX,
    hub_dataset,
    write_jsonl,
    write_lisa,
    write_refer_folder,
)


@pytest.fixture
def refer(tmp_path):
    return write_refer_folder(tmp_path)


def _polygon_area(flat):
    xs, ys = np.asarray(flat[0::2]), np.asarray(flat[1::2])
    return 0.5 * abs(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1)))


def _edit_instances(folder, fn):
    data = json.loads((folder / "instances.json").read_text())
    fn(data)
    (folder / "instances.json").write_text(json.dumps(data))


def _ann(data, ann_id):
    return next(a for a in data["annotations"] if a["id"] == ann_id)


# --- loading ---------------------------------------------------------------------------------------


def test_load_eval_dataset_reads_a_refer_folder(refer):
    ds = load_eval_dataset(refer)
    assert (ds.kind, ds.split, len(ds)) == ("refer", "val", 6)
    assert ds.describe()["location"] == str((refer / "refs(umd).p").resolve())
    assert [s.id for s in ds] == ["1_10", "1_11", "2_20", "2_21", "3_30", "3_31"]
    s = ds[1]
    assert s.query == "Thing number 1, the one you want."  # the raw text, not the lower-cased `sent`
    assert s.gt_box == (4.0, 6.0, 30.0, 40.0)  # bbox [x, y, w, h] as x1, y1, x2, y2
    assert s.is_sentence is None and s.image_id == "1"
    assert [x.image_id for x in ds] == ["1", "1", "1", "1", "2", "2"]
    assert s.image.endswith("refer_seg/images/mscoco/images/train2014/COCO_train2014_000000000001.jpg")
    assert s.load_image().size == REFER_IMAGES[1]
    assert ds[4].load_image().size == REFER_IMAGES[2]
    # lazy: nothing is decoded until asked for
    assert callable(s.gt_mask) and isinstance(s.image, str)


def test_split_selection_and_errors(refer):
    train = load_eval_dataset(refer, split="train")
    assert train.split == "train" and [s.id for s in train] == ["4_40", "4_41", "5_50", "5_51"]
    assert {s.image_id for s in train} == {"3"}
    with pytest.raises(DatasetError, match=r"no refs in split 'testA'; choose one with --split: train \(2\), val \(3\)"):
        load_eval_dataset(refer, split="testA")


def test_split_by_default_choice_and_errors(tmp_path):
    folder = write_refer_folder(tmp_path / "g")
    (folder / "refs(google).p").write_bytes(pickle.dumps([{"ref_id": 9, "ann_id": 101, "image_id": 1, "split": "val",
                                                           "sentences": [{"raw": "google", "sent_id": 90}]}]))
    assert [s.id for s in load_refer_folder(folder)] == ["1_10", "1_11", "2_20", "2_21", "3_30", "3_31"]  # umd
    assert [s.id for s in load_refer_folder(folder, split_by="google")] == ["9_90"]
    with pytest.raises(DatasetError, match=r"no refs\(unc\).p; split_by must be one of: google, umd"):
        load_refer_folder(folder, split_by="unc")
    # refcoco: unc by default; only one file: that one, whatever the folder is called
    coco = write_refer_folder(tmp_path / "c", dataset="refcoco")
    shutil.copy(coco / "refs(unc).p", coco / "refs(google).p")
    assert load_refer_folder(coco).location.endswith("refs(unc).p")
    odd = write_refer_folder(tmp_path / "o", dataset="mine", split_by="umd")
    assert load_eval_dataset(odd).location.endswith("refs(umd).p")
    shutil.copy(odd / "refs(umd).p", odd / "refs(google).p")
    with pytest.raises(DatasetError, match=r"choose one with split_by= \(google, umd\)"):
        load_refer_folder(odd)


def test_sentences_first_or_all(refer):
    first = load_refer_folder(refer, sentences="first")
    assert [s.id for s in first] == ["1_10", "2_20", "3_30"]
    assert first[0].query == "the object of ref 1"
    assert first.location != load_refer_folder(refer).location  # a resumed run cannot mix the two
    with pytest.raises(DatasetError, match="sentences must be one of all, first"):
        load_refer_folder(refer, sentences="some")


def test_query_falls_back_to_sent_and_python2_text_is_repaired(tmp_path):
    folder = write_refer_folder(tmp_path)
    refs = read_refs_pickle(folder / "refs(umd).p")
    refs[0]["sentences"] = [{"sent": "the lower-cased one", "sent_id": 10}, {"raw": "PLACEHOLDER", "sent_id": 11}]
    raw = pickle.dumps(refs, protocol=2)
    # as Python 2 wrote its byte strings: SHORT_BINSTRING with the UTF-8 bytes of "café" (read as latin-1)
    utf8 = "the café table".encode()
    raw = raw.replace(b"X" + len(b"PLACEHOLDER").to_bytes(4, "little") + b"PLACEHOLDER", b"U" + bytes([len(utf8)]) + utf8)
    (folder / "refs(umd).p").write_bytes(raw)
    ds = load_refer_folder(folder)
    assert ds[0].query == "the lower-cased one"
    assert ds[1].query == "the café table"


# --- masks -----------------------------------------------------------------------------------------


def test_polygon_masks_are_decoded_as_coco(refer):
    from pycocotools import mask as mask_utils

    data = json.loads((refer / "instances.json").read_text())
    ds = load_refer_folder(refer)
    rect = ds.get("1_10").load_gt_mask()
    w, h = REFER_IMAGES[1]
    assert rect.shape == (h, w) and rect.dtype == np.bool_
    expected = np.zeros((h, w), bool)
    expected[6:40, 4:30] = True  # COCO rasterises the integer rectangle x 4..30, y 6..40 as [4, 30) x [6, 40)
    np.testing.assert_array_equal(rect, expected)
    # two parts (a triangle and a rectangle) united: pixels and area
    two = ds.get("2_21").load_gt_mask()
    polys = _ann(data, 102)["segmentation"]
    assert two[20, 48] and two[39, 48] and not two[32, 48] and not two[5, 5]
    area = sum(_polygon_area(p) for p in polys)
    assert abs(int(two.sum()) - area) <= 0.05 * area
    direct = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polys, h, w))).astype(bool)
    np.testing.assert_array_equal(two, direct)
    # fractional vertices (train split)
    tri = load_refer_folder(refer, split="train").get("4_40").load_gt_mask()
    poly = _ann(data, 104)["segmentation"][0]
    assert tri.shape == (64, 48) and tri[15, 20] and not tri[40, 40] and not tri[2, 2]
    assert abs(int(tri.sum()) - _polygon_area(poly)) <= 0.1 * _polygon_area(poly)


def test_rle_annotations_list_string_and_several(refer):
    w, h = REFER_IMAGES[2]
    x1, y1, x2, y2 = REFER_RLE_BOX
    expected = np.zeros((h, w), bool)
    expected[y1:y2, x1:x2] = True
    np.testing.assert_array_equal(load_refer_folder(refer).get("3_30").load_gt_mask(), expected)  # list counts
    _edit_instances(refer, lambda d: _ann(d, 103).update(segmentation=rle_encode(expected)))  # string counts
    np.testing.assert_array_equal(load_refer_folder(refer).get("3_30").load_gt_mask(), expected)
    other = np.zeros((h, w), bool)
    other[0:5, 70:80] = True
    _edit_instances(refer, lambda d: _ann(d, 103).update(segmentation=[rle_encode(expected), rle_encode(other)]))
    np.testing.assert_array_equal(load_refer_folder(refer).get("3_31").load_gt_mask(), expected | other)
    _edit_instances(refer, lambda d: _ann(d, 103).update(segmentation={"counts": "x"}))
    with pytest.raises(DatasetError, match="an RLE mask is"):
        load_refer_folder(refer)


def test_bad_references_are_one_line(refer):
    _edit_instances(refer, lambda d: _ann(d, 102).update(segmentation=[["a", "b"]]))
    with pytest.raises(DatasetError, match="polygons"):
        load_refer_folder(refer)
    _edit_instances(refer, lambda d: d["annotations"].remove(_ann(d, 102)))
    with pytest.raises(DatasetError, match="annotation 102 is not in .*instances.json"):
        load_refer_folder(refer)
    with pytest.raises(DatasetError, match="holds RefCOCO datasets in LISA's refer_seg layout; pass one of"):
        load_eval_dataset(refer.parent)


# --- images ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["lisa", "inside", "train2014"])
def test_image_root_is_found(tmp_path, layout):
    ds = load_eval_dataset(write_refer_folder(tmp_path, images=layout))
    assert ds[0].load_image().size == REFER_IMAGES[1]


def test_image_root_option_and_error(tmp_path):
    folder = write_refer_folder(tmp_path, images="inside")
    elsewhere = tmp_path / "coco" / "train2014"
    shutil.move(str(folder / "images"), str(elsewhere))
    with pytest.raises(DatasetError) as info:
        load_eval_dataset(folder)
    msg = str(info.value)
    assert "no COCO train2014 image folder found" in msg and "image_root=" in msg and "\n" not in msg
    assert str(folder / "images") in msg and str(folder / "train2014") in msg
    assert "refer_seg/images/mscoco/images/train2014" in msg
    ds = load_refer_folder(folder, image_root=elsewhere)
    assert ds[4].load_image().size == REFER_IMAGES[2]
    with pytest.raises(DatasetError, match="image_root .*nowhere: no such folder"):
        load_refer_folder(folder, image_root=tmp_path / "nowhere")


# --- hostile and broken files ----------------------------------------------------------------------


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_runs_code_is_refused_and_never_runs(refer, tmp_path):
    marker = tmp_path / "pwned"
    (refer / "refs(umd).p").write_bytes(pickle.dumps([_Evil(marker)], protocol=2))
    with pytest.raises(DatasetError, match=r"refused: the pickle asks for (posix|os|nt)\.system"):
        load_eval_dataset(refer)
    assert not marker.exists()
    (refer / "refs(umd).p").write_bytes(pickle.dumps({"a": np.int64(1)}))  # harmless classes are refused too
    with pytest.raises(DatasetError, match="refused: the pickle asks for numpy"):
        load_refer_folder(refer)
    (refer / "refs(umd).p").write_bytes(pickle.dumps({"not": "a list"}))
    with pytest.raises(DatasetError, match="holds a list of dicts"):
        load_refer_folder(refer)


@pytest.mark.parametrize(("name", "message"), [
    ("refs(umd).p", "not a readable refs pickle"),
    ("instances.json", "instances.json: not valid JSON"),
])
def test_truncated_files_are_one_line_errors(refer, tmp_path, capsys, no_loading, name, message):
    path = refer / name
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(DatasetError, match=message):
        load_eval_dataset(refer)
    rc = main(["eval", str(refer), "--split", "val", "--out", str(tmp_path / "run"), "--reasoner", "nowhere/x"])
    err = capsys.readouterr().err
    assert rc == 9 and message in err and "Traceback" not in err
    assert err.strip().splitlines() == [err.strip().splitlines()[-1]]
    assert err.strip().startswith("segzero: error:")


# --- the command -----------------------------------------------------------------------------------


def test_cli_eval_on_a_refer_folder(refer, tmp_path, tiny_models, capsys):
    ds = load_eval_dataset(refer, split="val")
    oracle = write_oracle_folder(tmp_path / "oracle", oracle_answers(ds))
    models = ["--reasoner-backend", "eval_oracle:OracleReasoner", "--reasoner", str(oracle),
              "--segmenter", str(tiny_models["segmenter"]), "--device", "cpu"]
    run = tmp_path / "run"
    rc = main(["eval", str(refer), "--split", "val", "--out", str(run), "--worst", "0", *models])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "6 samples (refer, split val)" in err
    results = json.loads((run / "results.json").read_text())
    assert results["summary"]["overall"]["samples"] == 6
    assert results["manifest"]["dataset"]["kind"] == "refer" and results["manifest"]["dataset"]["split"] == "val"
    assert len((run / "samples.jsonl").read_text().splitlines()) == 6


# --- every loader sets image_id --------------------------------------------------------------------


def test_image_id_lisa(tmp_path, synthetic):
    ds = load_eval_dataset(write_lisa(synthetic[:3], tmp_path / "ReasonSeg", split="val"))
    assert [s.image_id for s in ds] == [s.id for s in synthetic[:3]]


def test_image_id_jsonl(tmp_path, synthetic):
    path = write_jsonl(synthetic[:2], tmp_path)
    ds = load_eval_dataset(path)
    assert [s.image_id for s in ds] == [str((tmp_path / "images" / f"{s.id}.png").resolve()) for s in synthetic[:2]]
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[0]["image_id"] = 42
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert load_eval_dataset(path)[0].image_id == "42"


def test_image_id_hub(synthetic):
    pytest.importorskip("datasets")
    ds = load_eval_dataset(hub_dataset(synthetic[:2]))
    assert [s.image_id for s in ds] == [s.id for s in synthetic[:2]]


def test_image_id_refer(refer):
    assert {s.image_id for s in load_eval_dataset(refer)} == {"1", "2"}


def test_eval_sample_image_id_is_optional():
    from segzero_tool.eval.datasets import EvalSample

    s = EvalSample("a", "q", None, None)
    assert s.image_id is None
    img = Image.new("RGB", (2, 2))
    assert EvalSample("b", "q", img, None, None, None, "", "7").image_id == "7"
