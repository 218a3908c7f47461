"""Fixtures for the data tests: a small synthetic source (56 px tiles, 4 tokens per tile)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from v2pe.data.synthetic import write_synthetic
from v2pe.processing import Processor, byte_tokenizer

TILE = 56
TOKENS_PER_TILE = 4  # the tiny model: 56 px tiles of 14 px patches, pixel shuffle 0.5


def make_processor(**overrides) -> Processor:
    settings = {"tokens_per_tile": TOKENS_PER_TILE, "tile_size": TILE, "min_tiles": 1, "max_tiles": 4, "use_thumbnail": True}
    settings.update(overrides)
    return Processor(byte_tokenizer(), **settings)


@pytest.fixture(scope="session")
def processor() -> Processor:
    return make_processor()


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory) -> Path:
    """40 synthetic samples of 56 px squares and 112 x 56 / 56 x 112 rectangles."""
    out = tmp_path_factory.mktemp("synthetic")
    write_synthetic(out, 40, seed=7, image_size=TILE, vary_aspect=True)
    return out


def write_lines(path: Path, lines: list) -> Path:
    """Write JSONL lines: dicts are dumped, strings written as they are."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((json.dumps(line) if not isinstance(line, str) else line) + "\n" for line in lines))
    return path


def write_meta(path: Path, meta: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(meta))
    return path
