"""Generation under V2PE: the official decode rule, and the KV cache changes nothing."""

from __future__ import annotations

import torch

from v2pe.model.tiny import tiny_model

NEW_TOKENS = 6
STOP_NEVER = {"eos_token_id": 299, "pad_token_id": 0}  # an id the tiny model never emits first


def prompt(official_logits):
    ids = official_logits["one_image_1tile.input_ids"]
    return ids, official_logits["tiles_bf16"].float()[[0]]


def greedy_by_hand(model, ids, pixels, positions, steps):
    """Uncached greedy decoding where the k-th new token is placed at last prompt position + k."""
    last = positions[:, -1:]
    for k in range(1, steps + 1):
        with torch.no_grad():
            logits = model(input_ids=ids, pixel_values=pixels, attention_mask=torch.ones_like(ids), position_ids=positions).logits
        ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
        positions = torch.cat([positions, last + k], dim=1)
    return ids


def test_cached_generation_equals_uncached_and_follows_the_decode_rule(official_model, official_logits):
    ids, pixels = prompt(official_logits)
    positions = official_model.v2pe_position_ids(ids, delta=0.25)
    kwargs = dict(input_ids=ids, pixel_values=pixels, attention_mask=torch.ones_like(ids), position_ids=positions,
                  do_sample=False, max_new_tokens=NEW_TOKENS, output_scores=True, return_dict_in_generate=True, **STOP_NEVER)
    cached = official_model.generate(use_cache=True, **kwargs)
    uncached = official_model.generate(use_cache=False, **kwargs)
    assert torch.equal(cached.sequences, uncached.sequences)
    for a, b in zip(cached.scores, uncached.scores):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    assert torch.equal(cached.sequences, greedy_by_hand(official_model, ids, pixels, positions, NEW_TOKENS))


def test_generation_feeds_last_prompt_position_plus_k(official_model, official_logits):
    ids, pixels = prompt(official_logits)
    positions = official_model.v2pe_position_ids(ids, delta=1 / 16)
    seen = []
    hook = official_model.model.language_model.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["position_ids"].clone()), with_kwargs=True
    )
    try:
        official_model.generate(input_ids=ids, pixel_values=pixels, position_ids=positions, do_sample=False,
                                max_new_tokens=4, **STOP_NEVER)
    finally:
        hook.remove()
    last = positions[0, -1].item()
    assert torch.equal(seen[0], positions)
    assert [step.tolist() for step in seen[1:]] == [[[last + k]] for k in (1, 2, 3)]
    assert all(step.dtype == torch.float32 for step in seen)


def test_generate_computes_v2pe_positions_when_none_are_given(official_model, official_logits):
    ids, pixels = prompt(official_logits)
    explicit = official_model.generate(input_ids=ids, pixel_values=pixels, position_ids=official_model.v2pe_position_ids(ids),
                                       do_sample=False, max_new_tokens=NEW_TOKENS, **STOP_NEVER)
    implicit = official_model.generate(input_ids=ids, pixel_values=pixels, do_sample=False, max_new_tokens=NEW_TOKENS, **STOP_NEVER)
    assert torch.equal(explicit, implicit)


def test_left_padded_batch_generates_like_single_prompts():
    model = tiny_model(seed=1)
    rows = [[1, 40, 41, 295, 297, 297, 297, 297, 296, 42], [1, 295, 297, 297, 297, 297, 296, 43, 44, 45, 46, 47]]
    pixels = torch.randn(2, 3, 56, 56, generator=torch.Generator().manual_seed(0))
    width = max(map(len, rows))
    batch = torch.tensor([[0] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    settings = dict(do_sample=False, max_new_tokens=5, delta=0.5, **STOP_NEVER)
    together = model.generate(input_ids=batch, attention_mask=mask, pixel_values=pixels, **settings)
    for row, r in enumerate(rows):
        alone = model.generate(input_ids=torch.tensor([r]), pixel_values=pixels[row : row + 1], **settings)
        assert together[row, width:].tolist() == alone[0, len(r):].tolist()


def test_forward_takes_the_installed_release_parameters(official_model, official_logits):
    import inspect

    from v2pe.model import compat

    ids, pixels = prompt(official_logits)
    parameters = inspect.signature(official_model.forward).parameters
    assert {"position_ids", compat.CACHE_ARGUMENT, "logits_to_keep", "sequence_ids"} <= set(parameters)
    with torch.no_grad():
        positional = official_model(ids, pixels).logits
        named = official_model(input_ids=ids, pixel_values=pixels).logits
    assert torch.equal(positional, named)
