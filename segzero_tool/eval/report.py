"""Reports of an evaluation run: the table (printed, JSON, Markdown) and the worst-samples sheet.

``write_report`` writes, into the run folder:

* ``results.json``: the manifest (models, prompt format, frame size, conventions, dataset), the
  summaries overall / short / long (gIoU ``null`` with a note when no sample was counted), and the
  worst samples;
* ``results.md``: the same as Markdown tables;
* ``worst.png``: a contact sheet of the worst N samples, one row each: image | ground truth (green) |
  prediction (orange, boxes in yellow), captioned with rank, id, IoU, I / U, status and the query;
* ``worst.html``: the same rows with the full query text, images embedded (one self-contained file).
"""

from __future__ import annotations

import base64
import functools
import html
import io
import math
import os
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .jsonio import write_json_atomic
from .manifest import COMPAT_CONVENTIONS, error_convention
from .metrics import BOX_CONVENTION, EMPTY_UNION_CONVENTIONS, FAILURE_CONVENTION, sample_iou

if TYPE_CHECKING:
    from PIL import Image

    from .datasets import EvalDataset
    from .runner import EvalResult

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
WORST_PNG = "worst.png"
WORST_HTML = "worst.html"
RESULTS_SCHEMA_VERSION = 1

GROUP_TITLES = {"overall": "overall", "short": "short queries", "long": "long (sentence) queries"}

# --- contact-sheet geometry (public so that callers and tests can predict the layout) ---------------
CELL_W, CELL_H = 256, 192  #: one panel
PAD = 8  #: gaps and margins
LINE_H = 18  #: one caption line
CAPTION_LINES = 3  #: per row: the numbers, then the query on up to two lines
HEADER_H = PAD + 2 * LINE_H + PAD  #: title and column labels
ROW_H = CAPTION_LINES * LINE_H + CELL_H + PAD
BACKGROUND = (28, 28, 32)
TEXT = (235, 235, 235)
MUTED = (170, 170, 180)
GT_COLOUR = (40, 210, 90)
PRED_COLOUR = (255, 130, 0)
BOX_COLOUR = (255, 235, 0)
COLUMNS = ("image", "ground truth", "prediction")


def sheet_size(rows: int) -> tuple[int, int]:
    """``(width, height)`` of a contact sheet with ``rows`` samples."""
    return 3 * CELL_W + 4 * PAD, HEADER_H + rows * ROW_H + PAD


# --- numbers ---------------------------------------------------------------------------------------


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    return f"{value:.{digits}f}"


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def summary_notes(result: EvalResult) -> list[str]:
    """Plain-language remarks on degenerate summaries (undefined gIoU, exclusions)."""
    notes = []
    for group, s in result.summary.items():
        if s["counted"] == 0:
            why = (f"all {s['skipped_empty_union']} scored sample(s) were skipped by the empty-union "
                   f"convention '{result.empty_union}'") if s["skipped_empty_union"] else "no sample was scored"
            notes.append(f"{GROUP_TITLES[group]}: gIoU is undefined (nan; null in JSON) because {why}; "
                         "cIoU is reported as 0, as the reference code does")
        if s["invalid_gt"]:
            notes.append(f"{GROUP_TITLES[group]}: {s['invalid_gt']} sample(s) excluded because their ground "
                         "truth could not be read or does not match the image")
        if s.get("skipped_errors"):
            notes.append(f"{GROUP_TITLES[group]}: {s['skipped_errors']} sample(s) skipped (in neither gIoU nor "
                         "cIoU) because their image could not be read or the segmenter raised, as the reference "
                         "multi-object evaluation skips them")
    return notes


