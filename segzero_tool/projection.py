"""Projection: parsed reasoning-frame objects -> segmenter prompts in original-image pixels.

:func:`project_objects` turns what the parser read into :class:`~segzero_tool.result.SegmentedObject`
prompts (no masks yet): in ``repair`` mode clamped, ordered and with stray points dropped; in
``reference`` mode (:func:`_project_reference`) exactly as the reference scripts pass them to SAM2.
"""

from __future__ import annotations

from .frame import ReasoningFrame, point_in_box
from .parse_types import ParsedOutput
from .reference_parse import Compat, check_compat
from .result import SegmentedObject


def project_objects(parsed: ParsedOutput, frame: ReasoningFrame, *,
                    compat: Compat = "repair") -> tuple[list[SegmentedObject], list[str]]:
    """Back-project parsed frame objects into original pixels, repairing what must be repaired.

    ``repair`` (default):

    * coordinates are rounded as the frame says and clamped into the image;
    * inverted boxes are reordered;
    * a point outside its own box is dropped (SAM2 is then prompted with the box alone), because a
      stray positive point would pull the mask onto another object.

    ``reference``: SAM2 is prompted exactly as the reference scripts prompt it: every point, even one
    outside its box, and the rounded coordinates unclamped and not reordered (SAM2 encodes the
    coordinates it gets, so a clamped box would give another mask). The object's ``box`` and
    ``points`` are still clamped and ordered for display; ``prompt_box`` / ``prompt_points`` keep what
    SAM2 got when that differs.

    Returns:
        ``(objects, issues)``; objects have no masks yet.
    """
    if check_compat(compat) == "reference":
        return _project_reference(parsed, frame)
    objects: list[SegmentedObject] = []
    issues: list[str] = []
    for i, fo in enumerate(parsed.objects):
        obj_issues = list(fo.issues)
        box = None
        if fo.box is not None:
            x1, y1, x2, y2 = fo.box
            if x1 > x2 or y1 > y2:
                obj_issues.append("box corners were inverted; reordered")
            box = frame.box_to_image(fo.box)
            raw = frame.box_to_image(fo.box, clamp=False)
            if raw != box:
                obj_issues.append("box clamped into the image")
        points: list[tuple[int, int]] = []
        for p in fo.points:
            q = frame.point_to_image(p)
            if frame.point_to_image(p, clamp=False) != q:
                obj_issues.append(f"point {list(p)} clamped into the image")
            if box is not None and not point_in_box(q, box):
                obj_issues.append(f"point {list(p)} lies outside its box; prompted with the box only")
                continue
            points.append(q)
        if box is None and not points:
            issues.append(f"object {i} has no usable box or point after projection; skipped")
            continue
        objects.append(SegmentedObject(
            box=box, points=tuple(points), frame_box=fo.box, frame_points=fo.points,
            label=fo.label, issues=tuple(obj_issues),
        ))
        issues.extend(f"object {i}: {s}" for s in obj_issues if s not in fo.issues)
    return objects, issues


def _project_reference(parsed: ParsedOutput, frame: ReasoningFrame) -> tuple[list[SegmentedObject], list[str]]:
    objects: list[SegmentedObject] = []
    issues: list[str] = []
    for i, fo in enumerate(parsed.objects):
        notes: list[str] = []
        box = raw_box = None
        if fo.box is not None:
            box = frame.box_to_image(fo.box)
            raw_box = frame.box_to_image(fo.box, clamp=False, reorder=False)
            if raw_box != box:
                notes.append(f"SAM2 got the box {list(raw_box)} as the reference passes it; the result's box is "
                             "ordered and clamped into the image")
        points = tuple(frame.point_to_image(p) for p in fo.points)
        raw_points = tuple(frame.point_to_image(p, clamp=False) for p in fo.points)
        if raw_points != points:
            notes.append("SAM2 got the points unclamped, as the reference passes them; the result's points are "
                         "clamped into the image")
        if box is not None:
            for p, q in zip(fo.points, points, strict=True):
                if not point_in_box(q, box):
                    notes.append(f"point {list(p)} lies outside its box; passed to SAM2 anyway, as the reference does")
        if box is None and not points:
            issues.append(f"object {i} has no usable box or point after projection; skipped")
            continue
        objects.append(SegmentedObject(
            box=box, points=points, frame_box=fo.box, frame_points=fo.points, label=fo.label,
            issues=(*fo.issues, *notes), prompt_box=raw_box if raw_box != box else None,
            prompt_points=raw_points if raw_points != points else None,
        ))
        issues.extend(f"object {i}: {s}" for s in notes)
    return objects, issues


__all__ = ["project_objects"]
