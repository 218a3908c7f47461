"""Every case of the official `get_rope_pos_id` fixture, reproduced by v2pe_position_ids."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from tests.conftest import fixture_dir
from v2pe.positions import delta_from_stride, v2pe_position_ids


def _load_cases():
    try:
        path = fixture_dir("internvl2-tiny") / "positions.json"
    except pytest.skip.Exception:
        return None, []
    data = json.loads(path.read_text())
    return data, data["cases"]


FIXTURE, CASES = _load_cases()


def expand_rle(runs) -> np.ndarray:
    """The fixture's run-length format: float32(start + i * step), computed in float64."""
    parts = [np.float32(start + np.arange(count, dtype=np.float64) * step) for start, step, count in runs]
    return np.concatenate(parts).astype(np.float32)


def _delta(case) -> float:
    return 1.0 if case["version"] == "default" else delta_from_stride(case["stride"])


@pytest.mark.skipif(not CASES, reason="internvl2-tiny fixture is absent")
@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_matches_official_positions(case):
    tokens = FIXTURE["token_ids"]
    input_ids = torch.from_numpy(expand_rle(case["input_ids_rle"]).astype(np.int64)).unsqueeze(0)
    mask = torch.tensor(case["attention_mask"]).unsqueeze(0)
    assert input_ids.shape[1] == case["seq_len"]

    ours = v2pe_position_ids(
        input_ids, mask, image_start_id=tokens["img_start"], image_end_id=tokens["img_end"], delta=_delta(case)
    )[0].numpy()

    if not case["ok"]:
        # The official code crashes on image-free input; the natural answer is 0..n-1.
        assert case["num_tiles"] == []
        np.testing.assert_array_equal(ours, np.arange(case["seq_len"], dtype=np.float32))
        return
    expected = expand_rle(case["positions_rle"])
    assert hashlib.sha256(expected.astype("<f4").tobytes()).hexdigest() == case["positions_sha256"]
    assert ours.dtype == np.float32
    assert np.abs(ours - expected).max() <= 1e-4
    assert ours.max() == case["max_position"]
    assert ours[-1] == case["last_position"]
