"""The README's video section, claim by claim: its examples run as written (scripted reasoner, colour tracker), and
the numbers and file layouts it states are the code's."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from scripted import BoxSegmenter, ScriptedReasoner  # noqa: E402
from video_doubles import ColourTracker, key_frame_answers  # noqa: E402

from segzero_tool import SegZeroPipeline  # noqa: E402
from segzero_tool.testing.synthetic_video import moving_shapes, write_clip  # noqa: E402

README = Path(__file__).resolve().parents[2] / "README.md"


def _section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(title)
    level = title.split(" ")[0]
    rest = text[start + len(title):]
    ends = [m.start() for m in re.finditer(r"(?m)^#{2," + str(len(level)) + r"} ", rest)]
    return rest[: ends[0]] if ends else rest


VIDEO = "## Video: reason on key frames, track through the clip"


def _blocks(section: str, lang: str) -> list[str]:
    return re.findall(rf"(?ms)^```{lang}\n(.*?)^```", section)


@pytest.fixture
def scripted(monkeypatch, tmp_path):
    """The README's models replaced by the scripted reasoner and the colour tracker; kitchen.mp4 in the cwd."""
    frames = list(moving_shapes(20, occlude_from=6, occlude_to=9))
    write_clip(tmp_path / "kitchen.mp4", frames, fps=10)

    def pipe_for(keys):  # a reasoner that answers the truth on the frames it will be asked about
        pipe = SegZeroPipeline(ScriptedReasoner(key_frame_answers(frames, keys, [1])), BoxSegmenter())
        monkeypatch.setattr(SegZeroPipeline, "from_pretrained", classmethod(lambda cls, *a, **k: pipe))
        return pipe

    monkeypatch.setattr("segzero_tool.video.session.load_tracker", lambda *a, **k: ColourTracker())
    monkeypatch.setattr("segzero_tool.video.tracker.load_tracker", lambda *a, **k: ColourTracker())
    monkeypatch.chdir(tmp_path)
    return frames, pipe_for


def test_the_python_example_runs_as_written(scripted, capsys):
    code = _blocks(_section("### Python: `track_video` and live frames"), "python")[0]
    scripted[1]([0])  # every:2s on a 2-second clip at 10 fps: frame 0 only
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - the README's own example
    run = scope["run"]
    assert run.frames_done == 20 and run.key_frames == [0]
    out = capsys.readouterr().out
    assert out.startswith("1 track(s) for 'the cup I can drink from' over 20 frame(s)")
    assert (Path("runs/cup") / "frames.jsonl").exists() and (Path("runs/cup") / "overlay.mp4").exists()


def test_the_live_session_example_runs_as_written(scripted, capsys):
    section = _section("### Python: `track_video` and live frames")
    code = _blocks(section, "python")[1]
    frames, pipe_for = scripted
    # lost on frame 6 (hidden 6-8): asked again on 7, 8 (nothing) and 9 (matched)
    pipe = pipe_for([0, 7, 8, 9])
    scope: dict = {"pipe": pipe, "camera": lambda: (f.image for f in frames)}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("0 1 (") and len(lines) == 20 - 3  # hidden on frames 6-8
    assert len(pipe.reasoner.calls) == 4 and {line.split()[1] for line in lines} == {"1"}


def test_the_summary_example_has_the_format_summary_prints():
    text = _blocks(_section(VIDEO), "text")[0].splitlines()
    assert re.fullmatch(r"\d+ track\(s\) for '.*' over \d+ frame\(s\) \(\d+ key frame\(s\)\)", text[0])
    for line in text[1:]:
        assert re.fullmatch(r"#\d+ frames \d+-\d+ \(\d+ visible, (active|lost)(, lost at [\d, ]+)?\)", line), line
    from segzero_tool.video.result import TrackSummary

    t = TrackSummary(track_id=1, first_frame=0, last_frame=239, frames_present=231, lost_at=[118])
    assert t.line() == text[1]


def test_the_numbers_in_the_section_are_the_codes():
    from segzero_tool.video.result import MAX_AREA_SAMPLES
    from segzero_tool.video.session import DEFAULT_MATCH_IOU
    from segzero_tool.video.track import OVERLAY_MAX_SIDE, REPLAY_FRAMES

    section = _section(VIDEO)
    assert f"at most {MAX_AREA_SAMPLES} samples" in section
    assert f"lost up to {REPLAY_FRAMES} frames before the stop" in section
    assert f"at most {OVERLAY_MAX_SIDE} px" in section
    assert f"default {DEFAULT_MATCH_IOU}" in section
    from segzero_tool.video.timeline import MAX_ROWS, MAX_WIDTH

    assert f"binned to at most {MAX_WIDTH} px; at most {MAX_ROWS} rows" in section


