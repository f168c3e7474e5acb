"""``results.jsonl`` and the shard files of a batch job: appended records, scanned back without holding them.

Records are appended, flushed and fsync'd one at a time (:class:`~segzero_tool.eval.records.RecordWriter`), so a
kill at any moment loses at most the line being written: :func:`scan_results` cuts such a truncated last line off
(the row is computed again) and returns the ids already done. Engines that write in parallel (Ray) write
``shards/*.jsonl`` files the same way; :func:`fold_shards` appends their records that are not yet in
``results.jsonl`` and removes them, so a record is never lost nor written twice.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..eval.records import RecordWriter
from .manifest import BatchJobError

logger = logging.getLogger(__name__)

SHARDS_DIR = "shards"


def _complete_length(path: Path) -> int:
    """Bytes of ``path`` up to and including its last newline."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        pos = size
        while pos > 0:
            step = min(65536, pos)
            fh.seek(pos - step)
            chunk = fh.read(step)
            nl = chunk.rfind(b"\n")
            if nl >= 0:
                return pos - step + nl + 1
            pos -= step
    return 0


def iter_records(path: str | os.PathLike, *, repair: bool = False) -> Iterator[dict[str, Any]]:
    """The records of ``path`` in file order. A truncated last line (a kill while writing) is skipped, and with
    ``repair`` cut off the file.

    Raises:
        BatchJobError: a complete line is not a record (the file was edited or damaged otherwise).
    """
    p = Path(path)
    if not p.exists():
        return
    end = _complete_length(p)
    if end < p.stat().st_size:
        logger.warning("%s: a truncated last line (interrupted while writing) was dropped; that row is computed "
                       "again", p)
        if repair:
            os.truncate(p, end)
    pos = 0
    with open(p, "rb") as fh:
        for lineno, line in enumerate(fh, 1):
            pos += len(line)
            if pos > end:  # the truncated tail
                break
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                raise BatchJobError(f"{p}:{lineno} is not a JSON record; delete that line (its row is then "
                                    "computed again) or use --force to start the job over") from None
            if not isinstance(rec, dict) or "id" not in rec or "index" not in rec:
                raise BatchJobError(f"{p}:{lineno} is not a batch record; delete that line or use --force")
            yield rec


def scan_results(path: str | os.PathLike) -> set[str]:
    """The ids of the rows ``results.jsonl`` holds (repairing a truncated last line)."""
    return {str(r["id"]) for r in iter_records(path, repair=True)}


def fold_shards(out_dir: str | os.PathLike, results: str | os.PathLike, done: set[str]) -> int:
    """Append the records of ``out_dir/shards/*.jsonl`` whose ids are not in ``done`` to ``results`` (updating
    ``done``), then delete the shards. Returns how many records were added."""
    shards = Path(out_dir) / SHARDS_DIR
    if not shards.is_dir():
        return 0
    added = 0
    files = sorted(shards.glob("*.jsonl"))
    with RecordWriter(results) as writer:
        for shard in files:
            for rec in iter_records(shard):
                rid = str(rec["id"])
                if rid in done:
                    continue
                writer.write(rec)
                done.add(rid)
                added += 1
    for shard in files:
        shard.unlink()
    for leftover in shards.glob("*.partial"):
        leftover.unlink()
    try:
        shards.rmdir()
    except OSError:
        pass
    return added


__all__ = ["SHARDS_DIR", "fold_shards", "iter_records", "scan_results"]
