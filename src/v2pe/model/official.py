"""Official InternVL chat checkpoints (`model_type: internvl_chat`) in the native layout.

The official V2PE / InternVL2 checkpoints use remote code: InternViT (`vision_model.*`), a
pixel-shuffle MLP projector (`mlp1.*`) and an InternLM2, Llama or Qwen2 language model
(`language_model.*`). transformers >= 5 ships the same architecture as
`InternVLForConditionalGeneration`; InternLM2 is Llama once its fused `wqkv` is split per
KV group. This module maps configs and weights across; it never loads remote code.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from transformers import InternVLConfig, InternVLVisionConfig, LlamaConfig, Qwen2Config

from v2pe.errors import CheckpointError
from v2pe.model.settings import V2PESettings
from v2pe.positions import INTERNVL2_TOKENS_PER_TILE, delta_from_stride

SUPPORTED_LLM_ARCHITECTURES = ("InternLM2ForCausalLM", "LlamaForCausalLM", "Qwen2ForCausalLM")
V2PE_VERSIONS = ("default", "v2pe_fix", "v2pe_rnd")

# Fields of a native text config copied from the official llm_config when present.
_TEXT_FIELDS = (
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "hidden_act", "max_position_embeddings", "rms_norm_eps", "tie_word_embeddings",
    "pad_token_id", "bos_token_id", "eos_token_id",
)


def is_official_config(config: Mapping) -> bool:
    return config.get("model_type") == "internvl_chat"


def v2pe_settings_from_official(config: Mapping, image_start_token_id: int, image_end_token_id: int) -> V2PESettings:
    """The V2PE settings an official config carries (`rope_pos_id_version`, `rope_pos_id_stride`)."""
    version = config.get("rope_pos_id_version") or "default"
    if version not in V2PE_VERSIONS:
        raise CheckpointError(f"config.json: rope_pos_id_version {version!r} is not one of {V2PE_VERSIONS}")
    stride = config.get("rope_pos_id_stride")
    # The official inference hard-codes 256 tokens per tile when turning a stride into a delta.
    delta = delta_from_stride(stride, INTERNVL2_TOKENS_PER_TILE) if version != "default" and stride else 1.0
    return V2PESettings(
        delta=delta,
        rope_pos_id_version=version,
        rope_pos_id_stride=stride,
        tokens_per_tile=num_image_tokens(config),
        image_start_token_id=image_start_token_id,
        image_end_token_id=image_end_token_id,
    )


def tile_size(config: Mapping) -> int:
    """The tile side in pixels of an official config (`force_image_size` wins over the tower's)."""
    return config.get("force_image_size") or config.get("vision_config", {}).get("image_size", 448)


def num_image_tokens(config: Mapping) -> int:
    """Visual tokens per tile: (tile / patch)^2 patches, pixel-shuffled by `downsample_ratio`."""
    patch = config.get("vision_config", {}).get("patch_size", 14)
    return int((tile_size(config) // patch) ** 2 * config.get("downsample_ratio", 0.5) ** 2)


def native_config_from_official(config: Mapping, image_token_id: int, settings: V2PESettings) -> InternVLConfig:
    """An `InternVLConfig` (InternViT + Llama/Qwen2) equivalent to an official config."""
    _require_supported_layout(config)
    text_config = _native_text_config(config["llm_config"], v2pe_rope=settings.rope_pos_id_version != "default")
    return InternVLConfig(
        vision_config=_native_vision_config(config),
        text_config=text_config,
        image_token_id=image_token_id,
        image_seq_length=settings.tokens_per_tile,
        downsample_ratio=config.get("downsample_ratio", 0.5),
        projector_hidden_act="gelu",
        vision_feature_layer=config.get("select_layer", -1),
        vision_feature_select_strategy="default",
        tie_word_embeddings=text_config.tie_word_embeddings,
        v2pe=settings.to_dict(),
    )


def _require_supported_layout(config: Mapping) -> None:
    for key in ("vision_config", "llm_config"):
        if key not in config:
            raise CheckpointError(f"config.json: missing key {key!r} of an internvl_chat config")
    arch = (config["llm_config"].get("architectures") or ["?"])[0]
    if arch not in SUPPORTED_LLM_ARCHITECTURES:
        raise CheckpointError(f"config.json: llm_config.architectures {arch!r} is not supported (supported: {SUPPORTED_LLM_ARCHITECTURES})")
    if config.get("ps_version", "v1") != "v2":
        # v1 transposes the pixel-shuffled grid; the native projector implements v2 only.
        raise CheckpointError(f"config.json: ps_version {config.get('ps_version')!r} is not supported; only 'v2' matches native InternVL")
    if config.get("use_backbone_lora") or config.get("use_llm_lora"):
        raise CheckpointError("config.json: LoRA adapters (use_backbone_lora / use_llm_lora) must be merged before conversion")


def _native_vision_config(config: Mapping) -> InternVLVisionConfig:
    vision = config["vision_config"]
    return InternVLVisionConfig(
        hidden_size=vision["hidden_size"],
        num_hidden_layers=vision["num_hidden_layers"],
        num_attention_heads=vision["num_attention_heads"],
        intermediate_size=vision["intermediate_size"],
        attention_bias=vision.get("qkv_bias", True),
        use_qk_norm=vision.get("qk_normalization", False),
        hidden_act=vision.get("hidden_act", "gelu"),
        norm_type=vision.get("norm_type", "rms_norm"),
        layer_norm_eps=vision.get("layer_norm_eps", 1e-6),
        image_size=tile_size(config),
        patch_size=vision.get("patch_size", 14),
        num_channels=vision.get("num_channels", 3),
        attention_dropout=vision.get("attention_dropout", 0.0),
    )


def _native_text_config(llm: Mapping, v2pe_rope: bool):
    arch = llm["architectures"][0]
    fields = {key: llm[key] for key in _TEXT_FIELDS if key in llm}
    fields["rope_parameters"] = _rope_parameters(llm, v2pe_rope)
    if arch == "Qwen2ForCausalLM":
        return Qwen2Config(**fields)
    if arch == "InternLM2ForCausalLM":
        fields["attention_bias"] = llm.get("bias", True)
    else:
        fields["attention_bias"] = llm.get("attention_bias", False)
    return LlamaConfig(**fields)


def _rope_parameters(llm: Mapping, v2pe_rope: bool) -> dict:
    """Plain RoPE at float positions under V2PE (the official V2PE rotary ignores any scaling)."""
    theta = float(llm.get("rope_theta", 10000.0))
    scaling = llm.get("rope_scaling")
    if v2pe_rope or not scaling:
        return {"rope_type": "default", "rope_theta": theta}
    kind = scaling.get("type") or scaling.get("rope_type")
    if kind not in ("linear", "dynamic"):
        raise CheckpointError(f"config.json: llm_config.rope_scaling type {kind!r} is not supported")
    return {"rope_type": kind, "factor": float(scaling["factor"]), "rope_theta": theta}


# ---------------------------------------------------------------------------------------------
# Weights


def convert_official_state_dict(
    state_dict: Mapping[str, torch.Tensor], config: Mapping
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Rename (and split) official weights into the native `InternVLForConditionalGeneration` layout.

    Returns the native state dict and, for error messages, each native key's official key.
    """
    llm = config["llm_config"]
    internlm2 = llm["architectures"][0] == "InternLM2ForCausalLM"
    out: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    for key, tensor in state_dict.items():
        if key.startswith("vision_model."):
            converted = _convert_vision_key(key, tensor)
        elif key.startswith("mlp1."):
            converted = {_rename(key, _PROJECTOR_RULES): tensor}
        elif key.startswith("language_model."):
            converted = _convert_internlm2_key(key, tensor, llm) if internlm2 else {_rename(key, _HF_LLM_RULES): tensor}
        else:
            converted = {key: tensor}  # reported as unexpected by the shape check, with its file
        out.update(converted)
        origin.update(dict.fromkeys(converted, key))
    return out, origin


def _rename(key: str, rules: list[tuple[str, str]]) -> str:
    for pattern, replacement in rules:
        key = re.sub(pattern, replacement, key)
    return key


_VISION_RULES = [
    (r"^vision_model\.", "model.vision_tower."),
    (r"embeddings\.class_embedding$", "embeddings.cls_token"),
    (r"embeddings\.position_embedding$", "embeddings.position_embeddings"),
    (r"embeddings\.patch_embedding\.", "embeddings.patch_embeddings.projection."),
    (r"encoder\.layers\.", "encoder.layer."),
    (r"\.ls1$", ".lambda_1"),
    (r"\.ls2$", ".lambda_2"),
    (r"\.norm1\.", ".layernorm_before."),
    (r"\.norm2\.", ".layernorm_after."),
    (r"\.attn\.proj\.", ".attention.projection_layer."),
    (r"\.attn\.q_norm\.", ".attention.q_norm."),
    (r"\.attn\.k_norm\.", ".attention.k_norm."),
]
_PROJECTOR_RULES = [
    (r"^mlp1\.0\.", "model.multi_modal_projector.layer_norm."),
    (r"^mlp1\.1\.", "model.multi_modal_projector.linear_1."),
    (r"^mlp1\.3\.", "model.multi_modal_projector.linear_2."),
]
_HF_LLM_RULES = [
    (r"^language_model\.model\.", "model.language_model."),
    (r"^language_model\.lm_head\.", "lm_head."),
]
_INTERNLM2_RULES = [
    (r"^language_model\.model\.tok_embeddings\.", "model.language_model.embed_tokens."),
    (r"^language_model\.model\.", "model.language_model."),
    (r"^language_model\.output\.", "lm_head."),
    (r"\.attention\.wo\.", ".self_attn.o_proj."),
    (r"\.feed_forward\.w1\.", ".mlp.gate_proj."),
    (r"\.feed_forward\.w3\.", ".mlp.up_proj."),
    (r"\.feed_forward\.w2\.", ".mlp.down_proj."),
    (r"\.attention_norm\.", ".input_layernorm."),
    (r"\.ffn_norm\.", ".post_attention_layernorm."),
]


def _convert_vision_key(key: str, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
    if ".attn.qkv." in key:
        # Fused qkv rows are [q; k; v], three equal blocks.
        base = _rename(key.replace(".attn.qkv.", ".attention.@."), _VISION_RULES)
        q, k, v = tensor.chunk(3, dim=0)
        return {base.replace("@", "q_proj"): q, base.replace("@", "k_proj"): k, base.replace("@", "v_proj"): v}
    return {_rename(key, _VISION_RULES): tensor}


def _convert_internlm2_key(key: str, tensor: torch.Tensor, llm: Mapping) -> dict[str, torch.Tensor]:
    if ".attention.wqkv." in key:
        base = _rename(key.replace(".attention.wqkv.", ".self_attn.@."), _INTERNLM2_RULES)
        q, k, v = split_internlm2_wqkv(tensor, llm)
        return {base.replace("@", "q_proj"): q, base.replace("@", "k_proj"): k, base.replace("@", "v_proj"): v}
    return {_rename(key, _INTERNLM2_RULES): tensor}


def split_internlm2_wqkv(wqkv: torch.Tensor, llm: Mapping) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split InternLM2's fused `wqkv` (weight or bias) into q, k, v.

    Rows are grouped per KV head: for each of the H_kv groups, [its H/H_kv query heads, one key
    head, one value head], each head_dim rows. Query heads come out group-major, which is the
    order Llama's `repeat_kv` pairs them with KV heads (query h uses KV head h // (H/H_kv)).
    """
    heads, kv_heads = llm["num_attention_heads"], llm.get("num_key_value_heads") or llm["num_attention_heads"]
    head_dim = llm["hidden_size"] // heads
    per_group = heads // kv_heads
    expected_rows = (heads + 2 * kv_heads) * head_dim
    if wqkv.shape[0] != expected_rows:
        raise CheckpointError(f"wqkv has {wqkv.shape[0]} rows, expected (heads + 2 * kv_heads) * head_dim = {expected_rows}")
    grouped = wqkv.reshape(kv_heads, per_group + 2, head_dim, *wqkv.shape[1:])
    rest = wqkv.shape[1:]
    q = grouped[:, :per_group].reshape(heads * head_dim, *rest)
    k = grouped[:, -2].reshape(kv_heads * head_dim, *rest)
    v = grouped[:, -1].reshape(kv_heads * head_dim, *rest)
    return q.contiguous(), k.contiguous(), v.contiguous()


