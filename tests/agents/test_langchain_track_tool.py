"""The LangChain ``track_by_reasoning`` tool (issue #15): a scripted reasoner boxes the red rectangle on the first
frame of a synthetic clip and the tiny random SAM2 video model follows it; the ToolMessage (summary + VideoResult
artifact) through the chat models' offline request builders, the run folders kept and deleted, bad input as a tool
error (never a traceback), and ``ainvoke`` cancelled mid-run stopping within a frame or two."""

from __future__ import annotations

import asyncio
import re
import time
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("av")

from langchain_core.messages import AIMessage, HumanMessage, ToolMessage  # noqa: E402
from scripted import ScriptedReasoner  # noqa: E402
from video_support import CountingTracker, box_answer, write_clip_set  # noqa: E402

from segzero_tool import SegZeroPipeline  # noqa: E402
from segzero_tool.agents import TrackByReasoningTool, make_track_tool  # noqa: E402

RUN = re.compile(r"^run (v-[0-9a-f]{12}): ")


@pytest.fixture(scope="module")
def vk(tmp_path_factory):
    from segzero_tool.testing.synthetic_video import moving_shapes
    from segzero_tool.testing.tiny_sam2 import build_tiny_sam2_video

    root = tmp_path_factory.mktemp("lc-track")
    frames = list(moving_shapes(30))
    clips = write_clip_set(root, frames, clip_frames=5, folder_frames=3)
    model = build_tiny_sam2_video(root / "sam2-video", seed=0)
    answer = box_answer([frames[0].boxes[1]], 160, 120, think="The red rectangle.")
    pipe = SegZeroPipeline.from_pretrained(ScriptedReasoner(answer), str(model),
                                           device="cpu")
    return SimpleNamespace(root=root, clips=clips, model=model, pipe=pipe)


def call(tool: TrackByReasoningTool, **args: Any) -> ToolMessage:
    message = tool.invoke({"type": "tool_call", "id": "call_1", "name": tool.name, "args": args})
    assert isinstance(message, ToolMessage)
    return message


def test_schema_and_description(vk):
    tool = make_track_tool(vk.pipe, allowed_roots=vk.clips)
    assert isinstance(tool, TrackByReasoningTool) and tool.name == "track_by_reasoning"
    schema = tool.tool_call_schema.model_json_schema()
    assert set(schema["properties"]) == {"video", "query", "key_frames", "max_frames"}
    assert schema["required"] == ["video", "query"] and schema["properties"]["key_frames"]["default"] == "first"
    assert "URLs are not downloaded" in schema["properties"]["video"]["description"]
    assert "every:N" in tool.description and "lost" in tool.description
    with_urls = make_track_tool(vk.pipe, allow_urls=True)
    assert "http(s) URL" in with_urls.tool_call_schema.model_json_schema()["properties"]["video"]["description"]


def test_track_a_clip_keeps_the_last_runs(vk, tmp_path):
    tool = make_track_tool(vk.pipe, allowed_roots=vk.clips, out_root=tmp_path / "runs", keep_runs=1)
    first = call(tool, video="clip.mp4", query="the red rectangle")
    assert first.status == "success", first.content
    result = first.artifact
    assert RUN.match(first.content) and "1 track(s) for 'the red rectangle' over 5 frame(s)" in first.content
    assert "Key frames (the reasoner looked): 0." in first.content and "frames.jsonl" in first.content
    assert result.frames_done == 5 and result.key_frames == [0] and [t.track_id for t in result.tracks] == [1]
    frames = list(result.frames())
    assert [f.index for f in frames] == [0, 1, 2, 3, 4] and frames[0].key_frame and frames[0].track_ids == (1,)
    mask = frames[0].result.objects[0].mask
    assert mask.shape == (120, 160) and mask.any()
    assert result.out_dir.parent == tmp_path / "runs"

    second = call(tool, video=str(vk.clips / "frames"), query="the red rectangle", max_frames=2)
    assert second.status == "success" and second.artifact.frames_done == 2
    assert not result.out_dir.exists() and second.artifact.out_dir.exists()  # keep_runs=1


