"""Reports: results.json / results.md, the worst-samples contact sheet (PNG layout) and HTML."""

from __future__ import annotations

import json

import numpy as np
import pytest
from eval_oracle import OracleReasoner, oracle_answers
from PIL import Image
from scripted import BoxSegmenter

from segzero_tool import SegZeroPipeline
from segzero_tool.eval import EvalDataset, EvalSample, load_eval_dataset, run_evaluation
from segzero_tool.eval.report import (
    CAPTION_LINES,
    CELL_H,
    CELL_W,
    GT_COLOUR,
    HEADER_H,
    LINE_H,
    PAD,
    PRED_COLOUR,
    ROW_H,
    format_table,
    sheet_size,
    worst_records,
)
from segzero_tool.testing.synthetic import write_jsonl


@pytest.fixture
def result(tmp_path, synthetic):
    ds = load_eval_dataset(write_jsonl(synthetic, tmp_path / "data"))
    pipe = SegZeroPipeline(OracleReasoner(oracle_answers(synthetic, garbage=("syn002",))), BoxSegmenter())
    return run_evaluation(pipe, ds, tmp_path / "run", batch_size=4, progress=False, worst=4), ds


def test_results_files(result):
    res, _ = result
    run = res.run_dir
    data = json.loads((run / "results.json").read_text())
    assert data["summary"]["overall"]["giou"] == pytest.approx(res.summary["overall"]["giou"])
    assert data["manifest"]["frame_size"] == [840, 840] and data["manifest"]["rounding"] == "half_up"
    assert data["manifest"]["conventions"]["empty_union"] == "skip"
    assert data["manifest"]["question_strip"] == '."?!'
    assert [w["rank"] for w in data["worst"]] == [1, 2, 3, 4]
    assert data["worst"][0]["id"] == "syn002" and data["worst"][0]["status"] == "failed: no_answer"
    ious = [w["iou"] for w in data["worst"]]
    assert ious == sorted(ious)
    md = (run / "results.md").read_text()
    assert "| overall | 10 | 9 | 1 | 1 | 0 | 0 |" in md and "short queries" in md and "long (sentence) queries" in md
    assert "skip (Seg-Zero repository" in md and "U = \\|GT\\|" in md and "![worst samples](worst.png)" in md
    table = format_table(res)
    assert "gIoU" in table and "cIoU" in table and "visionreasoner" in table and "840x840" in table
    html = (run / "worst.html").read_text()
    assert html.count("data:image/png;base64,") == 4 and "syn002" in html


def test_contact_sheet_layout(result, synthetic):
    res, _ = result
    png = res.run_dir / "worst.png"
    with Image.open(png) as im:
        im.verify()
    im = Image.open(png).convert("RGB")
    assert im.size == sheet_size(4) == (3 * CELL_W + 4 * PAD, HEADER_H + 4 * ROW_H + PAD)
    arr = np.asarray(im).astype(int)
    worst = worst_records(res.records, 4)
    # row 2 (the first with a prediction): ground-truth panel tinted green, prediction panel tinted orange
    row = [r["id"] for r in worst].index(next(r["id"] for r in worst if r["status"] == "ok"))
    top = HEADER_H + row * ROW_H + CAPTION_LINES * LINE_H
    gt_panel = arr[top : top + CELL_H, PAD + CELL_W + PAD : PAD + 2 * CELL_W + PAD]
    pred_panel = arr[top : top + CELL_H, PAD + 2 * (CELL_W + PAD) : PAD + 3 * CELL_W + 2 * PAD]

    def share(panel, colour):
        tint = np.asarray(colour) * 0.7
        return np.mean(np.all(np.abs(panel - tint) < 45, axis=-1))

    assert share(gt_panel, GT_COLOUR) > 0.05 and share(gt_panel, PRED_COLOUR) < 0.01
    assert share(pred_panel, PRED_COLOUR) > 0.05 and share(pred_panel, GT_COLOUR) < 0.01
    image_panel = arr[top : top + CELL_H, PAD : PAD + CELL_W]
    assert image_panel.std() > 10  # the photograph itself, not an empty cell


def test_worst_zero_writes_no_sheet(tmp_path, synthetic):
    ds = load_eval_dataset(write_jsonl(synthetic[:3], tmp_path / "d"))
    pipe = SegZeroPipeline(OracleReasoner(oracle_answers(synthetic)), BoxSegmenter())
    res = run_evaluation(pipe, ds, tmp_path / "run", progress=False, worst=0)
    assert not (tmp_path / "run" / "worst.png").exists() and "worst_png" not in res.files
    assert (tmp_path / "run" / "results.md").exists()


def test_all_skipped_reports_undefined_giou(tmp_path):
    empty = np.zeros((20, 30), bool)
    img = np.full((20, 30, 3), 90, np.uint8)
    ds = EvalDataset([EvalSample("e1", "the ghost", img, empty), EvalSample("e2", "the other ghost", img, empty)],
                     name="ghosts", kind="memory", location="<memory>")
    answers = oracle_answers([type("S", (), {"id": s.id, "query": s.query, "mask": empty})() for s in ds])
    pipe = SegZeroPipeline(OracleReasoner(answers), BoxSegmenter())
    res = run_evaluation(pipe, ds, tmp_path / "run", progress=False)
    o = res.summary["overall"]
    assert np.isnan(o["giou"]) and o["ciou"] == 0.0 and o["skipped_empty_union"] == 2
    data = json.loads((tmp_path / "run" / "results.json").read_text())
    assert data["summary"]["overall"]["giou"] is None and data["summary"]["overall"]["ciou"] == 0.0
    assert any("gIoU is undefined" in n for n in data["notes"])
    assert "gIoU is undefined" in (tmp_path / "run" / "results.md").read_text()
    assert "n/a" in format_table(res)
    assert not (tmp_path / "run" / "worst.png").exists()  # nothing scored, nothing to show
    zero = run_evaluation(SegZeroPipeline(OracleReasoner(answers), BoxSegmenter()), ds, tmp_path / "run",
                          empty_union="zero", progress=False)
    assert zero.summary["overall"]["giou"] == 0.0 and zero.summary["overall"]["counted"] == 2
