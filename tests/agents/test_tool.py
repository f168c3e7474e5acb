"""The LangChain tool: content and artifact, sync and async, image sources, errors for the model."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import re
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("langchain_core")

from langchain_core.messages import ToolMessage  # noqa: E402
from langchain_core.tools import ToolException  # noqa: E402

from segzero_tool import ParseStatus, SegmentationResult  # noqa: E402
from segzero_tool.agents import SegmentByReasoningTool, decode_base64_image  # noqa: E402
from segzero_tool.cancel import check_cancelled  # noqa: E402
from segzero_tool.errors import ImageSourceRejected  # noqa: E402
from segzero_tool.reasoners.base import Reasoner, ReasonerOutput  # noqa: E402

pytestmark = pytest.mark.anyio
QUERY = "What can I have if I'm thirsty?"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch):
    """Tools read from the working directory by default; the example photo lies under the repository."""
    monkeypatch.chdir(REPO)


def call(tool, **args):
    """A ToolCall dict, as a chat model's tool call reaches the tool."""
    return {"name": tool.name, "args": args, "id": "call-1", "type": "tool_call"}


@pytest.fixture
def tool(make_pipeline):
    return SegmentByReasoningTool.from_pipeline(make_pipeline())


class SlowReasoner(Reasoner):
    """Answers after ``delay`` seconds of blocking work, or, with ``gate``, once the gate opens while
    polling the call's cancel token (as the transformers reasoner does per token)."""

    name = "slow"

    def __init__(self, answer: str, delay: float = 0.0, gate: threading.Event | None = None) -> None:
        self.answer, self.delay, self.gate = answer, delay, gate
        self.started = threading.Event()
        self.cancelled = threading.Event()

    def generate(self, requests):
        self.started.set()
        if self.gate is not None:
            try:
                while not self.gate.wait(0.005):
                    check_cancelled()
            except BaseException:
                self.cancelled.set()
                raise
        time.sleep(self.delay)
        return [ReasonerOutput(self.answer, finish_reason="stop") for _ in requests]


class BrokenReasoner(Reasoner):
    def generate(self, requests):
        raise RuntimeError("a bug in the backend")


# --- content and artifact ------------------------------------------------------------------------


def test_tool_call_gives_tool_message_with_summary_and_result(tool, coffee, expected_boxes, expected_points):
    msg = tool.invoke(call(tool, image=str(coffee), query=QUERY))
    assert isinstance(msg, ToolMessage) and msg.status == "success" and msg.tool_call_id == "call-1"
    assert msg.name == "segment_by_reasoning"
    result = msg.artifact
    assert isinstance(result, SegmentationResult) and result.parse_status is ParseStatus.OK
    assert [list(o.box) for o in result.objects] == expected_boxes
    assert result.objects[0].mask is not None and result.image_size == (600, 400)
    text = msg.content
    assert isinstance(text, str)
    assert text.startswith("Found 2 object(s)") and "600x400" in text and "origin top-left" in text
    (x, y), box = expected_points[0], expected_boxes[0]
    assert f"#0: box {box}; point ({x}, {y}); score 0.75; area {result.objects[0].area} px" in text
    assert "label 'cup'" in text and "Reasoning: The cup holds coffee." in text


def test_plain_invoke_returns_the_content(tool, coffee):
    out = tool.invoke({"image": str(coffee), "query": QUERY})
    assert isinstance(out, str) and out.startswith("Found 2 object(s)")


def test_schema_is_written_for_the_model(tool):
    schema = tool.tool_call_schema.model_json_schema()
    assert set(schema["properties"]) == {"image", "query", "max_objects", "prompt_format"}
    assert schema["required"] == ["image", "query"]
    assert "NOT fetched" in schema["properties"]["image"]["description"]
    bounds = schema["properties"]["max_objects"]["anyOf"][0]
    assert (bounds["minimum"], bounds["maximum"]) == (1, 100)
    for words in ("top-left", "inclusive", "(x, y)", "original image", "not downloaded"):
        assert words in tool.description
    assert "pipeline" not in tool.model_dump()


