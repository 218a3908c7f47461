"""Data throughput: building long samples, loading + collating them, and packing efficiency.

    python -m benchmarks.data [--target 32768] [--budget 34000] [--samples 6] [--repeats 3]

Real InternVL2 settings: 448 px tiles, 256 visual tokens per tile, up to 12 tiles plus a
thumbnail, the byte tokenizer. The source is the synthetic set at 224 px with mixed aspect
ratios (a square image is 1 tile = 258 tokens, a 2:1 image 2 tiles + thumbnail = 770 tokens),
so a 32K sample holds about 60-120 images. Rows:

* synthetic: drawing and writing the source (PNG);
* build long-vqa / needle: samples at the target length, measured exactly (no pixels);
* measure: the exact length of a built sample (what the packer plans with);
* load: `SupervisedDataset[i]` = decode images, tile, normalise, tokenise, random-delta V2PE
  positions (one 32K sample);
* pack+collate: `pack_samples` + `collate_packed` of loaded samples into one padded row;
* packing efficiency at the budget for all-32K samples and for a 2K-32K mix.
Times are medians over repeats, in this process (torch threads as shown in the JSON).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from benchmarks.common import median_seconds, print_table, write_json


def run(target: int, budget: int, samples: int, repeats: int, workdir: Path) -> dict:
    from v2pe.data.builders import build_long_vqa, build_needle, load_source
    from v2pe.data.dataset import SupervisedDataset
    from v2pe.data.packing import collate_packed, pack_samples, plan_packs
    from v2pe.data.synthetic import write_synthetic
    from v2pe.processing import Processor, byte_tokenizer

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
    rows.append({"step": f"load {target // 1024}K sample (tiles+tokens+positions)", "samples_per_s": 1 / per_sample, "tokens_per_s": mean_tokens / per_sample, "ms_per_sample": 1e3 * per_sample})
    images = sum(len(item["num_tiles"]) for item in loaded) / len(loaded)
    tiles = sum(int(item["num_tiles"].sum()) for item in loaded) / len(loaded)

    seconds = median_seconds(lambda: [collate_packed([pack_samples([item])], pad_to=budget) for item in loaded], repeats)
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


def _row(step: str, count: int, tokens: int, seconds: float) -> dict:
    return {"step": step, "samples_per_s": count / seconds, "tokens_per_s": tokens / seconds, "ms_per_sample": 1e3 * seconds / count}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", type=int, default=32768, help="target sample length in tokens")
    parser.add_argument("--budget", type=int, default=34000, help="packing budget in tokens (official max_packed_tokens)")
    parser.add_argument("--samples", type=int, default=6, help="samples built and loaded")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", help="where to write the data (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.workdir) if args.workdir else Path(tmp)
        result = run(args.target, args.budget, args.samples, args.repeats, workdir)
    print_table(result["rows"], ["step", "samples_per_s", "tokens_per_s", "ms_per_sample"])
    print(f"\nper {args.target // 1024}K sample: {result['mean_tokens']:.0f} tokens, {result['images_per_sample']:.0f} images, {result['tiles_per_sample']:.0f} tiles")
    print(f"packing at {args.budget} tokens:")
    print_table([{"set": name, **values} for name, values in result["efficiency"].items()], ["set", "samples", "packs", "efficiency"])
    write_json("data", {**result, "target": args.target, "budget": args.budget, "samples": args.samples, "repeats": args.repeats})


if __name__ == "__main__":
    main()
