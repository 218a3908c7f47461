"""Dynamic resolution: grid choice, tile layout, thumbnail, normalisation, bad files."""

from __future__ import annotations

import platform
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from v2pe.errors import ConfigError, DataError
from v2pe.processing.tiling import candidate_grids, choose_grid, image_to_pixel_values, image_to_tiles, load_image, normalize_tile, num_tiles_for_size


# (width, height, min_tiles, max_tiles) -> (columns, rows), tiles incl. thumbnail.
# Worked out by hand from the rule: minimal |w/h - i/j|; on an exact tie the later (larger i*j)
# candidate wins iff w*h > 100352 * i * j. Default candidates: all i*j <= 12.
GRID_TABLE = [
    # ratio 1: (1,1), (2,2), (3,3) all have diff 0. 448^2 = 200704 is not > 100352*4 = 401408.
    (448, 448, 1, 12, (1, 1), 1),
    # 100^2 = 10000: no switch either; a single tile never gets a thumbnail.
    (100, 100, 1, 12, (1, 1), 1),
    # 896^2 = 802816 > 401408 -> (2,2), but not > 100352*9 = 903168 -> stays (2,2); 4 + thumbnail.
    (896, 896, 1, 12, (2, 2), 5),
    # either side of the (3,3) threshold 903168: 950^2 = 902500 (no), 951^2 = 904401 (yes).
    (950, 950, 1, 12, (2, 2), 5),
    (951, 951, 1, 12, (3, 3), 10),
    # 2000^2 = 4e6 passes both thresholds -> (3,3): 9 + thumbnail.
    (2000, 2000, 1, 12, (3, 3), 10),
    # ratio 2: (2,1) and (4,2) diff 0; area 401408 is not > 100352*8 = 802816 -> (2,1).
    (896, 448, 1, 12, (2, 1), 3),
    (448, 896, 1, 12, (1, 2), 3),
    # 1792*896 = 1605632 > 802816 -> (4,2): 8 + thumbnail.
    (1792, 896, 1, 12, (4, 2), 9),
    # ratio 3: (3,1) and (6,2) diff 0; 602112 is not > 100352*12 = 1204224 -> (3,1).
    (1344, 448, 1, 12, (3, 1), 4),
    # 10/3: nearest allowed ratio is 3 (diff 1/3; 7/2 and 10/3 need 14 and 30 tiles, 4 is 2/3
    # away); (6,2) ties with (3,1) but 300000 <= 1204224 -> (3,1).
    (1000, 300, 1, 12, (3, 1), 4),
    (300, 1000, 1, 12, (1, 3), 4),
    # ratio 50 / 0.02: the extreme grids (12,1) / (1,12); 12 + thumbnail.
    (5000, 100, 1, 12, (12, 1), 13),
    (100, 5000, 1, 12, (1, 12), 13),
    # ratio 2.5 with 12 tiles: (5,2) matches exactly.
    (1000, 400, 1, 12, (5, 2), 11),
    # max 2 tiles, ratio 1.5: (1,1) and (2,1) are both 0.5 away (exact in floats).
    # 600*400 = 240000 > 100352*2 -> (2,1); 300*200 = 60000 is not -> (1,1).
    (600, 400, 1, 2, (2, 1), 3),
    (300, 200, 1, 2, (1, 1), 1),
    # min = max = 4: official candidate order (4,1), (1,4), (2,2) (CPython set order, see below).
    # Ratio 2.5: (4,1) and (2,2) are both 1.5 away; (4,1) comes first, (2,2) replaces it iff
    # area > 100352*4 = 401408: 1000*400 = 400000 keeps (4,1); 1500*600 = 900000 -> (2,2).
    # (A lexicographic candidate order, as in GotOcr2, would give the opposite answers.)
    (1000, 400, 4, 4, (4, 1), 5),
    (1500, 600, 4, 4, (2, 2), 5),
    # min = max = 2, ratio 1.25: (1,2) and (2,1) are both 0.75 away; 1000*800 > 200704 -> (2,1).
    (1000, 800, 2, 2, (2, 1), 3),
    (500, 400, 2, 2, (1, 2), 3),
    # max 1: always one tile (dynamic resolution off).
    (5000, 100, 1, 1, (1, 1), 1),
]


