"""Native InternVL with V2PE positions: a thin subclass, not a new model.

`InternVLForConditionalGeneration` (transformers >= 5) already evaluates RoPE at float
position ids exactly. What V2PE needs on top is small:

* positions: this is the one place that computes V2PE positions at run time (as Qwen2-VL's
  `get_rope_index` does): from the token ids, the image markers of `config.v2pe` and what V2PE
  needs beside them, a `delta` (one number, or one per image in row-major image order; the
  checkpoint's `config.v2pe.delta` when None) and, for packed rows, `sequence_ids`. The
  processor, the data layer, `Chat` and the lmms-eval adapter hand those over; explicit
  `position_ids` are used as given;
* a 2-D attention mask, always: without one (and without a cache) transformers' masking reads
  any position step other than 1 as the start of a new packed sequence and silently cuts
  attention between the visual tokens and everything before them;
* generation: the k-th generated token sits at the last prompt position + k
  (`v2pe.positions.decode_position_ids`), with float32 positions and the KV cache;
* saving under the native class name, so `AutoModelForImageTextToText` loads the folder
  without v2pe or remote code.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import InternVLForConditionalGeneration

from v2pe.errors import CheckpointError, PositionError
from v2pe.files import read_json_object, write_json_file
from v2pe.model import compat
from v2pe.model.attention import packed_causal_mask, varlen_boundaries
from v2pe.model.settings import V2PESettings
from v2pe.positions import DeltaSpec, v2pe_position_ids

NATIVE_ARCHITECTURE = "InternVLForConditionalGeneration"


class V2PEInternVLForConditionalGeneration(compat.GenerationHooks, InternVLForConditionalGeneration):
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
        """V2PE positions, float32 [B, L], for these ids with the model's image markers.

        delta: one number, "random" (with `generator`) or per-image deltas (a tensor in row-major
            image order, float32 or wider); None: the checkpoint's `config.v2pe.delta`.
        sequence_ids: for packed rows, a sample id per token; positions restart at each sample.
        """
        settings = self.v2pe
        delta = settings.delta if delta is None else delta
        if isinstance(delta, torch.Tensor) and delta.dtype in (torch.float16, torch.bfloat16):
            raise PositionError(f"per-image deltas are {delta.dtype}; keep them float32 (DeepSpeed casts float inputs: list them among the kept keys)")
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

    def forward(self, *args, sequence_ids: torch.Tensor | None = None, delta: DeltaSpec | None = None, **kwargs):
        """The native forward, with the parameters of the installed transformers release, plus
        `sequence_ids` [B, L] marking samples packed into one row (positions restart at each
        sample, attention stays inside it) and `delta` (see `v2pe_position_ids`). Without
        `position_ids`, the V2PE positions of a prompt (no cache yet) are computed here."""
        arguments = compat.bind_forward_arguments(args, kwargs)
        input_ids, cache = arguments.get("input_ids"), compat.get_cache(arguments)
        arguments["attention_mask"] = _ensure_attention_mask(arguments.get("attention_mask"), input_ids, arguments.get("inputs_embeds"), cache)
        if arguments.get("position_ids") is None and input_ids is not None and _cache_length(cache) == 0:
            arguments["position_ids"] = self.v2pe_position_ids(input_ids, arguments["attention_mask"], delta=delta, sequence_ids=sequence_ids)
        elif delta is not None:
            raise PositionError("delta places the images of input_ids in a prompt (no cache yet); with position_ids, "
                                "inputs_embeds or a cache pass no delta")
        if sequence_ids is not None:
            arguments = self._packed_attention(sequence_ids, arguments)
        arguments["position_ids"] = _checked_positions(arguments.get("position_ids"))
        return super().forward(**arguments)

    def _packed_attention(self, sequence_ids: torch.Tensor, arguments: dict) -> dict:
        """Keep packed samples apart: varlen boundaries for flash attention, else a 4-D mask."""
        implementation = self.config.text_config._attn_implementation or "eager"
        if implementation.startswith("flash"):
            return {**arguments, "attention_mask": None, **varlen_boundaries(sequence_ids)}
        mask = packed_causal_mask(sequence_ids, arguments["attention_mask"], dtype=self.dtype, boolean=implementation == "sdpa")
        return {**arguments, "attention_mask": mask}

    def encode_images(self, pixel_values: torch.Tensor, tiles_per_batch: int | None = None) -> torch.Tensor:
        """Image features [tiles, tokens, hidden] from the vision tower and projector, `tiles_per_batch`
        tiles at a time (all at once when None), so vision memory does not grow with the image count."""
        step = tiles_per_batch or max(len(pixel_values), 1)
        with torch.no_grad():
            pieces = [self.model.get_image_features(pixel_values=pixel_values[i : i + step].to(self.device)).pooler_output
                      for i in range(0, len(pixel_values), step)]
        return torch.cat(pieces) if pieces else pixel_values.new_zeros(0)

    def generate(self, *args, delta: DeltaSpec | None = None, vision_batch_size: int | None = None, **kwargs):
        """`GenerationMixin.generate` with V2PE prompt positions: computed with `delta` (default: the
        model's) when none are given; the k-th new token sits at the last prompt position + k.

        With `prefill_chunk_size=N` the prompt is prefilled N tokens at a time (transformers' own
        chunked prefill, which slices the positions computed here for the whole prompt); the images
        are then encoded before the prefill, `vision_batch_size` tiles at a time, and each chunk
        receives the features of the placeholders it holds (a chunk may cut an image anywhere)."""
        arguments = compat.bind_generate_arguments(args, kwargs)
        if arguments.get("pixel_values") is not None and (vision_batch_size or arguments.get("prefill_chunk_size")):
            if not compat.SUPPORTS_CHUNKED_PREFILL:
                raise PositionError("this transformers release cannot feed pre-encoded images to chunked prefill "
                                    "(InternVL's forward has no mm_encoder_outputs): upgrade transformers, or drop prefill_chunk_size")
            features = self.encode_images(arguments.pop("pixel_values"), vision_batch_size)
            arguments["mm_encoder_outputs"] = {"image": compat.image_features_output(features)}
        input_ids = arguments.pop("input_ids", None)
        input_ids = arguments.pop("inputs", None) if input_ids is None else input_ids
        if input_ids is not None:
            if arguments.get("attention_mask") is None:
                arguments["attention_mask"] = torch.ones_like(input_ids)
            if arguments.get("position_ids") is None:
                arguments["position_ids"] = self.v2pe_position_ids(input_ids, arguments["attention_mask"], delta=delta)
            elif delta is not None:
                raise PositionError("pass delta or position_ids, not both")
        elif delta is not None:
            raise PositionError("delta needs input_ids to place the images; pass position_ids with inputs_embeds")
        arguments["position_ids"] = _checked_positions(arguments.get("position_ids"))
        return super().generate(input_ids=input_ids, **arguments)

    def save_pretrained(self, save_directory, *args, **kwargs):
        super().save_pretrained(save_directory, *args, **kwargs)
        mark_native_architecture(Path(save_directory))


# transformers reads these signatures (e.g. whether forward takes position_ids or mm_encoder_outputs).
V2PEInternVLForConditionalGeneration.forward.__signature__ = compat.signature_with("forward", "sequence_ids", "delta")
V2PEInternVLForConditionalGeneration.generate.__signature__ = compat.signature_with("generate", "delta", "vision_batch_size")


def mark_native_architecture(folder: Path) -> None:
    """Name the native class in config.json so that AutoModel loads the folder without v2pe, and
    drop remote-code pointers (`auto_map`) an official config may have carried in."""
    path = folder / "config.json"
    config = read_json_object(path, "file", CheckpointError)
    config["architectures"] = [NATIVE_ARCHITECTURE]
    _drop_auto_map(config)
    write_json_file(path, config, sort_keys=True)


def _drop_auto_map(config: dict) -> None:
    config.pop("auto_map", None)
    for value in config.values():
        if isinstance(value, dict):
            _drop_auto_map(value)


def _cache_length(cache) -> int:
    return 0 if cache is None else int(cache.get_seq_length())


def _ensure_attention_mask(attention_mask, input_ids, inputs_embeds, cache) -> torch.Tensor:
    """Always hand transformers a 2-D mask (see the module docstring for why)."""
    if attention_mask is not None:
        return attention_mask
    reference = input_ids if input_ids is not None else inputs_embeds
    batch, length = reference.shape[:2]
    return torch.ones(batch, _cache_length(cache) + length, dtype=torch.long, device=reference.device)


def _checked_positions(position_ids: torch.Tensor | None) -> torch.Tensor | None:
    """Float positions must be float32: bf16 / fp16 round 1000.25 to 1000."""
    if position_ids is None or not position_ids.is_floating_point():
        return position_ids
    if position_ids.dtype in (torch.float16, torch.bfloat16):
        raise PositionError(f"position_ids are {position_ids.dtype}; V2PE positions must stay float32 whatever the model dtype")
    return position_ids.to(torch.float32)
