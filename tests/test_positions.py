"""V2PE positions: worked examples, batching, random delta, packing and errors."""

from __future__ import annotations

import math
import random
import warnings

import pytest
import torch

from v2pe.errors import PositionError
from v2pe.positions import (
    DEFAULT_DELTA_CHOICES,
    PositionPrecisionWarning,
    decode_position_ids,
    delta_from_stride,
    max_position,
    sequence_ids_from_lengths,
    v2pe_position_ids,
)

T, S, E, C = 7, 100, 101, 102  # text, <img>, </img>, <IMG_CONTEXT>


def tokens(*segments) -> list[int]:
    """("t", n) -> n text tokens, ("i", n) -> <img> + n context tokens + </img>."""
    out: list[int] = []
    for kind, n in segments:
        out += [T] * n if kind == "t" else [S] + [C] * n + [E]
    return out


def positions(ids, **kwargs):
    return v2pe_position_ids(torch.tensor(ids), image_start_id=S, image_end_id=E, **kwargs)


def loop_reference(ids: list[int], deltas: list[float]) -> list[float]:
    """A plain per-token loop of the rule, independent of the vectorised code."""
    out, last, inside, image, n_visual = [], -1, False, -1, 0
    for tok in ids:
        if tok == S:
            image += 1
            last += 1
            out.append(last)
            start, inside, n_visual = last, True, 0
        elif tok == E:
            last = start + math.ceil(n_visual * deltas[image]) + 1
            out.append(last)
            inside = False
        elif inside:
            n_visual += 1
            out.append(start + n_visual * deltas[image])
        else:
            last += 1
            out.append(last)
    return out


def test_spec_example_1_two_tiles_of_four_tokens():
    ids = tokens(("t", 3), ("i", 8), ("t", 2))
    assert positions(ids, delta=0.5)[0].tolist() == [0, 1, 2, 3, 3.5, 4, 4.5, 5, 5.5, 6, 6.5, 7, 8, 9, 10]
    assert positions(ids, delta=0.25)[0].tolist()[-3:] == [6, 7, 8]
    assert positions(ids, delta=0.75)[0].tolist() == [0, 1, 2, 3, 3.75, 4.5, 5.25, 6, 6.75, 7.5, 8.25, 9, 10, 11, 12]


def test_spec_example_2_two_images():
    ids = tokens(("t", 1), ("i", 4), ("t", 1), ("i", 8), ("t", 1))
    expected = [0, 1, 1.5, 2, 2.5, 3, 4, 5, 6, 6.5, 7, 7.5, 8, 8.5, 9, 9.5, 10, 11, 12]
    assert positions(ids, delta=0.5)[0].tolist() == expected


def test_spec_example_3_internvl2_three_tiles_stride_64():
    ids = tokens(("t", 5), ("i", 768), ("t", 2))
    pos = positions(ids, delta=delta_from_stride(64))[0]
    assert len(ids) == 777
    assert pos[5] == 5 and pos[6] == 5.25 and pos[6 + 255] == 69.0 and pos[5 + 768] == 197.0
    assert pos[-3:].tolist() == [198, 199, 200]


def test_delta_one_is_ordinary_positions():
    ids = tokens(("t", 4), ("i", 30), ("t", 3), ("i", 5))
    assert positions(ids, delta=1.0)[0].tolist() == list(range(len(ids)))


def test_fractional_image_span_rounds_up():
    # <img> at P = 1, 5 tokens at delta 0.3 end at 2.5, </img> at P + ceil(1.5) + 1 = 4.
    ids = tokens(("t", 1), ("i", 5), ("t", 1))
    assert positions(ids, delta=0.3)[0].tolist()[-2:] == [4.0, 5.0]
    # 10 * 0.1 is 1.0000000000000002 in float64; the span must stay 1: </img> = 2, text = 3.
    ids = tokens(("i", 10), ("t", 1))
    assert positions(ids, delta=0.1)[0, -1].item() == 3.0


