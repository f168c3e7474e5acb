"""A run killed or cancelled mid-clip resumes where it stopped and ends with the files an uninterrupted run writes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from scripted import BoxSegmenter, ScriptedReasoner  # noqa: E402
from video_doubles import ColourTracker, key_frame_answers  # noqa: E402

from segzero_tool import SegZeroPipeline  # noqa: E402
from segzero_tool.cancel import CancelToken, OperationCancelled, cancellation  # noqa: E402
from segzero_tool.settings import SettingsError  # noqa: E402
from segzero_tool.testing.synthetic_video import moving_shapes, write_clip  # noqa: E402
from segzero_tool.video import open_video, track_video  # noqa: E402
from segzero_tool.video.track import load_video_result  # noqa: E402

N = 24
KEYS = [0, 8, 16]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    frames = list(moving_shapes(N, occlude_from=5, occlude_to=9))
    path = write_clip(tmp_path_factory.mktemp("clip") / "shapes.mp4", frames, fps=8)
    # the answers come from the decoded frames' ground truth (boxes do not change with the codec)
    return path, frames


def _pipe(frames, keys):
    return SegZeroPipeline(ScriptedReasoner(key_frame_answers(frames, keys, [1, 2])), BoxSegmenter())


def _stop_at(index):
    def on_frame(fr):
        if fr.index == index:
            raise KeyboardInterrupt

    return on_frame


def _interrupted(path, frames, out, stop):
    """A run of the reference settings stopped by Ctrl-C after frame ``stop``."""
    with pytest.raises(KeyboardInterrupt):
        track_video(_pipe(frames, KEYS), path, "red or blue", tracker=ColourTracker(), out=out,
                    key_frames="every:8", on_frame=_stop_at(stop))


@pytest.fixture(scope="module")
def reference(clip, tmp_path_factory):
    path, frames = clip
    out = tmp_path_factory.mktemp("ref") / "run"
    run = track_video(_pipe(frames, KEYS), path, "red or blue", tracker=ColourTracker(), out=out, key_frames="every:8")
    return out, run


def _files(out):
    """What a resumed run must reproduce: per frame the visible ids, the events and the boxes; per track its span
    and losses. (The tracker restarts from the recorded masks, so mask pixels may differ by a few at the edges.)"""
    frames = []
    for line in (out / "frames.jsonl").read_text().splitlines():
        r = json.loads(line)
        frames.append((r["frame"], r["key_frame"], [(o["track_id"], o["box"]) for o in r["objects"]], r["events"]))
    tracks = [(t["track_id"], t["first_frame"], t["last_frame"], t["frames_present"], t["status"], t["lost_at"])
              for t in json.loads((out / "tracks.json").read_text())["tracks"]]
    return frames, tracks


def _close(a, b, tol=2):
    """Same frames, ids and events; boxes within ``tol`` pixels."""
    (fa, ta), (fb, tb) = a, b
    assert ta == tb
    assert [f[0] for f in fa] == list(range(N)) == [f[0] for f in fb]  # every frame once: none lost or doubled
    for x, y in zip(fa, fb, strict=True):
        assert x[1] == y[1] and x[3] == y[3] and [i for i, _ in x[2]] == [i for i, _ in y[2]], (x, y)
        for (_, bx), (_, by) in zip(x[2], y[2], strict=True):
            assert max(abs(p - q) for p, q in zip(bx, by, strict=True)) <= tol, (x, y)


def test_reference_run_writes_every_file(reference):
    out, run = reference
    assert run.frames_done == N and run.key_frames == KEYS
    manifest = json.loads((out / "track.json").read_text())
    assert manifest["status"] == "complete" and manifest["frames_done"] == N
    assert manifest["settings"]["key_frames"] == "every:8"
    with open_video(out / "overlay.mp4") as overlay:
        assert sum(1 for _ in overlay) == N
    assert [t.track_id for t in run.tracks] == [1, 2]
    assert run.tracks[0].lost_at == [5]


@pytest.mark.parametrize("stop", [3, 11])
def test_interrupted_run_resumes_to_identical_files(clip, reference, tmp_path, stop):
    path, frames = clip
    out = tmp_path / "run"
    _interrupted(path, frames, out, stop)
    assert json.loads((out / "track.json").read_text())["status"] == "cancelled"
    assert len((out / "frames.jsonl").read_text().splitlines()) == stop + 1
    assert not (out / "overlay.mp4").exists()  # never a half video under the final name
    kept = (out / "frames.jsonl").read_bytes()
    later = [k for k in KEYS if k > stop]
    pipe = _pipe(frames, later)
    tracker = ColourTracker()
    run = track_video(pipe, path, "red or blue", tracker=tracker, out=out, key_frames="every:8")
    assert len(pipe.reasoner.calls) == len(later)  # the key frames before the stop are not asked again
    assert tracker.steps == N - stop  # restarted on the last recorded frame, then the rest
    before = (out / "frames.jsonl").read_bytes()
    _close(_files(out), _files(reference[0]))
    assert run.key_frames == KEYS
    with open_video(out / "overlay.mp4") as overlay:
        assert sum(1 for _ in overlay) == N
    assert before.startswith(kept)  # the frames written before the stop are kept as they were


def test_a_torn_last_line_is_dropped_and_redone(clip, reference, tmp_path):
    path, frames = clip
    out = tmp_path / "run"
    _interrupted(path, frames, out, 12)
    with open(out / "frames.jsonl", "a") as f:  # a crash in the middle of writing frame 13
        f.write('{"frame":13,"time_s":1.6,"key_frame":false,"objects":[{"track_id":1,"bo')
    track_video(_pipe(frames, [16]), path, "red or blue", tracker=ColourTracker(), out=out, key_frames="every:8")
    _close(_files(out), _files(reference[0]))


def test_cancelled_call_stops_and_resumes(clip, reference, tmp_path):
    path, frames = clip
    out = tmp_path / "run"
    token = CancelToken()

    def on_frame(fr):
        if fr.index == 6:
            token.cancel("the client cancelled")

    with cancellation(token), pytest.raises(OperationCancelled, match="the client cancelled"):
        track_video(_pipe(frames, KEYS), path, "red or blue", tracker=ColourTracker(), out=out,
                    key_frames="every:8", on_frame=on_frame)
    assert len((out / "frames.jsonl").read_text().splitlines()) == 7
    assert load_video_result(out).frames_done == 7
    track_video(_pipe(frames, [8, 16]), path, "red or blue", tracker=ColourTracker(), out=out, key_frames="every:8")
    _close(_files(out), _files(reference[0]))


def test_other_settings_are_refused_unless_restart(clip, reference, tmp_path):
    path, frames = clip
    out = tmp_path / "run"
    _interrupted(path, frames, out, 2)
    with pytest.raises(SettingsError, match=r"other settings \(query, key_frames\).*restart"):
        track_video(_pipe(frames, KEYS), path, "blue", tracker=ColourTracker(), out=out, key_frames="first")
    run = track_video(_pipe(frames, [0]), path, "blue", tracker=ColourTracker(), out=out, key_frames="first",
                      restart=True)
    assert run.frames_done == N and run.key_frames == [0]
    assert len((out / "frames.jsonl").read_text().splitlines()) == N


def test_a_complete_run_is_not_redone(clip, reference):
    path, frames = clip
    tracker = ColourTracker()
    pipe = _pipe(frames, KEYS)
    run = track_video(pipe, path, "red or blue", tracker=tracker, out=reference[0], key_frames="every:8")
    assert tracker.steps == 0 and pipe.reasoner.calls == []
    assert run.frames_done == N and [t.track_id for t in run.tracks] == [1, 2]
    assert sum(1 for _ in run.frames()) == N


def test_frames_from_an_iterator_cannot_resume(clip, tmp_path):
    _, frames = clip
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        track_video(_pipe(frames, KEYS), (f.image for f in frames), "x", tracker=ColourTracker(), out=out,
                    on_frame=_stop_at(2))
    with pytest.raises(SettingsError, match="iterator cannot be read again"):
        track_video(_pipe(frames, KEYS), (f.image for f in frames), "x", tracker=ColourTracker(), out=out)


def test_out_that_is_a_file_or_a_stray_frames_file(tmp_path):
    (tmp_path / "file").write_text("x")
    frames = [f.image for f in moving_shapes(2)]
    with pytest.raises(SettingsError, match="is a file"):
        track_video(_pipe([], []), iter(frames), "x", tracker=ColourTracker(), out=tmp_path / "file")
    (tmp_path / "stray").mkdir()
    (tmp_path / "stray" / "frames.jsonl").write_text("")
    with pytest.raises(SettingsError, match="without track.json"):
        track_video(_pipe([], []), iter(frames), "x", tracker=ColourTracker(), out=tmp_path / "stray")
