"""The synthetic source: deterministic files, and answers that the pixels confirm."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from v2pe.data.annotations import read_annotations
from v2pe.data.drawing import COLOURS
from v2pe.data.synthetic import synthetic_sample, write_synthetic
from v2pe.errors import ConfigError


def _files(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    write_synthetic(tmp_path / "a", 12, seed=4, vary_aspect=True)
    write_synthetic(tmp_path / "b", 12, seed=4, vary_aspect=True)
    write_synthetic(tmp_path / "c", 12, seed=5, vary_aspect=True)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    assert (tmp_path / "a" / "synthetic.jsonl").read_text() != (tmp_path / "c" / "synthetic.jsonl").read_text()


def test_files_are_valid_official_annotations(tmp_path):
    path = write_synthetic(tmp_path, 20, seed=0, questions=2)
    samples = read_annotations(path, check_images=True)
    assert len(samples) == 20
    for sample in samples:
        assert [t["from"] for t in sample.conversations] == ["human", "gpt", "human", "gpt"]
        assert sample.conversations[0]["value"].startswith("<image>\n") and "<image>" not in sample.conversations[2]["value"]
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta == {"synthetic": {"root": ".", "annotation": "synthetic.jsonl", "data_augment": False, "repeat_time": 1, "length": 20}}


def _quadrant_pixels(image: Image.Image, corner: str) -> set:
    w, h = image.size
    left = 0 if "left" in corner else w // 2
    top = 0 if "top" in corner else h // 2
    pixels = np.asarray(image)[top : top + h // 2, left : left + w // 2].reshape(-1, 3).astype(np.int64)
    packed = np.unique(pixels @ np.array([1 << 16, 1 << 8, 1]))
    return {(int(v) >> 16, (int(v) >> 8) & 255, int(v) & 255) for v in packed}


@pytest.mark.parametrize("size", [56, 112])
def test_answers_follow_from_the_pixels(size):
    background_checked = 0
    for index in range(120):
        image, record = synthetic_sample(index, seed=2, image_size=size, vary_aspect=True)
        question, answer = record["conversations"][0]["value"], record["conversations"][1]["value"]
        objects = record["metadata"]["objects"]
        background = image.getpixel((image.width // 2, image.height // 2))  # the centre lies between quadrants
        occupied = [c for c in ("top left", "top right", "bottom left", "bottom right") if _quadrant_pixels(image, c) != {background}]
        assert len(occupied) == len(objects)
        background_checked += 1
        if "What colour is the" in question:
            shape = question.removeprefix("<image>\nWhat colour is the ").removesuffix("?")
            corner = next(o["corner"] for o in objects if o["kind"] == shape)
            # the shape's box centre is filled with its colour
            w, h = image.size
            cx = (w // 4) if "left" in corner else (3 * w // 4)
            cy = (h // 4) if "top" in corner else (3 * h // 4)
            assert image.getpixel((cx, cy)) == COLOURS[answer]
        elif "How many objects" in question:
            assert int(answer) == len(occupied)
        elif "In which corner" in question:
            assert answer in occupied
            name = question.removeprefix("<image>\nIn which corner is the ").removesuffix("?")
            colour = next(o["colour"] for o in objects if (o["kind"] == name) and o["corner"] == answer)
            assert COLOURS[colour] in _quadrant_pixels(image, answer)
        elif "Which digit" in question:
            assert answer.isdigit() and any(o["digit"] == answer for o in objects)
        else:
            raise AssertionError(question)
    assert background_checked == 120


def test_bad_arguments_are_config_errors(tmp_path):
    with pytest.raises(ConfigError):
        write_synthetic(tmp_path, 0)
    with pytest.raises(ConfigError):
        write_synthetic(tmp_path, 3, image_size=8)
