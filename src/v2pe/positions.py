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
from typing import NamedTuple

import torch

from v2pe.errors import PositionError, V2PEError

#: The official training choices: delta = stride / 256 for stride in {1, 2, 4, ..., 256}.
DEFAULT_DELTA_CHOICES: tuple[float, ...] = tuple(1.0 / 2**k for k in range(9))

#: Visual tokens per 448 px tile in InternVL2 (32 x 32 patches, pixel shuffle 0.5).
INTERNVL2_TOKENS_PER_TILE = 256

# n * delta is rounded up to the next integer for the text after an image; this slack keeps
# float noise (0.1 * 30 = 3.0000000000000004) from adding a spurious position.
_CEIL_SLACK = 1e-9

DeltaSpec = float | str | torch.Tensor | Sequence[float]


class PositionPrecisionWarning(UserWarning):
    """float32 can no longer tell consecutive positions apart (visual ones, or text ones past 2^24)."""


#: float32 represents every integer up to 2^24 exactly, and no odd one above it.
FLOAT32_EXACT_INTEGERS = 2**24


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

    Rows may hold any number of images, zero included (text-only rows get 0..n-1); an empty
    input ([0], [B, 0] or [0, L]) gives an empty float32 tensor of that shape. Ids must be
    integers: float ids near a marker id round onto it (float16 4097 is 4096) and would
    invent images, so floating and bool dtypes are a PositionError.
    """
    ids = _as_batch(input_ids, "input_ids")
    _check_integer_ids(ids)
    mask = None if attention_mask is None else _as_batch(attention_mask, "attention_mask").bool()
    if mask is not None and mask.shape != ids.shape:
        raise PositionError(f"attention_mask shape {tuple(mask.shape)} does not match input_ids shape {tuple(ids.shape)}")
    if mask is not None and bool(mask.all()):
        mask = None  # no padding: skip the masking passes
    if ids.numel() == 0:
        resolve_deltas(delta, 0, generator=generator, delta_choices=delta_choices)  # still a bad delta is an error
        return torch.zeros(ids.shape, dtype=torch.float32, device=ids.device)
    images = _find_images(ids, image_start_id, image_end_id, sequence_ids)
    deltas = resolve_deltas(delta, len(images.starts), generator=generator, delta_choices=delta_choices, device=ids.device)

    # Per-token increments, summed once: 1 per real text token, delta per visual token, and at
    # each </img> whatever brings the clock back to an integer: 1 + ceil(n * delta) - n * delta.
    step = torch.ones(ids.numel(), dtype=torch.float64, device=ids.device) if mask is None else mask.to(torch.float64).flatten()
    # delta - 1 on visual tokens, 0 elsewhere. Images never overlap, so the running sum only ever
    # holds 0 or one image's (delta - 1): exact in float32 (half the memory traffic) for dyadic deltas.
    dyadic = _all_dyadic(deltas)
    shift_dtype = torch.float32 if dyadic else torch.float64
    visual_shift = torch.zeros(ids.numel(), dtype=shift_dtype, device=ids.device)
    visual_shift.index_add_(0, images.starts + 1, (deltas - 1).to(shift_dtype))
    visual_shift.index_add_(0, images.ends, (1 - deltas).to(shift_dtype))
    visual_shift = visual_shift.cumsum(0)
    step += visual_shift
    n_visual = (images.ends - images.starts - 1).to(torch.float64)
    span = torch.ceil(n_visual * deltas - _CEIL_SLACK)
    step.index_add_(0, images.ends, span - n_visual * deltas)

    step = step.view_as(ids)
    step[:, 0] -= 1  # positions start at 0: fold the "- 1" into the first increment of each row
    positions = step.cumsum(1)
    if sequence_ids is not None:
        positions = _restart_at_samples(positions, step, sequence_ids)
    if not dyadic:
        # Non-power-of-two deltas leave float noise on the text clock; text positions are integers.
        positions = torch.where(visual_shift.view_as(ids) != 0, positions, positions.round())
    _warn_on_float32_collisions(positions, images.starts, n_visual, deltas)
    if mask is not None:
        positions.masked_fill_(~mask, padding_position)
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
        return torch.full((num_images,), parse_delta(delta, "delta", words=()), dtype=torch.float64, device=device)
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


def _check_integer_ids(ids: torch.Tensor) -> None:
    if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
        raise PositionError(f"input_ids must be an integer tensor (torch.long), got {ids.dtype}: float ids can round onto the image marker ids")


def _as_batch(tensor: torch.Tensor, name: str) -> torch.Tensor:
    tensor = torch.as_tensor(tensor)
    if tensor.dim() == 1:
        return tensor.unsqueeze(0)
    if tensor.dim() != 2:
        raise PositionError(f"{name} must be [batch, length] or [length], got shape {tuple(tensor.shape)}")
    return tensor


#: What a user may ask for at inference: the checkpoint's own delta, the largest that fits the
#: trained window, or a number (a fraction such as 1/16 is accepted).
INFERENCE_DELTA_WORDS = ("model", "auto")
#: What a training recipe may ask for: one draw per image from the delta choices, or a number.
TRAINING_DELTA_WORDS = ("random",)


def parse_delta(
    value: str | float,
    name: str = "--delta",
    words: Sequence[str] = INFERENCE_DELTA_WORDS,
    error: type[V2PEError] = PositionError,
) -> float | str:
    """The one parser and validator of a delta as a user gives it (CLI flag, recipe key, API
    argument): one of `words` or a number in (0, 1] (0.25, '0.25' or '1/4'); `error` (naming
    `name`) otherwise."""
    if isinstance(value, str) and value.strip() in words:
        return value.strip()
    try:
        if isinstance(value, bool):
            raise TypeError("a bool is not a delta")
        if isinstance(value, str) and "/" in value:
            numerator, denominator = value.split("/", 1)
            number = float(numerator) / float(denominator)
        else:
            number = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        allowed = "".join(f"{word!r}, " for word in words[:-1]) + (f"{words[-1]!r} or " if words else "")
        raise error(f"{name} must be {allowed}a number in (0, 1], got {value!r}") from None
    _check_delta_range(torch.tensor([number], dtype=torch.float64), name, error)
    return number


def _check_delta_range(values: torch.Tensor, name: str, error: type[V2PEError] = PositionError) -> None:
    bad = values[(values <= 0) | (values > 1) | values.isnan()]
    if bad.numel():
        raise error(f"{name} must lie in (0, 1] (a visual token may not advance further than a text token), got {bad[0].item()}")


class _Images(NamedTuple):
    """Flat indices (into input_ids.flatten()) of each image's `<img>` and `</img>`, in order."""

    starts: torch.Tensor
    ends: torch.Tensor


