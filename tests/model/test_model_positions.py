"""The model is the one place that computes V2PE positions at run time: forward and generate
take a delta (one number or one per image) and sequence_ids, or explicit position_ids."""

from __future__ import annotations

import pytest
import torch

from v2pe.errors import PositionError
from v2pe.model.tiny import TINY_VOCAB, tiny_model

S, E, C = TINY_VOCAB["<img>"], TINY_VOCAB["</img>"], TINY_VOCAB["<IMG_CONTEXT>"]


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=3).eval()


def two_images(model):
    tokens = model.config.image_seq_length
    ids = torch.tensor([[10, 11, S, *[C] * tokens, E, 12, S, *[C] * tokens, E, 13, 14]])
    pixels = torch.randn(2, 3, model.config.vision_config.image_size[0], model.config.vision_config.image_size[1], generator=torch.Generator().manual_seed(0))
    return ids, pixels


def positions_seen(model, **inputs) -> tuple[torch.Tensor, torch.Tensor]:
    seen = []
    hook = model.model.language_model.register_forward_pre_hook(lambda m, a, k: seen.append(k["position_ids"].clone()), with_kwargs=True)
    try:
        with torch.no_grad():
            logits = model(**inputs).logits
    finally:
        hook.remove()
    return logits, seen[0]


def test_forward_computes_positions_from_per_image_deltas(model):
    ids, pixels = two_images(model)
    deltas = torch.tensor([0.5, 0.125])  # float32, row-major image order, as the data layer hands them over
    logits, seen = positions_seen(model, input_ids=ids, pixel_values=pixels, delta=deltas)
    expected = model.v2pe_position_ids(ids, delta=deltas)
    assert seen.dtype == torch.float32 and torch.equal(seen, expected)
    first = seen[0, 3 : 3 + model.config.image_seq_length]
    assert torch.equal(torch.diff(first), torch.full_like(first[1:], 0.5))
    explicit, _ = positions_seen(model, input_ids=ids, pixel_values=pixels, position_ids=expected)
    assert torch.equal(logits, explicit)  # explicit position_ids still work, and mean the same
    _, seen_one = positions_seen(model, input_ids=ids, pixel_values=pixels, delta=0.25)
    assert torch.equal(seen_one, model.v2pe_position_ids(ids, delta=torch.tensor([0.25, 0.25])))


def test_delta_with_position_ids_or_half_precision_is_refused(model):
    ids, pixels = two_images(model)
    positions = model.v2pe_position_ids(ids)
    with pytest.raises(PositionError, match="no delta"):
        model(input_ids=ids, pixel_values=pixels, position_ids=positions, delta=0.5)
    with pytest.raises(PositionError, match="not both"):
        model.generate(input_ids=ids, pixel_values=pixels, position_ids=positions, delta=0.5, max_new_tokens=1)
    with pytest.raises(PositionError, match="keep them float32"):
        model(input_ids=ids, pixel_values=pixels, delta=torch.tensor([0.5, 0.5], dtype=torch.bfloat16))


def test_generate_hands_the_delta_to_the_prompt_positions(model):
    ids, pixels = two_images(model)
    seen = []
    hook = model.model.language_model.register_forward_pre_hook(lambda m, a, k: seen.append(k["position_ids"].clone()), with_kwargs=True)
    try:
        model.generate(input_ids=ids, pixel_values=pixels, delta=torch.tensor([0.5, 0.25]), max_new_tokens=2, do_sample=False,
                       eos_token_id=None, pad_token_id=0)
    finally:
        hook.remove()
    expected = model.v2pe_position_ids(ids, delta=torch.tensor([0.5, 0.25]))
    assert torch.equal(seen[0], expected) and seen[1].tolist() == [[expected[0, -1].item() + 1]]
