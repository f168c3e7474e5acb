"""``segzero demo`` end to end in a real headless browser: Debian's chromium driven by Playwright, against the demo
started as a user starts it (``python -m segzero_tool demo --port ...``, a subprocess) with the scripted reasoner and
the tiny random SAM2 on the CPU.

A person uploads examples/coffee.png, asks, sees the overlay, the reasoning and the object table, clicks to add and
remove points (the mask changes), adds a box with two clicks and undoes it, downloads the result; bad input and a
model failure are one readable line in the page and the app keeps serving; ``--reasoner none`` still takes boxes.

Without Chromium these tests skip (``bash tests/demo/install_browser.sh``); with ``CI`` set they fail instead.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from browser import (
    ANSWER,
    COFFEE,
    FAILURE,
    QUERY,
    REASONING,
    DemoServer,
    ask,
    click_view,
    message,
    open_page,
    pick_example,
    script_folder,
    set_mode,
    table,
    upload,
    view_src,
    wait_message,
    wait_view_change,
)

pytestmark = pytest.mark.slow

@pytest.fixture(scope="module")
def expected_boxes() -> list[list[int]]:
    """The scripted answer's boxes projected back to examples/coffee.png (600x400), by the library itself."""
    from scripted import BoxSegmenter, ScriptedReasoner

    from segzero_tool.pipeline import SegZeroPipeline

    result = SegZeroPipeline(ScriptedReasoner([ANSWER]), BoxSegmenter()).segment(str(COFFEE), QUERY)
    return [list(map(int, o.box)) for o in result.objects]


def _box(cell: str) -> list[int]:
    return [int(round(float(v))) for v in cell.replace("[", "").replace("]", "").split(",")]


def _no_trace(page) -> None:
    body = page.inner_text("body")
    for marker in ("Traceback", 'File "/', "site-packages"):
        assert marker not in body, f"the page shows {marker!r}:\n{body[-2000:]}"


def _asked(page) -> None:
    upload(page, COFFEE)
    wait_message(page, "Ask a question")
    ask(page, QUERY)
    wait_message(page, "2 objects")


def _view_png(page) -> bytes:
    return page.locator("#view img").screenshot()


def test_query_shows_the_overlay_the_reasoning_and_the_objects(page, expected_boxes):
    upload(page, COFFEE)
    assert wait_message(page, "Ask a question") == "Ask a question."
    first = view_src(page)  # the picture itself, shown before any question
    assert first
    ask(page, QUERY)
    assert wait_message(page, "2 objects") == "2 objects, #0 selected."
    rows = table(page)
    assert len(rows) == 2, rows
    assert [r[0] for r in rows] == ["0", "1"]
    assert [r[1] for r in rows] == ["true", "true"]
    assert [_box(r[2]) for r in rows] == expected_boxes == [[120, 80, 300, 240], [360, 120, 540, 320]]
    for r in rows:
        assert 0.0 <= float(r[3]) <= 1.0 and int(r[4]) > 0
    assert page.input_value("#reasoning textarea") == REASONING
    overlay = wait_view_change(page, first)  # the overlay replaced the bare picture
    assert overlay != first
    img = page.locator("#view img")
    assert img.evaluate("i => i.complete && i.naturalWidth") == 600
    assert img.evaluate("i => i.naturalHeight") == 400
    _no_trace(page)


def test_clicks_add_and_remove_points_and_the_mask_changes(page):
    _asked(page)
    before_rows, before_src, before_png = table(page), view_src(page), _view_png(page)
    click_view(page, 0.35, 0.45)  # "add a point (+)" is the default mode; inside object #0's box
    added_src = wait_view_change(page, before_src)
    wait_message(page, "2 objects, #0 selected")
    added_rows = table(page)
    assert added_rows[0][3:] != before_rows[0][3:], (before_rows, added_rows)  # score / area of #0: a new mask
    assert added_rows[1] == before_rows[1]  # the other object is untouched
    assert _view_png(page) != before_png

    set_mode(page, "remove a point")
    click_view(page, 0.35, 0.45)
    wait_view_change(page, added_src)
    removed_rows = table(page)
    assert removed_rows[0][3:] != added_rows[0][3:], (added_rows, removed_rows)
    assert removed_rows[1] == before_rows[1]
    assert message(page).startswith("2 objects")
    _no_trace(page)


