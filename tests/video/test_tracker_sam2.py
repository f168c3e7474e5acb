"""The SAM2 video tracker on a tiny random checkpoint, loaded through the public paths (random weights: shapes,
bounds and memory are checked, not what the masks cover)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scripted import ScriptedReasoner  # noqa: E402

from segzero_tool import SegZeroPipeline  # noqa: E402
from segzero_tool.errors import ModelLoadError, UnknownModelError  # noqa: E402
from segzero_tool.masks import rle_decode  # noqa: E402
from segzero_tool.testing.synthetic_video import moving_shapes, write_clip  # noqa: E402
from segzero_tool.video import TrackingSession, load_tracker, open_video, track_video  # noqa: E402


def _square(h=120, w=160, box=(10, 30, 40, 60)):
    m = np.zeros((h, w), bool)
    m[box[1]:box[3] + 1, box[0]:box[2] + 1] = True
    return m


def test_streaming_steps_with_objects_added_on_the_way(tiny_video_model):
    tracker = load_tracker(str(tiny_video_model), device="cpu", progress=False)
    frames = [f.image for f in moving_shapes(22)]  # more than memory_window + 1 frames
    out = tracker.step(frames[0], new_objects={5: _square()})
    assert list(out) == [5]
    assert out[5].mask.shape == (120, 160) and out[5].mask.dtype == bool and 0.0 <= out[5].score <= 1.0
    for i, frame in enumerate(frames[1:], start=1):
        out = tracker.step(frame)
        if i == 3:
            out = tracker.add({9: _square(box=(100, 80, 140, 110))})
            assert list(out) == [5, 9]
    assert list(out) == [5, 9]
    session = tracker._session
    # memory stays flat: one frame's pixels, and per object at most the window SAM2 reads
    assert len(session.processed_frames) == 1
    assert all(len(o["non_cond_frame_outputs"]) <= tracker.memory_window + 1
               for o in session.output_dict_per_obj.values())
    tracker.reset()
    assert tracker.step(frames[0]) == {}  # no objects: nothing tracked, nothing raised


def test_bad_calls_are_clear(tiny_video_model):
    tracker = load_tracker(str(tiny_video_model), device="cpu", progress=False)
    with pytest.raises(ValueError, match="call step"):
        tracker.add({1: _square()})
    tracker.step(np.zeros((120, 160, 3), np.uint8))
    with pytest.raises(ValueError, match=r"\(120, 160\) bool"):
        tracker.add({1: np.zeros((10, 10), bool)})
    with pytest.raises(ValueError, match="the run's frames are 160x120"):
        tracker.step(np.zeros((121, 160, 3), np.uint8))


def test_an_image_only_checkpoint_is_refused(tmp_path):
    from transformers import Sam2Model

    from segzero_tool.testing.tiny_sam2 import sam2_config, sam2_video_processor

    Sam2Model(sam2_config("tiny-video-test")).save_pretrained(tmp_path / "image-only")
    sam2_video_processor(256).save_pretrained(tmp_path / "image-only")
    with pytest.raises(ModelLoadError, match="no video memory weights"):
        load_tracker(str(tmp_path / "image-only"), device="cpu", progress=False)
    with pytest.raises(ModelLoadError, match="SAM2 video"):
        load_tracker(str(tmp_path), device="cpu", progress=False)  # no checkpoint in the folder
    with pytest.raises(UnknownModelError):
        load_tracker("not a model", device="cpu")
    with pytest.raises(UnknownModelError, match="backend"):
        load_tracker(str(tmp_path), backend="onnx")


def test_track_video_end_to_end_on_the_segmenters_checkpoint(tiny_video_model, tmp_path):
    frames = list(moving_shapes(12))
    clip = write_clip(tmp_path / "shapes.webm", frames, fps=6)
    # the pipeline's segmenter is the same folder: the tracker is loaded from it
    answer = '<think>x</think><answer>[{"bbox_2d":[52,210,210,420],"point_2d":[131,315]}]</answer>'
    pipe = SegZeroPipeline.from_pretrained(ScriptedReasoner([answer]), str(tiny_video_model), device="cpu")
    run = track_video(pipe, clip, "the red rectangle", out=tmp_path / "run")
    assert run.frames_done == 12 and run.key_frames == [0]
    lines = [json.loads(line) for line in (tmp_path / "run" / "frames.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in lines] == list(range(12))
    assert lines[0]["events"] and lines[0]["events"][0]["kind"] == "new"
    for r in lines:
        for obj in r["objects"]:
            assert rle_decode(obj["mask"]).shape == (120, 160) and 0 <= obj["score"] <= 1
    manifest = json.loads((tmp_path / "run" / "track.json").read_text())
    assert manifest["settings"]["tracker"] == str(tiny_video_model) and manifest["status"] == "complete"
    with open_video(tmp_path / "run" / "overlay.mp4") as overlay:
        assert sum(1 for _ in overlay) == 12 and overlay.info.width == 160


def test_session_default_tracker_is_the_segmenters(tiny_video_model):
    pipe = SegZeroPipeline.from_pretrained(ScriptedReasoner(["[]"]), str(tiny_video_model), device="cpu")
    with TrackingSession(pipe, "anything") as session:
        assert session.tracker.model_id == str(tiny_video_model)
        result = session.push(np.zeros((64, 64, 3), np.uint8))
    assert result.key_frame and result.track_ids == ()


def test_sam3_tracker_video_checkpoint_is_picked_by_its_config(tmp_path):
    from segzero_tool.testing.tiny_sam3 import build_tiny_sam3_tracker_video

    folder = build_tiny_sam3_tracker_video(tmp_path / "sam3-video")
    tracker = load_tracker(str(folder), device="cpu", progress=False)
    assert type(tracker.model).__name__ == "Sam3TrackerVideoModel"
    frames = [f.image for f in moving_shapes(3)]
    out = tracker.step(frames[0], new_objects={1: _square()})
    for frame in frames[1:]:
        out = tracker.step(frame)
    assert list(out) == [1] and out[1].mask.shape == (120, 160)
