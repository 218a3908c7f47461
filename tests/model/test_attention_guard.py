"""The packed-sequence trap (DESIGN.md): V2PE steps must never cut attention.

transformers reads a position step other than 1 as the start of a new packed sample when no
mask is given. These tests measure, by gradients, who each token can see.
"""

from __future__ import annotations

import pytest
import torch

from v2pe.model.tiny import tiny_model
from v2pe.positions import sequence_ids_from_lengths

IMG, END, CTX = 295, 296, 297


def sample(text_before: int, tiles: int, text_after: int) -> list[int]:
    return [40 + i for i in range(text_before)] + [IMG] + [CTX] * (4 * tiles) + [END] + [60 + i for i in range(text_after)]


def input_gradients(model, ids, pixels, query: int, **forward_kwargs) -> torch.Tensor:
    """|d logits[query] / d decoder input[j]| for every token j (image features merged in)."""
    captured = {}

    def make_leaf(module, args, kwargs):
        kwargs["inputs_embeds"] = kwargs["inputs_embeds"].detach().requires_grad_(True)
        captured["embeds"] = kwargs["inputs_embeds"]
        return args, kwargs

    handle = model.model.language_model.register_forward_pre_hook(make_leaf, with_kwargs=True)
    try:
        logits = model(input_ids=ids, pixel_values=pixels, **forward_kwargs).logits
        logits[0, query].sum().backward()
    finally:
        handle.remove()
    return captured["embeds"].grad[0].abs().sum(-1)


@pytest.fixture(params=["sdpa", "eager"])
def model(request):
    return tiny_model(seed=2, attn_implementation=request.param)


@pytest.mark.parametrize("pass_mask", [False, True])
@pytest.mark.parametrize("delta", [1.0, 0.25, 1 / 256])
def test_every_token_sees_all_earlier_tokens_of_its_sample(model, pass_mask, delta):
    ids = torch.tensor([sample(3, 2, 4)])
    pixels = torch.randn(2, 3, 56, 56)
    positions = model.v2pe_position_ids(ids, delta=delta)
    # No cache, as in training: that is when transformers guesses packing from the positions
    # (the bare native model loses 11 of these 17 gradients at delta 0.25).
    kwargs = {"position_ids": positions, "use_cache": False}
    if pass_mask:
        kwargs["attention_mask"] = torch.ones_like(ids)
    last = ids.shape[1] - 1
    grads = input_gradients(model, ids, pixels, last, **kwargs)
    assert (grads > 0).all(), f"token {last} gets no gradient from tokens {torch.nonzero(grads == 0).flatten().tolist()}"


def test_packed_samples_see_only_their_own_tokens(model):
    samples = [sample(2, 1, 3), sample(1, 2, 2), sample(4, 1, 1)]
    ids = torch.tensor([sum(samples, [])])
    sequence_ids = sequence_ids_from_lengths([len(s) for s in samples])
    pixels = torch.randn(4, 3, 56, 56)
    bounds = torch.tensor([0] + [len(s) for s in samples]).cumsum(0).tolist()
    for index in range(3):
        start, end = bounds[index], bounds[index + 1]
        grads = input_gradients(model, ids, pixels, end - 1, sequence_ids=sequence_ids, use_cache=False)
        assert (grads[start:end] > 0).all()
        assert (grads[:start] == 0).all() and (grads[end:] == 0).all()


def test_packed_forward_equals_separate_forwards(model):
    samples = [sample(2, 1, 3), sample(1, 2, 2)]
    pixels = torch.randn(3, 3, 56, 56)
    packed = torch.tensor([sum(samples, [])])
    sequence_ids = sequence_ids_from_lengths([len(s) for s in samples])
    with torch.no_grad():
        together = model(input_ids=packed, pixel_values=pixels, sequence_ids=sequence_ids).logits[0]
        first = model(input_ids=torch.tensor([samples[0]]), pixel_values=pixels[:1]).logits[0]
        second = model(input_ids=torch.tensor([samples[1]]), pixel_values=pixels[1:]).logits[0]
    torch.testing.assert_close(together, torch.cat([first, second]), atol=1e-5, rtol=1e-5)
