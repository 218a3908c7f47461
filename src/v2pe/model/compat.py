"""Every transformers detail v2pe relies on beyond the plain call surface, in one place.

The supported range is the one `.ci/run` tests (the lowest release `pyproject.toml` allows and
the newest). When a release moves one of these, this module is the one to change:

* the KV-cache argument of `forward`: `past_key_values` until 5.23, `cache` from 5.24 (the old
  name warns until 5.40). Read from `InternVLForConditionalGeneration.forward`'s signature;
* the output field holding that cache (`past_key_values` / `cache`);
* `GenerationMixin` reads `inspect.signature(self.forward)` to decide whether it may pass
  `position_ids` and `mm_encoder_outputs`: a subclass that takes `*args, **kwargs` must expose
  the parent's signature (`signature_with`), or generation silently drops those inputs;
* `GenerationMixin._update_model_kwargs_for_generation(outputs, model_kwargs, ...)` is the hook
  that grows `position_ids` after each generated token (5.24 extends them by `last + 1` in their
  own dtype; no release promises that for float positions). `GenerationHooks` takes them out of
  its hands and applies the official decode rule (`v2pe.positions.decode_position_ids`) itself;
* attention: `ALL_ATTENTION_FUNCTIONS` (the registry behind `AttentionInterface`) and the eager
  function each model module defines as `eager_attention_forward`;
* chunked prefill: `generate(prefill_chunk_size=N)` slices `position_ids` per chunk and feeds
  pre-encoded image features (`mm_encoder_outputs`, a `BaseModelOutputWithPooling` whose
  `pooler_output` is [tiles, tokens, hidden]) to the chunks holding their placeholders. Releases
  whose InternVL forward has no `mm_encoder_outputs` (5.0) cannot split images across chunks
  (`SUPPORTS_CHUNKED_PREFILL`);
* weight renaming on load: `conversion_mapping.get_model_conversion_mapping` and
  `core_model_loading.rename_source_key`, used to read a checkpoint's weights outside
  `from_pretrained` (exact resume).
"""

from __future__ import annotations

import inspect
import sys
from typing import Any, Mapping

import torch
from transformers import InternVLForConditionalGeneration
from transformers.generation import GenerationMixin

_PARENT_FORWARD = inspect.signature(InternVLForConditionalGeneration.forward)
_PARENT_GENERATE = inspect.signature(GenerationMixin.generate)
CACHE_NAMES = ("cache", "past_key_values")
CACHE_ARGUMENT = next(name for name in CACHE_NAMES if name in _PARENT_FORWARD.parameters)
SUPPORTS_CHUNKED_PREFILL = "mm_encoder_outputs" in _PARENT_FORWARD.parameters


def image_features_output(features: torch.Tensor):
    """Pre-encoded image features [tiles, tokens, hidden] in the container `mm_encoder_outputs` takes."""
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    return BaseModelOutputWithPooling(pooler_output=features)


def bind_forward_arguments(args: tuple, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments of a `forward(*args, **kwargs)` call by name, as the parent forward names them."""
    return _bind(_PARENT_FORWARD, args, kwargs)


def bind_generate_arguments(args: tuple, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments of a `generate(*args, **kwargs)` call by name (`inputs` is the first positional)."""
    return _bind(_PARENT_GENERATE, args, kwargs)


def _bind(signature: inspect.Signature, args: tuple, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    if not args:
        return dict(kwargs)
    names = [n for n, p in signature.parameters.items() if n != "self" and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(args) > len(names):
        raise TypeError(f"got {len(args)} positional arguments; the model takes at most {len(names)}")
    clash = [n for n in names[: len(args)] if n in kwargs]
    if clash:
        raise TypeError(f"got multiple values for argument {clash[0]!r}")
    return {**dict(zip(names, args)), **kwargs}


def get_cache(arguments: Mapping[str, Any]):
    """The KV cache passed under either of its names (None when absent)."""
    for name in CACHE_NAMES:
        if arguments.get(name) is not None:
            return arguments[name]
    return None


def output_cache(outputs):
    """The KV cache a forward returned, whichever field this release names it."""
    for name in CACHE_NAMES:
        value = getattr(outputs, name, None)
        if value is not None:
            return value
    return None


def cache_kwargs(cache) -> dict[str, Any]:
    """`{name: cache}` under the name this release's forward takes."""
    return {CACHE_ARGUMENT: cache}


def signature_with(parent: str, *extra: str) -> inspect.Signature:
    """`parent`'s signature ('forward' or 'generate') plus keyword-only `extra` parameters, for
    `function.__signature__` (transformers introspects it)."""
    base = {"forward": _PARENT_FORWARD, "generate": _PARENT_GENERATE}[parent]
    params = list(base.parameters.values())
    var_keyword = [p for p in params if p.kind is p.VAR_KEYWORD]
    params = [p for p in params if p.kind is not p.VAR_KEYWORD and p.name not in extra]
    params += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None) for name in extra]
    return base.replace(parameters=params + var_keyword)


class GenerationHooks:
    """Mixin for a `GenerationMixin` model whose prompt positions are V2PE floats."""

    def _update_model_kwargs_for_generation(self, outputs, model_kwargs, *args, **kwargs):
        from v2pe.positions import decode_position_ids

        positions = model_kwargs.pop("position_ids", None)
        model_kwargs = super()._update_model_kwargs_for_generation(outputs, model_kwargs, *args, **kwargs)
        if positions is not None:
            num_new_tokens = kwargs.get("num_new_tokens", args[1] if len(args) > 1 else 1)
            new = decode_position_ids(positions[:, -1], num_new_tokens).to(device=positions.device, dtype=positions.dtype)
            model_kwargs["position_ids"] = torch.cat([positions, new], dim=-1)
        return model_kwargs


def attention_function(implementation: str, module=None):
    """The attention function transformers would call for `implementation` in `module`'s model."""
    if implementation == "eager":
        return sys.modules[type(module).__module__].eager_attention_forward
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    return ALL_ATTENTION_FUNCTIONS[implementation]


def key_renamer(model):
    """A function mapping a saved weight name to (name in `model.state_dict()`, needs_conversion)."""
    from transformers.conversion_mapping import get_model_conversion_mapping
    from transformers.core_model_loading import WeightConverter, rename_source_key

    transforms = get_model_conversion_mapping(model)
    renamings = [t for t in transforms if not isinstance(t, WeightConverter)]
    converters = [t for t in transforms if isinstance(t, WeightConverter)]
    expected = model.state_dict()

    def rename(key: str) -> tuple[str, bool]:
        name, converter = rename_source_key(key, renamings, converters, model.base_model_prefix, expected)
        return name, converter is not None

    return rename
