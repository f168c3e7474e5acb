"""The demo's logic without a browser: DemoSession (pick, ask, click to refine, box, show / hide, undo, download) and
the page's pieces that need no server (render, the background model loading, the one-line errors)."""

from __future__ import annotations

import json
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))
sys.path.insert(0, str(TESTS / "batch"))

from batch_support import BOXES, SIZE, box_answer, write_images  # noqa: E402
from scripted import BoxSegmenter, ScriptedReasoner  # noqa: E402

from segzero_tool import SegZeroPipeline  # noqa: E402
from segzero_tool.demo.session import DemoError, DemoSession  # noqa: E402
from segzero_tool.masks import rle_decode  # noqa: E402


def _session(tmp_path, answers=None, *, reasoner=True, view_side=1024):
    rs = ScriptedReasoner(answers or [box_answer(BOXES, *SIZE, think="two squares")]) if reasoner else None
    s = DemoSession(SegZeroPipeline(rs, BoxSegmenter()), tmp_path / "downloads", view_side=view_side)
    (img,) = write_images(tmp_path / "in", 1)
    s.set_image(str(img))
    return s


def test_ask_click_box_undo(tmp_path):
    s = _session(tmp_path)
    r = s.ask("  the squares ")
    assert [tuple(o.box) for o in r.objects] == list(BOXES) and s.selected == 0
    assert s.table()[0][:3] == [0, True, list(BOXES[0])]
    area = s.table()[0][4]
    r2 = s.click(20, 20, "remove")  # a negative point clears a 3x3 square of object 0
    assert r2.objects[0].negative_points == ((20, 20),) and s.table()[0][4] == area - 9
    assert s.result is r2 and s.history[-1] is r  # results are never changed in place
    assert s.click(60, 2, "box") is None and "click the opposite corner" in s.status()
    r3 = s.click(70, 12, "box")
    assert len(r3.objects) == 3 and tuple(r3.objects[2].box) == (60, 2, 70, 12) and s.selected == 2
    assert s.undo() is r2 and s.selected == 1
    assert s.undo() is r and s.undo() is None
    with pytest.raises(DemoError, match="nothing to undo"):
        s.undo()


def test_clicks_on_a_downscaled_view_land_on_image_pixels(tmp_path):
    s = _session(tmp_path, view_side=48)  # the 96x64 picture is shown at 48x32
    s.ask("q")
    assert s.view().size == (48, 32)
    assert s.to_image_xy(10, 10) == (20, 20)
    assert s.to_image_xy(1e9, -5) == (95, 0)  # clamped into the image
    r = s.click(10, 10, "add")
    assert (20, 20) in r.objects[0].points


def test_show_only_hides_objects_in_the_view_and_the_table(tmp_path):
    s = _session(tmp_path)
    s.ask("q")
    full = np.asarray(s.view())
    s.show_only([1])
    assert [row[1] for row in s.table()] == [False, True]
    assert not np.array_equal(np.asarray(s.view()), full)
    s.show_only([0, 1])
    assert np.array_equal(np.asarray(s.view()), full)


def test_download_writes_result_overlay_and_masks_zip(tmp_path):
    s = _session(tmp_path)
    s.ask("q")
    s.click(20, 20, "remove")
    result_json, overlay, masks = s.download()
    data = json.loads(result_json.read_text())
    assert len(data["objects"]) == 2 and data["objects"][0]["negative_points"] == [[20, 20]]
    mask0 = rle_decode(data["objects"][0]["rle"])
    with zipfile.ZipFile(masks) as zf:
        assert sorted(zf.namelist()) == ["mask_0.png", "mask_1.png", "mask_union.png"]
        png = np.array(Image.open(zf.open("mask_0.png"))) > 0
    assert np.array_equal(png, mask0)
    assert Image.open(overlay).size == SIZE
    assert s.download()[0].parent.name == "result-002"  # each download its own folder


