"""The steering subcommands of ``segzero``: thin adapters over :mod:`segzero_tool.steer` and
:func:`segzero_tool.inspect_view.render_inspection`, working on saved result folders.

    segzero prompt IMAGE --box x1,y1,x2,y2 [--point x,y ...] [--negative x,y ...] [--objects JSON|@FILE] [--out DIR]
    segzero inspect DIR [--image IMAGE] [--indices 0,2] [--no-crops] [--out FILE.png] [--max-side 1024]
    segzero refine DIR --image IMAGE --index I [--add x,y ...] [--remove x,y ...] [--box x1,y1,x2,y2] --out DIR2
    segzero select DIR --indices 0,2 --out DIR2 [--image IMAGE]

A result folder is what :meth:`SegmentationResult.save` writes (``result.json``, the mask PNGs,
``overlay.png``, ``logits.npz``); results are never modified: ``refine`` and ``select`` write a new folder.
Only ``prompt`` and ``refine`` load a model (the segmenter alone), after every cheap check.
Nothing heavy is imported here at import time.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from .errors import PromptError
from .limits import DEFAULT_MAX_PIXELS
from .settings import SettingsError

log = logging.getLogger("segzero_tool")

_RESULT_DIR_HELP = "a result folder written by `segzero prompt --out`, `segment --out`, `refine` or `select`"


def _add_segmenter_options(p: argparse.ArgumentParser, *, max_objects: bool) -> None:
    g = p.add_argument_group("segmenter")
    g.add_argument("--segmenter", help="registry name, hub id or local folder (default: the preset's)")
    g.add_argument("--segmenter-backend", help="transformers (default), sam2, or package.module:Class")
    g.add_argument("--preset", help="whose segmenter to load by default: default, light or paper")
    g.add_argument("--device", help="auto (default), cpu, cuda, cuda:N or mps")
    g.add_argument("--dtype", help="auto (default: bf16 on CUDA, fp32 on CPU), bf16, fp16 or fp32")
    if max_objects:
        g.add_argument("--max-objects", type=int, help="refuse more objects than this (default 50)")
    g.add_argument("--max-pixels", type=int, help="refuse larger images (default 100,000,000)")
    g.add_argument("--config", help="TOML or JSON settings file (flags > SEGZERO_* env > file > defaults)")


def _add_output_options(p: argparse.ArgumentParser, *, inspect: bool) -> None:
    p.add_argument("--json", action="store_true", help="print the JSON result (COCO RLE masks) on stdout")
    if inspect:
        p.add_argument("--inspect", action="store_true",
                       help="also write inspection.png (each object numbered, with a crop) and print its text")
    p.add_argument("--mask-encoding", choices=["rle", "polygons", "both", "none"], default="rle",
                   help="mask encoding in result.json (default rle)")
    p.add_argument("--overlay-max-side", type=int, default=1024,
                   help="longest side of overlay.png" + (" and inspection.png" if inspect else "") + " (default 1024)")


def add_parsers(sub: Any) -> list[argparse.ArgumentParser]:
    """Add ``prompt``, ``inspect``, ``refine`` and ``select`` to ``segzero``'s subparsers; returns them."""
    pr = sub.add_parser("prompt", help="segment your own boxes and clicks with the segmenter alone (no reasoner)",
                        description="Segment the objects you point at (boxes and clicks in image pixels) with the "
                                    "segmenter alone: no reasoner is loaded. One object from --box / --point / "
                                    "--negative, and/or a list of objects with --objects.")
    pr.add_argument("image", help="image file (PNG, JPEG, WebP, ...)")
    pr.add_argument("--box", metavar="x1,y1,x2,y2", help="the object's box, inclusive pixel corners")
    pr.add_argument("--point", metavar="x,y", action="append", default=[],
                    help="a click on the object (repeat for more)")
    pr.add_argument("--negative", metavar="x,y", action="append", default=[],
                    help="a click on what is not the object (repeat for more; needs --box or --point)")
    pr.add_argument("--label", help="a name for that object (kept in result.json)")
    pr.add_argument("--objects", metavar="JSON|@FILE",
                    help='a JSON list of objects [{"box": [x1, y1, x2, y2], "points": [[x, y]], '
                         '"negative_points": [[x, y]], "label": "..."}], or @file.json holding it')
    pr.add_argument("--out", help="folder for result.json, mask PNGs, overlay.png and logits.npz (and inspection.png)")
    _add_output_options(pr, inspect=True)
    _add_segmenter_options(pr, max_objects=True)

    ins = sub.add_parser("inspect", help="draw a result folder's objects numbered, with crops, and describe them",
                         description="Draw the objects of a saved result numbered on the picture, each with a crop "
                                     "around its box, and print what the picture shows. Loads no model.")
    ins.add_argument("dir", metavar="DIR", help=_RESULT_DIR_HELP)
    ins.add_argument("--image", help="the picture the result was made from (default: a grey background)")
    ins.add_argument("--indices", metavar="I,J,...", help="only these objects, e.g. 0,2 (default: all)")
    ins.add_argument("--no-crops", action="store_true", help="the full view only, no crop per object")
    ins.add_argument("--out", metavar="FILE.png", help="where to write the picture (default DIR/inspection.png)")
    ins.add_argument("--max-side", type=int, default=1024, help="longest side of the picture (default 1024)")
    ins.add_argument("--max-pixels", type=int, help="refuse larger images (default 100,000,000)")

    ref = sub.add_parser(
        "refine", help="recompute one object of a result folder with more clicks or a new box (segmenter alone)",
        description="Recompute object --index of the result in DIR with extra clicks on it (--add), on what is not "
                    "it (--remove) and/or a new --box, and write the new result to --out (DIR is left as it was). "
                    "The object's previous low-resolution logits (DIR/logits.npz) are fed back to the segmenter, "
                    "so this gives what refining in memory gives. Without logits.npz (a folder of an older "
                    "version, or from a segmenter that returns none) it still works, from the object's box and "
                    "clicks plus yours. Loads the segmenter alone, after every other check.")
    ref.add_argument("dir", metavar="DIR", help=_RESULT_DIR_HELP)
    ref.add_argument("--image", required=True, help="the picture the result was made from (same size)")
    ref.add_argument("--index", type=int, required=True, metavar="I", help="the object to refine (#I of the result)")
    ref.add_argument("--add", metavar="x,y", action="append", default=[],
                     help="a click on the object: part of it (repeat for more)")
    ref.add_argument("--remove", metavar="x,y", action="append", default=[],
                     help="a click on what is not the object (repeat for more)")
    ref.add_argument("--box", metavar="x1,y1,x2,y2", help="a new box for the object (starts over from the box)")
    ref.add_argument("--out", required=True, metavar="DIR2", help="folder for the new result (not DIR)")
    _add_output_options(ref, inspect=True)
    _add_segmenter_options(ref, max_objects=False)

    sel = sub.add_parser("select", help="keep some objects of a result folder, in a new folder",
                         description="Keep the objects --indices of the result in DIR, in that order, and write the "
                                     "new result (renumbered from 0) to --out; DIR is left as it was. Loads no model.")
    sel.add_argument("dir", metavar="DIR", help=_RESULT_DIR_HELP)
    sel.add_argument("--indices", required=True, metavar="I,J,...",
                     help='the objects to keep, in order, e.g. 0,2 ("" keeps none)')
    sel.add_argument("--out", required=True, metavar="DIR2", help="folder for the new result (not DIR)")
    sel.add_argument("--image", help="the picture the result was made from, drawn under overlay.png "
                                     "(default: a grey background)")
    sel.add_argument("--max-pixels", type=int, help="refuse larger images (default 100,000,000)")
    _add_output_options(sel, inspect=False)
    return [pr, ins, ref, sel]


