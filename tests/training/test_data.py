"""Training data: solution parsers, GRPO rows, loaders for both published schemas, the mask builder."""

from __future__ import annotations

import json

import datasets
import numpy as np
import pytest
from PIL import Image

from segzero_tool.prompts import build_prompt
from segzero_tool.testing.synthetic import SyntheticSample, write_jsonl
from segzero_tool.training import data as D
from segzero_tool.training import rewards as R

SEG_SOL = "<box>(10,10),(100,100)</box><points>(30,30),(60,60)</points>"
VR_SOL = json.dumps([{"bbox_2d": [10, 10, 100, 100], "point_2d": [30, 30]}])


def test_solution_parsers_reexported():
    assert D.parse_segzero_solution(SEG_SOL) == ([10, 10, 100, 100], ([30, 30], [60, 60]))
    assert D.parse_visionreasoner_solution(VR_SOL) == [{"bbox_2d": [10, 10, 100, 100], "point_2d": [30, 30]}]
    assert D.detect_kind(SEG_SOL) == "segzero"
    assert D.detect_kind(" " + VR_SOL) == "visionreasoner"
    with pytest.raises(D.TrainingDataError):
        D.detect_kind("nothing")


def test_to_grpo_row_shape():
    img = Image.new("L", (30, 20), 7)
    row = D.to_grpo_row(img, "The Red Car.", SEG_SOL, "segzero", frame_size=64)
    assert row["prompt"] == [{"role": "user", "content": [
        {"type": "image"}, {"type": "text", "text": build_prompt("The Red Car.", "segzero")}]}]
    assert "Please find 'the red car' with bbox and points." in row["prompt"][0]["content"][1]["text"]
    assert row["image"].mode == "RGB" and row["image"].size == (64, 64)
    assert row["solution"] == SEG_SOL and row["problem"] == "The Red Car."
    vr = D.to_grpo_row(np.zeros((840, 840, 3), np.uint8), "'a' and 'b'", VR_SOL, "visionreasoner")
    assert vr["image"].size == (840, 840)
    assert vr["prompt"][0]["content"][1]["text"].startswith('\nPlease find "\'a\' and \'b\'" with bboxs and points.')
    with pytest.raises(ValueError):
        D.to_grpo_row(img, "x", SEG_SOL, "other")  # type: ignore[arg-type]


def _segzero_ds(n=3):
    return datasets.Dataset.from_dict({
        "problem": [f"thing {i}" for i in range(n)],
        "solution": [SEG_SOL] * n,
        "image": [Image.new("RGB", (40, 30), (i, 0, 0)) for i in range(n)],
    })


def _vr_ds(n=3):
    return datasets.Dataset.from_dict({
        "id": [f"refcocog_{i}" for i in range(n)],
        "problem": [f"'thing {i}' and 'other'" for i in range(n)],
        "solution": [VR_SOL] * n,
        "image": [Image.new("RGB", (64, 64), (0, i, 0)) for i in range(n)],
        "img_height": [480] * n,
        "img_width": [640] * n,
    })


def _check_rows(ds, kind, n, size=64):
    assert len(ds) == n
    assert set(ds.column_names) == {"prompt", "image", "solution", "problem"}
    row = ds[0]
    assert isinstance(row["image"], Image.Image) and row["image"].size == (size, size)
    content = row["prompt"][0]["content"]
    assert row["prompt"][0]["role"] == "user"
    assert content[0]["type"] == "image"
    assert content[1]["type"] == "text" and content[1]["text"] == ("\n" if kind == "visionreasoner" else "") + build_prompt(row["problem"], kind)


def test_load_in_memory_both_schemas():
    _check_rows(D.load_training_dataset(_segzero_ds(), frame_size=64), "segzero", 3)
    _check_rows(D.load_training_dataset(_vr_ds(), frame_size=64, limit=2), "visionreasoner", 2)
    dd = datasets.DatasetDict({"train": _vr_ds(2)})
    _check_rows(D.load_training_dataset(dd, kind="visionreasoner", frame_size=64), "visionreasoner", 2)


def test_load_from_disk(tmp_path):
    datasets.DatasetDict({"train": _vr_ds(2)}).save_to_disk(str(tmp_path / "vr"))
    _segzero_ds(2).save_to_disk(str(tmp_path / "seg"))
    _check_rows(D.load_training_dataset(tmp_path / "vr", frame_size=64), "visionreasoner", 2)
    _check_rows(D.load_training_dataset(str(tmp_path / "seg"), frame_size=64), "segzero", 2)


