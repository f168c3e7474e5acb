"""What one person does in ``segzero demo``, without the web page: pick an image, ask, look, click to refine, undo,
download. The page (:mod:`segzero_tool.demo.app`) only turns events into calls of :class:`DemoSession` and its
answers into components, so everything here is tested without a browser.

A session holds the image, the current result and the results before it (for undo). Clicks refine the selected
object on the segmenter's cached image embedding (:meth:`~segzero_tool.SegZeroPipeline.refine_object`), and two
clicks in box mode add an object (:meth:`~segzero_tool.SegZeroPipeline.segment_by_prompts`): no new reasoning pass.
Every problem a person can cause is a :class:`DemoError` whose message the page shows as it is.
"""

from __future__ import annotations

import dataclasses
import io
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ..errors import SegZeroError

if TYPE_CHECKING:
    from PIL import Image

    from ..pipeline import SegZeroPipeline
    from ..result import SegmentationResult

ClickMode = Literal["add", "remove", "box"]
CLICK_MODES: tuple[str, ...] = ("add", "remove", "box")
#: Longest side of the picture shown in the page (clicks are scaled back to the image's pixels).
DEFAULT_VIEW_SIDE = 1024
#: Results kept for undo.
MAX_UNDO = 50


class DemoError(SegZeroError, ValueError):
    """Something the person can fix: the page shows the message as it is."""

    exit_code = 2


