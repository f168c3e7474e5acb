"""The MCP tool ``track_by_reasoning`` (issue #15) through a real MCP client (in memory) and a real
``segzero-mcp`` stdio subprocess: a scripted reasoner boxes the red rectangle on the first frame of a
synthetic clip, the tiny random SAM2 video model (one folder: the image segmenter and the tracker) follows it;
progress per frame, cancellation that stops the work within a frame or two (and the server keeps serving),
per-frame resources read from the run's frames.jsonl, bad input as tool errors, nothing found as an empty
result, and the run store's bounds."""

from __future__ import annotations

import base64
import http.server
import io
import json
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

pytest.importorskip("av")

from video_support import CountingTracker, box_answer, write_clip_set  # noqa: E402

from segzero_tool.masks import rle_decode  # noqa: E402
from segzero_tool.video.tracker import VideoTracker  # noqa: E402

pytestmark = pytest.mark.anyio

TRACK = "track_by_reasoning"
NOTHING = "<think>Nothing like that here.</think><answer>[]</answer>"


def text_of(result: dict) -> str:
    return "\n".join(c["text"] for c in result["content"] if c["type"] == "text")


@pytest.fixture(scope="module")
def vk(tmp_path_factory):
    """The tiny SAM2 video folder, clips in an allowed root, and the scripted answer for clip frame 0."""
    from segzero_tool.testing.synthetic_video import moving_shapes, write_clip
    from segzero_tool.testing.tiny_sam2 import build_tiny_sam2_video

    root = tmp_path_factory.mktemp("track-tool")
    frames = list(moving_shapes(40))
    clips = write_clip_set(root, frames, clip_frames=8, folder_frames=4)
    write_clip(root / "outside.mp4", frames[:2], fps=10)
    return SimpleNamespace(root=root, clips=clips, model=build_tiny_sam2_video(root / "sam2-video", seed=0),
                           answer=box_answer([frames[0].boxes[1]], 160, 120, think="The red rectangle is at the top."))


def make_server(vk: Any, answer: str | None = None, load_tracker: Any = None, **kw: Any) -> Any:
    from scripted import ScriptedReasoner

    from segzero_tool.mcp_server import ServerSettings, create_server
    from segzero_tool.mcp_server.service import SegZeroService
    from segzero_tool.mcp_server.track_tool import VideoTools
    from segzero_tool.pipeline import SegZeroPipeline
    from segzero_tool.settings import PipelineSettings

    kw.setdefault("roots", (vk.clips,))
    settings = ServerSettings(pipeline=PipelineSettings(device="cpu"), **kw)
    pipe = SegZeroPipeline.from_pretrained(ScriptedReasoner(answer or vk.answer), str(vk.model), device="cpu")
    svc = SegZeroService(settings, pipe)
    if load_tracker is not None:
        svc.video = VideoTools(settings, load_tracker=load_tracker)
    return create_server(settings, service=svc)


def real_tracker(vk: Any) -> VideoTracker:
    from segzero_tool.video.tracker import load_tracker

    return load_tracker(str(vk.model), device="cpu", progress=False)


# --- listing, settings ----------------------------------------------------------------------------------


