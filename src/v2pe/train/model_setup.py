"""The model and processor of a recipe: loading or making, freezing, drop path, gradient checkpointing.

Everything here acts on the native `V2PEInternVLForConditionalGeneration` from outside
(requires_grad flags, forward hooks), never by editing the modeling code.
"""

from __future__ import annotations

import torch

from v2pe.errors import ConfigError
from v2pe.train.config import TrainConfig


def build_model(config: TrainConfig):
    """The model, float32 on CPU (the Trainer / DeepSpeed move and cast it), in train mode."""
    model_config = config.model
    if model_config.tiny is not None:
        from v2pe.model.tiny import tiny_model

        try:
            model = tiny_model(seed=model_config.init_seed, attn_implementation=model_config.attn_implementation, **model_config.tiny)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"model.tiny: {error}") from error
    else:
        from v2pe.model import load_model

        model = load_model(model_config.path, dtype=torch.float32)
        if model_config.attn_implementation != (model.config.text_config._attn_implementation or "eager"):
            model.set_attn_implementation(model_config.attn_implementation)
    model.config.use_cache = False
    model.config.text_config.use_cache = False
    apply_freezing(model, config)
    if model_config.drop_path_rate > 0:
        apply_drop_path(model, model_config.drop_path_rate)
    if model_config.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    return model.train()


def enable_gradient_checkpointing(model) -> None:
    """Recompute every vision and decoder layer in the backward pass (non-reentrant checkpoints,
    so frozen inputs and hooks behave)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x name
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:  # pragma: no cover - older transformers
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def parts(model) -> dict[str, list[torch.nn.Module]]:
    """The trainable parts by name: vision tower, projector, language model (with lm_head)."""
    return {
        "vision": [model.model.vision_tower],
        "projector": [model.model.multi_modal_projector],
        "language_model": [model.model.language_model, model.lm_head],
    }


def apply_freezing(model, config: TrainConfig) -> None:
    model_config = config.model
    frozen = {
        "vision": model_config.freeze_vision,
        "projector": model_config.freeze_projector,
        "language_model": model_config.freeze_language_model,
    }
    for name, modules in parts(model).items():
        for module in modules:
            module.requires_grad_(not frozen[name])
    if model_config.unfreeze_lm_head:
        model.lm_head.requires_grad_(True)


def parameter_counts(model) -> dict[str, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": sum(p.numel() for p in model.parameters()), "trainable": trainable}


# --------------------------------------------------------------------------------------------
# drop path (stochastic depth) for the vision tower


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """timm's DropPath: zero a sample's residual branch with probability `rate`, scale the rest."""
    if rate == 0.0 or not training:
        return x
    keep = 1.0 - rate
    mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
    return x * mask / keep


def apply_drop_path(model, rate: float) -> list:
    """InternViT's stochastic depth on the native vision layers, through forward hooks.

    InternViT drops each residual branch (attention and MLP) per sample with a rate rising
    linearly from 0 at the first layer to `rate` at the last. The native layer computes
    `h + lambda_1 * attention(...)` and `h + lambda_2 * dropout(mlp(...))`; dropping a sample
    is a per-sample scalar, so applying it to the attention / MLP outputs is the same thing.
    """
    layers = list(model.model.vision_tower.encoder.layer)
    count = len(layers)
    handles = []
    for index, layer in enumerate(layers):
        layer_rate = rate * index / (count - 1) if count > 1 else rate
        if layer_rate == 0:
            continue

        def attention_hook(module, _args, output, layer_rate=layer_rate):
            if isinstance(output, tuple):
                return (drop_path(output[0], layer_rate, module.training), *output[1:])
            return drop_path(output, layer_rate, module.training)

        def mlp_hook(module, _args, output, layer_rate=layer_rate):
            return drop_path(output, layer_rate, module.training)

        handles.append(layer.attention.register_forward_hook(attention_hook))
        handles.append(layer.mlp.register_forward_hook(mlp_hook))
    return handles


# --------------------------------------------------------------------------------------------
# tokenizer and processor


def build_processor(config: TrainConfig, model):
    """A `v2pe.processing.Processor` matching the model (tile size, visual tokens per tile)."""
    from v2pe.processing import Processor, byte_tokenizer

    data = config.data
    tokenizer_source = data.tokenizer
    if tokenizer_source is None and config.model.tiny is not None:
        tokenizer_source = "byte"
    if tokenizer_source == "byte":
        tokenizer = byte_tokenizer()
    else:
        from v2pe.errors import CheckpointError
        from v2pe.processing import load_tokenizer

        source = tokenizer_source or config.model.path
        try:
            tokenizer = load_tokenizer(source)  # official SentencePiece folders converted, no remote code
        except CheckpointError as error:
            raise ConfigError(f"data.tokenizer: cannot load a tokenizer from {source} ({error}); set data.tokenizer to a tokenizer folder") from error
    vision = model.config.vision_config
    image_size = vision.image_size[0] if isinstance(vision.image_size, (list, tuple)) else vision.image_size
    return Processor(
        tokenizer,
        template=data.template,
        tokens_per_tile=int(model.config.image_seq_length),
        min_tiles=data.min_tiles,
        max_tiles=data.max_tiles,
        use_thumbnail=data.use_thumbnail,
        max_length=data.max_seq_length,
        tile_size=int(image_size),
    )
