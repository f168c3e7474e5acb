"""Dataset loaders: LISA rasterisation (hand-checked pixels), JSONL masks, the hub-copy schema."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segzero_tool.eval.datasets import (
    DatasetError,
    EvalSample,
    lisa_label_map,
    load_eval_dataset,
    rasterize_lisa_shapes,
)
from segzero_tool.masks import mask_to_png_bytes, rle_encode
from segzero_tool.testing.synthetic import hub_dataset, write_jsonl, write_lisa

# An 8 x 6 image. File order is NOT fill order: shapes are drawn largest first.
SHAPES = [
    # S2, target, area 2: float vertices truncate to (3,3), (4,3), (4,3): a 2-pixel line, drawn last
    {"label": "target", "points": [[3.9, 3.2], [4.7, 3.2], [4.7, 3.9]]},
    # S1, ignore, area 9: x 1..3, y 1..3
    {"label": "ignore", "points": [[1, 1], [3, 1], [3, 3], [1, 3]]},
    # S0, target, area 30: x 0..5, y 0..4, drawn first
    {"label": "target", "points": [[0, 0], [5, 0], [5, 4], [0, 4]]},
    # a flag shape covering everything: skipped
    {"label": "Flag", "points": [[0, 0], [7, 0], [7, 5], [0, 5]]},
    # S4, ignore, area 18: x 5..7, y 0..5, drawn second (over S0's column 5)
    {"label": "ignore_2", "points": [[5, 0], [7, 0], [7, 5], [5, 5]]},
]
I = 255  # noqa: E741
EXPECTED_LABELS = np.array([
    [1, 1, 1, 1, 1, I, I, I],
    [1, I, I, I, 1, I, I, I],
    [1, I, I, I, 1, I, I, I],
    [1, I, I, 1, 1, I, I, I],
    [1, 1, 1, 1, 1, I, I, I],
    [0, 0, 0, 0, 0, I, I, I],
], dtype=np.uint8)


def test_lisa_label_map_fill_order_ignore_and_flag():
    labels = lisa_label_map(SHAPES, 6, 8)
    assert labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, EXPECTED_LABELS)


def test_lisa_ignore_switch():
    fg = rasterize_lisa_shapes(SHAPES, 6, 8, ignore_as_foreground=True)
    np.testing.assert_array_equal(fg, EXPECTED_LABELS != 0)
    assert fg.sum() == 5 * 5 + 6 * 3  # every pixel but row 5, columns 0..4
    target = rasterize_lisa_shapes(SHAPES, 6, 8, ignore_as_foreground=False)
    np.testing.assert_array_equal(target, EXPECTED_LABELS == 1)
    assert target.sum() == 5 + 2 + 2 + 3 + 5
    assert target[3, 3] and not target[3, 2]  # the small target is drawn over the ignore square


def test_lisa_triangle_and_several_target_polygons():
    shapes = [{"label": "target", "points": [[0, 0], [4, 0], [0, 4]]},
              {"label": "target", "points": [[6, 4], [6, 4], [6, 4]]}]  # a single pixel
    m = rasterize_lisa_shapes(shapes, 5, 7)
    expected = np.zeros((5, 7), bool)
    for y in range(5):
        expected[y, : 5 - y] = True  # x + y <= 4, edges included
    expected[4, 6] = True
    np.testing.assert_array_equal(m, expected)


def test_lisa_equal_areas_later_shape_drawn_first():
    # two 2x2 squares overlapping in one pixel, same area: the later one is drawn first, the earlier on top
    a = {"label": "target", "points": [[0, 0], [1, 0], [1, 1], [0, 1]]}
    b = {"label": "ignore", "points": [[1, 1], [2, 1], [2, 2], [1, 2]]}
    assert lisa_label_map([a, b], 3, 3)[1, 1] == 1
    assert lisa_label_map([b, a], 3, 3)[1, 1] == 255


def _lisa_folder(tmp_path, shapes=SHAPES, size=(8, 6), text=("What should be segmented here?", "alt")):
    d = tmp_path / "ReasonSeg" / "val"
    d.mkdir(parents=True)
    Image.new("RGB", size, (10, 20, 30)).save(d / "img_a.jpg")
    (d / "img_a.json").write_text(json.dumps({"text": list(text), "is_sentence": True, "shapes": shapes}))
    return tmp_path / "ReasonSeg"


def test_lisa_folder_loader(tmp_path):
    root = _lisa_folder(tmp_path)
    (root / "test").mkdir()
    (root / "test" / "x.json").write_text("{}")
    with pytest.raises(DatasetError, match="choose one with --split"):
        load_eval_dataset(root)
    with pytest.raises(DatasetError, match="no split folder 'train'"):
        load_eval_dataset(root, split="train")
    ds = load_eval_dataset(root, split="val")
    assert (ds.kind, ds.split, len(ds)) == ("lisa", "val", 1)
    s = ds[0]
    assert (s.id, s.query, s.is_sentence, s.gt_box) == ("img_a", "What should be segmented here?", True, None)
    np.testing.assert_array_equal(s.load_gt_mask(), EXPECTED_LABELS != 0)
    assert s.load_image().size == (8, 6)
    ds2 = load_eval_dataset(root / "val", ignore_as_foreground=False)  # the split folder itself
    np.testing.assert_array_equal(ds2[0].load_gt_mask(), EXPECTED_LABELS == 1)
    assert ds2.describe()["ignore_as_foreground"] is False


def test_lisa_folder_errors(tmp_path):
    root = _lisa_folder(tmp_path, text=())
    with pytest.raises(DatasetError, match="'text' list is missing"):
        load_eval_dataset(root, split="val")
    (root / "val" / "img_a.json").write_text(json.dumps({"text": ["q"], "shapes": []}))
    (root / "val" / "img_a.jpg").unlink()
    with pytest.raises(DatasetError, match="no image next to it"):
        load_eval_dataset(root, split="val")


def test_synthetic_lisa_matches_ground_truth(tmp_path, synthetic):
    folder = write_lisa(synthetic, tmp_path / "lisa", split="val")
    ds = load_eval_dataset(folder)
    assert [s.id for s in ds] == [s.id for s in synthetic]
    for s, ref in zip(ds, synthetic, strict=True):
        assert s.query == ref.query and s.is_sentence == ref.is_sentence
        np.testing.assert_array_equal(s.load_gt_mask(), ref.mask)
        np.testing.assert_array_equal(s.load_image().array, ref.image)


def test_jsonl_png_rle_polygons(tmp_path):
    (tmp_path / "img").mkdir()
    Image.new("RGB", (6, 4), (200, 0, 0)).save(tmp_path / "img" / "a.png")
    mask_png = np.zeros((4, 6), bool)
    mask_png[1:3, 2:5] = True
    (tmp_path / "m.png").write_bytes(mask_to_png_bytes(mask_png))
    mask_rle = np.zeros((4, 6), bool)
    mask_rle[0, :] = True
    mask_rle[3, 5] = True
    rows = [
        {"image": "img/a.png", "query": "png mask", "mask": "m.png", "box": [2, 1, 4, 2]},
        {"id": "r", "image": "img/a.png", "text": ["rle mask", "other"], "mask": rle_encode(mask_rle),
         "is_sentence": True},
        {"image": str(tmp_path / "img" / "a.png"), "query": "polygon", "polygons": [0, 0, 2, 0, 2, 2, 0, 2]},
        {"image": "img/a.png", "query": "xy polygons", "mask": [[[3, 1], [5, 1], [5, 3], [3, 3]]]},
        {"image": "img/a.png", "query": "uncompressed rle", "rle": {"size": [4, 6], "counts": [1, 2, 21]}},
    ]
    path = tmp_path / "data.jsonl"
    path.write_text("# a comment\n\n" + "\n".join(json.dumps(r) for r in rows) + "\n")
    ds = load_eval_dataset(str(path))
    assert ds.kind == "jsonl" and [s.id for s in ds] == ["line000003", "r", "line000005", "line000006", "line000007"]
    masks = [s.load_gt_mask() for s in ds]
    np.testing.assert_array_equal(masks[0], mask_png)
    np.testing.assert_array_equal(masks[1], mask_rle)
    square = np.zeros((4, 6), bool)
    square[0:3, 0:3] = True
    np.testing.assert_array_equal(masks[2], square)
    right = np.zeros((4, 6), bool)
    right[1:4, 3:6] = True
    np.testing.assert_array_equal(masks[3], right)
    col0 = np.zeros((4, 6), bool)
    col0[1:3, 0] = True  # column-major runs: 1 off, 2 on, 21 off
    np.testing.assert_array_equal(masks[4], col0)
    assert ds[0].gt_box == (2.0, 1.0, 4.0, 2.0) and ds[1].is_sentence is True and ds[1].query == "rle mask"


@pytest.mark.parametrize(("line", "message"), [
    ('{"image": "nope.png", "query": "q", "mask": "m.png"}', "image .*nope.png does not exist"),
    ('{"image": "a.png", "mask": "m.png"}', "needs a 'query'"),
    ('{"image": "a.png", "query": "q"}', "needs a mask"),
    ('{"image": "a.png", "query": "q", "polygons": [1, 2]}', "polygon"),
    ('{"image": "a.png", "query": "q", "mask": "m.png", "box": [1, 2]}', "box"),
    ("not json", "not valid JSON"),
])
def test_jsonl_errors_name_the_line(tmp_path, line, message):
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    (tmp_path / "m.png").write_bytes(mask_to_png_bytes(np.ones((4, 4), bool)))
    path = tmp_path / "d.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(DatasetError, match=message) as info:
        load_eval_dataset(path)
    assert f"{path}:1" in str(info.value)


def test_synthetic_jsonl_all_encodings(tmp_path, synthetic):
    ds = load_eval_dataset(write_jsonl(synthetic, tmp_path))
    for s, ref in zip(ds, synthetic, strict=True):
        np.testing.assert_array_equal(s.load_gt_mask(), ref.mask)
        assert s.gt_box == (tuple(float(v) for v in ref.box) if ref.box else None)


def test_hub_schema_in_memory_and_on_disk(tmp_path, synthetic):
    datasets = pytest.importorskip("datasets")
    hf = hub_dataset(synthetic)
    ds = load_eval_dataset(hf)
    assert ds.kind == "memory" and len(ds) == len(synthetic)
    for s, ref in zip(ds, synthetic, strict=True):
        assert s.id == ref.id and s.query == ref.query and s.is_sentence is None
        assert s.gt_box == (tuple(float(v) for v in ref.box) if ref.box else None)
        np.testing.assert_array_equal(s.load_gt_mask(), ref.mask)
        np.testing.assert_array_equal(s.load_image().array, ref.image)
    # a DatasetDict saved to disk, as a downloaded copy would be: the "test" split is the default
    folder = tmp_path / "ReasonSeg_val"
    datasets.DatasetDict({"test": hf.select(range(3)), "extra": hf.select(range(1))}).save_to_disk(str(folder))
    disk = load_eval_dataset(str(folder))
    assert (disk.kind, disk.split, len(disk)) == ("disk", "test", 3)
    np.testing.assert_array_equal(disk[2].load_gt_mask(), synthetic[2].mask)
    assert len(load_eval_dataset(str(folder), split="extra")) == 1
    with pytest.raises(DatasetError, match="no split 'val'; choose one of: test, extra"):
        load_eval_dataset(str(folder), split="val")
    # a single Dataset saved to disk, without a bbox column
    single = tmp_path / "single"
    hub_dataset(synthetic[:2], with_box=False).save_to_disk(str(single))
    d1 = load_eval_dataset(single)
    assert d1.split is None and d1[0].gt_box is None


def test_hub_schema_checks_columns(synthetic):
    datasets = pytest.importorskip("datasets")
    bad = datasets.Dataset.from_dict({"image": [synthetic[0].image.tolist()], "text": ["q"]})
    with pytest.raises(DatasetError, match="missing column"):
        load_eval_dataset(bad)


def test_missing_paths_and_unsupported_files(tmp_path):
    with pytest.raises(DatasetError, match="no such file or folder"):
        load_eval_dataset(str(tmp_path / "missing.jsonl"))
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(DatasetError, match="unsupported dataset file"):
        load_eval_dataset(tmp_path / "x.csv")


def test_a_mistyped_folder_shaped_like_a_hub_id_never_asks_the_hub(tmp_path, monkeypatch):
    """``data/ReasonSeg`` with ./data present (and no ./data/ReasonSeg) is a typo, not ``org/name``."""
    from segzero_tool.eval import datasets as ds_mod

    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(ds_mod, "load_hub_dataset", lambda *a, **k: pytest.fail("the hub was asked"))
    with pytest.raises(DatasetError, match="no such file or folder; data holds no 'ReasonSeg'"):
        load_eval_dataset("data/ReasonSeg")


def test_images_are_used_as_stored_without_exif_rotation(tmp_path):
    img = Image.new("RGB", (6, 4), (0, 0, 0))
    img.putpixel((0, 0), (255, 255, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    img.save(tmp_path / "rot.jpg", exif=exif, quality=100)
    s = EvalSample("a", "q", image=str(tmp_path / "rot.jpg"), gt_mask=np.zeros((4, 6), bool))
    assert s.load_image().size == (6, 4)  # the stored 6 x 4, not the displayed 4 x 6


def test_duplicate_ids_are_made_unique():
    from segzero_tool.eval.datasets import EvalDataset

    samples = [EvalSample("a", "q", None, None), EvalSample("a", "q", None, None), EvalSample("a#2", "q", None, None)]
    ds = EvalDataset(samples, name="x", kind="memory", location="<memory>")
    assert [s.id for s in ds] == ["a", "a#2", "a#2#2"]
    assert len({s.id for s in ds}) == 3


def test_import_segzero_tool_eval_stays_light():
    code = ("import sys, segzero_tool, segzero_tool.eval, segzero_tool.cli; "
            "print(sorted(m for m in ('torch', 'datasets', 'cv2', 'transformers', 'tqdm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_downloaded_hub_repository_folder(tmp_path, synthetic, monkeypatch):
    """A copy fetched with `hf download --repo-type dataset ... --local-dir DIR` (parquet files)."""
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    folder = tmp_path / "ReasonSeg_val"
    hub_dataset(synthetic[:3]).to_parquet(str(folder / "data" / "test-00000-of-00001.parquet"))
    (folder / "README.md").write_text("---\nlicense: cc-by-nc-4.0\n---\n")
    ds = load_eval_dataset(folder)
    assert (ds.kind, ds.split, len(ds)) == ("hub-folder", "test", 3)
    for s, ref in zip(ds, synthetic[:3], strict=True):
        assert s.id == ref.id
        np.testing.assert_array_equal(s.load_gt_mask(), ref.mask)
    assert not (Path.home() / ".cache" / "huggingface" / "datasets" / "ReasonSeg_val").exists()
