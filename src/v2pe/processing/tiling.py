"""InternVL dynamic resolution: an image becomes 448 px tiles (plus a thumbnail), normalised.

The official `dynamic_preprocess` (reference-spec 3.8), reproduced exactly:

1. Candidate grids (columns i, rows j) with min_tiles <= i*j <= max_tiles, ordered by i*j.
   The official code collects them in a Python `set` and sorts by product, so grids with the
   same product keep CPython's set iteration order. That order decides the winner of an exact
   tie between two grids of the same product (possible only when min_tiles > 1, e.g. a
   5:2 image with min_tiles = max_tiles = 4 picks (4, 1) or (2, 2) depending on which comes
   first). `candidate_grids` reproduces it deterministically by replaying CPython's tuple hash
   and set insertion (CPython 3.8+), instead of depending on the running interpreter's set.
2. The grid with the aspect ratio closest to width/height wins; on an exact tie the later
   candidate replaces the current best iff the image area > 0.5 * 448^2 * i * j.
3. The image is resized to (448 i, 448 j) (bicubic), cut into row-major tiles, and, when
   there is more than one tile and `use_thumbnail`, the whole image resized to 448 x 448 is
   appended last.
4. Each tile: resize to 448 (bicubic; a no-op for these tiles), to [0, 1], ImageNet mean/std
   (float32, as ToTensor + Normalize; done by a per-channel lookup table of the same values).

transformers' GotOcr2 `get_optimal_tiled_canvas` applies the same rule, but to a
lexicographically ordered candidate list, so it differs from InternVL on those same-product
ties; it is therefore not used. Only PIL, numpy and torch are needed (no torchvision).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import lru_cache
from os import PathLike
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from v2pe.errors import ConfigError, DataError
from v2pe.processing.video import VideoFrame

TILE_SIZE = 448
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_MEAN = np.asarray(IMAGENET_MEAN, dtype=np.float32)
_STD = np.asarray(IMAGENET_STD, dtype=np.float32)

ImageInput = str | PathLike | Image.Image | VideoFrame


def load_image(image: ImageInput) -> Image.Image:
    """An RGB PIL image from a path, a PIL image or a video frame; unreadable files raise DataError."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, VideoFrame):  # decoded from its video (v2pe.processing.video)
        return image.load().convert("RGB")
    path = Path(image)
    try:
        with Image.open(path) as opened:
            return opened.convert("RGB")  # convert() forces the full decode: truncated files fail here
    except FileNotFoundError as err:
        raise DataError(f"image file not found: {path}") from err
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(f"cannot read image {path}: {err}") from err


def image_size(image: ImageInput) -> tuple[int, int]:
    """(width, height) from the file header (no decode); DataError for a missing or unreadable file."""
    if isinstance(image, Image.Image):
        return image.size
    if isinstance(image, VideoFrame):
        return image.load().size
    path = Path(image)
    try:
        with Image.open(path) as opened:
            return opened.size
    except FileNotFoundError as err:
        raise DataError(f"image file not found: {path}") from err
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(f"cannot read image {path}: {err}") from err


def image_to_tiles(image: ImageInput, min_tiles: int = 1, max_tiles: int = 12, use_thumbnail: bool = True, tile_size: int = TILE_SIZE) -> list[Image.Image]:
    """The official `dynamic_preprocess`: row-major crops of the best grid, then the thumbnail."""
    rgb, columns, rows, resized = _resized_to_grid(image, min_tiles, max_tiles, tile_size)
    tiles = [resized.crop(_tile_box(index, columns, tile_size)) for index in range(columns * rows)]
    if use_thumbnail and len(tiles) > 1:
        tiles.append(rgb.resize((tile_size, tile_size), Image.Resampling.BICUBIC))
    return tiles