async def test_listed_with_a_reasoner_and_pyav(kit, vk, monkeypatch):
    from segzero_tool.errors import MissingDependencyError
    from segzero_tool.mcp_server import ServerSettings, create_server, track_tool
    from segzero_tool.pipeline import SegZeroPipeline

    server = create_server(ServerSettings(roots=(vk.clips,)), pipeline=SegZeroPipeline(
        kit.ScriptedReasoner(kit.ANSWER), kit.BoxSegmenter()))
    async with kit.connect_memory(server) as client:
        tools = {t["name"]: t for t in await client.list_tools()}
        templates = [t["uriTemplate"] for t in await client.list_resource_templates()]
        status = json.loads((await client.read("segzero://status"))[0]["text"])
    tool = tools[TRACK]
    schema = tool["inputSchema"]
    assert schema["required"] == ["video", "query"]
    assert set(schema["properties"]) == {"video", "query", "key_frames", "max_frames", "overlay_video"}
    assert schema["properties"]["key_frames"]["default"] == "first"
    assert "outputSchema" in tool and tool["annotations"]["readOnlyHint"] is True
    assert "progress" in tool["description"] and "segzero://tracks/{run_id}/frames/{index}" in tool["description"]
    assert {"segzero://tracks/{run_id}/frames/{index}", "segzero://tracks/{run_id}/tracks.json",
            "segzero://tracks/{run_id}/frames/{index}/objects/{track_id}/mask.png",
            "segzero://tracks/{run_id}/overlay.mp4", "segzero://tracks/{run_id}/timeline.png"} <= set(templates)
    assert status["tools"][-1] == TRACK and status["video"]["runs"]["count"] == 0
    health = server.segzero.status()  # what GET /health answers
    assert health["tools"] == status["tools"] and health["video"] == status["video"]
    assert status["video"]["max_video_frames"] == 3000

    # --no-video, and a server without a reasoner, do not list it
    off = create_server(ServerSettings(roots=(vk.clips,), video=False),
                        pipeline=SegZeroPipeline(kit.ScriptedReasoner(kit.ANSWER), kit.BoxSegmenter()))
    bare = create_server(ServerSettings(roots=(vk.clips,)), pipeline=SegZeroPipeline(None, kit.BoxSegmenter()))
    for server in (off, bare):
        async with kit.connect_memory(server) as client:
            assert TRACK not in [t["name"] for t in await client.list_tools()]
            assert "video" not in json.loads((await client.read("segzero://status"))[0]["text"])

    # without PyAV: not listed by default; --video refuses to start, naming the extra
    monkeypatch.setattr(track_tool, "pyav_available", lambda: False)
    pipe = SegZeroPipeline(kit.ScriptedReasoner(kit.ANSWER), kit.BoxSegmenter())
    async with kit.connect_memory(create_server(ServerSettings(roots=(vk.clips,)), pipeline=pipe)) as client:
        assert TRACK not in [t["name"] for t in await client.list_tools()]
    with pytest.raises(MissingDependencyError, match=r"segzero-tool\[video\]"):
        create_server(ServerSettings(roots=(vk.clips,), video=True), pipeline=pipe)


def test_settings_flags_and_environment():
    from segzero_tool.mcp_server import ServerSettings
    from segzero_tool.settings import SettingsError

    assert ServerSettings().video is None and ServerSettings().max_video_frames == 3000
    assert ServerSettings.from_args(["--video"], environ={}).video is True
    assert ServerSettings.from_args(["--no-video"], environ={}).video is False
    env = {"SEGZERO_MCP_VIDEO": "0", "SEGZERO_MCP_MAX_VIDEO_FRAMES": "50"}
    assert (ServerSettings.from_args([], environ=env).video, ServerSettings.from_args([], environ=env).max_video_frames) \
        == (False, 50)
    assert ServerSettings.from_args(["--max-video-frames", "7"], environ=env).max_video_frames == 7
    with pytest.raises(SettingsError, match="max-video-frames must be at least 1"):
        ServerSettings.from_args(["--max-video-frames", "0"], environ={})


def test_video_flag_without_pyav_exits_with_one_line(kit, tmp_path):
    """``segzero-mcp --video`` on an install without PyAV (hidden by a meta path finder): exit 5, one line."""
    import subprocess
    import sys

    code = ("import sys\n"
            "class NoAv:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'av' or name.startswith('av.'):\n"
            "            raise ModuleNotFoundError(\"No module named 'av'\")\n"
            "sys.meta_path.insert(0, NoAv())\n"
            "from segzero_tool.mcp_server.cli import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    args = ["--reasoner", str(kit.script_folder(tmp_path)), "--reasoner-backend", "scripted:ScriptedReasoner",
            "--segmenter", str(tmp_path), "--segmenter-backend", "scripted:BoxSegmenter", "--lazy"]
    proc = subprocess.run([sys.executable, "-c", code, *args, "--video"], capture_output=True, text=True,
                          env=kit.server_env(), cwd=tmp_path, timeout=120, stdin=subprocess.DEVNULL)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 5, proc.stderr
    assert last.startswith("segzero-mcp: error: --video needs PyAV") and "segzero-tool[video]" in last
    assert "Traceback" not in proc.stderr and proc.stdout == ""