def test_the_memory_window_is_the_released_models():
    """'the current frame and the 17 before it (SAM2 reads 7 memory frames and 16 object pointers)': transformers'
    defaults, which the hub's SAM 2.1 configs keep."""
    from transformers import Sam2VideoConfig

    from segzero_tool.video.tracker import TransformersVideoTracker

    config = Sam2VideoConfig()
    assert (config.num_maskmem, config.max_object_pointers_in_encoder) == (7, 16)

    class _Model:
        def __init__(self):
            self.config = config

        def eval(self):
            return self

        def parameters(self):
            return iter(())

    assert TransformersVideoTracker(_Model(), None).memory_window == 17
    assert "the current frame and the 17 before it (SAM2 reads 7 memory frames and 16 object\n  pointers)" in \
        _section(VIDEO)


def test_the_file_table_matches_a_run(tmp_path):
    from segzero_tool.video import track_video

    frames = list(moving_shapes(6, occlude_from=2, occlude_to=4))
    pipe = SegZeroPipeline(ScriptedReasoner(key_frame_answers(frames, [0], [1])), BoxSegmenter())
    track_video(pipe, (f.image for f in frames), "x", tracker=ColourTracker(), out=tmp_path / "run", fps=5)
    section = _section("### What a run writes")
    line = json.loads((tmp_path / "run" / "frames.jsonl").read_text().splitlines()[2])
    assert set(line) == {"frame", "time_s", "key_frame", "objects", "events"}
    key = json.loads((tmp_path / "run" / "frames.jsonl").read_text().splitlines()[0])
    assert set(key) - set(line) == {"reasoning", "parse_status"} and "`reasoning` and `parse_status`" in section
    assert set(key["objects"][0]) == {"track_id", "box", "score", "area", "mask"}
    from pycocotools import mask as coco

    assert coco.decode({"size": key["objects"][0]["mask"]["size"],
                        "counts": key["objects"][0]["mask"]["counts"].encode()}).shape == (120, 160)
    tracks = json.loads((tmp_path / "run" / "tracks.json").read_text())["tracks"][0]
    for field in ("track_id", "first_frame", "last_frame", "frames_present", "status", "lost_at", "last_box", "area"):
        assert field in tracks and f"`{field}`" in section
    manifest = json.loads((tmp_path / "run" / "track.json").read_text())
    assert manifest["status"] == "complete" and "`complete`" in section
    for field in ("settings", "info", "frames_done", "warnings"):
        assert field in manifest


def test_the_langchain_video_tool_example_runs_as_written(scripted):
    """README "### Video: `TrackByReasoningTool`": the block runs; content and artifact are what it says."""
    pytest.importorskip("langchain_core")
    frames, pipe_for = scripted
    Path("clips").mkdir()
    write_clip(Path("clips") / "kitchen.mp4", frames, fps=10)
    pipe_for([0])
    code = _blocks(_section("### Video: `TrackByReasoningTool`"), "python")[0]
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - the README's own example
    msg = scope["msg"]
    assert msg.content.startswith("run ") and "1 track(s) for 'the cup someone drinks from' over 20 frame(s)" in \
        msg.content
    assert msg.artifact.frames_done == 20 and msg.artifact.key_frames == [0]
    assert sum(1 for _ in msg.artifact.frames()) == 20


def test_the_speed_and_memory_figures_are_the_recorded_ones():
    results = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
    text = (results / "video_speed_cpu.md").read_text()
    body = (results / "video_memory_cpu.md").read_text()
    section = _section("### Speed and memory")
    for figure in ("0.10 frames/s (10.4 s per frame)", "0.04 frames/s", "0.03 frames/s (29.6 s per frame)"):
        assert figure in section
    for value in ("10399.7", "23504.3", "29575.8", "4254.0", "22651.8"):
        assert value in text
    assert "4.3 s" in section and "22.7 s" in section
    assert "+2.5 MB (bound 16 MB)" in body and "| RSS at frame 1000 | 918.8 MB |" in body
    assert "2.5 MB between frame 200 and frame 1,000 (918.8 MB at\nthe end)" in section
