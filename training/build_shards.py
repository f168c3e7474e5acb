"""Resumable writing of a training-set build: rows in shards under ``OUT.partial/``, with ``progress.json``
(settings fingerprint, groups done, shards, counts) rewritten atomically after each shard."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .data import TrainingDataError, _datasets

__all__ = ["flush_shard", "quiet_datasets", "resume_state", "write_json"]


@contextlib.contextmanager
def quiet_datasets() -> Iterator[None]:
    """No ``datasets`` progress bars (``Saving the dataset ...``) inside: the build shows its own."""
    ds = _datasets()
    was_disabled = ds.are_progress_bars_disabled()
    ds.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            ds.enable_progress_bars()


def write_json(path: Path, data: dict[str, Any]) -> None:
    from segzero_tool.atomic import atomic_write_bytes

    atomic_write_bytes(path, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode("utf-8"))


def _fingerprint(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def resume_state(partial: Path, settings: dict[str, Any], counters: tuple[str, ...], *,
                 restart: bool) -> dict[str, Any]:
    """The state of a partial build in ``partial`` made with ``settings``; a fresh one when there is none (or
    ``restart``). Raises :class:`TrainingDataError` for a partial build of other settings or an unreadable one."""
    fresh = {"fingerprint": _fingerprint(settings), "settings": settings, "groups_done": 0, "shards": [],
             "counts": dict.fromkeys(counters, 0)}
    if restart and partial.exists():
        shutil.rmtree(partial)
    state_file = partial / "progress.json"
    if not state_file.is_file():
        if partial.exists():
            shutil.rmtree(partial)  # left before its first shard: nothing to keep
        return fresh
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
        ok = isinstance(state, dict) and isinstance(state.get("shards"), list) and "groups_done" in state
    except (OSError, ValueError):
        ok = False
    if not ok:
        raise TrainingDataError(f"{partial}: an unreadable partial build; remove the folder or pass --restart")
    if state.get("fingerprint") != fresh["fingerprint"]:
        before = state.get("settings", {})
        changed = sorted(k for k in set(before) | set(settings) if before.get(k) != settings.get(k))
        raise TrainingDataError(f"{partial}: a partial build with other settings ({', '.join(changed)} differ); "
                                "run again with the same settings to continue it, or pass --restart")
    for name in state["shards"]:
        if not (partial / name / "dataset_info.json").is_file():
            raise TrainingDataError(f"{partial}: shard {name} is missing; pass --restart to build again")
    return state


def flush_shard(partial: Path, state: dict[str, Any], rows: dict[str, list[Any]], features: Any,
                groups_done: int, counts: dict[str, int]) -> int:
    """Write one shard (possibly of zero rows: skipped samples still count as done) and record it."""
    if rows["id"]:
        name = f"shard-{len(state['shards']):06d}"
        tmp = partial / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        _datasets().Dataset.from_dict(rows, features=features).save_to_disk(str(tmp))
        shutil.rmtree(partial / name, ignore_errors=True)
        os.replace(tmp, partial / name)
        state["shards"].append(name)
    state["groups_done"] = groups_done
    state["counts"] = dict(counts)
    write_json(partial / "progress.json", state)
    return groups_done

