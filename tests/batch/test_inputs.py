"""segzero batch inputs: folders and JSONL / CSV / Parquet tables as users write them, and hostile files."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segzero_tool.batch.inputs import BatchInput, BatchInputError, read_batch_input
from segzero_tool.errors import MissingDependencyError, SegZeroError


def write_jsonl(path: Path, rows, *, tail: str = "") -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + tail, encoding="utf-8")
    return path


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not really an image; nothing here opens it")
    return path


# --- folders -----------------------------------------------------------------------------------------------

def test_folder_recursive_sorted_hidden_skipped(tmp_path):
    for name in ["b.PNG", "a.jpg", "sub/c.webp", "sub/deeper/d.TIFF", ".hidden.jpg", ".cache/e.jpg",
                 "notes.txt", "sub/x.gif", "z.bmp", "y.jpeg", "w.tif"]:
        touch(tmp_path / name)
    bi = read_batch_input(tmp_path, query="the cup")
    assert bi.kind == "folder" and bi.location == str(tmp_path.resolve())
    rels = [r.image for r in bi.rows]
    assert rels == ["a.jpg", "b.PNG", "sub/c.webp", "sub/deeper/d.TIFF", "sub/x.gif", "w.tif", "y.jpeg", "z.bmp"]
    for i, r in enumerate(bi.rows):
        assert r.index == i and r.id == r.image and r.query == "the cup" and r.category is None
        assert r.problem is None and Path(r.image_path).is_file() and os.path.isabs(r.image_path)


def test_folder_needs_query_and_refuses_category(tmp_path):
    touch(tmp_path / "a.jpg")
    with pytest.raises(BatchInputError, match="needs --query"):
        read_batch_input(tmp_path)
    with pytest.raises(BatchInputError, match="empty"):
        read_batch_input(tmp_path, query="   ")
    with pytest.raises(BatchInputError, match="--category"):
        read_batch_input(tmp_path, query="q", category_column="label")


def test_folder_without_images_is_an_error(tmp_path):
    touch(tmp_path / "readme.txt")
    touch(tmp_path / ".hidden" / "a.jpg")
    with pytest.raises(BatchInputError, match="no images"):
        read_batch_input(tmp_path, query="q")


# --- JSONL ------------------------------------------------------------------------------------------------

def test_jsonl_rows_ids_paths_and_problems(tmp_path):
    (tmp_path / "data").mkdir()
    table = write_jsonl(tmp_path / "data" / "t.jsonl", [
        {"id": 7, "image": "imgs/a.jpg", "query": "the red cup", "label": "cup"},
        {"image": "/abs/b.jpg", "query": 12.0, "label": 3},
        {"image": None, "query": "q"},
        {"image": "c.jpg", "query": "   "},
        {"image": "https://example.com/d.jpg", "query": "q"},
        {"image": "s3://bucket/e.jpg", "query": "q"},
        {"image": ["x.jpg"], "query": "q"},
    ], tail="\n# a comment line\n[1, 2]\n{\"image\": \"f.jpg\", \"qu")
    bi = read_batch_input(table, category_column="label")
    assert bi.kind == "jsonl" and bi.location == str(table.resolve())
    r = bi.rows
    assert [x.index for x in r] == list(range(9))
    assert (r[0].id, r[0].image, r[0].query, r[0].category) == ("7", "imgs/a.jpg", "the red cup", "cup")
    assert r[0].image_path == str(tmp_path / "data" / "imgs" / "a.jpg") and r[0].problem is None
    assert (r[1].id, r[1].image_path, r[1].query, r[1].category) == ("row-1", "/abs/b.jpg", "12", "3")
    assert [x.problem_type for x in r] == [None, None, "missing_image", "empty_query", "unsupported_image",
                                         "unsupported_image", "malformed_row", "malformed_row", "malformed_row"]
    assert r[2].image == "" and r[2].image_path is None
    assert r[3].image_path is not None
    assert "download the images first" in r[4].problem and r[4].image_path is None
    assert "not a JSON object" in r[7].problem and "line 10" in r[7].problem
    assert "cut off" in r[8].problem and "line 11" in r[8].problem


def test_jsonl_query_option_and_column_errors(tmp_path):
    only_images = write_jsonl(tmp_path / "i.jsonl", [{"image": "a.jpg"}, {"image": "b.jpg"}])
    bi = read_batch_input(only_images, query="the dog")
    assert [r.query for r in bi.rows] == ["the dog", "the dog"]
    with pytest.raises(BatchInputError, match="'query' column"):
        read_batch_input(only_images)
    both = write_jsonl(tmp_path / "q.jsonl", [{"image": "a.jpg", "query": "x"}])
    with pytest.raises(BatchInputError, match="drop one"):
        read_batch_input(both, query="y")
    with pytest.raises(BatchInputError, match="'image' column"):
        read_batch_input(write_jsonl(tmp_path / "n.jsonl", [{"img": "a.jpg", "query": "x"}]))
    with pytest.raises(BatchInputError, match="'label'"):
        read_batch_input(both, category_column="label")


def test_duplicate_ids_name_both_rows(tmp_path):
    table = write_jsonl(tmp_path / "d.jsonl", [{"id": "a", "image": "1.jpg", "query": "q"},
                                               {"id": "b", "image": "2.jpg", "query": "q"},
                                               {"id": "a", "image": "3.jpg", "query": "q"}])
    with pytest.raises(BatchInputError, match=r"line 1 and line 3"):
        read_batch_input(table)
    csv_table = tmp_path / "d.csv"
    csv_table.write_text("id,image,query\n5,a.jpg,q\n6,c.jpg,q\n5,b.jpg,q\n")
    with pytest.raises(BatchInputError, match="appears twice .line 2 and line 4"):
        read_batch_input(csv_table)


def test_empty_tables_are_empty_inputs(tmp_path):
    for name, text in [("e.jsonl", ""), ("b.jsonl", "\n\n  \n"), ("e.csv", ""), ("h.csv", "image,query\n")]:
        (tmp_path / name).write_text(text)
        bi = read_batch_input(tmp_path / name)
        assert bi.rows == () and bi.describe()["rows"] == 0


# --- CSV --------------------------------------------------------------------------------------------------

def test_csv_bom_quoting_short_and_long_rows(tmp_path):
    table = tmp_path / "t.csv"
    text = ('\ufeffid , image,query,label\r\n'
            '1,"a, b.jpg","the ""red"" cup, left",cup\r\n'
            '\r\n'
            '2,"multi\nline.jpg",q\r\n'
            '3,c.jpg,q,too,many\r\n'
            '4,d.jpg,"",x\r\n')
    table.write_bytes(text.encode("utf-8"))
    bi = read_batch_input(table, category_column="label")
    r = bi.rows
    assert (r[0].id, r[0].image, r[0].query, r[0].category) == ("1", "a, b.jpg", 'the "red" cup, left', "cup")
    assert (r[1].image, r[1].category, r[1].problem) == ("multi\nline.jpg", None, None)
    assert r[2].problem_type == "malformed_row" and "quote values" in r[2].problem and "line 6" in r[2].problem
    assert r[3].problem_type == "empty_query"


def test_csv_not_utf8_and_bad_header(tmp_path):
    latin = tmp_path / "l.csv"
    latin.write_bytes("image,query\ncaf\xe9.jpg,q\n".encode("latin-1"))
    with pytest.raises(BatchInputError, match="UTF-8"):
        read_batch_input(latin)
    dup = tmp_path / "dup.csv"
    dup.write_text("image,query,image\na,b,c\n")
    with pytest.raises(BatchInputError, match="twice"):
        read_batch_input(dup)


# --- Parquet ----------------------------------------------------------------------------------------------

def test_parquet_nan_null_numbers(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = tmp_path / "t.parquet"
    pq.write_table(pa.table({
        "id": [1.0, math.nan, 3.0, 4.0],
        "image": ["a.jpg", "b.jpg", None, "d.jpg"],
        "query": ["q", "q", "q", None],
        "cat": ["x", None, "z", "w"],
        "pixels": [b"\x00" * 10] * 4,
    }), table)
    bi = read_batch_input(table, category_column="cat")
    assert bi.kind == "parquet"
    assert [r.id for r in bi.rows] == ["1", "row-1", "3", "4"]
    assert [r.category for r in bi.rows] == ["x", None, "z", "w"]
    assert [r.problem_type for r in bi.rows] == [None, None, "missing_image", "empty_query"]
    assert bi.rows[0].image_path == str(tmp_path / "a.jpg")


def test_parquet_without_pyarrow(tmp_path, monkeypatch):
    table = tmp_path / "t.parquet"
    table.write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(MissingDependencyError, match="pip install pyarrow"):
        read_batch_input(table)


def test_parquet_garbage(tmp_path):
    pytest.importorskip("pyarrow")
    table = tmp_path / "t.parquet"
    table.write_bytes(b"PAR1 this is not parquet PAR1")
    with pytest.raises(BatchInputError, match="not a readable Parquet"):
        read_batch_input(table)


# --- paths and the digest ---------------------------------------------------------------------------------

def test_unknown_suffix_and_missing_path(tmp_path):
    (tmp_path / "t.txt").write_text("image,query\n")
    with pytest.raises(BatchInputError, match=r"\.jsonl / \.ndjson / \.csv / \.parquet"):
        read_batch_input(tmp_path / "t.txt")
    with pytest.raises(BatchInputError, match="does not exist"):
        read_batch_input(tmp_path / "nope.csv")


def test_describe_digest_follows_content(tmp_path):
    a = write_jsonl(tmp_path / "a.ndjson", [{"image": "x.jpg", "query": "q"}])
    b = write_jsonl(tmp_path / "b.jsonl", [{"image": "x.jpg", "query": "q"}])
    c = write_jsonl(tmp_path / "c.jsonl", [{"image": "x.jpg", "query": "q2"}])
    da, db, dc = (read_batch_input(p).describe() for p in (a, b, c))
    assert da["kind"] == "jsonl" and da["rows"] == 1 and len(da["digest"]) == 64
    assert da["digest"] == db["digest"] != dc["digest"]
    assert json.loads(json.dumps(da)) == da


# --- hostile input: never anything but the typed errors ---------------------------------------------------

def _read_or_typed_error(path: Path, **kw) -> BatchInput | None:
    try:
        bi = read_batch_input(path, **kw)
    except (BatchInputError, MissingDependencyError) as exc:
        assert str(exc) and isinstance(exc, SegZeroError)
        return None
    bi.describe()
    ids = [r.id for r in bi.rows]
    assert len(set(ids)) == len(ids) and [r.index for r in bi.rows] == list(range(len(ids)))
    for r in bi.rows:
        assert isinstance(r.id, str) and isinstance(r.image, str) and isinstance(r.query, str)
        assert (r.problem is None) == (r.problem_type is None)
        if r.problem is None:
            assert r.image and r.query.strip() and r.image_path is not None
    return bi


_SUFFIXES = st.sampled_from([".jsonl", ".ndjson", ".csv", ".parquet"])
_KW = st.fixed_dictionaries({}, optional={"query": st.sampled_from(["q", ""]),
                                          "category_column": st.sampled_from(["label", "query"])})
_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_SETTINGS
@given(data=st.binary(max_size=600), suffix=_SUFFIXES, kw=_KW)
def test_random_bytes(tmp_path, data, suffix, kw):
    p = tmp_path / f"in{suffix}"
    p.write_bytes(data)
    _read_or_typed_error(p, **kw)


_VALUE = st.one_of(st.none(), st.text(max_size=30), st.integers(), st.floats(), st.booleans(),
                   st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
                   st.just("https://x/y.jpg"), st.just("x" * 100_000))
_KEY = st.sampled_from(["id", "image", "query", "label", "other"])
_ROW = st.one_of(st.dictionaries(_KEY, _VALUE, max_size=5), _VALUE)


@_SETTINGS
@given(rows=st.lists(_ROW, max_size=8), cut=st.integers(0, 40), kw=_KW)
def test_jsonl_hostile_values(tmp_path, rows, cut, kw):
    text = "".join(json.dumps(r) + "\n" for r in rows)
    p = tmp_path / "t.jsonl"
    p.write_text(text[: max(len(text) - cut, 0)], encoding="utf-8")
    _read_or_typed_error(p, **kw)


_CELL = st.one_of(st.text(alphabet=st.sampled_from('ab ,"\r\n\ufeff\x00.jpg'), max_size=12),
                  st.just("x" * 200_000))


@_SETTINGS
@given(header=st.lists(st.sampled_from(["id", "image", "query", "label", " image", ""]), max_size=5),
       rows=st.lists(st.lists(_CELL, max_size=6), max_size=6), bom=st.booleans(), kw=_KW)
def test_csv_hostile(tmp_path, header, rows, bom, kw):
    quote = lambda c: '"' + c.replace('"', '""') + '"' if "," in c or '"' in c else c  # noqa: E731
    text = "\n".join(",".join(map(quote, r)) for r in [header, *rows])
    p = tmp_path / "t.csv"
    p.write_text(("\ufeff" if bom else "") + text, encoding="utf-8", errors="surrogatepass")
    _read_or_typed_error(p, **kw)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ids=st.lists(st.one_of(st.none(), st.floats(allow_nan=True), st.integers(0, 3)), min_size=1, max_size=6),
       queries=st.lists(st.one_of(st.none(), st.just(""), st.text(max_size=5)), min_size=6, max_size=6), kw=_KW)
def test_parquet_hostile(tmp_path, ids, queries, kw):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    n = len(ids)
    p = tmp_path / "t.parquet"
    pq.write_table(pa.table({"id": pa.array(ids, type=pa.float64()), "image": [f"{i}.jpg" for i in range(n)],
                             "query": queries[:n], "label": [math.nan] * n}), p)
    _read_or_typed_error(p, **kw)
