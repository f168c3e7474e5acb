"""JSON files of an evaluation run, written crash-safely.

Kept apart from :mod:`.runner` and :mod:`.report` so that both can use it: the runner writes the
manifest, the report writes ``results.json``, and neither module has to import the other for it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_bytes


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as indented UTF-8 JSON (NaN / infinity refused) to ``path`` atomically; returns the path."""
    p = Path(path)
    atomic_write_bytes(p, (json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8"))
    return p


__all__ = ["write_json_atomic"]
