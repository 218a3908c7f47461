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
        "image_deltas": torch.zeros(0), "sequence_ids": sequence_ids, "pixel_values": torch.zeros(0, 3, 2, 2),
    }
    out = finish_batch(batch, "square")
    assert out["shift_labels"][0].tolist() == labels[0, 1:].tolist() + [-100]
    weights = out["shift_weights"][0]
    # sample 0 has 2 labelled tokens (1/sqrt 2 each), sample 1 has 4 (1/2 each)
    assert weights[3].item() == weights[4].item() == pytest.approx(1 / math.sqrt(2))
    assert weights[6:10].tolist() == [0.5, 0.5, 0.5, 0.5]
    assert weights[5].item() == 0  # the last token of sample 0 never predicts sample 1
    assert "labels" not in out and "position_ids" not in out  # the model computes positions from the deltas
    assert set(out) == {"input_ids", "attention_mask", "sequence_ids", "pixel_values", "delta", "shift_labels", "shift_weights", "skipped"}


def test_weighted_loss_matches_the_data_layers_packed_loss():
    torch.manual_seed(0)
    labels, sequence_ids = two_sample_row()
    logits = torch.randn(1, 11, 12)
    batch = {"labels": labels, "sequence_ids": sequence_ids, "input_ids": labels.clamp(min=0), "attention_mask": torch.ones_like(labels), "pixel_values": torch.zeros(0)}
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
    out = finish_batch({"labels": labels, "input_ids": labels.clamp(min=0)}, "token")
    loss = weighted_cross_entropy(logits, out["shift_labels"], out["shift_weights"])
    assert torch.isfinite(loss)


def test_deltas_stay_float32_when_deepspeed_casts_inputs_to_bf16():
    """Under DeepSpeed the Trainer casts every float input to the engine dtype (bf16 0.1 is
    0.10009765625): the per-image deltas and loss weights reach the model float32, and a bf16
    delta that slipped through is refused by the model. Runs without a bf16 CPU or DeepSpeed."""
    pytest.importorskip("accelerate", reason="the HF Trainer needs accelerate")
    from types import SimpleNamespace

    from v2pe.errors import PositionError
    from v2pe.model.tiny import tiny_model
    from v2pe.train.trainer import V2PETrainer

    trainer = V2PETrainer.__new__(V2PETrainer)  # only its input preparation is exercised
    trainer.args, trainer._skipped, trainer.is_deepspeed_enabled = SimpleNamespace(device=torch.device("cpu")), {}, True
    engine_dtype = SimpleNamespace(dtype=lambda: torch.bfloat16)
    trainer.accelerator = SimpleNamespace(state=SimpleNamespace(deepspeed_plugin=SimpleNamespace(hf_ds_config=engine_dtype)))
    deltas = torch.tensor([0.1, 1 / 256])
    inputs = trainer._prepare_inputs({"input_ids": torch.ones(1, 3, dtype=torch.long), "pixel_values": torch.zeros(2, 3, 4, 4),
                                      "delta": deltas, "shift_weights": torch.full((1, 3), 0.1), "skipped": {"too_long": 1}})
    assert inputs["pixel_values"].dtype == torch.bfloat16 and inputs["input_ids"].dtype == torch.long
    assert inputs["delta"].dtype == torch.float32 and torch.equal(inputs["delta"], deltas)
    assert inputs["shift_weights"].dtype == torch.float32 and trainer._skipped == {"too_long": 1}
    with pytest.raises(PositionError, match="keep them float32"):
        tiny_model().v2pe_position_ids(torch.tensor([[295, 297, 296]]), delta=deltas[:1].bfloat16())