def _find_images(ids: torch.Tensor, start_id: int, end_id: int, sequence_ids: torch.Tensor | None) -> _Images:
    """Pair every `<img>` with its `</img>`; raise, naming row and token, where they do not pair."""
    flat = ids.flatten()
    starts = torch.nonzero(flat == start_id).flatten()
    ends = torch.nonzero(flat == end_id).flatten()
    boundaries = _segment_starts(ids, sequence_ids) if sequence_ids is not None else None
    if not _pairs_are_well_formed(starts, ends, ids.shape[1], boundaries):
        _raise_on_malformed_images(ids == start_id, ids == end_id, _segment_starts(ids, sequence_ids))
        raise PositionError("`<img>` / `</img>` markers do not pair up")  # unreachable: the above names the token
    return _Images(starts, ends)


def _pairs_are_well_formed(starts: torch.Tensor, ends: torch.Tensor, length: int, boundaries: torch.Tensor | None) -> bool:
    """Cheap per-image check: equal counts, start < end < next start, both in one row and sample."""
    if starts.numel() != ends.numel():
        return False
    if starts.numel() == 0:
        return True
    ordered = bool((starts < ends).all()) and bool((starts[1:] > ends[:-1]).all())
    same_row = bool((starts // length == ends // length).all())
    if boundaries is None:
        return ordered and same_row
    # A sample boundary strictly inside (start, end] splits the image.
    crossings = boundaries.flatten().long().cumsum(0)
    return ordered and same_row and bool((crossings[starts] == crossings[ends]).all())


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


def _raise_on_malformed_images(is_start: torch.Tensor, is_end: torch.Tensor, segment_start: torch.Tensor) -> None:
    """The slow path, only on bad input: track nesting depth to name the offending token."""
    depth = torch.cumsum(is_start.long() - is_end.long(), dim=1)  # 1 inside an image (and at <img>)
    depth_before = depth - is_start.long() + is_end.long()
    problems = [
        (depth < 0, "`</img>` without a matching `<img>`"),
        (depth > 1, "`<img>` inside another image (nested or unclosed `<img>`)"),
        (segment_start & (depth_before != 0), "an image crosses a packed-sample boundary"),
    ]
    for where, what in problems:
        if where.any():
            row, col = (int(v) for v in where.nonzero()[0])
            raise PositionError(f"row {row}, token {col}: {what}")
    unclosed = depth[:, -1] != 0
    if unclosed.any():
        row = int(unclosed.nonzero()[0, 0])
        raise PositionError(f"row {row}: `<img>` without a matching `</img>` (image truncated?)")


def _restart_at_samples(positions: torch.Tensor, step: torch.Tensor, sequence_ids: torch.Tensor) -> torch.Tensor:
    """Packed rows: subtract, from each sample, the increments of the samples before it."""
    boundaries = _segment_starts(positions, sequence_ids)
    boundaries[:, 0] = False
    consumed_before = positions + 1 - step  # increments strictly before each token
    offset = torch.where(boundaries, consumed_before, torch.zeros_like(positions))
    # consumed_before never decreases along a row, so the latest boundary's value is a running max.
    return positions - torch.cummax(offset, dim=1).values


def _all_dyadic(deltas: torch.Tensor) -> bool:
    """Deltas of the form k / 2^j sum exactly in float64."""
    scaled = deltas * 2**30
    return bool((scaled == scaled.round()).all())


def _warn_on_float32_collisions(positions: torch.Tensor, image_starts: torch.Tensor, n_visual: torch.Tensor, deltas: torch.Tensor) -> None:
    """Warn when float32 positions tie (RoPE sees ties): any position past 2^24 (text too), or an
    image's delta below the float32 spacing at its last position. One max over the positions."""
    largest = float(positions.max())
    if largest > FLOAT32_EXACT_INTEGERS:
        warnings.warn(
            f"positions reach {largest:.0f}, past 2^24 = {FLOAT32_EXACT_INTEGERS}, where float32 cannot represent every "
            "integer: consecutive positions collide; use a smaller delta or a shorter context "
            "(RoPE reads float32 positions)",
            PositionPrecisionWarning,
            stacklevel=3,
        )
        return
    image_starts = positions.flatten()[image_starts]
    has_tokens = n_visual > 0
    if not has_tokens.any():
        return
    last = (image_starts + n_visual * deltas)[has_tokens].to(torch.float32)
    spacing = (torch.nextafter(last, torch.tensor(math.inf)) - last).to(torch.float64)
    too_small = deltas[has_tokens] < spacing
    if too_small.any():
        worst = int(too_small.nonzero()[0, 0])
        warnings.warn(
            f"float32 cannot tell consecutive visual positions apart: delta {deltas[has_tokens][worst].item():g} "
            f"is below the float32 spacing {spacing[worst].item():g} at position {last[worst].item():.1f}; "
            "use a larger delta or shorter context (RoPE reads float32 positions)",
            PositionPrecisionWarning,
            stacklevel=3,
        )


def row_layouts(
    input_ids: torch.Tensor, *, image_start_id: int, image_end_id: int, attention_mask: torch.Tensor | None = None
) -> list[tuple[int, list[int]]]:
    """(text tokens, markers included; visual tokens of each image) per row: what `max_position`
    needs to bound a row's positions without computing them."""
    ids = _as_batch(input_ids, "input_ids")
    mask = torch.ones_like(ids, dtype=torch.bool) if attention_mask is None else _as_batch(attention_mask, "attention_mask").bool()
    images = _find_images(ids, image_start_id, image_end_id, None)
    n_visual = (images.ends - images.starts - 1).tolist()
    rows = (images.starts // ids.shape[1]).tolist()
    layouts = []
    for row, total in enumerate(mask.sum(1).tolist()):
        visual = [n for n, r in zip(n_visual, rows) if r == row]
        layouts.append((total - sum(visual), visual))
    return layouts


def choose_delta(
    input_ids: torch.Tensor,
    *,
    image_start_id: int,
    image_end_id: int,
    window: int,
    max_new_tokens: int = 0,
    choices: Sequence[float] = DEFAULT_DELTA_CHOICES,
    attention_mask: torch.Tensor | None = None,
) -> float:
    """Automatic delta: the largest choice whose largest position, plus `max_new_tokens`
    generated tokens, stays inside a window of `window` positions (0 .. window - 1), for every row.

    Raises PositionError, before any compute, when even the smallest choice does not fit.
    """
    layouts = row_layouts(input_ids, image_start_id=image_start_id, image_end_id=image_end_id, attention_mask=attention_mask)
    needed = []
    for delta in sorted(choices, reverse=True):
        largest = max((max_position(text, visual, delta) for text, visual in layouts), default=0) + max_new_tokens
        if largest < window:
            return float(delta)
        needed.append((delta, largest))
    smallest, reach = needed[-1]
    raise PositionError(
        f"the input reaches position {reach} (prompt plus {max_new_tokens} new tokens) even at the smallest "
        f"delta {smallest:g}, beyond the window of {window} positions; shorten the input or raise the window"
    )