def test_load_errors(tmp_path, monkeypatch):
    with pytest.raises(D.TrainingDataError, match="lacks column"):
        D.load_training_dataset(datasets.Dataset.from_dict({"problem": ["x"], "image": [None]}))
    bad = _segzero_ds(1).map(lambda r: {"solution": "<box>(1, 1),(2,2)</box>"})
    with pytest.raises(D.TrainingDataError, match="bad solution"):
        D.load_training_dataset(bad, kind="segzero", frame_size=64)
    (tmp_path / "empty").mkdir()
    with pytest.raises(D.TrainingDataError, match="save_to_disk"):
        D.load_training_dataset(tmp_path / "empty")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    with pytest.raises(D.TrainingDataError) as info:
        D.load_training_dataset("nobody-zz9/no-such-dataset-zz9")
    assert "\n" not in str(info.value) and "offline" in str(info.value)


# --- builder -----------------------------------------------------------------------------------------


def _rect_sample():
    # 84 x 42 image -> factors 10 (x) and 20 (y); a 21 x 21 square at x 20..40, y 10..30
    mask = np.zeros((42, 84), bool)
    mask[10:31, 20:41] = True
    image = np.full((42, 84, 3), 90, np.uint8)
    image[mask] = (220, 40, 40)
    return SyntheticSample("rect", "The red square.", image, mask, [])


def _ring_sample():
    yy, xx = np.mgrid[0:60, 0:60]
    r = np.hypot(xx - 30, yy - 30)
    mask = (r <= 20) & (r >= 10)
    image = np.full((60, 60, 3), 90, np.uint8)
    image[mask] = (40, 80, 220)
    return SyntheticSample("ring", "the blue ring", image, mask, [])


def _empty_sample():
    return SyntheticSample("empty", "nothing", np.zeros((10, 10, 3), np.uint8), np.zeros((10, 10), bool), [])


def test_representative_points_by_hand():
    rect = _rect_sample().mask
    p1, p2 = D.representative_points(rect)
    assert p1 == (30, 20)  # the unique distance-transform maximum (11) of the odd square
    assert rect[p2[1], p2[0]]
    d = np.hypot(*(np.argwhere(rect)[:, ::-1] - np.array(p1)).T)
    assert np.hypot(p2[0] - p1[0], p2[1] - p1[1]) > np.median(d)
    ring = _ring_sample().mask
    q1, q2 = D.representative_points(ring)
    assert ring[q1[1], q1[0]] and ring[q2[1], q2[0]]
    assert 13 <= np.hypot(q1[0] - 30, q1[1] - 30) <= 17  # mid-way through the band
    assert D.representative_points(np.ones((1, 1), bool)) == ((0, 0), (0, 0))
    with pytest.raises(ValueError):
        D.representative_points(np.zeros((3, 3), bool))


@pytest.fixture
def jsonl(tmp_path):
    return write_jsonl([_rect_sample(), _ring_sample(), _empty_sample()], tmp_path / "src",
                       encodings=("png", "rle"), with_box=False)


def test_build_segzero(jsonl, tmp_path):
    out = D.build_training_dataset(jsonl, tmp_path / "seg", kind="segzero", progress=False)
    assert out == tmp_path / "seg"
    dd = datasets.load_from_disk(str(out))
    assert list(dd) == ["train"]
    ds = dd["train"]
    assert ds["id"] == ["rect", "ring"]  # the empty mask is skipped
    assert ds["img_width"] == [84, 60] and ds["img_height"] == [42, 60]
    assert ds[0]["image"].size == (840, 840)
    box, (p1, p2) = D.parse_segzero_solution(ds[0]["solution"])
    assert box == [200, 200, 400, 600]  # (20, 10, 40, 30) scaled by 10 and 20
    assert p1 == [300, 400]  # (30, 20)
    assert ds[0]["problem"] == "The red square."
    for row in ds:
        box, (p1, p2) = D.parse_segzero_solution(row["solution"])
        answer = json.dumps({"bbox": box, "points_1": p1, "points_2": p2})
        text = f"<think>x</think><answer>{answer}</answer>"
        assert sum(f([text], solution=[row["solution"]])[0] for f in R.SEGZERO_REWARDS) == 5.0
        assert R.mask_point_reward([text], mask=[row["mask"]]) == [1.0]
    # the loader turns the built folder into GRPO rows
    rows = D.load_training_dataset(out, frame_size=840)
    assert "mask" in rows.column_names and len(rows) == 2


