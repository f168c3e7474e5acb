"""Helpers of the browser tests of ``segzero demo`` (tests/demo/test_demo_browser.py), and the script that
regenerates the README's screenshot:

    python tests/demo/browser.py --screenshot examples/demo.png

* :func:`find_chromium`: the system's Chromium (Debian's ``chromium`` package: ``bash tests/demo/install_browser.sh``),
  or the one ``SEGZERO_CHROMIUM`` names. Playwright drives it (``executable_path``); Playwright's own browser
  download is never used.
* :func:`launch`: that browser, headless, with everything that would reach the network switched off.
* :class:`DemoServer`: ``python -m segzero_tool demo ...`` as a real subprocess on a free port, started as a user
  starts it, waited for until the page is served, stopped at the end.
* :class:`FailingReasoner`: a reasoner plugin whose every answer raises (a model failure in the middle of a query),
  selected with ``--reasoner-backend browser:FailingReasoner`` with this folder on ``PYTHONPATH``.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEMO_DIR = Path(__file__).resolve().parent
TESTS = DEMO_DIR.parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from served import ServedProcess  # noqa: E402

REPO = TESTS.parent
COFFEE = REPO / "examples" / "coffee.png"  # 600x400
QUERY = "What can I drink here?"
#: The scripted reasoner's answer for examples/coffee.png: two objects (in the 840x840 reasoning frame).
REASONING = "The cup holds the coffee to drink; the spoon on the saucer goes with it."
ANSWER = (f'<think>{REASONING}</think><answer>['
          '{"bbox_2d": [168.0, 168.0, 420.0, 504.0], "point_2d": [294.0, 336.0]}, '
          '{"bbox_2d": [504.0, 252.0, 756.0, 672.0], "point_2d": [630.0, 462.0]}]</answer>')
#: Where the browser looks for Chromium, in order (after $SEGZERO_CHROMIUM).
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "chromium", "chromium-browser")
#: Headless Chromium without anything that phones home (the CI machine may have no network).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-default-apps",
                 "--disable-extensions"]
VIEWPORT = {"width": 1400, "height": 1000}
READY_TIMEOUT = 90.0  # seconds until the page is served (Gradio's import: ~5 s on 2 cores)
INSTALL_SCRIPT = "tests/demo/install_browser.sh"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def find_chromium() -> str | None:
    """The Chromium to drive: ``$SEGZERO_CHROMIUM``, else the system's (Debian: /usr/bin/chromium); None if none."""
    named = os.environ.get("SEGZERO_CHROMIUM")
    for candidate in ((named,) if named else CHROMIUM_CANDIDATES):
        path = candidate if os.sep in candidate else shutil.which(candidate)
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def launch(playwright: Any, executable: str) -> Any:
    """A headless Chromium (the system's, at ``executable``) driven by Playwright."""
    return playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)


