"""``segzero eval``: the command-line side of the evaluation (the parser lives in :mod:`segzero_tool.cli`)."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from ..settings import SettingsError

#: Where runs go without ``--out``.
DEFAULT_RUNS_DIR = "eval-runs"
#: ``segzero eval`` scores as the reference evaluations do unless told otherwise.
DEFAULT_EVAL_COMPAT = "reference"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._") or "run"


def default_run_dir(dataset: Any, settings: Any) -> Path:
    """``eval-runs/<dataset>[-<split>]-<reasoner>``: one folder per dataset, split and reasoner."""
    name = Path(str(dataset.name).rstrip("/")).name if dataset.kind != "hub" else str(dataset.name).split("/")[-1]
    if dataset.kind == "jsonl":
        name = Path(name).stem
    reasoner = Path(str(settings.reasoner).rstrip("/")).name if settings.reasoner else f"{settings.preset}-preset"
    parts = [name] + ([str(dataset.split)] if dataset.split else []) + [reasoner]
    return Path(DEFAULT_RUNS_DIR) / _slug("-".join(parts))


def run_eval_command(args: argparse.Namespace, settings: Any) -> int:
    from ..cli import check_out_dir
    from .datasets import load_eval_dataset
    from .runner import check_run_dir, run_evaluation

    def err(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    if args.limit is not None and args.limit < 0:
        raise SettingsError(f"--limit must be >= 0, got {args.limit}")
    if args.batch_size <= 0:
        raise SettingsError(f"--batch-size must be positive, got {args.batch_size}")
    if args.worst < 0:
        raise SettingsError(f"--worst must be >= 0, got {args.worst}")
    engine = getattr(args, "engine", "local")
    ray_kwargs = _ray_kwargs(args, engine)
    ignore = True if args.ignore_as_foreground is None else bool(args.ignore_as_foreground)
    # `segzero eval` compares with the papers: reference mode unless --compat / SEGZERO_COMPAT / config say otherwise
    compat = settings.normalised("compat") or DEFAULT_EVAL_COMPAT
    if args.out:
        check_out_dir(args.out)
    # Cheap things first: the dataset and the run folder, before multi-GB models load.
    dataset = load_eval_dataset(args.dataset, split=args.split, ignore_as_foreground=ignore)
    if args.ignore_as_foreground is not None and dataset.kind != "lisa":
        err("note: --[no-]ignore-as-foreground only applies to LISA-layout folders; the masks of this dataset "
            "are used as stored (the hub copies count ignore regions as foreground)")
    run_dir = Path(args.out) if args.out else default_run_dir(dataset, settings)
    if not args.out:
        check_out_dir(run_dir)
    check_run_dir(run_dir, {"dataset": dataset.describe(), "compat": compat}, force=args.force)
    n = len(dataset) if args.limit is None else min(args.limit, len(dataset))
    err(f"dataset {dataset.name}: {len(dataset)} samples ({dataset.kind}"
        f"{', split ' + dataset.split if dataset.split else ''}); evaluating {n} in {compat} mode; run folder {run_dir}")
    if ray_kwargs is not None:
        return _run_on_ray(args, settings, dataset, run_dir, compat, ray_kwargs, err)
    if settings.device not in (None, "auto"):
        from ..devices import resolve_device

        resolve_device(settings.device)
    err(f"loading models (reasoner: {settings.reasoner or settings.preset + ' preset'}, "
        f"segmenter: {settings.segmenter or settings.preset + ' preset'}) ...")
    pipe = settings.build_pipeline(with_verifier=False)  # evaluation never runs the self-check loop
    try:
        result = run_evaluation(
            pipe, dataset, run_dir, limit=args.limit, batch_size=args.batch_size, empty_union=args.empty_union,
            compat=compat, force=args.force, progress=True, report=True, worst=args.worst, echo=err,
        )
    finally:
        pipe.close()
    return _report(result, run_dir)


def _report(result: Any, run_dir: Path) -> int:
    """Print the table and the files written (both engines)."""
    from .report import format_table

    print(format_table(result))
    names = ", ".join(p.name for key, p in result.files.items() if key != "manifest")
    print(f"wrote {run_dir}: {names}")
    return 0


def _ray_kwargs(args: argparse.Namespace, engine: str) -> dict[str, Any] | None:
    """The Ray executor's keyword arguments of the flags (``None``: the local engine); --ray-* flags without
    ``--engine ray`` are refused."""
    from ..cli_batch import ray_engine_kwargs, ray_flags_given

    if engine != "ray":
        given = ray_flags_given(args)
        if given:
            raise SettingsError(f"{given[0]} applies to --engine ray; add --engine ray")
        return None
    return ray_engine_kwargs(args)


def _run_on_ray(args: argparse.Namespace, settings: Any, dataset: Any, run_dir: Path, compat: str,
                ray_kwargs: dict[str, Any], err: Any) -> int:
    """``--engine ray``: the samples scored on Ray actors (each a whole pipeline); no model loads here."""
    from .engine_ray import RayEvalExecutor
    from .runner import run_evaluation

    executor = RayEvalExecutor(settings, **ray_kwargs)
    try:
        err(f"starting {ray_kwargs['reasoner_actors']} pipeline actor(s) on Ray (reasoner: "
            f"{settings.reasoner or settings.preset + ' preset'}, segmenter: "
            f"{settings.segmenter or settings.preset + ' preset'}) ...")
        models = executor.models()
        result = run_evaluation(
            executor.pipeline(), dataset, run_dir, limit=args.limit, batch_size=args.batch_size,
            empty_union=args.empty_union, compat=compat, force=args.force, progress=True, report=True,
            worst=args.worst, echo=err, executor=executor, models=models,
        )
    finally:
        executor.close()
    return _report(result, run_dir)


__all__ = ["DEFAULT_EVAL_COMPAT", "DEFAULT_RUNS_DIR", "default_run_dir", "run_eval_command"]
