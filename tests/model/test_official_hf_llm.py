"""Official InternVL checkpoints whose language model is a transformers Llama or Qwen2."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from v2pe.model import load_model
from v2pe.model.tiny import tiny_model


def official_layout(native_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Write native weights under the official key names (InternViT fused qkv, mlp1, language_model.*)."""
    out = {}
    for key, tensor in native_state.items():
        if key.startswith("model.vision_tower."):
            name = key.replace("model.vision_tower.", "vision_model.").replace("encoder.layer.", "encoder.layers.")
            for old, new in [("cls_token", "class_embedding"), ("position_embeddings", "position_embedding"),
                             ("patch_embeddings.projection", "patch_embedding"), ("lambda_1", "ls1"), ("lambda_2", "ls2"),
                             ("layernorm_before", "norm1"), ("layernorm_after", "norm2"),
                             ("attention.projection_layer", "attn.proj")]:
                name = name.replace(old, new)
            if ".attention.q_proj." in name:
                kind = name.rsplit(".", 1)[1]
                parts = [native_state[key.replace("q_proj", p)] for p in ("q_proj", "k_proj", "v_proj")]
                out[name.replace("attention.q_proj", "attn.qkv")] = torch.cat(parts)
                assert kind in ("weight", "bias")
            elif ".attention.k_proj." in name or ".attention.v_proj." in name:
                continue
            else:
                out[name] = tensor
        elif key.startswith("model.multi_modal_projector."):
            layer = {"layer_norm": "0", "linear_1": "1", "linear_2": "3"}
            part, rest = key.removeprefix("model.multi_modal_projector.").split(".", 1)
            out[f"mlp1.{layer[part]}.{rest}"] = tensor
        elif key.startswith("model.language_model."):
            out[key.replace("model.language_model.", "language_model.model.")] = tensor
        elif key == "lm_head.weight":
            out["language_model.lm_head.weight"] = tensor
    return out


def official_config(native, architecture: str) -> dict:
    vision, text = native.config.vision_config, native.config.text_config
    return {
        "model_type": "internvl_chat", "architectures": ["InternVLChatModel"], "ps_version": "v2",
        "downsample_ratio": 0.5, "select_layer": -1, "force_image_size": vision.image_size[0],
        "rope_pos_id_version": "v2pe_fix", "rope_pos_id_stride": 128, "template": "internlm2-chat",
        "vision_config": {
            "hidden_size": vision.hidden_size, "num_hidden_layers": vision.num_hidden_layers,
            "num_attention_heads": vision.num_attention_heads, "intermediate_size": vision.intermediate_size,
            "qkv_bias": True, "qk_normalization": False, "norm_type": "layer_norm", "layer_norm_eps": 1e-6,
            "image_size": vision.image_size[0], "patch_size": vision.patch_size[0], "hidden_act": "gelu",
        },
        "llm_config": {
            "architectures": [architecture], "vocab_size": text.vocab_size, "hidden_size": text.hidden_size,
            "intermediate_size": text.intermediate_size, "num_hidden_layers": text.num_hidden_layers,
            "num_attention_heads": text.num_attention_heads, "num_key_value_heads": text.num_key_value_heads,
            "hidden_act": "silu", "max_position_embeddings": 4096, "rms_norm_eps": text.rms_norm_eps,
            "rope_theta": text.rope_parameters["rope_theta"], "tie_word_embeddings": False,
        },
    }


@pytest.mark.parametrize("architecture", ["LlamaForCausalLM"])
def test_official_llama_checkpoint_converts_exactly(tmp_path, architecture):
    native = tiny_model(seed=5)
    folder = tmp_path / "official"
    folder.mkdir()
    save_file(official_layout(native.state_dict()), folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps(official_config(native, architecture)))
    (folder / "special_tokens.json").write_text(json.dumps({"<img>": 295, "</img>": 296, "<IMG_CONTEXT>": 297}))

    loaded = load_model(folder)
    assert loaded.v2pe.delta == 0.5  # stride 128 / 256 tokens per tile
    ids = torch.tensor([[1, 40, 295, 297, 297, 297, 297, 296, 41, 42]])
    pixels = torch.randn(1, 3, 56, 56)
    positions = native.v2pe_position_ids(ids, delta=0.5)
    with torch.no_grad():
        expected = native(input_ids=ids, pixel_values=pixels, position_ids=positions).logits
        got = loaded(input_ids=ids, pixel_values=pixels, position_ids=positions).logits
    torch.testing.assert_close(got, expected)
