"""Sequence parallelism, applied from outside the model: one value, `parallel.sequence_parallel_size`.

The `sequence_parallel_size` consecutive ranks of a group share one packed row. The vision tower
runs on every rank of the group (all the row's tiles), the image features are merged into
the token embeddings as usual, and then a forward pre-hook on the language model keeps only
this rank's tokens: the embeddings *and their V2PE positions*, sharded with the same index.
The positions of the whole row are computed by the model (`v2pe_position_ids`, from the ids,
the per-image deltas and `sequence_ids`) before the row is padded and sharded: a shard alone
does not know where its images start.
The labels and loss weights, shifted for next-token prediction on the whole row first, are
sharded with that same index in the trainer. Attention is swapped through transformers'
`AttentionInterface` registry, never by editing the modeling code:

| backend | attention | shard layout | needs |
| --- | --- | --- | --- |
| `ulysses` | DeepSpeed `DistributedAttention`: all-to-all from sequence shards to head shards, the model's own kernel (eager / sdpa / flash-attn) on the full row for H/S heads, all-to-all back | contiguous | DeepSpeed (CPU with gloo, or GPU); KV heads divisible by the group size |
| `ring` | `ring_flash_attn.zigzag_ring_flash_attn_varlen_func` over the group | zigzag per packed sample (each sample padded to a multiple of 2S) | CUDA, flash-attn, ring-flash-attn; batch 1 |

Fixes over the official ring code (reference-spec 7, items 9-10): the ring runs over the
sequence group, not the whole world, and the zigzag split is done per packed sample, which
is what the varlen kernel expects.

Padding: a row is padded (ulysses: to a multiple of S at its end; ring: every sample to a
multiple of 2S) with the pad token, attention-mask 0, label -100, loss weight 0, and
integer positions continuing after the sample's last position (as the official
`pad_packed_inputs`). Padding tokens keep their sample's id, so no query row is ever fully
masked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from v2pe.errors import ConfigError
from v2pe.model.attention import packed_causal_mask, varlen_boundaries
from v2pe.tokens import IGNORE_INDEX

ULYSSES_ATTENTION = "v2pe_ulysses"
RING_ATTENTION = "v2pe_ring"


@dataclass
class SequenceParallel:
    """This rank's sequence group and the state of the batch being processed."""

    size: int
    rank: int
    backend: str
    group: object = None
    inner_implementation: str = "sdpa"
    # set per batch by `prepare_batch`, read by the language-model hook
    index: torch.Tensor | None = None
    sequence_ids: torch.Tensor | None = None
    attention_mask: torch.Tensor | None = None
    _hooks: list = field(default_factory=list)

    @property
    def data_parallel_rank(self) -> int:
        return dist.get_rank() // self.size if dist.is_initialized() else 0

    @property
    def data_parallel_size(self) -> int:
        return dist.get_world_size() // self.size if dist.is_initialized() else 1


# --------------------------------------------------------------------------------------------
# groups and setup


def new_sequence_groups(size: int, backend: str = "ulysses", inner_implementation: str = "sdpa") -> SequenceParallel:
    """Consecutive ranks [i*size, (i+1)*size) form group i (every rank creates every group)."""
    if not dist.is_initialized():
        raise ConfigError("parallel.sequence_parallel_size > 1 needs a distributed launch (torchrun / accelerate / deepspeed)")
    world, rank = dist.get_world_size(), dist.get_rank()
    if world % size:
        raise ConfigError(f"parallel.sequence_parallel_size = {size} does not divide the world size {world}")
    mine = None
    for start in range(0, world, size):
        group = dist.new_group(ranks=list(range(start, start + size)))
        if start <= rank < start + size:
            mine = group
    if backend == "ulysses":
        import deepspeed.comm

        deepspeed.comm.init_distributed(dist_backend=dist.get_backend(), auto_mpi_discovery=False, verbose=False)
    return SequenceParallel(size=size, rank=rank % size, backend=backend, group=mine, inner_implementation=inner_implementation)


def apply_sequence_parallel(model, sp: SequenceParallel) -> SequenceParallel:
    """Register the attention wrapper, switch the language model to it, hook the input sharding."""
    from transformers import AttentionInterface

    text_config = model.config.text_config
    heads, kv_heads = text_config.num_attention_heads, getattr(text_config, "num_key_value_heads", None) or text_config.num_attention_heads
    if sp.backend == "ulysses" and (heads % sp.size or kv_heads % sp.size):
        raise ConfigError(
            f"parallel.sequence_parallel_size = {sp.size} must divide the attention heads ({heads}) and KV heads ({kv_heads}) "
            "for Ulysses (heads are split over the group): choose a divisor, or the ring backend on GPU"
        )
    sp.inner_implementation = text_config._attn_implementation or "eager"
    if sp.inner_implementation in (ULYSSES_ATTENTION, RING_ATTENTION):
        raise ConfigError("sequence parallelism is already applied to this model")
    name = ULYSSES_ATTENTION if sp.backend == "ulysses" else RING_ATTENTION
    AttentionInterface.register(name, _ulysses_attention if sp.backend == "ulysses" else _ring_attention)
    _ACTIVE[0] = sp
    text_config._attn_implementation = name
    language_model = model.model.language_model
    language_model.config._attn_implementation = name
    sp._hooks.append(language_model.register_forward_pre_hook(_shard_language_model_inputs, with_kwargs=True))
    return sp


