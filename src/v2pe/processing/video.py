"""Video frames for the video benchmarks: the official InternVL frame sampling, one image per frame.

    clip = VideoClip("clip.mp4", num_segments=16)            # bound=(start_s, end_s) for a window
    frames = clip.frames()        # 16 VideoFrame references, decoded only when a frame is loaded
    str(frames[3])                # 'clip.mp4#frame=12': how a frame appears in result lines
    load_image(frames[3])         # v2pe.processing.tiling accepts a VideoFrame like an image path

A `VideoFrame` goes wherever an image path goes (`Sample.images`, `Processor`, `Chat`); each frame
is one image, so it gets its own `<image>` and its own V2PE positions, and the video benchmarks
tile it with max_tiles 1 (the official video evaluation: no dynamic tiling, so no thumbnail; the
whole frame is resized to 448 x 448, bicubic).

Sampling (`get_index`, the official `MVBenchDataset.get_index` / InternVL `load_video`, kept with
its rounding): without a bound the window is [-100000, 100000] s; start = max(first_idx,
round(start_s * fps)) (Python's round: half to even), end = min(round(end_s * fps), max_frame),
segment = (end - start) / num_segments, frame i = int(start + segment / 2 + np.round(segment * i))
(int truncates toward zero).

Kinds, as the official readers:
* "video" (mp4, webm, avi, mkv, ...; PyAV, the `video` extra): max_frame = frames - 1 and fps =
  the stream's average frame rate, as decord's `len(vr) - 1` and `get_avg_fps()`. The frame count
  is the container's frame count where the header has one, else the number of video packets
  (decord counts packets); frame k is the k-th frame in presentation order (packet pts sorted),
  found by seeking to the keyframe before it and decoding forward. Duplicated indices (a clip
  shorter than num_segments) give the same frame twice, as `vr[i]` does.
* "gif" (PIL, as the official imageio/Pillow reader; fps fixed at 25): frames are taken by
  `index in frame_indices` while iterating, so each distinct index once, ascending: a short GIF
  gives fewer than num_segments frames (`frames()` reads the GIF to know how many).
* "frames" (a folder of `%05d.jpg` frames, MVBench's TVQA; fps 3): max_frame = the number of
  entries in the folder (not minus one), first_idx = 1; frame k is `folder/{k:05d}.jpg`.

Problems (missing or corrupt file, no video stream, a frame index the file does not have) raise
`DataError` with one line naming the file; the benchmark runners turn that into the sample's
`error`. Decoded frames of the last clip are cached (one clip), so the processor's per-image
loads decode each clip once.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from v2pe.errors import ConfigError, DataError

KINDS = ("video", "gif", "frames")
GIF_FPS = 25.0  # the official read_gif default
FRAME_FOLDER_FPS = 3.0  # the official read_frame default (TVQA frames_fps3_hq)
NO_BOUND = (-100000, 100000)
# Decode forward instead of seeking when the next wanted frame is at most this many frames ahead.
_DECODE_AHEAD = 48


def get_index(bound: Sequence[float] | None, fps: float, max_frame: int, first_idx: int = 0, num_segments: int = 16) -> list[int]:
    """The official InternVL frame indices: the midpoints of num_segments equal segments of
    [start, end] (the bound in seconds, or the whole clip), with the official rounding."""
    if num_segments < 1:
        raise ConfigError(f"num_segments must be >= 1, got {num_segments}")
    start, end = (bound[0], bound[1]) if bound else NO_BOUND
    start_idx = max(first_idx, round(start * fps))
    end_idx = min(round(end * fps), max_frame)
    seg_size = float(end_idx - start_idx) / num_segments
    return [int(start_idx + (seg_size / 2) + np.round(seg_size * idx)) for idx in range(num_segments)]


def require_pyav():
    """The `av` module, or a ConfigError that says how to install it."""
    try:
        import av
    except ImportError as err:
        raise ConfigError("reading videos needs PyAV: pip install 'v2pe[video]' (or pip install av)") from err
    return av


@dataclass(frozen=True)
class VideoInfo:
    """What sampling needs to know about a clip."""

    num_frames: int
    fps: float
    max_frame: int
    first_idx: int


@dataclass(frozen=True)
class VideoClip:
    """The frames one sample takes from a video file, GIF or frame folder (see module doc)."""

    path: Path
    num_segments: int = 16
    bound: tuple[float, float] | None = None
    kind: str = "video"

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))
        if self.kind not in KINDS:
            raise ConfigError(f"unknown video kind {self.kind!r}; choose one of {', '.join(KINDS)}")
        if self.bound is not None:
            object.__setattr__(self, "bound", (self.bound[0], self.bound[1]))
        if self.num_segments < 1:
            raise ConfigError(f"num_segments must be >= 1, got {self.num_segments}")

    def info(self) -> VideoInfo:
        """Frame count, fps and the index range sampling uses; DataError for an unreadable clip."""
        if self.kind == "frames":
            if not self.path.is_dir():
                raise DataError(f"video frame folder not found: {self.path}")
            count = len(os.listdir(self.path))
            return VideoInfo(count, FRAME_FOLDER_FPS, count, 1)
        stat = _stat(self.path)
        if self.kind == "gif":
            count = _gif_frame_count(str(self.path), *stat)
            return VideoInfo(count, GIF_FPS, count - 1, 0)
        probe = _probe_video(str(self.path), *stat)
        return VideoInfo(probe.num_frames, probe.fps, probe.num_frames - 1, 0)

    def indices(self) -> list[int]:
        """The frame indices that become images, in prompt order."""
        info = self.info()
        indices = get_index(self.bound, info.fps, info.max_frame, info.first_idx, self.num_segments)
        if self.kind == "gif":
            return sorted(set(indices))  # official: `if index in frame_indices` while iterating the GIF
        return indices

    def frames(self) -> list[VideoFrame]:
        """One reference per image. A GIF is read here (its distinct indices decide the count);
        when it cannot be read, num_segments references are returned and loading reports why."""
        count = self.num_segments
        if self.kind == "gif":
            try:
                count = len(self.indices())
            except DataError:
                pass
        return [VideoFrame(self, position) for position in range(count)]

    def load(self) -> list[Image.Image]:
        """All sampled frames as RGB images (decoded once; the last clip is cached)."""
        if self.kind == "frames":
            return [_load_jpg(path) for path in self.frame_paths()]
        return list(_decode_clip(self, *_stat(self.path)))

    def frame_paths(self) -> list[Path]:
        """The frame files of a frame folder (kind "frames")."""
        return [self.path / f"{index:05d}.jpg" for index in self.indices()]

    def __str__(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class VideoFrame:
    """The position-th sampled frame of a clip; `load_image` accepts it like an image path."""

    clip: VideoClip
    position: int

    def load(self) -> Image.Image:
        if self.clip.kind == "frames":
            paths = self.clip.frame_paths()
            self._check_position(len(paths))
            return _load_jpg(paths[self.position])
        images = self.clip.load()
        self._check_position(len(images))
        return images[self.position]

    @property
    def index(self) -> int:
        """The frame index in the video (reads the header; DataError when unreadable)."""
        indices = self.clip.indices()
        self._check_position(len(indices))
        return indices[self.position]

    def _check_position(self, count: int) -> None:
        if not 0 <= self.position < count:
            raise DataError(f"{self.clip.path}: sampled frame {self.position + 1} of {self.clip.num_segments} does not exist "
                            f"(the clip gives {count} frames)")

    def __str__(self) -> str:
        """`VIDEO#frame=N` (a frame folder: the frame file); `VIDEO#segment=i/n` when unreadable."""
        try:
            if self.clip.kind == "frames":
                return str(self.clip.frame_paths()[self.position])
            return f"{self.clip.path}#frame={self.index}"
        except (DataError, IndexError):
            return f"{self.clip.path}#segment={self.position + 1}/{self.clip.num_segments}"


# ----------------------------------------------------------------------------- readers


def _stat(path: Path) -> tuple[int, int]:
    """(mtime_ns, size): part of the cache keys, so a rewritten file is read again."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise DataError(f"video file not found: {path}") from None
    except OSError as err:
        raise DataError(f"cannot read video {path}: {_one_line(err)}") from None
    if not path.is_file():
        raise DataError(f"video path is not a file: {path}")
    return stat.st_mtime_ns, stat.st_size


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


