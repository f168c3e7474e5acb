"""The reasoning frame: resize and back-projection with the reference rounding."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from segzero_tool.frame import ReasoningFrame, is_finite_number, point_in_box


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


def test_huge_and_infinite_coordinates_saturate():
    f = ReasoningFrame((1225, 815))
    inf = float("inf")
    assert f.box_to_image((0, 0, 1.7e308, 5)) == (0, 0, 1224, int(5 * 815 / 840 + 0.5))
    assert f.box_to_image((-inf, -1e300, inf, 10**400)) == (0, 0, 1224, 814)
    assert f.point_to_image((1e200, -1e200)) == (1224, 0)
    raw = f.box_to_image((0, 0, 1.7e308, 5), clamp=False)
    assert raw[2] > 1224  # unclamped: the pipeline reports "box clamped into the image"
    g = ReasoningFrame((1225, 815), rounding="segzero")
    assert g.box_to_image((0, 0, 1.7e308, inf)) == (0, 0, 1224, 814)


def test_nan_coordinate_is_a_clear_value_error():
    with pytest.raises(ValueError, match="NaN"):
        ReasoningFrame((100, 100)).point_to_image((float("nan"), 1))


@settings(max_examples=500, deadline=None)
@given(st.floats(-1e12, 1e12), st.integers(1, 5000), st.integers(1, 5000))
def test_reference_rounding_kept_for_finite_in_range_values(v, w, h):
    f = ReasoningFrame((w, h))
    assert f.point_to_image((v, v), clamp=False) == (int(v * (w / 840) + 0.5), int(v * (h / 840) + 0.5))
    s = ReasoningFrame((w, h), rounding="segzero")
    assert s.point_to_image((v, v), clamp=False) == (round(int(v) * (w / 840)), round(int(v) * (h / 840)))


def test_is_finite_number_with_huge_int():
    assert is_finite_number(10**300) and not is_finite_number(10**400)
    assert not is_finite_number(True) and not is_finite_number(float("nan")) and not is_finite_number("1")


def test_box_to_image_without_clamp_or_reorder_is_the_reference_projection():
    f = ReasoningFrame((1680, 420))  # x * 2, y * 0.5, int(v * f + 0.5)
    assert f.box_to_image((900, -20, 100, 50), clamp=False, reorder=False) == (1800, -9, 200, 25)
    assert f.box_to_image((900, -20, 100, 50), clamp=False) == (200, -9, 1800, 25)
    assert f.box_to_image((900, -20, 100, 50)) == (200, 0, 1679, 25)
    s = ReasoningFrame((1680, 420), rounding="segzero")  # round(int(v) * f)
    assert s.box_to_image((900.9, -20.7, 100, 51), clamp=False, reorder=False) == (1800, -10, 200, 26)
