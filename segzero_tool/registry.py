"""Short model names -> hub ids, prompt formats and generation budgets; presets.

Any name that is not in the registry is accepted as a local folder (if it exists) or a hub id of
the form ``org/name``; anything else raises :class:`~segzero_tool.errors.UnknownModelError` with the
closest registry names.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .errors import UnknownModelError
from .frame import CoordinateSystem, Rounding, check_coords, coords_for_format, rounding_for_format
from .prompts import PromptFormat

Kind = Literal["reasoner", "segmenter"]
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ModelEntry:
    """A registry entry.

    Attributes:
        name: short name (``visionreasoner-7b``).
        kind: ``reasoner`` or ``segmenter``.
        hub_id: model-hub id, or a local folder for unregistered names.
        prompt_format: reasoners only: the answer grammar the model was trained on.
        max_new_tokens: reasoners only: the reference token budget.
        description: one line for ``segzero models``.
        registered: ``False`` for ids/folders resolved on the fly.
        coords: reasoners only: how the model writes coordinates, ``frame`` (reasoning-frame pixels) or
            ``relative1000`` (the 0-1000 grid); left out, the prompt format's
            (:func:`~segzero_tool.frame.coords_for_format`). The ``coords`` setting overrides it.
    """

    name: str
    kind: Kind
    hub_id: str
    prompt_format: PromptFormat | None = None
    max_new_tokens: int | None = None
    description: str = ""
    registered: bool = True
    coords: CoordinateSystem | None = None

    def __post_init__(self) -> None:
        coords = coords_for_format(self.prompt_format) if self.coords is None else check_coords(self.coords)
        object.__setattr__(self, "coords", coords)

    @property
    def rounding(self) -> Rounding:
        """The back-projection rounding of the entry's prompt format (``segzero`` for the Seg-Zero
        format, else ``half_up``): it follows the format, not the model's name."""
        return rounding_for_format(self.prompt_format)


_ENTRIES: tuple[ModelEntry, ...] = (
    ModelEntry("visionreasoner-7b", "reasoner", "Ricky06662/VisionReasoner-7B", PromptFormat.VISIONREASONER, 2048,
               "VisionReasoner-7B: multi-object reasoning (GRPO on Qwen2.5-VL-7B); the default"),
    ModelEntry("seg-zero-7b", "reasoner", "Ricky06662/Seg-Zero-7B", PromptFormat.SEGZERO, 1024,
               "Seg-Zero-7B: single object, one box + two points"),
    ModelEntry("seg-zero-7b-best-on-reasonseg-test", "reasoner", "Ricky06662/Seg-Zero-7B-Best-on-ReasonSegTest",
               PromptFormat.SEGZERO, 1024, "Seg-Zero-7B checkpoint picked on ReasonSeg-test"),
    ModelEntry("qwen2.5-vl-3b-instruct", "reasoner", "Qwen/Qwen2.5-VL-3B-Instruct", PromptFormat.GROUNDING, 1024,
               "base Qwen2.5-VL-3B-Instruct with the grounding prompt (the light preset before Qwen3-VL-2B)"),
    ModelEntry("qwen2.5-vl-7b-instruct", "reasoner", "Qwen/Qwen2.5-VL-7B-Instruct", PromptFormat.GROUNDING, 1024,
               "base Qwen2.5-VL-7B-Instruct with the grounding prompt (the papers' baseline)"),
    ModelEntry("qwen3-vl-2b-instruct", "reasoner", "Qwen/Qwen3-VL-2B-Instruct", PromptFormat.QWEN3VL, 1024,
               "Qwen3-VL-2B-Instruct with the qwen3vl prompt (0-1000 grid)"),
    ModelEntry("qwen3-vl-4b-instruct", "reasoner", "Qwen/Qwen3-VL-4B-Instruct", PromptFormat.QWEN3VL, 1024,
               "Qwen3-VL-4B-Instruct with the qwen3vl prompt (0-1000 grid)"),
    ModelEntry("qwen3-vl-8b-instruct", "reasoner", "Qwen/Qwen3-VL-8B-Instruct", PromptFormat.QWEN3VL, 1024,
               "Qwen3-VL-8B-Instruct with the qwen3vl prompt (0-1000 grid)"),
    ModelEntry("sam2-hiera-large", "segmenter", "facebook/sam2-hiera-large",
               description="SAM 2 large (224M), the checkpoint the papers used"),
    ModelEntry("sam2.1-hiera-tiny", "segmenter", "facebook/sam2.1-hiera-tiny", description="SAM 2.1 tiny (38.9M)"),
    ModelEntry("sam2.1-hiera-small", "segmenter", "facebook/sam2.1-hiera-small", description="SAM 2.1 small (46M)"),
    ModelEntry("sam2.1-hiera-base-plus", "segmenter", "facebook/sam2.1-hiera-base-plus",
               description="SAM 2.1 base+ (80.8M)"),
    ModelEntry("sam2.1-hiera-large", "segmenter", "facebook/sam2.1-hiera-large",
               description="SAM 2.1 large (224.4M); the default"),
    ModelEntry("sam3", "segmenter", "facebook/sam3",
               description="SAM 3 tracker (458M image part): box/point prompts; gated, request access on the hub"),
)

