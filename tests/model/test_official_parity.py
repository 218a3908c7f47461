"""The converted official checkpoint reproduces the official logits (fixture section C)."""

from __future__ import annotations

import pytest
import torch

from tests.model.conftest import FIXTURE_TILES, FIXTURE_VARIANTS
from v2pe.positions import delta_from_stride

CASES = [(name, variant) for name in FIXTURE_TILES for variant in FIXTURE_VARIANTS]


def fixture_inputs(logits, name, variant):
    ids = logits[f"{name}.input_ids"]
    return {
        "input_ids": ids,
        "pixel_values": logits["tiles_bf16"].float()[FIXTURE_TILES[name]],
        "attention_mask": torch.ones_like(ids),
        "position_ids": logits[f"{name}.{variant}.position_ids"],
    }


@pytest.mark.parametrize("name, variant", CASES)
def test_logits_match_official(official_model, official_logits, name, variant):
    with torch.no_grad():
        logits = official_model(**fixture_inputs(official_logits, name, variant)).logits
    expected = official_logits[f"{name}.{variant}.logits"]
    assert logits.shape == expected.shape
    assert (logits - expected).abs().max().item() <= 1e-4


@pytest.mark.parametrize("name, variant", CASES)
def test_our_positions_equal_the_official_ones(official_model, official_logits, name, variant):
    ids = official_logits[f"{name}.input_ids"]
    delta = 1.0 if variant == "default" else delta_from_stride(64)
    ours = official_model.v2pe_position_ids(ids, delta=delta)
    assert torch.equal(ours, official_logits[f"{name}.{variant}.position_ids"].float())


def test_forward_without_positions_uses_the_checkpoint_stride(official_model, official_logits):
    # The fixture config says v2pe_fix with stride 64: delta 1/4 is the model's default.
    assert official_model.v2pe.delta == 0.25
    inputs = fixture_inputs(official_logits, "one_image_3tiles", "v2pe_fix_stride64")
    del inputs["position_ids"], inputs["attention_mask"]
    with torch.no_grad():
        logits = official_model(**inputs).logits
    expected = official_logits["one_image_3tiles.v2pe_fix_stride64.logits"]
    assert (logits - expected).abs().max().item() <= 1e-4


def test_v2pe_settings_are_read_from_the_official_config(official_model):
    settings = official_model.v2pe
    assert (settings.rope_pos_id_version, settings.rope_pos_id_stride) == ("v2pe_fix", 64)
    assert (settings.image_start_token_id, settings.image_end_token_id, settings.tokens_per_tile) == (295, 296, 256)
    # Under V2PE the rotary is plain RoPE: the checkpoint's dynamic scaling must be dropped.
    rope = official_model.config.text_config.rope_parameters
    assert rope["rope_type"] == "default" and rope["rope_theta"] == 1e6
