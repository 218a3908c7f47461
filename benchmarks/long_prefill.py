"""Long prompts with many images: chunked prefill (batched vision) against one-shot prefill.

    python -m benchmarks.long_prefill [--lengths 16384 32768 65536 131072] [--chunk 4096] [--modes chunked one-shot]

A tiny InternVL (56 px tiles, 4 visual tokens per tile, Llama decoder) reads a prompt of text and
images (one image every ~100 tokens) and generates one token. Each row runs in its own process,
so its peak resident memory (ru_maxrss, above the process's memory after building the model and
inputs) belongs to that prefill alone. Reported per length and mode: tokens/s, peak MB, and the
growth of peak memory when the length doubles (2x per doubling is linear).

What to expect on CPU with sdpa: a one-shot prefill of an unpadded prompt passes no mask at all
(transformers lets sdpa's causal kernel run), so it is fast and its memory linear too; a chunk
attends to a longer cache, which needs an explicit chunk x context mask and the slower kernel.
Chunked prefill pays off where one-shot memory is not linear: padded batches (an L x L mask),
eager attention, and on GPU the activations of a 1M-token forward (see gpu_long_context.py).
`--modes` runs one mode only; one-shot prompts longer than `--one-shot-max` are not run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch

from benchmarks.common import print_table, write_json
from v2pe.model.modeling import V2PEInternVLForConditionalGeneration
from v2pe.model.tiny import TINY_VOCAB, tiny_config

IMG, END, CTX, TEXT = TINY_VOCAB["<img>"], TINY_VOCAB["</img>"], TINY_VOCAB["<IMG_CONTEXT>"], 60
TILES_PER_IMAGE, TOKENS_PER_TILE, TEXT_BETWEEN = 6, 4, 72


def prompt(length: int) -> tuple[torch.Tensor, int]:
    """Token ids of `length` tokens alternating text and 6-tile images; the number of tiles."""
    period = [TEXT] * TEXT_BETWEEN + [IMG] + [CTX] * (TILES_PER_IMAGE * TOKENS_PER_TILE) + [END]
    images = length // len(period)
    ids = period * images + [TEXT] * (length - images * len(period))
    return torch.tensor([ids]), images * TILES_PER_IMAGE


def worker(length: int, chunk: int | None, vision_batch: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    config = tiny_config(hidden=128, layers=2, heads=4, kv_heads=2, intermediate=256, max_positions=1 << 21)
    torch.manual_seed(0)
    model = V2PEInternVLForConditionalGeneration._from_config(config, attn_implementation="sdpa").eval()
    ids, tiles = prompt(length)
    pixels = torch.randn(tiles, 3, 56, 56)
    settings = {"prefill_chunk_size": chunk, "vision_batch_size": vision_batch} if chunk else {}
    before = _rss_mb()
    start = time.perf_counter()
    with torch.inference_mode():
        model.generate(input_ids=ids, pixel_values=pixels, max_new_tokens=1, do_sample=False, delta=0.25, pad_token_id=0, **settings)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
    return {"length": length, "mode": "chunked" if chunk else "one-shot", "tiles": tiles, "seconds": seconds,
            "tokens_per_s": length / seconds, "peak_mb": peak}


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _run_row(length: int, chunk: int | None, vision_batch: int, threads: int) -> dict:
    command = [sys.executable, "-m", "benchmarks.long_prefill", "--worker", str(length), str(chunk or 0), str(vision_batch), str(threads)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"worker {length} {chunk} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(lengths: list[int], chunk: int, one_shot_max: int, vision_batch: int, threads: int,
        modes: tuple[str, ...] = ("chunked", "one-shot")) -> list[dict]:
    rows = []
    for length in lengths:
        if "chunked" in modes:
            rows.append(_run_row(length, chunk, vision_batch, threads))
        if "one-shot" in modes:
            rows.append(_run_row(length, None, vision_batch, threads) if length <= one_shot_max else
                        {"length": length, "mode": "one-shot", "note": f"not run (longer than --one-shot-max {one_shot_max})"})
    for mode in ("chunked", "one-shot"):
        previous = None
        for row in (r for r in rows if r["mode"] == mode):
            if previous is not None and "peak_mb" in row and "peak_mb" in previous:
                row["peak_growth_per_doubling"] = (row["peak_mb"] / previous["peak_mb"]) ** (1 / _doublings(previous["length"], row["length"]))
            previous = row
    return rows


def _doublings(a: int, b: int) -> float:
    import math

    return math.log2(b / a)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[16384, 32768, 65536, 131072])
    parser.add_argument("--chunk", type=int, default=4096)
    parser.add_argument("--one-shot-max", type=int, default=131072)
    parser.add_argument("--modes", nargs="+", default=["chunked", "one-shot"], choices=["chunked", "one-shot"])
    parser.add_argument("--vision-batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--worker", nargs=4, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        length, chunk, vision_batch, threads = args.worker
        print(json.dumps(worker(length, chunk or None, vision_batch, threads)))
        return
    rows = run(args.lengths, args.chunk, args.one_shot_max, args.vision_batch, args.threads, tuple(args.modes))
    print_table(rows, ["length", "mode", "tiles", "seconds", "tokens_per_s", "peak_mb", "peak_growth_per_doubling", "note"])
    write_json("long_prefill", {"chunk": args.chunk, "vision_batch": args.vision_batch, "rows": rows})


if __name__ == "__main__":
    main()