# --- parsing the flags -------------------------------------------------------------------------------


def _numbers(text: str, n: int, flag: str, shape: str) -> list[float]:
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != n:
        raise SettingsError(f"{flag} must be {shape} ({n} numbers, comma-separated, image pixels), got {text!r}")
    return values


def _indices(text: str, n: int, flag: str = "--indices") -> list[int]:
    """``"0,2"`` -> ``[0, 2]``, each an object of a result with ``n`` objects, none twice (``""``: none)."""
    parts = [p.strip() for p in text.split(",")] if text.strip() else []
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise SettingsError(f"{flag} must be object numbers, comma-separated (like 0,2), got {text!r}") from None
    for v in values:
        _check_index(v, n, flag)
    for k, v in enumerate(values):
        if v in values[:k]:
            raise SettingsError(f"{flag} repeats object {v}; list each object at most once")
    return values


def _check_index(index: int, n: int, flag: str) -> None:
    if not 0 <= index < n:
        have = f"#0 to #{n - 1}" if n else "none"
        raise PromptError(f"{flag}: object {index} is out of range: the result has {n} object(s) ({have})")


def prompt_objects_from_args(args: argparse.Namespace) -> list:
    """The objects of ``segzero prompt``: those of ``--objects`` (JSON or ``@file.json``), then the one
    given by ``--box`` / ``--point`` / ``--negative`` / ``--label`` (if any of them is given).

    Raises:
        SettingsError: a flag is not numbers, ``--objects`` is not JSON or its file cannot be read, or
            no object is given at all. The objects themselves are checked by
            :func:`segzero_tool.prompt_objects.parse_prompt_objects` (``PromptError``).
    """
    objects: list = []
    if args.objects is not None:
        text = args.objects
        if text.startswith("@"):
            path = Path(text[1:]).expanduser()
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise SettingsError(f"--objects {args.objects!r}: the file cannot be read ({exc.strerror or exc})") \
                    from None
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise SettingsError(f"--objects is not valid JSON ({exc}); send a list like "
                                '[{"box": [x1, y1, x2, y2]}] or @file.json') from None
        if isinstance(data, dict):
            data = data["objects"] if "objects" in data else [data]
        if not isinstance(data, list):
            raise SettingsError('--objects must be a JSON list of objects like [{"box": [x1, y1, x2, y2]}]')
        objects.extend(data)
    if args.box is not None or args.point or args.negative or args.label is not None:
        obj: dict = {}
        if args.box is not None:
            obj["box"] = _numbers(args.box, 4, "--box", "x1,y1,x2,y2")
        if args.point:
            obj["points"] = [_numbers(p, 2, "--point", "x,y") for p in args.point]
        if args.negative:
            obj["negative_points"] = [_numbers(p, 2, "--negative", "x,y") for p in args.negative]
        if args.label is not None:
            obj["label"] = args.label
        objects.append(obj)
    if not objects:
        raise SettingsError("nothing to segment: give --box x1,y1,x2,y2 and/or --point x,y, or --objects JSON")
    return objects