def test_max_objects_is_forwarded_and_capped_by_the_pipeline(make_pipeline, coffee):
    tool = SegmentByReasoningTool.from_pipeline(make_pipeline())
    assert len(tool.invoke(call(tool, image=str(coffee), query=QUERY, max_objects=1)).artifact.objects) == 1
    capped = SegmentByReasoningTool.from_pipeline(make_pipeline(max_objects=1))
    assert len(capped.invoke(call(capped, image=str(coffee), query=QUERY, max_objects=5)).artifact.objects) == 1


def test_prompt_format_is_forwarded(tool, coffee):
    msg = tool.invoke(call(tool, image=str(coffee), query=QUERY, prompt_format="grounding"))
    assert msg.artifact.prompt_format == "grounding"


def test_nothing_found_says_why(make_pipeline, coffee):
    tool = SegmentByReasoningTool.from_pipeline(make_pipeline("<think>I see no drink.</think> no answer here"))
    msg = tool.invoke(call(tool, image=str(coffee), query=QUERY))
    assert msg.status == "success" and msg.artifact.objects == []
    assert msg.content.startswith(f"No object found for the query {QUERY!r} in the 600x400 image (parse status no_answer")
    assert "Reasoning: I see no drink." in msg.content
    # a format problem, not a query problem: no advice to rephrase, but where to look
    assert "expected format" in msg.content and "prompt_format" in msg.content and "rephras" not in msg.content


def test_many_objects_stay_within_the_text_budget(make_pipeline, coffee):
    import json

    objs = [{"bbox_2d": [i, i, i + 50, i + 40], "point_2d": [i + 25, i + 20], "label": "a very long label " * 5}
            for i in range(100)]
    tool = SegmentByReasoningTool.from_pipeline(make_pipeline("<think>" + "hmm " * 2000 + "</think><answer>"
                                                              + json.dumps(objs) + "</answer>", max_objects=100))
    msg = tool.invoke(call(tool, image=str(coffee), query=QUERY))
    assert len(msg.artifact.objects) == 100 and len(msg.content) <= 8000
    assert "#0:" in msg.content and "more object(s)" in msg.content


def test_cut_off_answer_names_the_budget_not_rephrasing(make_pipeline, coffee):
    from segzero_tool.reasoners.base import ReasonerOutput

    pipe = make_pipeline("x")
    pipe.reasoner.generate = lambda requests: [ReasonerOutput("<think>hmm hmm", finish_reason="length")]
    tool = SegmentByReasoningTool.from_pipeline(pipe)
    msg = tool.invoke(call(tool, image=str(coffee), query=QUERY))
    assert "token budget" in msg.content and "max_new_tokens" in msg.content
    assert "more concrete query" not in msg.content


def test_nothing_found_lists_the_parse_issues(make_pipeline, coffee):
    tool = SegmentByReasoningTool.from_pipeline(make_pipeline('<answer>[{"bbox_2d": [1, 2]}]</answer>'))
    msg = tool.invoke(call(tool, image=str(coffee), query=QUERY))
    assert "parse status invalid_objects" in msg.content and "Issues: " in msg.content
    assert "Reasoning: (none)" in msg.content


def test_long_reasoning_is_truncated(make_pipeline, coffee):
    tool = SegmentByReasoningTool.from_pipeline(make_pipeline("<think>" + "why " * 1000 + "</think><answer>[]</answer>"))
    msg = tool.invoke(call(tool, image=str(coffee), query=QUERY))
    reasoning = next(line for line in msg.content.splitlines() if line.startswith("Reasoning: "))
    assert len(reasoning) <= len("Reasoning: ") + 600 and reasoning.endswith("…")
    assert "parse status no_objects" in msg.content
    assert len(msg.artifact.reasoning) > 3000  # the artifact keeps everything


@pytest.mark.parametrize(("fmt", "mime"), [("jpeg", "image/jpeg"), ("png", "image/png")])
def test_include_image_adds_a_standard_image_block(make_pipeline, coffee, fmt, mime):
    tool = SegmentByReasoningTool.from_pipeline(make_pipeline(), include_image=True, overlay_max_side=256,
                                                overlay_format=fmt)
    msg = tool.invoke(call(tool, image=str(coffee), query=QUERY))
    text, image = msg.content
    assert text["type"] == "text" and text["text"].startswith("Found 2 object(s)")
    assert image["type"] == "image" and image["mime_type"] == mime and "url" not in image
    picture = Image.open(io.BytesIO(base64.b64decode(image["base64"])))
    assert picture.format == fmt.upper() and picture.size == (256, 171)
    assert isinstance(msg.artifact, SegmentationResult)