# --- tracking -----------------------------------------------------------------------------------------


async def test_track_a_clip_with_progress_and_resources(kit, vk):
    from PIL import Image

    server = make_server(vk)
    seen: list[tuple[float, str]] = []

    async def progress(value: float, total: float | None, message: str | None) -> None:
        seen.append((value, message or ""))

    async with kit.connect_memory(server) as client:
        res = await client.call({"video": "clip.mp4", "query": "the red rectangle", "overlay_video": True},
                                progress=progress, name=TRACK)
        assert res.get("isError") is not True, res
        out = res["structuredContent"]
        rid = out["run_id"]
        frame0 = json.loads((await client.read(f"segzero://tracks/{rid}/frames/0"))[0]["text"])
        last = json.loads((await client.read(f"segzero://tracks/{rid}/frames/7"))[0]["text"])
        (png,) = await client.read(f"segzero://tracks/{rid}/frames/0/objects/1/mask.png")
        run = json.loads((await client.read(f"segzero://tracks/{rid}/tracks.json"))[0]["text"])
        (mp4,) = await client.read(out["overlay_uri"])
        (timeline,) = await client.read(out["timeline_uri"])
        missing = []
        for uri in (f"segzero://tracks/{rid}/frames/8", f"segzero://tracks/{rid}/frames/0/objects/9/mask.png",
                    "segzero://tracks/t0000000000000000/tracks.json", f"segzero://tracks/{rid}/frames/x"):
            with pytest.raises(kit.McpError) as err:
                await client.read(uri)
            missing.append(str(err.value))
        status = json.loads((await client.read("segzero://status"))[0]["text"])

    # the answer: one track, followed over the 8 frames, short text with the resource templates
    assert out["frames_done"] == 8 and out["key_frames"] == [0] and (out["width"], out["height"]) == (160, 120)
    (track,) = out["tracks"]
    assert track["track_id"] == 1 and track["first_frame"] == 0
    assert out["frames_of_interest"][0] == {"frame": 0, "key_frame": True, "events": ["new #1"],
                                            "uri": f"segzero://tracks/{rid}/frames/0"}
    assert out["frame_uri_template"] == f"segzero://tracks/{rid}/frames/{{index}}"
    text = text_of(res)
    assert text.startswith(f"run_id {rid}: 1 track(s) for 'the red rectangle' over 8 frame(s)")
    assert f"segzero://tracks/{rid}/frames/{{index}} (index 0 to 7)" in text and len(text) < 2000

    # progress: a notification per frame, values increasing
    frames = [m for _, m in seen if "tracking: frame" in m]
    assert any("frame 1/8" in m for m in frames) and any("frame 8/8" in m for m in frames), seen
    assert len({m.split(":")[1] for m in frames}) >= 6, frames
    values = [v for v, _ in seen]
    assert values == sorted(values) and len(set(values)) == len(values)

    # resources: frame records with RLE masks, the PNG equal to the RLE, the whole run, the overlay video
    assert frame0["frame"] == 0 and frame0["key_frame"] is True and frame0["events"] == [{"kind": "new", "track_id": 1}]
    obj = frame0["objects"][0]
    mask = rle_decode(obj["mask"])
    assert obj["track_id"] == 1 and mask.shape == (120, 160) and obj["area"] == int(mask.sum())
    ys, xs = np.nonzero(mask)
    assert obj["box"] == [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]
    picture = np.asarray(Image.open(io.BytesIO(base64.b64decode(png["blob"]))))
    assert png["mimeType"] == "image/png" and np.array_equal(picture > 0, mask)
    assert last["frame"] == 7 and last["key_frame"] is False
    assert track["frames_present"] == 8 - len(track["lost_at"]) or track["status"] == "lost"
    assert run["run_id"] == rid and run["frames"] == 8 and run["tracks"][0]["track_id"] == 1
    assert "out_dir" not in run and run["query"] == "the red rectangle"
    assert mp4["mimeType"] == "video/mp4" and base64.b64decode(mp4["blob"])[4:8] == b"ftyp"
    assert timeline["mimeType"] == "image/png" and Image.open(io.BytesIO(base64.b64decode(timeline["blob"]))).width
    assert out["timeline_uri"] == f"segzero://tracks/{rid}/timeline.png" and out["timeline_uri"] in text
    assert "no frame 8" in missing[0] and "frames: 0 to 7" in missing[0]
    assert "track 9 is not on frame 0" in missing[1]
    assert "unknown or expired tracking run" in missing[2] and "must be a number" in missing[3]
    assert status["video"]["runs"]["count"] == 1 and status["video"]["trackers_loaded"] == 1


