"""End-to-end evaluation with an oracle reasoner: exact numbers, formats agree, resume is lossless."""

from __future__ import annotations

import json

import numpy as np
import pytest
from eval_oracle import OracleReasoner, oracle_answers, question_key
from scripted import BoxSegmenter

from segzero_tool import SegZeroPipeline
from segzero_tool.eval import EvalDataset, EvalRunError, EvalSample, load_eval_dataset, run_evaluation
from segzero_tool.eval.metrics import summarize
from segzero_tool.eval.runner import SAMPLES_FILE, read_records, strip_timings
from segzero_tool.masks import rle_decode
from segzero_tool.testing.synthetic import hub_dataset, write_jsonl, write_lisa

GARBLED = ("syn002",)  # the oracle answers this one with text that does not parse
FRAME = 840


def _box_pipe(synthetic, **oracle_kw):
    return SegZeroPipeline(OracleReasoner(oracle_answers(synthetic, garbage=GARBLED), **oracle_kw), BoxSegmenter())


@pytest.fixture
def jsonl_ds(tmp_path, synthetic):
    return load_eval_dataset(write_jsonl(synthetic, tmp_path / "data"))


def _expected(sample):
    """(status, I, U, box_hit) by hand: the GT box goes into the 840 frame with int(v * 840 / W + 0.5),
    comes back with int(f * W / 840 + 0.5) clamped into the image, and BoxSegmenter fills it."""
    gt = sample.mask
    if sample.id in GARBLED:
        return "failed", 0, int(gt.sum()), False
    if sample.box is None:
        return "ok", 0, 0, None
    w, h = sample.size
    x1, y1, x2, y2 = sample.box

    def there_and_back(v, side):
        return min(side - 1, int(int(v * FRAME / side + 0.5) * side / FRAME + 0.5))

    bx1, bx2 = there_and_back(x1, w), there_and_back(x2, w)
    by1, by2 = there_and_back(y1, h), there_and_back(y2, h)
    pred = np.zeros_like(gt)
    pred[by1 : by2 + 1, bx1 : bx2 + 1] = True
    inter, union = int((pred & gt).sum()), int((pred | gt).sum())
    # box IoU without +1 between the predicted box and the dataset box
    ix = max(0, min(bx2, x2) - max(bx1, x1))
    iy = max(0, min(by2, y2) - max(by1, y1))
    ub = (bx2 - bx1) * (by2 - by1) + (x2 - x1) * (y2 - y1) - ix * iy
    return "ok", inter, union, ix * iy / ub > 0.5


def test_exact_numbers_with_box_segmenter(tmp_path, synthetic, jsonl_ds):
    res = run_evaluation(_box_pipe(synthetic), jsonl_ds, tmp_path / "run", batch_size=4, progress=False)
    expected = {s.id: _expected(s) for s in synthetic}
    got = {r["id"]: (r["status"], r["intersection"], r["union"], r["box_hit"]) for r in res.records}
    assert got == expected
    by_id = {r["id"]: r for r in res.records}
    assert by_id["syn002"]["parse_status"] == "no_answer" and by_id["syn002"]["pred_rle"] is not None
    assert by_id["syn009"]["parse_status"] == "no_objects" and by_id["syn009"]["iou"] is None
    # gIoU / cIoU by hand under both conventions
    counted = [(i, u) for sid, (_, i, u, _) in expected.items() if u > 0]
    giou_skip = sum(i / u for i, u in counted) / len(counted)
    ciou = sum(i for i, _ in counted) / sum(u for _, u in counted)
    overall = res.summary["overall"]
    assert overall["giou"] == pytest.approx(giou_skip, abs=1e-12)
    assert overall["ciou"] == pytest.approx(ciou, abs=1e-12)
    assert (overall["samples"], overall["counted"], overall["skipped_empty_union"], overall["failed"]) == (10, 9, 1, 1)
    hits = [h for (_, _, _, h) in expected.values() if h is not None]
    assert overall["box_accuracy"] == pytest.approx(sum(hits) / len(hits))
    zero = summarize(res.records, "zero")["overall"]
    assert zero["giou"] == pytest.approx(giou_skip * 9 / 10) and zero["ciou"] == pytest.approx(ciou)
    # short (even ids) and long (odd ids) queries
    short = [(i, u) for s in synthetic if not s.is_sentence for (_, i, u, _) in [expected[s.id]] if u > 0]
    assert res.summary["short"]["giou"] == pytest.approx(sum(i / u for i, u in short) / len(short))
    assert res.summary["short"]["samples"] + res.summary["long"]["samples"] == 10
    # the oracle got every request as a batch of at most 4
    assert res.manifest["models"]["reasoner"] == "oracle" and res.manifest["prompt_format"] == "visionreasoner"