# --- image sources ---------------------------------------------------------------------------------


def test_data_url_and_bare_base64(tool, coffee, expected_boxes):
    b64 = base64.b64encode(coffee.read_bytes()).decode()
    for image in (f"data:image/png;base64,{b64}", b64, "data:;base64," + b64[:100] + "\n" + b64[100:]):
        msg = tool.invoke(call(tool, image=image, query=QUERY))
        assert msg.status == "success", msg.content
        assert [list(o.box) for o in msg.artifact.objects] == expected_boxes


def test_url_safe_unpadded_base64_decodes():
    raw = bytes(range(256)) * 3
    text = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    assert decode_base64_image(text, 10_000) == raw


@pytest.mark.parametrize(
    ("image", "message"),
    [
        ("data:image/png,abcd", "only base64 data: URLs are accepted"),
        ("data:text/plain;base64,aGVsbG8=", "media type 'text/plain'"),
        ("data:image/png;base64,", "is empty"),
        ("data:image/png;base64,@@@@", "not valid base64"),
        ("data:image/png;base64,aGVsbG8=", "not a recognised image format"),
        ("A" * 100, "not a recognised image format"),
        ("A" * 101, "not valid base64 (its length is impossible"),
        ("https://example.com/cup.png", "fetching URLs is disabled in this tool"),
        ("ftp://example.com/cup.png", "fetching URLs is disabled in this tool"),
        ("segzero://results/abc/overlay.png", "cannot be read here"),
        ("   ", "`image` is empty"),
        ("photos/\x00.png", "NUL character"),
        ("photo." * 1000, "longer than any file path"),
        ("file://server/share/a.png", "names the host 'server'"),
    ],
)
def test_bad_image_sources_are_tool_errors(tool, image, message):
    msg = tool.invoke(call(tool, image=image, query=QUERY))
    assert msg.status == "error" and message in msg.content, msg.content
    assert "data: URL" in msg.content and msg.artifact is None


@pytest.mark.parametrize("image", [None, 3, ["a.png"], {"path": "a.png"}, float("nan")])
def test_wrong_types_for_image_are_argument_errors(tool, image):
    msg = tool.invoke(call(tool, image=image, query=QUERY))
    assert msg.status == "error" and "image" in msg.content and "call the tool again" in msg.content


def test_base64_size_limit_is_checked_before_decoding(make_pipeline, coffee):
    tool = SegmentByReasoningTool.from_pipeline(make_pipeline(), max_image_bytes=1000)
    b64 = base64.b64encode(coffee.read_bytes()).decode()
    msg = tool.invoke(call(tool, image="data:image/png;base64," + b64, query=QUERY))
    assert msg.status == "error" and "larger than this tool's limit of 1,000 bytes" in msg.content
    msg = tool.invoke(call(tool, image=str(coffee), query=QUERY))
    assert msg.status == "error" and "more than this tool's limit of 1,000" in msg.content
    with pytest.raises(ImageSourceRejected, match="larger than"):
        decode_base64_image("A" * 10_000_000, 1000)


def test_file_urls_and_relative_paths(tool, coffee, monkeypatch):
    assert tool.invoke(call(tool, image=coffee.as_uri(), query=QUERY)).status == "success"
    monkeypatch.chdir(coffee.parent.parent)
    assert tool.invoke(call(tool, image="examples/coffee.png", query=QUERY)).status == "success"


def test_allowed_roots(make_pipeline, coffee, tmp_path, monkeypatch):
    root = tmp_path / "root"
    root.mkdir()
    (root / "cup.png").write_bytes(coffee.read_bytes())
    outside = tmp_path / "outside.png"
    outside.write_bytes(coffee.read_bytes())
    (root / "escape.png").symlink_to(outside)
    tool = SegmentByReasoningTool.from_pipeline(make_pipeline(), allowed_roots=(root,))
    monkeypatch.chdir(tmp_path)
    ok = [str(root / "cup.png"), "cup.png", "root/cup.png", str(root / "sub" / ".." / "cup.png")]
    for image in ok:
        assert tool.invoke(call(tool, image=image, query=QUERY)).status == "success", image
    for image in (str(outside), str(root / "escape.png"), str(root / ".." / "outside.png"), "/etc/passwd"):
        msg = tool.invoke(call(tool, image=image, query=QUERY))
        assert msg.status == "error" and "outside the folders this tool may read" in msg.content, image
        assert str(root) in msg.content and "allowed_roots" in msg.content  # names the folders and the fix
    for image in ("nope.png", "outside.png"):  # relative: looked up inside the root only, so "missing"
        missing = tool.invoke(call(tool, image=image, query=QUERY))
        assert missing.status == "error" and "no such file" in missing.content


