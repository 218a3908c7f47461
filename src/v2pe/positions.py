"""V2PE position ids: text advances by 1 per token, visual tokens by a smaller delta.

The rule (arXiv 2412.09616, and the official `get_rope_pos_id`):

* a text token (including the `<img>` and `</img>` markers) sits 1 after the previous token;
* the k-th visual token of an image (the tokens strictly between `<img>` and `</img>`)
  sits at P + k * delta, where P is the position of that image's `<img>`;
* the `</img>` after an image of n visual tokens sits at P + ceil(n * delta) + 1, so every
  text position is an integer and only visual positions are fractional.

delta = 1 gives ordinary positions 0, 1, 2, ...  The official code names the increment a
*stride* over 256 visual tokens per tile: delta = stride / tokens_per_tile.

Everything here is vectorised over the batch and the sequence (cumulative sums, no Python
loop over tokens), so the cost grows linearly with the number of tokens. Positions are
computed in float64 and returned in float32, which is what RoPE reads; keep them float32
whatever the model dtype (bf16 turns 1000.25 into 1000.0).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch

from v2pe.errors import PositionError

#: The official training choices: delta = stride / 256 for stride in {1, 2, 4, ..., 256}.
DEFAULT_DELTA_CHOICES: tuple[float, ...] = tuple(1.0 / 2**k for k in range(9))

#: Visual tokens per 448 px tile in InternVL2 (32 x 32 patches, pixel shuffle 0.5).
INTERNVL2_TOKENS_PER_TILE = 256

# n * delta is rounded up to the next integer for the text after an image; this slack keeps
# float noise (0.1 * 30 = 3.0000000000000004) from adding a spurious position.
_CEIL_SLACK = 1e-9

DeltaSpec = float | str | torch.Tensor | Sequence[float]


class PositionPrecisionWarning(UserWarning):
    """float32 can no longer tell consecutive visual positions apart."""


def delta_from_stride(stride: float, tokens_per_tile: int = INTERNVL2_TOKENS_PER_TILE) -> float:
    """The official `rope_pos_id_stride` as a per-token delta: stride / tokens_per_tile."""
    if stride <= 0:
        raise PositionError(f"rope_pos_id_stride must be > 0, got {stride}")
    return float(stride) / tokens_per_tile


def stride_from_delta(delta: float, tokens_per_tile: int = INTERNVL2_TOKENS_PER_TILE) -> float:
    """Inverse of `delta_from_stride`."""
    return float(delta) * tokens_per_tile


def sequence_ids_from_lengths(lengths: Sequence[int], device: torch.device | None = None) -> torch.Tensor:
    """Per-token sample ids [1, sum(lengths)] for samples packed into one row: 0,0,..,1,1,..."""
    lengths_t = torch.as_tensor(list(lengths), dtype=torch.long, device=device)
    if (lengths_t <= 0).any():
        raise PositionError(f"packed sample lengths must be positive, got {list(lengths)}")
    return torch.repeat_interleave(torch.arange(len(lengths_t), device=device), lengths_t).unsqueeze(0)


def v2pe_position_ids(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    *,
    image_start_id: int,
    image_end_id: int,
    delta: DeltaSpec = 1.0,
    generator: torch.Generator | None = None,
    delta_choices: Sequence[float] = DEFAULT_DELTA_CHOICES,
    sequence_ids: torch.Tensor | None = None,
    padding_position: float = 1.0,
) -> torch.Tensor:
    """V2PE position ids, float32 [B, L], for a batch of token ids [B, L] (or [L]).

    Args:
        input_ids: token ids; images are the spans `<img> ... </img>`.
        attention_mask: 1 for real tokens, 0 for padding (left or right). Padding does not
            advance the position and gets `padding_position` (1, as the official code and HF do).
        image_start_id, image_end_id: ids of `<img>` and `</img>`.
        delta: increment per visual token, in (0, 1]:
            a float (every image), "random" (one draw per image from `delta_choices`,
            reproducible with `generator`), or one value per image (tensor or sequence) in
            row-major image order (row 0's images first).
        sequence_ids: for packed rows, a sample id per token [B, L]; positions restart at 0
            wherever the id changes (see `sequence_ids_from_lengths`).

    Rows may hold any number of images, zero included (text-only rows get 0..n-1).
    """
    ids = _as_batch(input_ids, "input_ids")
    mask = torch.ones_like(ids, dtype=torch.bool) if attention_mask is None else _as_batch(attention_mask, "attention_mask").bool()
    if mask.shape != ids.shape:
        raise PositionError(f"attention_mask shape {tuple(mask.shape)} does not match input_ids shape {tuple(ids.shape)}")
    segment_start = _segment_starts(ids, sequence_ids)

    is_start, is_end = ids == image_start_id, ids == image_end_id
    visual = _visual_token_mask(is_start, is_end, segment_start)
    start_index = _index_of_latest(is_start)  # per token: index of the most recent <img>
    index = torch.arange(ids.shape[1], device=ids.device).expand_as(ids)

    # One delta per image, broadcast to that image's tokens.
    num_images = int(is_start.sum())
    image_deltas = resolve_deltas(delta, num_images, generator=generator, delta_choices=delta_choices, device=ids.device)
    image_ordinal = torch.cumsum(is_start.flatten(), 0).view_as(ids) - 1  # global, row-major
    token_delta = image_deltas[image_ordinal.clamp(min=0)] if num_images else torch.zeros(ids.shape, dtype=torch.float64, device=ids.device)

    # Integer text clock: +1 per real non-visual token, plus ceil(n * delta) at each </img>.
    visual_count = (index - start_index - 1).clamp(min=0)  # at </img>: visual tokens in that image
    image_span = torch.ceil(visual_count * token_delta - _CEIL_SLACK).to(torch.long)
    text_step = (mask & ~visual).long() + torch.where(is_end, image_span, 0)
    text_clock = _segmented_cumsum(text_step, segment_start)

    # Visual tokens: <img> position + k * delta, k = 1..n.
    k = (index - start_index).to(torch.float64)
    positions = torch.where(visual, (text_clock - 1).to(torch.float64) + k * token_delta, (text_clock - 1).to(torch.float64))
    positions = positions.masked_fill(~mask, padding_position)

    _warn_on_float32_collisions(positions, visual, token_delta)
    return positions.to(torch.float32)


def resolve_deltas(
    delta: DeltaSpec,
    num_images: int,
    *,
    generator: torch.Generator | None = None,
    delta_choices: Sequence[float] = DEFAULT_DELTA_CHOICES,
    device: torch.device | None = None,
) -> torch.Tensor:
    """One float64 delta per image from a float, "random", or a per-image sequence."""
    if isinstance(delta, str):
        if delta != "random":
            raise PositionError(f"delta must be a number, 'random' or one value per image, got {delta!r}")
        choices = torch.as_tensor(list(delta_choices), dtype=torch.float64)
        _check_delta_range(choices, "delta_choices")
        draws = torch.randint(len(choices), (num_images,), generator=generator)
        return choices[draws].to(device)
    if isinstance(delta, (int, float)):
        values = torch.full((num_images,), float(delta), dtype=torch.float64)
        _check_delta_range(torch.tensor([float(delta)]), "delta")
        return values.to(device)
    values = torch.as_tensor(delta, dtype=torch.float64).flatten()
    if values.numel() != num_images:
        raise PositionError(f"got {values.numel()} per-image deltas for {num_images} images in the batch")
    _check_delta_range(values, "delta")
    return values.to(device)


def decode_position_ids(last_positions: torch.Tensor, num_steps: int = 1, start_step: int = 1) -> torch.Tensor:
    """Positions of generated tokens: the k-th new token sits at last prompt position + k.

    This is the official decode rule (`prepare_inputs_for_generation` of the V2PE InternLM2):
    generation continues in whole steps from the last prompt position, whatever the deltas
    inside the prompt. `last_positions` is [B] (or [B, 1]); returns float32
    [B, num_steps] for k = start_step .. start_step + num_steps - 1.
    """
    last = last_positions.reshape(-1, 1).to(torch.float32)
    steps = torch.arange(start_step, start_step + num_steps, dtype=torch.float32, device=last.device)
    return last + steps


def max_position(
    num_text_tokens: int,
    visual_tokens_per_image: Sequence[int],
    delta: float,
) -> int:
    """The largest position of a sequence with this many text tokens (markers included)
    and images of these visual-token counts, at one delta; a closed form of the rule."""
    return num_text_tokens - 1 + sum(math.ceil(n * delta - _CEIL_SLACK) for n in visual_tokens_per_image)


def _as_batch(tensor: torch.Tensor, name: str) -> torch.Tensor:
    tensor = torch.as_tensor(tensor)
    if tensor.dim() == 1:
        return tensor.unsqueeze(0)
    if tensor.dim() != 2:
        raise PositionError(f"{name} must be [batch, length] or [length], got shape {tuple(tensor.shape)}")
    return tensor


def _check_delta_range(values: torch.Tensor, name: str) -> None:
    bad = values[(values <= 0) | (values > 1) | values.isnan()]
    if bad.numel():
        raise PositionError(f"{name} must lie in (0, 1] (a visual token may not advance further than a text token), got {bad[0].item()}")


def _segment_starts(ids: torch.Tensor, sequence_ids: torch.Tensor | None) -> torch.Tensor:
    """True at the first token of each row and of each packed sample."""
    starts = torch.zeros_like(ids, dtype=torch.bool)
    starts[:, 0] = True
    if sequence_ids is not None:
        seq = _as_batch(sequence_ids, "sequence_ids").to(ids.device)
        if seq.shape != ids.shape:
            raise PositionError(f"sequence_ids shape {tuple(seq.shape)} does not match input_ids shape {tuple(ids.shape)}")
        starts[:, 1:] |= seq[:, 1:] != seq[:, :-1]
    return starts


def _visual_token_mask(is_start: torch.Tensor, is_end: torch.Tensor, segment_start: torch.Tensor) -> torch.Tensor:
    """Tokens strictly inside `<img> ... </img>`; raises on unmatched or nested markers."""
    depth = torch.cumsum(is_start.long() - is_end.long(), dim=1)  # 1 inside an image (and at <img>)
    depth_before = depth - is_start.long() + is_end.long()
    problems = [
        (depth < 0, "`</img>` without a matching `<img>`"),
        (depth > 1, "`<img>` inside another image (nested or unclosed `<img>`)"),
        (segment_start & (depth_before != 0), "an image crosses a packed-sample boundary"),
    ]
    for where, what in problems:
        _raise_at_first(where, what)
    unclosed = depth[:, -1] != 0
    if unclosed.any():
        row = int(unclosed.nonzero()[0, 0])
        raise PositionError(f"row {row}: `<img>` without a matching `</img>` (image truncated?)")
    return (depth == 1) & ~is_start


def _raise_at_first(where: torch.Tensor, what: str) -> None:
    if where.any():
        row, col = (int(v) for v in where.nonzero()[0])
        raise PositionError(f"row {row}, token {col}: {what}")


def _index_of_latest(flags: torch.Tensor) -> torch.Tensor:
    """Per token, the index of the latest True at or before it in its row (-1 if none)."""
    index = torch.arange(flags.shape[1], device=flags.device).expand_as(flags)
    return torch.cummax(torch.where(flags, index, -1), dim=1).values


def _segmented_cumsum(values: torch.Tensor, segment_start: torch.Tensor) -> torch.Tensor:
    """Inclusive cumulative sum along each row that restarts at every segment start."""
    total = torch.cumsum(values, dim=1)
    before = total - values  # exclusive sum at each token
    offset_at_start = torch.where(segment_start, before, torch.zeros_like(before))
    # The exclusive sum is non-decreasing, so the latest segment start's offset is a running max.
    offset = torch.cummax(offset_at_start, dim=1).values
    return total - offset


def _warn_on_float32_collisions(positions: torch.Tensor, visual: torch.Tensor, token_delta: torch.Tensor) -> None:
    """Warn when delta is below float32 spacing at the image's positions (RoPE would see ties)."""
    if not visual.any():
        return
    vis_pos = positions[visual]
    as32 = vis_pos.to(torch.float32)
    spacing = (torch.nextafter(as32, torch.tensor(math.inf)) - as32).to(torch.float64)
    too_small = token_delta[visual] < spacing
    if too_small.any():
        worst = int(too_small.nonzero()[0, 0])
        warnings.warn(
            f"float32 cannot tell consecutive visual positions apart: delta {token_delta[visual][worst].item():g} "
            f"is below the float32 spacing {spacing[worst].item():g} at position {vis_pos[worst].item():.1f}; "
            "use a larger delta or shorter context (RoPE reads float32 positions)",
            PositionPrecisionWarning,
            stacklevel=3,
        )
