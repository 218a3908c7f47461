"""Inference speed under V2PE: prefill and decode tokens/s vs context length, KV-cache bytes per token.

    python -m benchmarks.inference [--lengths 1024 4096 16384] [--new-tokens 32] [--hidden 256] [--layers 4]

Many-image inputs (image features precomputed: both arms pay the same vision cost), V2PE positions
at delta 1/4 against ordinary positions, same model, same run. Decode speed: greedy steps of one
token with the KV cache after a prefill, at the official decode positions (last prompt position + k).
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

from benchmarks.common import median_seconds, print_table, write_json
from benchmarks.model_overhead import END, IMG, build_model, many_image_ids
from v2pe.model.compat import cache_kwargs, output_cache
from v2pe.positions import decode_position_ids, v2pe_position_ids


def prefill(model, embeds, positions):
    with torch.inference_mode():
        return model(inputs_embeds=embeds, position_ids=positions, attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long), use_cache=True)


def decode_seconds(model, embeds, positions, new_tokens: int) -> float:
    """Greedy decoding of `new_tokens` tokens from a fresh prefill, KV cache on; prefill not timed."""
    out = prefill(model, embeds, positions)
    cache, token, length = output_cache(out), out.logits[:, -1:].argmax(-1), embeds.shape[1]
    start = time.perf_counter()
    with torch.inference_mode():
        for k in range(1, new_tokens + 1):
            step = model(input_ids=token, **cache_kwargs(cache), use_cache=True,
                         position_ids=decode_position_ids(positions[:, -1], 1, start_step=k),
                         attention_mask=torch.ones(1, length + k, dtype=torch.long))
            token = step.logits[:, -1:].argmax(-1)
    return time.perf_counter() - start


def kv_bytes_per_token(cache, length: int) -> float:
    total = sum(layer.keys.nbytes + layer.values.nbytes for layer in cache.layers)
    return total / length


def run(lengths: list[int], new_tokens: int, hidden: int, layers: int, repeats: int) -> list[dict]:
    warnings.simplefilter("ignore")
    model = build_model(hidden, layers).eval()
    rows = []
    for length in lengths:
        ids = many_image_ids(length)
        embeds = model.get_input_embeddings()(ids).detach()
        arms = {
            "ordinary": torch.arange(length, dtype=torch.float32).unsqueeze(0),
            "v2pe": v2pe_position_ids(ids, image_start_id=IMG, image_end_id=END, delta=0.25),
        }
        row = {"tokens": length}
        for name, positions in arms.items():
            t_prefill = median_seconds(lambda: prefill(model, embeds, positions), repeats)
            t_decode = sorted(decode_seconds(model, embeds, positions, new_tokens) for _ in range(repeats))[repeats // 2]
            row[f"{name}_prefill_tok_s"] = length / t_prefill
            row[f"{name}_decode_tok_s"] = new_tokens / t_decode
            row[f"{name}_max_position"] = float(positions.max())
        row["prefill_ratio"] = row["v2pe_prefill_tok_s"] / row["ordinary_prefill_tok_s"]
        row["kv_bytes_per_token"] = kv_bytes_per_token(output_cache(prefill(model, embeds, arms["v2pe"])), length)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384])
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = run(args.lengths, args.new_tokens, args.hidden, args.layers, args.repeats)
    print_table(rows, list(rows[0]))
    write_json("inference", {"rows": rows, "new_tokens": args.new_tokens, "hidden": args.hidden, "layers": args.layers})


if __name__ == "__main__":
    main()
