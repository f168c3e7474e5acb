"""A 1,000-frame run holds neither all frames nor all masks: Python memory in use after frame 1,000 is what it was
after frame 100 (tracemalloc; the tracker's own memory window is tested on the SAM2 model in test_tracker_sam2)."""

from __future__ import annotations

import sys
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from scripted import BoxSegmenter, ScriptedReasoner  # noqa: E402
from video_doubles import ColourTracker  # noqa: E402
from video_support import box_answer as answer  # noqa: E402

from segzero_tool import SegZeroPipeline  # noqa: E402
from segzero_tool.testing.synthetic_video import moving_shapes  # noqa: E402
from segzero_tool.video import track_video  # noqa: E402

N = 1000


def test_memory_in_use_does_not_grow_with_the_clip(tmp_path):
    first = next(moving_shapes(1))
    pipe = SegZeroPipeline(ScriptedReasoner([answer([first.boxes[1], first.boxes[2], first.boxes[3]], 160, 120)]),
                           BoxSegmenter())
    in_use: dict[int, int] = {}

    def on_frame(fr):
        if fr.index + 1 in (100, 500, N):
            in_use[fr.index + 1] = tracemalloc.get_traced_memory()[0]

    tracemalloc.start()
    try:
        run = track_video(pipe, (f.image for f in moving_shapes(N)), "every shape", tracker=ColourTracker(),
                          out=tmp_path / "run", on_frame=on_frame, fps=25)
    finally:
        tracemalloc.stop()
    assert run.frames_done == N and len(run.tracks) == 3
    assert all(t.frames_present == N for t in run.tracks)
    grown = in_use[N] - in_use[100]
    assert grown < 1_000_000, f"{grown} bytes more in use after {N} frames than after 100: {in_use}"
    assert all(len(t.area) <= 200 for t in run.tracks)
