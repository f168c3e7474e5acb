"""The progress context: sinks, threads, tqdm bars, and errors that never break the work."""

from __future__ import annotations

import asyncio

from segzero_tool.progress import Progress, current_sink, progress_reporting, report


def test_report_without_a_sink_does_nothing():
    assert current_sink() is None
    report("reasoning", "nothing listens")  # no error


def test_sink_sees_reports_in_worker_threads_and_is_reset():
    seen: list[Progress] = []

    async def main():
        with progress_reporting(seen.append):
            await asyncio.to_thread(report, "reasoning", "generated 3/10 tokens", 3, 10)
        await asyncio.to_thread(report, "reasoning", "after", 4, 10)

    asyncio.run(main())
    assert seen == [Progress("reasoning", "generated 3/10 tokens", 3, 10)]
    assert seen[0].fraction == 0.3 and Progress("x", "y").fraction is None and Progress("x", "y", 5, 0).fraction is None


def test_tqdm_bars_created_under_a_sink_report_and_others_do_not():
    from tqdm.auto import tqdm

    seen: list[Progress] = []
    with progress_reporting(seen.append):
        with tqdm(total=3, desc="Loading checkpoint shards", disable=True) as bar:
            for _ in range(3):
                bar.update(1)
    outside = tqdm(total=2, disable=True)
    outside.update(2)
    outside.close()
    assert [e.message for e in seen][-1] == "Loading checkpoint shards: 3/3"
    assert all(e.stage == "loading" for e in seen) and len(seen) == 3


def test_a_failing_sink_never_raises():
    def broken(event):
        raise RuntimeError("down")

    with progress_reporting(broken):
        report("loading", "still fine")