@dataclass(frozen=True)
class _Probe:
    num_frames: int
    fps: float


@dataclass(frozen=True)
class _PacketIndex:
    pts: tuple[int, ...]  # presentation timestamps in order (empty: unknown, decode sequentially)
    keyframes: tuple[int, ...]  # presentation positions of keyframes, ascending


def _open(path: str):
    av = require_pyav()
    try:
        container = av.open(path)
    except (av.FFmpegError, OSError, ValueError, RuntimeError) as err:
        raise DataError(f"cannot read video {path}: {_one_line(err)}") from None
    if not container.streams.video:
        container.close()
        raise DataError(f"video {path} has no video stream")
    return av, container


@lru_cache(maxsize=64)
def _probe_video(path: str, mtime_ns: int, size: int) -> _Probe:
    """Frame count (the header's, else the packets counted) and average fps."""
    _, container = _open(path)
    with container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        header_frames = int(stream.frames or 0)
    if not rate:
        raise DataError(f"video {path}: its frame rate is unknown")
    num_frames = header_frames if header_frames > 0 else len(_packet_index(path, mtime_ns, size).packet_pts)
    if num_frames < 1:
        raise DataError(f"video {path} has no frames")
    return _Probe(num_frames, float(rate))


@dataclass(frozen=True)
class _Packets:
    packet_pts: tuple  # every video packet's pts (None where unknown)
    index: _PacketIndex