def script_folder(folder: Path, answers: Sequence[str] = (ANSWER,)) -> Path:
    """A folder for ``--reasoner-backend scripted:ScriptedReasoner --reasoner FOLDER`` (its script.json)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "script.json").write_text(json.dumps(list(answers)))
    return folder


def _serves(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/")
        resp = conn.getresponse()
        body = resp.read()
        return resp.status == 200 and b"<html" in body.lower()
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


class DemoServer(ServedProcess):
    """``python -m segzero_tool demo --port PORT ARGS`` in ``folder`` (its log: ``folder/demo.log``), with
    ``tests/`` and ``tests/demo/`` on ``PYTHONPATH`` (the plugins) and the Hugging Face Hub offline."""

    ready_timeout = READY_TIMEOUT
    log_name = "demo.log"
    what = "segzero demo"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None and _serves(self.port)

    def command(self, port: int) -> list[str]:
        return [sys.executable, "-m", "segzero_tool", "demo", "--port", str(port), *self.args]

    def environment(self) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("SEGZERO", "GRADIO"))}
        path = os.pathsep.join([str(TESTS), str(DEMO_DIR), *filter(None, [os.environ.get("PYTHONPATH")])])
        return {**keep, "PYTHONPATH": path, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_TEMP_DIR": str(self.folder / "gradio-tmp")}

    def ready(self) -> bool:
        return _serves(self.port)

    def start(self) -> DemoServer:
        super().start()
        return self


# --- a reasoner plugin that fails ---------------------------------------------------------------------------------

FAILURE = "the reasoner ran out of memory (simulated by tests/demo/browser.py)"


def _failing_reasoner_class() -> type:
    from scripted import ScriptedReasoner

    class FailingReasoner(ScriptedReasoner):
        """Loads like ScriptedReasoner; every answer raises a RuntimeError (a model failure mid-query)."""

        name = "failing"

        def generate(self, requests):  # noqa: ANN001, ANN202 - the Reasoner interface
            raise RuntimeError(FAILURE)

    FailingReasoner.__module__ = __name__
    FailingReasoner.__qualname__ = "FailingReasoner"
    return FailingReasoner


def __getattr__(name: str) -> Any:  # FailingReasoner is built on first use: importing this module needs no tests/
    if name == "FailingReasoner":
        cls = _failing_reasoner_class()
        globals()[name] = cls
        return cls
    raise AttributeError(name)


# --- page helpers (Playwright's sync API) -------------------------------------------------------------------------

def open_page(browser: Any, server: DemoServer, *, wait_ready: bool = True) -> Any:
    """A fresh page (a new Gradio session) on the demo; waits until it says the models are ready."""
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    page = context.new_page()
    page.goto(server.url, wait_until="domcontentloaded")
    page.wait_for_selector("#message", timeout=60_000)
    if wait_ready:
        page.wait_for_selector("text=Models: ready", timeout=120_000)
    return page


def message(page: Any) -> str:
    return page.inner_text("#message").strip()


def wait_message(page: Any, text: str, timeout: float = 60_000) -> str:
    """Wait until the message line contains ``text``; returns the whole line."""
    page.locator("#message", has_text=text).wait_for(timeout=timeout)
    return message(page)


def upload(page: Any, path: Path | str) -> None:
    page.set_input_files("#picture input[type=file]", str(path))


def pick_example(page: Any, index: int = 0) -> None:
    """Click the ``index``-th example picture under the upload (as the demo offers them: coffee.png first)."""
    page.locator("button.example, .gallery-item").nth(index).click()


def ask(page: Any, query: str) -> None:
    page.fill("#query textarea", query)
    page.click("#segment")


def table(page: Any) -> list[list[str]]:
    """The object table's rows as texts (Gradio's Dataframe draws them as ``[role=row]`` of ``[role=gridcell]``)."""
    return page.eval_on_selector_all(
        "#objects .virtual-row",
        "rows => rows.map(r => Array.from(r.querySelectorAll('[role=gridcell]')).map(c => c.innerText.trim()))")


def view_src(page: Any) -> str | None:
    img = page.locator("#view img")
    return img.get_attribute("src") if img.count() else None


def wait_view_change(page: Any, before: str | None, timeout: float = 60_000) -> str:
    """Wait until the result image's ``src`` differs from ``before`` (Gradio serves each new image as a new file)."""
    page.wait_for_function(
        "before => { const i = document.querySelector('#view img'); return i && i.src && i.src !== before; }",
        arg=before or "", timeout=timeout)
    return view_src(page)


def click_view(page: Any, fx: float, fy: float) -> None:
    """Click the result image at fractions ``(fx, fy)`` of its width and height."""
    box = page.locator("#view img").bounding_box()
    page.mouse.click(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy)


def set_mode(page: Any, label: str) -> None:
    page.locator("#mode label", has_text=label).click()


# --- the README screenshot ----------------------------------------------------------------------------------------

def screenshot(out: Path) -> Path:
    """The page after a query on examples/coffee.png and one refining click, with the scripted reasoner and
    tests/scripted.py's BoxSegmenter (clean box masks), saved as ``out``."""
    import tempfile

    from playwright.sync_api import sync_playwright

    chromium = find_chromium()
    if chromium is None:
        raise SystemExit(f"no Chromium found: run `bash {INSTALL_SCRIPT}` or set SEGZERO_CHROMIUM")
    with tempfile.TemporaryDirectory(prefix="segzero-demo-shot-") as tmp:
        root = Path(tmp)
        (root / "seg").mkdir()
        args = ["--reasoner-backend", "scripted:ScriptedReasoner", "--reasoner", str(script_folder(root / "script")),
                "--segmenter-backend", "scripted:BoxSegmenter", "--segmenter", str(root / "seg"), "--device", "cpu"]
        with DemoServer(root / "server", args) as server, sync_playwright() as pw:
            browser = launch(pw, chromium)
            try:
                page = open_page(browser, server)
                upload(page, COFFEE)
                wait_message(page, "Ask a question")
                ask(page, QUERY)
                wait_message(page, "2 objects")
                before = view_src(page)
                click_view(page, 0.30, 0.62)  # a point added to object #0, below its box
                wait_view_change(page, before)
                page.wait_for_timeout(500)  # let the image settle
                png = page.screenshot()  # the viewport: the controls, the result, the reasoning and the table
            finally:
                browser.close()
    from PIL import Image

    out.parent.mkdir(parents=True, exist_ok=True)
    shot = Image.open(io.BytesIO(png)).convert("RGB")  # 256 colours keep the README's picture small (~200 KB)
    shot.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(out, optimize=True)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--screenshot", type=Path, required=True, help="where to write the PNG (examples/demo.png)")
    args = parser.parse_args(argv)
    sys.path[:0] = [str(TESTS)]  # tests/scripted.py for the subprocess's plugins is on its PYTHONPATH already
    out = screenshot(args.screenshot)
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
