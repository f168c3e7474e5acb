"""Mp4Writer / VideoWriter: written to path + ".partial", renamed when complete, read back with open_video."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from segzero_tool.errors import ImageLoadError
from segzero_tool.settings import SettingsError
from segzero_tool.testing.synthetic_video import moving_shapes
from segzero_tool.video.encode import Mp4Writer, VideoWriter, pick_codec
from segzero_tool.video.sources import open_video

av = pytest.importorskip("av")


@pytest.fixture(scope="module")
def shapes():
    return list(moving_shapes(30))


def _diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def test_write_30_frames_and_read_them_back(tmp_path, shapes):
    path = tmp_path / "overlay.mp4"
    with Mp4Writer(path, fps=15, width=160, height=120) as writer:
        for f in shapes:
            writer.write(f.image)
            assert not path.exists() and writer.partial.exists()  # only the partial file while writing
        assert writer.codec == pick_codec(".mp4") == "libx264"
    assert path.exists() and not writer.partial.exists()
    with av.open(str(path)) as c:
        assert c.format.name.startswith("mov,mp4") and c.streams.video[0].codec_context.name == "h264"
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p"
    with open_video(path) as src:
        assert (src.info.width, src.info.height, src.info.fps, src.info.frame_count) == (160, 120, 15.0, 30)
        frames = list(src)
        assert src.warnings == []
    assert len(frames) == 30
    assert [f.time_s for f in frames] == pytest.approx([i / 15 for i in range(30)], abs=1e-3)
    for f, truth in zip(frames, shapes, strict=True):
        assert _diff(f.image, truth.image) < 6


def test_odd_sizes_become_even_and_other_sizes_are_resized(tmp_path, shapes):
    path = tmp_path / "odd.mp4"
    frames = list(moving_shapes(5, width=161, height=121))
    with Mp4Writer(path, fps=10, width=161, height=121) as writer:
        assert (writer.width, writer.height) == (160, 120)
        for f in frames:
            writer.write(f.image)  # one odd row and column dropped
        writer.write(Image.fromarray(shapes[0].image).resize((320, 240)))  # a PIL image of another size
    back = list(open_video(path))
    assert len(back) == 6 and back[0].image.shape == (120, 160, 3)
    assert _diff(back[0].image, frames[0].image[:120, :160]) < 6
    assert _diff(back[5].image, shapes[0].image) < 10


def test_abort_and_errors_leave_nothing(tmp_path, shapes):
    path = tmp_path / "a.mp4"
    writer = Mp4Writer(path, fps=10, width=160, height=120)
    for f in shapes[:5]:
        writer.write(f.image)
    writer.abort()
    writer.abort()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError, match="boom"):
        with Mp4Writer(path, fps=10, width=160, height=120) as w:
            w.write(shapes[0].image)
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    Mp4Writer(path, fps=10, width=160, height=120).close()  # no frame: no file
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="closed"):
        writer.write(shapes[0].image)


def test_a_crash_leaves_no_half_file(tmp_path):
    path = tmp_path / "crash.mp4"
    code = ("import os\nfrom segzero_tool.testing.synthetic_video import moving_shapes\n"
            "from segzero_tool.video.encode import Mp4Writer\n"
            f"w = Mp4Writer({str(path)!r}, fps=10, width=160, height=120)\n"
            "for f in moving_shapes(20):\n    w.write(f.image)\nos._exit(1)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out.stderr
    assert not path.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["crash.mp4.partial"]


def test_variable_frame_times(tmp_path, shapes):
    times = [0.0, 0.04, 0.5, 0.55, 2.0]
    path = tmp_path / "vfr.mp4"
    with Mp4Writer(path, fps=25, width=160, height=120) as writer:
        for f, t in zip(shapes, times, strict=False):
            writer.write(f.image, time_s=t)
        with pytest.raises(ValueError, match="frame times must increase"):
            writer.write(shapes[0].image, time_s=1.0)
        with pytest.raises(ValueError, match="finite"):
            writer.write(shapes[0].image, time_s=float("nan"))
    assert [f.time_s for f in open_video(path)] == pytest.approx(times, abs=1e-3)


@pytest.mark.parametrize(("name", "codec"), [("c.webm", None), ("c.mov", None), ("c.mkv", None), ("c.mp4", "mpeg4")])
def test_video_writer_formats(tmp_path, shapes, name, codec):
    with VideoWriter(tmp_path / name, fps=10, width=160, height=120, codec=codec) as writer:
        for f in shapes[:6]:
            writer.write(f.image)
    back = list(open_video(tmp_path / name))
    assert len(back) == 6 and _diff(back[4].image, shapes[4].image) < 8


def test_bad_arguments(tmp_path, shapes):
    with pytest.raises(SettingsError, match="fps"):
        Mp4Writer(tmp_path / "x.mp4", fps=float("inf"), width=160, height=120)
    with pytest.raises(ValueError, match="width"):
        Mp4Writer(tmp_path / "x.mp4", fps=10, width=1, height=120)
    with pytest.raises(ValueError, match="cannot pick a video format"):
        VideoWriter(tmp_path / "x.gif", fps=10, width=160, height=120)
    with pytest.raises(FileNotFoundError):
        Mp4Writer(tmp_path / "missing" / "x.mp4", fps=10, width=160, height=120)
    with Mp4Writer(tmp_path / "x.mp4", fps=10, width=160, height=120) as writer:
        with pytest.raises(ImageLoadError, match="expected an RGB numpy array or a PIL image, got str"):
            writer.write("frame.png")
        writer.write(shapes[0].image)
    assert list(tmp_path.iterdir()) == [tmp_path / "x.mp4"]
    (tmp_path / "dir.mp4").mkdir()  # the final rename fails: the partial file goes too
    writer = Mp4Writer(tmp_path / "dir.mp4", fps=10, width=160, height=120)
    writer.write(shapes[0].image)
    with pytest.raises(OSError):
        writer.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.mp4", "x.mp4"]
