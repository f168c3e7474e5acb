"""The planner's state and task specification.

Coordinates in the state are original-image pixels: points ``[x, y]``, boxes ``[x1, y1, x2, y2]``
(inclusive). 3-D points are metres in the camera frame (x right, y down, z forward). Everything the
nodes write is JSON-ready (lists, dicts, numbers, strings), so checkpoints and interrupt payloads
serialise; only the inputs ``image`` and ``depth`` may be numpy arrays. With a frame source, the source,
its frames and the tracking sessions stay outside the state (see :mod:`.tracking`); ``video`` and
``targets`` are JSON.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field
from typing_extensions import TypedDict

Action = Literal["pick", "place", "push", "open", "close", "locate"]
Relation = Literal["next_to", "on", "in", "left_of", "right_of", "in_front_of", "behind"]

#: Actions whose target must be a single object (more than one candidate is ambiguous).
MANIPULATIONS = ("pick", "place", "push", "open", "close")


class TaskSpec(BaseModel):
    """What the robot is asked to do, in terms the segmenter can look for."""

    action: Action = Field(
        description="The verb: 'pick' (pick up / grab / take), 'place' (put X somewhere: picks X, then "
        "places it), 'push', 'open', 'close', or 'locate' (just find it)."
    )
    target: str = Field(
        description="A noun phrase describing the object to act on, exactly as a person would point at it "
        "('the thing I can drink from', 'the red mug'); keep implicit descriptions, do not guess a class."
    )
    reference: str | None = Field(
        default=None,
        description="For 'place' (and 'push' towards something): the object the target goes next to / on / "
        "in ('the sink'); otherwise null.",
    )
    relation: Relation | None = Field(
        default=None,
        description="How the target relates to the reference: next_to, on, in, left_of, right_of, "
        "in_front_of, behind; null without a reference.",
    )
    direction: Literal["left", "right", "forward", "backward"] | None = Field(
        default=None, description="For 'push' without a reference: the image direction to push in; else null."
    )

    def roles(self) -> dict[str, str]:
        """``role -> query``: ``target`` always, ``reference`` when the task names one."""
        out = {"target": self.target}
        if self.reference:
            out["reference"] = self.reference
        return out


class PlannerState(TypedDict, total=False):
    """State of the robotics planner graph.

    Inputs: ``task`` and ``image`` or ``frames`` (required), ``depth``, ``intrinsics``, ``depth_scale``
    (optional).

    Attributes:
        image: path, or ``(H, W, 3)`` uint8 RGB array (anything the segmenter accepts).
        frames: instead of ``image``: a video file or a folder of frames (a path); a live source (a camera
            iterator, a ``FrameSource``) goes in ``config["configurable"]["frames"]`` instead, which is
            never checkpointed.
        depth: optional ``(H, W)`` depth map aligned with ``image``, in units of ``depth_scale`` metres.
        intrinsics: optional pinhole intrinsics (``Intrinsics``, ``{"fx","fy","cx","cy"}``, 4 numbers or
            a 3x3 matrix), pixels.
        depth_scale: metres per depth unit (1.0 for metres, 0.001 for millimetres); default: the graph's.
        task: the instruction ("put the thing I can drink from next to the sink").
        spec: the parsed :class:`TaskSpec` as a dict.
        queries: ``role -> query`` sent to the segmenter (``target``, ``reference``); refined on re-query.
        objects: ``role -> perception``: ``query``, ``summary``, ``parse_status``, ``count`` and
            ``objects`` (per object: ``index``, ``box``, ``points``, ``score``, ``area``, ``rle`` mask and,
            after the geometry node, ``geometry``).
        choices: ``role -> object index`` picked by the human among several candidates.
        overrides: failed checks the human chose to ignore (``"<role>:<check>"``).
        plan: the steps (``action``, ``target``, points, orientation, ``point_3d`` ...).
        checks: the last precondition results (``role``, ``check``, ``ok``, ``detail``).
        issues: the failed checks of the last run of the check node, in words.
        attempts: ``role -> number of automatic re-queries``.
        approval: the human's answer to the approval question.
        results: what the executor returned per step.
        log: the step log (appended to by every node).
        status: where the run stands (``planning``, ``awaiting_approval``, ``needs_input``,
            ``executed``, ``rejected``, ``aborted``).
        video: with ``frames``: ``source``, ``kind`` (``file``, ``folder``, ``iterator``), ``fps``,
            ``width``, ``height``, ``frame`` / ``time_s`` (the newest frame read), ``frames_read``,
            ``ended``, ``warnings``.
        targets: with ``frames``: ``role -> `` the followed object's latest geometry (see
            :func:`.tracking.target_record`).
    """

    image: Any
    depth: Any
    intrinsics: Any
    depth_scale: float
    task: str
    spec: dict[str, Any]
    queries: dict[str, str]
    objects: dict[str, dict[str, Any]]
    choices: dict[str, int]
    overrides: list[str]
    plan: list[dict[str, Any]]
    checks: list[dict[str, Any]]
    issues: list[str]
    attempts: dict[str, int]
    approval: dict[str, Any]
    results: list[dict[str, Any]]
    log: Annotated[list[str], operator.add]
    status: str
    frames: Any
    video: dict[str, Any] | None
    targets: dict[str, dict[str, Any]]


class PlannerInput(TypedDict, total=False):
    """What a caller passes in (the graph's input schema)."""

    image: Any
    frames: Any
    depth: Any
    intrinsics: Any
    depth_scale: float
    task: str


__all__ = ["Action", "MANIPULATIONS", "PlannerInput", "PlannerState", "Relation", "TaskSpec"]