@pytest.mark.parametrize(("args", "message"), [
    ({"video": "missing.mp4", "query": "q"}, "no such video file or folder"),
    ({"video": "/etc/hostname", "query": "q"}, "outside the folders this tool may read"),
    ({"video": "broken.mp4", "query": "q"}, "Pass the path of a video file"),
    ({"video": "clip.mp4", "query": "  "}, "non-empty `query`"),
    ({"video": "clip.mp4", "query": "q", "key_frames": "often"}, "'every:N' (frames)"),
    ({"video": "clip.mp4", "query": "q", "max_frames": 0}, "Invalid arguments for track_by_reasoning"),
    ({"video": "https://example.com/a.mp4", "query": "q"}, "does not download video URLs"),
])
def test_bad_input_is_a_tool_error_not_a_traceback(vk, tmp_path, args, message):
    tool = make_track_tool(vk.pipe, allowed_roots=vk.clips, out_root=tmp_path / "runs")
    msg = call(tool, **args)
    assert msg.status == "error" and message in msg.content, msg.content
    assert "Traceback" not in msg.content
    assert not (tmp_path / "runs").exists() or list((tmp_path / "runs").iterdir()) == []  # no folder left behind


@pytest.mark.anyio
async def test_ainvoke_cancelled_stops_within_a_frame(vk, tmp_path):
    from segzero_tool.video.tracker import load_tracker

    tracker = CountingTracker(load_tracker(str(vk.model), device="cpu", progress=False), at=2)
    tool = make_track_tool(vk.pipe, tracker=tracker, allowed_roots=vk.clips, out_root=tmp_path / "runs")
    task = asyncio.ensure_future(tool.ainvoke({"type": "tool_call", "id": "c", "name": tool.name,
                                               "args": {"video": "long.mp4", "query": "the red rectangle"}}))
    deadline = time.monotonic() + 120
    while not tracker.reached.is_set() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    at_cancel = tracker.steps
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task  # returns once the worker thread has stopped
    stopped = tracker.steps
    await asyncio.sleep(1.0)
    assert tracker.steps == stopped and stopped - at_cancel <= 2, (at_cancel, stopped)
    assert list((tmp_path / "runs").iterdir()) == []  # the cancelled run's folder is removed
    again = call(tool, video="frames", query="the red rectangle")  # the tool (and its tracker) still work
    assert again.status == "success" and again.artifact.frames_done == 3


@pytest.mark.anyio
async def test_ainvoke_reports_the_frame_reached(vk, tmp_path):
    tool = make_track_tool(vk.pipe, allowed_roots=vk.clips, out_root=tmp_path / "runs", progress_interval_s=0.05)
    seen = [e["data"] async for e in tool.astream_events({"video": "clip.mp4", "query": "the red rectangle"},
                                                         version="v2")
            if e["event"] == "on_custom_event" and e["name"] == "segzero_progress"]
    frames = [d["message"] for d in seen if d["stage"] == "tracking" and d["message"].startswith("frame ")]
    assert frames and all(d["total"] == 5 for d in seen if d["stage"] == "tracking" and d["done"]), seen


# --- the ToolMessage through the chat models' offline request builders ----------------------------------


@pytest.mark.parametrize("converter", ["openai-chat-completions", "openai-responses", "anthropic-messages"])
def test_tool_message_converts(vk, tmp_path, converter):
    pytest.importorskip("langchain_openai")
    pytest.importorskip("langchain_anthropic")
    tool = make_track_tool(vk.pipe, allowed_roots=vk.clips, out_root=tmp_path / "runs")
    args = {"video": "frames", "query": "the red rectangle"}
    ok = call(tool, **args)
    bad = call(tool, video="missing.mp4", query="q")
    for message in (ok, bad):
        messages = [HumanMessage("Follow the red rectangle in frames/."),
                    AIMessage("", tool_calls=[{"type": "tool_call", "id": "call_1", "name": tool.name, "args": args}]),
                    message]
        if converter == "anthropic-messages":
            from langchain_anthropic import ChatAnthropic

            payload = ChatAnthropic(model="claude-sonnet-4-5", api_key="offline")._get_request_payload(messages)
            [item] = [b for m in payload["messages"] if m["role"] == "user" and isinstance(m["content"], list)
                      for b in m["content"] if isinstance(b, dict) and b.get("type") == "tool_result"]
            out = item["content"]
            assert item.get("is_error", False) is (message.status == "error")
        else:
            from langchain_openai import ChatOpenAI

            model = ChatOpenAI(model="gpt-4o-mini", api_key="offline", use_responses_api=converter == "openai-responses")
            payload = model._get_request_payload(messages)
            if converter == "openai-chat-completions":
                [item] = [m for m in payload["messages"] if m["role"] == "tool"]
                out = item["content"]
            else:
                [item] = [i for i in payload["input"] if i.get("type") == "function_call_output"]
                out = item["output"]
        text = out if isinstance(out, str) else out[0]["text"]
        assert text == message.content
    assert RUN.match(ok.content) and "no such video" in bad.content
