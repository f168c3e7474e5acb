"""Plan steps from perceived objects, and check their preconditions.

Pure functions over the JSON-ready state (see :mod:`.state`): pixels ``[x, y]`` in the original
image, boxes ``[x1, y1, x2, y2]`` inclusive, angles in degrees from ``+x`` towards ``+y`` (clockwise
on screen), 3-D points in camera-frame metres.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .perception import depth_at, point_3d
from .state import MANIPULATIONS

#: Image-space unit vectors for push directions ("forward" = away from the camera = up in the image).
DIRECTIONS = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "forward": (0.0, -1.0), "backward": (0.0, 1.0)}


#: A mask agrees with the reasoner's box when at least this share of it lies inside the box ...
MIN_MASK_INSIDE_BOX = 0.6
#: ... and it covers at least this share of the box (thin objects lie diagonally in their boxes).
MIN_BOX_COVERAGE = 0.05


def mask_box_problem(obj: dict[str, Any] | None) -> str | None:
    """Why an object's mask disagrees with its box (``obj["agreement"]``), or ``None`` when it agrees
    (or there is nothing to compare)."""
    agreement = (obj or {}).get("agreement")
    if not agreement:
        return None
    inside, coverage = float(agreement["inside"]), float(agreement["coverage"])
    if inside >= MIN_MASK_INSIDE_BOX and coverage >= MIN_BOX_COVERAGE:
        return None
    box = (obj or {}).get("box")
    return (f"the mask does not match the box {box} the model gave ({inside:.0%} of the mask inside it, "
            f"{coverage:.0%} of the box covered; needs {MIN_MASK_INSIDE_BOX:.0%} and {MIN_BOX_COVERAGE:.0%})")


def select(perception: dict[str, Any] | None, role: str, choices: dict[str, int]) -> dict[str, Any] | None:
    """The object to use for ``role``: the human's valid choice, the only candidate, or — among
    several — the first for a target (the check flags it) and the largest for a reference."""
    if not perception or not perception.get("objects"):
        return None
    objects = perception["objects"]
    choice = choices.get(role)
    if choice is not None and 0 <= choice < len(objects):
        return objects[choice]
    if role == "reference" and len(objects) > 1:
        return max(objects, key=lambda o: o.get("geometry", {}).get("area", o.get("area", 0)))
    return objects[0]


def _ref(role: str, perception: dict[str, Any], obj: dict[str, Any]) -> dict[str, Any]:
    return {"role": role, "query": perception["query"], "index": obj["index"],
            "box": obj.get("geometry", {}).get("box") or obj.get("box")}


def _box(obj: dict[str, Any]) -> list[int]:
    return list(obj.get("geometry", {}).get("box") or obj["box"])


def _clamp(v: float, lo: float, hi: float) -> float:
    return min(max(v, lo), hi) if lo <= hi else (lo + hi) / 2.0


def place_point(relation: str, reference: dict[str, Any], target: dict[str, Any] | None,
                image_size: tuple[int, int] | list[int], margin: int = 10) -> tuple[list[int], str]:
    """Where to put the target relative to the reference object, inside the image.

    * ``on``: the reference's grasp point (the interior point farthest from its edges);
    * ``in``: the reference's centroid when it lies inside the mask, else its grasp point;
    * ``next_to``: beside the reference box, on the side (left or right) with more free space, one
      target half-width plus ``margin`` pixels away; above or below when neither side fits;
    * ``left_of`` / ``right_of`` / ``in_front_of`` (below in the image) / ``behind`` (above).

    Returns:
        ``([x, y], side)``; the point is clamped into the image.
    """
    w, h = int(image_size[0]), int(image_size[1])
    geo = reference.get("geometry", {})
    if relation == "on" or (relation == "in" and not geo.get("centroid_inside")):
        x, y = geo.get("grasp_point") or geo.get("centroid")
        return [int(x), int(y)], "on"
    if relation == "in":
        x, y = geo["centroid"]
        return [round(x), round(y)], "in"
    rx1, ry1, rx2, ry2 = _box(reference)
    if target is not None:
        tx1, ty1, tx2, ty2 = _box(target)
        half_w, half_h = (tx2 - tx1 + 1) / 2.0, (ty2 - ty1 + 1) / 2.0
    else:
        half_w = half_h = max(8.0, 0.05 * max(w, h))
    cx, cy = (rx1 + rx2) / 2.0, (ry1 + ry2) / 2.0
    free = {"left": rx1, "right": w - 1 - rx2, "above": ry1, "below": h - 1 - ry2}
    need = {"left": 2 * half_w + margin, "right": 2 * half_w + margin,
            "above": 2 * half_h + margin, "below": 2 * half_h + margin}
    forced = {"left_of": "left", "right_of": "right", "in_front_of": "below", "behind": "above"}
    if relation in forced:
        side = forced[relation]
    else:
        side = "left" if free["left"] > free["right"] else "right"
        if free[side] < need[side]:
            vertical = "below" if free["below"] >= free["above"] else "above"
            if free[vertical] >= need[vertical]:
                side = vertical
    x, y = {
        "left": (rx1 - margin - half_w, cy), "right": (rx2 + margin + half_w, cy),
        "above": (cx, ry1 - margin - half_h), "below": (cx, ry2 + margin + half_h),
    }[side]
    x = _clamp(x, half_w, w - 1 - half_w) if w > 2 * half_w else _clamp(x, 0, w - 1)
    y = _clamp(y, half_h, h - 1 - half_h) if h > 2 * half_h else _clamp(y, 0, h - 1)
    return [round(x), round(y)], side


def _round(v: Any, nd: int = 4) -> Any:
    """Round a number or a list of numbers (``None`` stays ``None``)."""
    if v is None:
        return None
    return [round(float(x), nd) for x in v] if isinstance(v, list | tuple) else round(float(v), nd)


def _fmt(p: Any) -> str:
    return "?" if p is None else "(" + ", ".join(f"{v:g}" for v in p) + ")"


def build_plan(spec: dict[str, Any], objects: dict[str, dict[str, Any]], choices: dict[str, int], *,
               depth: np.ndarray | None = None, intrinsics: Any = None, depth_scale: float = 1.0,
               margin: int = 10) -> list[dict[str, Any]]:
    """Steps for the task. Every step has ``step``, ``action``, ``target`` (``role``, ``query``,
    ``index``, ``box``), ``point`` (where the robot acts, pixels), ``point_3d`` / ``depth_m`` when
    depth is given, and a ``description``; picks add ``grasp_point``, ``grasp_radius``,
    ``orientation_deg`` (object major axis) and ``gripper_angle_deg`` (across it).

    Roles that were not found produce no steps (the check node reports them).
    """
    action = spec["action"]
    tp = objects.get("target")
    target = select(tp, "target", choices)
    if target is None:
        return []
    geo = target.get("geometry", {})
    tref = _ref("target", tp, target)
    size = tp["image_size"]
    gp = geo.get("grasp_point")
    orient = _round(geo.get("orientation_deg"), 2)
    common = {"target": tref, "point": gp, "point_3d": _round(geo.get("point_3d")),
              "depth_m": _round(geo.get("depth_m"))}
    steps: list[dict[str, Any]] = []
    if action in ("pick", "place"):
        steps.append({
            "action": "pick", **common, "grasp_point": gp, "grasp_radius": _round(geo.get("grasp_radius"), 2),
            "orientation_deg": orient,
            "gripper_angle_deg": None if orient is None else round((orient + 90.0) % 180.0, 2),
            "description": f"pick {tref['query']!r} (#{tref['index']}) at {_fmt(gp)}"
            + ("" if orient is None else f", gripper at {(orient + 90.0) % 180.0:.0f} deg"),
        })
    reference = select(objects.get("reference"), "reference", choices)
    relation = spec.get("relation") or "next_to"
    if action == "place":
        if reference is None:
            return steps
        rref = _ref("reference", objects["reference"], reference)
        point, side = place_point(relation, reference, target, size, margin)
        steps.append({
            "action": "place", "target": tref, "reference": rref, "relation": relation, "side": side,
            "point": point, "point_3d": point_3d(depth, intrinsics, point, depth_scale),
            "depth_m": _round(depth_at(depth, point, depth_scale)), "orientation_deg": orient,
            "description": f"place it {relation.replace('_', ' ')} {rref['query']!r} (#{rref['index']}) "
            f"at {_fmt(point)}" + (f" ({side} side)" if side not in ("on", "in") else ""),
        })
    elif action == "push":
        step = {"action": "push", **common, "direction": spec.get("direction") or "forward"}
        if reference is not None:
            dest, _ = place_point(relation, reference, target, size, margin)
            c = geo.get("centroid") or gp
            dx, dy = dest[0] - c[0], dest[1] - c[1]
            n = math.hypot(dx, dy) or 1.0
            step.update(destination=dest, direction="towards the reference", reference=_ref(
                "reference", objects["reference"], reference), direction_vector=[round(dx / n, 4), round(dy / n, 4)])
        else:
            step["direction_vector"] = list(DIRECTIONS[step["direction"]])
        step["description"] = f"push {tref['query']!r} (#{tref['index']}) at {_fmt(gp)} {step['direction']}" + (
            f" to {_fmt(step['destination'])}" if "destination" in step else "")
        steps.append(step)
    elif action in ("open", "close"):
        steps.append({"action": action, **common, "grasp_point": gp, "orientation_deg": orient,
                      "description": f"{action} {tref['query']!r} (#{tref['index']}), grasping at {_fmt(gp)}"})
    elif action == "locate":
        steps.append({"action": "locate", **common, "box": tref["box"],
                      "description": f"locate {tref['query']!r} (#{tref['index']}): box {tref['box']}, "
                      f"point {_fmt(gp)}"})
    for i, step in enumerate(steps, 1):
        step["step"] = i
    return steps


def check_plan(spec: dict[str, Any], objects: dict[str, dict[str, Any]], plan: list[dict[str, Any]],
               choices: dict[str, int], overrides: list[str], *, has_depth: bool,
               max_depth_m: float | None) -> list[dict[str, Any]]:
    """Preconditions, in the order they should be resolved: found? unique? mask on its box? reachable?

    * found: the segmenter returned at least one object for the role;
    * unique: a manipulated target has exactly one candidate (or the human chose one); several
      references pass (the largest is used) with a note;
    * mask_box: the chosen object's mask agrees with the box the reasoner gave (see
      :func:`mask_box_problem`; only a failure is listed: a mask far outside its box, or a speck in it);
    * reachable: every step point lies inside the image and, with a depth map, has a valid depth no
      farther than ``max_depth_m``.

    Returns:
        ``{"role", "check", "ok", "detail"}`` dicts (``step`` too for reachability); a failed check
        listed in ``overrides`` (``"<role>:<check>"``) passes with a note.
    """
    checks: list[dict[str, Any]] = []

    def add(role: str, check: str, ok: bool, detail: str, **extra: Any) -> None:
        if not ok and f"{role}:{check}" in overrides:
            ok, detail = True, detail + " (accepted by the human)"
        checks.append({"role": role, "check": check, "ok": ok, "detail": detail, **extra})

    roles = ["target", "reference"] if spec.get("reference") else ["target"]
    for role in roles:
        p = objects.get(role) or {}
        n = int(p.get("count", 0))
        q = p.get("query", spec.get(role))
        add(role, "found", n > 0, f"{n} candidate(s) for {q!r}" if n else f"nothing found for {q!r}")
        if n > 1:
            choice = choices.get(role)
            if choice is not None and 0 <= choice < n:
                add(role, "unique", True, f"{n} candidates for {q!r}; the human chose #{choice}")
            elif role == "target" and spec["action"] in MANIPULATIONS:
                add(role, "unique", False, f"{n} candidates for {q!r}; which one is meant is unclear")
            else:
                best = select(p, role, choices)
                add(role, "unique", True, f"{n} candidates for {q!r}; using the largest (#{best['index']})")
        if n >= 1 and all(c["ok"] for c in checks if c["role"] == role):
            problem = mask_box_problem(select(p, role, choices))
            if problem is not None:
                obj = select(p, role, choices)
                add(role, "mask_box", False, f"#{obj['index']} for {q!r}: {problem}", index=obj["index"])
    if any(not c["ok"] for c in checks) or spec["action"] == "locate":
        return checks
    for step in plan:
        role = "reference" if step["action"] == "place" else "target"
        w, h = objects["target"]["image_size"]
        pts = [step[k] for k in ("point", "destination") if step.get(k) is not None]
        problems = []
        if step.get("point") is None:
            problems.append("no point to act at")
        problems += [f"{_fmt(p)} lies outside the {w}x{h} image" for p in pts
                     if not (0 <= p[0] < w and 0 <= p[1] < h)]
        if has_depth:
            z = step.get("depth_m")
            if z is None:
                problems.append(f"no valid depth at {_fmt(step.get('point'))}")
            elif max_depth_m is not None and z > max_depth_m:
                problems.append(f"{z:.2f} m away, beyond the {max_depth_m:g} m reach")
        detail = "; ".join(problems) if problems else f"step {step['step']} ({step['action']}) is reachable"
        add(role, "reachable", not problems, detail, step=step["step"])
    return checks


__all__ = ["DIRECTIONS", "MIN_BOX_COVERAGE", "MIN_MASK_INSIDE_BOX", "build_plan", "check_plan", "mask_box_problem",
           "place_point", "select"]
