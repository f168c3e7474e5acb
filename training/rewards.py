"""GRPO reward functions of Seg-Zero and VisionReasoner, as TRL reward functions.

Every function has TRL's signature ``f(completions, **kwargs) -> list[float]``: ``completions`` are
strings or conversational message lists (``[{"role": "assistant", "content": ...}]``, the content a
string or a list of ``{"type": "text", "text": ...}`` parts), and dataset columns arrive as keyword
lists (``solution=[...]``). A function's ``__name__`` is the key TRL logs it under.

Default mode is **reference**: the arithmetic and the quirks of the reference reward code
(Seg-Zero ``seg_restrict.py`` / ``seg.py``, VisionReasoner ``vision_reasoner.py``), protocol sections
2.4, 2.5 and 8, are reproduced exactly so that training numbers compare with the papers; this
includes the reference's own decoding of the answer (``json.loads`` of the first ``{[^}]+}`` or of
the first ``<answer>`` block) and reading the Seg-Zero ground truth's ``<box>`` and ``<points>``
separately. The functions that take ``mode="fixed"`` (the thinking format, the Seg-Zero IoU, L1 and
point terms, the VisionReasoner format and accuracy) give saner semantics and read the answer with
the library's parser, :func:`segzero_tool.parsing.parse_output`, as inference does (documented per
function); the trainer selects them through :func:`get_reward_funcs`.

Model text is taken apart only by :mod:`segzero_tool.parsing` (the reference extraction helpers and
:func:`~segzero_tool.parsing.parse_output`); ground-truth ``solution`` strings are parsed here.

The functions live in :mod:`.reward_common` (plumbing, thinking format), :mod:`.reward_segzero`
(Seg-Zero single object, at most 5: thinking format, answer format with strict or soft keys, box IoU
> 0.5, box mean-L1 < 10, points inside the predicted box with order-invariant mean distance < 100),
:mod:`.reward_visionreasoner` (VisionReasoner multi object, at most 7: format <= 3, Hungarian-matched
accuracy <= 3, non-repeat 0/1) and :mod:`.reward_mask`; this module re-exports them and holds the
named sets.

:func:`mask_point_reward` is **our extension, not in either paper**: the share of predicted points
that fall inside the ground-truth mask.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial, update_wrapper
from typing import Any

from .reward_common import MODES, check_mode, completion_text, thinking_format_reward
from .reward_mask import mask_point_reward
from .reward_segzero import (
    parse_segzero_solution,
    segzero_format_soft_reward,
    segzero_format_strict_reward,
    segzero_gt_box,
    segzero_gt_points,
    segzero_iou_reward,
    segzero_iou_soft_reward,
    segzero_l1_reward,
    segzero_l1_soft_reward,
    segzero_point_reward,
    segzero_point_soft_reward,
)
from .reward_visionreasoner import (
    MAX_OBJECTS,
    parse_visionreasoner_solution,
    vr_accuracy_reward,
    vr_format_reward,
    vr_non_repeat_reward,
)

__all__ = [
    "EXTRA_REWARDS",
    "MAX_OBJECTS",
    "MODES",
    "REWARD_SETS",
    "SEGZERO_REWARDS",
    "SEGZERO_SOFT_REWARDS",
    "VISIONREASONER_REWARDS",
    "completion_text",
    "get_reward_funcs",
    "mask_point_reward",
    "parse_segzero_solution",
    "parse_visionreasoner_solution",
    "segzero_format_soft_reward",
    "segzero_format_strict_reward",
    "segzero_gt_box",
    "segzero_gt_points",
    "segzero_iou_reward",
    "segzero_iou_soft_reward",
    "segzero_l1_reward",
    "segzero_l1_soft_reward",
    "segzero_point_reward",
    "segzero_point_soft_reward",
    "thinking_format_reward",
    "vr_accuracy_reward",
    "vr_format_reward",
    "vr_non_repeat_reward",
]

#: Seg-Zero's ``seg_strict`` (the configs' reward): five 0/1 terms, at most 5.
SEGZERO_REWARDS: list[Callable[..., list[float]]] = [
    thinking_format_reward, segzero_format_strict_reward, segzero_iou_reward, segzero_l1_reward,
    segzero_point_reward,
]
#: Seg-Zero's ``seg`` (soft keys): at most 5.
SEGZERO_SOFT_REWARDS: list[Callable[..., list[float]]] = [
    thinking_format_reward, segzero_format_soft_reward, segzero_iou_soft_reward, segzero_l1_soft_reward,
    segzero_point_soft_reward,
]
#: VisionReasoner: format (<= 3) + accuracy (<= 3) + non-repeat (<= 1), at most 7.
VISIONREASONER_REWARDS: list[Callable[..., list[float]]] = [
    vr_format_reward, vr_accuracy_reward, vr_non_repeat_reward,
]

REWARD_SETS: dict[str, list[Callable[..., list[float]]]] = {
    "segzero": SEGZERO_REWARDS,
    "segzero-soft": SEGZERO_SOFT_REWARDS,
    "visionreasoner": VISIONREASONER_REWARDS,
}
EXTRA_REWARDS: dict[str, Callable[..., list[float]]] = {"mask_point": mask_point_reward}

#: The functions that take ``mode=``; the others have one semantics.
_MODE_AWARE = {thinking_format_reward, segzero_iou_reward, segzero_iou_soft_reward, segzero_l1_reward,
               segzero_l1_soft_reward, segzero_point_reward, segzero_point_soft_reward, vr_format_reward,
               vr_accuracy_reward}


def _with_mode(fn: Callable[..., list[float]], mode: str) -> Callable[..., list[float]]:
    if mode == "reference" or fn not in _MODE_AWARE:
        return fn
    wrapped = partial(fn, mode=mode)

    def reward(completions: Sequence[Any], **kwargs: Any) -> list[float]:
        return wrapped(completions, **kwargs)

    update_wrapper(reward, fn)
    reward.__name__ = reward.__qualname__ = f"{fn.__name__}_{mode}"
    return reward


def get_reward_funcs(name: str, *, extra: Sequence[str] = (), mode: str = "reference") -> list[Callable[..., list[float]]]:
    """The reward functions of a named set, plus ``extra`` ones (``"mask_point"``).

    ``mode="fixed"`` swaps in the fixed semantics where a function has them (their log names get a
    ``_fixed`` suffix).

    Raises:
        ValueError: an unknown set, extra or mode (the message lists the choices).
    """
    key = str(name).strip().lower().replace("_", "-")
    if key not in REWARD_SETS:
        raise ValueError(f"unknown reward set {name!r}; choose one of: {', '.join(REWARD_SETS)}")
    check_mode(mode)
    funcs = [_with_mode(f, mode) for f in REWARD_SETS[key]]
    for e in extra:
        ekey = str(e).strip().lower().replace("-", "_")
        if ekey.endswith("_reward"):
            ekey = ekey[: -len("_reward")]
        if ekey not in EXTRA_REWARDS:
            raise ValueError(f"unknown extra reward {e!r}; choose from: {', '.join(EXTRA_REWARDS)}")
        if EXTRA_REWARDS[ekey] not in funcs:
            funcs.append(EXTRA_REWARDS[ekey])
    return funcs