def test_batch_rows_with_different_image_counts_and_left_padding():
    rows = [tokens(("t", 3), ("i", 4), ("t", 2), ("i", 2)), tokens(("t", 5)), tokens(("i", 6), ("t", 1))]
    width = max(map(len, rows))
    ids = torch.tensor([[0] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    deltas = [0.5, 0.25, 1.0]  # row-major image order: row0 img0, row0 img1, row2 img0
    pos = v2pe_position_ids(ids, mask, image_start_id=S, image_end_id=E, delta=deltas)
    assert pos.dtype == torch.float32 and pos.shape == ids.shape
    per_row = [deltas[:2], [], deltas[2:]]
    for row, (r, d) in enumerate(zip(rows, per_row)):
        pad = width - len(r)
        assert pos[row, :pad].tolist() == [1.0] * pad  # official padding convention
        assert pos[row, pad:].tolist() == pytest.approx(loop_reference(r, d), abs=0)


def test_right_padding_gets_position_one():
    ids = torch.tensor([tokens(("t", 2), ("i", 4), ("t", 1)) + [0, 0]])
    mask = (ids != 0).long()
    pos = v2pe_position_ids(ids, mask, image_start_id=S, image_end_id=E, delta=0.5)[0]
    assert pos[-2:].tolist() == [1.0, 1.0]
    assert pos[-3].item() == 6.0  # t t <img>=2, visual 2.5..4, </img>=5, t=6


@pytest.mark.parametrize("seed", range(5))
def test_random_batches_match_loop_reference(seed):
    rng = random.Random(seed)
    segments = []
    for _ in range(rng.randint(0, 6)):
        segments += [("t", rng.randint(0, 4)), ("i", rng.randint(1, 40))]
    segments.append(("t", rng.randint(1, 4)))
    ids = tokens(*segments)
    deltas = [rng.choice([1, 0.5, 0.3, 0.125, 1 / 256]) for _ in range(sum(k == "i" for k, _ in segments))]
    assert positions(ids, delta=deltas)[0].tolist() == pytest.approx(loop_reference(ids, deltas), abs=1e-5)


def test_random_delta_draws_per_image_and_is_reproducible():
    ids = tokens(*[("i", 256), ("t", 1)] * 40)
    first = positions(ids, delta="random", generator=torch.Generator().manual_seed(3))
    again = positions(ids, delta="random", generator=torch.Generator().manual_seed(3))
    other = positions(ids, delta="random", generator=torch.Generator().manual_seed(4))
    assert torch.equal(first, again) and not torch.equal(first, other)
    # Recover each image's delta from the step between its first two visual tokens.
    starts = [i for i, t in enumerate(ids) if t == S]
    drawn = {round((first[0, s + 2] - first[0, s + 1]).item(), 8) for s in starts}
    assert drawn <= {round(d, 8) for d in DEFAULT_DELTA_CHOICES}
    assert len(drawn) >= 4  # 40 draws from 9 choices are not all the same


def test_random_delta_respects_custom_choices():
    ids = tokens(("i", 8), ("t", 1), ("i", 8))
    pos = positions(ids, delta="random", delta_choices=[0.25], generator=torch.Generator().manual_seed(0))
    assert pos[0].tolist() == loop_reference(ids, [0.25, 0.25])


def test_packed_samples_restart_at_zero():
    a, b, c = tokens(("t", 2), ("i", 4)), tokens(("i", 8), ("t", 3)), tokens(("t", 4))
    packed = torch.tensor([a + b + c])
    seq = sequence_ids_from_lengths([len(a), len(b), len(c)])
    pos = v2pe_position_ids(packed, image_start_id=S, image_end_id=E, delta=[0.5, 0.25], sequence_ids=seq)[0]
    expected = loop_reference(a, [0.5]) + loop_reference(b, [0.25]) + loop_reference(c, [])
    assert pos.tolist() == expected


def test_text_only_row_gets_arange():
    assert positions([T] * 9, delta=0.25)[0].tolist() == list(range(9))


@pytest.mark.parametrize(
    "ids, message",
    [
        (tokens(("t", 2)) + [E, T], "`</img>` without a matching `<img>`"),
        ([T, S, C, C, T], "`<img>` without a matching `</img>`"),
        ([S, C, S, C, E, E], "nested"),
    ],
)
def test_unmatched_markers_are_reported_with_row_and_token(ids, message):
    with pytest.raises(PositionError, match=message):
        positions(ids)


def test_image_across_packed_boundary_is_an_error():
    ids = torch.tensor([[T, S, C, C, E, T]])
    with pytest.raises(PositionError, match="packed-sample boundary"):
        v2pe_position_ids(ids, image_start_id=S, image_end_id=E, sequence_ids=torch.tensor([[0, 0, 0, 1, 1, 1]]))


@pytest.mark.parametrize("bad", [0.0, -0.5, 1.5, [0.5, 2.0], float("nan")])
def test_delta_outside_zero_one_is_rejected(bad):
    ids = tokens(("i", 4), ("i", 4))
    with pytest.raises(PositionError, match=r"\(0, 1\]"):
        positions(ids, delta=bad)


def test_per_image_delta_count_must_match():
    with pytest.raises(PositionError, match="2 per-image deltas for 3 images"):
        positions(tokens(("i", 2), ("i", 2), ("i", 2)), delta=[0.5, 0.5])


def test_float32_collision_warns():
    # From 2^16 on, float32 spacing is 2^-7: visual steps of 1/256 collapse (spec section 1.5).
    ids = torch.tensor([[T] * 4 + tokens(("i", 16))])
    seq_offset = 2**16
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pos = positions(ids, delta=1 / 256)
        assert not any(issubclass(w.category, PositionPrecisionWarning) for w in caught)
    long_text = torch.full((1, seq_offset), T)
    with pytest.warns(PositionPrecisionWarning, match="float32 cannot tell"):
        v2pe_position_ids(torch.cat([long_text, ids], 1), image_start_id=S, image_end_id=E, delta=1 / 256)
    assert pos.dtype == torch.float32


def test_decode_rule_continues_one_per_token():
    last = torch.tensor([197.0, 40.0])
    assert decode_position_ids(last, 3).tolist() == [[198, 199, 200], [41, 42, 43]]
    assert decode_position_ids(last, 1, start_step=4).tolist() == [[201], [44]]


def test_max_position_closed_form_matches_positions():
    ids = tokens(("t", 5), ("i", 768), ("t", 2), ("i", 256), ("t", 3))
    for delta in DEFAULT_DELTA_CHOICES:
        text = len(ids) - 768 - 256
        assert max_position(text, [768, 256], delta) == positions(ids, delta=delta).max().item()


def test_choose_delta_takes_the_largest_choice_that_fits():
    from v2pe.positions import choose_delta

    # 10 text, an image of 1000 visual tokens, 5 text: 17 text-like tokens incl. markers.
    ids = torch.tensor([tokens(("t", 10), ("i", 1000), ("t", 5))])
    fit = lambda window: choose_delta(ids, image_start_id=S, image_end_id=E, window=window, max_new_tokens=4)  # noqa: E731
    # Largest position at delta d: 16 + ceil(1000 d); plus 4 new tokens must stay below the window.
    assert fit(1021) == 1.0  # 16 + 1000 + 4 = 1020 < 1021
    assert fit(1020) == 0.5  # 16 + 500 + 4 = 520
    assert fit(300) == 0.25  # 16 + 250 + 4 = 270
    assert fit(25) == 1 / 256  # 16 + 4 + 4 = 24
    with pytest.raises(PositionError, match="reaches position 24 .* beyond the window of 24"):
        fit(24)


def test_choose_delta_serves_the_longest_row():
    from v2pe.positions import choose_delta

    short, long = tokens(("t", 3), ("i", 8)), tokens(("t", 3), ("i", 64))
    ids = torch.tensor([[0] * (len(long) - len(short)) + short, long])
    mask = (ids != 0).long()
    # Longest row: 5 text-like tokens + 64 visual: max position 4 + ceil(64 d).
    assert choose_delta(ids, attention_mask=mask, image_start_id=S, image_end_id=E, window=40) == 0.5  # 4 + 32 = 36


# ---------------------------------------------------------------------------- input checks


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.bool])
def test_non_integer_ids_are_refused(dtype):
    # float16 rounds 4097 and 4099 onto the marker ids 4096 and 4100: an image would be invented
    ids = torch.tensor([5, 4097, 4099, 3]).to(dtype)
    with pytest.raises(PositionError, match=rf"input_ids must be an integer tensor \(torch.long\), got {dtype}"):
        v2pe_position_ids(ids, image_start_id=4096, image_end_id=4100)