@pytest.mark.parametrize(("action", "message"), [
    (lambda s: s.ask(""), "query"),
    (lambda s: s.ask("x" * 5000), "query"),
    (lambda s: s.click(5, 5, "add"), "no object to refine yet"),
    (lambda s: s.click(5, 5, "sideways"), "unknown click mode"),
    (lambda s: s.download(), "nothing to download"),
    (lambda s: s.select(3), "there is no object #3"),
    (lambda s: s.set_image(None), "no image"),
    (lambda s: s.click(float("nan"), 3, "box"), "finite coordinates"),
    (lambda s: s.click("left", 3, "box"), "two numbers"),
    (lambda s: s.set_image(b"not a picture"), "this picture cannot be used"),
])
def test_what_a_person_can_get_wrong_is_a_demo_error(tmp_path, action, message):
    s = _session(tmp_path)
    with pytest.raises(DemoError, match=message):
        action(s)


def test_a_too_large_picture_is_refused_with_a_message(tmp_path):
    s = DemoSession(SegZeroPipeline(ScriptedReasoner(["x"]), BoxSegmenter(), max_pixels=1000), tmp_path / "d")
    (img,) = write_images(tmp_path / "in", 1)
    with pytest.raises(DemoError, match="cannot be used.*pixels"):
        s.set_image(str(img))


def test_a_refused_upload_is_named_by_its_file_name_not_its_temporary_path(tmp_path):
    s = _session(tmp_path)
    fake = tmp_path / "deep" / "upload-cache" / "notes.png"
    fake.parent.mkdir(parents=True)
    fake.write_text("not a picture")
    with pytest.raises(DemoError) as info:
        s.set_image(str(fake))
    assert "notes.png" in str(info.value) and str(fake.parent) not in str(info.value)


def test_an_empty_answer_and_an_unparsable_one_are_told_apart(tmp_path):
    s = _session(tmp_path, ["<think>none here</think><answer>[]</answer>"])
    s.ask("a giraffe")
    assert s.status() == "0 objects."
    s = _session(tmp_path / "2", ["no tags, no json"])
    s.ask("a giraffe")
    assert s.status() == "0 objects (the answer did not parse: no_answer)."


def test_a_box_needs_two_different_corners(tmp_path):
    s = _session(tmp_path)
    s.click(30, 30, "box")
    with pytest.raises(DemoError, match="must differ"):
        s.click(30, 40, "box")


def test_without_a_reasoner_boxes_still_work(tmp_path):
    s = _session(tmp_path, reasoner=False)
    assert "no reasoner: add boxes" in s.status()
    with pytest.raises(DemoError, match="without a reasoner"):
        s.ask("the squares")
    s.click(10, 10, "box")
    r = s.click(40, 30, "box")
    assert len(r.objects) == 1 and r.reasoner is None
    r2 = s.click(20, 20, "remove")
    assert r2.objects[0].negative_points == ((20, 20),)


def test_render_and_background_loading():
    pytest.importorskip("gradio")
    from segzero_tool.demo.app import Models, render

    gate = threading.Event()

    def load():
        gate.wait(10)
        return SegZeroPipeline(ScriptedReasoner(["x"]), BoxSegmenter())

    models = Models(load).start()
    assert models.status() == "Models: loading …"
    with pytest.raises(DemoError, match="still loading"):
        models.get(timeout=0)
    gate.set()
    assert models.get(timeout=10) is models.pipeline
    assert models.status().startswith("Models: ready (reasoner scripted, segmenter box)")
    failing = Models(lambda: (_ for _ in ()).throw(RuntimeError("CUDA out of memory"))).start()
    with pytest.raises(DemoError, match="could not be loaded: CUDA out of memory"):
        failing.get(timeout=10)
    assert failing.status() == "Models: could not be loaded: CUDA out of memory"
    view, reasoning, table, shown, selected, status = render(None, "hello")
    assert view is None and table == [] and status == "hello"


