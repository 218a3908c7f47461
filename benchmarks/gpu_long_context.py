"""One GPU, long contexts: prefill of an InternVL2-2B-shaped model at 128K-1M tokens, and a 32K
packed training step with flash-attention varlen packing. Prepared to finish within 8 minutes
on one H200; figures go to benchmarks/results/gpu_long_context.json and benchmarks/RESULTS.md.

    python -m benchmarks.gpu_long_context [--lengths 131072 262144 524288 1048576] [--budget-s 420]
    python -m benchmarks.gpu_long_context --tiny      # the same code path on CPU, small, in a minute

The model has InternVL2-2B's shapes (InternViT-300M-448px + InternLM2-1.8B as Llama: 24 + 24
layers, hidden 1024 / 2048, 16 heads, 8 KV heads, vocab 92553) and random bf16 weights. The
prompt alternates text and 6-tile images (1,536 visual tokens each, ~92% of the prompt) at
delta 1/64, so its largest position stays inside the 32K window. Prefill is transformers'
chunked prefill with images encoded before it in batches of tiles (`generate(prefill_chunk_size=,
vision_batch_size=)`), then one token: time to first token, prefill tokens/s, peak memory.
Lengths run in order and stop when the budget is spent. MFU of the training step counts the
dense matmul FLOPs (6 x parameters x tokens) plus causal attention within each packed sample,
against the H200's dense bf16 peak (989 TFLOP/s).
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks.common import print_table, write_json
from v2pe.model.modeling import V2PEInternVLForConditionalGeneration
from v2pe.model.official import native_config_from_official
from v2pe.model.settings import V2PESettings

H200_BF16_DENSE_FLOPS = 989e12
IMG, END, CONTEXT = 92544, 92545, 92546
TILES, TOKENS_PER_TILE, TEXT_BETWEEN = 6, 256, 128


def build_model(tiny: bool, device: str, attention: str) -> V2PEInternVLForConditionalGeneration:
    from tests.released import INTERNVL2_2B_LLM, INTERNVL2_2B_VISION, official_config

    vision = {**INTERNVL2_2B_VISION, "num_hidden_layers": 24}
    llm = {**INTERNVL2_2B_LLM, "num_hidden_layers": 24, "max_position_embeddings": 32768}
    if tiny:
        vision.update(hidden_size=64, num_attention_heads=2, intermediate_size=128, num_hidden_layers=1)
        llm.update(hidden_size=128, num_attention_heads=4, num_key_value_heads=2, intermediate_size=256, num_hidden_layers=2)
    raw = official_config(vision, llm, stride=4)
    settings = V2PESettings(delta=1 / 64, image_start_token_id=IMG, image_end_token_id=END)
    config = native_config_from_official(raw, CONTEXT, settings)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    with torch.device(device):
        model = V2PEInternVLForConditionalGeneration._from_config(config, attn_implementation=attention, dtype=dtype)
    return model.eval()


def prompt(length: int, device: str) -> tuple[torch.Tensor, int]:
    period = [11] * TEXT_BETWEEN + [IMG] + [CONTEXT] * (TILES * TOKENS_PER_TILE) + [END]
    images = length // len(period)
    ids = period * images + [11] * (length - images * len(period))
    return torch.tensor([ids], device=device), images * TILES


def prefill_row(model, length: int, chunk: int, vision_batch: int, device: str) -> dict:
    ids, tiles = prompt(length, device)
    pixels = torch.randn(tiles, 3, 448, 448, device=device, dtype=model.dtype)
    _reset_peak(device)
    start = time.perf_counter()
    with torch.inference_mode():
        model.generate(input_ids=ids, pixel_values=pixels, max_new_tokens=1, do_sample=False, pad_token_id=0,
                       prefill_chunk_size=chunk, vision_batch_size=vision_batch)
    _synchronise(device)
    seconds = time.perf_counter() - start
    return {"phase": "prefill", "tokens": length, "tiles": tiles, "time_to_first_token_s": seconds,
            "tokens_per_s": length / seconds, "peak_gib": _peak_gib(device)}


def training_row(model, length: int, samples: int, device: str) -> dict:
    """Forward + backward of one packed row of `samples` text samples (varlen boundaries)."""
    model.train()
    model.model.language_model.gradient_checkpointing_enable()
    per = length // samples
    ids = torch.randint(3, 90000, (1, per * samples), device=device)
    sequence_ids = torch.arange(samples, device=device).repeat_interleave(per)[None]
    _reset_peak(device)
    for step in range(2):  # the first step warms up kernels
        start = time.perf_counter()
        loss = model(input_ids=ids, labels=ids, sequence_ids=sequence_ids, use_cache=False).loss
        loss.backward()
        _synchronise(device)
        seconds = time.perf_counter() - start
    model.zero_grad(set_to_none=True)
    text = model.config.text_config
    params = sum(p.numel() for p in model.model.language_model.parameters()) + model.lm_head.weight.numel()
    attention = 2 * 2 * text.num_hidden_layers * text.hidden_size * samples * per * per // 2 * 3  # fwd + bwd, causal
    flops = 6 * params * length + attention
    return {"phase": "train", "tokens": length, "samples": samples, "step_s": seconds, "tokens_per_s": length / seconds,
            "mfu_pct": 100 * flops / seconds / H200_BF16_DENSE_FLOPS, "peak_gib": _peak_gib(device)}


def _reset_peak(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _synchronise(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _peak_gib(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[131072, 262144, 524288, 1048576])
    parser.add_argument("--chunk", type=int, default=16384)
    parser.add_argument("--vision-batch", type=int, default=64)
    parser.add_argument("--train-tokens", type=int, default=32768)
    parser.add_argument("--budget-s", type=float, default=420, help="stop starting new rows after this many seconds")
    parser.add_argument("--tiny", action="store_true", help="small dims on CPU: checks the code path, not the figures")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() and not args.tiny else "cpu"
    attention = "sdpa"
    if device == "cuda":
        try:
            import flash_attn  # noqa: F401

            attention = "flash_attention_2"
        except ImportError:
            pass
    lengths, train_tokens = (args.lengths, args.train_tokens) if not args.tiny else ([2048, 4096], 2048)
    began, rows = time.perf_counter(), []
    model = build_model(args.tiny, device, attention)
    for length in lengths:
        if time.perf_counter() - began > args.budget_s:
            rows.append({"phase": "prefill", "tokens": length, "note": "not run: time budget spent"})
            continue
        rows.append(prefill_row(model, length, min(args.chunk, length), args.vision_batch, device))
        print(rows[-1], flush=True)
    if time.perf_counter() - began <= args.budget_s and attention.startswith("flash"):
        rows.append(training_row(model, train_tokens, 8, device))
    elif not attention.startswith("flash"):
        rows.append({"phase": "train", "tokens": train_tokens, "note": f"not run: needs flash-attention varlen ({attention} here)"})
    print_table(rows, ["phase", "tokens", "tiles", "time_to_first_token_s", "tokens_per_s", "step_s", "mfu_pct", "peak_gib", "note"])
    write_json("gpu_long_context", {"attention": attention, "device": device, "chunk": args.chunk, "rows": rows})


if __name__ == "__main__":
    main()
