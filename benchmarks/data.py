"""Data throughput: building long samples, loading + collating them, and packing efficiency.

    python -m benchmarks.data [--target 32768] [--budget 34000] [--samples 6] [--repeats 3]
                              [--image-repeats 9] [--images-only]

Real InternVL2 settings: 448 px tiles, 256 visual tokens per tile, up to 12 tiles plus a
thumbnail, the byte tokenizer. The source is the synthetic set at 224 px with mixed aspect
ratios (a square image is 1 tile = 258 tokens, a 2:1 image 2 tiles + thumbnail = 770 tokens),
so a 32K sample holds about 60-120 images. Rows:

* synthetic: drawing and writing the source (PNG);
* build long-vqa / needle: samples at the target length, measured exactly (no pixels);
* measure: the exact length of a built sample (what the packer plans with);
* load: `SupervisedDataset[i]` = decode images, tile, normalise, tokenise, draw the per-image
  random deltas (the model computes the positions; one 32K sample);
* pack+collate: `pack_samples` + `collate` of loaded samples into one padded row;
* packing efficiency at the budget for all-32K samples and for a 2K-32K mix;
* image path: `image_to_pixel_values` (tiling, bicubic resize, thumbnail, normalisation) of
  one large RGB image (12 tiles + thumbnail, and an 8-tile one), against the code before the
  lookup-table change (`_previous_image_path`), timed alternately in the same run; the
  outputs must be bit-identical (torch.equal) or the benchmark fails.
Times are medians over repeats, in this process (torch threads as shown in the JSON).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.common import median_seconds, print_table, write_json

# (width, height): 12 tiles without a resize (3 x 4 and 4 x 3 grids of 448 px), 12 tiles after
# a bicubic resize (4:3 -> 4 x 3), and an 8-tile one (2:1 -> 4 x 2); each plus the thumbnail.
IMAGE_SIZES = [(1344, 1792), (1792, 1344), (2000, 1500), (2688, 1344)]


def run(target: int, budget: int, samples: int, repeats: int, workdir: Path) -> dict:
    from v2pe.data.builders import build_long_vqa, build_needle, load_source
    from v2pe.data.dataset import SupervisedDataset
    from v2pe.data.packing import pack_samples, plan_packs
    from v2pe.data.synthetic import write_synthetic
    from v2pe.processing import Processor, byte_tokenizer, collate

    processor = Processor(byte_tokenizer(), tokens_per_tile=256, tile_size=448, min_tiles=1, max_tiles=12, use_thumbnail=True)
    rows = []

    n_source = 300
    start = time.perf_counter()
    write_synthetic(workdir / "source", n_source, seed=0, image_size=224, vary_aspect=True)
    elapsed = time.perf_counter() - start
    rows.append({"step": "synthetic source (224 px)", "samples_per_s": n_source / elapsed, "tokens_per_s": None, "ms_per_sample": 1e3 * elapsed / n_source})
    source = load_source(workdir / "source" / "synthetic.jsonl")

    built = {}

    def build_lv():
        built["lv"] = build_long_vqa(source, processor, workdir / "lv", n=samples, target_tokens=[target], seed=1)

    seconds = median_seconds(build_lv, repeats, warmup=0)
    tokens = sum(built["lv"].lengths)
    rows.append(_row(f"build long-vqa {target // 1024}K", samples, tokens, seconds))
    for task in ("retrieval-text", "counting-image"):
        def build_nd(task=task):
            built[task] = build_needle(task, source, processor, workdir / "nd", n=samples, target_tokens=[target], seed=1)

        seconds = median_seconds(build_nd, repeats, warmup=0)
        rows.append(_row(f"build needle {task} {target // 1024}K", samples, sum(built[task].lengths), seconds))

    dataset = SupervisedDataset(workdir / "lv" / "meta.json", processor, delta="random", seed=0)
    seconds = median_seconds(lambda: [dataset.measure(i) for i in range(len(dataset))], repeats)
    rows.append(_row("measure (exact length, no pixels)", len(dataset), tokens, seconds))

    load_times, loaded = [], []
    for i in range(len(dataset)):
        start = time.perf_counter()
        loaded.append(dataset[i])
        load_times.append(time.perf_counter() - start)
    load_times.sort()
    per_sample = load_times[len(load_times) // 2]
    mean_tokens = tokens / len(dataset)
    rows.append({"step": f"load {target // 1024}K sample (tiles+tokens+deltas)", "samples_per_s": 1 / per_sample, "tokens_per_s": mean_tokens / per_sample, "ms_per_sample": 1e3 * per_sample})
    images = sum(len(item["num_tiles"]) for item in loaded) / len(loaded)
    tiles = sum(int(item["num_tiles"].sum()) for item in loaded) / len(loaded)

    seconds = median_seconds(lambda: [collate([pack_samples([item])], pad_to=budget) for item in loaded], repeats)
    rows.append(_row(f"pack+collate to {budget} tokens", len(loaded), tokens, seconds))

    # packing efficiency: all-target samples, and a 2K..32K mix (exact lengths of built samples)
    same = plan_packs(dataset.lengths(), budget)
    mix_targets = [2048, 4096, 8192, 16384, 24576, 32768]
    mix = build_long_vqa(source, processor, workdir / "mix", n=60, target_tokens=mix_targets, seed=2)
    mixed = plan_packs(mix.lengths, budget)
    efficiency = {
        f"all {target // 1024}K": {"samples": len(dataset), "packs": len(same), "efficiency": same.efficiency},
        "2K-32K mix": {"samples": len(mix.lengths), "packs": len(mixed), "efficiency": mixed.efficiency},
    }
    return {"rows": rows, "efficiency": efficiency, "images_per_sample": images, "tiles_per_sample": tiles, "mean_tokens": mean_tokens}


def run_image_path(repeats: int, sizes: list[tuple[int, int]] = IMAGE_SIZES) -> list[dict]:
    """Seconds per image of today's `image_to_pixel_values` and of the previous code, same images."""
    from v2pe.processing.tiling import choose_grid, image_to_pixel_values, num_tiles_for_size

    rows = []
    for width, height in sizes:
        image = _test_image(width, height)
        previous, current = _previous_image_path(image), image_to_pixel_values(image)
        if not (previous.dtype == current.dtype and torch.equal(previous, current)):
            raise AssertionError(f"image path output differs from the previous code for {width}x{height}")
        before, after = _alternating_medians(lambda image=image: _previous_image_path(image), lambda image=image: image_to_pixel_values(image), repeats)
        columns, grid_rows = choose_grid(width, height)
        rows.append({
            "image": f"{width}x{height}",
            "grid": f"{columns}x{grid_rows}",
            "tiles": num_tiles_for_size(width, height),
            "previous_s": before,
            "new_s": after,
            "speedup": before / after,
            "bit_identical": True,
        })
    return rows