def _describe_run(m: Mapping[str, Any]) -> list[tuple[str, str]]:
    d = m.get("dataset", {})
    models = m.get("models", {})
    conv = m.get("conventions", {})
    ign = d.get("ignore_as_foreground")
    strip = m.get("question_strip", ".")
    rows = [
        ("dataset", f"{d.get('name')} ({d.get('kind')}{', split ' + str(d.get('split')) if d.get('split') else ''}; "
                    f"{d.get('location')})"),
        ("samples", f"{d.get('samples')} in the dataset" + (f", first {m['limit']} evaluated" if m.get("limit") is not None else "")),
        ("reasoner", f"{models.get('reasoner')} ({models.get('reasoner_backend')})"),
        ("segmenter", f"{models.get('segmenter')} ({models.get('segmenter_backend')})"),
        ("prompt format", f"{m.get('prompt_format')}; question lower-cased and stripped of {strip!r} "
                          f"({m.get('question_normalisation')} normalisation)"),
        ("reasoning frame", f"{m['frame_size'][0]}x{m['frame_size'][1]}, rounding {m.get('rounding')}"
                            if m.get("frame_size") else "?"),
        ("compat", COMPAT_CONVENTIONS.get(m.get("compat", "repair"), str(m.get("compat")))),
        ("generation", f"max_new_tokens {m.get('max_new_tokens')}, max_objects {m.get('max_objects')}"),
        ("empty union", EMPTY_UNION_CONVENTIONS.get(conv.get("empty_union", ""), str(conv.get("empty_union")))),
        ("failures", FAILURE_CONVENTION),
        ("errors", conv.get("errors") or error_convention(m.get("compat", "repair"), m.get("prompt_format") or
                                                          "visionreasoner")),
        ("box accuracy", BOX_CONVENTION),
        ("ignore regions", "n/a (masks as stored)" if ign is None else
         ("counted as foreground (as the hub copies)" if ign else "not foreground")),
        ("images", conv.get("images", "")),
    ]
    return rows


_COLS = ("queries", "samples", "counted", "skipped", "failed", "errors", "invalid GT", "skipped (errors)", "gIoU",
         "cIoU", "box@0.5")


def _table_rows(result: EvalResult) -> list[list[str]]:
    rows = []
    for group, s in result.summary.items():
        rows.append([
            GROUP_TITLES[group], str(s["samples"]), str(s["counted"]), str(s["skipped_empty_union"]),
            str(s["failed"]), str(s["errors"]), str(s["invalid_gt"]), str(s.get("skipped_errors", 0)),
            _num(s["giou"]), _num(s["ciou"]),
            _num(s["box_accuracy"]) + (f" ({s['box_samples']})" if s["box_samples"] else ""),
        ])
    return rows


def format_table(result: EvalResult) -> str:
    """The final table as plain text (what ``segzero eval`` prints)."""
    lines = [f"{k}: {v}" for k, v in _describe_run(result.manifest)]
    rows = [list(_COLS), *_table_rows(result)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_COLS))]
    lines.append("")
    for r in rows:
        lines.append("  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r)))
    overall = result.summary.get("overall", {})
    if overall.get("parse_status"):
        lines.append("parse status: " + ", ".join(f"{k} {v}" for k, v in overall["parse_status"].items()))
    if overall.get("mean_latency_ms") is not None:
        lines.append(f"mean latency: {overall['mean_latency_ms']:.1f} ms per sample")
    lines.extend(f"note: {n}" for n in summary_notes(result))
    return "\n".join(lines)


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def format_markdown(result: EvalResult, worst: Sequence[Mapping[str, Any]] = (), sheet: str | None = None) -> str:
    m = result.manifest
    d = m.get("dataset", {})
    out = [f"# Evaluation: {d.get('name')}", "", "| setting | value |", "|---|---|"]
    out += [f"| {_md_cell(k)} | {_md_cell(v)} |" for k, v in _describe_run(m)]
    out += ["", "| " + " | ".join(_COLS) + " |", "|" + "---|" * len(_COLS)]
    out += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in _table_rows(result)]
    overall = result.summary.get("overall", {})
    out.append("")
    if overall.get("parse_status"):
        out.append("Parse status: " + ", ".join(f"`{k}` {v}" for k, v in overall["parse_status"].items()) + ".")
    if overall.get("mean_latency_ms") is not None:
        out.append(f"Mean latency: {overall['mean_latency_ms']:.1f} ms per sample.")
    for n in summary_notes(result):
        out.append(f"Note: {n}.")
    if worst:
        out += ["", f"## The {len(worst)} worst samples", "", "| # | id | IoU | I / U | status | query |",
                "|---|---|---|---|---|---|"]
        for rank, rec in enumerate(worst, 1):
            out.append(f"| {rank} | {_md_cell(rec['id'])} | {_num(_iou_of(rec, result.empty_union), 3)} | "
                       f"{rec['intersection']} / {rec['union']} | {_md_cell(_status(rec))} | "
                       f"{_md_cell(rec.get('query', ''))} |")
        if sheet:
            out += ["", f"![worst samples]({sheet})"]
    return "\n".join(out) + "\n"


