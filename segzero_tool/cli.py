"""The ``segzero`` command line.

    segzero segment IMAGE QUERY [--out DIR] [--reasoner ...] [--segmenter ...] [--json] [--verify [--verifier ...]]
    segzero prompt IMAGE --box x1,y1,x2,y2 [--point x,y ...] [--negative x,y ...] [--objects JSON|@FILE] [--out DIR]
    segzero inspect DIR [--image IMAGE] [--indices 0,2] [--no-crops] [--out FILE.png]
    segzero refine DIR --image IMAGE --index I [--add x,y ...] [--remove x,y ...] [--box x1,y1,x2,y2] --out DIR2
    segzero select DIR --indices 0,2 --out DIR2 [--image IMAGE]
    segzero track VIDEO QUERY --out DIR [--key-frames first|every:N|every:Ns] [--tracker ...] [--restart]
    segzero models
    segzero make-tiny-models DIR
    segzero eval DATASET [--split S] [--limit N] [--batch-size N] [--out RUN_DIR] [--reasoner ...] [--segmenter ...]
    segzero serve-reasoner [--model visionreasoner-7b] [--tensor-parallel N] [--data-parallel N] [--print]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from . import __version__, cli_batch, cli_demo, cli_phrase, cli_steer, cli_track
from .errors import SegZeroError
from .settings import SettingsError

log = logging.getLogger("segzero_tool")


def add_model_selection_options(p: argparse.ArgumentParser) -> None:
    """Which models and backends to load (shared with ``segzero-mcp``), plus the remote-reasoner flags."""
    g = p.add_argument_group("models")
    g.add_argument("--preset", help="default (VisionReasoner-7B + SAM 2.1 large), light or paper")
    g.add_argument("--reasoner", help="registry name, hub id or local folder (default: the preset's)")
    g.add_argument("--segmenter", help="registry name, hub id or local folder (default: the preset's)")
    g.add_argument("--reasoner-backend",
                   help="transformers (default), openai (a vLLM / OpenAI-compatible server), vllm (in-process), "
                        "or package.module:Class")
    g.add_argument("--segmenter-backend", help="transformers (default), sam2, or package.module:Class")
    g.add_argument("--prompt-format", choices=["visionreasoner", "segzero", "grounding", "qwen3vl"],
                   help="answer grammar (default: the reasoner's registry entry, else visionreasoner)")
    g.add_argument("--device", help="auto (default), cpu, cuda, cuda:N or mps")
    g.add_argument("--dtype", help="auto (default: bf16 on CUDA, fp32 on CPU), bf16, fp16 or fp32")
    g.add_argument("--frame-size", type=int, help="reasoning frame side in pixels (default 840)")
    g.add_argument("--coords", choices=["frame", "relative1000"],
                   help="how the reasoner writes coordinates: frame (pixels of the reasoning frame) or relative1000 "
                        "(the 0-1000 grid of Qwen3-VL) (default: the reasoner's registry entry, else the prompt "
                        "format's: relative1000 for qwen3vl, else frame)")
    g.add_argument("--max-new-tokens", type=int, help="generation budget (default: the model's reference value)")
    g.add_argument("--config", help="TOML or JSON settings file (flags > SEGZERO_* env > file > defaults)")
    add_remote_reasoner_options(p)


def _add_model_options(p: argparse.ArgumentParser) -> None:
    add_model_selection_options(p)
    g = p.add_argument_group("limits")
    g.add_argument("--max-objects", type=int, help="keep at most this many objects (default 50)")
    g.add_argument("--max-pixels", type=int, help="refuse larger images (default 100,000,000)")
    c = p.add_argument_group("compatibility")
    c.add_argument("--compat", choices=["reference", "repair"],
                   help="reference: only what the reference scripts read, passed to SAM2 as they pass it; repair: "
                        "the lenient parser and repairs (default: repair for segment, reference for eval)")
    c.add_argument("--rounding", choices=["half_up", "segzero"],
                   help="back-projection rounding (default: the prompt format's: segzero for the segzero format, "
                        "else half_up)")


#: PipelineSettings fields set by :func:`add_remote_reasoner_options`.
REMOTE_REASONER_FIELDS = ("reasoner_base_url", "reasoner_api_key_env", "reasoner_model_name", "structured_outputs",
                          "image_format")


def add_remote_reasoner_options(p: argparse.ArgumentParser) -> None:
    """The flags of the OpenAI-compatible / vLLM reasoner backends (shared with ``segzero-mcp``)."""
    r = p.add_argument_group("remote reasoner (--reasoner-backend openai)")
    r.add_argument("--reasoner-base-url", metavar="URL[,URL...]",
                   help="server base URL; several comma-separated URLs are balanced as replicas "
                        "(default http://127.0.0.1:8000/v1)")
    r.add_argument("--reasoner-api-key-env", metavar="NAME",
                   help="environment variable holding the server's API key (default OPENAI_API_KEY)")
    r.add_argument("--reasoner-model-name", metavar="NAME",
                   help="model name the server serves (default: the registry short name, e.g. visionreasoner-7b)")
    r.add_argument("--structured-outputs", choices=["auto", "regex", "grammar", "off"],
                   help="force parseable answers (default auto: a regex when the server is vLLM; also for "
                        "--reasoner-backend vllm)")
    r.add_argument("--image-format", choices=["png", "jpeg"],
                   help="how the 840x840 frame is sent (default png, lossless; jpeg: quality 95, faster)")


#: PipelineSettings fields set by :func:`add_verifier_options`.
VERIFIER_FIELDS = ("verifier", "verifier_backend", "verifier_base_url", "verifier_api_key_env", "verifier_model_name")


def add_verifier_options(g: argparse._ActionsContainer) -> None:
    """The flags that choose the self-check loop's verifier (shared with ``segzero-mcp``)."""
    g.add_argument("--verifier", metavar="NAME|HUB_ID|FOLDER",
                   help="the model that checks the masks (default: the reasoner itself), loaded like --reasoner; "
                        "e.g. a larger VLM served by vLLM: --verifier-backend openai --verifier-base-url "
                        "http://gpu:8000/v1 --verifier-model-name Qwen/Qwen2.5-VL-72B-Instruct")
    g.add_argument("--verifier-backend", metavar="BACKEND",
                   help="transformers (default; on the reasoner's device and dtype), openai (a vLLM / "
                        "OpenAI-compatible server), vllm (in-process), or package.module:Class")
    g.add_argument("--verifier-base-url", metavar="URL[,URL...]",
                   help="--verifier-backend openai: the server's base URL (default http://127.0.0.1:8000/v1)")
    g.add_argument("--verifier-api-key-env", metavar="NAME",
                   help="--verifier-backend openai: environment variable holding its API key (default OPENAI_API_KEY)")
    g.add_argument("--verifier-model-name", metavar="NAME",
                   help="--verifier-backend openai: the model name the server serves (default: derived from --verifier)")


