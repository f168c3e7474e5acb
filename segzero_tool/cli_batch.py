"""``segzero batch``: segment a folder of images or a table of (image, query) rows, resumably (a thin adapter over
:func:`segzero_tool.batch.job.run_batch`).

    segzero batch INPUT --out DIR [--query Q] [--category COLUMN] [--engine local|ray] [--batch-size N]
                  [--prefetch N] [--png-masks] [--no-coco] [--force] [--json] [Ray options] [model options]

The input and the output folder are checked before any model loads. Run the same command again after an
interruption and it resumes after the last record written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .settings import SettingsError

ENGINES = ("local", "ray")


def add_ray_options(p: argparse.ArgumentParser) -> None:
    """The ``--engine ray`` flags (shared by ``segzero batch`` and ``segzero eval``)."""
    g = p.add_argument_group("Ray engine (--engine ray; pip install 'segzero-tool[ray]')")
    g.add_argument("--ray-address", metavar="ADDR",
                   help="the cluster to join (ray://head:10001 or auto); default: start Ray on this machine")
    g.add_argument("--ray-reasoner-actors", type=int, default=1, metavar="N",
                   help="reasoner copies (one model each; default 1)")
    g.add_argument("--ray-segmenter-actors", type=int, default=1, metavar="N",
                   help="segmenter copies (one SAM2 each; default 1)")
    g.add_argument("--ray-reasoner-gpus", type=float, metavar="F",
                   help="GPUs per reasoner copy (default: 1 when the cluster has GPUs, else 0)")
    g.add_argument("--ray-segmenter-gpus", type=float, metavar="F",
                   help="GPUs per segmenter copy (default: 1 when the cluster has GPUs, else 0; 0.25 shares a GPU)")
    g.add_argument("--ray-decode-cpus", type=float, default=1.0, metavar="F",
                   help="CPUs per image-decoding task (default 1)")


def ray_engine_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The RayEngine keyword arguments of the flags (checked)."""
    for name in ("ray_reasoner_actors", "ray_segmenter_actors"):
        if getattr(args, name) < 1:
            raise SettingsError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    for name in ("ray_reasoner_gpus", "ray_segmenter_gpus", "ray_decode_cpus"):
        value = getattr(args, name)
        if value is not None and not (value >= 0 and value < float("inf")):
            raise SettingsError(f"--{name.replace('_', '-')} must be a number >= 0, got {value}")
    return {"address": args.ray_address, "reasoner_actors": args.ray_reasoner_actors,
            "segmenter_actors": args.ray_segmenter_actors, "reasoner_gpus": args.ray_reasoner_gpus,
            "segmenter_gpus": args.ray_segmenter_gpus, "decode_cpus": args.ray_decode_cpus}


def ray_flags_given(args: argparse.Namespace) -> list[str]:
    defaults = {"ray_address": None, "ray_reasoner_actors": 1, "ray_segmenter_actors": 1, "ray_reasoner_gpus": None,
                "ray_segmenter_gpus": None, "ray_decode_cpus": 1.0}
    return ["--" + k.replace("_", "-") for k, v in defaults.items() if getattr(args, k, v) != v]


