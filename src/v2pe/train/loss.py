"""The official loss: cross-entropy on answer tokens, weighted per sample, reduced as sum(w * CE) / sum(w).

Weights (reference-spec 4.6, computed by `v2pe.data.packing.loss_weights`): every labelled
token of a sample with n labelled tokens weighs `token`: 1, `sample`: 1/n, `square`: 1/sqrt(n)
(the paper's scripts use square); unlabelled tokens weigh 0. With `all_gather` the
denominator sum(w) is averaged over all ranks, so that after DDP averages the gradients the
loss is the weighted mean over the whole global batch (the official
`loss_reduction_all_gather`); without it each rank (each data-parallel replica) takes its own
weighted mean.

Labels and weights are shifted for next-token prediction *before* any sequence sharding
(`v2pe.train.data.finish_batch`), so a shard's last token is scored against the next shard's
first label without communication.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from v2pe.tokens import IGNORE_INDEX


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
