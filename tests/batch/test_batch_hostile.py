"""Hostile input through ``segzero batch`` (the public entry point): whatever the table holds, the command ends with
exit 0 (bad rows recorded) or a one-line error with exit 2, never a traceback; and a big picture with many objects."""

from __future__ import annotations

import json

import numpy as np
from batch_support import read_results, script_folder, write_images
from cli_support import run_main, scripted_segmenter_args
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from segzero_tool.masks import rle_decode

_values = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=40), st.text(min_size=3000, max_size=3000),
                    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
                    st.sampled_from(["img/img-000.png", "img/../img/img-001.png", "/nonexistent.png",
                                     "http://example.com/a.png", "img", "", " ", "img/broken.png"]))
_rows = st.lists(st.dictionaries(st.sampled_from(["id", "image", "query", "label", "extra"]), _values, max_size=5),
                 max_size=6)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(rows=_rows, tail=st.sampled_from(["", '{"image": "img/img-000.png", "que', "\x00\xff garbage", "[1, 2]"]))
def test_any_jsonl_table_ends_cleanly(tmp_path_factory, capsys, rows, tail):
    tmp = tmp_path_factory.mktemp("hostile")
    write_images(tmp / "img", 2)
    (tmp / "img" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    table = tmp / "rows.jsonl"
    table.write_bytes(("".join(json.dumps(r) + "\n" for r in rows) + tail).encode("utf-8", "surrogatepass"))
    code, out, err = run_main(capsys, "batch", table, "--out", tmp / "out", "--reasoner-backend",
                              "scripted:ScriptedReasoner", "--reasoner", script_folder(tmp),
                              *scripted_segmenter_args(tmp), "--device", "cpu")
    assert code in (0, 2), err
    assert "unexpected error" not in err and "Traceback" not in err
    if code == 2:
        assert len(err.strip().splitlines()) <= 2 and err.strip().splitlines()[-1].startswith("segzero: error:")
    else:
        recs = read_results(tmp / "out")
        assert all(r["status"] in ("ok", "error") for r in recs)
        assert all(r["error"] for r in recs if r["status"] == "error")


def test_a_3000_by_2000_picture_with_50_objects(tmp_path, capsys):
    from batch_support import box_answer

    w, h = 3000, 2000
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(tmp_path / "big.jpg", quality=80)
    boxes = [(40 * i, 30 * i, 40 * i + 120, 30 * i + 90) for i in range(50)]
    (tmp_path / "in").mkdir()
    (tmp_path / "big.jpg").rename(tmp_path / "in" / "big.jpg")
    reasoner = script_folder(tmp_path, [box_answer(boxes, w, h)])
    code, out, err = run_main(capsys, "batch", tmp_path / "in", "--query", "every box", "--out", tmp_path / "out",
                              "--png-masks", "--reasoner-backend", "scripted:ScriptedReasoner", "--reasoner", reasoner,
                              *scripted_segmenter_args(tmp_path), "--device", "cpu")
    assert code == 0, err
    (rec,) = read_results(tmp_path / "out")
    assert rec["image_size"] == [w, h] and len(rec["objects"]) == 50
    for o in rec["objects"]:
        assert rle_decode(o["mask"]).shape == (h, w) and o["area"] > 0
    assert len(list((tmp_path / "out" / "masks").glob("*.png"))) == 50
    coco = json.loads((tmp_path / "out" / "coco.json").read_text())
    assert len(coco["annotations"]) == 50 and coco["images"][0]["width"] == w
    assert "50 objects" in out
