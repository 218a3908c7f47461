from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from v2pe.model import load_model


@pytest.fixture(scope="session")
def official_model(internvl2_tiny_dir):
    return load_model(internvl2_tiny_dir)


@pytest.fixture(scope="session")
def official_logits(internvl2_tiny_dir) -> dict[str, torch.Tensor]:
    return load_file(internvl2_tiny_dir / "logits.safetensors")


# Tiles of each fixture input, in image order (fixture README, section C).
FIXTURE_TILES = {"one_image_1tile": [0], "one_image_3tiles": [1, 2, 3]}
FIXTURE_VARIANTS = ["default", "v2pe_fix_stride64"]