@pytest.mark.parametrize(("width", "height", "min_tiles", "max_tiles", "grid", "tiles"), GRID_TABLE)
def test_grid_and_tile_count(width, height, min_tiles, max_tiles, grid, tiles):
    assert choose_grid(width, height, min_tiles, max_tiles) == grid
    assert num_tiles_for_size(width, height, min_tiles, max_tiles, use_thumbnail=True) == tiles
    without_thumbnail = grid[0] * grid[1]
    assert num_tiles_for_size(width, height, min_tiles, max_tiles, use_thumbnail=False) == without_thumbnail


def test_candidate_order_hand_checked():
    # Same-product grids keep CPython's set order: for {(1,4), (2,2), (4,1)} it is (4,1), (1,4), (2,2).
    assert candidate_grids(4, 4) == ((4, 1), (1, 4), (2, 2))
    assert candidate_grids(2, 2) == ((1, 2), (2, 1))
    products = [i * j for i, j in candidate_grids(1, 12)]
    assert products == sorted(products) and len(products) == 35  # sum over p<=12 of divisors(p)


@pytest.mark.skipif(
    platform.python_implementation() != "CPython" or not (3, 8) <= sys.version_info[:2] <= (3, 13),
    reason="compares with this interpreter's set order, which is the official one on CPython 3.8-3.13",
)
def test_candidate_order_matches_official_set_expression():
    for max_tiles in range(1, 41):
        for min_tiles in range(1, max_tiles + 1):
            official = set(
                (i, j)
                for n in range(min_tiles, max_tiles + 1)
                for i in range(1, n + 1)
                for j in range(1, n + 1)
                if min_tiles <= i * j <= max_tiles
            )
            assert candidate_grids(min_tiles, max_tiles) == tuple(sorted(official, key=lambda g: g[0] * g[1])), (min_tiles, max_tiles)


def test_bad_tile_limits():
    with pytest.raises(ConfigError, match="min_tiles"):
        candidate_grids(3, 2)


def _expected_normalised(rgb) -> np.ndarray:
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    return (np.asarray(rgb, dtype=np.float64) / 255.0 - mean) / std


def test_solid_colour_normalisation():
    pixels = image_to_pixel_values(Image.new("RGB", (100, 100), (255, 0, 128)))
    assert pixels.shape == (1, 3, 448, 448) and pixels.dtype == torch.float32
    # (1 - 0.485)/0.229 = 2.2489..., (0 - 0.456)/0.224 = -2.0357..., (128/255 - 0.406)/0.225 = 0.4265...
    expected = _expected_normalised([255, 0, 128])
    for channel in range(3):
        assert torch.allclose(pixels[0, channel], torch.tensor(expected[channel], dtype=torch.float32), atol=1e-6)


def test_row_major_tiles_and_thumbnail():
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]  # TL, TR, BL, BR
    image = Image.new("RGB", (896, 896))
    for index, colour in enumerate(colours):
        left, top = (index % 2) * 448, (index // 2) * 448
        image.paste(colour, (left, top, left + 448, top + 448))
    pixels = image_to_pixel_values(image)  # 896^2 -> grid (2,2): 4 tiles + thumbnail
    assert pixels.shape == (5, 3, 448, 448)
    for index, colour in enumerate(colours):  # resizing 896 -> 896 keeps pixels exactly
        expected = torch.tensor(_expected_normalised(colour), dtype=torch.float32).view(3, 1, 1)
        assert torch.allclose(pixels[index], expected.expand(3, 448, 448), atol=1e-6), index
    # The thumbnail shrinks the whole image: its corners keep the quadrant colours.
    thumb = pixels[4]
    assert torch.allclose(thumb[:, 10, 10], torch.tensor(_expected_normalised(colours[0]), dtype=torch.float32), atol=1e-6)
    assert torch.allclose(thumb[:, 437, 437], torch.tensor(_expected_normalised(colours[3]), dtype=torch.float32), atol=1e-6)


def test_tiles_are_bicubic_crops_of_the_resized_image():
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, size=(300, 1000, 3), dtype=np.uint8))
    pixels = image_to_pixel_values(image, use_thumbnail=False)  # 1000x300 -> grid (3,1)
    assert pixels.shape == (3, 3, 448, 448)
    canvas = np.asarray(image.resize((1344, 448), Image.Resampling.BICUBIC))
    middle = _expected_normalised(canvas[:, 448:896]).transpose(2, 0, 1)
    assert np.allclose(pixels[1].numpy(), middle, atol=1e-5)
    tiles = image_to_tiles(image)
    assert len(tiles) == 4 and tiles[-1].size == (448, 448)
    assert np.array_equal(np.asarray(tiles[-1]), np.asarray(image.resize((448, 448), Image.Resampling.BICUBIC)))


