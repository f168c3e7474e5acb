"""Cooperative cancellation: a cancelled call stops at the next check, in threads too."""

import asyncio
import threading

import numpy as np
import pytest
from scripted import BoxSegmenter, ScriptedReasoner

from segzero_tool import SegZeroPipeline
from segzero_tool.cancel import CancelToken, OperationCancelled, cancellation, check_cancelled, is_cancelled

ANSWER = '<think>t</think><answer>[{"bbox_2d": [1,1,5,5], "point_2d": [2,2]}]</answer>'


def test_token_basics():
    check_cancelled()  # no token: nothing happens
    token = CancelToken()
    with cancellation(token):
        assert not is_cancelled()
        token.cancel("client went away")
        assert is_cancelled()
        with pytest.raises(OperationCancelled, match="client went away"):
            check_cancelled()
    check_cancelled()  # reset on exit


def test_cancel_during_reasoning_stops_before_segmenting():
    token = CancelToken()

    class CancellingReasoner(ScriptedReasoner):
        def generate(self, requests):
            token.cancel()  # the client cancels while the model is busy
            return super().generate(requests)

    seg = BoxSegmenter()
    pipe = SegZeroPipeline(CancellingReasoner(ANSWER), seg)
    with cancellation(token), pytest.raises(OperationCancelled):
        pipe.segment(np.zeros((8, 8, 3), np.uint8), "x")
    assert seg.calls == []


def test_token_reaches_worker_threads():
    started, release = threading.Event(), threading.Event()

    class SlowReasoner(ScriptedReasoner):
        def generate(self, requests):
            started.set()
            release.wait(5)
            return super().generate(requests)

    seg = BoxSegmenter()
    pipe = SegZeroPipeline(SlowReasoner(ANSWER), seg)

    async def main():
        token = CancelToken()
        with cancellation(token):
            task = asyncio.ensure_future(asyncio.to_thread(pipe.segment, np.zeros((8, 8, 3), np.uint8), "x"))
        await asyncio.to_thread(started.wait, 5)
        token.cancel()
        release.set()
        with pytest.raises(OperationCancelled):
            await task

    asyncio.run(main())
    assert seg.calls == []


class _CancelAfterReads(CancelToken):
    """Turns cancelled after ``k`` reads of ``cancelled`` (one read per generated token)."""

    __slots__ = ("k", "reads")

    def __init__(self, k):
        super().__init__()
        self.k, self.reads = k, 0

    @property
    def cancelled(self):
        self.reads += 1
        if self.reads >= self.k:
            self._event.set()
        return self._event.is_set()


@pytest.mark.slow
def test_transformers_generation_stops_within_a_token(tiny_models):
    from PIL import Image

    from segzero_tool.reasoners.base import ReasonerRequest
    from segzero_tool.reasoners.transformers import TransformersReasoner

    r = TransformersReasoner.from_pretrained(str(tiny_models["reasoner"]), device="cpu")
    req = ReasonerRequest(Image.new("RGB", (56, 56)), "hi", max_new_tokens=200)
    full = r.generate([req])[0]
    assert full.completion_tokens > 10  # without a token it runs on
    token = _CancelAfterReads(3)
    with cancellation(token), pytest.raises(OperationCancelled):
        r.generate([req])
    assert token.reads <= 4  # stopped after ~3 decoding steps, not 200
