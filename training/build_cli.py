"""``segzero-train build-dataset SOURCE OUT``: a training set from images and masks, with a progress bar.

SOURCE is anything the evaluation harness reads: ReasonSeg in LISA's layout, RefCOCO / RefCOCO+ / RefCOCOg
in LISA's ``refer_seg`` layout, a hub copy, a ``save_to_disk`` folder, or the evaluation JSONL. OUT becomes a
``save_to_disk`` folder that ``segzero-train --dataset OUT`` trains on. An interrupted build continues when
the same command is run again. Exit status: 0 built, 2 bad arguments or data, 5 a missing package.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from segzero_tool.cli import OneLineErrorParser
from segzero_tool.errors import MissingDependencyError, SegZeroError

PROG = "segzero-train build-dataset"


def build_parser() -> argparse.ArgumentParser:
    p = OneLineErrorParser(
        prog=PROG,
        description="Build a training set (the published VisionReasoner / Seg-Zero columns, 840 frame) from "
                    "images and ground-truth masks. Interrupted builds resume when run again.",
    )
    p.add_argument("source", help="ReasonSeg (LISA) or RefCOCO (refer_seg) folder, evaluation .jsonl, hub id or "
                                  "save_to_disk folder")
    p.add_argument("out", help="folder to write (must not exist or be empty)")
    p.add_argument("--kind", choices=("visionreasoner", "segzero"), default="visionreasoner",
                   help="row format: visionreasoner (JSON list of objects, default) or segzero (one box, two points)")
    p.add_argument("--group-by-image", action="store_true",
                   help="one row per image holding all its objects (\"'t1' and 't2'\"), as VisionReasoner's "
                        "multi-object data; visionreasoner only")
    p.add_argument("--split", help="LISA subfolder / refer split / hub split (default: the loader's)")
    p.add_argument("--limit", type=int, metavar="N", help="use the first N samples")
    p.add_argument("--frame-size", type=int, default=840, help="square frame of the coordinates (default 840)")
    p.add_argument("--no-mask", dest="with_mask", action="store_false",
                   help="leave out the mask column (RLE in the frame, used by the mask_point reward)")
    p.add_argument("--sam-filter", metavar="MODEL",
                   help="keep an object only if SAM's mask from its box and point has IoU >= 0.6 with the ground "
                        "truth (the reference used facebook/sam2.1-hiera-large); hub id or folder")
    p.add_argument("--sam-backend", default="transformers",
                   help="segmenter backend for --sam-filter: transformers (default), sam2, or package.module:Class")
    p.add_argument("--device", default="auto", help="device for --sam-filter (auto, cpu, cuda, cuda:N)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="build rows in N processes (not with --sam-filter; default 1)")
    p.add_argument("--restart", action="store_true", help="discard a partial build in OUT.partial and start over")
    p.add_argument("--shard-size", type=int, default=256, metavar="N",
                   help="rows are saved every N images/samples, so an interrupted build loses at most that many")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return p


def _load_sam_filter(args: argparse.Namespace) -> Any:
    if not args.sam_filter:
        return None
    from segzero_tool.backends import build_backend, resolve_segmenter_class

    cls = resolve_segmenter_class(args.sam_backend)
    kwargs: dict[str, Any] = {"device": args.device}
    if args.sam_backend == "transformers":
        kwargs["progress"] = not args.quiet
    return build_backend(cls, args.sam_filter, kwargs)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from .build_data import BuildReport, build_training_dataset

    if args.limit is not None and args.limit < 1:
        print(f"{PROG}: error: --limit must be at least 1", file=sys.stderr)
        return 2
    if args.shard_size < 1:
        print(f"{PROG}: error: --shard-size must be at least 1", file=sys.stderr)
        return 2
    report = BuildReport()
    try:
        sam = _load_sam_filter(args)
        out = build_training_dataset(
            args.source, args.out, kind=args.kind, split=args.split, limit=args.limit, frame_size=args.frame_size,
            sam_filter=sam, sam_filter_name=args.sam_filter, progress=not args.quiet, with_mask=args.with_mask,
            group_by_image=args.group_by_image, shard_size=args.shard_size, restart=args.restart, report=report,
            workers=args.workers)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; run the same command again to continue", file=sys.stderr)
        return 130
    except SegZeroError as exc:
        print(f"{PROG}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 5 if isinstance(exc, MissingDependencyError) else 2
    resumed = f" (continued after {report.resumed_groups} already built)" if report.resumed_groups else ""
    print(f"wrote {out}: {report.summary()}{resumed}")
    print(f"train on it: segzero-train --recipe lora-24gb --dataset {out}"
          + (" --dataset-kind segzero --rewards segzero" if args.kind == "segzero" else ""))
    return 0
