"""The README's Batch section against the code: the synopsis and the flags, the summary it shows, the files a job
writes, the defaults it names."""

from __future__ import annotations

import json
import re

from batch_support import BOXES, SIZE, TESTS, box_answer, write_images
from scripted import BoxSegmenter, ScriptedReasoner

from segzero_tool import SegZeroPipeline
from segzero_tool.batch import run_batch
from segzero_tool.batch.job import format_summary
from segzero_tool.cli import build_parser

README = (TESTS.parent / "README.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    start = README.index(title)
    end = README.index("\n## ", start + len(title))
    return README[start:end]


BATCH = _section("## Batch: folders and tables of images")


def _batch_parser():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return sub.choices["batch"]


def test_every_batch_flag_is_in_the_readme_and_every_readme_flag_exists():
    parser = _batch_parser()
    flags = {o for a in parser._actions for o in a.option_strings if o.startswith("--")}
    synopsis = README[README.index("segzero batch INPUT"):]
    synopsis = synopsis[:synopsis.index("```")]
    model_flags = {o for a in parser._actions for o in a.option_strings
                   if a.container.title not in (None, "options", "positional arguments")
                   and not o.startswith("--ray-")}
    for flag in sorted(flags - model_flags - {"--help", "--verbose", "--config"}):
        assert flag in synopsis or flag in BATCH, flag
    for flag in set(re.findall(r"(--[a-z][a-z-]+)", BATCH)):
        assert flag in flags or flag in {o for sp in ("eval",) for o in _eval_flags()}, flag


def _eval_flags():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return {o for a in sub.choices["eval"]._actions for o in a.option_strings}


def test_the_defaults_the_readme_names():
    parser = _batch_parser()
    defaults = {a.dest: a.default for a in parser._actions}
    assert defaults["batch_size"] == 8 and "`--batch-size` rows per\ncall (default 8" in BATCH
    assert defaults["prefetch"] == 2 and "at most `--prefetch` batches (default 2)" in BATCH
    assert defaults["engine"] == "local" and "`--engine local`, the default" in BATCH
    assert defaults["ray_decode_cpus"] == 1.0 and "`--ray-decode-cpus F` (default 1)" in BATCH
    from segzero_tool.batch.engine_local import DEFAULT_DECODE_THREADS

    assert f"on {DEFAULT_DECODE_THREADS} threads" in BATCH


def test_the_summary_shown_is_what_the_command_prints():
    shown = re.search(r"```text\n(\d+ rows: .*)\n", BATCH).group(1)
    m = re.match(r"(\d+) rows: (\d+) processed \((\d+) found nothing\), (\d+) errors \((.*)\); (\d+) objects; "
                 r"([\d.]+) images/s this run \((\d+) computed, (\d+) resumed\)", shown)
    assert m, shown
    errors = dict(part.rsplit(" ", 1) for part in m.group(5).split(", "))
    summary = {"rows": int(m.group(1)), "ok": int(m.group(2)), "no_objects": int(m.group(3)),
               "errors": int(m.group(4)), "error_types": {k: int(v) for k, v in sorted(errors.items())},
               "objects": int(m.group(6)), "images_per_s": float(m.group(7)), "computed": int(m.group(8)),
               "resumed": int(m.group(9))}
    assert format_summary(summary) == shown


def test_the_files_table_is_what_a_job_writes(tmp_path):
    table = _section("### What a job writes")
    listed = {re.sub(r"/.*", "/", name) for name in re.findall(r"^\| `([^`]+)` \|", table, flags=re.M)}
    write_images(tmp_path / "in", 2)
    pipe = SegZeroPipeline(ScriptedReasoner([box_answer(BOXES, *SIZE)]), BoxSegmenter())
    run_batch(pipe, tmp_path / "in", tmp_path / "out", query="q", png_masks=True, progress=False)
    written = {p.name + ("/" if p.is_dir() else "") for p in (tmp_path / "out").iterdir()}
    assert written == listed
    rec = json.loads((tmp_path / "out" / "results.jsonl").read_text().splitlines()[0])
    fields = re.findall(r"`([a-z_]+)`", table[table.index("| `results.jsonl`"):table.index("| `masks/")])
    assert set(rec) <= set(fields) | {"label"}
    assert set(rec["objects"][0]) <= set(fields)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert {"rows", "ok", "errors", "error_types", "objects", "no_objects", "parse_status", "engine", "batch_size",
            "computed", "resumed", "elapsed_s", "images_per_s"} <= set(summary)