def _prompt_settings(args: argparse.Namespace):  # -> PipelineSettings
    from .settings import PipelineSettings

    names = ("preset", "segmenter", "segmenter_backend", "device", "dtype", "max_objects", "max_pixels")
    overrides = {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
    return PipelineSettings.resolve(config=args.config, overrides=overrides)


def _max_pixels(args: argparse.Namespace) -> int:
    if args.max_pixels is None:
        return DEFAULT_MAX_PIXELS
    if args.max_pixels < 1:
        raise SettingsError(f"--max-pixels must be at least 1, got {args.max_pixels}")
    return int(args.max_pixels)


def _check_side(value: int, flag: str) -> None:
    if value < 1:
        raise SettingsError(f"{flag} must be at least 1, got {value}")


def _new_out(args: argparse.Namespace) -> Path:
    """``--out`` of ``refine`` / ``select``: writable and not the source folder."""
    from .cli import check_out_dir

    src, out = Path(args.dir).expanduser(), Path(args.out).expanduser()
    try:
        same = src.samefile(out) if src.exists() and out.exists() else src.resolve() == out.resolve()
    except OSError:
        same = False
    if same:
        raise SettingsError(f"--out {args.out!r} is the result folder itself: results are never modified; "
                            "give a new --out")
    return check_out_dir(args.out)


def _load_result(folder: str, *, logits: bool = True):  # -> SegmentationResult
    from .result import SegmentationResult

    return SegmentationResult.load(folder, logits=logits)


def _attach_image(result: Any, image_arg: str | None, max_pixels: int, folder: str) -> None:
    """Load ``--image`` and attach it to ``result`` (a freshly loaded one), refusing another size."""
    if image_arg is None:
        return
    from .images import load_image

    image = load_image(image_arg, max_pixels=max_pixels)
    w, h = result.image_size
    if (image.width, image.height) != (w, h):
        raise PromptError(f"--image {image_arg!r} is {image.width}x{image.height}, but the result in {folder!r} was "
                          f"made from a {w}x{h} image; give the picture it was made from")
    result.image = image.array


def _load_segmenter(settings: Any):  # -> SegZeroPipeline
    if settings.device not in (None, "auto"):
        from .devices import resolve_device

        resolve_device(settings.device)
    print(f"loading segmenter ({settings.segmenter or settings.preset + ' preset'}) ...", file=sys.stderr,
          flush=True)
    from .pipeline import SegZeroPipeline

    return SegZeroPipeline.from_pretrained(
        "none", settings.segmenter, preset=settings.preset, segmenter_backend=settings.segmenter_backend,
        device=settings.device, dtype=settings.dtype, max_objects=settings.max_objects, max_pixels=settings.max_pixels,
        segmenter_kwargs={"cache_size": settings.cache_size} if settings.segmenter_backend == "transformers" else None)


def _save_and_print(args: argparse.Namespace, result: Any, *, inspect: bool = False) -> None:
    """Write ``result`` into ``args.out`` (and inspection.png), then print it: JSON or a summary."""
    written = result.save(args.out, mask_encoding=args.mask_encoding, overlay_max_side=args.overlay_max_side)
    log.debug("wrote %s", written)
    inspection = None
    if inspect:
        from .atomic import atomic_write_bytes
        from .inspect_view import render_inspection

        inspection = render_inspection(result, crops=True, max_side=args.overlay_max_side)
        atomic_write_bytes(Path(args.out) / "inspection.png", inspection.data)
    if args.json:
        print(result.to_json(args.mask_encoding))
        return
    print(result.summary())
    notes = [f"#{i}: {issue}" for i, o in enumerate(result.objects) for issue in o.issues]
    if notes:
        print("notes:", "; ".join(notes[:5]))
    if inspection is not None:
        print(inspection.text)
    extra = " and inspection.png" if inspection is not None else ""
    logits = ", logits.npz" if "logits" in written else ""
    print(f"wrote {Path(args.out) / 'result.json'}, mask PNGs, overlay.png{logits}{extra}")


# --- the commands --------------------------------------------------------------------------------------


def cmd_prompt(args: argparse.Namespace) -> int:
    from .images import load_image
    from .prompt_objects import parse_prompt_objects

    settings = _prompt_settings(args)
    # Everything cheap is checked before the segmenter loads.
    _check_side(args.overlay_max_side, "--overlay-max-side")
    if args.inspect and not args.out:
        raise SettingsError("--inspect writes inspection.png into --out; give --out DIR")
    if args.out:
        from .cli import check_out_dir

        check_out_dir(args.out)
    objects = prompt_objects_from_args(args)
    image = load_image(args.image, max_pixels=settings.max_pixels)
    parse_prompt_objects(objects, image.size, max_objects=settings.max_objects)  # PromptError: exit 2
    pipe = _load_segmenter(settings)
    result = pipe.segment_by_prompts(image, objects)
    if args.out:
        _save_and_print(args, result, inspect=args.inspect)
    elif args.json:
        print(result.to_json(args.mask_encoding))
    else:
        print(result.summary())
        notes = [f"#{i}: {issue}" for i, o in enumerate(result.objects) for issue in o.issues]
        if notes:
            print("notes:", "; ".join(notes[:5]))
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    import os

    from .atomic import atomic_write_bytes
    from .inspect_view import render_inspection

    _check_side(args.max_side, "--max-side")
    max_pixels = _max_pixels(args)
    result = _load_result(args.dir, logits=False)
    shown = None if args.indices is None else _indices(args.indices, len(result.objects))
    target = Path(args.out).expanduser() if args.out else Path(args.dir).expanduser() / "inspection.png"
    if target.is_dir():
        raise SettingsError(f"--out {args.out!r} is a folder; give a file name like inspection.png")
    probe = target.parent
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        fix = "" if args.out else "; give --out FILE.png"
        raise SettingsError(f"{str(target)!r} cannot be written: {str(probe)!r} is not a writable folder{fix}")
    _attach_image(result, args.image, max_pixels, args.dir)
    inspection = render_inspection(result, indices=shown, crops=not args.no_crops, max_side=args.max_side)
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(target, inspection.data)
    print(inspection.text)
    print(f"wrote {target}")
    return 0


def cmd_select(args: argparse.Namespace) -> int:
    from .steer import select_objects

    _check_side(args.overlay_max_side, "--overlay-max-side")
    max_pixels = _max_pixels(args)
    _new_out(args)
    result = _load_result(args.dir)
    picked = _indices(args.indices, len(result.objects))
    _attach_image(result, args.image, max_pixels, args.dir)
    _save_and_print(args, select_objects(result, picked))
    return 0


def cmd_refine(args: argparse.Namespace) -> int:
    from .prompt_objects import parse_box, parse_points

    settings = _prompt_settings(args)
    # Everything cheap is checked before the segmenter loads.
    _check_side(args.overlay_max_side, "--overlay-max-side")
    _new_out(args)
    add = [_numbers(p, 2, "--add", "x,y") for p in args.add]
    remove = [_numbers(p, 2, "--remove", "x,y") for p in args.remove]
    box = _numbers(args.box, 4, "--box", "x1,y1,x2,y2") if args.box is not None else None
    if not add and not remove and box is None:
        raise SettingsError("nothing to refine: give --add x,y (part of the object), --remove x,y (not part of it) "
                            "and/or --box x1,y1,x2,y2")
    result = _load_result(args.dir)
    _check_index(args.index, len(result.objects), "--index")
    parse_points(add, result.image_size, "--add")  # PromptError: exit 2
    parse_points(remove, result.image_size, "--remove")
    if box is not None:
        parse_box(box, result.image_size, "--box")
    _attach_image(result, args.image, settings.max_pixels, args.dir)
    if result.objects[args.index].low_res_logits is None:
        print(f"note: {args.dir} holds no logits for object {args.index} (no logits.npz): refining from its prompt "
              "and your clicks", file=sys.stderr)
    pipe = _load_segmenter(settings)
    refined = pipe.refine_object(result, args.index, add_points=add, remove_points=remove, box=box)
    _save_and_print(args, refined, inspect=args.inspect)
    return 0


#: ``segzero`` subcommand -> handler.
COMMANDS = {"prompt": cmd_prompt, "inspect": cmd_inspect, "refine": cmd_refine, "select": cmd_select}

__all__ = ["COMMANDS", "add_parsers", "prompt_objects_from_args"]
