"""InternVL2-2B's real dimensions (1 layer each, random bf16 weights), released layout, converted.

InternViT-300M-448px (hidden 1024, 16 heads) + InternLM2-1.8B (hidden 2048, 16 heads, 8 KV
heads, intermediate 8192, vocab 92553, rope_theta 1e6, dynamic rope scaling 2): the shapes
where a wrong wqkv split or head layout would show, which the tiny fixture cannot.
"""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForImageTextToText

from tests.released import (
    INTERNVL2_2B_ADDED_TOKENS,
    INTERNVL2_2B_LLM,
    INTERNVL2_2B_VISION,
    official_config,
    write_released_folder,
)
from v2pe.model import convert_checkpoint, load_model

IMG, END, CONTEXT = (INTERNVL2_2B_ADDED_TOKENS[t] for t in ("<img>", "</img>", "<IMG_CONTEXT>"))
NEW_TOKENS = 3


@pytest.fixture(scope="module")
def released_2b(tmp_path_factory):
    config = official_config(INTERNVL2_2B_VISION, INTERNVL2_2B_LLM, stride=64)
    folder = tmp_path_factory.mktemp("internvl2-2b-shaped")
    return write_released_folder(folder, config, None, added_tokens=INTERNVL2_2B_ADDED_TOKENS, shards=3)


def prompt() -> torch.Tensor:
    text = torch.randint(3, 90000, (12,), generator=torch.Generator().manual_seed(0)).tolist()
    return torch.tensor([text[:6] + [IMG] + [CONTEXT] * 256 + [END] + text[6:]])


def greedy_by_hand(model, ids, pixels, positions, steps):
    """Uncached greedy decoding, the k-th new token at last prompt position + k (official rule)."""
    last = positions[:, -1:]
    for k in range(1, steps + 1):
        with torch.no_grad():
            logits = model(input_ids=ids, pixel_values=pixels, position_ids=positions, logits_to_keep=1).logits
        ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
        positions = torch.cat([positions, last + k], dim=1)
    return ids


def test_internvl2_2b_shapes_convert_and_generate_like_the_uncached_loop(released_2b, tmp_path):
    native = convert_checkpoint(released_2b, tmp_path / "native")
    config = json.loads((native / "config.json").read_text())
    text = config["text_config"]
    assert (text["hidden_size"], text["num_attention_heads"], text["num_key_value_heads"], text["vocab_size"]) == (2048, 16, 8, 92553)
    assert config["image_token_id"] == CONTEXT and "auto_map" not in json.dumps(config)

    model = load_model(native, dtype=torch.float32)
    plain = AutoModelForImageTextToText.from_pretrained(native, dtype=torch.float32).eval()
    ids = prompt()
    pixels = torch.randn(1, 3, 448, 448, generator=torch.Generator().manual_seed(1))
    positions = model.v2pe_position_ids(ids)
    assert positions[0, 6:9].tolist() == [6.0, 6.25, 6.5]  # <img> at 6, then the stride 64 -> delta 1/4 of the config
    with torch.no_grad():
        ours = model(input_ids=ids, pixel_values=pixels, logits_to_keep=1).logits
        theirs = plain(input_ids=ids, pixel_values=pixels, position_ids=positions, attention_mask=torch.ones_like(ids), logits_to_keep=1).logits
    torch.testing.assert_close(ours, theirs, atol=0, rtol=0)

    generated = model.generate(input_ids=ids, pixel_values=pixels, do_sample=False, max_new_tokens=NEW_TOKENS,
                               eos_token_id=None, pad_token_id=0, min_new_tokens=NEW_TOKENS)
    assert torch.equal(generated, greedy_by_hand(model, ids, pixels, positions, NEW_TOKENS))


def test_sharded_bf16_official_folder_loads_as_its_weights(released_2b):
    model = load_model(released_2b, dtype="auto")
    assert model.dtype == torch.bfloat16
    assert model.v2pe.delta == 0.25 and model.v2pe.image_start_token_id == IMG
    assert not (released_2b / "REMOTE_CODE_RAN").exists()
