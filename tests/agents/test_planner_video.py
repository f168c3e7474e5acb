"""The robotics planner with a frame source: it perceives on the newest frame, tracks its targets between
decisions (``observe``, after the human's approval), re-queries the reasoner on the frame after a target is
lost, reports each target's latest geometry in ``targets``, and keeps its checkpoints JSON (the live source
and the tracking sessions stay outside the state), also across a restart."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("langgraph")

from langgraph.checkpoint.memory import InMemorySaver  # noqa: E402
from langgraph.types import Command  # noqa: E402
from scripted import BoxSegmenter, ScriptedReasoner  # noqa: E402
from video_support import box_answer  # noqa: E402

from segzero_tool import SegZeroPipeline  # noqa: E402
from segzero_tool.agents.planner import build_planner_graph  # noqa: E402
from segzero_tool.errors import VideoLoadError  # noqa: E402
from segzero_tool.testing.synthetic_video import moving_shapes, write_clip, write_frame_folder  # noqa: E402
from segzero_tool.video.tracker import TrackedMask, VideoTracker  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
RED, BLUE = 1, 2  # moving_shapes' red rectangle (hidden behind the occluder on frames [8, 11)), blue circle
N, HIDE_FROM, HIDE_TO = 20, 8, 11
TASK = "pick up the red rectangle"
NOTHING = "<think>I cannot see it.</think><answer>[]</answer>"


def clip(n: int = N, occluded: bool = True) -> list:
    return list(moving_shapes(n, occlude_from=HIDE_FROM if occluded else None, occlude_to=HIDE_TO if occluded else None))


def answer(frame, oid: int = RED) -> str:
    """The reasoner's answer naming object ``oid``'s true box on ``frame``."""
    h, w = frame.image.shape[:2]
    return box_answer([frame.boxes[oid]], w, h, think="the red one")


class ColourTracker(VideoTracker):
    """A real (if simple) tracker: each object is the connected patch of its prompt's median colour nearest to
    where it was last seen; an object not found near there is forgotten until a new prompt re-anchors it (so
    only a re-query brings a lost object back)."""

    model_id = "colour"

    def __init__(self, tol: int = 30, reach: float = 24.0) -> None:
        self.tol, self.reach = tol, reach
        self.objects: dict[int, tuple[np.ndarray, tuple[float, float]]] = {}
        self.current: dict[int, TrackedMask] = {}
        self.image: np.ndarray | None = None

    def _find(self, colour: np.ndarray, near: tuple[float, float]) -> np.ndarray | None:
        close = (np.abs(self.image.astype(np.int16) - colour).max(axis=2) <= self.tol).astype(np.uint8)
        n, labels, stats, centres = cv2.connectedComponentsWithStats(close, connectivity=8)
        best = [(float(np.hypot(*(centres[k] - near))), k) for k in range(1, n) if stats[k, cv2.CC_STAT_AREA] >= 4]
        best = [b for b in best if b[0] <= self.reach]
        return labels == min(best)[1] if best else None

    def step(self, image, *, new_objects=None):
        self.image = image
        self.current = {}
        for oid, (colour, near) in list(self.objects.items()):
            mask = self._find(colour, near)
            if mask is None:
                del self.objects[oid]
                self.current[oid] = TrackedMask(np.zeros(image.shape[:2], bool), 0.0)
            else:
                ys, xs = np.nonzero(mask)
                self.objects[oid] = (colour, (float(xs.mean()), float(ys.mean())))
                self.current[oid] = TrackedMask(mask, 1.0)
        return self.add(new_objects) if new_objects else dict(self.current)

    def add(self, new_objects):
        for oid, prompt in new_objects.items():
            ys, xs = np.nonzero(prompt)
            colour = np.median(self.image[prompt].astype(np.int16), axis=0)
            self.objects[oid] = (colour, (float(xs.mean()), float(ys.mean())))
            mask = self._find(colour, self.objects[oid][1])
            self.current[oid] = TrackedMask(mask if mask is not None else prompt, 1.0)
        return dict(self.current)

    def reset(self):
        self.objects, self.current = {}, {}


def pipeline(answers: list[str]) -> SegZeroPipeline:
    return SegZeroPipeline(ScriptedReasoner(answers), BoxSegmenter())


def thread(name: str, **configurable) -> dict:
    return {"configurable": {"thread_id": name, **configurable}}


def box_of(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]


def test_a_live_camera_is_tracked_and_a_lost_target_requeried_on_the_next_frame():
    frames = clip()
    # key frames: 0 (the decision), 9 (the frame after the loss: still hidden), 11 (requery_every=2: visible)
    pipe = pipeline([answer(frames[0]), NOTHING, answer(frames[11])])
    seen_by_executor = []
    graph = build_planner_graph(pipe, checkpointer=InMemorySaver(), tracker=ColourTracker, observe_frames=None,
                                requery_every=2,
                                executor=lambda step, state: seen_by_executor.append(state["targets"]) or "done")
    camera = (f.image for f in frames)  # a live source: handed over in the config, never checkpointed
    cfg = thread("camera", frames=camera)
    out = graph.invoke({"task": TASK}, cfg)
    assert out["__interrupt__"][0].value["type"] == "approval"
    state = graph.get_state(cfg)
    json.dumps(state.values)  # the checkpointed state is JSON: no frames, masks or sessions in it
    first = state.values["targets"]["target"]
    assert (first["status"], first["frame"], first["track_id"]) == ("tracked", 0, 1)
    assert first["box"] == box_of(frames[0].masks[RED])
    assert state.values["video"]["frame"] == 0 and state.values["video"]["kind"] == "iterator"
    gx, gy = state.values["plan"][0]["grasp_point"]
    assert frames[0].masks[RED][gy, gx]

    # approved: observe tracks frames 1..19 before executing, re-plans on the newest frame
    out = graph.invoke(Command(resume={"approved": True}), thread("camera"))
    assert out["status"] == "executed" and out["results"][0]["outcome"] == "done"
    t = out["targets"]["target"]
    assert t["lost_at"] == [HIDE_FROM]
    assert t["requeried_at"] == [HIDE_FROM + 1, HIDE_FROM + 3]  # the frame after the loss, then every 2 frames
    assert t["found_again_at"] == [HIDE_TO] and t["status"] == "tracked" and t["track_id"] == 2
    assert len(pipe.reasoner.calls) == 3  # frame 0, 9 and 11: no other frame asked the reasoner
    assert (t["frame"], t["current_frame"], t["lost_since"]) == (N - 1, N - 1, None)
    last = frames[N - 1].masks[RED]
    assert t["box"] == box_of(last) != first["box"]  # the geometry followed the moving rectangle
    assert t["area"] == int(last.sum()) and last[t["grasp_point"][1], t["grasp_point"][0]]
    assert abs(t["centroid"][0] - np.nonzero(last)[1].mean()) < 0.01
    gx, gy = out["plan"][0]["grasp_point"]  # the executed plan acts where the rectangle is now
    assert last[gy, gx] and seen_by_executor[0]["target"]["frame"] == N - 1
    assert out["video"]["frame"] == N - 1 and out["video"]["ended"] is True
    log = "\n".join(out["log"])
    assert "track 1 lost on frame 8" in log and "re-queried 'the red rectangle' on frame 9: not found" in log
    assert "found again on frame 11 (track 2, after a re-query)" in log
    json.dumps(graph.get_state(thread("camera")).values)


def test_a_loss_at_the_decision_goes_back_to_resolve_and_a_new_approval():
    frames = clip()
    # observe 9 frames: the target is lost on frame 8, re-queried in vain on 9, the last one: no plan can act on it
    pipe = pipeline([answer(frames[0]), NOTHING, NOTHING, answer(frames[11])])
    graph = build_planner_graph(pipe, checkpointer=InMemorySaver(), tracker=ColourTracker, observe_frames=9)
    cfg = thread("hidden", frames=iter([f.image for f in frames]))
    graph.invoke({"task": TASK}, cfg)
    out = graph.invoke(Command(resume={"approved": True}), cfg)
    # observe ends on frame 9 with the target lost -> "found" fails -> a refined query on the next frame (10: still
    # hidden), another one on frame 11 (visible again), a fresh plan and a new approval question
    assert out["__interrupt__"][0].value["type"] == "approval"
    values = graph.get_state(cfg).values
    assert values["attempts"] == {"target": 2} and values["video"]["frame"] == 11 and len(pipe.reasoner.calls) == 4
    t = values["targets"]["target"]
    assert t["frame"] == 11 and t["box"] == box_of(frames[11].masks[RED])
    assert any("observe target: track 1 lost on frame 8" in line for line in values["log"])


def test_a_place_task_follows_target_and_reference():
    frames = clip(8, occluded=False)
    pipe = pipeline([answer(frames[0], RED), answer(frames[0], BLUE)])
    graph = build_planner_graph(pipe, checkpointer=InMemorySaver(), tracker=ColourTracker, observe_frames=5)
    cfg = thread("place", frames=iter([f.image for f in frames]))
    graph.invoke({"task": "put the red rectangle next to the blue circle"}, cfg)
    out = graph.invoke(Command(resume={"approved": True}), cfg)
    assert out["status"] == "executed" and len(pipe.reasoner.calls) == 2  # one key frame per role, no re-query
    target, reference = out["targets"]["target"], out["targets"]["reference"]
    assert (target["frame"], reference["frame"]) == (5, 5)
    assert target["box"] == box_of(frames[5].masks[RED]) and reference["box"] == box_of(frames[5].masks[BLUE])
    assert reference["query"] == "the blue circle" and reference["lost_at"] == []
    pick, place = out["plan"]
    px, py = place["point"]
    assert not frames[5].masks[BLUE][py, px] and place["reference"]["box"] == reference["box"]


def test_a_frame_folder_resumes_in_a_new_process(tmp_path):
    frames = clip(12, occluded=False)
    folder = write_frame_folder(tmp_path / "frames", frames)
    saver = InMemorySaver()
    graph = build_planner_graph(pipeline([answer(frames[0])]), checkpointer=saver, tracker=ColourTracker,
                                observe_frames=None)
    cfg = thread("folder")
    graph.invoke({"task": TASK, "frames": str(folder)}, cfg)  # a path: JSON, so it may sit in the input
    assert graph.get_state(cfg).values["video"]["kind"] == "folder"

    # another process: a new graph (no live session) over the same checkpoints re-opens the folder after frame 0
    pipe = pipeline([answer(frames[1])])
    again = build_planner_graph(pipe, checkpointer=saver, tracker=ColourTracker, observe_frames=None)
    out = again.invoke(Command(resume={"approved": True}), cfg)
    assert out["status"] == "executed" and len(pipe.reasoner.calls) == 1
    t = out["targets"]["target"]
    assert t["requeried_at"] == [1] and t["frame"] == 11 and t["box"] == box_of(frames[11].masks[RED])
    assert any(line.startswith("resume target: the frame source was opened again; re-queried 'the red rectangle' "
                               "on frame 1: following track") for line in out["log"])


def test_a_live_source_is_passed_again_after_a_restart():
    frames = clip(10, occluded=False)
    saver = InMemorySaver()
    graph = build_planner_graph(pipeline([answer(frames[0])]), checkpointer=saver, tracker=ColourTracker)
    graph.invoke({"task": TASK}, thread("restart", frames=iter([f.image for f in frames])))
    again = build_planner_graph(pipeline([answer(frames[5])]), checkpointer=saver, tracker=ColourTracker)
    with pytest.raises(ValueError, match=r"not open in this process; pass it again.*'frames'"):
        again.invoke(Command(resume={"approved": True}), thread("restart"))
    assert again.get_state(thread("restart")).next == ("observe",)
    # the camera, passed again, goes on where it is now (frame 5 of the clip; its own count starts at 0)
    out = again.invoke(None, thread("restart", frames=iter([f.image for f in frames[5:]])))
    t = out["targets"]["target"]
    assert out["status"] == "executed" and t["box"] == box_of(frames[6].masks[RED])


def test_frames_input_errors():
    graph = build_planner_graph(pipeline([NOTHING]), tracker=ColourTracker)
    image = np.zeros((120, 160, 3), np.uint8)
    with pytest.raises(ValueError, match="either an 'image' or 'frames'"):
        graph.invoke({"task": TASK, "image": image, "frames": "clip.mp4"})
    with pytest.raises(ValueError, match="or 'frames'"):
        graph.invoke({"task": TASK})
    with pytest.raises(VideoLoadError, match="no such file"):
        graph.invoke({"task": TASK, "frames": "no/such/clip.mp4"})
    with pytest.raises(ValueError, match="observe_frames"):
        build_planner_graph(pipeline([NOTHING]), observe_frames=-1)
    with pytest.raises(TypeError, match="a callable returning a new VideoTracker"):
        build_planner_graph(pipeline([NOTHING]), tracker=ColourTracker())  # one instance cannot serve two roles
    plain = build_planner_graph(lambda image, query: None)
    with pytest.raises(TypeError, match="a frame source needs a SegZeroPipeline"):
        plain.invoke({"task": TASK, "frames": iter([image])})


def test_the_tiny_sam2_video_model_tracks_an_mp4(tmp_path):
    """The default tracker (the video model of the pipeline's segmenter checkpoint) on an MP4 file, random tiny
    weights: whatever the masks, the run completes and reports JSON."""
    pytest.importorskip("av")
    from segzero_tool.testing.tiny_sam2 import build_tiny_sam2_video

    frames = clip(6, occluded=False)
    video = write_clip(tmp_path / "shapes.mp4", frames)
    model = build_tiny_sam2_video(tmp_path / "sam2-video")
    pipe = SegZeroPipeline.from_pretrained(ScriptedReasoner([answer(frames[0])]), str(model), device="cpu")
    graph = build_planner_graph(pipe, checkpointer=InMemorySaver(), observe_frames=3, max_attempts=0,
                                requery_every=1)
    cfg = thread("tiny")
    out = graph.invoke({"task": TASK, "frames": str(video)}, cfg)
    values = graph.get_state(cfg).values
    json.dumps(values)
    assert values["video"]["kind"] == "file" and values["video"]["width"] == 160
    assert values["video"]["frame"] == 0 and values["objects"]["target"]["frame"] == 0
    if out.get("__interrupt__") and out["__interrupt__"][0].value["type"] == "approval":
        assert values["targets"]["target"]["frame"] == 0
        graph.invoke(Command(resume={"approved": True}), cfg)  # observe: frames 1 to 3, then a plan or a question
        values = graph.get_state(cfg).values
        assert values["video"]["frame"] == 3 and values["targets"]["target"]["current_frame"] == 3
        assert values["status"] in ("executed", "needs_input")
        json.dumps(values)


# --- the README's subsection, run as written --------------------------------------------------------------


def _readme_section(title: str) -> str | None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    if title + "\n" not in readme:
        return None
    start = readme.index(title + "\n")
    ends = [i for i in (readme.find("\n## ", start), readme.find("\n### ", start + len(title))) if i > 0]
    return readme[start:min(ends)]


def test_readme_planner_with_frames_runs_as_written(tmp_path, monkeypatch):
    section = _readme_section("### The planner on a video or a live camera")
    if section is None:
        pytest.skip("the README has no planner-with-frames subsection yet")
    pytest.importorskip("av")
    code = re.findall(r"(?ms)^```python\n(.*?)^```", section)[0]
    frames = clip()
    write_clip(tmp_path / "table.mp4", frames)  # the README's video, in its working folder
    monkeypatch.chdir(tmp_path)
    pipe = pipeline([answer(frames[0]), NOTHING, answer(frames[11])])
    monkeypatch.setattr(SegZeroPipeline, "from_pretrained", classmethod(lambda cls, *a, **k: pipe))
    import segzero_tool.agents.planner.graph as graph_module

    real = graph_module.build_planner_graph
    monkeypatch.setattr("segzero_tool.agents.build_planner_graph",
                        lambda *a, **k: real(*a, **{**k, "tracker": ColourTracker, "requery_every": 2}))
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - the README's own example
    t = scope["out"]["targets"]["target"]
    assert t["lost_at"] == [HIDE_FROM] and t["requeried_at"][0] == HIDE_FROM + 1


def test_langgraph_dev_planner_takes_a_video_path(tmp_path, monkeypatch):
    """agents/graphs.py (what `langgraph dev` serves) with a server-side video path as `frames`: the lazy pipeline
    loads on the first frame, the default tracker comes from its segmenter, the plan follows the target."""
    pytest.importorskip("av")
    from segzero_tool.agents import graphs

    frames = clip(occluded=False)
    write_clip(tmp_path / "table.mp4", frames)
    pipe = pipeline([answer(frames[0])])
    monkeypatch.setattr(graphs, "_pipeline_from_env", lambda: pipe)
    monkeypatch.setattr("segzero_tool.video.session.load_tracker", lambda *a, **k: ColourTracker())
    graphs.shared_pipeline.cache_clear()
    graphs._planner_graph.cache_clear()
    try:
        graph = graphs.robot_planner({"configurable": {}})
        graph.checkpointer = InMemorySaver()  # the server's own checkpointer, under `langgraph dev`
        cfg = thread("dev-1")
        out = graph.invoke({"task": TASK, "frames": str(tmp_path / "table.mp4")}, cfg)
        assert out["targets"]["target"]["frame"] == 0 and out["video"]["kind"] == "file"
        out = graph.invoke(Command(resume={"approved": True}), cfg)
    finally:
        graphs.shared_pipeline.cache_clear()
        graphs._planner_graph.cache_clear()
    target = out["targets"]["target"]
    assert out["status"] == "executed" and target["status"] == "tracked" and target["frame"] == 1
    assert max(abs(a - b) for a, b in zip(target["box"], frames[1].boxes[RED], strict=True)) <= 1  # H.264 edges
