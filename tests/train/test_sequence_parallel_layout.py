"""Sequence-parallel padding and shard layouts (pure functions: no processes needed)."""

from __future__ import annotations

import pytest
import torch

from v2pe.train.sequence_parallel import local_cu_seqlens, pad_row, sample_spans, shard_index


def packed_row(lengths=(5, 7, 3)):
    sequence_ids = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))[None]
    total = sum(lengths)
    positions = torch.cat([torch.arange(n, dtype=torch.float32) * 0.25 for n in lengths])[None]  # fractional
    return {
        "input_ids": torch.arange(10, 10 + total)[None],
        "attention_mask": torch.ones(1, total, dtype=torch.long),
        "position_ids": positions,
        "sequence_ids": sequence_ids,
        "shift_labels": torch.arange(100, 100 + total)[None],
        "shift_weights": torch.full((1, total), 0.5),
        "pixel_values": torch.zeros(2, 3, 4, 4),
    }


def test_ulysses_pads_the_row_end_and_shards_contiguously():
    row = pad_row(packed_row(), size=4, backend="ulysses", pad_token_id=0)
    assert row["input_ids"].shape[1] == 16
    assert row["input_ids"][0, -1] == 0 and row["attention_mask"][0, -1] == 0
    assert row["shift_labels"][0, -1] == -100 and row["shift_weights"][0, -1] == 0
    assert row["sequence_ids"][0, -1] == 2  # the last sample's id: no fully masked query row
    assert row["position_ids"][0, -1] == torch.ceil(torch.tensor(2 * 0.25)) + 1  # integer continuation
    assert row["pixel_values"].shape == (2, 3, 4, 4)
    shards = [shard_index(row["sequence_ids"], 4, r, "ulysses") for r in range(4)]
    assert torch.equal(torch.cat(shards), torch.arange(16))  # rank order = sequence order (what all-to-all gathers)


def test_ring_pads_every_sample_and_shards_zigzag_per_sample():
    size = 2
    row = pad_row(packed_row(), size=size, backend="ring", pad_token_id=0)
    spans = sample_spans(row["sequence_ids"][0])
    assert [end - start for start, end in spans] == [8, 8, 4]  # each a multiple of 2 * size
    assert row["attention_mask"][0].tolist() == [1] * 5 + [0] * 3 + [1] * 7 + [0] + [1] * 3 + [0]
    # positions continue after each sample's last position
    assert row["position_ids"][0, 5:8].tolist() == [2.0, 3.0, 4.0]
    shards = [shard_index(row["sequence_ids"], size, r, "ring") for r in range(size)]
    # sample 0 (8 tokens, 4 chunks of 2): rank 0 keeps chunks 0 and 3, rank 1 chunks 1 and 2
    assert shards[0][:4].tolist() == [0, 1, 6, 7] and shards[1][:4].tolist() == [2, 3, 4, 5]
    assert sorted(torch.cat(shards).tolist()) == list(range(20))
    cu, longest = local_cu_seqlens(row["sequence_ids"], size)
    assert cu.tolist() == [0, 4, 8, 10] and longest == 4
    for rank in range(size):  # every rank holds exactly 1/size of every sample
        assert len(shards[rank]) == int(cu[-1])


@pytest.mark.parametrize("backend", ["ulysses", "ring"])
def test_positions_travel_with_their_tokens(backend):
    """A shard's positions are the full row's positions at the shard's token indices."""
    row = pad_row(packed_row(), size=2, backend=backend, pad_token_id=0)
    for rank in range(2):
        index = shard_index(row["sequence_ids"], 2, rank, backend)
        ids, positions = row["input_ids"][0, index], row["position_ids"][0, index]
        lookup = dict(zip(row["input_ids"][0].tolist(), row["position_ids"][0].tolist(), strict=True))
        for token, position in zip(ids.tolist(), positions.tolist(), strict=True):
            if token != 0:
                assert lookup[token] == position


def test_unpadded_rows_raise():
    with pytest.raises(ValueError, match="multiple of 2"):
        shard_index(torch.zeros(1, 5, dtype=torch.long), 2, 0, "ulysses")
    with pytest.raises(ValueError, match="multiple of 4"):
        shard_index(torch.zeros(1, 6, dtype=torch.long), 2, 0, "ring")