class DemoSession:
    """One person's work in the demo.

    Args:
        pipeline: the loaded pipeline (its reasoner may be ``None``: boxes and clicks only).
        folder: where downloads are written (one sub-folder per download).
        view_side: longest side of the picture shown (clicks are scaled back to image pixels).
    """

    def __init__(self, pipeline: SegZeroPipeline, folder: str | os.PathLike, *,
                 view_side: int = DEFAULT_VIEW_SIDE) -> None:
        self.pipeline = pipeline
        self.folder = Path(folder)
        self.view_side = int(view_side)
        self.image: np.ndarray | None = None
        self.result: SegmentationResult | None = None
        self.history: list[SegmentationResult] = []
        self.selected: int | None = None
        self.hidden: set[int] = set()
        self.corner: tuple[int, int] | None = None  # box mode: the first corner, waiting for the second
        self._downloads = 0

    # --- input ------------------------------------------------------------------------------------------------

    def set_image(self, image: Any) -> None:
        """A new picture (a path, an array, a PIL image): the result and its history are dropped."""
        from ..images import load_image

        if image is None:
            raise DemoError("no image: upload, paste or pick a picture first")
        try:
            loaded = load_image(image, max_pixels=self.pipeline.max_pixels, cache=self.pipeline.image_cache)
        except SegZeroError as exc:
            text = str(exc)
            if isinstance(image, (str, os.PathLike)):  # an upload's temporary path says nothing to the person
                text = text.replace(os.fspath(image), Path(image).name)
            raise DemoError(f"this picture cannot be used: {text}") from None
        self.image = loaded.array
        self.result = None
        self.history.clear()
        self.selected = None
        self.hidden.clear()
        self.corner = None

    def _need_image(self) -> np.ndarray:
        if self.image is None:
            raise DemoError("no image: upload, paste or pick a picture first")
        return self.image

    # --- asking -----------------------------------------------------------------------------------------------

    def ask(self, query: str) -> SegmentationResult:
        """Reason and segment ``query`` on the picture (a new result; the previous one can be brought back with
        :meth:`undo`)."""
        from ..prompts import validate_query

        image = self._need_image()
        if self.pipeline.reasoner is None:
            raise DemoError("this demo runs without a reasoner (--reasoner none): click two corners in box mode to "
                            "add an object")
        query = (query or "").strip()
        try:
            validate_query(query, self.pipeline.max_query_chars)
        except SegZeroError as exc:
            raise DemoError(str(exc)) from None
        result = self.pipeline.segment(image, query)
        self._push(result)
        self.selected = 0 if result.objects else None
        return result

    # --- steering ---------------------------------------------------------------------------------------------

    def to_image_xy(self, x: float, y: float) -> tuple[int, int]:
        """A click on the shown picture -> pixels of the image."""
        image = self._need_image()
        try:
            x, y = float(x), float(y)
        except (TypeError, ValueError):
            raise DemoError(f"a click needs two numbers, got {x!r}, {y!r}") from None
        if not (np.isfinite(x) and np.isfinite(y)):
            raise DemoError(f"a click needs finite coordinates, got {x!r}, {y!r}")
        h, w = image.shape[:2]
        scale = max(w, h) / min(self.view_side, max(w, h))
        return (min(w - 1, max(0, int(round(float(x) * scale)))), min(h - 1, max(0, int(round(float(y) * scale)))))

    def click(self, x: float, y: float, mode: str) -> SegmentationResult | None:
        """A click at ``(x, y)`` of the shown picture: ``add`` / ``remove`` a point of the selected object, or in
        ``box`` mode the first or second corner of a new object. Returns the new result (``None`` after a first
        corner)."""
        if mode not in CLICK_MODES:
            raise DemoError(f"unknown click mode {mode!r}; choose one of {', '.join(CLICK_MODES)}")
        px, py = self.to_image_xy(x, y)
        if mode == "box":
            if self.corner is None:
                self.corner = (px, py)
                return None
            (x1, y1), self.corner = self.corner, None
            box = [min(x1, px), min(y1, py), max(x1, px), max(y1, py)]
            return self.add_box(box)
        if self.result is None or not self.result.objects:
            raise DemoError("no object to refine yet: ask a question first, or add a box (box mode: two clicks)")
        if self.selected is None:
            raise DemoError("select an object in the table first")
        key = "add_points" if mode == "add" else "remove_points"
        try:
            refined = self.pipeline.refine_object(self.result, self.selected, **{key: [[px, py]]})
        except SegZeroError as exc:
            raise DemoError(str(exc)) from None
        self._push(refined)
        return refined

    def add_box(self, box: Sequence[int]) -> SegmentationResult:
        """Add an object from a box (image pixels), segmented on the cached embedding; it becomes the selected one."""
        image = self._need_image()
        if box[2] <= box[0] or box[3] <= box[1]:
            raise DemoError("the two corners of a box must differ in x and y; click the opposite corner")
        try:
            made = self.pipeline.segment_by_prompts(image, [{"box": list(box)}])
        except SegZeroError as exc:
            raise DemoError(str(exc)) from None
        if self.result is None:
            combined = made
        else:
            combined = dataclasses.replace(self.result, objects=[*self.result.objects, *made.objects])
        self._push(combined)
        self.selected = len(combined.objects) - 1
        return combined

    def select(self, index: int | None) -> None:
        if index is None:
            self.selected = None
            return
        n = len(self.result.objects) if self.result is not None else 0
        if not 0 <= int(index) < n:
            raise DemoError(f"there is no object #{index}" + (f" (0 to {n - 1})" if n else ""))
        self.selected = int(index)

    def show_only(self, indices: Sequence[int]) -> None:
        """Show these objects, hide the others."""
        n = len(self.result.objects) if self.result is not None else 0
        self.hidden = set(range(n)) - {int(i) for i in indices}

    def undo(self) -> SegmentationResult | None:
        """Back to the result before the last change (ask, click, box); ``None`` when there is none."""
        self.corner = None
        if not self.history:
            raise DemoError("nothing to undo")
        self.result = self.history.pop()
        n = len(self.result.objects) if self.result is not None else 0
        if self.selected is not None and self.selected >= n:
            self.selected = n - 1 if n else None
        self.hidden = {i for i in self.hidden if i < n}
        return self.result

    def _push(self, result: SegmentationResult) -> None:
        self.history.append(self.result)  # type: ignore[arg-type]  # None: undo goes back to no result
        del self.history[:-MAX_UNDO]
        self.result = result
        n = len(result.objects)
        self.hidden = {i for i in self.hidden if i < n}

    # --- looking ----------------------------------------------------------------------------------------------

    def view(self) -> Image.Image | None:
        """The picture as shown: the visible objects over the image (longest side ``view_side``)."""
        from PIL import Image

        if self.image is None:
            return None
        if self.result is None:
            img = Image.fromarray(self.image)
            img.thumbnail((self.view_side, self.view_side))
            return img
        from ..steer import select_objects

        visible = [i for i in range(len(self.result.objects)) if i not in self.hidden]
        shown = self.result if len(visible) == len(self.result.objects) else select_objects(self.result, visible)
        return shown.overlay(max_side=self.view_side, image=self.image)

    def table(self) -> list[list[Any]]:
        """One row per object: index, shown, box, score, area."""
        if self.result is None:
            return []
        rows = []
        for i, obj in enumerate(self.result.objects):
            score = None if obj.score != obj.score else round(float(obj.score), 3)
            rows.append([i, i not in self.hidden, list(obj.box) if obj.box is not None else None, score, obj.area])
        return rows

    def status(self) -> str:
        """One line on what there is: objects, selection, a pending box corner."""
        if self.image is None:
            return "Pick a picture."
        if self.result is None:
            return "Ask a question" + ("" if self.pipeline.reasoner is not None else " (no reasoner: add boxes)") + "."
        n = len(self.result.objects)
        text = f"{n} object{'s' if n != 1 else ''}" + (f", #{self.selected} selected" if self.selected is not None
                                                        else "")
        if self.result.parse_status.value not in ("ok", "no_objects"):
            text += f" (the answer did not parse: {self.result.parse_status.value})"
        if self.corner is not None:
            text += f"; box: first corner at {self.corner}, click the opposite corner"
        return text + "."

    # --- downloads --------------------------------------------------------------------------------------------

    def download(self) -> list[Path]:
        """Write ``result.json``, ``overlay.png`` and ``masks.zip`` (one PNG per object and the union) of the current
        result into a new sub-folder; returns the three paths."""
        if self.result is None:
            raise DemoError("nothing to download yet: ask a question or add a box first")
        self._downloads += 1
        out = self.folder / f"result-{self._downloads:03d}"
        written = self.result.save(out, masks=True, overlay=True, overlay_max_side=None)
        masks = sorted(p for k, p in written.items() if k.startswith("mask_"))
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for p in masks:
                zf.write(p, p.name)
        from ..atomic import atomic_write_bytes

        archive = atomic_write_bytes(out / "masks.zip", buf.getvalue())
        return [written["result"], written["overlay"], archive]


__all__ = ["CLICK_MODES", "DEFAULT_VIEW_SIDE", "MAX_UNDO", "ClickMode", "DemoError", "DemoSession"]