def test_formats_agree(tmp_path, synthetic, jsonl_ds):
    pytest.importorskip("datasets")
    lisa = load_eval_dataset(write_lisa(synthetic, tmp_path / "lisa", split="val"))
    hub = load_eval_dataset(hub_dataset(synthetic))
    key = ("id", "status", "intersection", "union", "pred_area", "gt_area", "raw_output")
    runs = []
    for i, ds in enumerate((jsonl_ds, lisa, hub)):
        res = run_evaluation(_box_pipe(synthetic), ds, tmp_path / f"run{i}", batch_size=5, progress=False,
                             report=False)
        runs.append([tuple(r[k] for k in key) for r in res.records])
    assert runs[0] == runs[1] == runs[2]


@pytest.fixture(params=["box", "tiny-sam2"])
def make_pipe(request, synthetic):
    answers = oracle_answers(synthetic, garbage=GARBLED)
    if request.param == "box":
        return lambda **kw: SegZeroPipeline(OracleReasoner(answers, **kw), BoxSegmenter())
    tiny = request.getfixturevalue("tiny_models")
    return lambda **kw: SegZeroPipeline.from_pretrained(OracleReasoner(answers, **kw), str(tiny["segmenter"]),
                                                        device="cpu")


def _no_latency(summary):
    return {g: {k: v for k, v in s.items() if k != "mean_latency_ms"} for g, s in summary.items()}


def test_killed_run_resumes_to_identical_results(tmp_path, jsonl_ds, make_pipe):
    full = run_evaluation(make_pipe(), jsonl_ds, tmp_path / "full", batch_size=3, progress=False, worst=4)
    run = tmp_path / "killed"
    with pytest.raises(RuntimeError, match="simulated"):
        run_evaluation(make_pipe(fail_after=5), jsonl_ds, run, batch_size=3, progress=False)
    assert len(read_records(run / SAMPLES_FILE)) == 3  # the first batch of 3 was written before the crash
    with open(run / SAMPLES_FILE, "a", encoding="utf-8") as fh:  # killed in the middle of writing the 4th
        fh.write('{"id": "syn003", "index": 3, "query": "Which pair of rect')
    pipe = make_pipe()
    resumed = run_evaluation(pipe, jsonl_ds, run, batch_size=3, progress=False, worst=4)
    assert pipe.reasoner.served == 7 and (resumed.computed, resumed.resumed) == (7, 3)
    lines = (run / SAMPLES_FILE).read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["id"] for line in lines] == [s.id for s in jsonl_ds]  # no loss, no duplicate
    assert [strip_timings(r) for r in resumed.records] == [strip_timings(r) for r in full.records]
    assert _no_latency(resumed.summary) == _no_latency(full.summary)
    a = json.loads((tmp_path / "full" / "results.json").read_text())
    b = json.loads((run / "results.json").read_text())
    assert _no_latency(a["summary"]) == _no_latency(b["summary"]) and a["worst"] == b["worst"]
    assert len(resumed.manifest["history"]) == 2
    # running once more computes nothing
    again = make_pipe()
    run_evaluation(again, jsonl_ds, run, batch_size=3, progress=False, report=False)
    assert again.reasoner.served == 0


def test_limit_then_continue(tmp_path, synthetic, jsonl_ds):
    full = run_evaluation(_box_pipe(synthetic), jsonl_ds, tmp_path / "full", batch_size=3, progress=False,
                          report=False)
    run = tmp_path / "run"
    part = run_evaluation(_box_pipe(synthetic), jsonl_ds, run, limit=4, batch_size=3, progress=False)
    assert [r["id"] for r in part.records] == [s.id for s in jsonl_ds[:4]]
    assert part.summary["overall"]["samples"] == 4
    pipe = _box_pipe(synthetic)
    # batch size and the empty-union convention may change between runs; the limit may grow
    rest = run_evaluation(pipe, jsonl_ds, run, batch_size=4, empty_union="zero", progress=False)
    assert pipe.reasoner.served == 6 and pipe.reasoner.calls == [4, 2]
    assert [strip_timings(r) for r in rest.records] == [strip_timings(r) for r in full.records]
    assert _no_latency(rest.summary) == _no_latency(summarize(full.records, "zero"))
    assert rest.manifest["limit"] is None and rest.manifest["conventions"]["empty_union"] == "zero"


