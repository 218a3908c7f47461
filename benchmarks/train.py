"""Training-step throughput and memory of the debug recipe's model: plain, gradient checkpointing, sequence parallel.

    python -m benchmarks.train [--lengths 1024 4096 16384] [--repeats 3] [--threads 1] [--sequence-parallel 2]

One step = forward, the official weighted loss (square reduction), backward and an AdamW step,
on one packed row of whole synthetic samples up to the token budget (random delta per image, float32 positions, samples
kept apart by `sequence_ids`), exactly as `v2pe train --config debug` runs it on CPU. Each
configuration runs in its own process so that its peak memory is its own: `peak_step_mb` is
the process's peak resident memory minus its resident memory just before the first step
(model, optimizer state and batch already built). Medians over `--repeats` steps after one
warm-up step. `--threads` sets torch's intra-op threads (default 1: on a shared 2-core machine,
two OpenMP threads wait on each other at every op and the figures swing by 10x; on an idle
machine pass --threads 2).

`--sequence-parallel N` adds a row per length where N processes (torchrun, gloo) share the row
with the Ulysses backend, exactly as `parallel.sequence_parallel_size: N` trains: every rank runs
the vision tower on all tiles, the language model on its 1/N of the tokens, gradients are
averaged over the group. Its `peak_step_mb` is the largest rank's; its speed uses N processes of
`--threads` threads each, so compare it with a plain row run with N x threads.

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

    from v2pe.data.packing import pack_samples
    from v2pe.data.synthetic import synthetic_sample
    from v2pe.positions import resolve_deltas
    from v2pe.processing.collate import collate
    from v2pe.train.data import finish_batch

    generator = torch.Generator().manual_seed(seed)
    samples, total, index = [], 0, 0
    while True:
        image, record = synthetic_sample(index, seed=seed, questions=3)
        sample = processor.encode(record["conversations"], [image])
        sample["image_deltas"] = resolve_deltas("random", 1, generator=generator).float()  # the model computes the positions
        if total + len(sample["input_ids"]) > length:
            break
        samples.append(sample)
        total += len(sample["input_ids"])
        index += 1
    return finish_batch(collate([pack_samples(samples)], pad_token_id=processor.pad_token_id), "square")


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

    seconds, peak_mb = _measure_steps(step, repeats)
    return {
        **_row(length, batch, processor, model, seconds, peak_mb, threads, sequence_parallel=1),
        "checkpointing": checkpointing,
        "data_s": data_seconds,
        # With the recipe's num_workers=0 the step waits for the loader this share of the time;
        # `workers_to_hide` loader processes keep up with training.
        "loader_block_fraction": data_seconds / (data_seconds + seconds),
        "workers_to_hide": math.ceil(data_seconds / seconds),
    }


def sequence_parallel_worker(length: int, repeats: int, threads: int) -> dict | None:
    """One rank of an N-process Ulysses group (launched by torchrun); rank 0 returns the row."""
    import torch
    import torch.distributed as dist

    torch.set_num_threads(threads)
    dist.init_process_group("gloo")
    from v2pe.train import load_recipe
    from v2pe.train import sequence_parallel as spmod
    from v2pe.train.deepspeed_config import skip_cpu_shm_comm_build
    from v2pe.train.loss import weighted_cross_entropy
    from v2pe.train.model_setup import build_model, build_processor

    skip_cpu_shm_comm_build()
    size = dist.get_world_size()
    config = load_recipe("debug", {"model.drop_path_rate": 0.0})
    torch.manual_seed(0)
    model = build_model(config)
    processor = build_processor(config, model)
    batch = packed_row(length, processor)  # every rank of the group holds the same row
    batch.pop("skipped")
    sp = spmod.new_sequence_groups(size, "ulysses")
    spmod.apply_sequence_parallel(model, sp)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        sharded = spmod.prepare_batch(sp, dict(batch), processor.pad_token_id, model)
        labels, weights = sharded.pop("shift_labels"), sharded.pop("shift_weights")
        sharded.pop("sequence_ids")  # the language-model hook builds the attention layout
        try:
            logits = model(**sharded).logits
        finally:
            spmod.finish_batch(sp)
        loss = weighted_cross_entropy(logits, labels, weights, sequence_group=sp.group, sequence_parallel_size=size)
        loss.backward()
        for parameter in model.parameters():  # what DDP / DeepSpeed do: average the group's gradients
            if parameter.grad is not None:
                dist.all_reduce(parameter.grad)
                parameter.grad /= size
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    seconds, peak_mb = _measure_steps(step, repeats, synchronise=dist.barrier)
    peaks = [None] * size
    dist.all_gather_object(peaks, peak_mb)
    rank = dist.get_rank()
    dist.destroy_process_group()
    if rank:
        return None
    return {**_row(length, batch, processor, model, seconds, max(peaks), threads, sequence_parallel=size), "checkpointing": False}


def _measure_steps(step, repeats: int, synchronise=lambda: None) -> tuple[float, float]:
    """Median seconds of `repeats` steps after a warm-up step (which allocates the optimizer
    state), and the peak resident memory they added over what the process held before them."""
    step()
    rss_before = _rss_mb()
    times = []
    for _ in range(repeats):
        synchronise()
        start = time.perf_counter()
        step()
        synchronise()
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return sorted(times)[len(times) // 2], max(0.0, peak - rss_before)


def _row(length: int, batch: dict, processor, model, seconds: float, peak_mb: float, threads: int, sequence_parallel: int) -> dict:
    tokens = int(batch["input_ids"].shape[1])
    return {
        "budget": length,
        "tokens": tokens,
        "sequence_parallel": sequence_parallel,
        "images": int((batch["input_ids"] == processor.image_start_id).sum()),
        "step_s": seconds,
        "tokens_per_s": tokens / seconds,
        "peak_step_mb": peak_mb,
        "parameters": sum(p.numel() for p in model.parameters()),
        "threads": threads,
        "cores": threads * sequence_parallel,
    }


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def run(lengths: list[int], repeats: int, threads: int, sequence_parallel: int = 0) -> list[dict]:
    rows = []
    for length in lengths:
        for checkpointing in (False, True):
            rows.append(_run_row(["--worker", str(length), str(int(checkpointing))], repeats, threads))
            print(f"  {length} tokens, checkpointing={checkpointing}: {rows[-1]['tokens_per_s']:,.0f} tokens/s", file=sys.stderr)
        if sequence_parallel > 1:
            launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(sequence_parallel), "-m", "benchmarks.train"]
            rows.append(_run_row(["--sp-worker", str(length)], repeats, threads, launcher))
            print(f"  {length} tokens, sequence parallel {sequence_parallel}: {rows[-1]['tokens_per_s']:,.0f} tokens/s", file=sys.stderr)
    by_key = {(r["budget"], r["checkpointing"], r["sequence_parallel"]): r for r in rows}
    for row in rows:
        plain = by_key[(row["budget"], False, 1)]
        row["speed_vs_plain"] = row["tokens_per_s"] / plain["tokens_per_s"]
        row["memory_vs_plain"] = row["peak_step_mb"] / plain["peak_step_mb"] if plain["peak_step_mb"] else None
    return rows


def _run_row(arguments: list[str], repeats: int, threads: int, launcher: list[str] | None = None) -> dict:
    """One configuration in fresh processes, so that its peak memory is its own."""
    command = [sys.executable, *(launcher or ["-m", "benchmarks.train"]), *arguments, "--repeats", str(repeats), "--threads", str(threads)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sequence-parallel", type=int, default=0, metavar="N", help="add rows with N-process Ulysses sequence parallelism")
    parser.add_argument("--worker", nargs=2, metavar=("TOKENS", "CHECKPOINTING"), help=argparse.SUPPRESS)
    parser.add_argument("--sp-worker", type=int, metavar="TOKENS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(int(args.worker[0]), bool(int(args.worker[1])), args.repeats, args.threads)))
        return
    if args.sp_worker:
        row = sequence_parallel_worker(args.sp_worker, args.repeats, args.threads)
        if row is not None:
            print(json.dumps(row))
        # The row is out and the process group destroyed; end here rather than in interpreter
        # teardown, where gloo's threads once aborted both ranks after a finished run (SIGABRT,
        # "terminate called without an active exception"), failing the launch.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    rows = run(args.lengths, args.repeats, args.threads, args.sequence_parallel)
    columns = ["budget", "tokens", "checkpointing", "sequence_parallel", "cores", "images", "step_s", "tokens_per_s", "peak_step_mb", "speed_vs_plain",
               "memory_vs_plain", "data_s", "loader_block_fraction", "workers_to_hide"]
    print_table(rows, columns)
    write_json("train", {"rows": rows, "repeats": args.repeats, "threads": args.threads, "sequence_parallel": args.sequence_parallel, "model": "debug recipe", "parameters": rows[0]["parameters"]})


if __name__ == "__main__":
    main()
