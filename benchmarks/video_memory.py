"""Video tracking memory: the process's resident memory stays flat over a long clip.

``track_video`` is given a 1,000-frame synthetic clip (``segzero_tool.testing.synthetic_video.moving_shapes``,
drawn one frame at a time by a generator: no frame list is ever held), the way a live camera feeds it, with
``out`` set (``frames.jsonl``, ``tracks.json``, ``overlay.mp4`` written as it goes). The pipeline is the real
``SegZeroPipeline`` with

* a reasoner defined here through the public ``Reasoner`` interface (:class:`ShapesReasoner`): it finds the
  three coloured shapes on the reasoning frame it is given and answers their boxes in the VisionReasoner
  format, as a model would;
* the tiny SAM2 checkpoint of the unit tests (``build_tiny_sam2_video``, random weights), loaded as the image
  segmenter (``TransformersSam2Segmenter``) and as the video tracker (``load_tracker``) from the same folder.

Every ``--sample-every`` frames (default 50) the script records the process RSS (``psutil`` when installed, else
``/proc/self/statm``) and the sizes of what the tracker keeps between frames (the transformers inference
session: frames of pixels, vision-feature cache entries, per object the non-conditioning and conditioning
outputs and the mask prompts). It reports RSS at 10%, 50% and 100% of the clip (frames 100 / 500 / 1000 by
default) and the least-squares slope of RSS from the baseline frame (``min(200, frames // 2)``: frame 200 of
the default 1,000) to the end, in MB per 100 frames. Torch runs on one thread by default (``--threads``).

The check: the script exits 1 when RSS grows by more than ``--max-growth-mb`` (default 16 MB) between the
baseline frame and the end, or when the tracker keeps more than one frame of pixels or more per-object outputs
than its memory window; else 0.

Usage::

    python benchmarks/video_memory.py                          # 1,000 frames of 320x240 -> results/video_memory_cpu.*
    python benchmarks/video_memory.py --frames 400 --size 160x120 --no-write  # a quicker check
    python benchmarks/video_memory.py --key-frames every:100   # re-asking the reasoner every 100 frames

Writes ``results/video_memory_cpu.{json,md}``; ``--no-write`` only prints.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_model, write_result  # noqa: E402

from segzero_tool.reasoners.base import Reasoner, ReasonerOutput, ReasonerRequest  # noqa: E402

QUERY = "the red rectangle, the blue circle and the green triangle"
MB = 1024 * 1024


class ShapesReasoner(Reasoner):
    """Finds ``moving_shapes``' three shapes by their colours on the reasoning frame and answers their boxes."""

    name = "shapes"
    model_id = "shapes (benchmarks/video_memory.py)"

    def __init__(self) -> None:
        from segzero_tool.testing.synthetic_video import COLOURS

        self.colours = COLOURS
        self.calls = 0

    def generate(self, requests: Sequence[ReasonerRequest]) -> list[ReasonerOutput]:
        out = []
        for request in requests:
            self.calls += 1
            pixels = np.asarray(request.image.convert("RGB"), dtype=np.int16)
            objects = []
            for oid in sorted(self.colours):
                near = np.abs(pixels - np.array(self.colours[oid], np.int16)).max(axis=2) <= 24
                ys, xs = np.nonzero(near)
                if len(xs) < 4:
                    continue
                x1, y1, x2, y2 = int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())
                objects.append(f'{{"bbox_2d": [{x1},{y1},{x2},{y2}], "point_2d": [{int(np.median(xs))},'
                               f'{int(np.median(ys))}]}}')
            text = f"<think>{len(objects)} shapes by colour</think><answer>[{', '.join(objects)}]</answer>"
            out.append(ReasonerOutput(text, finish_reason="stop"))
        return out