def add_parsers(sub: Any) -> list[argparse.ArgumentParser]:
    """Add ``batch`` to ``segzero``'s subparsers."""
    from .cli import _add_model_options

    p = sub.add_parser(
        "batch", help="segment a folder of images or a JSONL / CSV / Parquet table of (image, query) rows (resumable)",
        description="Segment every row of INPUT: a folder of images with one --query, or a JSONL / CSV / Parquet "
                    "table with image and query columns (and optional id). Writes results.jsonl (one record per row, "
                    "appended as rows finish), coco.json and summary.json into --out, and PNG masks with "
                    "--png-masks. Bad rows are recorded with their error and the job goes on. Run the same command "
                    "again to resume.")
    p.add_argument("input", metavar="INPUT", help="a folder of images, or a .jsonl / .csv / .parquet table")
    p.add_argument("--out", required=True, help="job folder; run again with the same folder to resume")
    p.add_argument("--query", help="the query of every image (a folder; or a table without a query column)")
    p.add_argument("--category", metavar="COLUMN",
                   help="table column naming each row's COCO category (default: one category per query)")
    p.add_argument("--engine", choices=ENGINES, default="local",
                   help="local (default: this process) or ray (a Ray Data pipeline, here or on --ray-address)")
    p.add_argument("--batch-size", type=int, default=8, metavar="N", help="rows per reasoner call (default 8)")
    p.add_argument("--prefetch", type=int, default=2, metavar="N",
                   help="local engine: batches decoded ahead of the reasoner on threads (default 2)")
    p.add_argument("--png-masks", action="store_true", help="also write each object's mask to masks/<row>-<k>.png")
    p.add_argument("--no-coco", action="store_true", help="do not write coco.json")
    p.add_argument("--force", action="store_true",
                   help="start over in a --out made with other settings (its files are moved aside)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_ray_options(p)
    _add_model_options(p)  # also --config and -v
    return [p]


def describe_models(settings: Any) -> dict[str, Any]:
    """The models of ``settings`` as the manifest records them (the same for every engine)."""
    from .registry import get_preset

    preset = get_preset(settings.preset or "default")
    return {"reasoner": settings.reasoner or preset.reasoner, "reasoner_backend": settings.reasoner_backend,
            "segmenter": settings.segmenter or preset.segmenter, "segmenter_backend": settings.segmenter_backend}


def cmd_batch(args: argparse.Namespace) -> int:
    from .batch.inputs import read_batch_input
    from .cli import _settings_from_args, check_out_dir

    settings = _settings_from_args(args)
    if settings.no_reasoner:
        raise SettingsError("batch reasons with a model, and --reasoner none loads none; pick a reasoner")
    if settings.verify:
        raise SettingsError("batch does not run the self-check loop (--verify); drop it")
    if args.batch_size < 1:
        raise SettingsError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.prefetch < 1:
        raise SettingsError(f"--prefetch must be at least 1, got {args.prefetch}")
    if args.engine != "ray" and ray_flags_given(args):
        raise SettingsError(f"{ray_flags_given(args)[0]} applies to --engine ray; add --engine ray")
    ray_kwargs = ray_engine_kwargs(args) if args.engine == "ray" else {}
    if args.query is not None:
        from .prompts import validate_query

        validate_query(args.query)
    check_out_dir(args.out)
    # Everything cheap first: the input and the job folder, before gigabytes of models load.
    data = read_batch_input(args.input, query=args.query, category_column=args.category)
    models = describe_models(settings)
    from .batch.job import check_out_outside_input

    check_out_outside_input(data, Path(args.out).expanduser())
    err = _err
    _check_resumable(args, data, models)
    err(f"input {data.location}: {len(data.rows)} rows ({data.kind}); engine {args.engine}; job folder {args.out}")
    if args.engine == "ray":
        from .batch.engine_ray import RayEngine

        engine: Any = RayEngine(settings, models=models, **ray_kwargs)
    else:
        if settings.device not in (None, "auto"):
            from .devices import resolve_device

            resolve_device(settings.device)
        err(f"loading models (reasoner: {models['reasoner']}, segmenter: {models['segmenter']}) ...")
        from .batch.engine_local import LocalEngine

        pipe = settings.build_pipeline(with_verifier=False)
        engine = LocalEngine(pipe, prefetch=args.prefetch, models=models)
    from .batch.job import run_batch

    try:
        job = run_batch(engine, data, args.out, query=args.query, category_column=args.category,
                        batch_size=args.batch_size, png_masks=args.png_masks, coco=not args.no_coco, force=args.force,
                        progress=True, echo=err)
    finally:
        engine.close()
    if args.json:
        print(json.dumps(job.summary, indent=2))
    else:
        print(job.summary_text())
        names = ", ".join(p.name + ("/" if p.is_dir() else "") for key, p in job.files.items() if key != "manifest")
        print(f"wrote {names} in {args.out}")
    return 0


def _check_resumable(args: argparse.Namespace, data: Any, models: dict[str, Any]) -> None:
    """A --out holding another job is refused before the models load (the input, query and models are known)."""
    from .batch.manifest import CHECKED_KEYS, check_job_dir

    if args.force:
        return
    partial = {"input": data.describe(), "query": args.query, "category_column": args.category, "models": models,
               "png_masks": bool(args.png_masks)}
    keys = [k for k in CHECKED_KEYS if k.split(".")[0] in partial]
    check_job_dir(args.out, partial, force=False, keys=keys)


def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


#: ``segzero`` subcommand -> handler.
COMMANDS = {"batch": cmd_batch}

__all__ = ["COMMANDS", "ENGINES", "add_parsers", "add_ray_options", "cmd_batch", "describe_models",
           "ray_engine_kwargs"]