@lru_cache(maxsize=4)
def _packet_index(path: str, mtime_ns: int, size: int) -> _Packets:
    """Every video packet's pts and keyframe flag (demuxed, not decoded), as decord indexes a file."""
    av, container = _open(path)
    pts, key_pts = [], []
    try:
        with container:
            stream = container.streams.video[0]
            for packet in container.demux(stream):
                if packet.size == 0:  # the flush packet at the end
                    continue
                pts.append(packet.pts)
                if packet.is_keyframe and packet.pts is not None:
                    key_pts.append(packet.pts)
    except (av.FFmpegError, OSError, ValueError, RuntimeError) as err:
        raise DataError(f"cannot read video {path}: {_one_line(err)}") from None
    if any(p is None for p in pts):
        return _Packets(tuple(pts), _PacketIndex((), ()))
    ordered = tuple(sorted(pts))
    keyframes = tuple(sorted({bisect.bisect_left(ordered, p) for p in key_pts}))
    return _Packets(tuple(pts), _PacketIndex(ordered, keyframes))


@lru_cache(maxsize=1)
def _decode_clip(clip: VideoClip, mtime_ns: int, size: int) -> tuple[Image.Image, ...]:
    indices = clip.indices()
    if clip.kind == "gif":
        frames = _read_gif(str(clip.path), set(indices))
        return tuple(frames[i] for i in indices)
    packets = _packet_index(str(clip.path), mtime_ns, size)
    frames = _read_video(str(clip.path), packets, sorted(set(indices)))
    return tuple(frames[i] for i in indices)


def _read_video(path: str, packets: _Packets, wanted: list[int]) -> dict[int, Image.Image]:
    """{index: RGB image} of the wanted frame indices (ascending, distinct)."""
    index = packets.index
    available = len(packets.packet_pts)
    beyond = [i for i in wanted if not 0 <= i < available]
    if beyond:
        raise DataError(f"video {path}: frame {beyond[0]} does not exist (the file has {available} frames)")
    found: dict[int, Image.Image] = {}
    av, container = _open(path)
    try:
        with container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            if not index.pts:  # no timestamps: the k-th decoded frame
                targets = set(wanted)
                for k, frame in enumerate(container.decode(stream)):
                    if k in targets:
                        found[k] = frame.to_image().convert("RGB")
                        if len(found) == len(targets):
                            break
            else:
                _seek_and_decode(container, stream, index, wanted, found)
    except DataError:
        raise
    except (av.FFmpegError, OSError, ValueError, RuntimeError) as err:
        raise DataError(f"cannot decode video {path}: {_one_line(err)}") from None
    missing = [i for i in wanted if i not in found]
    if missing:
        raise DataError(f"video {path}: frame {missing[0]} could not be decoded (the file may be truncated)")
    return found


def _seek_and_decode(container, stream, probe: _PacketIndex, wanted: list[int], found: dict) -> None:
    frames = None
    current = -1  # presentation position of the last decoded frame
    for index in wanted:
        target = probe.pts[index]
        keyframe_between = bisect.bisect_right(probe.keyframes, index) > bisect.bisect_right(probe.keyframes, current)
        if frames is None or index <= current or (keyframe_between and index - current > _DECODE_AHEAD):
            container.seek(target, stream=stream, backward=True, any_frame=False)
            frames = container.decode(stream)
        for frame in frames:
            if frame.pts is None or frame.pts < target:
                continue
            current = bisect.bisect_left(probe.pts, frame.pts)
            found[index] = frame.to_image().convert("RGB")
            break
        else:
            frames = None


@lru_cache(maxsize=16)
def _gif_frame_count(path: str, mtime_ns: int, size: int) -> int:
    try:
        with Image.open(path) as gif:
            return int(getattr(gif, "n_frames", 1))
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(f"cannot read GIF {path}: {_one_line(err)}") from None


def _read_gif(path: str, wanted: set[int]) -> dict[int, Image.Image]:
    found = {}
    try:
        with Image.open(path) as gif:
            for index in range(int(getattr(gif, "n_frames", 1))):
                if index in wanted:
                    gif.seek(index)
                    found[index] = gif.convert("RGBA").convert("RGB")  # official: RGBA -> RGB drops alpha
    except (OSError, ValueError, EOFError, Image.DecompressionBombError) as err:
        raise DataError(f"cannot read GIF {path}: {_one_line(err)}") from None
    missing = sorted(wanted - found.keys())
    if missing:
        raise DataError(f"GIF {path}: frame {missing[0]} does not exist")
    return found


def _load_jpg(path: Path) -> Image.Image:
    from v2pe.processing.tiling import load_image

    return load_image(path)
