"""Attention layouts for packed rows: each sample attends only to its own earlier tokens.

transformers detects packed samples from position ids that restart at 0 and step by 1.
V2PE positions step by fractions inside images, so that detection cuts samples apart at
every image. Packed V2PE rows therefore carry explicit per-token sample ids, turned here
into a block-diagonal causal mask (eager / sdpa) or flash-attention varlen boundaries.
"""

from __future__ import annotations

import torch


def packed_causal_mask(
    sequence_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    dtype: torch.dtype = torch.float32,
    boolean: bool = False,
) -> torch.Tensor:
    """A [B, 1, L, L] mask: query i sees key j iff j <= i, same sample, and j is not padding.

    boolean=True gives True-means-attend (sdpa); otherwise an additive mask of 0 and the
    dtype's minimum (eager attention adds it to the scores).
    """
    length = sequence_ids.shape[-1]
    causal = torch.ones(length, length, dtype=torch.bool, device=sequence_ids.device).tril()
    same_sample = sequence_ids[:, :, None] == sequence_ids[:, None, :]
    allowed = causal[None] & same_sample
    if attention_mask is not None:
        allowed = allowed & attention_mask.bool()[:, None, :]
    allowed = allowed[:, None]
    if boolean:
        return allowed
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, torch.finfo(dtype).min)


def varlen_boundaries(sequence_ids: torch.Tensor) -> dict[str, torch.Tensor | int]:
    """Flash-attention varlen kwargs (cu_seq_lens, max_length) for one packed row."""
    if sequence_ids.shape[0] != 1:
        raise ValueError("flash-attention packing takes one packed row per batch (batch size 1)")
    row = sequence_ids[0]
    starts = torch.nonzero(torch.cat([row.new_ones(1, dtype=torch.bool), row[1:] != row[:-1]])).flatten()
    cu = torch.cat([starts, starts.new_tensor([row.numel()])]).to(torch.int32)
    longest = int((cu[1:] - cu[:-1]).max())
    return {"cu_seq_lens_q": cu, "cu_seq_lens_k": cu, "max_length_q": longest, "max_length_k": longest}