def test_image_from_path_and_rgb_conversion(tmp_path):
    path = tmp_path / "grey.png"
    Image.new("L", (64, 32), 200).save(path)
    rgb = load_image(path)
    assert rgb.mode == "RGB" and rgb.size == (64, 32)
    # ratio 2 -> grid (2,1) (the (4,2) tie needs area > 802816): 2 tiles + thumbnail
    assert image_to_pixel_values(str(path)).shape == (3, 3, 448, 448)


def test_missing_image_names_path(tmp_path):
    path = tmp_path / "nope.jpg"
    with pytest.raises(DataError, match="nope.jpg"):
        image_to_pixel_values(path)


def test_corrupt_image_names_path(tmp_path):
    path = tmp_path / "garbage.png"
    path.write_bytes(b"this is not an image")
    with pytest.raises(DataError, match="garbage.png"):
        load_image(path)


def test_truncated_image_names_path(tmp_path):
    good = tmp_path / "good.png"
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)).save(good)
    cut = tmp_path / "cut.png"
    cut.write_bytes(good.read_bytes()[:400])
    with pytest.raises(DataError, match="cut.png"):
        load_image(cut)


# --- bit-identity of the fast path (per-channel lookup table, tiles as array views) ---------
# The reference below is written independently of tiling.py: PIL convert + resize + crop as the
# official dynamic_preprocess does, then ToTensor + Normalize's float32 arithmetic in its order,
# ((x / 255) - mean) / std with every step rounded to float32. (The same formula in float64 and
# rounded once differs in the last bit for 491 of the 768 channel levels, so it is only a
# closeness check.) Outputs must be equal bit for bit (torch.equal), not merely close.

_MEAN32 = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(3, 1, 1)
_STD32 = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(3, 1, 1)


def _reference_tile(tile: Image.Image) -> np.ndarray:
    chw = np.asarray(tile.convert("RGB")).transpose(2, 0, 1).astype(np.float32)
    return ((chw / np.float32(255)) - _MEAN32) / _STD32


def _reference_pixel_values(image, min_tiles=1, max_tiles=12, use_thumbnail=True, tile_size=448) -> torch.Tensor:
    rgb = image.convert("RGB")
    columns, rows = choose_grid(rgb.width, rgb.height, min_tiles, max_tiles, tile_size)
    resized = rgb.resize((columns * tile_size, rows * tile_size), Image.Resampling.BICUBIC)
    tiles = []
    for row in range(rows):
        for column in range(columns):
            box = (column * tile_size, row * tile_size, (column + 1) * tile_size, (row + 1) * tile_size)
            tiles.append(_reference_tile(resized.crop(box)))
    if use_thumbnail and len(tiles) > 1:
        tiles.append(_reference_tile(rgb.resize((tile_size, tile_size), Image.Resampling.BICUBIC)))
    return torch.from_numpy(np.stack(tiles))


def _random_image(width: int, height: int, mode: str, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed + 7 * width + height)
    rgb = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    rgb[: height // 2] //= 3  # some smooth-ish structure besides the noise
    image = Image.fromarray(rgb, "RGB")
    if mode in ("P", "P+transparency"):
        image = Image.fromarray(rgb[:, :, 0] % 64, "P")
        image.putpalette(rng.integers(0, 256, size=64 * 3, dtype=np.uint8).tobytes())
        if mode == "P+transparency":
            image.info["transparency"] = 5  # converts through RGBA, as load_image does today
        return image
    if mode == "RGBA":
        return Image.fromarray(np.dstack([rgb, rgb[:, :, :1]]), "RGBA")
    if mode == "LA":
        return Image.fromarray(np.ascontiguousarray(rgb[:, :, :2]), "LA")
    if mode == "I;16":
        return Image.fromarray(rgb[:, :, 0].astype(np.uint16) * 257)
    return image.convert(mode)


def _assert_bit_identical(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert actual.dtype == expected.dtype == torch.float32
    assert actual.shape == expected.shape and actual.is_contiguous()
    assert torch.equal(actual, expected), f"{int((actual != expected).sum())} values differ"


# 12 tiles with no resize (3x4, 4x3), 12 after a resize, 8 (2:1), 1 tile exactly 448 (no resize),
# odd sizes just off the grid, tiny and extreme ratios, an upscale.
LARGE_SIZES = [(1344, 1792), (1792, 1344), (2000, 1500), (2688, 1344)]
SMALL_SIZES = [(448, 448), (896, 448), (1343, 1791), (1001, 333), (123, 457), (1, 1), (3, 1000), (5000, 7), (300, 200)]


@pytest.mark.parametrize(("width", "height"), LARGE_SIZES + SMALL_SIZES)
def test_pixel_values_bit_identical_to_reference_rgb(width, height):
    image = _random_image(width, height, "RGB")
    before = image.tobytes()
    pixels = image_to_pixel_values(image)
    _assert_bit_identical(pixels, _reference_pixel_values(image))
    assert image.tobytes() == before  # the input is read, never written
    # and the same as normalising the public tiles one by one
    _assert_bit_identical(torch.stack([normalize_tile(tile) for tile in image_to_tiles(image)]), pixels)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "P+transparency", "LA", "1", "CMYK", "I;16"])