def test_handlers_turn_every_failure_into_one_line(tmp_path):
    """The page's handlers (as Gradio calls them): a bad query, and a reasoner that raises, give a message and the
    session goes on."""
    pytest.importorskip("gradio")
    from segzero_tool.demo.app import Models, build_app

    class Exploding(ScriptedReasoner):
        def generate(self, requests):
            raise RuntimeError("device-side assert triggered")

    models = Models(lambda: SegZeroPipeline(Exploding(["x"]), BoxSegmenter())).start()
    models.get(timeout=10)
    app = build_app(models, folder=tmp_path)
    handlers = {fn.name: fn.fn for fn in app.fns.values()} if isinstance(app.fns, dict) else \
        {fn.name: fn.fn for fn in app.fns}
    on_image, on_ask = handlers["on_image"], handlers["on_ask"]
    (img,) = write_images(tmp_path / "in", 1)
    state, *_, message = on_image(None, str(img))
    assert isinstance(state, DemoSession) and message == "Ask a question."
    *_, message = on_ask(state, "", lambda *a, **k: None)
    assert message.startswith("Ask a question. Problem:") and "query" in message
    *_, message = on_ask(state, "the squares", lambda *a, **k: None)
    assert "Error: the model failed: RuntimeError: device-side assert triggered" in message
    assert "Traceback" not in message
    state2, *_, message = on_image(state, str(img))
    assert state2 is state and message == "Ask a question."


@pytest.mark.parametrize(("argv", "message"), [
    (["--port", "0"], "--port must be 1 to 65535"),
    (["--port", "70000"], "--port must be 1 to 65535"),
    (["--view-side", "10"], "--view-side must be at least 64"),
    (["--max-file-mb", "0"], "--max-file-mb must be a positive number"),
    (["--max-file-mb", "inf"], "--max-file-mb must be a positive number"),
])
def test_bad_demo_options_are_one_line_before_any_model_loads(capsys, no_loading, argv, message):
    from cli_support import assert_one_line, run_main

    code, _, err = run_main(capsys, "demo", *argv)
    assert code == 2
    assert_one_line(err, message)


_numbers = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True), st.just(1e308))
_actions = st.lists(st.one_of(
    st.tuples(st.just("ask"), st.one_of(st.text(max_size=30), st.just(""), st.just("x" * 3000))),
    st.tuples(st.just("click"), st.tuples(_numbers, _numbers, st.sampled_from(["add", "remove", "box", "zoom"]))),
    st.tuples(st.just("select"), st.one_of(st.none(), st.integers(-3, 5))),
    st.tuples(st.just("show_only"), st.lists(st.integers(-2, 5), max_size=4)),
    st.tuples(st.just("undo"), st.none()),
    st.tuples(st.just("download"), st.none()),
    st.tuples(st.just("image"), st.sampled_from(["good", "bytes", "none"])),
), max_size=12)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(actions=_actions)
def test_any_sequence_of_actions_raises_only_demo_errors(tmp_path, actions):
    """Whatever a person (or a crafted event) does, in any order: a DemoError with a message, or it works; the
    session stays usable (a final ask still works)."""
    s = _session(tmp_path, [box_answer(BOXES, *SIZE), "garbage", "<answer>[]</answer>"])
    good = s.image
    for name, arg in actions:
        try:
            if name == "ask":
                s.ask(arg)
            elif name == "click":
                s.click(*arg)
            elif name == "select":
                s.select(arg)
            elif name == "show_only":
                s.show_only(arg)
            elif name == "undo":
                s.undo()
            elif name == "download":
                s.download()
            else:
                s.set_image({"good": good, "bytes": b"\x89PNG broken", "none": None}[arg])
        except DemoError as exc:
            assert str(exc)
        s.status()
        s.table()
        s.view()
    s.set_image(good)
    assert s.ask("the squares") is s.result
