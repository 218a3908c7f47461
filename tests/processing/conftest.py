"""Shared helpers for the processing tests.

Expected token ids are built here from the fixture's vocabulary rule, written out
independently of `v2pe.processing.tokenizer`: `<s>`=1, any UTF-8 byte b -> 3 + b, and
the special tokens listed in `SPECIAL` (values from the fixture's special_tokens.json).
The fixture folder itself comes from `internvl2_tiny_dir` in tests/conftest.py.
"""

from __future__ import annotations

import pytest
from PIL import Image

from v2pe.processing import byte_tokenizer

SPECIAL = {"<|im_start|>": 293, "<|im_end|>": 294, "<img>": 295, "</img>": 296, "<IMG_CONTEXT>": 297}
BOS = 1


def text_ids(text: str) -> list[int]:
    """Ids of plain text (no special tokens in it) by the byte rule."""
    return [3 + b for b in text.encode("utf-8")]


def piece_ids(*pieces) -> list[int]:
    """Ids of a sequence of pieces: a special-token name from SPECIAL, ("img", n) for an image
    block of n context tokens, or plain text."""
    ids: list[int] = []
    for piece in pieces:
        if isinstance(piece, tuple):
            ids += [SPECIAL["<img>"]] + [SPECIAL["<IMG_CONTEXT>"]] * piece[1] + [SPECIAL["</img>"]]
        elif piece in SPECIAL:
            ids.append(SPECIAL[piece])
        else:
            ids += text_ids(piece)
    return ids


def solid_image(width: int, height: int, colour=(120, 60, 200)) -> Image.Image:
    return Image.new("RGB", (width, height), colour)


@pytest.fixture(scope="session")
def tokenizer():
    return byte_tokenizer()


@pytest.fixture(name="text_ids", scope="session")
def text_ids_fixture():
    return text_ids


@pytest.fixture(name="piece_ids", scope="session")
def piece_ids_fixture():
    return piece_ids


@pytest.fixture(name="solid_image", scope="session")
def solid_image_fixture():
    return solid_image
