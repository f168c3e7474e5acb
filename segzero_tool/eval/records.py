"""The records file of a run, ``samples.jsonl``: one JSON record per finished sample.

Records are appended, flushed and fsync'd one at a time (:class:`RecordWriter`); reading them back
(:func:`read_records`) drops a truncated last line, left by a crash in the middle of a write, and
rewrites the file atomically without it.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_bytes
from ..errors import SegZeroError

logger = logging.getLogger("segzero_tool.eval.runner")

SAMPLES_FILE = "samples.jsonl"

#: Record fields that legitimately differ between two runs of the same samples.
TIMING_FIELDS = ("latency_ms", "timings_ms")


class EvalRunError(SegZeroError, ValueError):
    """The run folder cannot be used: made with other settings, or its records are corrupt."""

    exit_code = 2


#: Characters that ``str.splitlines`` (and other readers) take for line ends besides ``\n`` and ``\r``, which
#: ``json.dumps(ensure_ascii=False)`` leaves raw inside strings: escaped, so that one record is one line for every
#: reader.
_LINE_BREAKS = {ord(c): f"\\u{ord(c):04x}" for c in "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"}


def _dumps_record(rec: Mapping[str, Any]) -> str:
    return json.dumps(rec, ensure_ascii=False, allow_nan=False, separators=(",", ":")).translate(_LINE_BREAKS)


def read_records(path: str | os.PathLike, *, repair: bool = True) -> list[dict[str, Any]]:
    """Read ``samples.jsonl``; a truncated last line is dropped and, with ``repair``, the file is
    rewritten atomically without it; duplicated ids keep their first record.

    Raises:
        EvalRunError: a line other than the last is not a JSON record.
    """
    p = Path(path)
    if not p.exists():
        return []
    raw = p.read_bytes()
    if not raw:
        return []
    lines = raw.split(b"\n")
    complete, tail = lines[:-1], lines[-1]  # tail is b"" when the file ends with a newline
    records: list[dict[str, Any]] = []
    seen: set[str] = set()
    dirty = False
    for lineno, line in enumerate(complete, 1):
        if not line.strip():
            dirty = True
            continue
        try:
            rec = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            if lineno == len(complete) and not tail:
                # the last line is complete but garbled: also a crash artefact
                logger.warning("%s: dropped a corrupt last line; that sample will be computed again", p)
                dirty = True
                continue
            raise EvalRunError(f"{p}:{lineno} is not a JSON record; fix or delete the line, or use --force "
                               "to start the run over") from None
        if not isinstance(rec, dict) or "id" not in rec:
            raise EvalRunError(f"{p}:{lineno} is not a sample record; fix or delete the line, or --force")
        if rec["id"] in seen:
            logger.warning("%s: duplicate record for sample %r dropped", p, rec["id"])
            dirty = True
            continue
        seen.add(rec["id"])
        records.append(rec)
    if tail.strip():
        logger.warning("%s: dropped a truncated last line (interrupted while writing); that sample will be "
                       "computed again", p)
        dirty = True
    if dirty and repair:
        data = "".join(_dumps_record(r) + "\n" for r in records).encode("utf-8")
        atomic_write_bytes(p, data)
    return records


class RecordWriter:
    """Appends records to ``samples.jsonl``; each one is flushed and fsync'd before the next."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def write(self, record: Mapping[str, Any]) -> None:
        self._fh.write(_dumps_record(record) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def strip_timings(record: Mapping[str, Any]) -> dict[str, Any]:
    """A record without its timing fields (to compare two runs)."""
    return {k: v for k, v in record.items() if k not in TIMING_FIELDS}


__all__ = ["SAMPLES_FILE", "TIMING_FIELDS", "EvalRunError", "RecordWriter", "read_records", "strip_timings"]