def rss_bytes() -> int:
    """Resident set size of this process."""
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except ImportError:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _tracker_sizes(tracker: Any) -> dict[str, int]:
    """What the tracker's transformers inference session holds now (``_session``: the tracker's own state)."""
    session = getattr(tracker, "_session", None)
    if session is None:
        return {}
    per_obj = list(session.output_dict_per_obj.values())
    return {
        "processed_frames": len(session.processed_frames or {}),
        "vision_feature_cache": len(getattr(session.cache, "_vision_features", {})),
        "objects": len(per_obj),
        "non_cond_outputs_max": max((len(v["non_cond_frame_outputs"]) for v in per_obj), default=0),
        "cond_outputs_max": max((len(v["cond_frame_outputs"]) for v in per_obj), default=0),
        "mask_inputs_max": max((len(v) for v in session.mask_inputs_per_obj.values()), default=0),
    }


def _size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)x(\d+)", text.strip().lower())
    if not match or int(match[1]) < 32 or int(match[2]) < 32:
        raise argparse.ArgumentTypeError(f"--size must be WIDTHxHEIGHT, at least 32x32 (got {text!r})")
    return int(match[1]), int(match[2])


def slope_mb_per_100(samples: list[dict[str, Any]], start: int) -> float:
    """Least-squares slope of RSS (MB) over frames, from frame ``start`` on, per 100 frames."""
    pts = [(s["frame"], s["rss_mb"]) for s in samples if s["frame"] >= start]
    if len(pts) < 2:
        return 0.0
    x = np.array([p[0] for p in pts], float)
    y = np.array([p[1] for p in pts], float)
    return float(np.polyfit(x, y, 1)[0] * 100.0)


def _frames(n: int, size: tuple[int, int]) -> Iterator[np.ndarray]:
    """The clip, one frame at a time (nothing kept)."""
    from segzero_tool.testing.synthetic_video import moving_shapes

    for frame in moving_shapes(n, width=size[0], height=size[1]):
        yield frame.image


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from segzero_tool import SegZeroPipeline
    from segzero_tool.segmenters.transformers_sam2 import TransformersSam2Segmenter
    from segzero_tool.testing.tiny_sam2 import build_tiny_sam2_video
    from segzero_tool.video.track import FRAMES_FILE, OVERLAY_FILE, track_video
    from segzero_tool.video.tracker import load_tracker

    torch.set_num_threads(max(1, args.threads))
    samples: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="segzero-video-memory-") as tmp:
        folder = build_tiny_sam2_video(Path(tmp) / "tiny-sam2-video")
        segmenter = TransformersSam2Segmenter.from_pretrained(str(folder), device="cpu", progress=False)
        tracker = load_tracker(str(folder), device="cpu", progress=False)
        reasoner = ShapesReasoner()
        pipeline = SegZeroPipeline(reasoner, segmenter)
        every = args.sample_every
        t0 = time.perf_counter()

        def sample(frame: int) -> None:
            samples.append({"frame": frame, "rss_mb": rss_bytes() / MB, "s": time.perf_counter() - t0,
                            **_tracker_sizes(tracker)})

        def on_frame(result: Any) -> None:
            done = result.index + 1
            if done == 1 or done % every == 0 or done == args.frames:
                sample(done)
                last = samples[-1]
                print(f"frame {done}: RSS {last['rss_mb']:.1f} MB, {len(result.track_ids)} visible, tracker keeps "
                      f"{last.get('processed_frames')} frame(s), <= {last.get('non_cond_outputs_max')} outputs per "
                      f"object ({last['s']:.0f} s)", flush=True)

        rss_start = rss_bytes() / MB
        out_dir = Path(tmp) / "run"
        result = track_video(pipeline, _frames(args.frames, args.size), QUERY, tracker=tracker, out=out_dir,
                             key_frames=args.key_frames, overlay=not args.no_overlay, fps=10, on_frame=on_frame)
        total_s = time.perf_counter() - t0
        disk = {"frames_jsonl_bytes": (out_dir / FRAMES_FILE).stat().st_size,
                "overlay_bytes": (out_dir / OVERLAY_FILE).stat().st_size if not args.no_overlay else 0}
        tracks = [{"track_id": t.track_id, "frames_present": t.frames_present, "status": t.status}
                  for t in result.tracks]
        window = int(tracker.memory_window)
        tracker.close()
    return {"samples": samples, "rss_before_run_mb": rss_start, "total_s": total_s, "frames_done": result.frames_done,
            "key_frames": len(result.key_frames), "reasoner_calls": reasoner.calls, "tracks": tracks,
            "memory_window": window, "disk": disk}


