"""`v2pe convert`: official checkpoints become native ones that transformers loads by itself."""

from __future__ import annotations

import json

import torch
from transformers import AutoModelForImageTextToText

from tests.model.test_official_parity import fixture_inputs
from v2pe.cli import main
from v2pe.model import load_model
from v2pe.model.official import split_internlm2_wqkv


def test_converted_checkpoint_loads_with_automodel_and_keeps_parity(internvl2_tiny_dir, official_logits, tmp_path):
    assert main(["convert", str(internvl2_tiny_dir), str(tmp_path / "native")]) == 0
    config = json.loads((tmp_path / "native" / "config.json").read_text())
    assert config["model_type"] == "internvl" and config["architectures"] == ["InternVLForConditionalGeneration"]
    assert config["v2pe"]["delta"] == 0.25 and config["v2pe"]["rope_pos_id_stride"] == 64
    assert not list(tmp_path.glob("native/*.bin"))

    model = AutoModelForImageTextToText.from_pretrained(tmp_path / "native").eval()
    assert type(model).__name__ == "InternVLForConditionalGeneration"
    inputs = fixture_inputs(official_logits, "one_image_3tiles", "v2pe_fix_stride64")
    with torch.no_grad():
        logits = model(**inputs).logits
    assert (logits - official_logits["one_image_3tiles.v2pe_fix_stride64.logits"]).abs().max() <= 1e-4


def test_native_checkpoint_round_trips_through_load_model(internvl2_tiny_dir, official_model, official_logits, tmp_path):
    official_model.save_pretrained(tmp_path / "saved")
    saved = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert saved["architectures"] == ["InternVLForConditionalGeneration"]
    reloaded = load_model(tmp_path / "saved")
    assert reloaded.v2pe == official_model.v2pe
    inputs = fixture_inputs(official_logits, "one_image_1tile", "default")
    with torch.no_grad():
        assert torch.equal(reloaded(**inputs).logits, official_model(**inputs).logits)


def test_bfloat16_load_keeps_positions_float32(internvl2_tiny_dir, official_logits):
    model = load_model(internvl2_tiny_dir, dtype="bfloat16")
    assert model.dtype == torch.bfloat16
    inputs = fixture_inputs(official_logits, "one_image_1tile", "v2pe_fix_stride64")
    inputs["pixel_values"] = inputs["pixel_values"].bfloat16()
    with torch.no_grad():
        logits = model(**inputs).logits.float()
    # bf16 weights drift from the float32 reference but stay close.
    assert (logits - official_logits["one_image_1tile.v2pe_fix_stride64.logits"]).abs().max() < 0.5


def test_wqkv_split_matches_the_official_runtime_rearrangement():
    # The official attention computes wqkv(x) and views the output as [kv_heads, 2 + q_per_kv, head_dim].
    llm = {"num_attention_heads": 8, "num_key_value_heads": 2, "hidden_size": 32}
    heads, kv, d = 8, 2, 4
    wqkv = torch.randn((heads + 2 * kv) * d, 32)
    x = torch.randn(5, 32)
    fused = (x @ wqkv.T).view(5, kv, heads // kv + 2, d)
    official_q = fused[:, :, : heads // kv].reshape(5, heads * d)
    official_k, official_v = fused[:, :, -2].reshape(5, kv * d), fused[:, :, -1].reshape(5, kv * d)
    q, k, v = split_internlm2_wqkv(wqkv, llm)
    torch.testing.assert_close(x @ q.T, official_q)
    torch.testing.assert_close(x @ k.T, official_k)
    torch.testing.assert_close(x @ v.T, official_v)
