"""What V2PE positions cost a forward (and forward + backward) pass, against ordinary positions.

    python -m benchmarks.model_overhead [--lengths 1024 4096] [--hidden 256] [--layers 4] [--repeats 5]

Same model, same many-image inputs; the V2PE arm computes its positions (random delta per image)
inside the timed region, the baseline uses `arange`. Target (issue 7): V2PE costs under 2%.
"""

from __future__ import annotations

import argparse
import warnings

import torch

from benchmarks.common import median_seconds, print_table, write_json
from v2pe.model.tiny import TINY_VOCAB, tiny_config
from v2pe.model.modeling import V2PEInternVLForConditionalGeneration
from v2pe.positions import v2pe_position_ids

IMG, END, CTX, TEXT = TINY_VOCAB["<img>"], TINY_VOCAB["</img>"], TINY_VOCAB["<IMG_CONTEXT>"], 60


def build_model(hidden: int, layers: int) -> V2PEInternVLForConditionalGeneration:
    config = tiny_config(hidden=hidden, layers=layers, heads=hidden // 64, kv_heads=hidden // 64, intermediate=4 * hidden)
    torch.manual_seed(0)
    return V2PEInternVLForConditionalGeneration._from_config(config, attn_implementation="sdpa")


def many_image_ids(length: int, tokens_per_image: int = 4 * 16, text_between: int = 32) -> torch.Tensor:
    period = [TEXT] * text_between + [IMG] + [CTX] * tokens_per_image + [END]
    repeats = length // len(period)
    return torch.tensor([period * repeats + [TEXT] * (length - repeats * len(period))])


def forward_inputs(model, ids: torch.Tensor) -> dict:
    """Image features are precomputed once: both arms pay the same vision cost, so leave it out."""
    embeds = model.get_input_embeddings()(ids).detach()
    return {"inputs_embeds": embeds, "attention_mask": torch.ones_like(ids), "use_cache": False}


def step(model, ids, inputs, positions_fn, backward: bool):
    positions = positions_fn(ids)
    if backward:
        out = model(position_ids=positions, **inputs)
        out.logits.float().mean().backward()
    else:
        with torch.no_grad():
            model(position_ids=positions, **inputs)


def run(lengths: list[int], hidden: int, layers: int, repeats: int) -> list[dict]:
    warnings.simplefilter("ignore")
    model = build_model(hidden, layers)
    generator = torch.Generator().manual_seed(0)
    v2pe = lambda ids: v2pe_position_ids(ids, image_start_id=IMG, image_end_id=END, delta="random", generator=generator)  # noqa: E731
    ordinary = lambda ids: torch.arange(ids.shape[1]).unsqueeze(0)  # noqa: E731
    rows = []
    for length in lengths:
        ids = many_image_ids(length)
        inputs = forward_inputs(model, ids)
        for backward in (False, True):
            model.train(backward)
            times = {name: median_seconds(lambda fn=fn: step(model, ids, inputs, fn, backward), repeats)
                     for name, fn in (("ordinary", ordinary), ("v2pe", v2pe))}
            rows.append({
                "tokens": length,
                "pass": "fwd+bwd" if backward else "forward",
                "ordinary_tokens_per_s": length / times["ordinary"],
                "v2pe_tokens_per_s": length / times["v2pe"],
                "v2pe_overhead_pct": 100 * (times["v2pe"] / times["ordinary"] - 1),
            })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rows = run(args.lengths, args.hidden, args.layers, args.repeats)
    print_table(rows, list(rows[0]))
    write_json("model_overhead", {"rows": rows, "hidden": args.hidden, "layers": args.layers, "repeats": args.repeats})


if __name__ == "__main__":
    main()