def verdict(data: dict[str, Any], frames: int, max_growth_mb: float) -> dict[str, Any]:
    """Baseline / end RSS, growth, slope, and whether the claim holds."""
    samples = data["samples"]
    start = min(200, frames // 2)
    base = min((s for s in samples if s["frame"] >= start), key=lambda s: s["frame"])
    end = samples[-1]
    growth = end["rss_mb"] - base["rss_mb"]
    peak_after = max(s["rss_mb"] for s in samples if s["frame"] >= base["frame"])
    points = {}
    for frac in (0.1, 0.5, 1.0):
        target = max(1, round(frames * frac))
        near = min(samples, key=lambda s, t=target: abs(s["frame"] - t))
        points[str(near["frame"])] = round(near["rss_mb"], 1)
    failures = []
    if growth > max_growth_mb:
        failures.append(f"RSS grew {growth:.1f} MB between frame {base['frame']} and frame {end['frame']} "
                        f"(bound {max_growth_mb:g} MB)")
    kept_frames = max(s.get("processed_frames", 0) for s in samples)
    kept_outputs = max(s.get("non_cond_outputs_max", 0) for s in samples)
    if kept_frames > 1:
        failures.append(f"the tracker kept {kept_frames} frames of pixels (expected 1)")
    if kept_outputs > data["memory_window"] + 1:
        failures.append(f"the tracker kept {kept_outputs} outputs for one object (window {data['memory_window']})")
    return {"baseline_frame": base["frame"], "baseline_rss_mb": base["rss_mb"], "end_frame": end["frame"],
            "end_rss_mb": end["rss_mb"], "growth_mb": growth, "peak_after_baseline_mb": peak_after,
            "slope_mb_per_100_frames": slope_mb_per_100(samples, base["frame"]), "rss_at": points,
            "max_growth_mb": max_growth_mb, "tracker_frames_max": kept_frames, "tracker_outputs_max": kept_outputs,
            "cond_outputs_max": max(s.get("cond_outputs_max", 0) for s in samples), "failures": failures,
            "flat": not failures}


def _markdown(data: dict[str, Any], check: dict[str, Any], args: argparse.Namespace, machine_line: str) -> str:
    w, h = args.size
    rows = [f"| RSS at frame {k} | {v:.1f} MB |" for k, v in check["rss_at"].items()]
    rows += [
        f"| RSS growth, frame {check['baseline_frame']} -> {check['end_frame']} | {check['growth_mb']:+.1f} MB "
        f"(bound {check['max_growth_mb']:g} MB) |",
        f"| **slope** from frame {check['baseline_frame']} | **{check['slope_mb_per_100_frames']:+.2f} MB per 100 "
        f"frames** |",
        f"| peak RSS after frame {check['baseline_frame']} | {check['peak_after_baseline_mb']:.1f} MB |",
        f"| tracker: frames of pixels kept (max) | {check['tracker_frames_max']} |",
        f"| tracker: non-conditioning outputs per object (max; window {data['memory_window']}) | "
        f"{check['tracker_outputs_max']} |",
        f"| tracker: conditioning outputs per object (max; frames where it was prompted) | "
        f"{check['cond_outputs_max']} |",
        f"| key frames / reasoner calls | {data['key_frames']} / {data['reasoner_calls']} |",
        f"| frames.jsonl / overlay.mp4 on disk | {data['disk']['frames_jsonl_bytes'] / MB:.1f} MB / "
        f"{data['disk']['overlay_bytes'] / MB:.1f} MB |",
        f"| run time | {data['total_s']:.0f} s ({data['frames_done'] / data['total_s']:.1f} frames/s) |",
    ]
    table = "\n".join(["| | |", "|---|---|", *rows])
    samples = "\n".join(
        f"| {s['frame']} | {s['rss_mb']:.1f} | {s.get('processed_frames', '')} | {s.get('non_cond_outputs_max', '')} "
        f"| {s.get('cond_outputs_max', '')} | {s.get('vision_feature_cache', '')} |" for s in data["samples"])
    verdict_line = ("**Flat**: within the bound." if check["flat"] else "**NOT flat**: " + "; ".join(check["failures"]))
    return (
        f"# Video tracking memory over {data['frames_done']} frames (CPU)\n\n{machine_line}\n\n"
        f"`track_video` on a {w}x{h} `moving_shapes` clip streamed by a generator, key frames `{args.key_frames}`, "
        f"the tiny SAM2 video checkpoint (random weights) as segmenter and tracker, a colour-finding reasoner; "
        f"`out` set, overlay {'off' if args.no_overlay else 'on'}. RSS sampled every {args.sample_every} frames.\n\n"
        f"{verdict_line}\n\n{table}\n\n"
        "| frame | RSS MB | tracker frames | outputs / object | cond outputs / object | vision cache |\n"
        "|---|---|---|---|---|---|\n" + samples + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=1000, help="frames in the clip (default 1000)")
    ap.add_argument("--size", type=_size, default=(320, 240), help="frame size WIDTHxHEIGHT (default 320x240)")
    ap.add_argument("--sample-every", type=int, default=50, help="frames between RSS samples (default 50)")
    ap.add_argument("--key-frames", default="first", help="key-frame policy: first (default), every:N, every:Ns")
    ap.add_argument("--max-growth-mb", type=float, default=16.0,
                    help="RSS growth allowed from the baseline frame to the end (default 16 MB)")
    ap.add_argument("--no-overlay", action="store_true", help="do not write overlay.mp4")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (default 1: this measures memory, and a tiny model on a shared machine "
                         "runs several times faster on one thread than on two)")
    ap.add_argument("--no-write", action="store_true", help="print only; leave results/ alone")
    args = ap.parse_args(argv)
    if args.frames < 10 or args.sample_every < 1:
        ap.error("--frames must be >= 10 and --sample-every >= 1")

    from segzero_tool.video.keyframes import KeyFrames

    try:
        KeyFrames.parse(args.key_frames)
    except Exception as exc:  # SettingsError: one line, not a traceback
        ap.error(str(exc))

    load_before = os.getloadavg()
    data = run(args)
    load_after = os.getloadavg()
    check = verdict(data, args.frames, args.max_growth_mb)

    import torch
    import transformers

    machine_line = (f"Machine: {cpu_model() or 'CPU'}, {os.cpu_count()} cores; torch {torch.__version__}, "
                    f"transformers {transformers.__version__}; {time.strftime('%Y-%m-%d')}; load average "
                    f"{load_before[0]:.1f} before, {load_after[0]:.1f} after.")
    md = _markdown(data, check, args, machine_line)
    print(md)
    print(f"slope {check['slope_mb_per_100_frames']:+.2f} MB per 100 frames; RSS growth frame "
          f"{check['baseline_frame']} -> {check['end_frame']}: {check['growth_mb']:+.1f} MB "
          f"(bound {args.max_growth_mb:g} MB)")
    if not args.no_write:
        write_result("video_memory_cpu", {"frames": args.frames, "frame_size": list(args.size),
                                          "key_frames": args.key_frames, "overlay": not args.no_overlay,
                                          "sample_every": args.sample_every, "loadavg_1_5_15_before": load_before,
                                          "loadavg_1_5_15_after": load_after, "check": check, **data}, md)
        print("wrote results/video_memory_cpu.json and .md")
    if not check["flat"]:
        print("memory NOT flat: " + "; ".join(check["failures"]), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
