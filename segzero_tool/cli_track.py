"""``segzero track``: reason on key frames of a video, track every object through it (a thin adapter over
:func:`segzero_tool.video.track.track_video`).

    segzero track VIDEO QUERY --out DIR [--key-frames first|every:N|every:Ns] [--tracker MODEL] [--match-iou 0.5]
                  [--max-frames N] [--fps F] [--no-overlay] [--restart] [--json] [model options]

Everything cheap (query, key-frame spec, output folder, the video's container and size) is checked before any model
loads. Run the same command again after an interruption and it resumes after the last frame written.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .settings import SettingsError


def add_parsers(sub: Any) -> list[argparse.ArgumentParser]:
    """Add ``track`` to ``segzero``'s subparsers."""
    from .cli import _add_model_options

    p = sub.add_parser(
        "track", help="reason on key frames of a video and track every object through it (SAM2 video)",
        description="The reasoner answers QUERY on key frames (the first by default); SAM2's video predictor "
                    "carries each object through the clip with a stable id. Objects found again at a later key frame "
                    "are matched to their tracks by mask IoU, new ones start new tracks, lost ones are reported. "
                    "Writes frames.jsonl (per frame: ids, boxes, scores, COCO RLE masks; appended as frames finish), "
                    "tracks.json, track.json, timeline.png and overlay.mp4 into --out. Needs PyAV: pip install "
                    "'segzero-tool[video]'.")
    p.add_argument("video", help="video file (MP4, WebM, MOV, ...) or a folder of frame images")
    p.add_argument("query", help="what to find, in words")
    p.add_argument("--out", required=True, help="output folder; run again with the same folder to resume")
    p.add_argument("--key-frames", default="first", metavar="SPEC",
                   help="where the reasoner runs: first (default), every:N frames, or every:Ns seconds (every:2s)")
    p.add_argument("--tracker", help="SAM2 video checkpoint: registry name, hub id or folder (default: the "
                                     "segmenter's checkpoint, whose hub repository holds the video weights too)")
    p.add_argument("--match-iou", type=float, default=0.5,
                   help="mask IoU for a key-frame detection to continue a track (default 0.5)")
    p.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames")
    p.add_argument("--fps", type=float, help="frame rate of a folder of frames (for every:Ns and the overlay)")
    p.add_argument("--no-overlay", action="store_true", help="do not write overlay.mp4")
    p.add_argument("--restart", action="store_true", help="start over in a --out that holds another run")
    p.add_argument("--json", action="store_true", help="print the run's summary as JSON")
    _add_model_options(p)  # also --config and -v
    return [p]


def cmd_track(args: argparse.Namespace) -> int:
    from .cli import _settings_from_args, check_out_dir
    from .progress import Progress, progress_reporting
    from .prompts import validate_query
    from .video.keyframes import KeyFrames
    from .video.sources import open_video
    from .video.track import check_key_frame_times, check_out_settings, track_video

    settings = _settings_from_args(args)
    if settings.no_reasoner:
        raise SettingsError("track reasons on key frames, and --reasoner none loads no reasoner; pick a reasoner")
    # Everything cheap first: the models are gigabytes.
    validate_query(args.query)
    policy = KeyFrames.parse(args.key_frames)
    if not 0.0 < args.match_iou <= 1.0:
        raise SettingsError(f"--match-iou must be in (0, 1], got {args.match_iou}")
    if args.max_frames is not None and args.max_frames < 1:
        raise SettingsError(f"--max-frames must be at least 1, got {args.max_frames}")
    check_out_dir(args.out)
    with open_video(args.video, max_pixels=settings.max_pixels, fps=args.fps) as probe:
        info = probe.info
    check_key_frame_times(policy, info, args.fps)
    if not args.restart:  # another run in --out is refused now, not after minutes of model loading
        check_out_settings(args.out, {"query": args.query, "source": info.source, "key_frames": str(policy),
                                      "match_iou": float(args.match_iou), "max_frames": args.max_frames,
                                      "max_objects": settings.max_objects})
    if settings.device not in (None, "auto"):
        from .devices import resolve_device

        resolve_device(settings.device)
    print(f"loading models (reasoner: {settings.reasoner or settings.preset + ' preset'}, "
          f"segmenter: {settings.segmenter or settings.preset + ' preset'}) ...", file=sys.stderr, flush=True)
    pipe = settings.build_pipeline(with_verifier=False)
    tracker = None
    if args.tracker:
        from .video.tracker import load_tracker

        tracker = load_tracker(args.tracker, device=settings.device or "auto", dtype=settings.dtype or "auto")
    total = info.frame_count if args.max_frames is None or info.frame_count is None \
        else min(info.frame_count, args.max_frames)
    bar = _bar(total)

    def on_progress(event: Progress) -> None:
        if event.stage == "tracking" and event.done is not None and bar is not None:
            bar.n = int(event.done)
            bar.refresh()

    try:
        with progress_reporting(on_progress, tqdm_bars=False):
            run = track_video(pipe, args.video, args.query, tracker=tracker, out=args.out,
                              key_frames=args.key_frames, match_iou=args.match_iou, overlay=not args.no_overlay,
                              restart=args.restart, max_frames=args.max_frames, max_objects=settings.max_objects,
                              max_pixels=settings.max_pixels, fps=args.fps)
    finally:
        if bar is not None:
            bar.close()
    if args.json:
        print(json.dumps(run.to_dict(), indent=2))
    else:
        print(run.summary())
        files = "frames.jsonl, tracks.json, track.json, timeline.png" + ("" if args.no_overlay else " and overlay.mp4")
        print(f"wrote {files} in {args.out}")
    return 0


def _bar(total: int | None) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with transformers
        return None
    return tqdm(total=total, unit="frame", desc="tracking", file=sys.stderr, disable=None)


#: ``segzero`` subcommand -> handler.
COMMANDS = {"track": cmd_track}

__all__ = ["COMMANDS", "add_parsers", "cmd_track"]