@pytest.mark.parametrize(("width", "height"), [(1344, 1792), (1001, 333), (448, 448), (37, 5)])
def test_pixel_values_bit_identical_to_reference_other_modes(mode, width, height):
    image = _random_image(width, height, mode)
    _assert_bit_identical(image_to_pixel_values(image), _reference_pixel_values(image))


@pytest.mark.parametrize(
    ("min_tiles", "max_tiles", "use_thumbnail", "tile_size"),
    [(1, 12, False, 448), (1, 6, True, 448), (4, 4, True, 448), (1, 1, True, 448), (1, 12, True, 224), (2, 9, True, 33)],
)
def test_pixel_values_bit_identical_for_other_settings(min_tiles, max_tiles, use_thumbnail, tile_size):
    for width, height in [(1000, 750), (1344, 448), (449, 1)]:
        image = _random_image(width, height, "RGB", seed=1)
        expected = _reference_pixel_values(image, min_tiles, max_tiles, use_thumbnail, tile_size)
        _assert_bit_identical(image_to_pixel_values(image, min_tiles, max_tiles, use_thumbnail, tile_size), expected)


def test_pixel_values_from_files_bit_identical(tmp_path):
    for mode in ("RGB", "L", "P", "RGBA"):
        image = _random_image(700, 500, mode, seed=2)
        path = tmp_path / f"image-{mode}.png"
        image.save(path)
        with Image.open(path) as reopened:
            expected = _reference_pixel_values(reopened)
        _assert_bit_identical(image_to_pixel_values(path), expected)


def test_normalisation_of_every_level_is_float32_arithmetic():
    # Every (level, channel) pair: each channel runs through all 256 levels, in a 448x448 tile.
    levels = np.arange(448 * 448, dtype=np.int64).reshape(448, 448)
    rgb = np.stack([levels % 256, (levels // 7) % 256, (255 - levels) % 256], axis=-1).astype(np.uint8)
    tile = Image.fromarray(rgb, "RGB")
    pixels = normalize_tile(tile)
    expected = _reference_tile(tile)
    _assert_bit_identical(pixels, torch.from_numpy(expected))
    # The same bits as torch's own ToTensor + Normalize operations on a channels-first tensor ...
    chw = torch.from_numpy(rgb).permute(2, 0, 1).to(torch.float32)
    as_torch = chw.div(255).sub(torch.from_numpy(_MEAN32)).div(torch.from_numpy(_STD32))
    _assert_bit_identical(pixels, as_torch.contiguous())
    # ... and within a float32 rounding of the exact formula.
    exact = (rgb.transpose(2, 0, 1) / 255.0 - _MEAN32.astype(np.float64)) / _STD32.astype(np.float64)
    assert np.abs(pixels.numpy() - exact).max() < 1e-6


def test_normalize_tile_resizes_and_converts_like_before():
    image = _random_image(300, 500, "P", seed=3)
    expected = _reference_tile(image.convert("RGB").resize((448, 448), Image.Resampling.BICUBIC))
    _assert_bit_identical(normalize_tile(image), torch.from_numpy(expected))
    _assert_bit_identical(normalize_tile(image, 64), torch.from_numpy(_reference_tile(image.convert("RGB").resize((64, 64), Image.Resampling.BICUBIC))))