def results_payload(result: EvalResult, worst: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """The JSON-ready content of ``results.json`` (``nan`` becomes ``null``)."""
    return _json_safe({
        "schema_version": RESULTS_SCHEMA_VERSION,
        "manifest": result.manifest,
        "empty_union": result.empty_union,
        "summary": result.summary,
        "notes": summary_notes(result),
        "worst": [{"rank": i, "id": r["id"], "index": r.get("index"), "iou": _iou_of(r, result.empty_union),
                   "intersection": r["intersection"], "union": r["union"], "status": _status(r),
                   "query": r.get("query")} for i, r in enumerate(worst, 1)],
    })


# --- the worst samples -----------------------------------------------------------------------------


def _iou_of(rec: Mapping[str, Any], empty_union: str) -> float | None:
    if rec.get("status") not in ("ok", "failed", "error"):
        return None
    return sample_iou(int(rec["intersection"]), int(rec["union"]), failed=rec["status"] != "ok",
                      empty_union=empty_union)  # type: ignore[arg-type]


def _status(rec: Mapping[str, Any]) -> str:
    if rec.get("status") == "ok":
        return str(rec.get("parse_status"))
    if rec.get("status") == "failed":
        return f"failed: {rec.get('parse_status')}"
    return f"{rec.get('status')}: {rec.get('error')}"


def worst_records(records: Sequence[Mapping[str, Any]], n: int, empty_union: str = "skip") -> list[Mapping[str, Any]]:
    """The ``n`` scored samples with the lowest IoU (ties: larger ground truth first, then dataset order)."""
    scored = [(iou, r) for r in records if (iou := _iou_of(r, empty_union)) is not None]
    scored.sort(key=lambda t: (t[0], -int(t[1].get("gt_area") or 0), int(t[1].get("index", 0))))
    return [r for _, r in scored[: max(0, n)]]


@dataclass
class SheetEntry:
    """One row of a contact sheet."""

    record: Mapping[str, Any]
    image: np.ndarray | None  # (H, W, 3) uint8, None when unreadable
    gt: np.ndarray | None  # (H, W) bool
    pred: np.ndarray | None  # (H, W) bool


@functools.lru_cache(maxsize=8)
def _font(size: int = 14) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _fit(w: int, h: int) -> tuple[int, int]:
    s = min(CELL_W / w, CELL_H / h)
    return max(1, round(w * s)), max(1, round(h * s))


def _panel(entry: SheetEntry, which: int) -> Image.Image:
    from PIL import Image, ImageDraw

    cell = Image.new("RGB", (CELL_W, CELL_H), (60, 60, 66))
    if entry.image is None:
        ImageDraw.Draw(cell).text((PAD, CELL_H // 2 - LINE_H // 2), "image unreadable", fill=TEXT, font=_font())
        return cell
    h, w = entry.image.shape[:2]
    tw, th = _fit(w, h)
    base = np.asarray(Image.fromarray(entry.image).resize((tw, th), Image.BILINEAR), dtype=np.float32)
    if which > 0:
        mask_full = entry.gt if which == 1 else entry.pred
        colour = np.asarray(GT_COLOUR if which == 1 else PRED_COLOUR, dtype=np.float32)
        base = base * 0.45
        if mask_full is not None and mask_full.any():
            m = np.asarray(Image.fromarray(mask_full.astype(np.uint8) * 255).resize((tw, th), Image.NEAREST)) > 0
            base[m] = base[m] * 0.3 + colour * 0.7
    tile = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    if which == 2:
        draw = ImageDraw.Draw(tile)
        sx, sy = tw / w, th / h
        for b in entry.record.get("pred_boxes") or []:
            x1, y1, x2, y2 = b
            draw.rectangle([x1 * sx, y1 * sy, (x2 + 1) * sx - 1, (y2 + 1) * sy - 1], outline=BOX_COLOUR, width=2)
    cell.paste(tile, ((CELL_W - tw) // 2, (CELL_H - th) // 2))
    return cell


def _row_strip(entry: SheetEntry) -> Image.Image:
    from PIL import Image

    strip = Image.new("RGB", (3 * CELL_W + 2 * PAD, CELL_H), BACKGROUND)
    for k in range(3):
        strip.paste(_panel(entry, k), (k * (CELL_W + PAD), 0))
    return strip


def _wrap(text: str, font: Any, width: int, lines: int) -> list[str]:
    words = " ".join(str(text).split())
    if not words:
        return []
    avg = max(1.0, font.getlength("abcdefghijklmnopqrstuvwxyz") / 26)
    out = textwrap.wrap(words, width=max(10, int(width / avg)))
    while any(font.getlength(line) > width for line in out) and len(out) < 50:
        out = textwrap.wrap(words, width=max(5, len(max(out, key=len)) - 2))
    if len(out) > lines:
        out = out[:lines]
        last = out[-1]
        while last and font.getlength(last + " ...") > width:
            last = last[:-1]
        out[-1] = last.rstrip() + " ..."
    return out


def _caption(rank: int, rec: Mapping[str, Any], empty_union: str) -> str:
    iou = _iou_of(rec, empty_union)
    return (f"#{rank}  {rec['id']}   IoU {_num(iou, 3)}   I {rec['intersection']} / U {rec['union']}   "
            f"{_status(rec)}")


def contact_sheet(entries: Sequence[SheetEntry], *, title: str = "", empty_union: str = "skip",
                  strips: Sequence[Image.Image] | None = None) -> Image.Image:
    """Render rows ``image | ground truth | prediction`` with captions (see :func:`sheet_size`)."""
    from PIL import Image, ImageDraw

    if strips is None:
        strips = [_row_strip(e) for e in entries]

    font, small = _font(14), _font(13)
    sheet = Image.new("RGB", sheet_size(len(entries)), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    text_w = 3 * CELL_W + 2 * PAD
    draw.text((PAD, PAD), _wrap(title, font, text_w, 1)[0] if title else "", fill=TEXT, font=font)
    for k, name in enumerate(COLUMNS):
        label = f"{name} ({'green' if k == 1 else 'orange, boxes yellow'})" if k else name
        draw.text((PAD + k * (CELL_W + PAD), PAD + LINE_H), label, fill=MUTED, font=small)
    for i, entry in enumerate(entries):
        top = HEADER_H + i * ROW_H
        draw.text((PAD, top), _wrap(_caption(i + 1, entry.record, empty_union), font, text_w, 1)[0],
                  fill=TEXT, font=font)
        for j, line in enumerate(_wrap(f"query: {entry.record.get('query', '')}", small, text_w, CAPTION_LINES - 1)):
            draw.text((PAD, top + (j + 1) * LINE_H), line, fill=MUTED, font=small)
        sheet.paste(strips[i], (PAD, top + CAPTION_LINES * LINE_H))
    return sheet


def _png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def load_entries(records: Sequence[Mapping[str, Any]], dataset: EvalDataset | None,
                 max_pixels: int | None = None) -> list[SheetEntry]:
    """Images and ground truth from the dataset, predictions from the records' RLE masks."""
    from ..masks import rle_decode

    entries = []
    for rec in records:
        sample = dataset.get(rec["id"]) if dataset is not None else None
        image = gt = pred = None
        if sample is not None:
            try:
                image = sample.load_image(max_pixels=max_pixels).array
            except Exception:  # noqa: BLE001 - an unreadable image is drawn as such
                image = None
            try:
                gt = sample.load_gt_mask()
            except Exception:  # noqa: BLE001
                gt = None
        if rec.get("pred_rle"):
            pred = rle_decode(rec["pred_rle"])
        if image is not None and gt is not None and gt.shape != image.shape[:2]:
            gt = None
        if image is not None and pred is not None and pred.shape != image.shape[:2]:
            pred = None
        entries.append(SheetEntry(rec, image, gt, pred))
    return entries


def write_contact_sheet(entries: Sequence[SheetEntry], out_dir: str | os.PathLike, *, title: str = "",
                        empty_union: str = "skip") -> dict[str, Path]:
    """Write ``worst.png`` and ``worst.html`` (self-contained) for ``entries``."""
    from ..atomic import atomic_write_bytes

    out = Path(out_dir)
    png = out / WORST_PNG
    strips = [_row_strip(e) for e in entries]
    atomic_write_bytes(png, _png_bytes(contact_sheet(entries, title=title, empty_union=empty_union, strips=strips)))
    rows = []
    for rank, (e, strip) in enumerate(zip(entries, strips, strict=True), 1):
        rec = e.record
        data = base64.b64encode(_png_bytes(strip)).decode("ascii")
        rows.append(
            f"<tr><td>{rank}</td><td>{html.escape(str(rec['id']))}</td>"
            f"<td>{_num(_iou_of(rec, empty_union), 3)}</td><td>{rec['intersection']} / {rec['union']}</td>"
            f"<td>{html.escape(_status(rec))}</td><td class=q>{html.escape(str(rec.get('query', '')))}</td></tr>"
            f"<tr><td></td><td colspan=5><img alt='image | ground truth | prediction' "
            f"src='data:image/png;base64,{data}'></td></tr>"
        )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>" + html.escape(title or "worst samples") +
        "</title><style>body{font-family:sans-serif;background:#1c1c20;color:#eee}td{padding:4px 8px;"
        "vertical-align:top}.q{max-width:40em}th{text-align:left}</style></head><body>"
        f"<h1>{html.escape(title or 'worst samples')}</h1>"
        "<p>Each row: image | ground truth (green) | prediction (orange, predicted boxes yellow).</p>"
        "<table><tr><th>#</th><th>id</th><th>IoU</th><th>I / U</th><th>status</th><th>query</th></tr>"
        + "".join(rows) + "</table></body></html>\n"
    )
    html_path = out / WORST_HTML
    atomic_write_bytes(html_path, page.encode("utf-8"))
    return {"worst_png": png, "worst_html": html_path}


def write_report(result: EvalResult, dataset: EvalDataset | None = None, *, worst: int = 16) -> dict[str, Path]:
    """Write ``results.json``, ``results.md`` and (``worst > 0``) ``worst.png`` / ``worst.html``."""
    from ..atomic import atomic_write_bytes

    run = Path(result.run_dir)
    files: dict[str, Path] = {}
    bad = worst_records(result.records, worst, result.empty_union) if worst > 0 else []
    sheet_name = None
    if bad:
        overall = result.summary.get("overall", {})
        title = (f"{len(bad)} worst of {overall.get('samples', len(result.records))} samples - "
                 f"{result.manifest.get('dataset', {}).get('name')} - gIoU {_num(overall.get('giou'))}, "
                 f"cIoU {_num(overall.get('ciou'))}")
        files.update(write_contact_sheet(load_entries(bad, dataset), run, title=title,
                                         empty_union=result.empty_union))
        sheet_name = WORST_PNG
    files["results_json"] = write_json_atomic(run / RESULTS_JSON, results_payload(result, bad))
    md = run / RESULTS_MD
    atomic_write_bytes(md, format_markdown(result, bad, sheet_name).encode("utf-8"))
    files["results_md"] = md
    return files


__all__ = [
    "CELL_H",
    "CELL_W",
    "HEADER_H",
    "LINE_H",
    "PAD",
    "ROW_H",
    "SheetEntry",
    "contact_sheet",
    "format_markdown",
    "format_table",
    "load_entries",
    "results_payload",
    "sheet_size",
    "summary_notes",
    "worst_records",
    "write_contact_sheet",
    "write_report",
]
