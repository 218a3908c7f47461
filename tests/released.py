"""Checkpoint folders laid out exactly as the released InternVL2 / V2PE ones are downloaded.

A released folder holds `config.json` (`architectures: [InternVLChatModel]`, `auto_map` into
remote code), bf16 weights in `model-0000k-of-0000n.safetensors` shards with
`model.safetensors.index.json`, `generation_config.json`, the SentencePiece InternLM2 tokenizer
(`tokenizer.model`, `tokenizer_config.json` naming the remote `InternLM2Tokenizer`,
`special_tokens_map.json`, `added_tokens.json`) and the remote-code `.py` files. Here the `.py`
files write a marker file when imported, so a test can prove that none of them ever ran.

The weights are random, with the official key layout (fixture README, section B) and the
fixture's initialisation rule (2-D+ tensors randn / sqrt(fan_in), embeddings std 0.5, biases
0.05 randn, norms and layer scales 1 + 0.1 randn), so logits are O(1) and position-sensitive.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

REMOTE_CODE_FILES = (
    "configuration_internvl_chat.py", "modeling_internvl_chat.py", "configuration_intern_vit.py",
    "modeling_intern_vit.py", "configuration_internlm2.py", "modeling_internlm2.py",
    "tokenization_internlm2.py", "tokenization_internlm2_fast.py", "conversation.py",
)
TOKENIZER_FILES = ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json")

#: InternVL2-2B: InternViT-300M-448px + InternLM2-1.8B (the issue's "real shapes").
INTERNVL2_2B_VISION = {"hidden_size": 1024, "num_attention_heads": 16, "intermediate_size": 4096}
#: InternVL2-2B's vision token ids (the nine tokens InternVL adds after InternLM2's 92,544 pieces).
INTERNVL2_2B_ADDED_TOKENS = {t: 92544 + k for k, t in enumerate(
    ("<img>", "</img>", "<IMG_CONTEXT>", "<quad>", "</quad>", "<ref>", "</ref>", "<box>", "</box>"))}
INTERNVL2_2B_LLM = {"hidden_size": 2048, "num_attention_heads": 16, "num_key_value_heads": 8, "intermediate_size": 8192,
                    "vocab_size": 92553, "rope_theta": 1000000, "rope_scaling": {"type": "dynamic", "factor": 2.0},
                    "max_position_embeddings": 32768}


def official_config(vision: dict, llm: dict, *, stride: float | None = 64, image_size: int = 448, **top) -> dict:
    """An official `internvl_chat` config.json (the fields the released files carry)."""
    vision = {"architectures": ["InternVisionModel"], "model_type": "intern_vit_6b", "hidden_size": 32, "num_attention_heads": 2,
              "intermediate_size": 64, "num_hidden_layers": 1, "image_size": image_size, "patch_size": 14, "qkv_bias": True,
              "qk_normalization": False, "norm_type": "layer_norm", "layer_norm_eps": 1e-6, "hidden_act": "gelu",
              "use_flash_attn": True, "drop_path_rate": 0.0, "initializer_factor": 1.0, "num_channels": 3, **vision}
    llm = {"architectures": ["InternLM2ForCausalLM"], "model_type": "internlm2", "hidden_size": 64, "intermediate_size": 128,
           "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2, "hidden_act": "silu",
           "max_position_embeddings": 32768, "rms_norm_eps": 1e-5, "rope_theta": 1000000,
           "rope_scaling": {"type": "dynamic", "factor": 2.0}, "bias": False, "attn_implementation": "flash_attention_2",
           "pad_token_id": 2, "bos_token_id": 1, "eos_token_id": 2, "tie_word_embeddings": False, "vocab_size": 3016,
           "auto_map": {"AutoConfig": "configuration_internlm2.InternLM2Config", "AutoModel": "modeling_internlm2.InternLM2ForCausalLM",
                        "AutoModelForCausalLM": "modeling_internlm2.InternLM2ForCausalLM"}, **llm}
    version = "v2pe_fix" if stride else "default"
    llm["rope_pos_id_version"] = version
    config = {
        "architectures": ["InternVLChatModel"], "model_type": "internvl_chat", "template": "internlm2-chat",
        "auto_map": {"AutoConfig": "configuration_internvl_chat.InternVLChatConfig", "AutoModel": "modeling_internvl_chat.InternVLChatModel",
                     "AutoModelForCausalLM": "modeling_internvl_chat.InternVLChatModel"},
        "downsample_ratio": 0.5, "ps_version": "v2", "select_layer": -1, "force_image_size": image_size, "dynamic_image_size": True,
        "use_thumbnail": True, "min_dynamic_patch": 1, "max_dynamic_patch": 6, "pad2square": False, "torch_dtype": "bfloat16",
        "rope_pos_id_version": version, "rope_pos_id_stride": stride, "img_emb_down_sample_ratio": None, "compress_seq": False,
        "attn_type": None, "use_backbone_lora": 0, "use_llm_lora": 0, "vision_config": vision, "llm_config": llm, **top,
    }
    return config


def official_weight_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    """Every weight of an official InternViT + InternLM2 checkpoint and its shape."""
    v, l = config["vision_config"], config["llm_config"]
    h, i = v["hidden_size"], v["intermediate_size"]
    patches = (v["image_size"] // v["patch_size"]) ** 2 + 1
    shapes = {"vision_model.embeddings.class_embedding": (1, 1, h), "vision_model.embeddings.position_embedding": (1, patches, h),
              "vision_model.embeddings.patch_embedding.weight": (h, 3, v["patch_size"], v["patch_size"]),
              "vision_model.embeddings.patch_embedding.bias": (h,)}
    for n in range(v["num_hidden_layers"]):
        p = f"vision_model.encoder.layers.{n}."
        shapes.update({p + "ls1": (h,), p + "ls2": (h,), p + "attn.qkv.weight": (3 * h, h), p + "attn.qkv.bias": (3 * h,),
                       p + "attn.proj.weight": (h, h), p + "attn.proj.bias": (h,), p + "mlp.fc1.weight": (i, h), p + "mlp.fc1.bias": (i,),
                       p + "mlp.fc2.weight": (h, i), p + "mlp.fc2.bias": (h,), p + "norm1.weight": (h,), p + "norm1.bias": (h,),
                       p + "norm2.weight": (h,), p + "norm2.bias": (h,)})
    d, heads, kv, vocab = l["hidden_size"], l["num_attention_heads"], l["num_key_value_heads"], l["vocab_size"]
    head_dim, ffn = d // heads, l["intermediate_size"]
    shapes["language_model.model.tok_embeddings.weight"] = (vocab, d)
    for n in range(l["num_hidden_layers"]):
        p = f"language_model.model.layers.{n}."
        shapes.update({p + "attention.wqkv.weight": ((heads + 2 * kv) * head_dim, d), p + "attention.wo.weight": (d, d),
                       p + "feed_forward.w1.weight": (ffn, d), p + "feed_forward.w3.weight": (ffn, d),
                       p + "feed_forward.w2.weight": (d, ffn), p + "attention_norm.weight": (d,), p + "ffn_norm.weight": (d,)})
    shapes["language_model.model.norm.weight"] = (d,)
    shapes["language_model.output.weight"] = (vocab, d)
    shuffled = h * 4  # pixel shuffle 0.5 stacks 4 patches
    shapes.update({"mlp1.0.weight": (shuffled,), "mlp1.0.bias": (shuffled,), "mlp1.1.weight": (d, shuffled), "mlp1.1.bias": (d,),
                   "mlp1.3.weight": (d, d), "mlp1.3.bias": (d,)})
    return shapes


def random_official_weights(config: dict, seed: int = 0, dtype: torch.dtype = torch.bfloat16) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, shape in sorted(official_weight_shapes(config).items()):
        if len(shape) >= 2:
            fan_in = int(torch.tensor(shape[1:]).prod())
            std = 0.5 if "embedding" in name or "tok_embeddings" in name else fan_in ** -0.5
            tensor = torch.randn(shape, generator=generator) * std
        elif name.endswith(".bias"):
            tensor = torch.randn(shape, generator=generator) * 0.05
        else:
            tensor = 1 + 0.1 * torch.randn(shape, generator=generator)
        tensors[name] = tensor.to(dtype)
    return tensors


def write_sharded(tensors: dict[str, torch.Tensor], folder: Path, shards: int = 2) -> None:
    """`model-0000k-of-0000n.safetensors` + `model.safetensors.index.json`, as save_pretrained shards."""
    names = sorted(tensors)
    groups = [names[k::shards] for k in range(shards)]
    weight_map = {}
    for k, group in enumerate(groups, start=1):
        file = f"model-{k:05d}-of-{shards:05d}.safetensors"
        save_file({n: tensors[n].contiguous() for n in group}, str(folder / file), metadata={"format": "pt"})
        weight_map.update({n: file for n in group})
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))


def write_remote_code(folder: Path) -> Path:
    """The remote-code files, each of which leaves `folder/REMOTE_CODE_RAN` behind if imported."""
    marker = folder / "REMOTE_CODE_RAN"
    for name in REMOTE_CODE_FILES:
        (folder / name).write_text(f"import pathlib\npathlib.Path({str(marker)!r}).write_text({name!r})\n")
    return marker


def write_released_folder(dst: Path, config: dict, tokenizer_dir: Path | None, *, tensors: dict | None = None, seed: int = 0,
                          shards: int = 2, eos_token_ids: list[int] | None = None, added_tokens: dict | None = None) -> Path:
    """A folder as downloaded: config, sharded bf16 weights, generation config, tokenizer, remote code.

    Without `tokenizer_dir`, only `added_tokens.json` (from `added_tokens`) is written."""
    dst.mkdir(parents=True, exist_ok=True)
    (dst / "config.json").write_text(json.dumps(config, indent=2))
    write_sharded(tensors if tensors is not None else random_official_weights(config, seed), dst, shards)
    generation = {"_from_model_config": True, "transformers_version": "4.37.2"}
    if eos_token_ids is not None:
        generation["eos_token_id"] = eos_token_ids
    (dst / "generation_config.json").write_text(json.dumps(generation, indent=2))
    for name in TOKENIZER_FILES if tokenizer_dir is not None else ():
        shutil.copy2(tokenizer_dir / name, dst / name)
    if added_tokens is not None:
        (dst / "added_tokens.json").write_text(json.dumps(added_tokens, indent=2))
    write_remote_code(dst)
    return dst
