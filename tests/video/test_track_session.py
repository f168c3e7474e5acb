"""Key-frame reasoning + tracking semantics, exact: a scripted reasoner answers the ground truth on key frames and a
colour tracker follows the synthetic shapes exactly (both through the public interfaces)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from scripted import BoxSegmenter, ScriptedReasoner  # noqa: E402
from video_doubles import ColourTracker, key_frame_answers  # noqa: E402
from video_support import box_answer as answer  # noqa: E402

from segzero_tool import SegZeroPipeline  # noqa: E402
from segzero_tool.errors import ImageLoadError, NoReasonerError, QueryError  # noqa: E402
from segzero_tool.settings import SettingsError  # noqa: E402
from segzero_tool.testing.synthetic_video import moving_shapes  # noqa: E402
from segzero_tool.video import KeyFrames, TrackingSession, track_video  # noqa: E402
from segzero_tool.video.session import match_detections  # noqa: E402


def _pipe(answers):
    return SegZeroPipeline(ScriptedReasoner(answers), BoxSegmenter())


def _iou_box(a, b):
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
    inter = ix * iy
    area = lambda r: (r[2] - r[0] + 1) * (r[3] - r[1] + 1)  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def test_first_key_frame_one_track_follows_the_shape_exactly():
    frames = list(moving_shapes(20))
    pipe = _pipe(key_frame_answers(frames, [0], [1]))
    run = track_video(pipe, (f.image for f in frames), "the red rectangle", tracker=ColourTracker())
    assert run.frames_done == 20 and run.key_frames == [0]
    assert [t.track_id for t in run.tracks] == [1]
    assert run.tracks[0].frames_present == 20 and run.tracks[0].status == "active"
    for f, fr in zip(frames, run.frames(), strict=True):
        assert fr.track_ids == (1,)
        assert fr.result.objects[0].box == f.boxes[1]
        assert np.array_equal(fr.result.objects[0].mask, f.masks[1])
    assert pipe.reasoner.calls and len(pipe.reasoner.calls) == 1  # reasoned once, on frame 0


def test_occluded_track_is_lost_then_found_again_with_the_same_id():
    frames = list(moving_shapes(24, occlude_from=8, occlude_to=14))
    pipe = _pipe(key_frame_answers(frames, [0], [1]))
    seen = []
    run = track_video(pipe, (f.image for f in frames), "the red rectangle", tracker=ColourTracker(),
                      on_frame=seen.append)
    events = {fr.index: [(e.kind, e.track_id) for e in fr.events] for fr in seen if fr.events}
    assert events == {0: [("new", 1)], 8: [("lost", 1)], 14: [("found_again", 1)]}
    (track,) = run.tracks
    assert track.lost_at == [8] and track.frames_present == 24 - 6 and track.status == "active"
    assert all(fr.track_ids == () for fr in seen[8:14])


def test_later_key_frame_matches_known_tracks_and_starts_new_ones():
    frames = list(moving_shapes(21))
    # frame 0: only the rectangle; frames 10 and 20: rectangle and circle
    answers = [answer([frames[0].boxes[1]], 160, 120)] + [
        answer([frames[k].boxes[1], frames[k].boxes[2]], 160, 120) for k in (10, 20)]
    seen = []
    run = track_video(_pipe(answers), (f.image for f in frames), "red or blue", tracker=ColourTracker(),
                      key_frames="every:10", on_frame=seen.append)
    assert run.key_frames == [0, 10, 20]
    assert [(e.kind, e.track_id) for e in seen[10].events] == [("new", 2), ("matched", 1)]
    assert [(e.kind, e.track_id) for e in seen[20].events] == [("matched", 1), ("matched", 2)]
    assert [(t.track_id, t.first_frame, t.last_frame) for t in run.tracks] == [(1, 0, 20), (2, 10, 20)]
    assert seen[15].object(2).box == frames[15].boxes[2]


def _static_clip(n, hidden):
    """A still white square on grey, hidden on frames in ``hidden``."""
    for i in range(n):
        img = np.full((60, 80, 3), 90, np.uint8)
        if i not in hidden:
            img[20:40, 30:50] = (250, 250, 250)
        yield img


def test_a_key_frame_detection_brings_a_lost_track_back_by_its_last_mask():
    tracker = ColourTracker(forget_lost=True)  # once lost, only a re-anchor brings it back
    box = (30, 20, 49, 39)
    answers = [answer([box], 80, 60), answer([], 80, 60), answer([box], 80, 60)]  # key frames 0, 4 (hidden), 8
    seen = []
    track_video(_pipe(answers), _static_clip(12, hidden={4, 5}), "the square", tracker=tracker,
                key_frames="every:4", on_frame=seen.append)
    assert [(e.kind, e.track_id) for e in seen[4].events] == [("lost", 1)]   # key frame 4 finds nothing
    assert [(e.kind, e.track_id) for e in seen[8].events] == [("found_again", 1)]  # re-anchored, same id
    assert tracker.adds[-1].keys() == {1}
    assert all(fr.track_ids == () for fr in seen[4:8]) and seen[8].track_ids == (1,)


def test_a_query_that_finds_nothing_is_a_clean_empty_result(tmp_path):
    pipe = _pipe(["<think>nothing like that</think><answer>[]</answer>"])
    run = track_video(pipe, (f.image for f in moving_shapes(6)), "a giraffe", tracker=ColourTracker(),
                      out=tmp_path / "run")
    assert run.tracks == [] and run.frames_done == 6 and run.key_frames == [0]
    assert run.summary().startswith("nothing found for 'a giraffe'")
    lines = (tmp_path / "run" / "frames.jsonl").read_text().splitlines()
    assert len(lines) == 6 and all('"objects":[]' in line for line in lines)


def test_session_push_forced_key_requeries_on_that_frame():
    frames = list(moving_shapes(6))
    pipe = _pipe(key_frame_answers(frames, [0, 3], [1]))
    with TrackingSession(pipe, "the red rectangle", tracker=ColourTracker()) as session:
        results = [session.push(f.image, key=(True if i == 3 else None)) for i, f in enumerate(frames)]
    assert [r.key_frame for r in results] == [True, False, False, True, False, False]
    assert results[3].result.reasoning == "found 1" and results[4].result.reasoning == ""
    assert session.summaries()[0].frames_present == 6 and session.lost == set()


def test_a_forced_first_key_frame_still_counts_for_the_policy():
    frames = list(moving_shapes(3))
    pipe = _pipe(key_frame_answers(frames, [0], [1]))
    with TrackingSession(pipe, "the red rectangle", tracker=ColourTracker()) as session:
        results = [session.push(frames[0].image, key=True), session.push(frames[1].image)]
    assert [r.key_frame for r in results] == [True, False] and len(pipe.reasoner.calls) == 1


def test_match_detections_is_one_to_one_best_first():
    a = np.zeros((10, 10), bool)
    a[0:5, 0:5] = True
    b = np.zeros((10, 10), bool)
    b[0:5, 0:6] = True
    c = np.zeros((10, 10), bool)
    c[6:9, 6:9] = True
    matched, rest = match_detections([b, a, c], {7: a}, 0.5)
    assert matched == {1: 7} and rest == [0, 2]


@pytest.mark.parametrize("spec,keys", [("first", [0]), ("every:4", [0, 4, 8]), ("every:0.5s", [0, 5])])
def test_key_frame_specs(spec, keys):
    policy = KeyFrames.parse(spec)
    assert [i for i in range(10) if policy.is_key(i, i / 10)] == keys
    assert str(KeyFrames.parse(str(policy))) == str(policy)


def test_bad_arguments_are_typed_errors_before_any_frame():
    pipe = _pipe(["[]"])
    frames = (f.image for f in moving_shapes(3))
    with pytest.raises(QueryError):
        track_video(pipe, frames, "   ", tracker=ColourTracker())
    with pytest.raises(SettingsError, match="every:N"):
        track_video(pipe, frames, "x", tracker=ColourTracker(), key_frames="sometimes")
    with pytest.raises(SettingsError, match="max_frames"):
        track_video(pipe, frames, "x", tracker=ColourTracker(), max_frames=0)
    with pytest.raises(SettingsError, match="match_iou"):
        TrackingSession(pipe, "x", tracker=ColourTracker(), match_iou=float("nan"))
    with pytest.raises(NoReasonerError):
        TrackingSession(SegZeroPipeline(None, BoxSegmenter()), "x", tracker=ColourTracker())


def test_seconds_on_a_folder_without_fps_are_refused(tmp_path):
    from segzero_tool.testing.synthetic_video import write_frame_folder

    folder = write_frame_folder(tmp_path / "frames", moving_shapes(3))
    with pytest.raises(SettingsError, match=r"every:2s count seconds.*--fps"):
        track_video(_pipe(["[]"]), folder, "x", tracker=ColourTracker(), key_frames="every:2s")
    run = track_video(_pipe(["[]"]), folder, "x", tracker=ColourTracker(), key_frames="every:0.1s", fps=10)
    assert run.key_frames == [0, 1, 2]


def test_frames_of_another_size_mid_stream_are_refused():
    def frames():
        yield np.zeros((40, 60, 3), np.uint8)
        yield np.zeros((40, 61, 3), np.uint8)

    with pytest.raises(ImageLoadError, match="61x40"):
        track_video(_pipe(["[]"]), frames(), "x", tracker=ColourTracker())


def test_frames_are_pulled_one_at_a_time_from_a_live_source():
    pulled = []

    def camera():
        for i, f in enumerate(moving_shapes(12)):
            pulled.append(i)
            yield f.image

    done = []

    def on_frame(fr):
        done.append(fr.index)
        assert len(pulled) <= len(done) + 1  # never reads ahead of the frame being processed

    frames0 = next(moving_shapes(1))
    run = track_video(_pipe([answer([frames0.boxes[1]], 160, 120)]), camera(), "the red rectangle",
                      tracker=ColourTracker(), on_frame=on_frame)
    assert run.frames_done == 12 and done == list(range(12))


def test_large_frames_with_many_objects(tmp_path):
    """3000x2000 frames with 50 objects: every object is tracked, boxes exact, the records stay compact."""
    h, w = 2000, 3000
    rng = np.random.default_rng(0)
    boxes = []
    img = np.full((h, w, 3), 128, np.uint8)
    colours = set()
    for k in range(50):
        r, c = divmod(k, 10)
        x1, y1 = 40 + c * 295, 40 + r * 390
        box = (x1, y1, x1 + 199, y1 + 299)
        while True:
            colour = tuple(int(v) for v in rng.integers(0, 4, 3) * 70)
            if colour not in colours and colour != (140, 140, 140) and max(abs(v - 128) for v in colour) > 40:
                colours.add(colour)
                break
        img[box[1]:box[3] + 1, box[0]:box[2] + 1] = colour
        boxes.append(box)
    frames = [img, np.roll(img, 7, axis=1)]
    run = track_video(_pipe([answer(boxes, w, h)]), iter(frames), "every box", tracker=ColourTracker(tolerance=10),
                      out=tmp_path / "big", max_objects=50, overlay=True)
    assert len(run.tracks) == 50 and all(t.frames_present == 2 for t in run.tracks)
    last = run.frame(1)
    assert sorted(o.box for o in last.result.objects) == sorted((b[0] + 7, b[1], b[2] + 7, b[3]) for b in boxes)
    assert (tmp_path / "big" / "frames.jsonl").stat().st_size < 200_000
    assert _iou_box(boxes[0], last.object(1).box) > 0.9


def test_variable_frame_rate_key_frames_follow_the_container_times(tmp_path):
    from segzero_tool.testing.synthetic_video import write_vfr_clip

    frames = list(moving_shapes(7))
    times = [0.0, 0.1, 0.15, 0.5, 1.2, 1.3, 2.6]
    clip = write_vfr_clip(tmp_path / "vfr.mp4", frames, times)
    pipe = _pipe(key_frame_answers(frames, [0, 4, 6], [1]))
    seen = []
    run = track_video(pipe, clip, "the red rectangle", tracker=ColourTracker(), key_frames="every:1s",
                      on_frame=seen.append)
    assert run.key_frames == [0, 4, 6]
    assert [round(fr.time_s, 2) for fr in seen] == times


def test_bad_videos_through_track_video(tmp_path):
    from segzero_tool.errors import ImageTooLargeError, VideoLoadError
    from segzero_tool.testing.synthetic_video import write_clip

    pipe = _pipe(["[]"])
    with pytest.raises(VideoLoadError, match="no frames"):
        track_video(pipe, iter([]), "x", tracker=ColourTracker(), out=tmp_path / "empty")
    (tmp_path / "junk.mp4").write_bytes(b"\x00" * 5000)
    with pytest.raises(VideoLoadError, match="junk.mp4"):
        track_video(pipe, tmp_path / "junk.mp4", "x", tracker=ColourTracker())
    clip = write_clip(tmp_path / "clip.mp4", moving_shapes(20), fps=10)
    with pytest.raises(ImageTooLargeError):
        track_video(pipe, clip, "x", tracker=ColourTracker(), max_pixels=160 * 120 - 1)
    data = clip.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: int(len(data) * 0.6)])
    run = track_video(pipe, tmp_path / "cut.mp4", "x", tracker=ColourTracker(), out=tmp_path / "cut")
    assert 0 < run.frames_done < 20 and run.warnings and "truncated" in run.warnings[0]
    assert "warning: " in run.summary()
    manifest = (tmp_path / "cut" / "track.json").read_text()
    assert '"status": "complete"' in manifest and "truncated" in manifest