def remove_sequence_parallel(model, sp: SequenceParallel) -> None:
    """Undo `apply_sequence_parallel` (tests, or saving a model that will run elsewhere)."""
    for hook in sp._hooks:
        hook.remove()
    sp._hooks.clear()
    model.config.text_config._attn_implementation = sp.inner_implementation
    model.model.language_model.config._attn_implementation = sp.inner_implementation
    _ACTIVE[0] = None


_ACTIVE: list[SequenceParallel | None] = [None]


def active() -> SequenceParallel:
    sp = _ACTIVE[0]
    if sp is None:
        raise RuntimeError("sequence-parallel attention called without an active sequence-parallel setup")
    return sp


# --------------------------------------------------------------------------------------------
# padding and shard indices (pure functions of the row)


def sample_spans(sequence_ids: torch.Tensor) -> list[tuple[int, int]]:
    """[(start, end)] of the runs of equal ids in one row [L]."""
    row = sequence_ids.reshape(-1)
    change = torch.nonzero(row[1:] != row[:-1]).flatten() + 1
    bounds = [0, *change.tolist(), row.numel()]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def pad_row(batch: dict[str, torch.Tensor], size: int, backend: str, pad_token_id: int) -> dict[str, torch.Tensor]:
    """Pad a one-row batch for sequence parallelism (see the module docstring).

    Keys handled: input_ids, attention_mask, position_ids, sequence_ids, shift_labels, shift_weights
    (all [1, L]); others are passed through.
    """
    sequence_ids = batch["sequence_ids"]
    if sequence_ids.shape[0] != 1:
        raise ConfigError("sequence parallelism shards one row: set train.per_device_batch_size 1")
    multiple = size if backend == "ulysses" else 2 * size
    spans = sample_spans(sequence_ids[0]) if backend == "ring" else [(0, sequence_ids.shape[1])]
    fill = {"input_ids": pad_token_id, "attention_mask": 0, "shift_labels": IGNORE_INDEX, "shift_weights": 0.0}
    pieces: dict[str, list[torch.Tensor]] = {key: [] for key in (*fill, "position_ids", "sequence_ids") if key in batch}
    for start, end in spans:
        extra = (-(end - start)) % multiple
        for key in pieces:
            row = batch[key][:, start:end]
            pieces[key].append(row)
            if not extra:
                continue
            if key == "position_ids":
                last = torch.ceil(row[:, -1:].float()) if row.shape[1] else row.new_zeros(1, 1)
                pad = last + torch.arange(1, extra + 1, dtype=torch.float32, device=row.device)
            elif key == "sequence_ids":
                pad = row[:, -1:].expand(1, extra)
            else:
                pad = torch.full((1, extra), fill[key], dtype=row.dtype, device=row.device)
            pieces[key].append(pad.to(row.dtype))
    out = dict(batch)
    out.update({key: torch.cat(parts, dim=1) for key, parts in pieces.items()})
    return out


def shard_index(sequence_ids: torch.Tensor, size: int, rank: int, backend: str) -> torch.Tensor:
    """The token indices this rank keeps, for a padded row [1, L] (or [L])."""
    row = sequence_ids.reshape(-1)
    length = row.numel()
    if backend == "ulysses":
        if length % size:
            raise ValueError(f"row of {length} tokens is not padded to a multiple of {size}")
        chunk = length // size
        return torch.arange(rank * chunk, (rank + 1) * chunk, device=row.device)
    parts = []
    for start, end in sample_spans(row):
        n = end - start
        if n % (2 * size):
            raise ValueError(f"packed sample of {n} tokens is not padded to a multiple of {2 * size}")
        chunk = n // (2 * size)
        for piece in (rank, 2 * size - 1 - rank):
            parts.append(torch.arange(start + piece * chunk, start + (piece + 1) * chunk, device=row.device))
    return torch.cat(parts)