def test_roots_default_to_the_working_directory_at_construction(make_pipeline, tmp_path, coffee, monkeypatch):
    (tmp_path / "c.png").write_bytes(coffee.read_bytes())
    tool = SegmentByReasoningTool.from_pipeline(make_pipeline())  # built in the repository
    assert tool.allowed_roots == (Path(os.path.realpath(REPO)),)
    monkeypatch.chdir(tmp_path)  # moving later does not widen the roots
    msg = tool.invoke(call(tool, image=str(tmp_path / "c.png"), query=QUERY))
    assert msg.status == "error" and "outside the folders this tool may read" in msg.content
    here = SegmentByReasoningTool.from_pipeline(make_pipeline(), allowed_roots=None)  # None: the cwd too
    assert here.invoke(call(here, image="c.png", query=QUERY)).status == "success"
    anywhere = SegmentByReasoningTool.from_pipeline(make_pipeline(), allowed_roots=("/",))
    assert anywhere.invoke(call(anywhere, image=str(tmp_path / "c.png"), query=QUERY)).status == "success"
    single = SegmentByReasoningTool.from_pipeline(make_pipeline(), allowed_roots=str(tmp_path))
    assert single.allowed_roots == (Path(os.path.realpath(tmp_path)),)
    none = SegmentByReasoningTool.from_pipeline(make_pipeline(), allowed_roots=())
    msg = none.invoke(call(none, image="c.png", query=QUERY))
    assert msg.status == "error" and "reads no local files" in msg.content


def test_outside_files_look_the_same_whether_they_exist_or_not(make_pipeline, coffee, tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "real.png").write_bytes(coffee.read_bytes())
    (root / "link_real.png").symlink_to(outside / "real.png")
    (root / "link_gone.png").symlink_to(outside / "gone.png")
    tool = SegmentByReasoningTool.from_pipeline(make_pipeline(), allowed_roots=(root,))

    def masked(image: str) -> str:
        msg = tool.invoke(call(tool, image=image, query=QUERY))
        assert msg.status == "error"
        return msg.content.replace(repr(image), "<PATH>")

    assert masked(str(outside / "real.png")) == masked(str(outside / "gone.png"))
    assert masked(str(root / "link_real.png")) == masked(str(root / "link_gone.png"))
    assert masked(str(root / ".." / "outside" / "real.png")) == masked(str(root / ".." / "outside" / "gone.png"))


# --- URLs ------------------------------------------------------------------------------------------


