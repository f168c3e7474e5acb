"""Reasoner plugins that load or answer slowly, selected as a user selects any plugin
(``--reasoner-backend slow_plugins:SlowLoadingReasoner --reasoner FOLDER``) with ``tests/`` on
``PYTHONPATH``. ``FOLDER/script.json`` holds the scripted answers (as for ``ScriptedReasoner``);
``FOLDER/slow.json`` holds the delays: ``{"load_s": 60, "answer_s": 12, "fail_loads": 0}``.

* loading sleeps ``load_s`` seconds (updating a tqdm bar once a second, as transformers' shard
  loading does) and fails the first ``fail_loads`` times (counted in ``FOLDER/loads.txt``);
* answering sleeps ``answer_s`` seconds, checking for cancellation every 10 ms.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

from scripted import ScriptedReasoner

from segzero_tool.cancel import check_cancelled
from segzero_tool.errors import ModelLoadError
from segzero_tool.reasoners.base import ReasonerOutput, ReasonerRequest


def _delays(folder: Path) -> dict[str, float]:
    path = folder / "slow.json"
    return json.loads(path.read_text()) if path.exists() else {}


class SlowLoadingReasoner(ScriptedReasoner):
    """A scripted reasoner whose ``from_pretrained`` takes ``load_s`` seconds."""

    name = "slow"

    @classmethod
    def from_pretrained(cls, folder: str, **kwargs: object) -> SlowLoadingReasoner:
        from tqdm.auto import tqdm

        root = Path(folder)
        delays = _delays(root)
        counter = root / "loads.txt"
        loads = int(counter.read_text()) + 1 if counter.exists() else 1
        counter.write_text(str(loads))
        seconds = float(delays.get("load_s", 0))
        steps = max(1, int(seconds))
        with tqdm(total=steps, desc="Loading checkpoint shards", disable=False) as bar:
            for _ in range(steps):
                time.sleep(seconds / steps)
                bar.update(1)
        if loads <= int(delays.get("fail_loads", 0)):
            raise ModelLoadError(f"simulated load failure number {loads} (disk full while reading the weights)")
        reasoner = cls(json.loads((root / "script.json").read_text()), **kwargs)
        reasoner.answer_s = float(delays.get("answer_s", 0))
        return reasoner

    answer_s = 0.0

    def generate(self, requests: Sequence[ReasonerRequest]) -> list[ReasonerOutput]:
        end = time.monotonic() + self.answer_s
        while time.monotonic() < end:
            check_cancelled()
            time.sleep(0.01)
        return super().generate(requests)


def slow_folder(parent: Path, answer: str, *, load_s: float = 0, answer_s: float = 0, fail_loads: int = 0,
                name: str = "slow-reasoner") -> Path:
    """A plugin folder for :class:`SlowLoadingReasoner`."""
    folder = parent / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "script.json").write_text(json.dumps([answer]))
    (folder / "slow.json").write_text(json.dumps({"load_s": load_s, "answer_s": answer_s, "fail_loads": fail_loads}))
    return folder