def test_box_mode_adds_an_object_with_two_clicks_and_undo_removes_it(page):
    pick_example(page, 0)  # examples/coffee.png, offered under the upload
    wait_message(page, "Ask a question")
    ask(page, QUERY)
    wait_message(page, "2 objects")
    set_mode(page, "box: click two corners")
    before = view_src(page)
    click_view(page, 0.05, 0.10)  # shown at 600x400: the image's own pixels
    assert "click the opposite corner" in wait_message(page, "opposite corner")
    click_view(page, 0.20, 0.40)
    assert wait_message(page, "3 objects") == "3 objects, #2 selected."
    wait_view_change(page, before)
    rows = table(page)
    assert len(rows) == 3
    assert np.allclose(_box(rows[2][2]), [30, 40, 120, 160], atol=2), rows  # the two clicks, in image pixels

    page.click("#undo")
    assert wait_message(page, "Undone") == "2 objects, #1 selected. Undone."
    assert len(table(page)) == 2
    page.click("#undo")  # back to before the question
    wait_message(page, "Ask a question")
    assert table(page) == []
    page.click("#undo")
    assert "Problem: nothing to undo" in wait_message(page, "nothing to undo")
    _no_trace(page)


def test_download_gives_result_json_overlay_and_masks(page, tmp_path):
    _asked(page)
    page.click("#download")
    wait_message(page, "Files ready")
    links = page.locator("#files a[download]")
    links.nth(2).wait_for(timeout=30_000)
    assert sorted(links.evaluate_all("ls => ls.map(l => l.getAttribute('download'))")) == [
        "masks.zip", "overlay.png", "result.json"]
    got = {}
    for name in ("result.json", "masks.zip"):
        with page.expect_download() as info:
            page.locator(f"#files a[download='{name}']").click()
        got[name] = tmp_path / name
        info.value.save_as(got[name])
    result = json.loads(got["result.json"].read_text())
    assert len(result["objects"]) == 2
    assert result["query"] == QUERY
    with zipfile.ZipFile(got["masks.zip"]) as zf:
        assert len([n for n in zf.namelist() if n.endswith(".png")]) >= 2
    overlay = page.request.get(page.locator("#files a[download='overlay.png']").get_attribute("href"))
    assert overlay.ok and overlay.body()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_input_is_one_readable_line_and_the_page_keeps_working(page, tmp_path):
    from PIL import Image

    ask(page, QUERY)  # before any picture
    assert "Problem: no image" in wait_message(page, "Problem")
    upload(page, COFFEE)
    wait_message(page, "Ask a question")
    ask(page, "   ")
    assert "Problem: the query is empty" in wait_message(page, "query is empty")

    fake = tmp_path / "notes.png"  # text under an image's name: decoded by the app, refused in words
    fake.write_text("shopping list: coffee, milk\n")
    upload(page, fake)
    line = wait_message(page, "cannot be used")  # the picture before it stays (here: coffee.png, no result yet)
    assert line.startswith("Ask a question. Problem: this picture cannot be used: "), line
    assert line.endswith("notes.png: not a recognised image format (PNG, JPEG, WebP, ...)"), line

    big = tmp_path / "big.png"  # over the demo's --max-pixels 300000
    Image.fromarray(np.full((700, 700, 3), 200, np.uint8)).save(big)
    upload(page, big)
    line = wait_message(page, "700x700")
    assert "Problem: this picture cannot be used" in line and "more than the limit of 300,000" in line, line

    text = tmp_path / "notes.txt"  # not an image type at all: Gradio's upload check says so in a toast
    text.write_text("shopping list: coffee, milk\n")
    upload(page, text)
    toast = page.locator(".toast-body", has_text="Invalid file type")
    toast.wait_for(timeout=30_000)
    assert "notes.txt" in toast.inner_text()
    _no_trace(page)

    upload(page, COFFEE)  # the page keeps working
    wait_message(page, "Ask a question")
    ask(page, QUERY)
    assert wait_message(page, "2 objects") == "2 objects, #0 selected."
    _no_trace(page)


def _own_demo(tmp_path: Path, args: list[str]) -> DemoServer:
    return DemoServer(tmp_path / "server", args).start()


def test_a_model_failure_is_one_line_and_the_app_keeps_serving(browser, tmp_path):
    (tmp_path / "seg").mkdir()
    server = _own_demo(tmp_path, ["--reasoner-backend", "browser:FailingReasoner", "--reasoner",
                                  str(script_folder(tmp_path / "script")), "--segmenter-backend",
                                  "scripted:BoxSegmenter", "--segmenter", str(tmp_path / "seg"), "--device", "cpu"])
    try:
        page = open_page(browser, server)
        upload(page, COFFEE)
        wait_message(page, "Ask a question")
        ask(page, QUERY)
        line = wait_message(page, FAILURE)
        assert line.startswith("Ask a question. ") and ("Error: the model failed" in line or "Problem:" in line), line
        assert "\n" not in line
        _no_trace(page)
        set_mode(page, "box: click two corners")  # the same page still works
        click_view(page, 0.1, 0.1)
        wait_message(page, "opposite corner")
        click_view(page, 0.5, 0.5)
        assert wait_message(page, "1 object") == "1 object, #0 selected."
        page.context.close()
        assert server.alive()
        page = open_page(browser, server)  # and so does a new one
        upload(page, COFFEE)
        wait_message(page, "Ask a question")
        page.context.close()
    finally:
        server.stop()
    assert "RuntimeError" in server.log_tail(20_000)  # the trace went to the log, not to the page