class OneLineErrorParser(argparse.ArgumentParser):
    """Usage errors are one line, ``segzero: error: <what> (see segzero segment --help)``, and exit 2
    (argparse prints the whole usage first); subparsers inherit it. ``segzero-train`` uses it too."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.split()[0]
        self.exit(2, f"{command}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="segzero", description="Segment an image by a reasoning query.")
    parser.add_argument("--version", action="version", version=f"segzero-tool {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log lines on stderr: -v info, -vv debug (default: warnings only)")
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
    v = seg.add_argument_group("self-check")
    v.add_argument("--verify", action="store_true", default=None,
                   help="after the masks, the verifier (default the reasoner) checks the numbered objects against "
                        "the query and keeps, drops or retries once with a hint (off by default)")
    v.add_argument("--verify-rounds", type=int, metavar="N",
                   help="at most N checks, so N-1 retries (1 to 5; default 2)")
    add_verifier_options(v)
    _add_model_options(seg)

    steering = cli_steer.add_parsers(sub)  # prompt, inspect, refine, select
    cli_phrase.add_parsers(sub)  # phrase (SAM 3 concept segmentation)
    cli_track.add_parsers(sub)  # track (video: key-frame reasoning + SAM2 video propagation)
    cli_batch.add_parsers(sub)  # batch (folders and tables of images; local or Ray engine; resumable)
    cli_demo.add_parsers(sub)  # demo (a web page for people: Gradio)

    models = sub.add_parser("models", help="list the model registry and presets")
    models.add_argument("--json", action="store_true", help="machine-readable output")

    tiny = sub.add_parser("make-tiny-models",
                          help="build tiny random models (offline demos and tests; they output garbage)")
    tiny.add_argument("out", help="folder to create; gets reasoner/ (Qwen2.5-VL) and segmenter/ (SAM2), plus "
                                  "reasoner-qwen3vl/, segmenter-sam3/, concept-sam3/ (SAM 3 text prompts) and "
                                  "segmenter-sam2-video/ (SAM2 with its video memory: segzero track)")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.add_argument("--only", help="comma-separated subset of: " + ", ".join(TINY_FAMILIES))

    srv = sub.add_parser("serve-reasoner", help="print and run the recommended `vllm serve` command for a model",
                         description="Print the recommended `vllm serve` command for a registry model and run it "
                                     "(needs vLLM: pip install \"segzero-tool[vllm]\"). More vllm flags go after --.")
    srv.add_argument("--model", default="visionreasoner-7b",
                     help="registry name, hub id or local folder (default visionreasoner-7b)")
    srv.add_argument("--tensor-parallel", type=int, default=1, metavar="N", help="GPUs per model copy (default 1)")
    srv.add_argument("--data-parallel", type=int, default=1, metavar="N",
                     help="model copies behind one endpoint (default 1)")
    srv.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1; 0.0.0.0 for others)")
    srv.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    srv.add_argument("--gpu-memory-utilization", type=float, default=0.9, metavar="F",
                     help="share of GPU memory vLLM may use (default 0.9)")
    srv.add_argument("--max-model-len", type=int, metavar="N",
                     help="context length (default: 900 visual + 768 text tokens + the model's budget, to 1024s)")
    srv.add_argument("--dtype", default="bfloat16", help="bfloat16 (default), float16, float32 or auto")
    srv.add_argument("--frame-size", type=int, default=840, help="reasoning frame side, sets max_pixels (default 840)")
    srv.add_argument("--served-model-name", metavar="NAME",
                     help="name clients use (default: the registry short name, plus the hub id as an alias)")
    srv.add_argument("--print", dest="print_only", action="store_true", help="only print the command")
    srv.add_argument("vllm_args", nargs=argparse.REMAINDER, help="more `vllm serve` flags, after --")

    ev = sub.add_parser("eval", help="evaluate on ReasonSeg / RefCOCO / your data: gIoU, cIoU (resumable)",
                        description="Evaluate the reasoner + segmenter on a dataset: gIoU, cIoU and box accuracy, "
                                    "overall and by short / long queries. Per-sample records are appended to "
                                    "RUN_DIR/samples.jsonl as they finish; running the same command again resumes.")
    ev.add_argument("dataset", metavar="DATASET",
                    help="a ReasonSeg folder in LISA's layout, a .jsonl file, a hub id (Ricky06662/ReasonSeg_val, "
                         "needs `datasets`), a downloaded copy of such a hub repository, or a `datasets` "
                         "save_to_disk folder")
    ev.add_argument("--split", help="LISA: subfolder (val, test, ...); hub / save_to_disk: split (default test)")
    ev.add_argument("--limit", type=int, metavar="N", help="evaluate the first N samples only")
    ev.add_argument("--batch-size", type=int, default=8, metavar="N",
                    help="samples per batched pipeline call (default 8)")
    ev.add_argument("--empty-union", choices=["skip", "zero"], default="skip",
                    help="a sample whose prediction and ground truth are both empty: skip it (Seg-Zero repository, "
                         "default) or count IoU 0 (VisionReasoner repository)")
    ev.add_argument("--ignore-as-foreground", action=argparse.BooleanOptionalAction, default=None,
                    help="LISA folders: count 'ignore' regions as foreground, as the hub copies do (default: yes)")
    ev.add_argument("--worst", type=int, default=16, metavar="N",
                    help="contact sheet of the N worst samples (worst.png, worst.html; 0: none; default 16)")
    ev.add_argument("--out", metavar="RUN_DIR", help="run folder (default eval-runs/<dataset>-<split>-<reasoner>)")
    ev.add_argument("--force", action="store_true",
                    help="start over in a run folder made with other settings (old records are moved aside)")
    ev.add_argument("--engine", choices=cli_batch.ENGINES, default="local",
                    help="local (default: this process) or ray (model copies as Ray actors; the same numbers)")
    cli_batch.add_ray_options(ev)
    _add_model_options(ev)
    for sp in (seg, *steering, models, tiny, srv, ev):  # `segzero segment ... -v` works as well as `segzero -v segment ...`
        sp.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                        help="more log lines on stderr: -v info, -vv debug")
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
    if settings.no_reasoner:
        raise SettingsError("segment reasons with a model, and --reasoner none loads none; to segment your own "
                            "boxes and clicks without a reasoner use `segzero prompt IMAGE --box x1,y1,x2,y2`")
    # Validate cheap things before loading multi-GB models.
    given = [name for name in VERIFIER_FIELDS if getattr(args, name, None) is not None]
    if given and not settings.verify:
        raise SettingsError(f"{'--' + given[0].replace('_', '-')} is used only with --verify (the self-check loop); "
                            "add --verify")
    if args.overlay_max_side < 1:
        raise SettingsError(f"--overlay-max-side must be at least 1, got {args.overlay_max_side}")
    if args.out:
        check_out_dir(args.out)
    validate_query(args.query)
    image = load_image(args.image, max_pixels=settings.max_pixels)
    if settings.device not in (None, "auto"):
        from .devices import resolve_device

        resolve_device(settings.device)
    verifier = f", verifier: {settings.verifier}" if settings.verify and settings.verifier else ""
    print(f"loading models (reasoner: {settings.reasoner or settings.preset + ' preset'}, "
          f"segmenter: {settings.segmenter or settings.preset + ' preset'}{verifier}) ...", file=sys.stderr, flush=True)
    pipe = settings.build_pipeline(with_segmenter=not args.no_masks, with_verifier=settings.verify)
    print("reasoning ...", file=sys.stderr, flush=True)
    result = pipe.segment(image, args.query, compute_masks=not args.no_masks, verify=settings.verify,
                          verify_rounds=settings.verify_rounds)
    if args.out:
        written = result.save(args.out, masks=not args.no_masks, mask_encoding=args.mask_encoding,
                              overlay_max_side=args.overlay_max_side)
        log.debug("wrote %s", written)
    if args.json:
        print(result.to_json(args.mask_encoding))
    else:
        print("reasoning:", result.reasoning or "(none)")
        print(result.summary())
        if result.verification:
            print("verification:", result.verification.get("note") or result.verification.get("status"))
        if result.parse_issues:
            print("notes:", "; ".join(result.parse_issues[:5]))
        if args.out:
            print(f"wrote {Path(args.out) / 'result.json'}, mask PNGs and overlay.png")
    return 0


def check_out_dir(out: str | os.PathLike) -> Path:
    """Refuse an output folder that cannot be written, before any model loads.

    Raises:
        SettingsError: ``out`` is an existing file, lies under a file, or is not writable.
    """
    p = Path(out).expanduser()
    if p.exists() and not p.is_dir():
        raise SettingsError(f"--out {str(out)!r} is an existing file, not a folder")
    probe = p
    while not probe.exists():  # the nearest existing folder is where the new one would be made
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise SettingsError(f"--out {str(out)!r} cannot be made: {str(probe)!r} is a file")
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        what = "is not writable" if probe == p else f"cannot be made: {str(probe)!r} is not writable"
        raise SettingsError(f"--out {str(out)!r} {what}")
    return p


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


#: ``segzero make-tiny-models`` families: name -> (subfolder, builder module, builder, how to use it).
TINY_FAMILIES: dict[str, tuple[str, str, str, str]] = {
    "qwen2.5-vl": ("reasoner", "tiny_qwen", "build_tiny_qwen2_5_vl", "--reasoner {}"),
    "sam2": ("segmenter", "tiny_sam2", "build_tiny_sam2", "--segmenter {}"),
    "qwen3-vl": ("reasoner-qwen3vl", "tiny_qwen3", "build_tiny_qwen3_vl", "--reasoner {}"),
    "sam3": ("segmenter-sam3", "tiny_sam3", "build_tiny_sam3_tracker", "--segmenter {}"),
    "sam3-concept": ("concept-sam3", "tiny_sam3_concept", "build_tiny_sam3_concept", "segzero phrase IMAGE PHRASE --model {}"),
    "sam2-video": ("segmenter-sam2-video", "tiny_sam2", "build_tiny_sam2_video",
                   "segzero track VIDEO QUERY --segmenter {}"),
}


def _cmd_tiny(args: argparse.Namespace) -> int:
    import importlib

    names = list(TINY_FAMILIES)
    if args.only:
        names = [n.strip().lower() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in TINY_FAMILIES]
        if unknown or not names:
            print(f"segzero: error: --only: unknown {', '.join(unknown) or 'empty list'}; choose from "
                  f"{', '.join(TINY_FAMILIES)}", file=sys.stderr)
            return 2
    out = Path(args.out)
    for name in names:
        folder, module, builder, usage = TINY_FAMILIES[name]
        build = getattr(importlib.import_module(f".testing.{module}", __package__), builder)
        path = build(out / folder, seed=args.seed)
        print(f"tiny random {name:<12} {path}   ({usage.format(path)})")
    print("These have random weights: they load and run like the real models but answer garbage.")
    return 0


def _cmd_serve_reasoner(args: argparse.Namespace) -> int:
    from .serve import build_serve_command, serve

    extra = list(args.vllm_args)
    if extra and extra[0] == "--":
        extra = extra[1:]
    try:
        argv = build_serve_command(
            args.model, host=args.host, port=args.port, tensor_parallel=args.tensor_parallel,
            data_parallel=args.data_parallel, gpu_memory_utilization=args.gpu_memory_utilization,
            max_model_len=args.max_model_len, dtype=args.dtype, frame_size=args.frame_size,
            served_model_name=args.served_model_name, extra_args=extra,
        )
    except ValueError as exc:
        print(f"segzero: error: {exc}", file=sys.stderr)
        return 2
    return serve(argv, print_only=args.print_only)


def _cmd_eval(args: argparse.Namespace) -> int:
    from .eval.command import run_eval_command

    return run_eval_command(args, _settings_from_args(args))


def _hub_hints(exc, command: str) -> list[str]:  # exc: HubUnreachableError
    """What to do when a model cannot come from the hub, with this command's flags."""
    if command not in ("segment", "eval"):
        return list(exc.hints)
    lines = [
        "Use local folders: --reasoner DIR --segmenter DIR (fetch them where the hub is reachable: "
        f"`hf download {exc.model_id} --local-dir DIR`).",
    ]
    if not exc.offline:
        lines.append("Or copy a filled Hugging Face cache here and set HF_HUB_OFFLINE=1 (HF_HOME pointing at it).")
    lines.append("No weights at hand: `segzero make-tiny-models .tiny`, then --reasoner .tiny/reasoner "
                 "--segmenter .tiny/segmenter (random weights: a dry run with garbage answers).")
    return lines