async def test_nothing_found_is_an_empty_result(kit, vk):
    async with kit.connect_memory(make_server(vk, answer=NOTHING)) as client:
        res = await client.call({"video": "frames", "query": "a unicorn"}, name=TRACK)
    assert res.get("isError") is not True, res
    out = res["structuredContent"]
    assert out["tracks"] == [] and out["frames_done"] == 4 and out["key_frames"] == [0]
    assert "nothing found for 'a unicorn'" in text_of(res)


BAD: list[tuple[dict[str, Any], str]] = [
    ({"video": "missing.mp4", "query": "q"}, "no such video file or folder: 'missing.mp4'"),
    ({"video": "OUTSIDE", "query": "q"}, "is outside the folders this server may read"),
    ({"video": "broken.mp4", "query": "q"}, "the video could not be used"),
    ({"video": "clip.mp4", "query": "   "}, "bad query"),
    ({"video": "clip.mp4", "query": "q", "key_frames": "sometimes"}, "'every:N' (frames)"),
    ({"video": "clip.mp4", "query": "q", "max_frames": 0}, "max_frames"),
    ({"video": "https://example.com/v.mp4", "query": "q"}, "does not download video URLs"),
    ({"video": "data:video/mp4;base64,AAAA", "query": "q"}, "cannot be sent as a data: URL"),
    ({"video": "", "query": "q"}, "video"),
]


async def test_bad_input_is_a_tool_error_and_the_server_keeps_serving(kit, vk):
    async with kit.connect_memory(make_server(vk)) as client:
        for args, expected in BAD:
            args = {k: (str(vk.root / "outside.mp4") if v == "OUTSIDE" else v) for k, v in args.items()}
            res = await client.call(args, name=TRACK)
            assert res["isError"] is True, (args, res)
            assert expected in text_of(res) and "Traceback" not in text_of(res), (args, text_of(res))
        ok = await client.call({"video": "frames", "query": "the red rectangle", "max_frames": 2}, name=TRACK)
    assert ok.get("isError") is not True, ok
    assert ok["structuredContent"]["frames_done"] == 2


async def test_cancel_stops_within_a_frame_and_the_server_keeps_serving(kit, vk):
    tracker = CountingTracker(real_tracker(vk), at=3)
    server = make_server(vk, load_tracker=lambda pipe: tracker)
    store = server.segzero.video.store
    async with kit.connect_memory(server) as client:
        await call_and_cancel(kit, client, {"video": "long.mp4", "query": "the red rectangle"}, None, tracker.reached)
        at_cancel = tracker.steps
        deadline = time.monotonic() + 10
        while tracker.resets == 0 and time.monotonic() < deadline:  # the tracker comes back, reset, when work ends
            await kit_sleep(0.05)
        stopped = tracker.steps
        await kit_sleep(1.0)
        assert tracker.steps == stopped  # nothing runs on
        assert list(store.root.iterdir()) == []  # the cancelled run's folder is gone
        again = await client.call({"video": "frames", "query": "the red rectangle"}, name=TRACK)
    assert stopped - at_cancel <= 2 and stopped < 40, (at_cancel, stopped)
    assert again.get("isError") is not True and again["structuredContent"]["frames_done"] == 4
    assert server.segzero.video.trackers.loaded == 1  # the reset tracker was used again


