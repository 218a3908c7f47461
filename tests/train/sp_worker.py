"""Sequence parallelism against one process: logits, loss and gradients.

    torchrun --nproc_per_node 2 tests/train/sp_worker.py RESULTS.json

Every rank first runs the whole packed row in one process (the reference), then the same model
with `apply_sequence_parallel` (2 ranks, gloo), and compares: its shard of the logits, the
average loss over ranks, and the gradients averaged over ranks (what DDP / DeepSpeed apply).

* Ulysses, with the sdpa and eager kernels: the real DeepSpeed all-to-all attention.
* Ring: the zigzag layout, per-sample padding and local boundaries, with the CUDA kernel
  `ring_flash_attn.zigzag_ring_flash_attn_varlen_func` replaced by an exact CPU stand-in
  (all-gather the group's K/V, undo the zigzag, causal attention per sample): this checks
  everything v2pe does around the kernel, not the kernel (forward only).

Rank 0 writes the largest differences per setup.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist


def packed_batch():
    from v2pe.data.packing import pack_samples
    from v2pe.data.synthetic import synthetic_sample
    from v2pe.positions import resolve_deltas
    from v2pe.processing import Processor, byte_tokenizer, collate
    from v2pe.train.data import finish_batch

    processor = Processor(byte_tokenizer(), tokens_per_tile=4, tile_size=56, max_tiles=4)
    generator = torch.Generator().manual_seed(0)
    samples = []
    for index in range(3):
        image, record = synthetic_sample(index, questions=2)
        sample = processor.encode(record["conversations"], [image])
        sample["image_deltas"] = resolve_deltas("random", 1, generator=generator).float()  # as the dataset draws them
        samples.append(sample)
    batch = finish_batch(collate([pack_samples(samples)], pad_token_id=processor.pad_token_id), "square")
    batch.pop("skipped")
    return batch, processor.pad_token_id


def run(implementation: str, backend: str = "ulysses") -> dict:
    from v2pe.model.tiny import tiny_model
    from v2pe.train import sequence_parallel as spmod
    from v2pe.train.loss import weighted_cross_entropy

    batch, pad_id = packed_batch()
    model = tiny_model(seed=0, attn_implementation=implementation, hidden=64, layers=2, heads=4, kv_heads=2).train()
    reference = copy.deepcopy(model)
    labels, weights = batch["shift_labels"], batch["shift_weights"]
    inputs = {k: v for k, v in batch.items() if k not in ("shift_labels", "shift_weights")}
    ref_logits = reference(**inputs).logits
    ref_loss = weighted_cross_entropy(ref_logits, labels, weights)
    ref_loss.backward()

    calls = []
    name = "_ulysses_attention" if backend == "ulysses" else "_ring_attention"
    original = getattr(spmod, name)
    setattr(spmod, name, lambda *a, **k: calls.append(a[1].shape) or original(*a, **k))
    sp = spmod.new_sequence_groups(2, backend)
    spmod.apply_sequence_parallel(model, sp)
    setattr(spmod, name, original)
    sharded = spmod.prepare_batch(sp, dict(batch), pad_id, model)  # the whole row's positions, from the model
    index = sp.index.clone()
    model_inputs = {k: sharded[k] for k in ("input_ids", "attention_mask", "position_ids", "pixel_values")}
    logits = model(**model_inputs).logits
    spmod.finish_batch(sp)
    loss = weighted_cross_entropy(logits, sharded["shift_labels"], sharded["shift_weights"], sequence_group=sp.group, sequence_parallel_size=2)
    if backend == "ulysses":
        loss.backward()
    spmod.remove_sequence_parallel(model, sp)

    padded_mask = sharded["attention_mask"][0]
    original = padded_mask.cumsum(0) - 1  # padded-row index -> index in the unpadded row
    real = padded_mask[index].bool()  # padding (row end for Ulysses, after each sample for ring) has no reference
    logits_diff = (logits[0, real] - ref_logits[0, original[index[real]]]).abs().max().item()
    mean_loss = loss.detach().clone()
    dist.all_reduce(mean_loss)
    mean_loss /= dist.get_world_size()
    grad_diff, grad_scale = 0.0, 0.0
    for p, q in zip(model.parameters(), reference.parameters() if backend == "ulysses" else (), strict=backend == "ulysses"):
        grad = p.grad.clone() if p.grad is not None else torch.zeros_like(p)
        dist.all_reduce(grad)
        grad /= dist.get_world_size()
        grad_diff = max(grad_diff, (grad - q.grad).abs().max().item())
        grad_scale = max(grad_scale, q.grad.abs().max().item())
    return {
        "logits": logits_diff,
        "loss": abs(mean_loss.item() - ref_loss.item()),
        "grad": grad_diff,
        "grad_scale": grad_scale,
        "attention_calls": len(calls),
        "query_tokens_per_rank": int(calls[0][2]) if calls else 0,
        "local_tokens": int(index.numel()),
        "row_tokens": int(ref_logits.shape[1]),
        "images": int((batch["input_ids"] == 295).sum()),
        "deltas_fractional": bool((sharded["position_ids"].frac() != 0).any()),
    }


def reference_zigzag_ring_flash_attn_varlen_func(q, k, v, cu_seqlens, max_seqlen, dropout_p=0.0, softmax_scale=None, causal=True, group=None, **_):
    """What the ring kernel computes, on CPU: q, k, v [L_local, H, D] in zigzag layout."""
    size, rank = dist.get_world_size(group), dist.get_rank(group)
    gathered = []
    for tensor in (k, v):
        parts = [torch.empty_like(tensor) for _ in range(size)]
        dist.all_gather(parts, tensor.contiguous(), group=group)
        gathered.append(parts)
    outputs = []
    for i in range(len(cu_seqlens) - 1):
        start, end = int(cu_seqlens[i]), int(cu_seqlens[i + 1])
        chunk = (end - start) // 2
        full = []
        for parts in gathered:  # undo the zigzag: chunk j of the sample lives on rank j or 2S-1-j
            chunks = [None] * (2 * size)
            for r, local in enumerate(parts):
                chunks[r], chunks[2 * size - 1 - r] = local[start:start + chunk], local[start + chunk:end]
            full.append(torch.cat(chunks))
        keys, values = full
        groups = q.shape[1] // keys.shape[1]
        keys, values = keys.repeat_interleave(groups, dim=1), values.repeat_interleave(groups, dim=1)
        query_positions = torch.cat([torch.arange(rank * chunk, (rank + 1) * chunk), torch.arange((2 * size - 1 - rank) * chunk, (2 * size - rank) * chunk)])
        scores = torch.einsum("qhd,khd->hqk", q[start:end], keys) * softmax_scale
        allowed = torch.arange(keys.shape[0])[None, :] <= query_positions[:, None]
        weights = scores.masked_fill(~allowed, float("-inf")).softmax(-1)
        outputs.append(torch.einsum("hqk,khd->qhd", weights, values))
    return torch.cat(outputs)


def main() -> None:
    import types

    dist.init_process_group("gloo")
    from v2pe.train.deepspeed_config import skip_cpu_shm_comm_build

    skip_cpu_shm_comm_build()
    torch.manual_seed(0)
    results = {impl: run(impl) for impl in ("sdpa", "eager")}
    sys.modules["ring_flash_attn"] = types.SimpleNamespace(zigzag_ring_flash_attn_varlen_func=reference_zigzag_ring_flash_attn_varlen_func)
    results["ring_reference_kernel"] = run("sdpa", backend="ring")
    if dist.get_rank() == 0:
        Path(sys.argv[1]).write_text(json.dumps(results, indent=1))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