def test_other_settings_are_refused_unless_forced(tmp_path, synthetic, jsonl_ds):
    run = tmp_path / "run"
    run_evaluation(_box_pipe(synthetic), jsonl_ds, run, limit=2, progress=False, report=False)
    other = SegZeroPipeline(OracleReasoner(oracle_answers(synthetic)), BoxSegmenter(), max_objects=3)
    with pytest.raises(EvalRunError, match="max_objects: 50 then, 3 now.*--force"):
        run_evaluation(other, jsonl_ds, run, progress=False)
    lisa = load_eval_dataset(write_lisa(synthetic, tmp_path / "lisa"))
    with pytest.raises(EvalRunError, match="dataset.kind: 'jsonl' then, 'lisa' now"):
        run_evaluation(_box_pipe(synthetic), lisa, run, progress=False)
    forced = run_evaluation(other, jsonl_ds, run, limit=3, force=True, progress=False, report=False)
    assert forced.resumed == 0 and forced.computed == 3 and forced.manifest["max_objects"] == 3
    assert len(list(run.glob(f"{SAMPLES_FILE}.replaced-*"))) == 1
    assert len(read_records(run / SAMPLES_FILE)) == 3


def test_corrupt_middle_line_is_an_error(tmp_path, synthetic, jsonl_ds):
    run = tmp_path / "run"
    run_evaluation(_box_pipe(synthetic), jsonl_ds, run, limit=3, progress=False, report=False)
    lines = (run / SAMPLES_FILE).read_text().splitlines()
    lines[1] = lines[1][:20]
    (run / SAMPLES_FILE).write_text("\n".join(lines) + "\n")
    with pytest.raises(EvalRunError, match=r"samples.jsonl:2 is not a JSON record"):
        run_evaluation(_box_pipe(synthetic), jsonl_ds, run, progress=False)


@pytest.mark.parametrize("compat", ["repair", "reference"])
def test_sample_problems_are_recorded_not_raised(tmp_path, synthetic, compat):
    s0 = synthetic[0]
    img = s0.image

    def broken_mask():
        raise ValueError("mask file damaged")

    samples = [
        EvalSample("missing-image", s0.query, str(tmp_path / "nope.png"), s0.mask),
        EvalSample("wrong-size", s0.query, img, s0.mask[:-1]),
        EvalSample("broken-gt", s0.query, img, broken_mask),
        EvalSample("empty-query", "  ", img, s0.mask, gt_box=(0.0, 0.0, 5.0, 5.0)),
        EvalSample("fine", s0.query, img, s0.mask),
    ]
    ds = EvalDataset(samples, name="problems", kind="memory", location="<memory>")
    res = run_evaluation(_box_pipe(synthetic), ds, tmp_path / "run", progress=False, worst=5, compat=compat)
    st = {r["id"]: (r["status"], r["intersection"], r["union"]) for r in res.records}
    area = int(s0.mask.sum())
    # an unreadable image: a penalty in repair mode; skipped in reference mode (multi-object format)
    missing = ("error", 0, area) if compat == "repair" else ("skipped", None, None)
    assert st == {"missing-image": missing, "wrong-size": ("invalid_gt", None, None),
                  "broken-gt": ("invalid_gt", None, None), "empty-query": ("error", 0, area),
                  "fine": ("ok", area, area)}
    by_id = {r["id"]: r for r in res.records}
    assert "no such file" in by_id["missing-image"]["error"] and "damaged" in by_id["broken-gt"]["error"]
    assert by_id["empty-query"]["box_hit"] is False
    o = res.summary["overall"]
    if compat == "repair":
        assert (o["counted"], o["errors"], o["invalid_gt"], o["giou"]) == (3, 2, 2, pytest.approx(1 / 3))
    else:
        assert (o["counted"], o["errors"], o["invalid_gt"], o["skipped_errors"], o["giou"]) == (
            2, 1, 2, 1, pytest.approx(1 / 2))
    assert (tmp_path / "run" / "worst.png").exists()


