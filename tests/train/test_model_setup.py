"""Freezing, InternViT drop path and gradient checkpointing, applied from outside the model."""

from __future__ import annotations

import copy

import pytest
import torch

from tests.train.conftest import TINY_RECIPE
from v2pe.train import load_recipe
from v2pe.train.model_setup import apply_drop_path, build_model, drop_path, enable_gradient_checkpointing, parts


def recipe(**overrides):
    return load_recipe(TINY_RECIPE, overrides)


@pytest.mark.parametrize(
    ("flags", "frozen"),
    [
        ({"model.freeze_vision": True}, {"vision"}),
        ({"model.freeze_projector": True}, {"projector"}),
        ({"model.freeze_language_model": True}, {"language_model"}),
        ({"model.freeze_vision": True, "model.freeze_language_model": True}, {"vision", "language_model"}),
    ],
)
def test_freezing_parts(flags, frozen):
    model = build_model(recipe(**flags))
    for name, modules in parts(model).items():
        grads = {p.requires_grad for m in modules for p in m.parameters()}
        assert grads == ({False} if name in frozen else {True}), name


def test_unfreeze_lm_head_of_a_frozen_language_model():
    model = build_model(recipe(**{"model.freeze_language_model": True, "model.unfreeze_lm_head": True}))
    assert all(p.requires_grad for p in model.lm_head.parameters())
    assert not any(p.requires_grad for p in model.model.language_model.parameters())


def test_drop_path_rates_rise_over_layers_and_only_in_training():
    torch.manual_seed(0)
    x = torch.ones(2000, 3)
    kept = drop_path(x, 0.25, training=True)
    assert kept[:, 0].unique().tolist() == pytest.approx([0.0, 1 / 0.75])
    assert abs((kept[:, 0] == 0).float().mean().item() - 0.25) < 0.05
    assert torch.equal(drop_path(x, 0.25, training=False), x)
    model = build_model(recipe(**{"model.tiny.vision_layers": 3}))
    handles = apply_drop_path(model, 0.2)
    assert len(handles) == 4  # layer 0 has rate 0; layers 1 and 2 get attention + MLP hooks
    vision = model.model.vision_tower.eval()
    pixels = torch.randn(4, 3, 56, 56)
    with torch.no_grad():
        hooked = vision(pixel_values=pixels).last_hidden_state
        for handle in handles:
            handle.remove()
        plain = vision(pixel_values=pixels).last_hidden_state
    torch.testing.assert_close(hooked, plain)  # eval mode: no drop


def test_drop_path_changes_training_forward():
    model = build_model(recipe(**{"model.drop_path_rate": 0.5}))
    vision = model.model.vision_tower.train()
    pixels = torch.randn(8, 3, 56, 56)
    torch.manual_seed(1)
    first = vision(pixel_values=pixels).last_hidden_state
    torch.manual_seed(2)
    second = vision(pixel_values=pixels).last_hidden_state
    assert not torch.allclose(first, second)


def test_gradient_checkpointing_gives_the_same_gradients():
    from tests.train.sp_worker import packed_batch
    from v2pe.train.loss import weighted_cross_entropy

    batch, _ = packed_batch()
    inputs = {k: v for k, v in batch.items() if k not in ("shift_labels", "shift_weights")}
    plain = build_model(recipe())
    checkpointed = copy.deepcopy(plain)
    enable_gradient_checkpointing(checkpointed)
    assert checkpointed.model.language_model.gradient_checkpointing
    assert checkpointed.model.vision_tower.encoder.gradient_checkpointing
    for model in (plain, checkpointed):
        weighted_cross_entropy(model(**inputs).logits, batch["shift_labels"], batch["shift_weights"]).backward()
    for (name, a), b in zip(plain.named_parameters(), checkpointed.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-7, msg=lambda m, name=name: f"{name}: {m}")