class _OncePerRecord(logging.Filter):
    """Drop records that a library's own handler already printed (``huggingface_hub`` adds a stream
    handler to its logger and still propagates to the root), so each line appears once."""

    def filter(self, record: logging.LogRecord) -> bool:
        name = record.name
        while name:
            logger = logging.Logger.manager.loggerDict.get(name)
            if isinstance(logger, logging.Logger):
                if any(not isinstance(h, logging.NullHandler) for h in logger.handlers):
                    return False
                if not logger.propagate:
                    return True
            name = name.rpartition(".")[0]
        return True


def setup_logging(verbosity: int = 0) -> None:
    """Log to stderr once per record: warnings by default, info with ``-v``, debug with ``-vv``."""
    level = logging.WARNING if not verbosity else logging.INFO if verbosity == 1 else logging.DEBUG
    root = logging.getLogger()
    ours = [h for h in root.handlers if getattr(h, "segzero_cli", False)]
    if root.handlers and not ours:
        return  # the embedding program (or pytest) configured logging; leave it alone
    for h in ours:
        root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_OncePerRecord())
    handler.segzero_cli = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("httpx", "httpx2", "httpcore", "httpcore2", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    handlers = {"segment": _cmd_segment, **cli_steer.COMMANDS, **cli_phrase.COMMANDS, **cli_track.COMMANDS,
                **cli_batch.COMMANDS, **cli_demo.COMMANDS,
                "models": _cmd_models, "make-tiny-models": _cmd_tiny,
                "serve-reasoner": _cmd_serve_reasoner, "eval": _cmd_eval}
    try:
        return handlers[args.command](args)
    except SegZeroError as exc:
        from .errors import HubUnreachableError, ImageTooLargeError

        if isinstance(exc, HubUnreachableError):
            print("segzero: error: " + " ".join(exc.message.split()) + ".", file=sys.stderr)
            for line in _hub_hints(exc, args.command):
                print("  " + line, file=sys.stderr)
            return exc.exit_code
        hint = (" (or raise --max-pixels)" if isinstance(exc, ImageTooLargeError)
                and args.command in ("segment", "prompt", "inspect", "refine", "select", "track")
                else "")
        print("segzero: error: " + " ".join(str(exc).split()) + hint, file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("segzero: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `segzero models | head`
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # a bug: one line, the traceback with -v
        if args.verbose:
            raise
        text = " ".join(str(exc).split())[:300]
        print(f"segzero: unexpected error: {type(exc).__name__}{': ' + text if text else ''} "
              "(run again with -v for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