class _ImageHandler(BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        self.send_response(200 if self.path == "/coffee.png" else 404)
        body = self.body if self.path == "/coffee.png" else b""
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def image_server(coffee):
    _ImageHandler.body = coffee.read_bytes()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ImageHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_description_and_schema_follow_allow_urls(make_pipeline):
    off = SegmentByReasoningTool.from_pipeline(make_pipeline())
    on = SegmentByReasoningTool.from_pipeline(make_pipeline(), allow_urls=True)
    image_off = off.tool_call_schema.model_json_schema()["properties"]["image"]["description"]
    image_on = on.tool_call_schema.model_json_schema()["properties"]["image"]["description"]
    assert "http(s) URLs are not downloaded" in off.description and "NOT fetched" in image_off
    assert "not downloaded" not in on.description and "NOT" not in image_on
    assert "public http(s) URL" in on.description and "http(s) URL" in image_on
    custom = SegmentByReasoningTool.from_pipeline(make_pipeline(), allow_urls=True, description="Segment things.")
    assert custom.description == "Segment things."


async def test_urls_when_enabled(make_pipeline, image_server, expected_boxes):
    url = f"{image_server}/coffee.png"
    default = SegmentByReasoningTool.from_pipeline(make_pipeline())
    msg = default.invoke(call(default, image=url, query=QUERY))
    assert msg.status == "error" and "allow_urls=True" in msg.content
    public_only = SegmentByReasoningTool.from_pipeline(make_pipeline(), allow_urls=True)
    msg = public_only.invoke(call(public_only, image=url, query=QUERY))
    assert msg.status == "error" and "non-public address (127.0.0.1" in msg.content
    assert "allow_private_urls=True" in msg.content
    tool = SegmentByReasoningTool.from_pipeline(make_pipeline(), allow_urls=True, allow_private_urls=True)
    msg = tool.invoke(call(tool, image=url, query=QUERY))
    assert msg.status == "success", msg.content
    assert [list(o.box) for o in msg.artifact.objects] == expected_boxes
    msg = await tool.ainvoke(call(tool, image=url, query=QUERY))
    assert msg.status == "success", msg.content
    msg = tool.invoke(call(tool, image=f"{image_server}/missing.png", query=QUERY))
    assert msg.status == "error" and "HTTP 404" in msg.content
    small = SegmentByReasoningTool.from_pipeline(make_pipeline(), allow_urls=True, allow_private_urls=True,
                                                 max_image_bytes=1000)
    msg = small.invoke(call(small, image=url, query=QUERY))
    assert msg.status == "error" and re.search(r"download limit of 1,000 bytes", msg.content)


# --- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "query", "message", "hint"),
    [
        ("missing", QUERY, "no such file", "check the name"),
        ("corrupt", QUERY, "not a recognised image format", "readable image file"),
        ("folder", QUERY, "is a folder", "path of one image file"),
        ("ok", "   ", "the query is empty", "non-empty `query`"),
        ("ok", "x" * 5000, "more than the limit of 2000", "non-empty `query`"),
    ],
)
def test_bad_input_comes_back_as_error_message(make_pipeline, coffee, tmp_path, kind, query, message, hint):
    pipe = make_pipeline()
    tool = SegmentByReasoningTool.from_pipeline(pipe, allowed_roots=(tmp_path, coffee.parent))
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"not an image")
    image = {"missing": tmp_path / "missing.png", "corrupt": corrupt, "folder": tmp_path, "ok": coffee}[kind]
    msg = tool.invoke(call(tool, image=str(image), query=query))
    assert msg.status == "error" and message in msg.content and hint in msg.content, msg.content
    assert pipe.reasoner.calls == []  # rejected before any model ran


def test_tool_exception_without_handling(make_pipeline):
    tool = SegmentByReasoningTool.from_pipeline(make_pipeline(), handle_tool_error=False)
    with pytest.raises(ToolException, match="no such file"):
        tool.invoke({"image": str(REPO / "nonexistent.png"), "query": QUERY})
    with pytest.raises(ToolException, match="outside the folders"):
        tool.invoke({"image": "/nonexistent/x.png", "query": QUERY})


def test_schema_violations_come_back_as_error_message(tool, coffee):
    msg = tool.invoke(call(tool, image=str(coffee), query=QUERY, max_objects=0))
    assert msg.status == "error" and "max_objects" in msg.content and "call the tool again" in msg.content


def test_bugs_propagate(make_pipeline, coffee):
    tool = SegmentByReasoningTool.from_pipeline(make_pipeline(reasoner=BrokenReasoner()))
    with pytest.raises(RuntimeError, match="a bug in the backend"):
        tool.invoke(call(tool, image=str(coffee), query=QUERY))


def test_pipeline_is_checked(tool):
    with pytest.raises(ValueError, match="pipeline must be a SegZeroPipeline"):
        SegmentByReasoningTool(pipeline=object())


# --- async -----------------------------------------------------------------------------------------


async def test_ainvoke_tool_call_and_plain(tool, coffee, expected_boxes):
    msg = await tool.ainvoke(call(tool, image=str(coffee), query=QUERY))
    assert isinstance(msg, ToolMessage) and isinstance(msg.artifact, SegmentationResult)
    assert [list(o.box) for o in msg.artifact.objects] == expected_boxes
    assert msg.content == tool.invoke({"image": str(coffee), "query": QUERY})
    out = await tool.ainvoke({"image": str(coffee), "query": QUERY})
    assert out.startswith("Found 2 object(s)")


async def test_ainvoke_errors(tool):
    msg = await tool.ainvoke(call(tool, image=str(REPO / "nonexistent.png"), query=QUERY))
    assert msg.status == "error" and "no such file" in msg.content
    msg = await tool.ainvoke(call(tool, image="/nonexistent/x.png", query=QUERY))
    assert msg.status == "error" and "outside the folders" in msg.content


