"""Native InternVL with V2PE positions: a thin subclass, not a new model.

`InternVLForConditionalGeneration` (transformers >= 5) already evaluates RoPE at float
position ids exactly. What V2PE needs on top is small:

* positions: when none are passed, compute V2PE positions from the token ids with the
  model's delta (`config.v2pe`);
* a 2-D attention mask, always: without one (and without a cache) transformers' masking reads
  any position step other than 1 as the start of a new packed sequence and silently cuts
  attention between the visual tokens and everything before them;
* generation: the k-th generated token sits at the last prompt position + k
  (`v2pe.positions.decode_position_ids`), with float32 positions and the KV cache;
* saving under the native class name, so `AutoModelForImageTextToText` loads the folder
  without v2pe or remote code.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import InternVLForConditionalGeneration

from v2pe.errors import PositionError
from v2pe.model.attention import packed_causal_mask, varlen_boundaries
from v2pe.model.settings import V2PESettings
from v2pe.positions import DeltaSpec, decode_position_ids, v2pe_position_ids

NATIVE_ARCHITECTURE = "InternVLForConditionalGeneration"


class V2PEInternVLForConditionalGeneration(InternVLForConditionalGeneration):
    """`InternVLForConditionalGeneration` that lays out positions with V2PE."""

    @property
    def v2pe(self) -> V2PESettings:
        return V2PESettings.from_dict(getattr(self.config, "v2pe", None))

    def v2pe_position_ids(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        delta: DeltaSpec | None = None,
        generator: torch.Generator | None = None,
        sequence_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """V2PE positions for these ids with the model's image markers; `delta` defaults to config."""
        settings = self.v2pe
        delta = settings.delta if delta is None else delta
        if settings.image_start_token_id is None or settings.image_end_token_id is None:
            raise PositionError("config.v2pe has no image_start_token_id / image_end_token_id: cannot find images")
        return v2pe_position_ids(
            input_ids,
            attention_mask,
            image_start_id=settings.image_start_token_id,
            image_end_id=settings.image_end_token_id,
            delta=delta,
            generator=generator,
            sequence_ids=sequence_ids,
        )

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values=None,
        inputs_embeds: torch.Tensor | None = None,
        sequence_ids: torch.Tensor | None = None,
        **kwargs,
    ):
        """The native forward; `sequence_ids` [B, L] marks samples packed into one row."""
        attention_mask = _ensure_attention_mask(attention_mask, input_ids, inputs_embeds, past_key_values)
        if position_ids is None and input_ids is not None and _cache_length(past_key_values) == 0:
            position_ids = self.v2pe_position_ids(input_ids, attention_mask, sequence_ids=sequence_ids)
        if sequence_ids is not None:
            attention_mask, kwargs = self._packed_attention(sequence_ids, attention_mask, kwargs)
        return super().forward(
            input_ids=input_ids,
            pixel_values=pixel_values,
            attention_mask=attention_mask,
            position_ids=_checked_positions(position_ids),
            past_key_values=past_key_values,
            inputs_embeds=inputs_embeds,
            **kwargs,
        )

    def _packed_attention(self, sequence_ids, attention_mask, kwargs):
        """Keep packed samples apart: varlen boundaries for flash attention, else a 4-D mask."""
        implementation = self.config.text_config._attn_implementation or "eager"
        if implementation.startswith("flash"):
            return None, {**kwargs, **varlen_boundaries(sequence_ids)}
        mask = packed_causal_mask(sequence_ids, attention_mask, dtype=self.dtype, boolean=implementation == "sdpa")
        return mask, kwargs

    def generate(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        delta: DeltaSpec | None = None,
        **kwargs,
    ):
        """`GenerationMixin.generate` with V2PE prompt positions (computed when not given)."""
        if input_ids is not None:
            if attention_mask is None:
                attention_mask = torch.ones_like(input_ids)
            if position_ids is None:
                position_ids = self.v2pe_position_ids(input_ids, attention_mask, delta=delta)
        elif delta is not None:
            raise PositionError("delta needs input_ids to place the images; pass position_ids with inputs_embeds")
        return super().generate(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=_checked_positions(position_ids), **kwargs
        )

    def _update_model_kwargs_for_generation(self, outputs, model_kwargs, is_encoder_decoder=False, num_new_tokens=1):
        positions = model_kwargs.pop("position_ids", None)
        model_kwargs = super()._update_model_kwargs_for_generation(
            outputs, model_kwargs, is_encoder_decoder=is_encoder_decoder, num_new_tokens=num_new_tokens
        )
        if positions is not None:
            new = decode_position_ids(positions[:, -1], num_new_tokens).to(device=positions.device, dtype=positions.dtype)
            model_kwargs["position_ids"] = torch.cat([positions, new], dim=-1)
        return model_kwargs

    def save_pretrained(self, save_directory, *args, **kwargs):
        super().save_pretrained(save_directory, *args, **kwargs)
        mark_native_architecture(Path(save_directory))


def mark_native_architecture(folder: Path) -> None:
    """Name the native class in config.json so that AutoModel loads the folder without v2pe."""
    path = folder / "config.json"
    config = json.loads(path.read_text())
    config["architectures"] = [NATIVE_ARCHITECTURE]
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _cache_length(past_key_values) -> int:
    if past_key_values is None:
        return 0
    return int(past_key_values.get_seq_length())


def _ensure_attention_mask(attention_mask, input_ids, inputs_embeds, past_key_values) -> torch.Tensor:
    """Always hand transformers a 2-D mask (see the module docstring for why)."""
    if attention_mask is not None:
        return attention_mask
    reference = input_ids if input_ids is not None else inputs_embeds
    batch, length = reference.shape[:2]
    return torch.ones(batch, _cache_length(past_key_values) + length, dtype=torch.long, device=reference.device)


def _checked_positions(position_ids: torch.Tensor | None) -> torch.Tensor | None:
    """Float positions must be float32: bf16 / fp16 round 1000.25 to 1000."""
    if position_ids is None or not position_ids.is_floating_point():
        return position_ids
    if position_ids.dtype in (torch.float16, torch.bfloat16):
        raise PositionError(f"position_ids are {position_ids.dtype}; V2PE positions must stay float32 whatever the model dtype")
    return position_ids.to(torch.float32)
