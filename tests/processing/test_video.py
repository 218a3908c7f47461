"""Video frames: the official InternVL frame sampling, PyAV / GIF / frame-folder readers, errors.

Videos are made at test time with PyAV; frame k is painted with a known colour (red channel
8 * (k % 32) + 4, green 8 * (k // 32) + 4), so the decoded pixels say which frame was read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from v2pe.errors import DataError
from v2pe.processing import Processor, byte_tokenizer
from v2pe.processing.tiling import load_image
from v2pe.processing.video import VideoClip, VideoFrame, get_index

av = pytest.importorskip("av", reason="PyAV is not installed (pip install 'v2pe[video]')")


def frame_colour(k: int) -> tuple[int, int, int]:
    return (8 * (k % 32) + 4, 8 * (k // 32) + 4, 128)


def frame_number(image: Image.Image) -> int:
    """The k whose colour the (lossily coded) frame has."""
    red, green, _ = np.asarray(image.convert("RGB"), dtype=np.float64).reshape(-1, 3).mean(0)
    return round((red - 4) / 8) + 32 * round((green - 4) / 8)


CODECS = {
    ".mp4": ("libx264", "yuv420p", {"crf": "0", "g": "6", "bf": "2"}),  # B-frames and a keyframe every 6
    ".webm": ("libvpx", "yuv420p", {"crf": "4", "b": "2M"}),
    ".avi": ("mjpeg", "yuvj420p", {"qscale": "1"}),
    ".gif": ("gif", "rgb8", {}),
}


def make_video(path: Path, frames: int, fps: int = 8, size: int = 32) -> Path:
    codec, pix_fmt, options = CODECS[path.suffix]
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps, options=options)
        stream.width = stream.height = size
        stream.pix_fmt = pix_fmt
        for k in range(frames):
            pixels = np.empty((size, size, 3), np.uint8)
            pixels[...] = frame_colour(k)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def reference_get_index(bound, fps, max_frame, first_idx, num_segments):
    """The official MVBenchDataset.get_index, written out again for the test."""
    start, end = bound if bound else (-100000, 100000)
    start_idx = max(first_idx, round(start * fps))
    end_idx = min(round(end * fps), max_frame)
    seg_size = float(end_idx - start_idx) / num_segments
    return [int(start_idx + (seg_size / 2) + np.round(seg_size * idx)) for idx in range(num_segments)]


@pytest.mark.parametrize("bound, fps, max_frame, first_idx, segments", [
    (None, 8.0, 23, 0, 16),
    (None, 29.97, 899, 0, 16),
    (None, 25.0, 7, 0, 16),  # fewer frames than segments: repeated indices
    ((1.2, 3.7), 30.0, 299, 0, 16),
    ((0.0, 100.0), 30.0, 120, 0, 8),  # the bound runs past the clip
    ((2.5, 14.0), 3.0, 40, 1, 16),  # frame folders: fps 3, first index 1
    ((5.0, 1.0), 10.0, 99, 0, 4),  # an inverted bound (negative segments)
])
def test_get_index_matches_the_official_function(bound, fps, max_frame, first_idx, segments):
    assert get_index(bound, fps, max_frame, first_idx, segments) == reference_get_index(bound, fps, max_frame, first_idx, segments)


def test_get_index_by_hand():
    # 24 frames at 8 fps, 16 segments: segment 23/16 = 1.4375, midpoints 0.72 + round(1.4375 i)
    assert get_index(None, 8.0, 23, 0, 16) == [0, 1, 3, 4, 6, 7, 9, 10, 12, 13, 14, 16, 17, 19, 20, 22]
    # round half to even: round(0.5 * 5) = 2, round(2.5 * 5) = 12; segment 2.5, np.round(7.5) = 8
    assert get_index((0.5, 2.5), 5.0, 99, 0, 4) == [3, 5, 8, 11]
    # the folder rule keeps the first index at 1
    assert get_index((0.0, 2.0), 3.0, 10, 1, 2) == [2, 4]


@pytest.mark.parametrize("suffix", [".mp4", ".webm", ".avi"])
def test_sampled_frames_are_the_right_frames(tmp_path, suffix):
    path = make_video(tmp_path / f"clip{suffix}", 24)
    clip = VideoClip(path, 16)
    info = clip.info()
    assert (info.num_frames, info.fps, info.max_frame) == (24, 8.0, 23)
    expected = reference_get_index(None, 8.0, 23, 0, 16)
    frames = clip.frames()
    assert clip.indices() == expected and len(frames) == 16
    assert [frame_number(load_image(f)) for f in frames] == expected
    assert str(frames[3]) == f"{path}#frame={expected[3]}"


def test_long_video_with_keyframes_and_a_bound(tmp_path):
    path = make_video(tmp_path / "long.mp4", 120, fps=10)
    clip = VideoClip(path, 16, bound=(2.0, 9.5))
    expected = reference_get_index((2.0, 9.5), 10.0, 119, 0, 16)
    assert [frame_number(image) for image in clip.load()] == expected
    assert [frame_number(VideoFrame(clip, p).load()) for p in (0, 15)] == [expected[0], expected[15]]


def test_short_video_repeats_frames(tmp_path):
    path = make_video(tmp_path / "short.mp4", 8)
    clip = VideoClip(path, 16)
    expected = reference_get_index(None, 8.0, 7, 0, 16)
    assert len(set(expected)) < 16
    assert [frame_number(image) for image in clip.load()] == expected


def test_gif_uses_fps_25_and_distinct_frames(tmp_path):
    path = make_video(tmp_path / "clip.gif", 10, fps=10)
    clip = VideoClip(path, 16, kind="gif")
    expected = sorted(set(reference_get_index(None, 25.0, 9, 0, 16)))  # the official `index in frame_indices`
    assert clip.info().fps == 25.0 and clip.indices() == expected
    frames = clip.frames()
    assert len(frames) == len(expected) < 16
    assert [frame_number(load_image(f)) for f in frames] == expected


def test_gif_with_a_bound(tmp_path):
    path = make_video(tmp_path / "clip.gif", 32, fps=25)
    clip = VideoClip(path, 4, bound=(0.2, 1.0), kind="gif")
    expected = reference_get_index((0.2, 1.0), 25.0, 31, 0, 4)
    assert [frame_number(image) for image in clip.load()] == expected


def test_frame_folder(tmp_path):
    folder = tmp_path / "clip_frames"
    folder.mkdir()
    for k in range(1, 31):  # %05d.jpg from 1
        Image.new("RGB", (32, 32), frame_colour(k)).save(folder / f"{k:05d}.jpg", quality=100)
    clip = VideoClip(folder, 16, bound=(1.0, 8.0), kind="frames")
    expected = reference_get_index((1.0, 8.0), 3.0, 30, 1, 16)  # max_frame = number of files
    assert clip.indices() == expected
    frames = clip.frames()
    assert [frame_number(load_image(f)) for f in frames] == expected
    assert str(frames[0]) == str(folder / f"{expected[0]:05d}.jpg")


def test_errors_name_the_file_in_one_line(tmp_path):
    missing = VideoClip(tmp_path / "missing.mp4").frames()
    with pytest.raises(DataError, match="video file not found: .*missing.mp4"):
        load_image(missing[0])
    assert str(missing[2]) == f"{tmp_path / 'missing.mp4'}#segment=3/16"
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"not a video at all" * 10)
    with pytest.raises(DataError, match="cannot read video .*corrupt.mp4") as error:
        VideoClip(corrupt).frames()[0].load()
    assert "\n" not in str(error.value)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(make_video(tmp_path / "whole.mp4", 24).read_bytes()[:600])
    with pytest.raises(DataError, match="truncated.mp4"):
        VideoClip(truncated).load()
    with pytest.raises(DataError, match="video frame folder not found"):
        VideoClip(tmp_path / "nofolder", kind="frames").frames()[0].load()
    bad_gif = tmp_path / "bad.gif"
    bad_gif.write_bytes(b"GIF89a broken")
    frames = VideoClip(bad_gif, 16, kind="gif").frames()  # unreadable: 16 references, the error comes on loading
    assert len(frames) == 16
    with pytest.raises(DataError, match="bad.gif"):
        frames[0].load()


def test_processor_takes_video_frames_as_one_tile_each(tmp_path):
    path = make_video(tmp_path / "clip.mp4", 24, size=64)
    frames = VideoClip(path, 4).frames()
    processor = Processor(byte_tokenizer(), tokens_per_tile=4, tile_size=56, max_tiles=1)
    prompt = "\n".join(f"Frame{i + 1}: <image>" for i in range(4)) + "\nWhat happens?"
    sample = processor.encode([{"from": "human", "value": prompt}], frames)
    assert sample["pixel_values"].shape == (4, 3, 56, 56)
