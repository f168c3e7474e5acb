"""open_video: video files, frame folders and frame iterators, and every kind of bad input, through the
public entry point. (Named test_video_sources.py: tests/test_sources.py exists and test folders have no
__init__.py, so the same basename would clash at collection.)"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from segzero_tool.errors import ImageTooLargeError, MissingDependencyError, VideoLoadError
from segzero_tool.settings import SettingsError
from segzero_tool.testing.synthetic_video import (
    NAMES,
    moving_shapes,
    write_clip,
    write_frame_folder,
    write_vfr_clip,
)
from segzero_tool.video.sources import FrameSource, VideoFrame, open_video

av = pytest.importorskip("av")

VFR_TIMES = [0.0, 0.1, 0.15, 0.5, 0.52, 1.0, 1.7]


@pytest.fixture(scope="module")
def shapes():
    return list(moving_shapes(30))


@pytest.fixture(scope="module")
def clips(tmp_path_factory, shapes):
    root = tmp_path_factory.mktemp("clips")
    return {ext: write_clip(root / f"shapes.{ext}", shapes) for ext in ("mp4", "webm", "mov", "mkv")}


def _diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


# ---------------------------------------------------------------- files


@pytest.mark.parametrize("ext", ["mp4", "webm", "mov", "mkv"])
def test_file_frames_times_and_colours(clips, shapes, ext):
    with open_video(clips[ext]) as src:
        assert isinstance(src, FrameSource) and src.rewindable
        assert (src.info.kind, src.info.width, src.info.height, src.info.fps) == ("file", 160, 120, 10.0)
        assert src.info.source == str(clips[ext])
        frames = list(src)
        assert src.warnings == []
    assert [f.index for f in frames] == list(range(30))
    assert [f.time_s for f in frames] == pytest.approx([i / 10 for i in range(30)], abs=1e-3)
    for f, truth in zip(frames, shapes, strict=True):
        assert isinstance(f, VideoFrame)
        assert f.image.shape == (120, 160, 3) and f.image.dtype == np.uint8
        assert f.image.flags.c_contiguous and not f.image.flags.writeable
        assert _diff(f.image, truth.image) < 6
        # the red rectangle is red where the ground truth says it is
        red = f.image[truth.masks[1]].mean(axis=0)
        assert red[0] > 150 and red[1] < 100 and red[2] < 100


@pytest.mark.parametrize("codec", ["mpeg4", "libvpx-vp9"])
def test_other_codecs(tmp_path, shapes, codec):
    path = write_clip(tmp_path / ("c.webm" if "vpx" in codec else "c.mp4"), shapes[:8], codec=codec)
    frames = list(open_video(path))
    assert len(frames) == 8 and _diff(frames[3].image, shapes[3].image) < 8


@pytest.mark.parametrize(("name", "fmt", "codec"), [("c.avi", "avi", "mpeg4"), ("c.ts", "mpegts", "mpeg4"),
                                                   ("c.mpg", "mpeg", "mpeg2video"), ("c.flv", "flv", "libx264")])
def test_more_containers(tmp_path, shapes, name, fmt, codec):
    path = tmp_path / name
    with av.open(str(path), "w", format=fmt) as c:
        s = c.add_stream(codec, rate=10)
        s.width, s.height, s.pix_fmt = 160, 120, "yuv420p"
        for f in shapes[:6]:
            for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f.image), format="rgb24")):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    frames = list(open_video(path))
    assert len(frames) == 6 and _diff(frames[4].image, shapes[4].image) < 10


def test_animated_gif(tmp_path, shapes):
    path = tmp_path / "anim.gif"
    images = [Image.fromarray(f.image) for f in shapes[:5]]
    images[0].save(path, save_all=True, append_images=images[1:], duration=100, loop=0)
    frames = list(open_video(path))
    assert len(frames) == 5 and frames[0].image.shape == (120, 160, 3)
    assert [f.time_s for f in frames] == pytest.approx([0, 0.1, 0.2, 0.3, 0.4])


@pytest.mark.parametrize("ext", ["mp4", "webm", "mov"])
def test_variable_frame_rate_times(tmp_path, shapes, ext):
    path = write_vfr_clip(tmp_path / f"vfr.{ext}", shapes[: len(VFR_TIMES)], VFR_TIMES)
    with open_video(path) as src:
        frames = list(src)
        assert src.warnings == []
    assert [f.time_s for f in frames] == pytest.approx(VFR_TIMES, abs=1e-3)
    late = write_vfr_clip(tmp_path / f"late.{ext}", shapes[:3], [3.0, 3.1, 3.25])  # cut from a longer recording
    assert [f.time_s for f in open_video(late)] == pytest.approx([3.0, 3.1, 3.25], abs=1e-3)


def test_max_frames_rewind_and_close(clips):
    src = open_video(clips["mp4"], max_frames=4)
    assert [f.index for f in src] == [0, 1, 2, 3]
    assert [f.index for f in src] == [0, 1, 2, 3]  # a file re-opens and starts again
    it = iter(src)
    next(it)
    src.close()
    src.close()
    with pytest.raises(VideoLoadError, match="closed"):
        iter(src)


def test_memory_stays_bounded(tmp_path):
    """The source keeps no reference to frames it handed out: reading a 200-frame clip (or generator)
    holds the current frame only."""
    import weakref

    path = write_clip(tmp_path / "long.mp4", (f.image for f in moving_shapes(200)), fps=25)

    def camera():
        for i in range(200):
            yield np.full((120, 160, 3), i % 256, np.uint8)

    for source in (path, camera(), write_frame_folder(tmp_path / "f", moving_shapes(30))):
        refs, most_alive = [], 0
        for frame in open_video(source):
            refs.append(weakref.ref(frame.image))
            del frame  # (CPython frees it here unless something else holds it)
            most_alive = max(most_alive, sum(r() is not None for r in refs))
        assert len(refs) in (200, 30) and most_alive <= 1


def test_frame_count_from_the_container(clips):
    assert open_video(clips["mp4"]).info.frame_count == 30


# ---------------------------------------------------------------- damaged files


@pytest.mark.parametrize("ext", ["mp4", "mov", "webm", "mkv"])
def test_truncated_at_60_percent_keeps_the_frames_before(tmp_path, clips, shapes, ext):
    data = clips[ext].read_bytes()
    cut = tmp_path / f"cut.{ext}"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    with open_video(cut) as src:
        frames = list(src)
    assert 3 <= len(frames) < 30
    assert len(src.warnings) == 1 and "truncated" in src.warnings[0] and str(cut) in src.warnings[0]
    assert "\n" not in src.warnings[0]
    assert _diff(frames[-1].image, shapes[len(frames) - 1].image) < 8  # a good frame, not garbage


@pytest.mark.parametrize("ext", ["mp4", "mov", "webm", "mkv"])
def test_truncated_at_5_percent_is_an_error(tmp_path, clips, ext):
    data = clips[ext].read_bytes()
    cut = tmp_path / f"cut.{ext}"
    cut.write_bytes(data[: int(len(data) * 0.05)])
    with pytest.raises(VideoLoadError, match="cut"):
        with open_video(cut) as src:
            list(src)


def test_mp4_with_its_index_at_the_end_cut_off(tmp_path, shapes):
    """An unfinished recording: the moov index is written last, so the cut file has none."""
    path = tmp_path / "rec.mp4"
    with av.open(str(path), "w") as c:  # no faststart: the index goes at the end
        s = c.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = 160, 120, "yuv420p"
        for f in shapes[:10]:
            for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f.image), format="rgb24")):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(path.read_bytes()[: int(path.stat().st_size * 0.6)])
    with pytest.raises(VideoLoadError, match="not a video file PyAV can read.*complete"):
        open_video(cut)


def test_missing_path_and_not_a_video(tmp_path):
    with pytest.raises(VideoLoadError, match="no such file or folder"):
        open_video(tmp_path / "nope.mp4")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    with pytest.raises(VideoLoadError, match=r"notes\.mp4: not a video file"):
        open_video(text)
    empty = tmp_path / "empty.mp4"
    empty.touch()
    with pytest.raises(VideoLoadError, match="the file is empty"):
        open_video(empty)


def test_scripts_that_open_other_files_are_not_followed(tmp_path, clips, monkeypatch):
    """An ffconcat script (or a playlist) named .mp4 would make FFmpeg open other files; it is refused."""
    (tmp_path / "inner.mp4").write_bytes(clips["mp4"].read_bytes())
    script = tmp_path / "clip.mp4"
    script.write_text("ffconcat version 1.0\nfile 'inner.mp4'\nfile 'inner.mp4'\n")
    with pytest.raises(VideoLoadError, match="concat scripts are not followed"):
        open_video(script)
    playlist = tmp_path / "live.m3u8"
    playlist.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:3.0,\ninner.mp4\n#EXT-X-ENDLIST\n")
    with pytest.raises(VideoLoadError, match="playlists and concat scripts are not followed"):
        open_video(playlist)
    image = tmp_path / "one.png"
    Image.new("RGB", (16, 16)).save(image)
    with pytest.raises(VideoLoadError, match="not a video format read here"):
        open_video(image)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "concat:inner.mp4").write_bytes(b"not a video")  # FFmpeg alone would read "inner.mp4"
    with pytest.raises(VideoLoadError, match="not a video file"):  # a protocol-like name is just a file name
        open_video("concat:inner.mp4")


def test_container_without_frames(tmp_path):
    path = tmp_path / "zero.mp4"
    c = av.open(str(path), "w")
    s = c.add_stream("libx264", rate=10)
    s.width, s.height, s.pix_fmt = 160, 120, "yuv420p"
    c.start_encoding()
    c.close()
    with pytest.raises(VideoLoadError, match="no video stream"):
        open_video(path)


def _garbage_packets(path: Path, codec: str) -> Path:
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=10)
        s.width, s.height, s.pix_fmt = 160, 120, "yuv420p"
        c.start_encoding()
        for i in range(3):
            pk = av.Packet(rng.integers(0, 256, 500, dtype=np.uint8).tobytes())
            pk.stream, pk.pts, pk.dts, pk.time_base = s, i * 100, i * 100, Fraction(1, 1000)
            c.mux(pk)
    return path


def test_video_stream_that_decodes_to_nothing(tmp_path):
    src = open_video(_garbage_packets(tmp_path / "g.mkv", "libx264"))
    assert src.info.width == 160
    with pytest.raises(VideoLoadError, match="has no frames"):
        list(src)


def test_first_frame_undecodable(tmp_path):
    src = open_video(_garbage_packets(tmp_path / "g.mkv", "mpeg4"))
    with pytest.raises(VideoLoadError, match="no frame could be decoded"):
        list(src)


def test_stream_over_max_pixels_is_refused_at_open(clips):
    with pytest.raises(ImageTooLargeError, match=r"160x120 = 19,200 pixels, more than max_pixels \(10,000\)"):
        open_video(clips["webm"], max_pixels=10_000)
    assert len(list(open_video(clips["webm"], max_pixels=None))) == 30


def test_a_tiny_file_declaring_a_huge_frame_is_refused_at_open(tmp_path):
    """A 'video bomb': a few hundred bytes declaring 20000x12000 frames; nothing is decoded."""
    path = tmp_path / "bomb.mkv"
    with av.open(str(path), "w") as c:
        s = c.add_stream("mjpeg", rate=10)
        s.width, s.height, s.pix_fmt = 20000, 12000, "yuvj420p"
        c.start_encoding()
        pk = av.Packet(b"\x00" * 100)
        pk.stream, pk.pts, pk.dts, pk.time_base = s, 0, 0, Fraction(1, 1000)
        c.mux(pk)
    assert path.stat().st_size < 2000
    with pytest.raises(ImageTooLargeError, match=r"20000x12000 = 240,000,000 pixels, more than max_pixels"):
        open_video(path)


@pytest.mark.parametrize(("degrees", "corner"), [(90, (-1, 0)), (-90, (0, -1)), (180, (-1, -1)), (0, (0, 0))])
def test_rotation_metadata_turns_frames_upright(tmp_path, degrees, corner):
    """A phone video stores landscape pixels and a display rotation; frames come out as players show them."""
    path = tmp_path / "phone.mp4"
    image = np.zeros((32, 64, 3), np.uint8)
    image[:8, :8] = 255  # the top-left corner is white
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 64, 32, "yuv420p"
        s.set_display_rotation(degrees)
        for p in [*s.encode(av.VideoFrame.from_ndarray(image, format="rgb24")), *s.encode(None)]:
            c.mux(p)
    src = open_video(path)
    frame = next(iter(src))
    turned = degrees % 180 == 90
    assert frame.image.shape[:2] == ((64, 32) if turned else (32, 64))
    assert (src.info.width, src.info.height) == ((32, 64) if turned else (64, 32))
    assert frame.image[corner[0] * 3, corner[1] * 3].min() > 200  # the white corner, turned counterclockwise


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=4096))
def test_garbage_bytes_only_raise_video_load_error(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip.mp4"
        path.write_bytes(data)
        try:
            with open_video(path) as src:
                for _ in src:
                    pass
        except VideoLoadError:
            pass


@settings(max_examples=120, deadline=None)
@given(edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), max_size=30),
       keep=st.floats(0.01, 1.0), ext=st.sampled_from(["mp4", "webm"]))
def test_damaged_real_clips_only_raise_video_load_error(edits, keep, ext):
    data = bytearray(_SMALL[ext])
    for where, value in edits:
        data[int(where * len(data))] = value
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip.mp4"
        path.write_bytes(bytes(data[: max(1, int(len(data) * keep))]))
        try:
            with open_video(path) as src:
                for f in src:
                    assert f.image.ndim == 3 and f.image.shape[2] == 3 and f.image.dtype == np.uint8
        except VideoLoadError:
            pass


_SMALL: dict[str, bytes] = {}


@pytest.fixture(scope="module", autouse=True)
def _small_clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("small")
    for ext in ("mp4", "webm"):
        _SMALL[ext] = write_clip(root / f"s.{ext}", moving_shapes(6)).read_bytes()


# ---------------------------------------------------------------- folders


def test_folder_in_natural_order_with_fps(tmp_path, shapes):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in (0, 1, 2, 10, 11):  # frame2 before frame10
        Image.fromarray(shapes[i].image).save(folder / f"frame{i}.png")
    (folder / "notes.txt").write_text("not a frame")
    (folder / ".hidden.png").write_bytes(b"junk")
    (folder / "sub").mkdir()
    with open_video(folder, fps=5) as src:
        assert (src.info.kind, src.info.frame_count, src.info.width, src.info.height) == ("folder", 5, 160, 120)
        frames = list(src)
        assert len(list(src)) == 5  # a folder can be read again
    assert [f.time_s for f in frames] == pytest.approx([0, 0.2, 0.4, 0.6, 0.8])
    for f, i in zip(frames, (0, 1, 2, 10, 11), strict=True):
        assert np.array_equal(f.image, shapes[i].image) and not f.image.flags.writeable
    assert [f.time_s for f in open_video(folder)] == [None] * 5  # no fps: no times
    assert len(list(open_video(folder, max_frames=2))) == 2


def test_folder_helper_and_jpeg(tmp_path, shapes):
    folder = write_frame_folder(tmp_path / "jpg", shapes[:4], fmt="jpg")
    frames = list(open_video(folder))
    assert len(frames) == 4 and _diff(frames[2].image, shapes[2].image) < 6


def test_folder_without_frames(tmp_path):
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(VideoLoadError, match="has no frames"):
        open_video(tmp_path)


def test_folder_with_a_broken_frame(tmp_path, shapes):
    folder = write_frame_folder(tmp_path / "f", shapes[:5])
    (folder / "frame_00003.png").write_bytes((folder / "frame_00003.png").read_bytes()[:200])
    src = open_video(folder)
    assert len(list(src)) == 3
    assert len(src.warnings) == 1 and "frame 3 (frame_00003.png)" in src.warnings[0]
    (folder / "frame_00000.png").write_bytes(b"not a png")
    with pytest.raises(VideoLoadError, match="first frame"):
        open_video(folder)


def test_folder_frame_sizes(tmp_path, shapes):
    folder = write_frame_folder(tmp_path / "f", shapes[:3])
    Image.new("RGB", (80, 60)).save(folder / "frame_00002.png")
    src = open_video(folder)
    with pytest.raises(VideoLoadError, match="80x60 but the first frame was 160x120"):
        list(src)
    Image.new("RGB", (400, 300)).save(folder / "frame_00002.png")
    with pytest.raises(ImageTooLargeError, match=r"frame 2 \(frame_00002.png\).*max_pixels"):
        list(open_video(folder, max_pixels=50_000))
    with pytest.raises(ImageTooLargeError, match="max_pixels"):
        open_video(folder, max_pixels=10_000)  # the first frame, at open


# ---------------------------------------------------------------- iterators


def test_a_generator_is_pulled_one_frame_at_a_time(shapes):
    pulled: list[int] = []

    def camera():
        for i in range(10):
            pulled.append(i)
            yield shapes[i].image

    src = open_video(camera(), max_frames=4)
    assert pulled == [] and not src.rewindable and src.info.kind == "iterator"
    seen = []
    for frame in src:
        assert len(pulled) == frame.index + 1  # never ahead of the frame being handed out
        seen.append(frame.index)
    assert seen == [0, 1, 2, 3] and pulled == [0, 1, 2, 3]  # max_frames stops without pulling a 5th
    with pytest.raises(VideoLoadError, match="only once"):
        iter(src)


def test_a_camera_reusing_its_buffer(shapes):
    buffer = np.zeros((120, 160, 3), np.uint8)

    def camera():
        for i in range(3):
            buffer[:] = shapes[i].image
            yield buffer

    kept = list(open_video(camera()))
    for i, frame in enumerate(kept):  # each frame kept its own pixels
        assert np.array_equal(frame.image, shapes[i].image)
    assert buffer.flags.writeable


def test_closing_the_source_closes_the_generator(shapes):
    closed = []

    def camera():
        try:
            while True:
                yield shapes[0].image
        finally:
            closed.append(True)

    with open_video(camera()) as src:
        next(iter(src))
    assert closed == [True]


def test_frame_kinds_and_times(shapes):
    rgb = shapes[0].image
    items = [
        rgb,
        rgb[:, :, 0],  # greyscale
        np.dstack([rgb, np.full((120, 160), 255, np.uint8)]),  # RGBA
        rgb.astype(np.float32) / 255.0,
        rgb.astype(np.uint16) * 257,
        Image.fromarray(rgb),
        Image.fromarray(rgb).convert("L"),
        (2.5, rgb),
        rgb[:, :, 0] > 128,  # a bool mask: 0 / 255 grey
    ]
    frames = list(open_video(items, fps=4))
    assert [f.time_s for f in frames] == [0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.5, 2.0]
    assert set(np.unique(frames[8].image)) == {0, 255}
    for i in (0, 2, 3, 4, 5, 7):
        assert np.array_equal(frames[i].image, rgb), i
    assert np.array_equal(frames[1].image[:, :, 1], rgb[:, :, 0])
    assert all(f.image.dtype == np.uint8 and not f.image.flags.writeable for f in frames)
    assert [f.time_s for f in open_video([rgb, rgb])] == [None, None]
    stack = np.stack([s.image for s in shapes[:5]])
    assert len(list(open_video(stack))) == 5
    every_other = [f for f in open_video(stack, fps=10) if f.index % 2 == 0]  # VideoFrames keep their times
    again = list(open_video(iter(every_other)))
    assert [(f.index, f.time_s) for f in again] == [(0, 0.0), (1, 0.2), (2, 0.4)]
    assert np.array_equal(again[1].image, shapes[2].image)


@pytest.mark.parametrize(("item", "match"), [
    ("frame.png", r"<iterator> frame 1: expected a numpy array, a PIL image, a VideoFrame or a \(time_s, frame\) "
                  "tuple, got str"),
    (None, "frame 1: .*got NoneType"),
    (3, "frame 1: .*got int"),
    ((1.0, 2.0, 3.0), r"frame 1: a tuple must be \(time_s, frame\)"),
    ((float("nan"), np.zeros((4, 4, 3), np.uint8)), "frame 1: the time must be a finite number"),
    (("soon", np.zeros((4, 4, 3), np.uint8)), "frame 1: the time must be"),
    (np.zeros((4, 4, 5), np.uint8), "frame 1: expected an .H, W., .H, W, 3. or .H, W, 4. array"),
    (np.full((120, 160, 3), np.nan, np.float32), "frame 1: the float array contains NaN"),
    (np.full((120, 160, 3), 300, np.int32), "frame 1: integer array values must lie in 0..255"),
])
def test_bad_iterator_items(shapes, item, match):
    src = open_video([shapes[0].image, item])
    it = iter(src)
    next(it)
    with pytest.raises(VideoLoadError, match=match):
        next(it)


def test_iterator_frame_over_the_cap_and_size_change(shapes):
    small = shapes[0].image
    src = open_video([small, small, np.zeros((400, 400, 3), np.uint8)], max_pixels=100_000)
    it = iter(src)
    assert next(it).index == 0 and next(it).index == 1
    with pytest.raises(ImageTooLargeError, match=r"<iterator> frame 2: .*400x400.*max_pixels \(100,000\)"):
        next(it)
    with pytest.raises(VideoLoadError, match="frame 1: the frame is 10x10 but the first frame was 160x120"):
        list(open_video([small, np.zeros((10, 10, 3), np.uint8)]))


def test_empty_and_unsupported_inputs(shapes):
    with pytest.raises(VideoLoadError, match="has no frames"):
        list(open_video([]))
    with pytest.raises(VideoLoadError, match="one image, not a video"):
        open_video(shapes[0].image)
    with pytest.raises(VideoLoadError, match="one image, not a video"):
        open_video(Image.fromarray(shapes[0].image))
    with pytest.raises(VideoLoadError, match="write it to a file"):
        open_video(b"\x00\x00\x00\x18ftypmp42")
    with pytest.raises(VideoLoadError, match="unsupported video input of type int"):
        open_video(42)


@pytest.mark.parametrize("fps", [float("nan"), float("inf"), 0, -5, 1e9, True, "25"])
def test_bad_fps(fps):
    with pytest.raises(SettingsError, match="fps must be a number of frames per second"):
        open_video([np.zeros((8, 8, 3), np.uint8)], fps=fps)


def test_bad_limits_and_fps_for_a_file(clips):
    for kwargs in ({"max_frames": 0}, {"max_frames": 2.5}, {"max_pixels": -1}):
        with pytest.raises(SettingsError):
            open_video([np.zeros((8, 8, 3), np.uint8)], **kwargs)
    with pytest.raises(SettingsError, match="fps is for folders and iterators"):
        open_video(clips["mp4"], fps=25)


# ---------------------------------------------------------------- synthetic ground truth, dependencies


def test_moving_shapes_ground_truth():
    frames = list(moving_shapes(12, occlude_from=4, occlude_to=7))
    again = list(moving_shapes(12, occlude_from=4, occlude_to=7))
    assert all(np.array_equal(a.image, b.image) for a, b in zip(frames, again, strict=True))
    assert sorted(NAMES) == [1, 2, 3]
    for t, f in enumerate(frames):
        for oid in NAMES:
            hidden = oid == 1 and 4 <= t < 7
            assert (f.boxes[oid] is None) == hidden and (f.masks[oid].any()) != hidden
            if not hidden:
                x1, y1, x2, y2 = f.boxes[oid]
                ys, xs = np.nonzero(f.masks[oid])
                assert (x1, y1, x2, y2) == (xs.min(), ys.min(), xs.max(), ys.max())
    assert frames[3].boxes[1] != frames[7].boxes[1]  # it moved while hidden
    assert not np.array_equal(frames[0].image, list(moving_shapes(1, seed=1))[0].image)


def test_readers_without_pyav(tmp_path, clips, shapes):
    """Without PyAV: files say how to install it; folders and iterators still work; nothing imports it early."""
    folder = write_frame_folder(tmp_path / "f", shapes[:2])
    code = (
        "import sys; sys.modules['av'] = None\n"
        "import numpy as np\n"
        "from segzero_tool.errors import MissingDependencyError\n"
        "from segzero_tool.video.sources import open_video\n"
        f"assert len(list(open_video({str(folder)!r}))) == 2\n"
        "assert len(list(open_video([np.zeros((8, 8, 3), np.uint8)]))) == 1\n"
        "try:\n"
        f"    open_video({str(clips['mp4'])!r})\n"
        "except MissingDependencyError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "pip install 'segzero-tool[video]'" in out.stdout
    assert issubclass(MissingDependencyError, ImportError)
    lazy = subprocess.run([sys.executable, "-c", "import sys, segzero_tool.video.sources, segzero_tool.video.encode, "
                           "segzero_tool.testing.synthetic_video; assert 'av' not in sys.modules"],
                          capture_output=True, text=True, timeout=60, env={**os.environ})
    assert lazy.returncode == 0, lazy.stderr
