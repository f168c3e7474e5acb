"""Which frames the reasoner sees: ``first`` (default), ``every:N`` frames or ``every:Ns`` seconds.

Between key frames the tracker alone carries the objects; a key frame runs the reasoner (and the image
segmenter) again, so objects that entered the scene start new tracks and known ones are matched to theirs.
"""

from __future__ import annotations

import math
import re

from ..settings import SettingsError

_EVERY = re.compile(r"every:\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(s|sec|seconds?)?", re.IGNORECASE)

#: Longest ``every:`` period accepted (frames, or seconds): a larger one is a typo.
MAX_PERIOD = 1_000_000


class KeyFrames:
    """A key-frame policy; :meth:`is_key` is asked once per frame, in order.

    Attributes:
        kind: ``first``, ``frames`` or ``seconds``.
        period: frames or seconds between key frames (``None`` for ``first``).
    """

    def __init__(self, kind: str, period: float | None = None) -> None:
        self.kind = kind
        self.period = period
        self._last_key_time: float | None = None
        self._seen_first = False

    @classmethod
    def parse(cls, spec: str | KeyFrames | None) -> KeyFrames:
        """``first``, ``every:N`` (frames) or ``every:Ns`` (seconds, decimals allowed).

        Raises:
            SettingsError: anything else, a zero period, a fractional frame count or an absurd period.
        """
        if isinstance(spec, KeyFrames):
            return cls(spec.kind, spec.period)
        if spec is None:
            return cls("first")
        if not isinstance(spec, str):
            raise SettingsError(f"key frames must be 'first', 'every:N' or 'every:Ns', got {type(spec).__name__}")
        text = spec.strip()
        if text.lower() == "first":
            return cls("first")
        match = _EVERY.fullmatch(text)
        if match is None:
            raise SettingsError(f"key frames {spec[:60]!r} not understood: use 'first', 'every:N' (frames) or "
                                "'every:Ns' (seconds), e.g. every:30 or every:2s")
        value = float(match.group(1))
        seconds = match.group(2) is not None
        if not math.isfinite(value) or value <= 0 or value > MAX_PERIOD:
            raise SettingsError(f"key frames {spec[:60]!r}: the period must be above 0 and at most {MAX_PERIOD}")
        if not seconds and value != int(value):
            raise SettingsError(f"key frames {spec[:60]!r}: a frame count is a whole number (add 's' for seconds)")
        return cls("seconds", value) if seconds else cls("frames", float(int(value)))

    def is_key(self, index: int, time_s: float | None, fps: float | None = None) -> bool:
        """Whether frame ``index`` (at ``time_s`` seconds) is a key frame. The first frame asked always is.

        Seconds use ``time_s`` (the container's presentation time), else ``index / fps``; with neither (a folder
        or an iterator without ``fps``) a frame counts as one second.
        """
        if not self._seen_first:
            self._seen_first = True
            self._last_key_time = self._time(index, time_s, fps)
            return True
        if self.kind == "first":
            return False
        if self.kind == "frames":
            return index % int(self.period or 1) == 0
        now = self._time(index, time_s, fps)
        if self._last_key_time is None or now - self._last_key_time >= float(self.period or 0) - 1e-9:
            self._last_key_time = now
            return True
        return False

    def restore(self, last_key_index: int, last_key_time: float | None, fps: float | None = None) -> None:
        """Continue after a resumed run whose last key frame was ``last_key_index``."""
        self._seen_first = True
        self._last_key_time = self._time(last_key_index, last_key_time, fps)

    @staticmethod
    def _time(index: int, time_s: float | None, fps: float | None) -> float:
        if time_s is not None and math.isfinite(time_s):
            return float(time_s)
        if fps and math.isfinite(fps) and fps > 0:
            return index / fps
        return float(index)

    def __str__(self) -> str:
        if self.kind == "first":
            return "first"
        if self.kind == "frames":
            return f"every:{int(self.period or 0)}"
        return f"every:{self.period:g}s"

    def __repr__(self) -> str:
        return f"KeyFrames({str(self)!r})"


__all__ = ["KeyFrames"]