def image_to_pixel_values(image: ImageInput, min_tiles: int = 1, max_tiles: int = 12, use_thumbnail: bool = True, tile_size: int = TILE_SIZE) -> torch.Tensor:
    """Normalised tiles of one image, float32 [num_tiles, 3, tile_size, tile_size].

    The same values as `torch.stack([normalize_tile(t) for t in image_to_tiles(...)])`, made
    without the per-tile PIL crops: the resized image becomes one uint8 array, each tile is a
    view of it, and each tile channel is written straight into the output by the lookup table.
    """
    rgb, columns, rows, resized = _resized_to_grid(image, min_tiles, max_tiles, tile_size)
    count = columns * rows
    with_thumbnail = use_thumbnail and count > 1
    pixels = np.empty((count + with_thumbnail, 3, tile_size, tile_size), dtype=np.float32)
    canvas = np.asarray(resized)
    for index in range(count):
        left, top, right, bottom = _tile_box(index, columns, tile_size)
        _normalise_into(canvas[top:bottom, left:right], pixels[index])
    if with_thumbnail:
        _normalise_into(np.asarray(rgb.resize((tile_size, tile_size), Image.Resampling.BICUBIC)), pixels[count])
    return torch.from_numpy(pixels)


def normalize_tile(tile: Image.Image, tile_size: int = TILE_SIZE) -> torch.Tensor:
    """Resize to tile_size (bicubic), scale to [0, 1] and apply ImageNet mean/std: [3, H, W]."""
    if tile.mode != "RGB":
        tile = tile.convert("RGB")
    if tile.size != (tile_size, tile_size):  # crops already are; the thumbnail may not be
        tile = tile.resize((tile_size, tile_size), Image.Resampling.BICUBIC)
    pixels = np.empty((3, tile_size, tile_size), dtype=np.float32)
    _normalise_into(np.asarray(tile), pixels)
    return torch.from_numpy(pixels)


def _normalisation_table() -> np.ndarray:
    """[3, 256] float32: the normalised value of every uint8 level, per channel.

    Computed with ToTensor + Normalize's float32 operations in their order, ((x / 255) - mean) / std,
    each rounded to float32 (x / 255 is float32 division by 255, not multiplication by 1/255).
    Every pixel is one of these 768 values, so a lookup gives the same bits as the arithmetic.
    """
    levels = np.repeat(np.arange(256, dtype=np.float32)[:, None], 3, axis=1)
    levels /= 255
    levels -= _MEAN
    levels /= _STD
    table = np.ascontiguousarray(levels.T)
    table.flags.writeable = False
    return table


_NORMALISED = _normalisation_table()


def _normalise_into(rgb: np.ndarray, out: np.ndarray) -> None:
    """Channels-last uint8 [H, W, 3] (a view is fine) -> normalised channels-first float32 `out` [3, H, W].

    One table lookup per channel, written in place: about 8x faster than the float32 arithmetic
    on a channels-last copy followed by a transposing copy. mode="clip" only spares numpy a
    buffered range check; uint8 indices are always within the 256-entry table.
    """
    for channel in range(3):
        np.take(_NORMALISED[channel], rgb[:, :, channel], out=out[channel], mode="clip")


def _resized_to_grid(image: ImageInput, min_tiles: int, max_tiles: int, tile_size: int) -> tuple[Image.Image, int, int, Image.Image]:
    """(RGB image, columns, rows, the RGB image resized to the grid) as `dynamic_preprocess` makes it."""
    rgb = image if isinstance(image, Image.Image) and image.mode == "RGB" else load_image(image)  # convert() would only copy it
    columns, rows = choose_grid(rgb.width, rgb.height, min_tiles, max_tiles, tile_size)
    size = (tile_size * columns, tile_size * rows)
    resized = rgb if rgb.size == size else rgb.resize(size, Image.Resampling.BICUBIC)  # resize() to the same size is a copy
    return rgb, columns, rows, resized


def choose_grid(width: int, height: int, min_tiles: int = 1, max_tiles: int = 12, tile_size: int = TILE_SIZE) -> tuple[int, int]:
    """(columns, rows) of the official `find_closest_aspect_ratio` for a width x height image."""
    aspect_ratio = width / height
    area = width * height
    best, best_diff = (1, 1), float("inf")
    for grid in candidate_grids(min_tiles, max_tiles):
        diff = abs(aspect_ratio - grid[0] / grid[1])
        if diff < best_diff:
            best, best_diff = grid, diff
        elif diff == best_diff and area > 0.5 * tile_size * tile_size * grid[0] * grid[1]:
            best = grid
    return best


