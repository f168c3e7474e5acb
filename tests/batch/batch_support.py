"""Shared by the batch tests: image folders and tables written like users' data, and the scripted reasoner folder."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from video_support import box_answer  # noqa: E402

#: Size of the pictures of :func:`write_images` (width, height).
SIZE = (96, 64)
#: The box the scripted answer of :func:`script_folder` back-projects to on a SIZE picture (inclusive pixels).
BOXES = ((10, 8, 40, 30), (50, 20, 90, 60))


def write_images(folder: Path, n: int, *, size: tuple[int, int] = SIZE, fmt: str = "png") -> list[Path]:
    """``n`` distinct pictures ``img-000.png`` ... (a gradient with a varying square)."""
    folder.mkdir(parents=True, exist_ok=True)
    w, h = size
    paths = []
    for i in range(n):
        arr = np.zeros((h, w, 3), np.uint8)
        arr[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
        arr[(i * 3) % h : (i * 3) % h + 10, (i * 5) % w : (i * 5) % w + 10] = (i * 37) % 256
        p = folder / f"img-{i:03d}.{fmt}"
        Image.fromarray(arr).save(p)
        paths.append(p)
    return paths


def script_folder(parent: Path, answers: Sequence[str] | None = None, *, name: str = "reasoner") -> Path:
    """A folder for ``--reasoner-backend scripted:ScriptedReasoner --reasoner FOLDER`` (answers cycled)."""
    folder = parent / name
    folder.mkdir(parents=True, exist_ok=True)
    if answers is None:
        answers = [box_answer(BOXES, *SIZE)]
    (folder / "script.json").write_text(json.dumps(list(answers)))
    return folder


def write_jsonl(path: Path, rows: Iterable[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def read_results(out: Path) -> list[dict]:
    """The records of ``out/results.jsonl``, sorted by input index."""
    lines = (out / "results.jsonl").read_text().splitlines()
    return sorted((json.loads(x) for x in lines if x.strip()), key=lambda r: r["index"])


__all__ = ["BOXES", "SIZE", "TESTS", "box_answer", "read_results", "script_folder", "write_images", "write_jsonl"]
