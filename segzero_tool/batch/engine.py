"""What a batch engine is: something that turns rows into records and hands them to the job as they finish.

The job (:func:`segzero_tool.batch.job.run_batch`) owns the output folder: it decides which rows remain, writes each
record it is handed (appended, flushed and fsync'd) and resumes. An engine only computes: the local engine in this
process (:mod:`segzero_tool.batch.engine_local`), the Ray engine as a Ray Data pipeline
(:mod:`segzero_tool.batch.engine_ray`). Both run the stages of :mod:`segzero_tool.batch.stages`, so their records
are identical.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .inputs import BatchRow
    from .stages import StageConfig

#: Receives the records of finished rows (any order, each row once).
Emit = Callable[[list[dict[str, Any]]], None]


class BatchEngine(ABC):
    """Base class of batch engines."""

    #: ``local``, ``ray``, ...
    name: str = "custom"

    @property
    @abstractmethod
    def config(self) -> StageConfig:
        """The settings the records depend on (prompt format, frame, rounding, ...): part of the job's manifest."""

    @abstractmethod
    def models(self) -> dict[str, Any]:
        """``{"reasoner": ..., "reasoner_backend": ..., "segmenter": ..., "segmenter_backend": ...}`` for the
        manifest (a job resumed with other models is refused)."""

    @abstractmethod
    def run(self, rows: Sequence[BatchRow], emit: Emit, *, out_dir: str | os.PathLike, batch_size: int,
            png_masks: bool) -> None:
        """Process ``rows``, calling ``emit`` with records as they finish. Errors of single rows are records;
        anything raised stops the job (what was emitted is kept, and a new run resumes after it)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release models, workers or clusters."""


__all__ = ["BatchEngine", "Emit"]
