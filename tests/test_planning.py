"""`v2pe plan` and the memory planner: figures from the config alone, checked by independent sums."""

from __future__ import annotations

import json

import pytest
import torch

from tests.released import INTERNVL2_2B_LLM, INTERNVL2_2B_VISION, official_config
from v2pe.cli import main
from v2pe.errors import ConfigError
from v2pe.planning import GIB, ModelShape, parse_bytes, plan_memory
from v2pe.positions import v2pe_position_ids


@pytest.fixture
def internvl2_2b(tmp_path):
    config = official_config({**INTERNVL2_2B_VISION, "num_hidden_layers": 24}, {**INTERNVL2_2B_LLM, "num_hidden_layers": 24})
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": 4_411_000_000}, "weight_map": {}}))
    return tmp_path


def test_kv_cache_is_96_kib_per_token_for_internvl2_2b(internvl2_2b):
    plan = plan_memory(ModelShape.from_checkpoint(internvl2_2b), 1 << 20, 680, 6)
    assert plan.parts["kv cache"] == 24 * 2 * 8 * 128 * 2 * (1 << 20)  # layers x (K, V) x kv heads x head dim x bf16
    assert plan.parts["weights"] == 4_411_000_000
    assert plan.parts["image features"] == 680 * 6 * 256 * 2048 * 2


def test_the_fitting_delta_matches_the_positions_of_a_real_sequence(internvl2_2b):
    images, tiles, text = 40, 6, 3000
    plan = plan_memory(ModelShape.from_checkpoint(internvl2_2b), text + images * tiles * 256, images, tiles)
    # An independent check: lay out such a sequence and read its largest position at that delta.
    image = [295] + [297] * (tiles * 256) + [296]
    ids = torch.tensor([[7] * (text - 2 * images) + image * images])
    positions = v2pe_position_ids(ids, image_start_id=295, image_end_id=296, delta=plan.delta)
    assert plan.largest_position == int(positions.max())
    larger = v2pe_position_ids(ids, image_start_id=295, image_end_id=296, delta=plan.delta * 2)
    assert plan.delta == 1 or int(larger.max()) >= 32768  # the next larger delta would leave the window


def test_plan_command_prints_the_parts_and_fails_when_it_does_not_fit(internvl2_2b, capsys):
    assert main(["plan", "--model", str(internvl2_2b), "--tokens", "262144", "--images", "160", "--tiles-per-image", "6",
                 "--device-memory", "141GiB"]) == 0
    out = capsys.readouterr().out
    assert "kv cache" in out and "24.00 GiB" in out and "fits" in out
    assert main(["plan", "--model", str(internvl2_2b), "--tokens", "262144", "--images", "160", "--device-memory", "16GiB"]) == 1
    assert "does NOT fit" in capsys.readouterr().out


def test_visual_tokens_beyond_the_prompt_are_refused(internvl2_2b):
    with pytest.raises(ConfigError, match="more than --tokens"):
        plan_memory(ModelShape.from_checkpoint(internvl2_2b), 1000, 2, 6)


@pytest.mark.parametrize("text, value", [("141GiB", 141 * GIB), ("80GB", 80 * 10**9), ("1.5 TiB", int(1.5 * 1024**4)), ("1024", 1024)])
def test_parse_bytes(text, value):
    assert parse_bytes(text) == value


def test_chat_refuses_a_prompt_that_cannot_fit_before_any_compute(monkeypatch):
    from v2pe.inference import Chat
    from v2pe.model.tiny import tiny_model
    from v2pe.processing import Processor
    from v2pe.processing.tokenizer import byte_tokenizer

    model = tiny_model(seed=0)
    monkeypatch.setattr("v2pe.planning.device_free_bytes", lambda device: 1000)  # as if a nearly full GPU
    monkeypatch.setattr(model, "generate", lambda *a, **k: pytest.fail("generate must not run"))
    chat = Chat(model, Processor(byte_tokenizer(), tokens_per_tile=4, tile_size=56))
    with pytest.raises(ConfigError, match="GiB free"):
        chat.ask("hello there", history=[])
