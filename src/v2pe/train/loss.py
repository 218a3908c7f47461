"""The official loss, in one place: per-sample weights, the next-token shift, weighted cross-entropy.

Weights (reference-spec 4.6): every labelled token of a sample with n labelled tokens weighs
`token`: 1, `sample`: 1/n, `square`: 1/sqrt(n) (the paper's scripts use square); unlabelled
tokens weigh 0. The loss is sum(w * CE) / sum(w).

The shift is done once, on whole rows (`shift_targets`, called by the training collator), so
that sequence parallelism can shard the targets like the tokens: a shard's last token is scored
against the next shard's first label without communication. A prediction across a
packed-sample boundary is never scored.

With `all_gather` the denominator sum(w) is averaged over all ranks, so that after DDP averages
the gradients the loss is the weighted mean over the whole global batch (the official
`loss_reduction_all_gather`); without it each rank (each data-parallel replica) takes its own
weighted mean. `packed_loss` is the whole pipeline for one process (unshifted labels in).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from v2pe.errors import ConfigError
from v2pe.tokens import IGNORE_INDEX

LOSS_REDUCTIONS = ("token", "sample", "square")


def loss_weights(labels: torch.Tensor, sequence_ids: torch.Tensor | None, reduction: str = "token") -> torch.Tensor:
    """Per-token weights [B, L] aligned with `labels`: 0 where label is -100, else 1, 1/x or
    1/sqrt(x) with x = the label tokens of the token's sub-sample (its row when no sequence_ids)."""
    if reduction not in LOSS_REDUCTIONS:
        raise ConfigError(f"loss_reduction must be one of {LOSS_REDUCTIONS}, got {reduction!r}")
    labels = labels if labels.dim() == 2 else labels.unsqueeze(0)
    active = labels != IGNORE_INDEX
    if reduction == "token":
        return active.to(torch.float32)
    if sequence_ids is None:
        sequence_ids = torch.zeros_like(labels)
    sequence_ids = sequence_ids if sequence_ids.dim() == 2 else sequence_ids.unsqueeze(0)
    # Sub-sample key per token, unique across rows: row * (max id + 2) + (id + 1) (id -1 = padding).
    span = int(sequence_ids.max()) + 2 if sequence_ids.numel() else 1
    keys = (torch.arange(labels.shape[0], device=labels.device)[:, None] * span + sequence_ids + 1).flatten()
    counts = torch.zeros(labels.shape[0] * span, dtype=torch.float32, device=labels.device)
    counts.index_add_(0, keys, active.flatten().to(torch.float32))
    x = counts[keys].view_as(labels).clamp(min=1)
    weight = 1.0 / x if reduction == "sample" else x.rsqrt()
    return torch.where(active, weight, torch.zeros_like(weight))


def shift_targets(labels: torch.Tensor, sequence_ids: torch.Tensor | None = None, reduction: str = "token") -> tuple[torch.Tensor, torch.Tensor]:
    """(shift_labels, shift_weights) [B, L]: position t holds the label and weight of token t + 1;
    the last position, and the last token of each packed sample, are never scored."""
    weights = loss_weights(labels, sequence_ids, reduction)
    shift_labels = F.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)
    shift_weights = F.pad(weights[:, 1:], (0, 1), value=0.0)
    if sequence_ids is not None:
        same = F.pad(sequence_ids[:, 1:] == sequence_ids[:, :-1], (0, 1), value=False)
        shift_weights = torch.where(same, shift_weights, torch.zeros_like(shift_weights))
    return shift_labels, shift_weights.to(torch.float32)


def weighted_cross_entropy(
    logits: torch.Tensor,
    shifted_labels: torch.Tensor,
    shifted_weights: torch.Tensor,
    *,
    all_gather: bool = False,
    sequence_group=None,
    sequence_parallel_size: int = 1,
) -> torch.Tensor:
    """The rank's loss (what it backpropagates and reports).

    logits [B, L, V] hold this rank's tokens (its shard under sequence parallelism), labels and
    weights the matching shifted targets. Gradients are averaged over all ranks by DDP /
    DeepSpeed afterwards, which this scaling accounts for:

    * all_gather: loss = sum_local(w * CE) / mean_over_ranks(sum_local w);
    * otherwise, with sequence parallelism, sum(w) is summed over the sequence group (one
      replica's tokens) and the loss multiplied by the group size, so that the average over
      ranks is the average over data-parallel replicas of each replica's weighted mean.
    """
    vocab = logits.shape[-1]
    ce = F.cross_entropy(logits.reshape(-1, vocab).float(), shifted_labels.reshape(-1), reduction="none", ignore_index=IGNORE_INDEX)
    weights = shifted_weights.reshape(-1).to(ce.dtype)
    # where(): a NaN/inf logit on an unscored token must not leak into the sum through 0 * NaN
    numerator = torch.where(weights > 0, ce * weights, torch.zeros_like(ce)).sum()
    denominator = weights.sum().detach()
    scale = 1.0
    if all_gather and dist.is_available() and dist.is_initialized():
        denominator = denominator.clone()
        dist.all_reduce(denominator)
        denominator = denominator / dist.get_world_size()
    elif sequence_parallel_size > 1:
        denominator = denominator.clone()
        dist.all_reduce(denominator, group=sequence_group)
        scale = float(sequence_parallel_size)
    return numerator / denominator.clamp_min(torch.finfo(denominator.dtype).tiny) * scale


def packed_loss(logits: torch.Tensor, labels: torch.Tensor, sequence_ids: torch.Tensor | None = None, reduction: str = "token") -> torch.Tensor:
    """The loss of a (packed) batch in one process: `weighted_cross_entropy` of `shift_targets`.
    `logits` [B, L, V], `labels` [B, L] (unshifted), `sequence_ids` [B, L]."""
    return weighted_cross_entropy(logits, *shift_targets(labels, sequence_ids, reduction))