MODELS: dict[str, ModelEntry] = {e.name: e for e in _ENTRIES}


@dataclass(frozen=True)
class Preset:
    name: str
    reasoner: str
    segmenter: str
    description: str


PRESETS: dict[str, Preset] = {
    "default": Preset("default", "visionreasoner-7b", "sam2.1-hiera-large",
                      "VisionReasoner-7B + SAM 2.1 large: best quality, wants a 24 GB GPU"),
    "light": Preset("light", "qwen3-vl-2b-instruct", "sam2.1-hiera-tiny",
                    "Qwen3-VL-2B-Instruct (qwen3vl prompt, 0-1000 grid) + SAM 2.1 tiny: CPUs and small GPUs"),
    "paper": Preset("paper", "visionreasoner-7b", "sam2-hiera-large",
                    "VisionReasoner-7B + SAM 2 large, exactly as in the papers"),
}


#: The reasoner name that loads no reasoner: the pipeline only segments from the caller's prompts
#: (``segment_by_prompts``); ``--reasoner none``, ``SEGZERO_REASONER=none``, ``reasoner = "none"``.
NO_REASONER = "none"


def is_no_reasoner(name: object) -> bool:
    """Whether ``name`` asks for no reasoner (``"none"``, any case, surrounding spaces ignored)."""
    return isinstance(name, str) and name.strip().lower() == NO_REASONER


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name.strip().lower()]
    except KeyError:
        raise UnknownModelError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}") from None


#: ``model_type`` values of Qwen3-VL checkpoints (``config.json``): they answer on the 0-1000 grid.
QWEN3_VL_MODEL_TYPES = ("qwen3_vl", "qwen3_vl_moe")


def _family_format(kind: Kind, *, path: Path | None = None, hub_id: str | None = None) -> PromptFormat | None:
    """The prompt format an unregistered reasoner is taken to speak: ``qwen3vl`` for a Qwen3-VL checkpoint (a
    folder whose ``config.json`` says ``model_type`` ``qwen3_vl`` / ``qwen3_vl_moe``, or a hub id naming
    Qwen3-VL), so its 0-1000 answers are never read as frame pixels; ``None`` (the pipeline's default)
    otherwise. A fine-tune trained on another format says so with ``--prompt-format``."""
    if kind != "reasoner":
        return None
    if path is not None:
        try:
            config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        model_type = config.get("model_type") if isinstance(config, dict) else None
        return PromptFormat.QWEN3VL if model_type in QWEN3_VL_MODEL_TYPES else None
    name = (hub_id or "").rsplit("/", 1)[-1].lower()
    return PromptFormat.QWEN3VL if name.startswith("qwen3-vl") else None


def resolve_model(name_or_path: str, kind: Kind) -> ModelEntry:
    """Resolve a registry name, a local folder or a hub id.

    Raises:
        UnknownModelError: not registered, not an existing folder, not shaped like ``org/name``; or a
            registered name of the other kind (e.g. a SAM name given as the reasoner).
    """
    if not isinstance(name_or_path, str) or not name_or_path.strip():
        raise UnknownModelError(f"empty {kind} model name; run `segzero models` to list the choices")
    key = name_or_path.strip()
    entry = MODELS.get(key.lower())
    if entry is not None:
        if entry.kind != kind:
            raise UnknownModelError(f"{key!r} is a {entry.kind}, not a {kind}; run `segzero models`")
        return entry
    path = Path(key).expanduser()
    if path.is_dir():
        return ModelEntry(name=str(path), kind=kind, hub_id=str(path), registered=False,
                          prompt_format=_family_format(kind, path=path))
    if path.exists():
        raise UnknownModelError(f"{key!r} is a file; pass the model folder (with config.json) or a hub id")
    if _HUB_ID.match(key) and not key.startswith((".", "~")):
        return ModelEntry(name=key, kind=kind, hub_id=key, registered=False,
                          prompt_format=_family_format(kind, hub_id=key))
    names = [n for n, e in MODELS.items() if e.kind == kind]
    close = difflib.get_close_matches(key.lower(), names, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UnknownModelError(
        f"unknown {kind} {key!r}: not a registered name, an existing folder or a hub id (org/name).{hint} "
        "Run `segzero models` to list the registry."
    )


def list_models(kind: Kind | None = None) -> list[ModelEntry]:
    return [e for e in _ENTRIES if kind is None or e.kind == kind]