async def kit_sleep(seconds: float) -> None:
    import anyio

    await anyio.sleep(seconds)


async def test_video_url_when_urls_are_allowed(kit, vk):
    handler = functools_partial_handler(vk.clips)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/clip.mp4"
        server = make_server(vk, allow_urls=True, allow_private_urls=True)
        async with kit.connect_memory(server) as client:
            res = await client.call({"video": url, "query": "the red rectangle", "max_frames": 3}, name=TRACK)
    finally:
        httpd.shutdown()
    assert res.get("isError") is not True, res
    assert res["structuredContent"]["frames_done"] == 3 and res["structuredContent"]["video"].endswith("video.mp4")


def functools_partial_handler(folder: Path) -> Any:
    import functools

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    return functools.partial(Quiet, directory=str(folder))


# --- the store ------------------------------------------------------------------------------------------


def test_store_bounds_lifetime_and_torn_lines(tmp_path):
    from segzero_tool.mcp_server.store import ResultNotFound
    from segzero_tool.mcp_server.track_store import TrackStore

    now = [0.0]
    store = TrackStore(max_runs=2, ttl_s=100, clock=lambda: now[0])
    runs = []
    for _ in range(3):
        rid, folder = store.new_folder()
        (folder / "frames.jsonl").write_text(
            '{"frame": 0, "key_frame": true, "objects": [], "events": []}\n'
            '{"frame": 1, "key_frame": false, "objects": [], "events": [{"kind": "lost", "track_id": 1}]}\n'
            '{"frame": 2, "key_fr')  # a torn last line
        run = store.add(rid, folder, {"query": "q", "out_dir": str(folder)})
        runs.append((rid, folder))
        assert run.frames == 2 and [e[0] for e in run.events] == [0, 1] and "out_dir" not in run.result
    assert not runs[0][1].exists() and store.ids() == [runs[1][0], runs[2][0]]  # evicted: folder deleted
    with pytest.raises(ResultNotFound, match="unknown or expired tracking run"):
        store.get(runs[0][0])
    assert store.frame(runs[2][0], 1)["events"] == [{"kind": "lost", "track_id": 1}]
    now[0] = 101.0
    with pytest.raises(ResultNotFound):
        store.get(runs[2][0])
    assert not runs[2][1].exists()
    root = store.root
    store.close()
    assert not root.exists()


def test_the_answer_is_bounded_for_a_long_run():
    from segzero_tool.mcp_server.track_results import encode_run
    from segzero_tool.mcp_server.track_store import TrackStore
    from segzero_tool.video.result import TrackSummary, VideoResult

    store = TrackStore()
    rid, folder = store.new_folder()
    with open(folder / "frames.jsonl", "w") as fh:
        for i in range(5000):  # every frame a key frame with an event
            fh.write(json.dumps({"frame": i, "key_frame": True, "objects": [],
                                 "events": [{"kind": "new" if i < 150 else "lost", "track_id": i % 150 + 1}]}) + "\n")
    tracks = [TrackSummary(track_id=t, first_frame=t, last_frame=4999, frames_present=4999 - t, status="lost",
                           lost_at=list(range(t, 5000, 7)), last_box=(1, 2, 3, 4)) for t in range(1, 151)]
    result = VideoResult(query="q", source="long.mp4", info={"width": 64, "height": 48, "fps": 30.0},
                         frames_done=5000, key_frames=list(range(5000)), tracks=tracks, out_dir=folder)
    run = store.add(rid, folder, result.to_dict())
    out, text, links = encode_run(run, result, resource_links=True)
    assert len(out.tracks) == 100 and out.tracks_left_out == 50 and all(len(t.lost_at) <= 20 for t in out.tracks)
    assert len(out.frames_of_interest) == 30 and out.frames_of_interest[0].frame == 0
    assert out.frames_of_interest[-1].frame == 4999 and len(out.key_frames) == 100
    assert len(links) == 12 and links[0]["uri"] == f"segzero://tracks/{rid}/tracks.json"
    assert len(text) < 4000 and len(json.dumps(out.model_dump(mode="json"))) < 60_000
    assert store.frame(rid, 4321)["events"] == [{"kind": "lost", "track_id": 4321 % 150 + 1}]
    store.close()


