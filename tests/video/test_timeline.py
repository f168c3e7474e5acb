"""timeline.png: one row per track, coloured exactly where the track is visible."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from scripted import BoxSegmenter, ScriptedReasoner  # noqa: E402
from video_doubles import ColourTracker, key_frame_answers  # noqa: E402

from segzero_tool import SegZeroPipeline  # noqa: E402
from segzero_tool.overlay import PALETTE  # noqa: E402
from segzero_tool.testing.synthetic_video import moving_shapes  # noqa: E402
from segzero_tool.video import track_video  # noqa: E402
from segzero_tool.video.timeline import LABEL, ROW, draw_timeline  # noqa: E402


def test_rows_are_coloured_where_the_track_is_visible(tmp_path):
    frames = list(moving_shapes(100, occlude_from=30, occlude_to=50))
    pipe = SegZeroPipeline(ScriptedReasoner(key_frame_answers(frames, [0], [1, 2])), BoxSegmenter())
    track_video(pipe, (f.image for f in frames), "x", tracker=ColourTracker(), out=tmp_path / "run", overlay=False)
    picture = np.asarray(Image.open(tmp_path / "run" / "timeline.png").convert("RGB"))
    zoom = 6  # 600 // 100 frames
    mid = 10 + ROW // 2  # row of track 1
    colour = np.asarray(PALETTE[1 % len(PALETTE)])
    assert (picture[mid, LABEL + 10 * zoom] == colour).all()      # visible on frame 10
    assert not (picture[mid, LABEL + 40 * zoom] == colour).all()  # hidden on frame 40
    assert (picture[mid, LABEL + 60 * zoom] == colour).all()      # found again
    assert (picture[mid + ROW, LABEL + 40 * zoom] == np.asarray(PALETTE[2 % len(PALETTE)])).all()  # track 2
    assert (picture[4, LABEL] == 255).all()  # the key frame tick on frame 0


def test_long_runs_are_binned_and_many_tracks_summarised(tmp_path):
    lines = []
    for i in range(5000):
        objects = ",".join(f'{{"track_id":{t},"box":[0,0,1,1],"score":1,"area":4}}' for t in range(1, 46) if i % t == 0)
        lines.append(f'{{"frame":{i},"time_s":null,"key_frame":{"true" if i == 0 else "false"},"objects":[{objects}],'
                     '"events":[]}\n')
    (tmp_path / "frames.jsonl").write_text("".join(lines))
    image = draw_timeline(tmp_path / "frames.jsonl")
    assert image.width <= LABEL + 1200 + 8 and image.height == 10 + 41 * ROW + 16
    (tmp_path / "empty.jsonl").write_text("")
    assert draw_timeline(tmp_path / "empty.jsonl") is None
