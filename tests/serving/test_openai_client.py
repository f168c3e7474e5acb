"""The openai backend against the loopback fake vLLM server: request shape, pipeline end to end,
structured outputs, concurrency, replicas, faults, health, API keys and cancellation."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import threading
import time

import pytest
from fake_vllm import ANSWER
from scripted import BoxSegmenter
from serving_support import COFFEE, FAST, PLAIN, request

from segzero_tool import SegZeroPipeline
from segzero_tool.backends import resolve_reasoner_class
from segzero_tool.cancel import CancelToken, OperationCancelled, cancellation
from segzero_tool.errors import UnknownModelError
from segzero_tool.prompts import build_prompt
from segzero_tool.reasoners.openai_compat import (
    OpenAICompatReasoner,
    ReasonerAuthError,
    ReasonerConfigError,
    ReasonerConnectionError,
    ReasonerHTTPError,
    ReasonerResponseError,
    ReasonerServiceError,
    ReasonerTimeoutError,
    UnknownServedModelError,
    normalize_base_url,
    retry_after_seconds,
    split_base_urls,
)
from segzero_tool.reasoners.structured import answer_regex

SEGZERO_ANSWER = ('<think>The mug.</think><answer>{"bbox": [10,100,200,210], "points_1": [30,110], '
                  '"points_2": [35,180]}</answer>')


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- request shape and pipeline --------------------------------------------------------------


def test_request_shape_usage_and_finish_reason(server, make_client):
    client = make_client(server.url, model="Ricky06662/VisionReasoner-7B")  # a hub id: sent as the short name
    [out] = client.generate([request(budget=77)])
    assert server.rejected == []
    [rec] = server.requests
    assert rec["model"] == "visionreasoner-7b"
    assert rec["messages_shape"] == [["image_url", "text"]]
    assert rec["image_size"] == (840, 840) and rec["image_url_prefix"].startswith("data:image/png;base64,")
    assert rec["temperature"] == 0 and rec["max_tokens"] == 77
    assert rec["prompt"] == build_prompt("what can I drink?")
    assert rec["structured_outputs"] == {"regex": answer_regex("list")}  # auto: the server is vLLM
    assert out.text == ANSWER and out.finish_reason == "stop"
    assert out.prompt_tokens > 900 and out.completion_tokens > 0
    assert out.extra["replica"] == server.url and out.extra["attempts"] == 1


def test_jpeg_frames(server, make_client):
    make_client(server.url, image_format="jpeg").generate([request()])
    assert server.requests[0]["image_url_prefix"].startswith("data:image/jpeg;base64,")
    assert server.rejected == []


@pytest.mark.parametrize(
    ("mode", "owned_by", "expected"),
    [
        ("regex", "vllm", "regex"),
        ("grammar", "vllm", "grammar"),
        ("off", "vllm", None),
        ("auto", "vllm", "regex"),
        ("auto", "openai", None),  # not a vLLM server: no vLLM-only field
    ],
)
def test_structured_outputs_in_request(make_server, make_client, mode, owned_by, expected):
    server = make_server(owned_by=owned_by)
    make_client(server.url, structured_outputs=mode).generate([request()])
    so = server.requests[0].get("structured_outputs")
    if expected is None:
        assert so is None
    else:
        assert list(so) == [expected] and "bbox_2d" in so[expected]


@pytest.mark.parametrize("mode", ["regex", "grammar", "auto"])
def test_free_form_requests_are_never_constrained(make_server, make_client, mode):
    """The self-check loop's verdict (ReasonerRequest.structured=False) is not a segmentation answer: the
    reasoner used as its own verifier over vLLM must not force the answer grammar onto it."""
    import dataclasses

    server = make_server(owned_by="vllm")
    client = make_client(server.url, structured_outputs=mode)
    client.generate([dataclasses.replace(request(), structured=False), request()])
    free, constrained = sorted(server.requests, key=lambda r: "structured_outputs" in r)
    assert "structured_outputs" not in free and "structured_outputs" in constrained


def test_segzero_prompts_get_the_single_object_shape(make_server, make_client):
    server = make_server(models=["seg-zero-7b"], answer=SEGZERO_ANSWER)
    client = make_client(server.url, model="seg-zero-7b", structured_outputs="regex")
    [out] = client.generate([request(fmt="segzero")])
    assert server.requests[0]["structured_outputs"] == {"regex": answer_regex("single")}
    assert out.text == SEGZERO_ANSWER


def test_pipeline_end_to_end_with_registry_name(server):
    pipe = SegZeroPipeline.from_pretrained("visionreasoner-7b", BoxSegmenter(), reasoner_backend="openai",
                                           reasoner_kwargs={"base_url": server.url, "api_key_env": None, **FAST})
    try:
        assert pipe.reasoner.name == "openai"
        result = pipe.segment(COFFEE, "What can I have if I'm thirsty?")
    finally:
        pipe.close()
    assert result.parse_status.value == "ok" and len(result.objects) == 2
    assert result.reasoning == "The cup holds coffee."
    assert result.objects[0].box == (int(168 * 600 / 840 + 0.5), int(126 * 400 / 840 + 0.5),
                                     int(588 * 600 / 840 + 0.5), int(672 * 400 / 840 + 0.5))
    [rec] = server.requests
    assert rec["model"] == "visionreasoner-7b" and rec["max_tokens"] == 2048  # the registry's budget
    assert rec["prompt"] == build_prompt("What can I have if I'm thirsty?", "visionreasoner")


def test_pipeline_grounding_format_for_base_models(make_server):
    server = make_server(models=["qwen2.5-vl-7b-instruct"])
    with SegZeroPipeline.from_pretrained("qwen2.5-vl-7b-instruct", BoxSegmenter(), reasoner_backend="openai",
                                         reasoner_kwargs={"base_url": server.url, "api_key_env": None}) as pipe:
        result = pipe.segment(COFFEE, "the cup")
    rec = server.requests[0]
    assert rec["model"] == "qwen2.5-vl-7b-instruct" and rec["max_tokens"] == 1024
    assert rec["prompt"].startswith("Locate every object") and len(result.objects) == 2


def test_served_under_the_hub_id_only(make_server, make_client):
    """A server started as plain `vllm serve Ricky06662/VisionReasoner-7B` knows only the hub id."""
    server = make_server(models=["Ricky06662/VisionReasoner-7B"])
    client = make_client(server.url, model="visionreasoner-7b")
    client.generate([request()])
    assert server.requests[0]["model"] == "Ricky06662/VisionReasoner-7B" and client.model == server.requests[0]["model"]


def test_explicit_model_name_for_hosted_endpoints(make_server, make_client):
    server = make_server(models=["qwen-vl-max"], owned_by="system")
    client = make_client(server.url, model="qwen2.5-vl-7b-instruct", model_name="qwen-vl-max")
    client.generate([request()])
    assert server.requests[0]["model"] == "qwen-vl-max" and "structured_outputs" not in server.requests[0]


# --- concurrency -----------------------------------------------------------------------------


def test_64_concurrent_asegment_calls(make_server):
    server = make_server(delay=0.2)
    pipe = SegZeroPipeline.from_pretrained("visionreasoner-7b", BoxSegmenter(), reasoner_backend="openai",
                                           reasoner_kwargs={"base_url": server.url, "api_key_env": None})

    async def run():
        return await asyncio.gather(*(pipe.asegment(PLAIN, f"thing {i}") for i in range(64)))

    try:
        results = asyncio.run(run())
    finally:
        pipe.close()
    assert len(results) == 64 and all(len(r.objects) == 2 for r in results)
    assert len(server.requests) == 64 and server.rejected == []
    # no client-side serialisation (the server counts requests in flight at once; no wall-clock check,
    # which a loaded machine makes flaky)
    assert server.max_in_flight > 8, server.max_in_flight


def test_segment_many_sends_requests_concurrently(make_server):
    server = make_server(delay=0.3)
    with SegZeroPipeline.from_pretrained("visionreasoner-7b", BoxSegmenter(), reasoner_backend="openai",
                                         reasoner_kwargs={"base_url": server.url, "api_key_env": None}) as pipe:
        results = pipe.segment_many([(PLAIN, f"query {i}") for i in range(8)], progress=False)
    assert [len(r.objects) for r in results] == [2] * 8
    starts = [r["t_start"] for r in server.requests]
    ends = [r["t_end"] for r in server.requests]
    assert max(starts) < min(ends), "the requests did not overlap in time"


def test_concurrency_limit_is_respected(make_server, make_client):
    server = make_server(delay=0.1)
    client = make_client(server.url, max_concurrency=3)
    outs = client.generate([request() for _ in range(12)])
    assert len(outs) == 12
    assert server.max_in_flight == 3


def test_sync_callers_in_threads_share_the_client(make_server, make_client):
    server = make_server(delay=0.1)
    client = make_client(server.url)
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(len(client.generate([request()])))) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [1] * 10 and server.max_in_flight > 1


# --- replicas --------------------------------------------------------------------------------


def test_replicas_share_the_load(make_server, make_client):
    a, b = make_server(delay=0.05), make_server(delay=0.05)
    client = make_client(f"{a.url},{b.url}")
    client.generate([request() for _ in range(20)])
    assert len(a.requests) + len(b.requests) == 20
    assert 7 <= len(a.requests) <= 13, (len(a.requests), len(b.requests))
    for _ in range(6):  # one at a time: round-robin
        client.generate([request()])
    assert len(a.requests) + len(b.requests) == 26 and abs(len(a.requests) - len(b.requests)) <= 6


def test_a_dead_replica_is_skipped(make_server, make_client):
    a, b = make_server(), make_server()
    client = make_client([a.url, b.url], replica_cooldown=60)
    client.generate([request()])
    a.stop()
    before = len(b.requests)
    outs = client.generate([request() for _ in range(10)])
    assert len(outs) == 10 and len(b.requests) - before == 10
    stats = {s["url"]: s for s in client.replica_stats()}
    assert stats[a.url]["skipped"] and stats[a.url]["failed"] >= 1  # concurrent picks before the first failure
    for _ in range(5):  # now it is skipped: no more attempts on it
        client.generate([request()])
    assert client.replica_stats()[0]["failed"] == stats[a.url]["failed"] and len(b.requests) - before == 15


# --- faults ----------------------------------------------------------------------------------


def test_500_is_retried(server, make_client):
    server.faults.append(("status", 500))
    [out] = make_client(server.url).generate([request()])
    assert out.text == ANSWER and out.extra["attempts"] == 2


def test_5xx_until_retries_run_out(server, make_client):
    server.faults.extend([("status", 503)] * 3)
    with pytest.raises(ReasonerHTTPError, match="HTTP 503") as info:
        make_client(server.url, max_retries=2).generate([request()])
    assert info.value.status == 503 and info.value.attempts == 3 and info.value.exit_code == 8


def test_429_retry_after_is_honoured(server, make_client):
    client = make_client(server.url)
    client.generate([request()])  # discovery done; now time the 429 alone
    server.faults.append(("retry_after", "1"))
    t0 = time.perf_counter()
    [out] = client.generate([request()])
    waited = time.perf_counter() - t0
    assert out.extra["attempts"] == 2 and 1.0 <= waited < 2.5


def test_retry_after_header_forms():
    assert retry_after_seconds("3") == 3.0 and retry_after_seconds("0.5") == 0.5
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    date = "Wed, 21 Oct 2015 07:28:00 GMT"
    import email.utils

    now = email.utils.parsedate_to_datetime(date).timestamp() - 2
    assert retry_after_seconds(date, now=now) == pytest.approx(2.0)
    assert retry_after_seconds(date, now=now + 10) == 0.0


def test_400_is_not_retried(server, make_client):
    server.faults.append(("status", 400))
    with pytest.raises(ReasonerHTTPError, match="refused the request: HTTP 400") as info:
        make_client(server.url).generate([request()])
    assert info.value.attempts == 1 and server.hits["chat"] == 1


def test_invalid_request_is_reported_not_retried(server, make_client):
    client = make_client(server.url, extra_body={"structured_output": {"regex": "x"}})  # a typo
    with pytest.raises(ReasonerHTTPError, match="unknown request fields"):
        client.generate([request()])
    assert server.hits["chat"] == 1


def test_timeouts_are_retried_then_typed(server, make_client):
    server.faults.extend([("sleep", 1.0), ("sleep", 1.0)])
    client = make_client(server.url, timeout=0.3, max_retries=1)
    client.served_models()  # discovery itself is not slowed down
    t0 = time.perf_counter()
    with pytest.raises(ReasonerTimeoutError, match="within 0.3 s") as info:
        client.generate([request()])
    assert info.value.attempts == 2 and time.perf_counter() - t0 < 2.0


def test_dropped_connection_is_retried(server, make_client):
    server.faults.append(("drop",))
    [out] = make_client(server.url).generate([request()])
    assert out.text == ANSWER and out.extra["attempts"] == 2


def test_dropped_connections_until_retries_run_out(server, make_client):
    server.faults.extend([("drop",)] * 2)
    with pytest.raises(ReasonerConnectionError, match="lost the connection"):
        make_client(server.url, max_retries=1).generate([request()])


@pytest.mark.parametrize("body", ["this is not json", '{"choices": []}', '{"choices": [{"message": 3}]}'])
def test_malformed_body_is_a_typed_error(server, make_client, body):
    server.faults.append(("malformed", body))
    with pytest.raises(ReasonerResponseError, match="answered HTTP 200"):
        make_client(server.url).generate([request()])
    assert server.hits["chat"] == 1


def test_unknown_model_lists_served_models(server, make_client):
    with pytest.raises(UnknownServedModelError) as info:
        make_client(server.url, model="seg-zero-7b").generate([request()])
    message = str(info.value)
    assert "'seg-zero-7b' is not served" in message and "visionreasoner-7b" in message
    assert "segzero serve-reasoner --model seg-zero-7b" in message
    assert isinstance(info.value, UnknownModelError) and info.value.exit_code == 4
    assert "visionreasoner-7b" in info.value.served and server.hits["chat"] == 0


def test_unknown_model_without_discovery_uses_the_404(server, make_client):
    with pytest.raises(UnknownServedModelError, match="the server serves: visionreasoner-7b"):
        make_client(server.url, model="seg-zero-7b", discover=False).generate([request()])
    assert server.hits["chat"] == 1 and server.rejected[0][0] == 404


def test_server_down_says_how_to_start_it(make_client):
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    with pytest.raises(ReasonerConnectionError) as info:
        make_client(url, max_retries=1).generate([request()])
    message = str(info.value)
    assert f"cannot connect to {url}" in message
    assert "is `vllm serve` running" in message and "segzero serve-reasoner --model visionreasoner-7b" in message
    assert info.value.exit_code == 8 and isinstance(info.value, ReasonerServiceError)


# --- health ----------------------------------------------------------------------------------


def test_health_check(make_server, make_client):
    ok, sick, bare = make_server(), make_server(health="fail"), make_server(health="missing")
    down = f"http://127.0.0.1:{_closed_port()}/v1"
    report = make_client([ok.url, sick.url, bare.url, down]).health()
    by_url = {h.url: h for h in report}
    assert by_url[ok.url].ok and by_url[ok.url].endpoint == ok.root + "/health"
    assert not by_url[sick.url].ok and by_url[sick.url].status == 503
    assert by_url[bare.url].ok and by_url[bare.url].endpoint == bare.url + "/models"  # fallback
    assert not by_url[down].ok and "cannot connect" in by_url[down].detail
    with pytest.raises(ReasonerConnectionError, match="no healthy reasoner server"):
        make_client(down).check_health()


# --- API keys --------------------------------------------------------------------------------


def test_api_key_from_env_is_sent_and_never_shown(make_server, make_client, monkeypatch, caplog):
    secret = "sk-test-0123456789abcdef"
    server = make_server(api_key=secret)
    monkeypatch.setenv("SEGZERO_TEST_REASONER_KEY", secret)
    caplog.set_level(logging.DEBUG)
    client = make_client(server.url, api_key_env="SEGZERO_TEST_REASONER_KEY")
    client.generate([request()])
    assert set(server.auth_headers) == {f"Bearer {secret}"}
    assert secret not in repr(client) and "SEGZERO_TEST_REASONER_KEY" in repr(client)
    assert secret not in caplog.text


def test_wrong_or_missing_api_key(make_server, make_client, monkeypatch):
    server = make_server(api_key="right")
    monkeypatch.setenv("SEGZERO_TEST_REASONER_KEY", "wrong")
    with pytest.raises(ReasonerAuthError, match=r"\$SEGZERO_TEST_REASONER_KEY"):
        make_client(server.url, api_key_env="SEGZERO_TEST_REASONER_KEY").generate([request()])
    with pytest.raises(ReasonerAuthError, match="no key was sent"):
        make_client(server.url).generate([request()])


# --- cancellation ----------------------------------------------------------------------------


def test_cancel_token_stops_a_running_generate(make_server, make_client):
    server = make_server(delay=3.0)
    client = make_client(server.url)
    client.served_models()
    token = CancelToken()
    threading.Timer(0.3, token.cancel).start()
    t0 = time.perf_counter()
    with cancellation(token), pytest.raises(OperationCancelled):
        client.generate([request() for _ in range(4)])
    assert time.perf_counter() - t0 < 1.5


def test_cancel_token_is_checked_between_retries(server, make_client):
    client = make_client(server.url)
    client.served_models()
    server.faults.append(("retry_after", "5"))
    token = CancelToken()

    async def run():
        with cancellation(token):
            task = asyncio.ensure_future(client.agenerate([request()]))
        await asyncio.sleep(0.3)
        token.cancel()
        return await task

    t0 = time.perf_counter()
    with pytest.raises(OperationCancelled):
        asyncio.run(run())
    assert time.perf_counter() - t0 < 1.5


def test_cancelling_the_awaiting_task_cancels_the_request(make_server, make_client):
    server = make_server(delay=3.0)
    client = make_client(server.url)

    async def run():
        task = asyncio.ensure_future(client.agenerate([request()]))
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    t0 = time.perf_counter()
    asyncio.run(run())
    assert time.perf_counter() - t0 < 1.5
    deadline = time.monotonic() + 1.0  # the client thread closes the HTTP request right after
    while client.replica_stats()[0]["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert client.replica_stats()[0]["in_flight"] == 0


# --- small things ----------------------------------------------------------------------------


def test_base_urls():
    assert normalize_base_url("http://h:8000") == "http://h:8000/v1"
    assert normalize_base_url("http://h:8000/v1/") == "http://h:8000/v1"
    assert normalize_base_url("https://api.example.com/compatible-mode/v1") == "https://api.example.com/compatible-mode/v1"
    assert split_base_urls("http://a:1, http://b:2/v1,") == ["http://a:1/v1", "http://b:2/v1"]
    assert split_base_urls(None) == ["http://127.0.0.1:8000/v1"]
    for bad in ("localhost:8000", "ftp://h/v1", ""):
        with pytest.raises(ReasonerConfigError):
            split_base_urls(bad) if bad else split_base_urls([bad])


def test_bad_settings_are_config_errors():
    with pytest.raises(ReasonerConfigError, match="structured_outputs"):
        OpenAICompatReasoner("m", structured_outputs="json")
    with pytest.raises(ReasonerConfigError, match="image_format"):
        OpenAICompatReasoner("m", image_format="webp")
    with pytest.raises(ReasonerConfigError, match="max_concurrency"):
        OpenAICompatReasoner("m", max_concurrency=0)
    with pytest.raises(ReasonerConfigError, match="base_url or base_urls"):
        OpenAICompatReasoner.from_pretrained("m", base_url="http://a", base_urls=["http://b"])


def test_empty_and_closed(make_client, server):
    client = make_client(server.url)
    assert client.generate([]) == []
    client.close()
    client.close()
    with pytest.raises(RuntimeError, match="closed"):
        client.generate([request()])


def test_backends_are_registered():
    assert resolve_reasoner_class("openai") is OpenAICompatReasoner
    assert resolve_reasoner_class("vllm").__name__ == "VLLMReasoner"


def test_importing_the_backends_is_light():
    code = (
        "import sys, segzero_tool, segzero_tool.backends, segzero_tool.serve, segzero_tool.cli;"
        "import segzero_tool.reasoners.openai_compat, segzero_tool.reasoners.vllm_inprocess;"
        "import segzero_tool.reasoners.structured;"
        "print(','.join(m for m in ('httpx', 'vllm', 'torch', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
