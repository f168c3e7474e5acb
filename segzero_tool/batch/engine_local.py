"""The local engine: the whole job in this process.

Images are decoded (and resized into the reasoning frame) on a few threads, at most ``prefetch`` batches ahead of
the reasoner, so memory stays bounded whatever the size of the input; the reasoner gets one batch per
``generate`` call; the segmenter runs once per distinct image of a batch.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from ..cancel import check_cancelled
from .engine import BatchEngine, Emit
from .stages import DecodedRow, StageConfig, decode_row, finish_rows, reason_rows

if TYPE_CHECKING:
    from ..pipeline import SegZeroPipeline
    from .inputs import BatchRow

#: Batches decoded ahead of the reasoner by default.
DEFAULT_PREFETCH = 2
#: Decoding threads by default.
DEFAULT_DECODE_THREADS = 4


def _label(obj: Any) -> str | None:
    return None if obj is None else getattr(obj, "model_id", None) or type(obj).__name__


def _backend(obj: Any) -> str | None:
    return None if obj is None else f"{type(obj).__module__}:{type(obj).__qualname__}"


class LocalEngine(BatchEngine):
    """Run the stages in this process on a loaded :class:`~segzero_tool.SegZeroPipeline`.

    Args:
        pipeline: the pipeline (its reasoner, segmenter and settings).
        prefetch: batches decoded ahead of the reasoner (>= 1).
        decode_threads: threads decoding images (>= 1).
        models: what the manifest records of the models (default: the loaded models' ids and classes); the CLI
            gives the names of its settings, the same for every engine.
    """

    name = "local"

    def __init__(self, pipeline: SegZeroPipeline, *, prefetch: int = DEFAULT_PREFETCH,
                 decode_threads: int = DEFAULT_DECODE_THREADS, models: dict[str, Any] | None = None) -> None:
        if prefetch < 1:
            raise ValueError(f"prefetch must be at least 1, got {prefetch}")
        if decode_threads < 1:
            raise ValueError(f"decode_threads must be at least 1, got {decode_threads}")
        pipeline._require_reasoner()
        self.pipeline = pipeline
        self.prefetch = int(prefetch)
        self.decode_threads = int(decode_threads)
        self._models = dict(models) if models is not None else None

    @property
    def config(self) -> StageConfig:
        return StageConfig.of(self.pipeline)

    def models(self) -> dict[str, Any]:
        if self._models is not None:
            return dict(self._models)
        p = self.pipeline
        return {"reasoner": _label(p.reasoner), "reasoner_backend": _backend(p.reasoner),
                "segmenter": _label(p.segmenter), "segmenter_backend": _backend(p.segmenter)}

    def run(self, rows: Sequence[BatchRow], emit: Emit, *, out_dir: str | os.PathLike, batch_size: int,
            png_masks: bool) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        pending: deque[list[Future[DecodedRow]]] = deque()
        with ThreadPoolExecutor(max_workers=self.decode_threads, thread_name_prefix="segzero-decode") as pool:
            try:
                for start in range(0, len(rows), batch_size):
                    pending.append([pool.submit(decode_row, self.pipeline, r) for r in rows[start:start + batch_size]])
                    while len(pending) > self.prefetch:
                        self._process(pending.popleft(), emit, out_dir, png_masks)
                while pending:
                    self._process(pending.popleft(), emit, out_dir, png_masks)
            finally:
                for batch in pending:  # stopped early: drop what was decoded ahead
                    for f in batch:
                        f.cancel()

    def _process(self, futures: list[Future[DecodedRow]], emit: Emit, out_dir: str | os.PathLike,
                 png_masks: bool) -> None:
        check_cancelled()
        decoded = [f.result() for f in futures]
        outputs = reason_rows(self.pipeline, decoded)
        check_cancelled()
        emit(finish_rows(self.pipeline, decoded, outputs, out_dir=out_dir, png_masks=png_masks))


__all__ = ["DEFAULT_DECODE_THREADS", "DEFAULT_PREFETCH", "LocalEngine"]