def test_build_visionreasoner(jsonl, tmp_path):
    out = D.build_training_dataset(jsonl, tmp_path / "vr", progress=False, with_mask=False, limit=2)
    ds = datasets.load_from_disk(str(out))["train"]
    assert set(ds.column_names) == {"id", "problem", "solution", "image", "img_height", "img_width"}
    assert ds["problem"] == ["'the red square'", "'the blue ring'"]
    objs = D.parse_visionreasoner_solution(ds[0]["solution"])
    assert objs == [{"bbox_2d": [200, 200, 400, 600], "point_2d": [300, 400]}]
    ring = D.parse_visionreasoner_solution(ds[1]["solution"])[0]
    x, y = ring["point_2d"]
    assert _ring_sample().mask[int(y * 60 / 840), int(x * 60 / 840)]
    for row in ds:
        text = f"<think>x</think><answer>{row['solution']}</answer>"
        assert sum(f([text], solution=[row["solution"]])[0] for f in R.VISIONREASONER_REWARDS) == 7.0
    assert D.load_training_dataset(out, frame_size=840)[0]["problem"] == "'the red square'"


def test_build_sam_filter_and_errors(jsonl, tmp_path):
    calls = []

    def fake_sam(image, box, point):
        calls.append((box, point))
        mask = np.zeros(image.shape[:2], bool)
        if image.shape[1] == 84:  # reproduce the rectangle exactly, miss the ring
            mask[10:31, 20:41] = True
        return mask

    out = D.build_training_dataset(jsonl, tmp_path / "f", sam_filter=fake_sam, progress=False)
    assert datasets.load_from_disk(str(out))["train"]["id"] == ["rect"]
    assert calls[0] == ((20, 10, 40, 30), (30, 20))
    with pytest.raises(D.TrainingDataError, match="not empty"):
        D.build_training_dataset(jsonl, tmp_path / "f", progress=False)
    with pytest.raises(D.TrainingDataError, match="no usable sample"):
        D.build_training_dataset(jsonl, tmp_path / "g", sam_filter=lambda i, b, p: np.zeros(i.shape[:2], bool),
                                 progress=False)
    assert not (tmp_path / "g").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_loading_keeps_the_stored_bytes_of_frame_sized_images(tmp_path):
    """An RGB 840x840 JPEG / PNG row keeps its bytes (the reference decodes the same bytes); any other image
    is decoded, resized to the frame and stored losslessly; every row reads back as an RGB 840x840 picture."""
    import io
    import json

    import datasets
    from PIL import Image

    def encoded(size, mode="RGB", fmt="JPEG"):
        buf = io.BytesIO()
        Image.new(mode, size, 128 if mode == "L" else (20, 140, 200)).save(buf, format=fmt, quality=95)
        return buf.getvalue()

    sources = [encoded((840, 840)), encoded((840, 840), fmt="PNG"), encoded((600, 400)), encoded((840, 840), "L")]
    sol = json.dumps([{"bbox_2d": [1, 2, 30, 40], "point_2d": [10, 20]}])
    folder = tmp_path / "set"
    datasets.Dataset.from_dict(
        {"problem": ["a", "b", "c", "d"], "solution": [sol] * 4, "image": [{"bytes": b, "path": None} for b in sources]},
        features=datasets.Features({"problem": datasets.Value("string"), "solution": datasets.Value("string"),
                                    "image": datasets.Image()})).save_to_disk(str(folder))
    out = D.load_training_dataset(str(folder))
    stored = out.cast_column("image", datasets.Image(decode=False))["image"]
    assert [s["bytes"] == src for s, src in zip(stored, sources, strict=True)] == [True, True, False, False]
    assert Image.open(io.BytesIO(stored[2]["bytes"])).format == "PNG"  # resized rows: lossless
    for row in out:
        assert row["image"].mode == "RGB" and row["image"].size == (840, 840)
    assert D.stored_frame({"bytes": b"not an image", "path": None}, 840) is None
    assert D.stored_frame(np.zeros((840, 840, 3), np.uint8), 840) is None
