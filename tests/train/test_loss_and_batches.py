"""The official loss on pre-shifted targets, and the training collator."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from v2pe.train.data import finish_batch
from v2pe.train.loss import packed_loss, weighted_cross_entropy


def two_sample_row():
    # sample 0: 6 tokens, 2 labelled; sample 1: 5 tokens, 4 labelled
    labels = torch.tensor([[-100, -100, -100, -100, 7, 8, -100, -100, 3, 4, 5]])
    labels[0, 10] = 6
    labels[0, 7] = 9
    sequence_ids = torch.tensor([[0] * 6 + [1] * 5])
    return labels, sequence_ids


def test_finish_batch_shifts_targets_and_weights_per_sample():
    labels, sequence_ids = two_sample_row()
    batch = {
        "input_ids": labels.clamp(min=0), "labels": labels, "attention_mask": torch.ones_like(labels),
        "position_ids": torch.arange(11.0)[None], "sequence_ids": sequence_ids, "pixel_values": torch.zeros(0, 3, 2, 2),
    }
    out = finish_batch(batch, "square")
    assert out["shift_labels"][0].tolist() == labels[0, 1:].tolist() + [-100]
    weights = out["shift_weights"][0]
    # sample 0 has 2 labelled tokens (1/sqrt 2 each), sample 1 has 4 (1/2 each)
    assert weights[3].item() == weights[4].item() == pytest.approx(1 / math.sqrt(2))
    assert weights[6:10].tolist() == [0.5, 0.5, 0.5, 0.5]
    assert weights[5].item() == 0  # the last token of sample 0 never predicts sample 1
    assert out["position_ids"].dtype == torch.float32 and "labels" not in out


def test_weighted_loss_matches_the_data_layers_packed_loss():
    torch.manual_seed(0)
    labels, sequence_ids = two_sample_row()
    logits = torch.randn(1, 11, 12)
    batch = {"labels": labels, "sequence_ids": sequence_ids, "input_ids": labels.clamp(min=0), "attention_mask": torch.ones_like(labels), "position_ids": torch.zeros(1, 11), "pixel_values": torch.zeros(0)}
    for reduction in ("token", "sample", "square"):
        out = finish_batch(dict(batch), reduction)
        mine = weighted_cross_entropy(logits, out["shift_labels"], out["shift_weights"])
        reference = packed_loss(logits, labels, sequence_ids, reduction)
        torch.testing.assert_close(mine, reference)
    # token reduction = plain mean CE over labelled targets
    out = finish_batch(dict(batch), "token")
    plain = F.cross_entropy(logits[0, :-1], labels[0, 1:], ignore_index=-100)
    torch.testing.assert_close(weighted_cross_entropy(logits, out["shift_labels"], out["shift_weights"]), plain)


def test_non_finite_logits_on_unscored_tokens_do_not_leak():
    labels = torch.tensor([[-100, 5, 6]])
    logits = torch.randn(1, 3, 8)
    logits[0, 2] = float("nan")  # the last position predicts nothing
    out = finish_batch({"labels": labels, "input_ids": labels.clamp(min=0), "position_ids": torch.zeros(1, 3)}, "token")
    loss = weighted_cross_entropy(logits, out["shift_labels"], out["shift_weights"])
    assert torch.isfinite(loss)
