"""Fixtures for the LangChain tool, geometry and agent tests: the example photo, scripted answers,
pipelines over a scripted reasoner, and the async backend (anyio on asyncio)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COFFEE = REPO / "examples" / "coffee.png"  # 600 x 400
ANSWER = ('<think>The cup holds coffee.</think><answer>[{"bbox_2d": [168,126,588,672], "point_2d": [378,420], '
          '"label": "cup"}, {"bbox_2d": [600,700,800,830], "point_2d": [700,760]}]</answer>')
#: ANSWER's boxes and points in the 600 x 400 original (VisionReasoner rounding: int(v * W / 840 + 0.5)).
BOXES = [[int(168 * 600 / 840 + 0.5), int(126 * 400 / 840 + 0.5), int(588 * 600 / 840 + 0.5), int(672 * 400 / 840 + 0.5)],
         [int(600 * 600 / 840 + 0.5), int(700 * 400 / 840 + 0.5), int(800 * 600 / 840 + 0.5), int(830 * 400 / 840 + 0.5)]]
POINTS = [(int(378 * 600 / 840 + 0.5), int(420 * 400 / 840 + 0.5)), (int(700 * 600 / 840 + 0.5), int(760 * 400 / 840 + 0.5))]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def coffee() -> Path:
    return COFFEE


@pytest.fixture
def answer() -> str:
    return ANSWER


@pytest.fixture
def make_pipeline():
    """``make_pipeline(answers=ANSWER, reasoner=None, **pipeline_kwargs)``: a pipeline over a scripted
    reasoner (or the given one) and the exact-mask ``BoxSegmenter``."""
    from scripted import BoxSegmenter, ScriptedReasoner

    from segzero_tool import SegZeroPipeline

    def make(answers=ANSWER, *, reasoner=None, **kwargs):
        return SegZeroPipeline(reasoner or ScriptedReasoner(answers), BoxSegmenter(), **kwargs)

    return make


@pytest.fixture
def script_folder(tmp_path: Path):
    """``script_folder(answer=ANSWER)``: a folder holding ``script.json``, loadable with the backend
    import path ``scripted:ScriptedReasoner``."""

    def make(answer: str = ANSWER) -> Path:
        folder = tmp_path / "scripted-reasoner"
        folder.mkdir(exist_ok=True)
        (folder / "script.json").write_text(json.dumps([answer]))
        return folder

    return make


@pytest.fixture
def expected_boxes() -> list[list[int]]:
    """ANSWER's boxes in original pixels."""
    return [list(b) for b in BOXES]


@pytest.fixture
def expected_points() -> list[tuple[int, int]]:
    """ANSWER's points in original pixels."""
    return list(POINTS)