def _test_image(width: int, height: int) -> Image.Image:
    """A deterministic RGB photo stand-in: smooth gradients plus noise (resize cost does not depend on content)."""
    rng = np.random.default_rng(width * 10007 + height)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x + y) % 256], axis=-1)
    noisy = base + rng.integers(-20, 21, size=base.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")


def _alternating_medians(first, second, repeats: int) -> tuple[float, float]:
    """Median seconds of two functions timed in turn (one warm-up each), so load drifts hit both."""
    first(), second()
    times_first, times_second = [], []
    for _ in range(repeats):
        for fn, times in ((first, times_first), (second, times_second)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return statistics.median(times_first), statistics.median(times_second)


def _previous_image_path(image, min_tiles: int = 1, max_tiles: int = 12, use_thumbnail: bool = True, tile_size: int = 448) -> torch.Tensor:
    """The code before this change: `image_to_pixel_values` as it was (PIL crop per tile, then
    per-tile channels-last numpy float32 arithmetic and a transposing copy, then torch.stack).
    A faithful copy kept as the baseline; `choose_grid` and `load_image` are unchanged and shared."""
    from v2pe.processing.tiling import choose_grid, load_image

    mean = np.asarray((0.485, 0.456, 0.406), dtype=np.float32)
    std = np.asarray((0.229, 0.224, 0.225), dtype=np.float32)

    def tile_box(index, columns):
        left, top = (index % columns) * tile_size, (index // columns) * tile_size
        return (left, top, left + tile_size, top + tile_size)

    def normalize_tile(tile):
        if tile.mode != "RGB":
            tile = tile.convert("RGB")
        if tile.size != (tile_size, tile_size):
            tile = tile.resize((tile_size, tile_size), Image.Resampling.BICUBIC)
        pixels = np.asarray(tile, dtype=np.uint8).astype(np.float32)
        pixels /= 255
        pixels -= mean
        pixels /= std
        return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))

    rgb = load_image(image)
    columns, rows = choose_grid(rgb.width, rgb.height, min_tiles, max_tiles, tile_size)
    resized = rgb.resize((tile_size * columns, tile_size * rows), Image.Resampling.BICUBIC)
    tiles = [resized.crop(tile_box(index, columns)) for index in range(columns * rows)]
    if use_thumbnail and len(tiles) > 1:
        tiles.append(rgb.resize((tile_size, tile_size), Image.Resampling.BICUBIC))
    return torch.stack([normalize_tile(tile) for tile in tiles])


def _row(step: str, count: int, tokens: int, seconds: float) -> dict:
    return {"step": step, "samples_per_s": count / seconds, "tokens_per_s": tokens / seconds, "ms_per_sample": 1e3 * seconds / count}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", type=int, default=32768, help="target sample length in tokens")
    parser.add_argument("--budget", type=int, default=34000, help="packing budget in tokens (official max_packed_tokens)")
    parser.add_argument("--samples", type=int, default=6, help="samples built and loaded")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", help="where to write the data (default: a temporary folder)")
    parser.add_argument("--image-repeats", type=int, default=9, help="timed repeats of each image-path arm")
    parser.add_argument("--images-only", action="store_true", help="only the image-path rows (writes benchmarks/results/data_images.json)")
    args = parser.parse_args()
    image_rows = run_image_path(args.image_repeats)
    if not args.images_only:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(args.workdir) if args.workdir else Path(tmp)
            result = run(args.target, args.budget, args.samples, args.repeats, workdir)
        print_table(result["rows"], ["step", "samples_per_s", "tokens_per_s", "ms_per_sample"])
        print(f"\nper {args.target // 1024}K sample: {result['mean_tokens']:.0f} tokens, {result['images_per_sample']:.0f} images, {result['tiles_per_sample']:.0f} tiles")
        print(f"packing at {args.budget} tokens:")
        print_table([{"set": name, **values} for name, values in result["efficiency"].items()], ["set", "samples", "packs", "efficiency"])
        print()
    print(f"image path (tiling + normalisation), previous code vs now, median of {args.image_repeats}, outputs bit-identical:")
    print_table(image_rows, list(image_rows[0]))
    if args.images_only:
        write_json("data_images", {"image_path": image_rows, "image_repeats": args.image_repeats})
    else:
        write_json("data", {**result, "image_path": image_rows, "target": args.target, "budget": args.budget, "samples": args.samples, "repeats": args.repeats, "image_repeats": args.image_repeats})


if __name__ == "__main__":
    main()