def num_tiles_for_size(width: int, height: int, min_tiles: int = 1, max_tiles: int = 12, use_thumbnail: bool = True, tile_size: int = TILE_SIZE) -> int:
    """How many tiles (thumbnail included) `image_to_tiles` makes for an image of this size."""
    columns, rows = choose_grid(width, height, min_tiles, max_tiles, tile_size)
    count = columns * rows
    return count + 1 if use_thumbnail and count > 1 else count


@lru_cache(maxsize=64)
def candidate_grids(min_tiles: int, max_tiles: int) -> tuple[tuple[int, int], ...]:
    """Grids (i, j) with min_tiles <= i*j <= max_tiles, in the official order (see module doc)."""
    if not 1 <= min_tiles <= max_tiles:
        raise ConfigError(f"need 1 <= min_tiles <= max_tiles, got min_tiles={min_tiles}, max_tiles={max_tiles}")
    generated = (
        (i, j)
        for n in range(min_tiles, max_tiles + 1)
        for i in range(1, n + 1)
        for j in range(1, n + 1)
        if min_tiles <= i * j <= max_tiles
    )
    return tuple(sorted(_cpython_set_order(generated), key=lambda grid: grid[0] * grid[1]))


def _tile_box(index: int, columns: int, tile_size: int) -> tuple[int, int, int, int]:
    left, top = (index % columns) * tile_size, (index // columns) * tile_size
    return (left, top, left + tile_size, top + tile_size)


# --- CPython set iteration order for tuples of small non-negative ints (CPython >= 3.8) ---
_U64 = (1 << 64) - 1
_XXPRIME_1, _XXPRIME_2, _XXPRIME_5 = 11400714785074694791, 14029467366897019727, 2870177450012600261
_LINEAR_PROBES, _PERTURB_SHIFT, _MIN_TABLE = 9, 5, 8


def _cpython_set_order(keys: Iterable[tuple[int, ...]]) -> list[tuple[int, ...]]:
    """The iteration order of `set(keys)` in CPython: insert with its probing, resize like it."""
    table: list[tuple[tuple[int, ...], int] | None] = [None] * _MIN_TABLE
    used = 0
    for key in keys:
        if _insert(table, key, _cpython_tuple_hash(key)):
            used += 1
            if used * 5 >= (len(table) - 1) * 3:
                table = _resized(table, used * 4)
    return [entry[0] for entry in table if entry is not None]


def _insert(table: list, key: tuple[int, ...], key_hash: int) -> bool:
    """Put key in its first free probe slot; False if it is already there."""
    for slot in _probe_sequence(key_hash, len(table) - 1):
        if table[slot] is None:
            table[slot] = (key, key_hash)
            return True
        if table[slot][0] == key:
            return False
    raise AssertionError("unreachable: a set table always has free slots")


def _resized(table: list, min_used: int) -> list:
    size = _MIN_TABLE
    while size <= min_used:
        size <<= 1
    new_table: list = [None] * size
    for entry in table:
        if entry is not None:
            _insert(new_table, *entry)
    return new_table


def _probe_sequence(key_hash: int, mask: int) -> Iterator[int]:
    """Slots CPython's setobject.c visits: runs of 10 linear probes, then perturbed jumps."""
    index, perturb = key_hash & mask, key_hash
    while True:
        run = _LINEAR_PROBES + 1 if index + _LINEAR_PROBES <= mask else 1
        yield from range(index, index + run)
        perturb >>= _PERTURB_SHIFT
        index = (index * 5 + 1 + perturb) & mask


def _cpython_tuple_hash(items: tuple[int, ...]) -> int:
    """hash(items) as an unsigned 64-bit value (xxHash-based tuplehash; small ints hash to themselves)."""
    acc = _XXPRIME_5
    for lane in items:
        acc = (acc + lane * _XXPRIME_2) & _U64
        acc = ((acc << 31) | (acc >> 33)) & _U64
        acc = (acc * _XXPRIME_1) & _U64
    acc = (acc + (len(items) ^ (_XXPRIME_5 ^ 3527539))) & _U64
    return 1546275796 if acc == _U64 else acc