def test_tiny_sam2_records_are_consistent(tmp_path, synthetic, jsonl_ds, tiny_models):
    pipe = SegZeroPipeline.from_pretrained(OracleReasoner(oracle_answers(synthetic, garbage=GARBLED)),
                                           str(tiny_models["segmenter"]), device="cpu")
    res = run_evaluation(pipe, jsonl_ds, tmp_path / "run", batch_size=4, progress=False, report=False)
    for rec, s in zip(res.records, synthetic, strict=True):
        pred = rle_decode(rec["pred_rle"])
        assert pred.shape == s.mask.shape and rec["pred_area"] == int(pred.sum())
        if rec["status"] == "ok":
            inter = int((pred & s.mask).sum())
            assert (rec["intersection"], rec["union"]) == (inter, int((pred | s.mask).sum()))
            assert rec["n_objects"] == (1 if s.box is not None else 0)
        assert rec["latency_ms"] > 0 and "segment" in rec["timings_ms"]
    assert res.manifest["models"]["segmenter_backend"].endswith("TransformersSam2Segmenter")


# --- reference mode and repair mode (issue #11) -------------------------------------------------------


class _FailingBoxSegmenter(BoxSegmenter):
    """BoxSegmenter that raises for images ``bad_width`` pixels wide (a simulated CUDA error)."""

    def __init__(self, bad_width):
        super().__init__()
        self.bad_width = bad_width

    def segment(self, image, prompts):
        if image.shape[1] == self.bad_width:
            raise RuntimeError("CUDA error: simulated")
        return super().segment(image, prompts)


def test_reference_mode_fails_what_the_reference_cannot_read_and_repair_mode_recovers_it(tmp_path, synthetic,
                                                                                        jsonl_ds):
    answers = oracle_answers(synthetic, garbage=GARBLED)
    quoted = next(s for s in synthetic if s.box is not None and s.id not in GARBLED)
    key = question_key(quoted.query)
    answers[key] = answers[key].replace('"', "'")  # single quotes: the lenient parser reads it, json.loads not
    runs = {}
    for compat in ("reference", "repair"):
        pipe = SegZeroPipeline(OracleReasoner(answers), BoxSegmenter())
        runs[compat] = run_evaluation(pipe, jsonl_ds, tmp_path / compat, batch_size=4, progress=False,
                                      report=False, compat=compat)
    ref = {r["id"]: r for r in runs["reference"].records}
    rep = {r["id"]: r for r in runs["repair"].records}
    assert ref[quoted.id]["status"] == "failed" and ref[quoted.id]["parse_status"] == "invalid_json"
    assert (ref[quoted.id]["intersection"], ref[quoted.id]["union"]) == (0, int(quoted.mask.sum()))
    assert rep[quoted.id]["status"] == "ok" and rep[quoted.id]["intersection"] > 0
    assert runs["reference"].summary["overall"]["giou"] < runs["repair"].summary["overall"]["giou"]
    assert runs["reference"].manifest["compat"] == "reference" and runs["repair"].manifest["compat"] == "repair"
    # the default is reference mode
    default = run_evaluation(SegZeroPipeline(OracleReasoner(answers), BoxSegmenter()), jsonl_ds, tmp_path / "default",
                             progress=False, report=False)
    assert default.manifest["compat"] == "reference"
    assert [strip_timings(r) for r in default.records] == [strip_timings(r) for r in runs["reference"].records]


def test_reference_mode_skips_segmenter_errors_and_goes_on(tmp_path, synthetic, jsonl_ds):
    answers = oracle_answers(synthetic, garbage=GARBLED)
    bad = {s.id for s in synthetic if s.size[0] == 96}
    pipe = SegZeroPipeline(OracleReasoner(answers), _FailingBoxSegmenter(96))
    res = run_evaluation(pipe, jsonl_ds, tmp_path / "ref", batch_size=4, progress=False, worst=3)
    by_id = {r["id"]: r for r in res.records}
    assert len(res.records) == 10 and pipe.reasoner.served == 10  # every sample once, the batches kept
    for sid, rec in by_id.items():
        if sid in bad and sid not in GARBLED and rec["n_objects"] != 0:
            assert rec["status"] == "skipped" and "CUDA error: simulated" in rec["error"]
            assert rec["intersection"] is None and rec["raw_output"]
    skipped = [r for r in res.records if r["status"] == "skipped"]
    assert skipped
    # the others score exactly as without the error
    clean = run_evaluation(SegZeroPipeline(OracleReasoner(answers), BoxSegmenter()), jsonl_ds, tmp_path / "clean",
                           batch_size=4, progress=False, report=False)
    kept = [r for r in clean.records if r["id"] not in {s["id"] for s in skipped}]
    assert [strip_timings(r) for r in kept] == [strip_timings(r) for r in res.records if r["status"] != "skipped"]
    expected = summarize(kept)["overall"]
    o = res.summary["overall"]
    assert o["skipped_errors"] == len(skipped) and o["counted"] == expected["counted"]
    assert o["giou"] == pytest.approx(expected["giou"]) and o["ciou"] == pytest.approx(expected["ciou"])
    md = (tmp_path / "ref" / "results.md").read_text()
    assert f"{len(skipped)} sample(s) skipped" in md and "compat | reference" in md and "skipped (errors)" in md
    # repair mode: the error stops the run, and a resume meets the same sample again
    for _ in range(2):
        with pytest.raises(RuntimeError, match="simulated"):
            run_evaluation(SegZeroPipeline(OracleReasoner(answers), _FailingBoxSegmenter(96)), jsonl_ds,
                           tmp_path / "repair", batch_size=4, progress=False, compat="repair")


