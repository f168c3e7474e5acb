"""Fixtures of the browser tests of ``segzero demo``: the system's Chromium driven by Playwright (one browser for the
module), the demo as a real subprocess (scripted reasoner, tiny random SAM2), a fresh page per test.

Without Chromium the tests skip (``bash tests/demo/install_browser.sh`` installs Debian's); with ``CI`` set they
fail instead, since CI must run them."""

from __future__ import annotations

import pytest
from browser import INSTALL_SCRIPT, DemoServer, find_chromium, in_ci, launch, open_page, script_folder


@pytest.fixture(scope="module")
def chromium() -> str:
    path = find_chromium()
    if path is None:
        reason = (f"no Chromium for the browser tests of segzero demo: run `bash {INSTALL_SCRIPT}` (Debian's "
                  "chromium package) or set SEGZERO_CHROMIUM to a Chromium binary")
        if in_ci():
            pytest.fail(reason + " (CI is set: these tests must run)", pytrace=False)
        pytest.skip(reason)
    return path


@pytest.fixture(scope="module")
def browser(chromium):
    if in_ci():  # CI must run these tests: a missing playwright is an error there
        from playwright.sync_api import sync_playwright
    else:
        sync_playwright = pytest.importorskip(
            "playwright.sync_api", reason="the Python package playwright (dev extra)").sync_playwright
    with sync_playwright() as pw:
        b = launch(pw, chromium)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def demo(tiny_models, tmp_path_factory, browser):
    """The demo as users start it: scripted reasoner, tiny random SAM2 on the CPU, at most 300,000 pixels."""
    root = tmp_path_factory.mktemp("demo")
    args = ["--reasoner-backend", "scripted:ScriptedReasoner", "--reasoner", str(script_folder(root / "script")),
            "--segmenter", str(tiny_models["segmenter"]), "--device", "cpu", "--max-pixels", "300000",
            "--out", str(root / "downloads")]
    server = DemoServer(root / "server", args).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def page(browser, demo):
    """A fresh page (a new session) on the module's demo, the models ready."""
    p = open_page(browser, demo)
    try:
        yield p
    finally:
        p.context.close()
