"""The ``segzero`` command line.

    segzero segment IMAGE QUERY [--out DIR] [--reasoner ...] [--segmenter ...] [--json]
    segzero models
    segzero make-tiny-models DIR
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .errors import SegZeroError

log = logging.getLogger("segzero_tool")


def _add_model_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("models")
    g.add_argument("--preset", help="default (VisionReasoner-7B + SAM 2.1 large), light or paper")
    g.add_argument("--reasoner", help="registry name, hub id or local folder (default: the preset's)")
    g.add_argument("--segmenter", help="registry name, hub id or local folder (default: the preset's)")
    g.add_argument("--reasoner-backend", help="transformers (default) or package.module:Class")
    g.add_argument("--segmenter-backend", help="transformers (default), sam2, or package.module:Class")
    g.add_argument("--prompt-format", choices=["visionreasoner", "segzero", "grounding"],
                   help="answer grammar (default: the reasoner's registry entry, else visionreasoner)")
    g.add_argument("--device", help="auto (default), cpu, cuda, cuda:N or mps")
    g.add_argument("--dtype", help="auto (default: bf16 on CUDA, fp32 on CPU), bf16, fp16 or fp32")
    g.add_argument("--frame-size", type=int, help="reasoning frame side in pixels (default 840)")
    g.add_argument("--max-objects", type=int, help="keep at most this many objects (default 50)")
    g.add_argument("--max-new-tokens", type=int, help="generation budget (default: the model's reference value)")
    g.add_argument("--max-pixels", type=int, help="refuse larger images (default 100,000,000)")
    g.add_argument("--config", help="TOML or JSON settings file (flags > SEGZERO_* env > file > defaults)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segzero", description="Segment an image by a reasoning query.")
    parser.add_argument("--version", action="version", version=f"segzero-tool {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    seg = sub.add_parser("segment", help="segment IMAGE by QUERY and write results")
    seg.add_argument("image", help="image file (PNG, JPEG, WebP, ...)")
    seg.add_argument("query", help="what to segment, in words")
    seg.add_argument("--out", help="folder for result.json, mask PNGs and overlay.png")
    seg.add_argument("--json", action="store_true", help="print the JSON result (COCO RLE masks) on stdout")
    seg.add_argument("--no-masks", action="store_true", help="skip SAM2: boxes and points only")
    seg.add_argument("--mask-encoding", choices=["rle", "polygons", "both", "none"], default="rle",
                     help="mask encoding in result.json (default rle)")
    seg.add_argument("--overlay-max-side", type=int, default=1024, help="longest side of overlay.png (default 1024)")
    _add_model_options(seg)

    models = sub.add_parser("models", help="list the model registry and presets")
    models.add_argument("--json", action="store_true", help="machine-readable output")

    tiny = sub.add_parser("make-tiny-models",
                          help="build tiny random models (offline demos and tests; they output garbage)")
    tiny.add_argument("out", help="folder to create; gets reasoner/ and segmenter/ subfolders")
    tiny.add_argument("--seed", type=int, default=0)
    return parser


def _settings_from_args(args: argparse.Namespace):  # -> PipelineSettings
    from .settings import PipelineSettings

    overrides = {
        name: getattr(args, name, None)
        for name in PipelineSettings.field_names()
        if getattr(args, name, None) is not None
    }
    return PipelineSettings.resolve(config=args.config, overrides=overrides)


def _cmd_segment(args: argparse.Namespace) -> int:
    from .images import load_image
    from .prompts import validate_query

    settings = _settings_from_args(args)
    # Validate cheap things before loading multi-GB models.
    validate_query(args.query)
    image = load_image(args.image, max_pixels=settings.max_pixels)
    if settings.device not in (None, "auto"):
        from .devices import resolve_device

        resolve_device(settings.device)
    print(f"loading models (reasoner: {settings.reasoner or settings.preset + ' preset'}, "
          f"segmenter: {settings.segmenter or settings.preset + ' preset'}) ...", file=sys.stderr, flush=True)
    pipe = settings.build_pipeline(with_segmenter=not args.no_masks)
    print("reasoning ...", file=sys.stderr, flush=True)
    result = pipe.segment(image, args.query, compute_masks=not args.no_masks)
    if args.out:
        written = result.save(args.out, masks=not args.no_masks, mask_encoding=args.mask_encoding,
                              overlay_max_side=args.overlay_max_side)
        log.debug("wrote %s", written)
    if args.json:
        print(result.to_json(args.mask_encoding))
    else:
        print("reasoning:", result.reasoning or "(none)")
        print(result.summary())
        if result.parse_issues:
            print("notes:", "; ".join(result.parse_issues[:5]))
        if args.out:
            print(f"wrote {Path(args.out) / 'result.json'}, mask PNGs and overlay.png")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from .registry import PRESETS, list_models

    if args.json:
        data = {
            "models": [{"name": e.name, "kind": e.kind, "hub_id": e.hub_id,
                        "prompt_format": e.prompt_format.value if e.prompt_format else None,
                        "description": e.description} for e in list_models()],
            "presets": [{"name": p.name, "reasoner": p.reasoner, "segmenter": p.segmenter,
                         "description": p.description} for p in PRESETS.values()],
        }
        print(json.dumps(data, indent=2))
        return 0
    for kind in ("reasoner", "segmenter"):
        print(f"{kind}s:")
        for e in list_models(kind):  # type: ignore[arg-type]
            fmt = f" [{e.prompt_format.value}]" if e.prompt_format else ""
            print(f"  {e.name:<36} {e.hub_id:<46}{fmt}  {e.description}")
    print("presets:")
    for p in PRESETS.values():
        print(f"  {p.name:<8} {p.reasoner} + {p.segmenter}: {p.description}")
    print("Any hub id (org/name) or local model folder works too.")
    return 0


def _cmd_tiny(args: argparse.Namespace) -> int:
    from .testing.tiny_qwen import build_tiny_qwen2_5_vl
    from .testing.tiny_sam2 import build_tiny_sam2

    out = Path(args.out)
    r = build_tiny_qwen2_5_vl(out / "reasoner", seed=args.seed)
    s = build_tiny_sam2(out / "segmenter", seed=args.seed)
    print(f"tiny random reasoner: {r}\ntiny random segmenter: {s}")
    print("These have random weights: they load and run like the real models but answer garbage.")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    handlers = {"segment": _cmd_segment, "models": _cmd_models, "make-tiny-models": _cmd_tiny}
    try:
        return handlers[args.command](args)
    except SegZeroError as exc:
        print("segzero: error: " + " ".join(str(exc).split()), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("segzero: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `segzero models | head`
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
