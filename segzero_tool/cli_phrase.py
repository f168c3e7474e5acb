"""``segzero phrase``: every instance of a short noun phrase (SAM 3 concept segmentation), a thin adapter
over :func:`segzero_tool.phrase.segment_phrase`.

    segzero phrase IMAGE PHRASE [--threshold 0.5] [--max-instances N] [--out DIR] [--json] [--inspect]
                   [--model sam3|HUB_ID|FOLDER] [--device auto] [--dtype auto]

The output is what ``segzero prompt`` writes: a summary (or ``--json``), and with ``--out DIR`` a result
folder (``result.json``, mask PNGs, ``overlay.png``) that ``segzero inspect / refine / select`` take.
Everything cheap (phrase, threshold, cap, output folder, image) is checked before the model loads.
SAM 3 is gated on the Hugging Face Hub: without access the command prints one line saying how to request it
and log in, and exits 7. Nothing heavy is imported here at import time.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .settings import SettingsError


def add_parsers(sub: Any) -> list[argparse.ArgumentParser]:
    """Add ``phrase`` to ``segzero``'s subparsers; returns it (in a list, like :func:`cli_steer.add_parsers`)."""
    from .cli_steer import _add_output_options
    from .phrase import DEFAULT_THRESHOLD, MAX_PHRASE_CHARS

    p = sub.add_parser(
        "phrase", help="every instance of a short noun phrase, with SAM 3 (boxes, scores, masks)",
        description="Find every instance of a short noun phrase ('person', 'red car', 'yellow school bus') with "
                    "SAM 3's concept segmentation: one object per instance, best score first, each with its box, "
                    "score and mask. No reasoner is loaded. SAM 3 (facebook/sam3) is gated on the Hugging Face "
                    "Hub: request access on its page and log in (`hf auth login`) first, or pass a local folder.")
    p.add_argument("image", help="image file (PNG, JPEG, WebP, ...)")
    p.add_argument("phrase", help=f"a short noun phrase naming what to find (at most {MAX_PHRASE_CHARS} characters)")
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                   help=f"keep instances scoring above this, 0 to 1 (default {DEFAULT_THRESHOLD})")
    p.add_argument("--max-instances", type=int, metavar="N", help="keep at most N instances, the best first "
                                                                  "(default: all above the threshold)")
    p.add_argument("--mask-threshold", type=float, default=0.5,
                   help="binarise mask probabilities above this, 0 to 1 (default 0.5)")
    p.add_argument("--out", help="folder for result.json, mask PNGs and overlay.png (and inspection.png)")
    _add_output_options(p, inspect=True)
    g = p.add_argument_group("model")
    g.add_argument("--model", default="sam3", help="sam3 (= facebook/sam3, the default), another hub id, or a "
                                                   "local folder holding a transformers SAM 3 checkpoint")
    g.add_argument("--device", help="auto (default), cpu, cuda, cuda:N or mps")
    g.add_argument("--dtype", help="auto (default: bf16 on CUDA, fp32 on CPU), bf16, fp16 or fp32")
    g.add_argument("--max-pixels", type=int, help="refuse larger images (default 100,000,000)")
    g.add_argument("--config", help="TOML or JSON settings file (flags > SEGZERO_* env > file > defaults)")
    p.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                   help="more log lines on stderr: -v info, -vv debug")
    return [p]


def cmd_phrase(args: argparse.Namespace) -> int:
    from .cli_steer import _check_side, _save_and_print
    from .images import load_image
    from .phrase import check_max_instances, check_phrase, check_threshold, segment_phrase
    from .settings import PipelineSettings

    overrides = {n: getattr(args, n) for n in ("device", "dtype", "max_pixels") if getattr(args, n) is not None}
    settings = PipelineSettings.resolve(config=args.config, overrides=overrides)
    # Everything cheap is checked before the model loads.
    _check_side(args.overlay_max_side, "--overlay-max-side")
    check_phrase(args.phrase)
    check_threshold(args.threshold, "--threshold")
    check_threshold(args.mask_threshold, "--mask-threshold")
    if args.max_instances is not None and args.max_instances < 1:
        raise SettingsError(f"--max-instances must be at least 1, got {args.max_instances}")
    check_max_instances(args.max_instances)
    if args.inspect and not args.out:
        raise SettingsError("--inspect writes inspection.png into --out; give --out DIR")
    if args.out:
        from .cli import check_out_dir

        check_out_dir(args.out)
    image = load_image(args.image, max_pixels=settings.max_pixels)
    if settings.device not in (None, "auto"):
        from .devices import resolve_device

        resolve_device(settings.device)
    print(f"loading concept model ({args.model}) ...", file=sys.stderr, flush=True)
    from .segmenters.concept import Sam3ConceptSegmenter

    model = Sam3ConceptSegmenter.from_pretrained(args.model, device=settings.device, dtype=settings.dtype)
    result = segment_phrase(image, args.phrase, segmenter=model, threshold=args.threshold,
                            max_instances=args.max_instances, mask_threshold=args.mask_threshold,
                            max_pixels=settings.max_pixels)
    if args.out:
        _save_and_print(args, result, inspect=args.inspect)
    elif args.json:
        print(result.to_json(args.mask_encoding))
    else:
        print(result.summary())
    if not args.json:
        for issue in result.parse_issues:
            print("note:", issue)
    return 0


#: ``segzero`` subcommand -> handler.
COMMANDS = {"phrase": cmd_phrase}

__all__ = ["COMMANDS", "add_parsers", "cmd_phrase"]
