"""Chunked prefill (transformers' `prefill_chunk_size`) with pre-encoded, batched image features:
the same tokens and scores as the one-shot prefill, V2PE positions computed once for the prompt,
only the last position of each chunk projected to the vocabulary; the KV cache options."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from v2pe.inference import Chat
from v2pe.model import compat
from v2pe.model.tiny import tiny_model
from v2pe.processing import Processor
from v2pe.processing.tokenizer import byte_tokenizer

pytestmark = pytest.mark.skipif(not compat.SUPPORTS_CHUNKED_PREFILL, reason="this transformers release has no mm_encoder_outputs")
NEVER_STOP = {"eos_token_id": 299, "pad_token_id": 0}


@pytest.fixture(scope="module")
def prompt(official_logits):
    # 805 tokens: text, <img>, 3 tiles x 256 visual tokens, </img>, text.
    return official_logits["one_image_3tiles.input_ids"], official_logits["tiles_bf16"].float()[[1, 2, 3]]


def generate(model, prompt, **kwargs):
    ids, pixels = prompt
    return model.generate(input_ids=ids, pixel_values=pixels, do_sample=False, max_new_tokens=6, output_scores=True,
                          return_dict_in_generate=True, **NEVER_STOP, **kwargs)


# 100 and 333 cut the image in the middle; 805 is one chunk; 1000 is longer than the prompt.
@pytest.mark.parametrize("chunk, vision_batch", [(100, 1), (333, 2), (805, None), (1000, 3)])
def test_chunked_prefill_equals_one_shot(official_model, prompt, chunk, vision_batch):
    one_shot = generate(official_model, prompt)
    chunked = generate(official_model, prompt, prefill_chunk_size=chunk, vision_batch_size=vision_batch)
    assert torch.equal(chunked.sequences, one_shot.sequences)
    difference = max((a - b).abs().max().item() for a, b in zip(chunked.scores, one_shot.scores))
    assert difference < 1e-5


def test_chunks_get_slices_of_the_prompt_positions_and_project_one_row(official_model, prompt):
    ids, _ = prompt
    full = official_model.v2pe_position_ids(ids)
    seen, projected = [], []
    hooks = [
        official_model.model.language_model.register_forward_pre_hook(
            lambda module, args, kwargs: seen.append(kwargs["position_ids"].clone()), with_kwargs=True),
        official_model.lm_head.register_forward_pre_hook(lambda module, args: projected.append(args[0].shape[1])),
    ]
    try:
        generate(official_model, prompt, prefill_chunk_size=300)
    finally:
        for hook in hooks:
            hook.remove()
    chunks = seen[:3]
    assert [c.shape[1] for c in chunks] == [300, 300, 205]
    assert torch.equal(torch.cat(chunks, dim=1), full)
    assert [p.item() for p in seen[3:6]] == [full[0, -1].item() + k for k in (1, 2, 3)]  # the official decode rule
    assert projected == [1] * len(projected)  # chunked prefill projects only the last position of a chunk


def test_batched_vision_encoding_equals_one_batch(official_model, prompt):
    _, pixels = prompt
    torch.testing.assert_close(official_model.encode_images(pixels, 1), official_model.encode_images(pixels), atol=1e-6, rtol=0)


@pytest.fixture(scope="module")
def chat_parts():
    processor = Processor(byte_tokenizer(), tokens_per_tile=4, tile_size=56, max_tiles=6)
    return tiny_model(seed=2), processor


def test_chat_prefills_long_prompts_in_chunks_with_the_same_answers(chat_parts, tmp_path):
    from PIL import Image

    model, processor = chat_parts
    images = []
    for k, colour in enumerate(["red", "green", "blue", "white"]):
        images.append(tmp_path / f"{k}.png")
        Image.new("RGB", (112, 56), colour).save(images[-1])
    conversations = [[{"from": "human", "value": "<image> <image> Which two colours?"}],
                     [{"from": "human", "value": "<image>\n<image> And these, in a longer question?"}]]
    batch = [images[:2], images[2:]]
    one_shot = Chat(model, processor, delta=0.5, max_new_tokens=5, chunked_prefill_above=None).generate(conversations, batch)
    calls = []
    hook = model.model.language_model.register_forward_pre_hook(lambda m, a, k: calls.append(k["inputs_embeds"].shape[1]), with_kwargs=True)
    try:
        chunked_chat = Chat(model, processor, delta=0.5, max_new_tokens=5, chunked_prefill_above=10, prefill_chunk_size=7,
                            vision_batch_size=2, progress=False)
        chunked = chunked_chat.generate(conversations, batch)
    finally:
        hook.remove()
    assert [r.text for r in chunked] == [r.text for r in one_shot]
    assert calls[0] == 7 and chunked_chat.uses_chunked_prefill(11) and not chunked_chat.uses_chunked_prefill(10)


def test_static_cache_gives_the_same_tokens(official_model, prompt):
    dynamic = generate(official_model, prompt)
    static = generate(official_model, prompt, cache_implementation="static", prefill_chunk_size=300)
    assert torch.equal(static.sequences, dynamic.sequences)


@pytest.mark.skipif(importlib.util.find_spec("optimum") is None or importlib.util.find_spec("optimum.quanto") is None,
                    reason="optimum-quanto (the 'quant' extra) is not installed")
def test_quantized_cache_stays_close(official_model, prompt):
    dynamic = generate(official_model, prompt)
    config = {"backend": "quanto", "nbits": 4, "q_group_size": 16, "residual_length": 4}  # head_dim 16 in the fixture
    quantized = generate(official_model, prompt, cache_implementation="quantized", cache_config=config, prefill_chunk_size=300)
    assert quantized.sequences.shape == dynamic.sequences.shape
    difference = max((a - b).abs().max().item() for a, b in zip(quantized.scores, dynamic.scores))
    assert 0 < difference < 0.5  # 4-bit keys and values: close, not equal
