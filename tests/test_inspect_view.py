"""The inspection picture (``inspect_result``'s core): numbered, coloured outlines, crops, size budgets, text."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from segzero_tool.inspect_view import MIN_VIEW_SIDE, object_colour, render_inspection
from segzero_tool.overlay import PALETTE
from segzero_tool.parsing import ParseStatus
from segzero_tool.result import SegmentationResult, SegmentedObject

GREY = 90


def _rect_mask(h, w, x1, y1, x2, y2):
    m = np.zeros((h, w), bool)
    m[y1 : y2 + 1, x1 : x2 + 1] = True
    return m


def _result(w=640, h=480, objects=(), query="the cups", image=True, status=ParseStatus.OK):
    img = np.full((h, w, 3), GREY, np.uint8) if image else None
    return SegmentationResult(query, "visionreasoner", "", "", status, (w, h), list(objects), image=img)


def _obj(h, w, box, score=0.9, mask=True, label=None):
    return SegmentedObject(box=box, points=(), score=score, mask=_rect_mask(h, w, *box) if mask else None, label=label)


def _three(w=640, h=480):
    boxes = [(100, 100, 199, 199), (300, 50, 449, 149), (400, 300, 599, 459)]
    return _result(w, h, [_obj(h, w, b, score=0.93 - 0.1 * k, label="cup" if k == 0 else None)
                          for k, b in enumerate(boxes)])


def _pixels(ins):
    return np.asarray(ins.image.convert("RGB"))


def _count_colour(px, colour, x1, y1, x2, y2):
    win = px[max(0, y1) : y2, max(0, x1) : x2]
    return int(np.all(win == np.asarray(colour, np.uint8), axis=-1).sum())


# --- sizes -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(640, 480), (480, 640), (3000, 2000), (1, 1), (10, 3000), (3000, 7), (200, 150)])
@pytest.mark.parametrize("crops", [False, True])
@pytest.mark.parametrize("max_side", [64, 300, 1024])
def test_the_whole_picture_fits_max_side(size, crops, max_side):
    w, h = size
    objs = [_obj(h, w, (0, 0, w - 1, h - 1)), _obj(h, w, (w // 2, h // 2, w - 1, h - 1), mask=False)]
    ins = render_inspection(_result(w, h, objs), crops=crops, max_side=max_side)
    assert max(ins.image.size) <= max_side
    decoded = Image.open(io.BytesIO(ins.data))
    assert decoded.size == ins.image.size and decoded.format == "PNG" and ins.mime_type == "image/png"
    assert ins.fitted and not ins.reduced


def test_small_images_are_enlarged_for_legible_labels_but_never_past_max_side():
    ins = render_inspection(_result(100, 50, [_obj(50, 100, (10, 10, 40, 40))]))
    assert ins.image.size == (MIN_VIEW_SIDE, MIN_VIEW_SIDE // 2)
    assert ins.scale == pytest.approx(MIN_VIEW_SIDE / 100)
    assert max(render_inspection(_result(100, 50), max_side=120).image.size) <= 120


def _fifty(w=3000, h=2000, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)  # noise: the hardest picture to compress
    objs = []
    for _ in range(50):
        x1, y1 = int(rng.integers(0, w - 300)), int(rng.integers(0, h - 300))
        bw, bh = int(rng.integers(20, 300)), int(rng.integers(20, 300))
        box = (x1, y1, x1 + bw - 1, y1 + bh - 1)
        objs.append(SegmentedObject(box=box, points=(), score=0.5, mask=_rect_mask(h, w, *box)))
    return SegmentationResult("all of them", "visionreasoner", "", "", ParseStatus.OK, (w, h), objs, image=img)


@pytest.mark.parametrize("crops", [False, True])
def test_max_bytes_is_respected_for_a_large_image_with_fifty_objects(crops):
    result = _fifty()
    full = render_inspection(result, crops=crops)
    assert len(full.data) > 150_000
    ins = render_inspection(result, crops=crops, max_bytes=150_000)
    assert len(ins.data) <= 150_000 and ins.fitted and ins.reduced
    assert max(ins.image.size) <= 1024
    assert Image.open(io.BytesIO(ins.data)).size == ins.image.size
    assert "reduced to fit 150,000 bytes" in ins.text
    assert ins.indices == tuple(range(50)) and set(ins.labels) == set(range(50))
    if crops:
        assert set(ins.tiles) == set(range(50))


def test_a_budget_that_cannot_be_met_gives_the_smallest_picture_and_says_so():
    ins = render_inspection(_fifty(), max_bytes=200)
    assert not ins.fitted and max(ins.image.size) <= 64
    assert "could not be made to fit 200 bytes" in ins.text


def test_a_budget_met_by_png_changes_nothing():
    result = _three()
    plain = render_inspection(result)
    ins = render_inspection(result, max_bytes=len(plain.data))
    assert ins.data == plain.data and not ins.reduced and "reduced" not in ins.text


# --- numbers, colours, outlines --------------------------------------------------------------------


def test_every_number_is_drawn_on_its_colour_inside_its_mask():
    ins = render_inspection(_three())
    px = _pixels(ins)
    assert ins.scale == 1.0
    for i, (cx, cy) in enumerate([(150, 150), (375, 100), (500, 380)]):
        colour = PALETTE[i]
        # the label sits on the mask's innermost point, here the centre of the rectangle
        assert _count_colour(px, colour, cx - 25, cy - 25, cx + 25, cy + 25) >= 60, i
        x1, y1, x2, y2 = ins.labels[i]
        assert x1 <= cx <= x2 and y1 <= cy <= y2
        label = px[y1 + 2 : y2 - 2, x1 + 2 : x2 - 2].reshape(-1, 3)
        ink = (0, 0, 0) if sum(colour) > 350 else (255, 255, 255)
        assert np.all(label == np.asarray(ink, np.uint8), axis=-1).sum() >= 5  # the digit, in a contrasting ink


def test_outlines_follow_the_mask_edge_in_the_objects_colour():
    ins = render_inspection(_three())
    px = _pixels(ins)
    # the left edge of object 0 (x = 100, rows 120..180) carries its colour; far from it, the grey shows
    assert _count_colour(px, PALETTE[0], 97, 120, 104, 180) >= 60
    assert (px[20, 20] == GREY).all()
    # inside the mask, away from the label and the edge: lightly filled, neither grey nor the pure colour
    inside = px[115, 115]
    assert not (inside == GREY).all() and tuple(inside) != PALETTE[0]


def test_line_width_grows_with_the_picture():
    def edge_width(w, h):
        result = _result(w, h, [_obj(h, w, (w // 4, h // 4, w // 2, h // 2))])
        ins = render_inspection(result, max_side=4096)
        px = _pixels(ins)
        y = round(3 * h / 8 * ins.scale)
        row = np.all(px[y] == np.asarray(PALETTE[0], np.uint8), axis=-1)
        return int(row.sum())
    assert edge_width(4000, 3000) > edge_width(400, 300)


def test_colours_are_the_overlay_palette_then_distinct_hues():
    assert [object_colour(i) for i in range(len(PALETTE))] == list(PALETTE)
    colours = [object_colour(i) for i in range(80)]
    assert len(set(colours)) == 80
    for a, b in zip(colours[len(PALETTE) - 1 : -1], colours[len(PALETTE) :], strict=True):
        assert sum(abs(x - y) for x, y in zip(a, b, strict=True)) > 60  # neighbours differ clearly


def test_objects_beyond_the_palette_get_their_own_colour_and_label():
    w, h = 900, 600
    objs = [_obj(h, w, (10 + 70 * k, 10 + 40 * (k % 12), 60 + 70 * k, 50 + 40 * (k % 12))) for k in range(12)]
    ins = render_inspection(_result(w, h, objs))
    px = _pixels(ins)
    for i in (10, 11):
        x1, y1, x2, y2 = ins.labels[i]
        assert _count_colour(px, object_colour(i), x1, y1, x2, y2) > 20


# --- selection, masks off, crops -------------------------------------------------------------------


def test_indices_restrict_the_picture_and_keep_the_original_numbers():
    ins = render_inspection(_three(), indices=[2, 0, 2])
    assert ins.indices == (0, 2) and set(ins.labels) == {0, 2}
    px = _pixels(ins)
    assert _count_colour(px, PALETTE[2], 480, 360, 520, 400) >= 60  # #2 in its own colour, not PALETTE[1]
    assert _count_colour(px, PALETTE[1], 290, 40, 460, 160) == 0  # #1 is not drawn
    assert "2 of 3 object(s)" in ins.text and "Shown: #0, #2" in ins.text
    assert "- #2 box" in ins.text and "- #1 box" not in ins.text


@pytest.mark.parametrize("bad", [[3], [-1], [0, 99]])
def test_an_index_out_of_range_is_refused_with_the_valid_range(bad):
    with pytest.raises(ValueError, match=r"out of range: the result has 3 object\(s\) \(#0 to #2\)"):
        render_inspection(_three(), indices=bad)


@pytest.mark.parametrize("bad", [[True], ["1"], [1.0]])
def test_non_integer_indices_are_refused(bad):
    with pytest.raises(ValueError, match="integers"):
        render_inspection(_three(), indices=bad)


def test_objects_without_masks_show_their_box():
    w, h = 640, 480
    ins = render_inspection(_result(w, h, [_obj(h, w, (100, 100, 299, 249), mask=False)]))
    px = _pixels(ins)
    assert _count_colour(px, PALETTE[0], 96, 150, 104, 200) >= 40  # left edge of the box
    assert _count_colour(px, PALETTE[0], 150, 246, 250, 254) >= 100  # bottom edge
    assert (px[175, 200] == GREY).all()  # no fill
    assert "#0 box [100, 100, 299, 249] score 0.90 no mask (its box is drawn)" in ins.text


def test_crops_one_tile_per_object_below_a_landscape_view():
    ins = render_inspection(_three(), crops=True)
    px = _pixels(ins)
    assert ins.crops and set(ins.tiles) == {0, 1, 2}
    main_h = round(480 * ins.scale)
    rects = list(ins.tiles.values())
    for i, (x1, y1, x2, y2) in ins.tiles.items():
        assert y1 > main_h and x2 <= ins.image.width and y2 <= ins.image.height
        assert x2 - x1 == y2 - y1 >= 50  # square tiles
        assert (px[y1, (x1 + x2) // 2] == PALETTE[i]).all()  # its border
        assert _count_colour(px, PALETTE[i], x1 + 2, y1 + 2, x1 + 30, y1 + 30) >= 30  # its number's label
    for a in rects:
        for b in rects:
            assert a == b or not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])
    assert "Below the full view, one crop per object around its box (15% margin" in ins.text


def test_crops_beside_a_portrait_view_and_indices_subset():
    w, h = 480, 640
    objs = [_obj(h, w, (50, 50, 149, 149)), _obj(h, w, (200, 300, 399, 599)), _obj(h, w, (10, 400, 60, 450))]
    ins = render_inspection(_result(w, h, objs), crops=True, indices=[1, 2])
    main_w = round(w * ins.scale)
    assert set(ins.tiles) == {1, 2}
    assert all(x1 > main_w for x1, _, _, _ in ins.tiles.values())
    assert "Beside the full view" in ins.text


def test_a_crop_shows_the_object_at_the_original_resolution():
    w, h = 4000, 3000
    img = np.full((h, w, 3), GREY, np.uint8)
    img[1000:1010, 1000:1010] = (255, 0, 0)  # a 10 px object: 2-3 px in the full view
    obj = SegmentedObject(box=(1000, 1000, 1009, 1009), points=(), score=0.9, mask=_rect_mask(h, w, 1000, 1000, 1009, 1009))
    result = SegmentationResult("the red dot", "visionreasoner", "", "", ParseStatus.OK, (w, h), [obj], image=img)
    ins = render_inspection(result, crops=True)
    x1, y1, x2, y2 = ins.tiles[0]
    tile = _pixels(ins)[y1:y2, x1:x2]
    red = np.all(tile == (255, 0, 0), axis=-1).sum()
    assert red > 20 * 20  # enlarged in its tile


# --- text ------------------------------------------------------------------------------------------


def test_text_lists_each_object_with_box_score_area_and_label():
    ins = render_inspection(_three())
    lines = [line for line in ins.text.splitlines() if line.startswith("- #")]
    assert lines == [
        "- #0 box [100, 100, 199, 199] score 0.93 area 10,000 px (3.3% of the image); label 'cup'",
        "- #1 box [300, 50, 449, 149] score 0.83 area 15,000 px (4.9% of the image)",
        "- #2 box [400, 300, 599, 459] score 0.73 area 32,000 px (10.4% of the image)",
    ]
    assert ins.text.startswith("Inspection of all 3 object(s) for the query 'the cups' in the 640x480 image.")
    assert re.search(r"The picture: \d+x\d+ PNG, [\d,]+ bytes\.", ins.text)


def test_empty_result_says_so_and_shows_the_image_alone():
    result = _result(objects=[], status=ParseStatus.NO_OBJECTS)
    ins = render_inspection(result, crops=True)
    assert ins.text.startswith("No object to inspect for the query 'the cups' in the 640x480 image (parse status "
                               "no_objects): the picture shows the image alone, with nothing drawn.")
    assert ins.indices == () and ins.labels == {} and ins.tiles == {}
    assert (_pixels(ins) == GREY).all()


def test_an_empty_selection_says_so():
    ins = render_inspection(_three(), indices=[])
    assert ins.text.startswith("No object selected: the indices list is empty (the result has 3 object(s), #0 to #2)")
    assert (_pixels(ins) == GREY).all()


def test_text_stays_bounded_for_many_objects():
    w, h = 800, 600
    objs = [_obj(h, w, (k % 700, k % 500, k % 700 + 20, k % 500 + 20), mask=False, label="x" * 200) for k in range(400)]
    ins = render_inspection(_result(w, h, objs), max_chars=3000)
    assert len(ins.text) < 3000
    assert "more object(s)" in ins.text and "(all of them are drawn)" in ins.text


# --- hostile ---------------------------------------------------------------------------------------


def test_an_empty_mask_shows_its_box_and_says_empty():
    w, h = 640, 480
    obj = SegmentedObject(box=(100, 100, 199, 199), points=(), score=0.4, mask=np.zeros((h, w), bool))
    ins = render_inspection(_result(w, h, [obj]), crops=True)
    px = _pixels(ins)
    assert _count_colour(px, PALETTE[0], 96, 120, 104, 180) >= 40
    assert "area 0 px (0.0% of the image) empty mask (its box is drawn)" in ins.text
    assert set(ins.tiles) == {0}


def test_a_mask_covering_the_whole_image_and_a_box_on_the_edges():
    w, h = 640, 480
    obj = SegmentedObject(box=(0, 0, w - 1, h - 1), points=(), score=1.0, mask=np.ones((h, w), bool))
    ins = render_inspection(_result(w, h, [obj]), crops=True)
    px = _pixels(ins)
    assert (px[0, 100] == PALETTE[0]).all() or (px[1, 100] == PALETTE[0]).all()  # outline along the border
    x1, y1, x2, y2 = ins.labels[0]
    assert 0 <= x1 < x2 <= round(w * ins.scale) and 0 <= y1 < y2 <= round(h * ins.scale)
    assert "area 307,200 px (100.0% of the image)" in ins.text


def test_a_one_pixel_image():
    obj = SegmentedObject(box=(0, 0, 0, 0), points=((0, 0),), score=0.5, mask=np.ones((1, 1), bool))
    result = _result(1, 1, [obj])
    for crops in (False, True):
        ins = render_inspection(result, crops=crops)
        assert max(ins.image.size) <= 1024 and 0 in ins.labels
        assert "#0 box [0, 0, 0, 0] score 0.50 area 1 px (100.0% of the image)" in ins.text


def test_no_image_a_point_only_object_and_a_mask_of_the_wrong_shape():
    w, h = 640, 480
    objs = [
        SegmentedObject(box=None, points=((320, 240),), score=0.7),
        SegmentedObject(box=(10, 10, 50, 50), points=(), score=0.7, mask=np.ones((5, 5), bool)),
        SegmentedObject(box=(60, 60, 90, 90), points=(), score=0.7, mask=_rect_mask(h, w, 60, 60, 90, 90).astype(np.uint8)),
    ]
    ins = render_inspection(_result(w, h, objs, image=False), crops=True)
    assert set(ins.labels) == {0, 1, 2} and set(ins.tiles) == {0, 1, 2}
    assert "#0 box none points (320, 240) score 0.70 no mask (its points are drawn)" in ins.text
    px = _pixels(ins)
    assert _count_colour(px, PALETTE[2], 56, 65, 64, 85) >= 10  # a uint8 mask is drawn like a bool one


def test_nan_score_and_max_side_checks():
    w, h = 64, 64
    ins = render_inspection(_result(w, h, [_obj(h, w, (1, 1, 10, 10), score=float("nan"))]))
    assert "score n/a" in ins.text
    with pytest.raises(ValueError):
        render_inspection(_result(w, h), max_side=0)
    with pytest.raises(ValueError):
        render_inspection(_result(w, h), max_bytes=0)


def test_the_result_is_not_changed():
    result = _three()
    before = result.to_json()
    image = result.image.copy()
    render_inspection(result, crops=True, max_bytes=20_000)
    assert result.to_json() == before and (result.image == image).all()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), w=st.integers(1, 700), h=st.integers(1, 700), crops=st.booleans(),
       max_side=st.integers(16, 900))
def test_any_objects_render_within_max_side(data, w, h, crops, max_side):
    objs = []
    for _ in range(data.draw(st.integers(0, 6))):
        x1, x2 = sorted(data.draw(st.lists(st.integers(0, w - 1), min_size=2, max_size=2)))
        y1, y2 = sorted(data.draw(st.lists(st.integers(0, h - 1), min_size=2, max_size=2)))
        kind = data.draw(st.sampled_from(["rect", "random", "none", "empty"]))
        mask = {"rect": _rect_mask(h, w, x1, y1, x2, y2), "none": None, "empty": np.zeros((h, w), bool),
                "random": np.random.default_rng(x1 + y2).random((h, w)) > 0.7}[kind]
        objs.append(SegmentedObject(box=(x1, y1, x2, y2), points=((x1, y1),), score=0.5, mask=mask))
    result = _result(w, h, objs)
    ins = render_inspection(result, crops=crops, max_side=max_side)
    assert max(ins.image.size) <= max_side
    assert set(ins.labels) == set(range(len(objs)))
    assert len([line for line in ins.text.splitlines() if line.startswith("- #")]) == len(objs)


def test_text_of_a_prompts_result_names_its_source_not_an_empty_query():
    from scripted import BoxSegmenter

    from segzero_tool.steer import segment_by_prompts

    image = np.zeros((120, 160, 3), np.uint8)
    result = segment_by_prompts(BoxSegmenter(), image, [{"box": [10, 10, 60, 60]}])
    text = render_inspection(result).text
    assert "from prompted objects in the 160x120 image" in text and "query ''" not in text
    asked = segment_by_prompts(BoxSegmenter(), image, [{"box": [10, 10, 60, 60]}], query="the cup")
    assert "from prompted objects (query 'the cup')" in render_inspection(asked).text