async def test_ainvoke_does_not_block_the_event_loop(make_pipeline, coffee, answer):
    reasoner = SlowReasoner(answer, delay=0.4)
    tool = SegmentByReasoningTool.from_pipeline(make_pipeline(reasoner=reasoner), include_image=True)
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        msg = await tool.ainvoke(call(tool, image=str(coffee), query=QUERY))
    finally:
        task.cancel()
    assert msg.status == "success" and len(msg.artifact.objects) == 2
    assert ticks >= 15  # ~40 possible in 0.4 s; a blocked loop would give 0 or 1


async def test_cancelling_ainvoke_stops_the_worker(make_pipeline, coffee, answer):
    gate = threading.Event()
    reasoner = SlowReasoner(answer, gate=gate)
    tool = SegmentByReasoningTool.from_pipeline(make_pipeline(reasoner=reasoner))
    task = asyncio.create_task(tool.ainvoke(call(tool, image=str(coffee), query=QUERY)))
    while not reasoner.started.is_set():
        await asyncio.sleep(0.005)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(reasoner.cancelled.wait, 5.0)  # the thread saw the token and stopped
    gate.set()


# --- construction ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_from_settings_with_scripted_backend_and_tiny_sam2(tiny_models, script_folder, coffee, expected_boxes,
                                                          monkeypatch):
    from segzero_tool.settings import PipelineSettings

    values = {"reasoner": str(script_folder()), "reasoner_backend": "scripted:ScriptedReasoner",
              "segmenter": str(tiny_models["segmenter"]), "device": "cpu"}
    tool = SegmentByReasoningTool.from_settings(values, include_image=True)
    assert tool.include_image and tool.pipeline.segmenter is not None
    msg = tool.invoke(call(tool, image=str(coffee), query=QUERY))
    assert msg.status == "success", msg.content
    result = msg.artifact
    assert [list(o.box) for o in result.objects] == expected_boxes
    assert result.masks.shape == (2, 400, 600) and result.segmenter and result.reasoner == "scripted"
    # the same from a PipelineSettings, and from SEGZERO_* variables when no settings are given
    assert SegmentByReasoningTool.from_settings(PipelineSettings(**values)).pipeline.reasoner.model_id == "scripted"
    for key, value in values.items():
        monkeypatch.setenv("SEGZERO_" + key.upper(), value)
    from_env = SegmentByReasoningTool.from_settings()
    assert from_env.invoke({"image": str(coffee), "query": QUERY}).startswith("Found 2 object(s)")


def test_from_settings_rejects_unknown_settings():
    from segzero_tool.settings import SettingsError

    with pytest.raises(SettingsError, match="unknown setting 'reasonr'"):
        SegmentByReasoningTool.from_settings({"reasonr": "x"})


def test_importing_the_package_stays_light():
    code = ("import sys, segzero_tool.agents as a; assert 'SegmentByReasoningTool' in dir(a); "
            "bad = [m for m in ('torch', 'langchain_core', 'cv2', 'transformers') if m in sys.modules]; "
            "assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": ""})
    assert proc.returncode == 0, proc.stderr


async def test_async_calls_stream_progress_events(make_pipeline, coffee):
    import time as _time

    from scripted import ScriptedReasoner

    from segzero_tool.progress import report

    class Slow(ScriptedReasoner):
        def generate(self, requests):
            for i in range(6):
                report("reasoning", f"generated {i}/6 tokens", i, 6)
                _time.sleep(0.3)
            return super().generate(requests)

    answer = ('<think>Cup.</think><answer>[{"bbox_2d": [168,126,588,672], "point_2d": [378,420]}]</answer>')
    tool = SegmentByReasoningTool.from_pipeline(make_pipeline(reasoner=Slow(answer)), progress_interval_s=0.4)
    events = [e async for e in tool.astream_events({"image": str(coffee), "query": QUERY}, version="v2")
              if e["event"] == "on_custom_event" and e["name"] == "segzero_progress"]
    assert len(events) >= 2, events
    assert any(e["data"]["stage"] == "reasoning" and e["data"]["total"] == 6 for e in events)
    assert all(e["data"]["elapsed_s"] > 0 for e in events)
