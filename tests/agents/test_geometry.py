"""Geometry of hand-made masks: grasp points always inside, orientation with y down, depth to 3-D."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from segzero_tool.agents.geometry import (
    Intrinsics,
    ObjectGeometry,
    deproject,
    object_geometry,
    result_geometry,
)


def disc(h: int, w: int, cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


def inside(mask: np.ndarray, point: tuple[int, int] | None) -> bool:
    return point is not None and bool(mask[point[1], point[0]])


def test_disc_grasp_point_is_the_centre():
    m = disc(100, 120, 60, 40, 20)
    g = object_geometry(m)
    assert g.grasp_point == (60, 40) and g.grasp_radius == pytest.approx(20, abs=1.0)
    assert g.centroid == pytest.approx((60, 40)) and g.centroid_inside
    assert g.box == (40, 20, 80, 60) and g.area == int(m.sum()) and g.n_components == 1
    assert g.elongation == pytest.approx(1.0, abs=0.02)


def test_ring_grasp_point_lies_in_the_band_not_the_hole():
    m = disc(101, 101, 50, 50, 40) & ~disc(101, 101, 50, 50, 25)
    g = object_geometry(m)
    assert not g.centroid_inside and g.centroid == pytest.approx((50, 50))
    assert inside(m, g.grasp_point)
    r = math.dist(g.grasp_point, (50, 50))
    assert 29 <= r <= 36  # the middle of the band (25..40)
    assert g.grasp_radius == pytest.approx(7.5, abs=1.0)


def test_l_shape_grasp_point_in_the_thick_arm():
    m = np.zeros((80, 80), bool)
    m[5:75, 5:25] = True  # thick vertical arm, 20 px wide
    m[65:71, 25:75] = True  # thin horizontal arm, 6 px high
    g = object_geometry(m)
    assert inside(m, g.grasp_point) and 5 <= g.grasp_point[0] < 25
    assert g.grasp_radius == pytest.approx(10, abs=1.0)
    assert g.n_components == 1 and g.box == (5, 5, 74, 74)


def test_two_blobs_grasp_in_the_larger():
    m = disc(60, 100, 25, 30, 15) | disc(60, 100, 80, 30, 6)
    g = object_geometry(m)
    assert g.n_components == 2 and inside(m, g.grasp_point)
    assert math.dist(g.grasp_point, (25, 30)) <= 1


@pytest.mark.parametrize(("direction", "angle"), [("down-right", 45.0), ("up-right", 135.0)])
def test_thin_diagonal_bar_orientation_with_y_down(direction, angle):
    m = np.zeros((60, 60), bool)
    for t in range(10, 50):
        y = t if direction == "down-right" else 59 - t  # y grows downwards
        m[y, t] = True
    g = object_geometry(m)
    assert g.orientation_deg == pytest.approx(angle, abs=1.0)
    dx, dy = g.principal_axis
    assert math.hypot(dx, dy) == pytest.approx(1.0)
    assert math.degrees(math.atan2(dy, dx)) == pytest.approx(angle, abs=1.0)
    assert g.elongation > 20 and g.n_components == 1  # diagonal neighbours are 8-connected
    assert inside(m, g.grasp_point)


def test_horizontal_and_vertical_bars():
    m = np.zeros((40, 40), bool)
    m[18:22, 5:35] = True
    g = object_geometry(m)
    assert g.orientation_deg == pytest.approx(0.0) and g.principal_axis == pytest.approx((1.0, 0.0))
    assert g.grasp_point in {(19, 19), (19, 20), (20, 19), (20, 20)}  # the middle of the ridge, not its end
    assert object_geometry(m.T).orientation_deg == pytest.approx(90.0)


def test_single_pixel():
    m = np.zeros((10, 10), bool)
    m[3, 7] = True
    g = object_geometry(m)
    assert g.area == 1 and g.box == (7, 3, 7, 3) and g.centroid == (7.0, 3.0) and g.centroid_inside
    assert g.grasp_point == (7, 3) and g.grasp_radius == pytest.approx(0.5)
    assert g.principal_axis is None and g.orientation_deg is None and g.elongation == 1.0
    assert g.n_components == 1


def test_empty_mask():
    g = object_geometry(np.zeros((10, 12), bool), depth=np.ones((10, 12)), intrinsics=Intrinsics(1, 1, 0, 0))
    assert g.area == 0 and g.grasp_radius == 0.0 and g.n_components == 0 and not g.centroid_inside
    assert all(v is None for v in (g.box, g.centroid, g.grasp_point, g.principal_axis, g.orientation_deg,
                                   g.elongation, g.point_3d, g.depth_m))
    assert g.empty and g.to_dict()["box"] is None


def test_mask_touching_the_border_counts_the_border_as_boundary():
    m = np.zeros((60, 60), bool)
    m[:20, :20] = True  # in the top-left corner: without the border as boundary the corner would win
    g = object_geometry(m)
    assert g.grasp_point[0] in (9, 10) and g.grasp_point[1] in (9, 10)
    assert g.grasp_radius == pytest.approx(10, abs=0.5)
    full = object_geometry(np.ones((9, 9), bool))
    assert full.grasp_point == (4, 4) and full.grasp_radius == pytest.approx(4.5)


def test_non_bool_masks_and_bad_shapes():
    m = np.zeros((20, 20), np.uint8)
    m[5:10, 5:15] = 255
    assert object_geometry(m).area == 50
    with pytest.raises(ValueError, match=r"2-D \(H, W\)"):
        object_geometry(np.zeros((2, 20, 20), bool))


def test_to_dict_is_json_ready():
    import json

    g = object_geometry(disc(30, 30, 15, 15, 8), depth=np.full((30, 30), 2.0), intrinsics=Intrinsics(100, 100, 15, 15))
    d = json.loads(json.dumps(g.to_dict()))
    assert d["grasp_point"] == [15, 15] and d["point_3d"] == pytest.approx([0.0, 0.0, 2.0])
    assert set(d) == {f for f in ObjectGeometry.__dataclass_fields__}


@settings(max_examples=150, deadline=None)
@given(arrays(np.bool_, st.tuples(st.integers(1, 24), st.integers(1, 24))))
def test_grasp_point_always_inside_random_masks(m):
    g = object_geometry(m)
    if not m.any():
        assert g.grasp_point is None and g.area == 0
        return
    assert inside(m, g.grasp_point)
    x1, y1, x2, y2 = g.box
    ys, xs = np.nonzero(m)
    assert (x1, y1, x2, y2) == (xs.min(), ys.min(), xs.max(), ys.max()) and g.area == xs.size
    assert g.grasp_radius >= 0.5 and g.elongation >= 1.0 and g.n_components >= 1
    assert g.orientation_deg is None or 0.0 <= g.orientation_deg < 180.0


# --- depth and intrinsics --------------------------------------------------------------------------


K = Intrinsics(fx=500.0, fy=400.0, cx=32.0, cy=24.0)


def test_constant_depth_plane_gives_the_exact_point():
    m = disc(48, 64, 44, 14, 6)
    g = object_geometry(m, depth=np.full((48, 64), 1.5, np.float32), intrinsics=K)
    assert g.grasp_point == (44, 14) and g.depth_m == pytest.approx(1.5)
    assert g.point_3d == pytest.approx(((44 - 32) * 1.5 / 500, (14 - 24) * 1.5 / 400, 1.5))
    assert g.point_3d == pytest.approx(deproject((44, 14), 1.5, K))


def test_invalid_depth_values_are_ignored():
    m = disc(48, 64, 20, 20, 8)
    depth = np.full((48, 64), 2.0)
    depth[18:23, 18:23] = 0.0  # holes at the grasp point
    depth[20, 10:30] = np.nan
    depth[15, 15] = np.inf
    depth[25, 25] = -1.0
    depth[~m] = 9.0  # the background must not leak in
    g = object_geometry(m, depth=depth, intrinsics=K)
    assert g.depth_m == pytest.approx(2.0) and g.point_3d[2] == pytest.approx(2.0)


def test_fallback_to_the_whole_mask_and_no_valid_depth():
    m = np.zeros((48, 64), bool)
    m[20:30, 5:55] = True  # a bar: the grasp circle (radius ~5) sits in its middle
    depth = np.zeros((48, 64))
    depth[22:28, 5:8] = 3.0  # valid depth only at the far end, outside the grasp circle
    g = object_geometry(m, depth=depth, intrinsics=K)
    assert abs(g.grasp_point[0] - 29.5) <= 1 and g.depth_m == pytest.approx(3.0)
    assert g.point_3d == pytest.approx(deproject(g.grasp_point, 3.0, K))
    none = object_geometry(m, depth=np.full((48, 64), np.nan), intrinsics=K)
    assert none.depth_m is None and none.point_3d is None and none.grasp_point == g.grasp_point


def test_uint16_millimetres_with_depth_scale():
    m = disc(48, 64, 32, 24, 5)
    g = object_geometry(m, depth=np.full((48, 64), 1234, np.uint16), intrinsics=K, depth_scale=0.001)
    assert g.depth_m == pytest.approx(1.234) and g.point_3d == pytest.approx((0.0, 0.0, 1.234))


def test_depth_without_intrinsics_gives_depth_only():
    g = object_geometry(disc(20, 20, 10, 10, 4), depth=np.full((20, 20), 0.8))
    assert g.depth_m == pytest.approx(0.8) and g.point_3d is None


def test_depth_shape_mismatch_and_bad_scale():
    m = disc(48, 64, 32, 24, 5)
    with pytest.raises(ValueError, match=r"\(48, 63\).*\(48, 64\)"):
        object_geometry(m, depth=np.ones((48, 63)), intrinsics=K)
    with pytest.raises(ValueError, match="depth_scale"):
        object_geometry(m, depth=np.ones((48, 64)), intrinsics=K, depth_scale=0.0)


def test_intrinsics_from_matrix_and_checks():
    k = Intrinsics.from_matrix([[500, 0, 32], [0, 400, 24], [0, 0, 1]])
    assert k == K and np.array_equal(k.to_matrix(), [[500, 0, 32], [0, 400, 24], [0, 0, 1]])
    with pytest.raises(ValueError, match="3x3"):
        Intrinsics.from_matrix(np.eye(4))
    with pytest.raises(ValueError, match="positive"):
        Intrinsics(0, 1, 0, 0)
    assert deproject((32, 24), 2.0, K) == (0.0, 0.0, 2.0)


def test_result_geometry_uses_masks_or_boxes():
    from segzero_tool import ParseStatus, SegmentationResult, SegmentedObject

    mask = disc(40, 60, 20, 20, 5)
    res = SegmentationResult(query="q", prompt_format="visionreasoner", reasoning="", raw_output="",
                             parse_status=ParseStatus.OK, image_size=(60, 40),
                             objects=[SegmentedObject(box=(15, 15, 25, 25), points=(), mask=mask),
                                      SegmentedObject(box=(40, 10, 49, 19), points=())])
    a, b = result_geometry(res)
    assert a.grasp_point == (20, 20) and a.area == int(mask.sum())
    assert b.area == 100 and b.box == (40, 10, 49, 19) and b.grasp_point in {(44, 14), (45, 15), (44, 15), (45, 14)}
