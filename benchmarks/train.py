"""Training-step throughput and memory of the debug recipe's model, with and without gradient checkpointing.

    python -m benchmarks.train [--lengths 1024 4096 16384] [--repeats 3] [--threads 1]

One step = forward, the official weighted loss (square reduction), backward and an AdamW step,
on one packed row of whole synthetic samples up to the token budget (random delta per image, float32 positions, samples
kept apart by `sequence_ids`), exactly as `v2pe train --config debug` runs it on CPU. Each
configuration runs in its own process so that its peak memory is its own: `peak_step_mb` is
the process's peak resident memory minus its resident memory just before the first step
(model, optimizer state and batch already built). Medians over `--repeats` steps after one
warm-up step. `--threads` sets torch's intra-op threads (default 1: on a shared 2-core machine,
two OpenMP threads wait on each other at every op and the figures swing by 10x; on an idle
machine pass --threads 2).

`data_s` is the data loader's work for that row (decode, tile, tokenise, random-delta positions,
pack, collate); `loader_block_fraction` is the share of a step the training loop would wait for
it with the recipe's `num_workers: 0`, and `workers_to_hide` the loader processes that hide it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time

from benchmarks.common import print_table, write_json


def packed_row(length: int, processor, seed: int = 0) -> dict:
    """Whole synthetic samples packed into one row of at most `length` tokens (as packing does)."""
    import torch

    from v2pe.data.packing import collate_packed, pack_samples
    from v2pe.data.synthetic import synthetic_sample
    from v2pe.train.data import finish_batch

    generator = torch.Generator().manual_seed(seed)
    samples, total, index = [], 0, 0
    while True:
        image, record = synthetic_sample(index, seed=seed, questions=3)
        sample = processor.process_sample(record["conversations"], [image], delta="random", generator=generator)
        if total + len(sample["input_ids"]) > length:
            break
        samples.append(sample)
        total += len(sample["input_ids"])
        index += 1
    return finish_batch(collate_packed([pack_samples(samples)], pad_token_id=processor.pad_token_id), "square")


def worker(length: int, checkpointing: bool, repeats: int, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    from v2pe.train import load_recipe
    from v2pe.train.loss import weighted_cross_entropy
    from v2pe.train.model_setup import build_model, build_processor

    config = load_recipe("debug", {"model.gradient_checkpointing": checkpointing, "model.drop_path_rate": 0.0})
    model = build_model(config)
    processor = build_processor(config, model)
    packed_row(length, processor, seed=1)  # warm-up (tokenizer, fonts)
    start = time.perf_counter()
    batch = packed_row(length, processor)  # what the data loader does for one step
    data_seconds = time.perf_counter() - start
    labels, weights = batch.pop("shift_labels"), batch.pop("shift_weights")
    batch.pop("skipped")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        loss = weighted_cross_entropy(model(**batch).logits, labels, weights)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up: allocates the optimizer state
    rss_before = _rss_mb()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    seconds = sorted(times)[len(times) // 2]
    tokens = int(batch["input_ids"].shape[1])
    return {
        "budget": length,
        "tokens": tokens,
        "checkpointing": checkpointing,
        "images": int((batch["input_ids"] == processor.image_start_id).sum()),
        "step_s": seconds,
        "tokens_per_s": tokens / seconds,
        "data_s": data_seconds,
        # With the recipe's num_workers=0 the step waits for the loader this share of the time;
        # `workers_to_hide` loader processes keep up with training.
        "loader_block_fraction": data_seconds / (data_seconds + seconds),
        "workers_to_hide": math.ceil(data_seconds / seconds),
        "peak_step_mb": max(0.0, peak - rss_before),
        "parameters": sum(p.numel() for p in model.parameters()),
        "threads": threads,
    }


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def run(lengths: list[int], repeats: int, threads: int) -> list[dict]:
    rows = []
    for length in lengths:
        for checkpointing in (False, True):
            command = [sys.executable, "-m", "benchmarks.train", "--worker", str(length), str(int(checkpointing)), "--repeats", str(repeats), "--threads", str(threads)]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"  {length} tokens, checkpointing={checkpointing}: {rows[-1]['tokens_per_s']:,.0f} tokens/s", file=sys.stderr)
    by_key = {(r["budget"], r["checkpointing"]): r for r in rows}
    for row in rows:
        plain = by_key[(row["budget"], False)]
        row["speed_vs_plain"] = row["tokens_per_s"] / plain["tokens_per_s"]
        row["memory_vs_plain"] = row["peak_step_mb"] / plain["peak_step_mb"] if plain["peak_step_mb"] else None
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--worker", nargs=2, metavar=("TOKENS", "CHECKPOINTING"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(int(args.worker[0]), bool(int(args.worker[1])), args.repeats, args.threads)))
        return
    rows = run(args.lengths, args.repeats, args.threads)
    columns = ["budget", "tokens", "checkpointing", "images", "step_s", "tokens_per_s", "peak_step_mb", "speed_vs_plain",
               "memory_vs_plain", "data_s", "loader_block_fraction", "workers_to_hide"]
    print_table(rows, columns)
    write_json("train", {"rows": rows, "repeats": args.repeats, "threads": args.threads, "model": "debug recipe", "parameters": rows[0]["parameters"]})


if __name__ == "__main__":
    main()
