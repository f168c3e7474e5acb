"""What ``segzero batch`` reads: a folder of images with one query, or a table of (image, query) rows.

:func:`read_batch_input` turns the path the user gave into a :class:`BatchInput`, an ordered tuple of
:class:`BatchRow`. Accepted forms:

* a **folder**: every image in it (``.jpg .jpeg .png .webp .bmp .tif .tiff .gif``, any case), found
  recursively, hidden files and folders skipped, sorted by relative path; ``query=`` gives the one query;
* a **table**: ``.jsonl`` / ``.ndjson`` (one JSON object per line), ``.csv`` (UTF-8, a header row) or
  ``.parquet`` (needs pyarrow) with an ``image`` column (paths relative to the table's folder), a ``query``
  column (or ``query=`` for every row), an optional ``id`` column and an optional category column.

A whole-file problem (unreadable file, missing column, duplicate ids) raises :class:`BatchInputError` whose
message says what to fix; a problem of one row (no image, an URL, an empty query, a line that is not a JSON
object) is kept on the row (``problem`` / ``problem_type``) so the job records it as that row's error and
goes on. Nothing here opens the images.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import MissingDependencyError, SegZeroError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
TABLE_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}
_ACCEPTED = "a folder of images, or a .jsonl / .ndjson / .csv / .parquet table with 'image' and 'query' columns"
_URL = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.-]*://|data:)")


class BatchInputError(SegZeroError, ValueError):
    """The batch input cannot be used as given; the message says what to change."""

    exit_code = 2


@dataclass(frozen=True)
class BatchRow:
    """One unit of work: an image and a query (see the module docstring for where each field comes from)."""

    index: int
    id: str
    image: str
    image_path: str | None
    query: str
    category: str | None
    problem: str | None = None
    problem_type: str | None = None


@dataclass(frozen=True)
class BatchInput:
    """The rows of a folder or table, in input order; ``location`` is its absolute path."""

    kind: str
    location: str
    rows: tuple[BatchRow, ...]

    def describe(self) -> dict:
        """``{"kind", "location", "rows", "digest"}``; the digest (sha256) covers every row's id, image,
        query and category, so a resumed job can tell whether its input changed."""
        h = hashlib.sha256()
        for r in self.rows:
            h.update(json.dumps([r.id, r.image, r.query, r.category]).encode("ascii") + b"\n")
        return {"kind": self.kind, "location": self.location, "rows": len(self.rows), "digest": h.hexdigest()}


class _Malformed(Exception):
    """A value of a row has a type that cannot be read as text (a list, an object)."""


def read_batch_input(
    path: str | os.PathLike, *, query: str | None = None, category_column: str | None = None
) -> BatchInput:
    """Read a folder of images or a table into a :class:`BatchInput`.

    Args:
        path: a folder, or a ``.jsonl`` / ``.ndjson`` / ``.csv`` / ``.parquet`` file.
        query: one query for every image (required for a folder; for a table only when it has no
            ``query`` column).
        category_column: a table column whose values name each row's category (COCO export);
            ``None``: the query names it.

    Raises:
        BatchInputError: the path is missing or of an unknown kind, the table cannot be read, a column is
            missing or clashes with ``query=``, ids repeat.
        MissingDependencyError: a Parquet table without pyarrow installed.
    """
    try:
        p = Path(os.path.abspath(Path(path).expanduser()))
        is_dir, is_file = p.is_dir(), p.is_file()
    except (OSError, ValueError, TypeError) as exc:
        raise BatchInputError(f"{path!r} cannot be used as the input ({exc}); give {_ACCEPTED}") from None
    if query is not None and (not isinstance(query, str) or not query.strip()):
        raise BatchInputError("--query is empty or not text; give the text to segment, e.g. --query 'the red cup'")
    if is_dir:
        return _read_folder(p, query, category_column)
    if not is_file:
        raise BatchInputError(f"{p} does not exist; give {_ACCEPTED}")
    kind = TABLE_SUFFIXES.get(p.suffix.lower())
    if kind is None:
        raise BatchInputError(f"{p}: unknown input kind {p.suffix or '(no suffix)'!r}; give {_ACCEPTED}")
    if kind == "parquet":
        raw, header = _parquet_rows(p, {"id", "image", "query", category_column or "id"})
        return _table(p, kind, raw, header, query, category_column)
    try:
        text = p.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise BatchInputError(f"{p}: cannot be read ({exc})") from None
    except UnicodeDecodeError as exc:
        raise BatchInputError(f"{p}: not UTF-8 text ({exc}); save the table as UTF-8") from None
    raw, header = _jsonl_rows(text) if kind == "jsonl" else _csv_rows(p, text)
    return _table(p, kind, raw, header, query, category_column)


def _read_folder(root: Path, query: str | None, category_column: str | None) -> BatchInput:
    if category_column is not None:
        raise BatchInputError(f"{root} is a folder of images: --category names a column of a table; "
                              "give a .jsonl / .csv / .parquet table to set a category per row")
    if query is None:
        raise BatchInputError(f"{root}: a folder of images needs --query (the one query asked of every image); "
                              "give a table with a 'query' column to ask different queries")
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel_dir = Path(dirpath).relative_to(root)
        for name in filenames:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES:
                found.append((rel_dir / name).as_posix())
    if not found:
        raise BatchInputError(f"{root}: no images found (looked for {' '.join(sorted(IMAGE_SUFFIXES))}, "
                              "hidden files skipped); check the folder")
    rows = tuple(BatchRow(index=i, id=rel, image=rel, image_path=str(root / rel), query=query, category=None)
                 for i, rel in enumerate(sorted(found)))
    return BatchInput(kind="folder", location=str(root), rows=rows)


# --- the three table readers: a list of (where, row-or-problem) and the column names ---------------------

_Raw = tuple[str, "dict[str, Any] | str"]  # (where, the row's values, or a problem message)


def _jsonl_rows(text: str) -> tuple[list[_Raw], set[str]]:
    lines = text.split("\n")
    out: list[_Raw] = []
    header: set[str] = set()
    for lineno, line in enumerate(lines, 1):
        line = line.rstrip("\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"line {lineno}"
        try:
            row = json.loads(line)
        except ValueError as exc:
            cut = " (the last line looks cut off)" if lineno == len(lines) else ""
            out.append((where, f"{where} is not valid JSON{cut} ({exc}); fix or remove the line"))
            continue
        except RecursionError:
            out.append((where, f"{where} nests too deeply to read; fix or remove the line"))
            continue
        if not isinstance(row, dict):
            out.append((where, f"{where} is not a JSON object (got {type(row).__name__}); each line must be "
                               "an object such as {\"image\": \"a.jpg\", \"query\": \"the cup\"}"))
            continue
        header.update(row)
        out.append((where, row))
    return out, header


def _csv_rows(p: Path, text: str) -> tuple[list[_Raw], set[str]]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=False)
    out: list[_Raw] = []
    names: list[str] | None = None
    start = 1
    try:
        for fields in reader:
            where, start = f"line {start}", reader.line_num + 1
            if not fields or all(not f.strip() for f in fields):
                continue
            if names is None:
                names = [f.strip() for f in fields]
                dup = sorted({n for n in names if n and names.count(n) > 1})
                if dup:
                    raise BatchInputError(f"{p}: the header names column {dup[0]!r} twice; rename one")
                continue
            if len(fields) > len(names):
                out.append((where, f"{where} has {len(fields)} fields but the header has {len(names)}; "
                                   "quote values that contain commas"))
                continue
            out.append((where, {n: v for n, v in zip(names, fields, strict=False) if n}))
    except csv.Error as exc:
        raise BatchInputError(f"{p}: not a readable CSV table near line {reader.line_num} ({exc}); "
                              "save it as comma-separated UTF-8 with a header row") from None
    return out, set(names or ()) - {""}


def _parquet_rows(p: Path, needed: set[str]) -> tuple[list[_Raw], set[str]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise MissingDependencyError(f"reading {p.name} needs pyarrow, which is not installed: "
                                     "pip install pyarrow (or give a .jsonl / .csv table)") from exc
    try:
        with pq.ParquetFile(p) as pf:
            names = {str(n) for n in pf.schema_arrow.names}
            wanted = sorted(names & needed)  # only the columns used: a table may also hold the images' bytes
            table = pf.read(columns=wanted)
            columns = {n: table.column(n).to_pylist() for n in wanted}
    except Exception as exc:  # pyarrow raises many kinds (ArrowInvalid, OSError, ...) for a bad file
        raise BatchInputError(f"{p}: not a readable Parquet file ({type(exc).__name__}: {exc})") from None
    n = table.num_rows
    return [(f"row {i + 1}", {k: v[i] for k, v in columns.items()}) for i in range(n)], names


# --- rows from the raw values ----------------------------------------------------------------------------

def _text(value: Any) -> str | None:
    """A cell as text; ``None`` when missing (None, NaN, blank). Numbers -> str (integral floats without
    ``.0``); lists and objects raise :class:`_Malformed`."""
    if value is None:
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise _Malformed("bytes that are not UTF-8") from None
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer():
            return str(int(value))
    if isinstance(value, (Mapping, list, tuple, set)):
        raise _Malformed(f"a {type(value).__name__}")
    s = value if isinstance(value, str) else str(value)
    return s if s.strip() else None


def _table(p: Path, kind: str, raw: list[_Raw], header: set[str], query: str | None,
           category_column: str | None) -> BatchInput:
    base = p.parent
    if header or any(isinstance(r, dict) for _, r in raw):  # not when empty, or every line is malformed
        if "image" not in header:
            raise BatchInputError(f"{p}: no 'image' column (found: {_names(header)}); name the column of image "
                                  "paths 'image'")
        if query is None and "query" not in header:
            raise BatchInputError(f"{p}: no 'query' column (found: {_names(header)}); add one, or give --query "
                                  "to ask one query of every image")
        if query is not None and "query" in header:
            raise BatchInputError(f"{p} has a 'query' column and --query was given too; drop one of them")
        if category_column is not None and category_column not in header:
            raise BatchInputError(f"{p}: no column {category_column!r} for --category (found: {_names(header)})")
    rows: list[BatchRow] = []
    seen: dict[str, str] = {}
    for index, (where, r) in enumerate(raw):
        row = _row(index, where, r, base, query, category_column)
        if row.id in seen:
            raise BatchInputError(f"{p}: id {_short(row.id)} appears twice ({seen[row.id]} and {where}); "
                                  "ids must be unique: fix the 'id' column, or drop it to number the rows")
        seen[row.id] = where
        rows.append(row)
    return BatchInput(kind=kind, location=str(p), rows=tuple(rows))


def _row(index: int, where: str, r: dict[str, Any] | str, base: Path, query: str | None,
         category_column: str | None) -> BatchRow:
    derived = f"row-{index}"
    if isinstance(r, str):
        return BatchRow(index, derived, "", None, "", None, problem=r, problem_type="malformed_row")
    values: dict[str, str | None] = {}
    bad: list[str] = []
    for key in ("id", "image", "query", category_column):
        if key is not None and key in r:
            try:
                values[key] = _text(r[key])
            except _Malformed as exc:
                values[key] = None
                bad.append(f"{key!r} is {exc}")
    rid = values.get("id") or derived
    image = values.get("image") or ""
    text = query if query is not None else (values.get("query") or "")
    category = values.get(category_column) if category_column is not None else None
    image_path: str | None = None
    problem = problem_type = None
    if bad:
        problem, problem_type = f"{where}: {', '.join(bad)}; give text or numbers", "malformed_row"
    elif not image:
        problem, problem_type = f"{where}: no image; give the image's path in the 'image' column", "missing_image"
    elif _URL.match(image):
        problem = f"{where}: {_short(image)} is an URL; segzero batch reads local files: download the images first"
        problem_type = "unsupported_image"
    elif not text.strip():
        problem, problem_type = f"{where}: the query is empty; give the text to segment", "empty_query"
    if image and problem_type not in ("unsupported_image", "malformed_row"):
        try:
            image_path = os.path.abspath(base / Path(image).expanduser())
        except (ValueError, OSError, RuntimeError):
            problem, problem_type = f"{where}: {_short(image)} is not a usable path", "missing_image"
    return BatchRow(index, rid, image, image_path, text, category, problem=problem, problem_type=problem_type)


def _short(s: str, limit: int = 80) -> str:
    return repr(s if len(s) <= limit else s[:limit] + "...")


def _names(names: Iterable[str]) -> str:
    names = sorted(names)
    return ", ".join(_short(n, 40) for n in names[:12]) + (" ..." if len(names) > 12 else "") if names else "none"


__all__ = ["BatchInput", "BatchInputError", "BatchRow", "IMAGE_SUFFIXES", "read_batch_input"]
