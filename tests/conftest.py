"""Shared test fixtures: where the official-format fixtures live, tiny models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """The `shared/` folder beside the checkout (override with V2PE_SHARED)."""
    return Path(os.environ.get("V2PE_SHARED", REPO_ROOT.parent / "shared"))


def fixture_dir(name: str) -> Path:
    path = shared_dir() / "fixtures" / name
    if not path.is_dir():
        pytest.skip(f"official-format fixture {path} is absent (set V2PE_SHARED to the shared/ folder)")
    return path


@pytest.fixture(scope="session")
def internvl2_tiny_dir() -> Path:
    return fixture_dir("internvl2-tiny")
