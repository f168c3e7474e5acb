"""The reasoning frame: resize and back-projection with the reference rounding."""

import pytest
from PIL import Image

from segzero_tool.frame import ReasoningFrame, point_in_box


def test_half_up_rounding_matches_reference():
    f = ReasoningFrame((1225, 815))  # Seg-Zero's test image size
    fx, fy = 1225 / 840, 815 / 840
    for v in (0, 1, 10, 100, 419, 420, 421, 839):
        assert f.point_to_image((v, v), clamp=False) == (int(v * fx + 0.5), int(v * fy + 0.5))


def test_segzero_rounding_truncates_then_bankers_rounds():
    f = ReasoningFrame((420, 420), rounding="segzero")  # factor 0.5
    assert f.point_to_image((5.9, 3), clamp=False) == (round(5 * 0.5), round(3 * 0.5))  # (2, 2): banker's
    assert f.point_to_image((7, 1), clamp=False) == (4, 0)


def test_box_clamped_and_reordered():
    f = ReasoningFrame((100, 50))
    assert f.box_to_image((-10, -10, 900, 900)) == (0, 0, 99, 49)
    assert f.box_to_image((840, 420, 0, 0)) == (0, 0, 99, 25)  # inverted -> reordered


def test_degenerate_box_survives():
    f = ReasoningFrame((840, 840))
    assert f.box_to_image((10, 10, 10, 10)) == (10, 10, 10, 10)


def test_frame_to_image_round_trip_for_identity_frame():
    f = ReasoningFrame((840, 840))
    assert f.box_to_image((1, 2, 3, 4)) == (1, 2, 3, 4)
    assert f.box_to_frame((1, 2, 3, 4)) == (1, 2, 3, 4)


def test_custom_frame_size():
    f = ReasoningFrame.square((1000, 500), size=420)
    assert f.frame_wh == (420, 420)
    assert f.point_to_image((210, 210)) == (500, 250)


def test_resize_ignores_aspect_ratio():
    img = Image.new("RGB", (1000, 300), (255, 0, 0))
    out = ReasoningFrame((1000, 300)).resize_image(img)
    assert out.size == (840, 840)


def test_invalid_sizes():
    with pytest.raises(ValueError):
        ReasoningFrame((0, 10))
    with pytest.raises(ValueError):
        ReasoningFrame((10, 10), rounding="floor")  # type: ignore[arg-type]


def test_point_in_box_inclusive():
    assert point_in_box((0, 0), (0, 0, 5, 5))
    assert point_in_box((5, 5), (0, 0, 5, 5))
    assert not point_in_box((6, 5), (0, 0, 5, 5))