# --- a real segzero-mcp over stdio -----------------------------------------------------------------------


@pytest.mark.slow
async def test_stdio_subprocess_progress_cancel_and_resources(kit, vk, tmp_path):
    folder = kit.script_folder(tmp_path, vk.answer)
    args = ["-m", "segzero_tool.mcp_server", "--reasoner", str(folder), "--reasoner-backend",
            "scripted:ScriptedReasoner", "--segmenter", str(vk.model), "--device", "cpu",
            "--allow-root", str(vk.clips)]
    errlog = tmp_path / "stderr.txt"
    seen: list[str] = []
    tracking = threading.Event()

    async def progress(value: float, total: float | None, message: str | None) -> None:
        seen.append(message or "")
        if "tracking: frame 2/" in (message or ""):
            tracking.set()

    with open(errlog, "w") as err:
        async with kit.connect_stdio(args, kit.server_env(), vk.clips, err) as client:
            assert TRACK in [t["name"] for t in await client.list_tools()]
            res = await client.call({"video": "clip.mp4", "query": "the red rectangle"}, progress=progress,
                                    name=TRACK)
            assert res.get("isError") is not True, res
            rid = res["structuredContent"]["run_id"]
            frame = json.loads((await client.read(f"segzero://tracks/{rid}/frames/3"))[0]["text"])

            # cancel a long run once it reports frame 2; the server stops it and serves the next call
            tracking.clear()
            await call_and_cancel(kit, client, {"video": "long.mp4", "query": "the red rectangle"}, progress, tracking)
            again = await client.call({"video": "frames", "query": "the red rectangle"}, name=TRACK)
            status = json.loads((await client.read("segzero://status"))[0]["text"])
    assert any("tracking: frame 8/8" in m for m in seen)
    assert frame["frame"] == 3 and isinstance(frame["objects"], list)
    assert again.get("isError") is not True and again["structuredContent"]["frames_done"] == 4
    assert status["video"]["runs"]["count"] == 2  # the cancelled run was not kept
    log = errlog.read_text()
    assert "Traceback" not in log
    reached = max(int(m.split("tracking: frame ")[1].split("/")[0]) for m in seen if "tracking: frame" in m
                  and "/40" in m)
    stopped = int(log.split(f"{TRACK} cancelled after ")[1].split(" ")[0])
    assert reached <= stopped <= reached + 2, (reached, stopped)


async def call_and_cancel(kit: Any, client: Any, args: dict, progress: Any, started: threading.Event) -> None:
    """Start a call with progress, cancel it once ``started`` is set (notifications/cancelled on mcp 1.x)."""
    import asyncio

    import anyio

    request_id = None if kit.SDK2 else client.session._request_id  # the id the call gets (1.x ClientSession)
    task = asyncio.ensure_future(client.call(args, progress=progress, name=TRACK))
    if kit.SDK2:
        await kit.wait_event(started, 120)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return
    from mcp import types

    await kit.wait_event(started, 120)
    await client.session.send_notification(types.ClientNotification(types.CancelledNotification(
        method="notifications/cancelled",
        params=types.CancelledNotificationParams(requestId=request_id, reason="test cancels"))))
    with anyio.fail_after(60), pytest.raises(kit.McpError):
        await task
