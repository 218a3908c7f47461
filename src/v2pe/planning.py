"""Memory planning for long prompts: what a run needs before any weight is loaded.

From a checkpoint's config.json (official `internvl_chat` or native `internvl`) and the
prompt's size, `plan_memory` gives the delta that fits the trained window, the KV cache, the
weights, the image features held during prefill, the peak activation of one prefill chunk and of
one vision batch, and whether the sum fits a device. The figures are closed forms of the tensor
shapes (the KV cache is exact; activations are the largest live tensors of one layer, an
estimate that leaves allocator slack aside), so a run that cannot fit fails before compute.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from v2pe.errors import ConfigError
from v2pe.positions import DEFAULT_DELTA_CHOICES, max_position

GIB = 1024**3
_DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


@dataclass(frozen=True)
class ModelShape:
    """The dimensions a memory plan needs, read from either config layout."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    window: int
    vision_layers: int
    vision_hidden: int
    vision_intermediate: int
    vision_heads: int
    patches_per_tile: int
    tokens_per_tile: int
    dtype_bytes: int
    weight_bytes: int

    @classmethod
    def from_model(cls, model) -> ModelShape:
        """The shape of a loaded native model (its weights already in memory)."""
        config = model.config.to_dict()
        config["v2pe"] = getattr(model.config, "v2pe", None)
        weights = sum(p.numel() * p.element_size() for p in model.parameters())
        return cls._from_native(config, _DTYPE_BYTES.get(str(model.dtype).replace("torch.", ""), 2), weights)

    @classmethod
    def _from_native(cls, config: dict, dtype_bytes: int, weight_bytes: int) -> ModelShape:
        text, vision = config["text_config"], config["vision_config"]
        tile, patch = _first(vision.get("image_size", 448)), _first(vision.get("patch_size", 14))
        return cls._from_parts(text, vision, tile, patch, config.get("image_seq_length", 256), config.get("v2pe") or {}, dtype_bytes, weight_bytes)

    @classmethod
    def _from_parts(cls, text, vision, tile, patch, tokens, v2pe, dtype_bytes, weight_bytes) -> ModelShape:
        heads = text["num_attention_heads"]
        return cls(
            layers=text["num_hidden_layers"], hidden=text["hidden_size"], heads=heads,
            kv_heads=text.get("num_key_value_heads") or heads, head_dim=text.get("head_dim") or text["hidden_size"] // heads,
            intermediate=text["intermediate_size"], vocab=text["vocab_size"],
            window=v2pe.get("trained_window") or text.get("max_position_embeddings") or 32768,
            vision_layers=vision["num_hidden_layers"], vision_hidden=vision["hidden_size"],
            vision_intermediate=vision["intermediate_size"], vision_heads=vision.get("num_attention_heads", 16),
            patches_per_tile=(tile // patch) ** 2 + 1, tokens_per_tile=tokens, dtype_bytes=dtype_bytes, weight_bytes=weight_bytes,
        )

    @classmethod
    def from_checkpoint(cls, folder: str | Path) -> ModelShape:
        from v2pe.model.checkpoint import read_config

        folder = Path(folder)
        config = read_config(folder)
        dtype = str(config.get("torch_dtype") or config.get("dtype") or "bfloat16").replace("torch.", "")
        dtype_bytes, weights = _DTYPE_BYTES.get(dtype, 2), _weight_bytes(folder)
        if config.get("model_type") == "internvl":
            return cls._from_native(config, dtype_bytes, weights)
        if config.get("model_type") != "internvl_chat":
            raise ConfigError(f"{folder / 'config.json'}: model_type {config.get('model_type')!r} is not an InternVL checkpoint")
        from v2pe.model.official import num_image_tokens, tile_size

        vision = config["vision_config"]
        return cls._from_parts(config["llm_config"], vision, tile_size(config), vision.get("patch_size", 14), num_image_tokens(config),
                               {}, dtype_bytes, weights)


@dataclass
class MemoryPlan:
    tokens: int
    images: int
    tiles_per_image: int
    delta: float | None
    largest_position: int | None
    window: int
    parts: dict[str, int] = field(default_factory=dict)
    device_bytes: int | None = None

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    @property
    def fits(self) -> bool | None:
        return None if self.device_bytes is None else self.total <= self.device_bytes

    def lines(self) -> list[str]:
        fit = ("no delta in 1 .. 1/256 keeps it inside the window" if self.delta is None else
               f"delta {_fraction(self.delta)} (largest position {self.largest_position:,})")
        out = [f"{self.tokens:,} prompt tokens, {self.images} images x {self.tiles_per_image} tiles; "
               f"window {self.window:,} positions: {fit}"]
        out += [f"  {name:<18} {bytes_ / GIB:10.2f} GiB" for name, bytes_ in self.parts.items()]
        out.append(f"  {'total':<18} {self.total / GIB:10.2f} GiB")
        if self.device_bytes is not None:
            verdict = "fits" if self.fits else "does NOT fit"
            out.append(f"device memory {self.device_bytes / GIB:.1f} GiB: {verdict}")
        return out


def plan_memory(shape: ModelShape, tokens: int, images: int = 0, tiles_per_image: int = 1, *, max_new_tokens: int = 0,
                chunk: int = 8192, vision_batch: int = 32, attention: str = "sdpa", device_bytes: int | None = None) -> MemoryPlan:
    """The memory a prompt of `tokens` tokens (its images' visual tokens included) needs."""
    visual = images * tiles_per_image * shape.tokens_per_tile
    if visual > tokens:
        raise ConfigError(f"{images} images x {tiles_per_image} tiles x {shape.tokens_per_tile} visual tokens = {visual:,} tokens, "
                          f"more than --tokens {tokens:,} (the prompt's tokens include its visual tokens)")
    delta, largest = _fitting_delta(shape, tokens - visual, [tiles_per_image * shape.tokens_per_tile] * images, max_new_tokens)
    parts = {"weights": shape.weight_bytes, **_run_parts(shape, tokens + max_new_tokens, visual, images * tiles_per_image,
                                                          min(chunk, tokens) or 1, vision_batch, attention)}
    return MemoryPlan(tokens, images, tiles_per_image, delta, largest, shape.window, parts, device_bytes)


def _run_parts(shape: ModelShape, context: int, visual: int, tiles: int, step: int, vision_batch: int, attention: str) -> dict[str, int]:
    """What a run needs beside the weights: KV cache of `context` tokens, the image features of
    `visual` tokens, one prefill chunk of `step` tokens, one vision batch."""
    b = shape.dtype_bytes
    return {
        "kv cache": 2 * shape.layers * shape.kv_heads * shape.head_dim * context * b,
        "image features": visual * shape.hidden * b,
        "prefill chunk": step * (4 * shape.hidden + 3 * shape.intermediate) * b + _attention_bytes(attention, step, context, shape.heads)
        + shape.vocab * 4,  # one row of float32 logits: only the last position is projected
        "vision batch": _vision_batch_bytes(shape, min(vision_batch, tiles)),
    }


def device_free_bytes(device) -> int | None:
    """Free memory of a CUDA device (None elsewhere: CPU memory is not planned)."""
    import torch

    device = torch.device(device)
    if device.type != "cuda":
        return None
    return torch.cuda.mem_get_info(device)[0]


def check_prompt_fits(model, input_ids, image_token_id: int, max_new_tokens: int, chunk: int, vision_batch: int, attention: str) -> None:
    """ConfigError before any compute when a batch's KV cache, image features and peak activations
    exceed the device's free memory (the weights are loaded already)."""
    free = device_free_bytes(model.device)
    if free is None:
        return
    shape = ModelShape.from_model(model)
    rows, length = input_ids.shape
    visual = int((input_ids == image_token_id).sum())
    parts = _run_parts(shape, rows * (length + max_new_tokens), visual, visual // shape.tokens_per_tile, min(chunk, length) or 1,
                       vision_batch, attention)
    need = sum(parts.values())
    if need > free:
        raise ConfigError(
            f"{rows} x {length:,} prompt tokens need about {need / GIB:.1f} GiB beyond the weights (KV cache "
            f"{parts['kv cache'] / GIB:.1f} GiB) but {model.device} has {free / GIB:.1f} GiB free: shorten the prompt, "
            "use a smaller batch, a quantized or offloaded KV cache, or see `v2pe plan`"
        )


def parse_bytes(text: str) -> int:
    """'141GiB', '80 GB', '1.5TiB', or a number of bytes."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([KMGT]?)(i?)B?\s*", text, flags=re.IGNORECASE)
    if not match:
        raise ConfigError(f"--device-memory: expected a size such as 141GiB or 80GB, got {text!r}")
    number, prefix, binary = float(match.group(1)), match.group(2).upper(), match.group(3)
    base = 1024 if binary or not prefix else 1000
    return int(number * base ** " KMGT".index(prefix or " "))


def _fitting_delta(shape: ModelShape, text: int, visual: list[int], max_new_tokens: int) -> tuple[float | None, int | None]:
    for delta in DEFAULT_DELTA_CHOICES:
        largest = max_position(text, visual, delta) + max_new_tokens
        if largest < shape.window:
            return delta, largest
    return None, None


def _vision_batch_bytes(shape: ModelShape, tiles: int) -> int:
    """One vision-tower layer over a batch of tiles: activations plus eager fp32 attention scores."""
    patches = shape.patches_per_tile
    activations = patches * (4 * shape.vision_hidden + shape.vision_intermediate) * shape.dtype_bytes
    return tiles * (activations + shape.vision_heads * patches * patches * 4)


def _attention_bytes(attention: str, queries: int, keys: int, heads: int) -> int:
    """Attention's largest extra tensor: none for flash, a boolean mask for sdpa, fp32 scores for eager."""
    if attention.startswith("flash"):
        return 0
    if attention == "sdpa":
        return queries * keys
    return queries * keys * heads * 4


def _weight_bytes(folder: Path) -> int:
    from v2pe.model.checkpoint import INDEX_FILE, read_json

    index = folder / INDEX_FILE
    if index.is_file():
        total = read_json(index).get("metadata", {}).get("total_size")
        if total:
            return int(total)
    return sum(p.stat().st_size for p in folder.glob("*.safetensors"))


def _first(value):
    return value[0] if isinstance(value, (list, tuple)) else value


def _fraction(delta: float) -> str:
    return "1" if delta == 1 else f"1/{round(1 / delta)}" if math.isclose(1 / delta, round(1 / delta)) else f"{delta:g}"
