"""The command line a newcomer meets: `segzero segment` run as a real process, the way a user runs it.

Bad option values stop the command at once with one ``segzero: error:`` line and exit 2, before
any model loads; the segmenter's settings are checked before the reasoner loads; written files
respect the umask; a re-run into the same folder leaves no stale masks; ``-v`` works after the
subcommand and each log record prints once.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COFFEE = REPO / "examples" / "coffee.png"
TWO = ('<think>Two things.</think><answer>[{"bbox_2d": [168,126,588,672], "point_2d": [378,420]}, '
       '{"bbox_2d": [600,700,800,830], "point_2d": [700,760]}]</answer>')
ONE = '<think>One thing.</think><answer>[{"bbox_2d": [168,126,588,672], "point_2d": [378,420]}]</answer>'
#: A reasoner that takes a minute to load: an error reported sooner came before any model loaded.
SLOW_LOAD_S = 60


def _folder(tmp_path: Path, answer: str = TWO, *, load_s: float = 0, name: str = "script") -> Path:
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    (folder / "script.json").write_text(json.dumps([answer]))
    if load_s:
        (folder / "slow.json").write_text(json.dumps({"load_s": load_s}))
    return folder


def _run(*args: str, tmp_path: Path, umask: int | None = None, extra_env: dict[str, str] | None = None,
         timeout: float = 300) -> tuple[subprocess.CompletedProcess, float]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("SEGZERO_")}
    env.update({"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
                "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")]), **(extra_env or {})})
    preexec = (lambda: os.umask(umask)) if umask is not None else None
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "segzero_tool", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, preexec_fn=preexec)
    return proc, time.monotonic() - t0


def _slow(tmp_path: Path) -> list[str]:
    return ["--reasoner-backend", "slow_plugins:SlowLoadingReasoner",
            "--reasoner", str(_folder(tmp_path, load_s=SLOW_LOAD_S, name="slow"))]


def _scripted(tmp_path: Path, answer: str = TWO) -> list[str]:
    return ["--reasoner-backend", "scripted:ScriptedReasoner", "--reasoner", str(_folder(tmp_path, answer))]


def _one_error_line(proc: subprocess.CompletedProcess, elapsed: float, message: str, code: int = 2) -> None:
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("segzero: error:") and message in lines[0], lines[0]
    assert "loading" not in proc.stderr
    assert elapsed < SLOW_LOAD_S / 2, f"took {elapsed:.1f}s: a model was loaded before the check"


# --- 1. every option is checked before any model loads -----------------------------------------

@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--dtype", "float8"], "--dtype must be auto, bf16, fp16 or fp32, got 'float8'"),
        (["--max-objects", "0"], "--max-objects must be at least 1, got 0"),
        (["--frame-size", "0"], "--frame-size must be at least 1, got 0"),
        (["--max-new-tokens", "0"], "--max-new-tokens must be at least 1, got 0"),
        (["--overlay-max-side", "0"], "--overlay-max-side must be at least 1, got 0"),
        (["--max-pixels", "-5"], "--max-pixels must be at least 1, got -5"),
    ],
)
def test_bad_option_is_one_line_before_any_model_loads(tmp_path, flags, message):
    proc, elapsed = _run("segment", str(COFFEE), "q", *_slow(tmp_path), *flags, tmp_path=tmp_path)
    _one_error_line(proc, elapsed, message)


def test_bad_environment_value_is_one_line(tmp_path):
    proc, elapsed = _run("segment", str(COFFEE), "q", *_slow(tmp_path), tmp_path=tmp_path,
                         extra_env={"SEGZERO_MAX_OBJECTS": "0"})
    _one_error_line(proc, elapsed, "environment: SEGZERO_MAX_OBJECTS must be at least 1, got 0")


def test_bad_config_file_value_is_one_line(tmp_path):
    cfg = tmp_path / "segzero.toml"
    cfg.write_text('dtype = "float8"\n')
    proc, elapsed = _run("segment", str(COFFEE), "q", *_slow(tmp_path), "--config", str(cfg), tmp_path=tmp_path)
    _one_error_line(proc, elapsed, f"{cfg}: dtype must be auto, bf16, fp16 or fp32")


def test_out_that_is_a_file_fails_before_inference(tmp_path):
    target = tmp_path / "taken"
    target.write_text("not a folder")
    proc, elapsed = _run("segment", str(COFFEE), "q", *_slow(tmp_path), "--out", str(target), tmp_path=tmp_path)
    _one_error_line(proc, elapsed, "is an existing file, not a folder")
    proc, elapsed = _run("segment", str(COFFEE), "q", *_slow(tmp_path), "--out", str(target / "sub"),
                         tmp_path=tmp_path)
    _one_error_line(proc, elapsed, "is a file")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write anywhere")
def test_out_not_writable_fails_before_inference(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        proc, elapsed = _run("segment", str(COFFEE), "q", *_slow(tmp_path), "--out", str(locked), tmp_path=tmp_path)
        _one_error_line(proc, elapsed, "is not writable")
        proc, elapsed = _run("segment", str(COFFEE), "q", *_slow(tmp_path), "--out", str(locked / "new"),
                             tmp_path=tmp_path)
        _one_error_line(proc, elapsed, "is not writable")
    finally:
        locked.chmod(0o700)


# --- 2. the segmenter is resolved before the reasoner loads --------------------------------------

@pytest.mark.parametrize(
    ("flags", "code", "message"),
    [
        (["--segmenter", "sam2.1-hiera-lrage"], 4, "unknown segmenter 'sam2.1-hiera-lrage'"),
        (["--segmenter-backend", "nope"], 5, "unknown segmenter backend 'nope'"),
        (["--segmenter-backend", "no_such_module:Seg"], 5, "cannot import module 'no_such_module'"),
    ],
)
def test_segmenter_typo_fails_before_the_reasoner_loads(tmp_path, flags, code, message):
    proc, elapsed = _run("segment", str(COFFEE), "q", *_slow(tmp_path), *flags, "-v", tmp_path=tmp_path)
    assert proc.returncode == code, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("segzero: error:")
    assert message in proc.stderr
    assert "loading reasoner" not in proc.stderr
    assert elapsed < SLOW_LOAD_S / 2


def test_sam2_extra_is_checked_before_the_reasoner_loads(tmp_path):
    pytest.importorskip("segzero_tool.segmenters.meta_sam2")
    try:
        import sam2  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("Meta's sam2 package is installed here")
    proc, elapsed = _run("segment", str(COFFEE), "q", *_slow(tmp_path), "--segmenter-backend", "sam2",
                         tmp_path=tmp_path)
    assert proc.returncode == 5, proc.stderr
    assert "segzero-tool[sam2]" in proc.stderr.strip().splitlines()[-1]
    assert elapsed < SLOW_LOAD_S / 2


# --- 3. files written: umask, stale masks, union field ------------------------------------------

def _mask_segment(tmp_path: Path, tiny_models, out: Path, answer: str, *extra: str, umask: int | None = None):
    proc, _ = _run("segment", str(COFFEE), "q", *_scripted(tmp_path, answer), "--segmenter",
                   str(tiny_models["segmenter"]), "--device", "cpu", "--out", str(out), *extra,
                   tmp_path=tmp_path, umask=umask)
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.mark.skipif(not hasattr(os, "fchmod"), reason="POSIX file modes")
def test_written_files_respect_the_umask(tmp_path, tiny_models):
    out = tmp_path / "res"
    _mask_segment(tmp_path, tiny_models, out, ONE, umask=0o022)
    for name in ("result.json", "overlay.png", "mask_0.png", "mask_union.png"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o644, name
    out2 = tmp_path / "res2"
    _mask_segment(tmp_path, tiny_models, out2, ONE, umask=0o077)
    assert stat.S_IMODE((out2 / "result.json").stat().st_mode) == 0o600


def test_rerun_into_the_same_out_leaves_no_stale_masks(tmp_path, tiny_models):
    out = tmp_path / "res"
    _mask_segment(tmp_path, tiny_models, out, TWO)
    assert (out / "mask_1.png").exists()
    (out / "mask_notes.png").write_bytes(b"the user's own file")
    (out / "notes.txt").write_text("keep me")
    _mask_segment(tmp_path, tiny_models, out, ONE)
    assert sorted(p.name for p in out.iterdir()) == ["logits.npz", "mask_0.png", "mask_notes.png", "mask_union.png",
                                                     "notes.txt", "overlay.png", "result.json"]
    data = json.loads((out / "result.json").read_text())
    assert len(data["objects"]) == 1 and data["union"]["area"] > 0


def test_no_masks_run_reports_a_null_union_and_drops_old_masks(tmp_path, tiny_models):
    out = tmp_path / "res"
    _mask_segment(tmp_path, tiny_models, out, TWO)
    _mask_segment(tmp_path, tiny_models, out, TWO, "--no-masks")
    assert not list(out.glob("mask_*.png"))
    data = json.loads((out / "result.json").read_text())
    assert "union" in data and data["union"] is None


def test_no_objects_has_an_empty_union(tmp_path, tiny_models):
    out = tmp_path / "res"
    _mask_segment(tmp_path, tiny_models, out, "<think>nothing</think><answer>[]</answer>")
    data = json.loads((out / "result.json").read_text())
    assert data["objects"] == [] and data["union"]["area"] == 0 and "rle" in data["union"]


# --- 4. logging ------------------------------------------------------------------------------

def test_verbose_after_the_subcommand(tmp_path):
    quiet, _ = _run("segment", str(COFFEE), "q", *_scripted(tmp_path), "--no-masks", tmp_path=tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    assert "INFO" not in quiet.stderr  # warnings only by default
    loud, _ = _run("segment", str(COFFEE), "q", *_scripted(tmp_path), "--no-masks", "-v", tmp_path=tmp_path)
    assert loud.returncode == 0, loud.stderr
    assert "INFO segzero_tool.pipeline: loading reasoner" in loud.stderr
    before, _ = _run("-v", "segment", str(COFFEE), "q", *_scripted(tmp_path), "--no-masks", tmp_path=tmp_path)
    assert "INFO segzero_tool.pipeline: loading reasoner" in before.stderr


def test_each_log_record_prints_once(tmp_path):
    code = (
        "import logging, sys\n"
        "from segzero_tool.cli import setup_logging\n"
        "setup_logging(1)\n"
        "from huggingface_hub.utils import logging as hf_logging\n"
        "hf_logging.get_logger('huggingface_hub.test').warning('hub says once')\n"
        "logging.getLogger('segzero_tool.test').info('we say once')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("hub says once") == 1, proc.stderr
    assert proc.stderr.count("we say once") == 1, proc.stderr


def test_setup_logging_leaves_a_configured_root_alone():
    from segzero_tool.cli import setup_logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    if not handlers:
        pytest.skip("needs an already configured root logger (as under pytest)")
    setup_logging(2)
    assert root.handlers == handlers and root.level == level


# --- 5. usage errors and the exit codes 1 and 130 ----------------------------------------------

@pytest.mark.parametrize(
    ("args", "message", "see"),
    [
        ([], "the following arguments are required: image, query", "segzero segment --help"),
        (["img.png", "q", "--mask-encoding", "foo"], "argument --mask-encoding: invalid choice: 'foo'",
         "segzero segment --help"),
        (["img.png", "q", "--max-objects", "abc"], "argument --max-objects: invalid int value: 'abc'",
         "segzero segment --help"),
        (["img.png", "q", "--no-such-flag"], "unrecognized arguments: --no-such-flag", "segzero --help"),
    ],
)
def test_usage_errors_are_one_line(tmp_path, args, message, see):
    proc, _ = _run("segment", *args, tmp_path=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()], proc.stderr  # no usage block
    assert proc.stderr.startswith("segzero: error: ") and message in proc.stderr and f"(see {see})" in proc.stderr


@pytest.mark.parametrize(
    ("module", "args", "prefix"),
    [
        ("segzero_tool", ["no-such-command"], "segzero: error: argument command: invalid choice"),
        ("segzero_tool.training", ["--recipe", "lora-24gb", "--max-steps", "abc"], "segzero-train: error: argument"),
        ("segzero_tool.mcp_server", ["--port", "abc"], "segzero-mcp: error: argument --port"),
    ],
)
def test_every_console_script_has_one_line_usage_errors(tmp_path, module, args, prefix):
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, env=env,
                          timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith(prefix), proc.stderr


def test_unexpected_error_is_one_line_and_exit_1(tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "boom_plugin.py").write_text(
        "from segzero_tool import Reasoner\n"
        "class BoomReasoner(Reasoner):\n"
        "    def generate(self, requests):\n"
        "        return []\n"
        "    @classmethod\n"
        "    def from_pretrained(cls, model, **kwargs):\n"
        "        raise RuntimeError('boom: a bug in the plugin')\n"
    )
    flags = ["--reasoner-backend", "boom_plugin:BoomReasoner", "--reasoner", str(tmp_path), "--no-masks"]
    env = {"PYTHONPATH": os.pathsep.join([str(REPO), str(plugins)])}
    proc, _ = _run("segment", str(COFFEE), "q", *flags, tmp_path=tmp_path, extra_env=env)
    assert proc.returncode == 1, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last == ("segzero: unexpected error: RuntimeError: boom: a bug in the plugin "
                    "(run again with -v for the traceback)"), proc.stderr
    assert "Traceback" not in proc.stderr
    loud, _ = _run("segment", str(COFFEE), "q", *flags, "-v", tmp_path=tmp_path, extra_env=env)
    assert loud.returncode == 1 and "Traceback" in loud.stderr and "boom: a bug in the plugin" in loud.stderr


def test_ctrl_c_exits_130(tmp_path):
    import signal

    env = {name: value for name, value in os.environ.items() if not name.startswith("SEGZERO_")}
    env.update({"HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])})
    proc = subprocess.Popen([sys.executable, "-m", "segzero_tool", "segment", str(COFFEE), "q", *_slow(tmp_path),
                             "--no-masks"], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    assert proc.stderr is not None
    try:
        seen = ""
        while "Loading checkpoint shards" not in seen:  # the plugin's 60 s load has begun
            char = proc.stderr.read(1)
            assert char, f"ended early: {seen}"
            seen += char
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        rest = proc.stderr.read()
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 130, seen + rest
    assert time.monotonic() - t0 < SLOW_LOAD_S / 2
    assert rest.strip().splitlines()[-1].endswith("segzero: interrupted"), rest  # after the plugin's bar
    assert "Traceback" not in rest