def test_reference_mode_penalises_segmenter_errors_in_the_segzero_format(tmp_path, synthetic, jsonl_ds):
    from scripted import ScriptedReasoner

    text = '<think>t</think><answer>{"bbox": [0, 0, 839, 839], "points_1": [5, 5], "points_2": [9, 9]}</answer>'
    pipe = SegZeroPipeline(ScriptedReasoner(text), _FailingBoxSegmenter(96), prompt_format="segzero")
    res = run_evaluation(pipe, jsonl_ds, tmp_path / "run", batch_size=4, progress=False, report=False)
    assert res.manifest["rounding"] == "segzero" and res.manifest["compat"] == "reference"
    for rec, s in zip(res.records, synthetic, strict=True):
        if s.size[0] == 96:
            assert (rec["status"], rec["intersection"], rec["union"]) == ("error", 0, int(s.mask.sum()))
        else:
            assert rec["status"] == "ok"
    assert res.summary["overall"]["skipped_errors"] == 0
    # an unreadable image is a penalty too in this format
    s0 = synthetic[0]
    ds = EvalDataset([EvalSample("missing-image", s0.query, str(tmp_path / "nope.png"), s0.mask)], name="m",
                     kind="memory", location="<memory>")
    pipe = SegZeroPipeline(ScriptedReasoner(text), BoxSegmenter(), prompt_format="segzero")
    rec = run_evaluation(pipe, ds, tmp_path / "missing", progress=False, report=False).records[0]
    assert (rec["status"], rec["intersection"], rec["union"]) == ("error", 0, int(s0.mask.sum()))


def test_a_resume_with_another_compat_is_refused_unless_forced(tmp_path, synthetic, jsonl_ds):
    run = tmp_path / "run"
    run_evaluation(_box_pipe(synthetic), jsonl_ds, run, limit=2, progress=False, report=False)
    with pytest.raises(EvalRunError, match="compat: 'reference' then, 'repair' now.*--force"):
        run_evaluation(_box_pipe(synthetic), jsonl_ds, run, progress=False, compat="repair")
    forced = run_evaluation(_box_pipe(synthetic), jsonl_ds, run, limit=3, progress=False, report=False,
                            compat="repair", force=True)
    assert forced.computed == 3 and forced.manifest["compat"] == "repair"
    # a run folder from before the modes existed was made in repair mode
    manifest = json.loads((run / "manifest.json").read_text())
    del manifest["compat"]
    (run / "manifest.json").write_text(json.dumps(manifest))
    again = run_evaluation(_box_pipe(synthetic), jsonl_ds, run, limit=3, progress=False, report=False, compat="repair")
    assert again.computed == 0 and again.resumed == 3
    with pytest.raises(EvalRunError, match="compat: 'repair' then, 'reference' now"):
        run_evaluation(_box_pipe(synthetic), jsonl_ds, run, progress=False)


def test_the_manifest_records_the_coordinate_convention():
    """A run answered on the 0-1000 grid cannot be resumed as a frame-pixel run (or the reverse); a manifest
    written before `coords` existed counts as `frame`."""
    from segzero_tool.eval.manifest import manifest_differences

    old = {"prompt_format": "grounding", "frame_size": [840, 840]}
    assert manifest_differences(old, {"coords": "frame"}) == []
    assert manifest_differences(old, {"coords": "relative1000"}) == ["coords: 'frame' then, 'relative1000' now"]
    assert manifest_differences({"coords": "relative1000"}, {"coords": "relative1000"}) == []
