"""``segzero demo``: a web page for people over the same pipeline as ``segzero segment`` (Gradio; the ``demo``
extra).

    segzero demo [--host 127.0.0.1] [--port 7860] [--share] [--out DIR] [--max-file-mb 50] [--view-side 1024]
                 [model options]

The page answers at once; the models load in the background and the page says when they are ready.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from .settings import SettingsError

#: The example pictures offered in the page (shipped in the repository's examples/ folder, when present).
EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"


def add_parsers(sub: Any) -> list[argparse.ArgumentParser]:
    from .cli import _add_model_options

    p = sub.add_parser("demo", help="a web page: segment, look, click to refine (Gradio)",
                       description="Start a local web page on the pipeline these options load: upload or pick a "
                                   "picture, ask, see the reasoning, the overlay and the objects, click to add or "
                                   "remove points of an object or two corners of a new box, undo, download. Needs "
                                   "Gradio: pip install 'segzero-tool[demo]'.")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 for others)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--share", action="store_true", help="also open a public Gradio share link (off by default)")
    p.add_argument("--out", help="keep every download under this folder (default: a temporary folder removed at exit)")
    p.add_argument("--max-file-mb", type=float, default=50.0, metavar="MB",
                   help="largest upload the page accepts (default 50 MB; pictures over --max-pixels are refused too)")
    p.add_argument("--view-side", type=int, default=1024, metavar="PX",
                   help="longest side of the picture shown in the page (default 1024)")
    _add_model_options(p)
    return [p]


def examples(folder: Path = EXAMPLES_DIR) -> list[str]:
    """The example photographs listed in ``examples/IMAGES.md`` (not the screenshots and contact sheets beside
    them); none when the folder is not there (an installed package)."""
    import re

    listing = folder / "IMAGES.md"
    if not listing.is_file():
        return []
    names = re.findall(r"^\| `([^`/]+\.(?:png|jpe?g))` \|", listing.read_text(encoding="utf-8"), flags=re.M)
    return [str(folder / n) for n in names if (folder / n).is_file()]


def cmd_demo(args: argparse.Namespace) -> int:
    from .cli import _settings_from_args, check_out_dir

    settings = _settings_from_args(args)
    if not 0 < args.port < 65536:
        raise SettingsError(f"--port must be 1 to 65535, got {args.port}")
    if not 0 < args.max_file_mb < float("inf"):
        raise SettingsError(f"--max-file-mb must be a positive number, got {args.max_file_mb}")
    if args.view_side < 64:
        raise SettingsError(f"--view-side must be at least 64, got {args.view_side}")
    if args.out:
        check_out_dir(args.out)
    try:
        import gradio  # noqa: F401
    except ImportError:
        from .errors import MissingDependencyError

        raise MissingDependencyError("segzero demo needs Gradio: pip install \"segzero-tool[demo]\"") from None
    if settings.device not in (None, "auto"):
        from .devices import resolve_device

        resolve_device(settings.device)
    from .demo.app import Models, build_app

    models = Models(lambda: settings.build_pipeline(with_verifier=False)).start()
    folder = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="segzero-demo-"))
    app = build_app(models, folder=folder, examples=examples(), view_side=args.view_side)
    kept = "kept" if args.out else "removed when the app stops"
    print(f"segzero demo on http://{args.host}:{args.port} (models loading in the background; Ctrl-C stops); "
          f"downloads go to {folder} ({kept})", file=sys.stderr, flush=True)
    try:
        app.launch(server_name=args.host, server_port=args.port, share=args.share, inbrowser=False, quiet=True,
                   show_error=False, allowed_paths=[str(folder)], max_file_size=int(args.max_file_mb * 1024 * 1024), **getattr(app, "segzero_launch", {}))
    finally:
        if not args.out:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


COMMANDS = {"demo": cmd_demo}

__all__ = ["COMMANDS", "add_parsers", "cmd_demo", "examples"]
