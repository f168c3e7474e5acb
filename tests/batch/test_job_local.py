"""The batch job on the local engine, through the public Python API: records, bad rows, resume, refusal of another
job, shards left by an interrupted parallel run, SAM2 work grouped by image, bounded prefetch."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from batch_support import BOXES, SIZE, box_answer, read_results, write_images, write_jsonl
from PIL import Image
from scripted import BoxSegmenter, ScriptedReasoner

from segzero_tool import SegZeroPipeline
from segzero_tool.batch import BatchJobError, LocalEngine, run_batch
from segzero_tool.batch import engine_local as engine_local_mod
from segzero_tool.masks import rle_decode


def _pipe(answers=None, **kw):
    answers = answers or [box_answer(BOXES, *SIZE)]
    return SegZeroPipeline(ScriptedReasoner(answers), BoxSegmenter(), **kw)


def test_folder_records_masks_coco_summary(tmp_path):
    imgs = write_images(tmp_path / "in", 5)
    job = run_batch(_pipe(), tmp_path / "in", tmp_path / "out", query="the squares", png_masks=True, progress=False)
    recs = read_results(tmp_path / "out")
    assert [r["id"] for r in recs] == [p.name for p in imgs]
    assert [r["index"] for r in recs] == list(range(5))
    for r in recs:
        assert r["status"] == "ok" and r["parse_status"] == "ok" and r["query"] == "the squares"
        assert r["image_size"] == list(SIZE)
        assert [tuple(o["box"]) for o in r["objects"]] == list(BOXES)
        for k, o in enumerate(r["objects"]):
            mask = rle_decode(o["mask"])
            x1, y1, x2, y2 = o["box"]
            expected = np.zeros((SIZE[1], SIZE[0]), bool)
            expected[y1 : y2 + 1, x1 : x2 + 1] = True  # BoxSegmenter fills the box
            assert np.array_equal(mask, expected) and o["area"] == expected.sum()
            png = np.array(Image.open(tmp_path / "out" / "masks" / f"{r['index']:07d}-{k:03d}.png")) > 0
            assert np.array_equal(png, expected)
    assert job.summary["rows"] == 5 and job.summary["ok"] == 5 and job.summary["objects"] == 10
    assert job.summary["complete"] and job.computed == 5 and job.resumed == 0
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["objects"] == 10
    coco = json.loads((tmp_path / "out" / "coco.json").read_text())
    assert len(coco["images"]) == 5 and len(coco["annotations"]) == 10
    assert [c["name"] for c in coco["categories"]] == ["the squares"]
    assert "5 rows: 5 processed" in job.summary_text()


def test_bad_rows_are_recorded_and_the_job_goes_on(tmp_path):
    write_images(tmp_path / "img", 2)
    (tmp_path / "img" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    Image.new("RGB", (400, 300)).save(tmp_path / "img" / "big.png")
    rows = [
        {"id": "a", "image": "img/img-000.png", "query": "the squares"},
        {"id": "gone", "image": "img/nope.png", "query": "the squares"},
        {"id": "empty", "image": "img/img-001.png", "query": "   "},
        {"id": "broken", "image": "img/broken.png", "query": "the squares"},
        {"id": "big", "image": "img/big.png", "query": "the squares"},
        {"id": "long", "image": "img/img-001.png", "query": "x" * 5000},
        {"id": "b", "image": "img/img-001.png", "query": "the squares"},
    ]
    table = write_jsonl(tmp_path / "rows.jsonl", rows)
    job = run_batch(_pipe(max_pixels=100_000), table, tmp_path / "out", progress=False)
    recs = {r["id"]: r for r in read_results(tmp_path / "out")}
    assert set(recs) == {r["id"] for r in rows}
    assert recs["a"]["status"] == recs["b"]["status"] == "ok"
    types = {k: r["error_type"] for k, r in recs.items() if r["status"] == "error"}
    assert types == {"gone": "missing_image", "empty": "empty_query", "broken": "ImageLoadError",
                     "big": "ImageTooLargeError", "long": "QueryError"}
    for k in types:
        assert recs[k]["error"] and recs[k]["objects"] == []
    assert job.summary["errors"] == 5 and job.summary["ok"] == 2
    assert job.summary["error_types"]["missing_image"] == 1
    coco = json.loads((tmp_path / "out" / "coco.json").read_text())
    assert {im["file_name"] for im in coco["images"]} == {"img/img-000.png", "img/img-001.png"}


def test_an_answer_with_nothing_is_a_clean_empty_record(tmp_path):
    write_images(tmp_path / "in", 2)
    job = run_batch(_pipe(["<think>nothing here</think><answer>[]</answer>"]), tmp_path / "in", tmp_path / "out",
                    query="a giraffe", progress=False)
    recs = read_results(tmp_path / "out")
    assert all(r["status"] == "ok" and r["objects"] == [] for r in recs)
    assert job.summary["no_objects"] == 2 and job.summary["errors"] == 0


class _FailingReasoner(ScriptedReasoner):
    """Raises on call number ``fail_at`` (a crashed server)."""

    def __init__(self, answers, fail_at):
        super().__init__(answers)
        self.fail_at = fail_at

    def generate(self, requests):
        if len(self.calls) + 1 == self.fail_at:
            self.calls.append([])
            raise ConnectionError("the reasoner server went away")
        return super().generate(requests)


def test_a_stopped_job_resumes_without_losing_or_repeating_a_row(tmp_path):
    write_images(tmp_path / "in", 9)
    answer = [box_answer(BOXES, *SIZE)]
    full = run_batch(_pipe(), tmp_path / "in", tmp_path / "ref", query="q", batch_size=2, progress=False)
    assert full.summary["complete"]
    models = {"reasoner": "scripted", "reasoner_backend": "scripted", "segmenter": "box", "segmenter_backend": "box"}
    broken = LocalEngine(SegZeroPipeline(_FailingReasoner(answer, fail_at=3), BoxSegmenter()), models=models)
    with pytest.raises(ConnectionError):
        run_batch(broken, tmp_path / "in", tmp_path / "out", query="q", batch_size=2, progress=False)
    partial = read_results(tmp_path / "out")
    assert len(partial) == 4  # two batches of two before the failure
    assert not (tmp_path / "out" / "coco.json").exists()
    # a kill in the middle of a write: a truncated last line
    with open(tmp_path / "out" / "results.jsonl", "a") as fh:
        fh.write('{"index": 7, "id": "img-007.png", "sta')
    again = run_batch(LocalEngine(_pipe(), models=models), tmp_path / "in", tmp_path / "out", query="q",
                      batch_size=3, progress=False)
    assert again.resumed == 4 and again.computed == 5
    assert read_results(tmp_path / "out") == read_results(tmp_path / "ref")
    lines = (tmp_path / "out" / "results.jsonl").read_text().splitlines()
    assert len(lines) == 9 and len({json.loads(x)["id"] for x in lines}) == 9
    assert (tmp_path / "out" / "coco.json").read_text() != ""
    hist = json.loads((tmp_path / "out" / "batch.json").read_text())["history"]
    assert [h["batch_size"] for h in hist] == [2, 3]


def test_another_job_is_refused_unless_forced(tmp_path):
    write_images(tmp_path / "in", 2)
    run_batch(_pipe(), tmp_path / "in", tmp_path / "out", query="the squares", progress=False)
    with pytest.raises(BatchJobError, match="query: 'the squares' then, 'the circles' now"):
        run_batch(_pipe(), tmp_path / "in", tmp_path / "out", query="the circles", progress=False)
    with pytest.raises(BatchJobError, match="config.frame_size"):
        run_batch(_pipe(frame_size=420), tmp_path / "in", tmp_path / "out", query="the squares", progress=False)
    write_images(tmp_path / "in", 3)  # one more picture: another input
    with pytest.raises(BatchJobError, match="input: other rows"):
        run_batch(_pipe(), tmp_path / "in", tmp_path / "out", query="the squares", progress=False)
    job = run_batch(_pipe(), tmp_path / "in", tmp_path / "out", query="the circles", force=True, progress=False)
    assert job.computed == 3 and job.resumed == 0
    assert [p.name.split(".replaced-")[0] for p in (tmp_path / "out").glob("*.replaced-*")].count("results.jsonl") == 1
    assert {r["query"] for r in read_results(tmp_path / "out")} == {"the circles"}


def test_records_without_a_manifest_are_refused(tmp_path):
    write_images(tmp_path / "in", 1)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "results.jsonl").write_text('{"index": 0, "id": "x"}\n')
    with pytest.raises(BatchJobError, match="no batch.json"):
        run_batch(_pipe(), tmp_path / "in", tmp_path / "out", query="q", progress=False)


def test_shards_left_by_an_interrupted_parallel_run_are_merged_once(tmp_path):
    write_images(tmp_path / "in", 4)
    ref = run_batch(_pipe(), tmp_path / "in", tmp_path / "ref", query="q", progress=False)
    assert ref.summary["complete"]
    recs = read_results(tmp_path / "ref")
    out = tmp_path / "out"
    out.mkdir()
    (out / "batch.json").write_text((tmp_path / "ref" / "batch.json").read_text())
    shards = out / "shards"
    shards.mkdir()
    (shards / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs[:2]) + '{"index": 3, "id"')
    (shards / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs[1:3]))  # record 1 twice
    job = run_batch(_pipe(), tmp_path / "in", out, query="q", progress=False)
    assert job.resumed == 3 and job.computed == 1
    assert read_results(out) == recs
    assert not shards.exists()


def test_two_queries_on_one_picture_share_one_segmenter_call(tmp_path):
    write_images(tmp_path / "img", 2)
    rows = [{"image": "img/img-000.png", "query": q} for q in ("the cups", "the plates", "the forks")]
    rows.append({"image": "img/img-001.png", "query": "the cups"})
    pipe = _pipe()
    run_batch(pipe, write_jsonl(tmp_path / "t.jsonl", rows), tmp_path / "out", batch_size=4, progress=False)
    assert len(pipe.segmenter.calls) == 2
    assert [len(prompts) for _, prompts in pipe.segmenter.calls] == [6, 2]
    recs = read_results(tmp_path / "out")
    assert [r["id"] for r in recs] == ["row-0", "row-1", "row-2", "row-3"]
    coco = json.loads((tmp_path / "out" / "coco.json").read_text())
    assert len(coco["images"]) == 2 and [c["name"] for c in coco["categories"]] == ["the cups", "the plates",
                                                                                   "the forks"]


def test_decoding_runs_at_most_prefetch_batches_ahead(tmp_path, monkeypatch):
    write_images(tmp_path / "in", 24)
    decoded = []
    real = engine_local_mod.decode_row

    def counting(pipeline, row):
        decoded.append(row.index)
        return real(pipeline, row)

    monkeypatch.setattr(engine_local_mod, "decode_row", counting)
    ahead = []

    class Watching(ScriptedReasoner):
        def generate(self, requests):
            ahead.append(len(decoded) - sum(len(c) for c in self.calls))
            return super().generate(requests)

    pipe = SegZeroPipeline(Watching([box_answer(BOXES, *SIZE)]), BoxSegmenter())
    run_batch(LocalEngine(pipe, prefetch=2, decode_threads=2), tmp_path / "in", tmp_path / "out", query="q",
              batch_size=3, progress=False)
    assert len(decoded) == 24
    assert max(ahead) <= 3 * 3  # the batch being reasoned plus two decoded ahead


def test_png_masks_are_written_before_their_record(tmp_path):
    write_images(tmp_path / "in", 3)
    run_batch(_pipe(), tmp_path / "in", tmp_path / "out", query="q", png_masks=True, progress=False)
    names = sorted(os.listdir(tmp_path / "out" / "masks"))
    assert names == [f"{i:07d}-{k:03d}.png" for i in range(3) for k in range(2)]
    with pytest.raises(BatchJobError, match="png_masks"):
        run_batch(_pipe(), tmp_path / "in", tmp_path / "out", query="q", png_masks=False, progress=False)


def test_an_empty_table_is_a_clean_empty_job(tmp_path):
    table = tmp_path / "rows.jsonl"
    table.write_text("")
    job = run_batch(_pipe(), table, tmp_path / "out", progress=False)
    assert job.summary["rows"] == 0 and job.summary["complete"]
    assert json.loads((tmp_path / "out" / "coco.json").read_text())["images"] == []


def test_one_record_is_one_line_for_every_reader(tmp_path):
    write_images(tmp_path / "img", 1)
    rows = [{"image": "img/img-000.png", "query": q} for q in ("cup\u2028of tea", "next\x85line", "form\x0cfeed é")]
    run_batch(_pipe(), write_jsonl(tmp_path / "t.jsonl", rows), tmp_path / "out", progress=False)
    text = (tmp_path / "out" / "results.jsonl").read_text(encoding="utf-8")
    assert len(text.splitlines()) == 3  # str.splitlines breaks on U+2028, U+0085, form feed, ...
    assert [json.loads(x)["query"] for x in text.splitlines()] == [r["query"] for r in rows]
    assert "é" in text  # other characters stay as they are