def test_a_model_that_cannot_load_is_one_line_and_the_app_keeps_serving(browser, tmp_path):
    folder = script_folder(tmp_path / "slow")
    (folder / "slow.json").write_text(json.dumps({"load_s": 0, "fail_loads": 1}))
    (tmp_path / "seg").mkdir()
    server = _own_demo(tmp_path, ["--reasoner-backend", "slow_plugins:SlowLoadingReasoner", "--reasoner",
                                  str(folder), "--segmenter-backend", "scripted:BoxSegmenter", "--segmenter",
                                  str(tmp_path / "seg"), "--device", "cpu"])
    try:
        page = open_page(browser, server, wait_ready=False)
        page.wait_for_selector("text=Models: could not be loaded", timeout=60_000)
        assert "simulated load failure number 1" in page.inner_text("body")
        upload(page, COFFEE)
        line = wait_message(page, "could not be loaded")
        assert line.startswith("Problem: the models could not be loaded: "), line
        assert "simulated load failure number 1" in line and "\n" not in line
        _no_trace(page)
        page.context.close()
        assert server.alive()
    finally:
        server.stop()


def test_without_a_reasoner_the_page_takes_boxes(browser, tmp_path, tiny_models):
    server = _own_demo(tmp_path, ["--reasoner", "none", "--segmenter", str(tiny_models["segmenter"]),
                                  "--device", "cpu"])
    try:
        page = open_page(browser, server)
        assert "reasoner none" in page.inner_text("body")
        upload(page, COFFEE)
        assert wait_message(page, "Ask a question") == "Ask a question (no reasoner: add boxes)."
        ask(page, QUERY)
        assert "Problem: this demo runs without a reasoner" in wait_message(page, "without a reasoner")
        set_mode(page, "box: click two corners")
        click_view(page, 0.2, 0.2)
        wait_message(page, "opposite corner")
        click_view(page, 0.5, 0.6)
        assert wait_message(page, "1 object") == "1 object, #0 selected."
        rows = table(page)
        assert len(rows) == 1
        assert np.allclose(_box(rows[0][2]), [120, 80, 300, 240], atol=2), rows  # the two clicks, in image pixels
        assert page.input_value("#reasoning textarea").startswith("(no reasoning")
        _no_trace(page)
        page.context.close()
    finally:
        server.stop()


def test_dragging_a_box_adds_an_object_and_is_not_also_a_click(page, tmp_path):
    _asked(page)
    before = view_src(page)
    img = page.locator("#view img").bounding_box()
    sx, sy = img["width"] / 600, img["height"] / 400  # shown size over the image's 600x400
    x0, y0 = img["x"] + 30 * sx, img["y"] + 20 * sy
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x0 + 50 * sx, y0 + 40 * sy, steps=4)
    assert page.locator("#drag-rect").count() == 1  # the rectangle follows the pointer
    page.mouse.move(x0 + 100 * sx, y0 + 80 * sy, steps=4)
    page.mouse.up()
    assert wait_message(page, "3 objects") == "3 objects, #2 selected."
    wait_view_change(page, before)
    assert page.locator("#drag-rect").count() == 0
    rows = table(page)
    assert np.allclose(_box(rows[2][2]), [30, 20, 130, 100], atol=2), rows
    page.wait_for_timeout(500)  # a click swallowed late would refine object #2 now
    page.click("#download")
    wait_message(page, "Files ready")
    link = page.locator("#files a[download='result.json']")
    link.wait_for(timeout=30_000)
    with page.expect_download() as info:
        link.click()
    info.value.save_as(tmp_path / "result.json")
    obj = json.loads((tmp_path / "result.json").read_text())["objects"][2]
    assert obj["points"] == [] and "negative_points" not in obj  # the box alone: the release was no click
    _no_trace(page)


def test_an_upload_over_the_file_cap_is_refused_in_the_page(browser, tiny_models, tmp_path):
    from PIL import Image

    args = ["--reasoner-backend", "scripted:ScriptedReasoner", "--reasoner", str(script_folder(tmp_path / "script")),
            "--segmenter", str(tiny_models["segmenter"]), "--device", "cpu", "--max-file-mb", "0.05"]
    big = tmp_path / "big.png"  # about 190 KB of noise: over the 50 KB cap
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (250, 250, 3), dtype=np.uint8)).save(big)
    with DemoServer(tmp_path / "server", args) as server:
        p = open_page(browser, server)
        try:
            upload(p, big)
            p.wait_for_selector("text=/exceeds the maximum file size|too large|maximum/i", timeout=30_000)
            small = tmp_path / "small.png"
            Image.fromarray(np.full((32, 48, 3), 90, np.uint8)).save(small)
            upload(p, small)  # the page keeps working after the refusal
            wait_message(p, "Ask a question")
            _no_trace(p)
        finally:
            p.context.close()