def local_cu_seqlens(sequence_ids: torch.Tensor, size: int) -> tuple[torch.Tensor, int]:
    """Ring: each rank holds 1/size of every sample, so local boundaries are the global ones / size."""
    spans = sample_spans(sequence_ids.reshape(-1))
    lengths = torch.tensor([(end - start) // size for start, end in spans], dtype=torch.int32)
    cu = torch.cat([torch.zeros(1, dtype=torch.int32), lengths.cumsum(0).to(torch.int32)])
    return cu.to(sequence_ids.device), int(lengths.max())


# --------------------------------------------------------------------------------------------
# the language-model pre-hook


def _shard_language_model_inputs(module, args, kwargs):
    sp = _ACTIVE[0]
    if sp is None or sp.index is None:
        return None
    index = sp.index.to(kwargs["inputs_embeds"].device)
    kwargs["inputs_embeds"] = kwargs["inputs_embeds"].index_select(1, index)
    if kwargs.get("position_ids") is not None:
        kwargs["position_ids"] = kwargs["position_ids"].index_select(1, index)  # float32, travels with its tokens
    kwargs.pop("cache_position", None)
    if sp.backend == "ring":
        cu, longest = local_cu_seqlens(sp.sequence_ids, sp.size)
        kwargs["attention_mask"] = None
        kwargs["v2pe_ring_cu_seqlens"] = cu.to(index.device)
        kwargs["v2pe_ring_max_seqlen"] = longest
    elif sp.inner_implementation.startswith("flash"):
        kwargs["attention_mask"] = None  # padding stays inside its sample, after every real token
        kwargs.update(varlen_boundaries(sp.sequence_ids))
    else:
        dtype = kwargs["inputs_embeds"].dtype
        kwargs["attention_mask"] = packed_causal_mask(
            sp.sequence_ids, sp.attention_mask, dtype=dtype, boolean=sp.inner_implementation == "sdpa"
        )
    return args, kwargs


# --------------------------------------------------------------------------------------------
# attention functions (registered in transformers' AttentionInterface)


def _inner_attention(module, implementation: str):
    from v2pe.model.compat import attention_function

    return attention_function(implementation, module)


def _ulysses_attention(module, query, key, value, attention_mask, **kwargs):
    """q, k, v: [B, H, L/S, D] (this rank's tokens, all heads) -> output [B, L/S, H, D]."""
    from deepspeed.sequence.layer import DistributedAttention

    sp = active()
    inner = _inner_attention(module, sp.inner_implementation)
    kwargs.pop("position_ids", None)  # shard positions: RoPE is already applied; flash must use cu_seq_lens

    def local_attention(q, k, v, *_, **__):  # [B, L, H/S, D]: the whole row, this rank's heads
        out, _weights = inner(module, q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attention_mask, **kwargs)
        return out  # [B, L, H/S, D]

    attention = DistributedAttention(local_attention, sp.group, scatter_idx=2, gather_idx=1)
    output = attention(query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2), 0)
    return output, None


def _ring_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """q, k, v: [1, H, L/S, D], zigzag shards of every packed sample -> [1, L/S, H, D]."""
    from ring_flash_attn import zigzag_ring_flash_attn_varlen_func

    sp = active()
    cu, longest = kwargs["v2pe_ring_cu_seqlens"], kwargs["v2pe_ring_max_seqlen"]
    q, k, v = (t.transpose(1, 2)[0] for t in (query, key, value))  # [L/S, H, D]
    out = zigzag_ring_flash_attn_varlen_func(
        q, k, v, cu, longest, dropout_p=dropout, softmax_scale=scaling, causal=True, group=sp.group
    )
    return out.unsqueeze(0), None


# --------------------------------------------------------------------------------------------
# per-batch preparation (called by the trainer)


def prepare_batch(sp: SequenceParallel, batch: dict[str, torch.Tensor], pad_token_id: int, model=None) -> dict[str, torch.Tensor]:
    """The whole row's positions from `model` (unless the batch has `position_ids`; its `delta`
    is used up), then pad the row, compute this rank's shard index and shard the targets; the
    model inputs stay whole (the language-model hook shards embeddings and positions after the
    image merge)."""
    batch = dict(batch)
    delta = batch.pop("delta", None)
    if "position_ids" not in batch:
        if model is None:
            raise ValueError("prepare_batch needs the model to compute the row's positions (or position_ids in the batch)")
        batch["position_ids"] = model.v2pe_position_ids(batch["input_ids"], batch["attention_mask"], delta=delta, sequence_ids=batch["sequence_ids"])
    batch = pad_row(batch, sp.size, sp.backend, pad_token_id)
    index = shard_index(batch["sequence_ids"], sp.size, sp.rank, sp.backend).to(batch["input_ids"].device)
    sp.index, sp.sequence_ids, sp.attention_mask = index, batch["sequence_ids"], batch["attention_mask"]
    for key in ("shift_labels", "shift_weights"):
        batch[key] = batch[key].index_select(1, index)
    return batch


def finish_batch(sp: SequenceParallel) -> None:
    sp.index = sp.sequence_ids = sp.attention_mask = None
