"""Tiny InternVL-style models made from scratch: for tests, the demo and the debug recipe.

They use the fixture's byte-level vocabulary (`<img>` = 295, `</img>` = 296,
`<IMG_CONTEXT>` = 297, 300 ids) so that `v2pe.processing`'s byte tokenizer drives them.
"""

from __future__ import annotations

import torch
from transformers import InternVLConfig, InternVLVisionConfig, LlamaConfig

from v2pe.model.modeling import V2PEInternVLForConditionalGeneration
from v2pe.model.settings import V2PESettings

TINY_VOCAB = {"<img>": 295, "</img>": 296, "<IMG_CONTEXT>": 297, "vocab_size": 300, "eos": 294, "pad": 0}


def tiny_config(
    *,
    image_size: int = 56,
    patch_size: int = 14,
    vision_hidden: int = 32,
    vision_layers: int = 1,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate: int = 128,
    rope_theta: float = 10000.0,
    max_positions: int = 32768,
    delta: float = 1.0,
    trained_window: int | None = None,
) -> InternVLConfig:
    """A native InternVL config: InternViT tower, pixel-shuffle projector, Llama decoder.

    The default 56 px tiles of 14 px patches give 16 patches, 4 visual tokens per tile.
    """
    tokens_per_tile = (image_size // patch_size) ** 2 // 4
    vision = InternVLVisionConfig(
        hidden_size=vision_hidden,
        num_hidden_layers=vision_layers,
        num_attention_heads=2,
        intermediate_size=2 * vision_hidden,
        attention_bias=True,
        image_size=image_size,
        patch_size=patch_size,
    )
    text = LlamaConfig(
        vocab_size=TINY_VOCAB["vocab_size"],
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=max_positions,
        rope_parameters={"rope_type": "default", "rope_theta": rope_theta},
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=TINY_VOCAB["eos"],
        pad_token_id=TINY_VOCAB["pad"],
    )
    settings = V2PESettings(
        delta=delta,
        tokens_per_tile=tokens_per_tile,
        image_start_token_id=TINY_VOCAB["<img>"],
        image_end_token_id=TINY_VOCAB["</img>"],
        trained_window=trained_window,
    )
    return InternVLConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=TINY_VOCAB["<IMG_CONTEXT>"],
        image_seq_length=tokens_per_tile,
        tie_word_embeddings=False,
        v2pe=settings.to_dict(),
    )


def tiny_model(seed: int = 0, attn_implementation: str = "sdpa", **config_overrides) -> V2PEInternVLForConditionalGeneration:
    """A randomly initialised tiny model (float32, eval mode)."""
    torch.manual_seed(seed)
    config = tiny_config(**config_overrides)
    return V2PEInternVLForConditionalGeneration._from_config(config, attn_implementation=attn_implementation).eval()