@pytest.mark.parametrize("dtype", [torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8])
def test_every_integer_dtype_is_accepted(dtype):
    ids = torch.tensor([T, S, C, C, E, T], dtype=dtype)
    assert v2pe_position_ids(ids, image_start_id=S, image_end_id=E, delta=0.5).tolist() == [[0, 1, 1.5, 2, 3, 4]]


@pytest.mark.parametrize("shape", [(0,), (0, 0), (1, 0), (3, 0), (0, 5)])
def test_empty_input_gives_empty_float32_positions(shape):
    ids = torch.zeros(shape, dtype=torch.long)
    out = v2pe_position_ids(ids, torch.ones(shape), image_start_id=S, image_end_id=E, sequence_ids=torch.zeros(shape, dtype=torch.long))
    expected = (1, 0) if shape == (0,) else shape
    assert out.shape == expected and out.dtype == torch.float32
    with pytest.raises(PositionError, match=r"delta must lie in \(0, 1\]"):
        v2pe_position_ids(ids, image_start_id=S, image_end_id=E, delta=2.0)  # a bad delta is still an error


def test_text_positions_past_2_pow_24_warn():
    length = 2**24 + 3  # float32 holds every integer up to 2^24 only
    ids = torch.full((length,), T, dtype=torch.long)
    with pytest.warns(PositionPrecisionWarning, match=r"positions reach 16777218, past 2\^24 = 16777216"):
        out = v2pe_position_ids(ids, image_start_id=S, image_end_id=E)
    assert out[0, -3].item() == out[0, -2].item()  # the collision the warning is about
    with warnings.catch_warnings():
        warnings.simplefilter("error", PositionPrecisionWarning)
        v2pe_position_ids(ids[: 2**24 + 1], image_start_id=S, image_end_id=E)  # last position 2^24: still exact
