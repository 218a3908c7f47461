"""Throughput of V2PE position ids against an ordinary `arange` baseline, same run.

    python -m benchmarks.positions [--lengths 32768 262144 1048576] [--repeats 5]

Sequences are many-image inputs: text runs between images of 256 visual tokens (one
InternVL2 tile), random delta per image, as in training. Target (issue 7): within 3x of
arange at 1M tokens.
"""

from __future__ import annotations

import argparse
import warnings

import torch

from benchmarks.common import median_seconds, print_table, write_json
from v2pe.positions import PositionPrecisionWarning, v2pe_position_ids

IMG, END, CTX, TEXT = 1, 2, 3, 4


def many_image_sequence(length: int, tokens_per_image: int = 256, text_between: int = 64) -> torch.Tensor:
    """[1, length] ids: text, then images of `tokens_per_image` tokens, repeated."""
    period = [TEXT] * text_between + [IMG] + [CTX] * tokens_per_image + [END]
    repeats = length // len(period)
    ids = torch.tensor(period * repeats + [TEXT] * (length - repeats * len(period)))
    return ids.unsqueeze(0)


def arange_positions(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The ordinary baseline, as transformers derives it from a mask: cumsum - 1."""
    return (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1).to(torch.float32)


def run(lengths: list[int], repeats: int) -> list[dict]:
    # Random deltas of 1/256 past position 2^16 trigger the float32 precision warning: expected here.
    warnings.simplefilter("ignore", PositionPrecisionWarning)
    rows = []
    for length in lengths:
        ids = many_image_sequence(length)
        mask = torch.ones_like(ids)
        generator = torch.Generator().manual_seed(0)
        v2pe = median_seconds(
            lambda: v2pe_position_ids(ids, mask, image_start_id=IMG, image_end_id=END, delta="random", generator=generator),
            repeats,
        )
        base = median_seconds(lambda: arange_positions(ids, mask), repeats)
        rows.append({
            "tokens": length,
            "images": int((ids == IMG).sum()),
            "v2pe_ms": v2pe * 1e3,
            "v2pe_tokens_per_s": length / v2pe,
            "arange_ms": base * 1e3,
            "arange_tokens_per_s": length / base,
            "slowdown_vs_arange": v2pe / base,
        })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[32768, 262144, 1048576])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rows = run(args.lengths, args.repeats)
    print_table(rows, list(rows[0]))
    write_json("positions", {"rows": rows, "repeats": args.repeats})


if __name__ == "__main__":
    main()
