"""A small synthetic VQA source: PIL-drawn shapes and digits with questions about them.

Each image shows one to three objects (a circle, a square, a triangle or a digit, each in a
colour) in distinct corners of a light background. Each sample asks one or more short
questions whose answers follow from the drawing:

* "What colour is the circle?" -> "red"
* "Which digit is drawn?" -> "7"
* "In which corner is the square?" -> "top left"
* "How many objects are drawn?" -> "2"

and keeps a caption ("A red circle in the top left corner. ...") in `metadata.caption`, which
the needle builder uses as haystack text. Output: official JSONL (`id`, `image`,
`conversations`, `metadata`) + PNG files + a meta JSON. Deterministic given the seed: sample
i depends only on (seed, i), and PNG bytes are reproducible.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

from PIL import Image, ImageDraw

from v2pe.data.annotations import write_jsonl, write_meta
from v2pe.data.drawing import COLOURS, SHAPES, draw_shape
from v2pe.errors import ConfigError
from v2pe.files import make_output_folder, output_file

CORNERS = ("top left", "top right", "bottom left", "bottom right")
QUESTION_TYPES = ("colour", "digit", "corner", "count")
#: Aspect ratios (width, height in units of image_size) drawn when vary_aspect is set.
ASPECTS = ((1, 1), (2, 1), (1, 2))


@dataclass(frozen=True)
class DrawnObject:
    kind: str  # "circle", "square", "triangle" or "digit"
    colour: str
    corner: str
    digit: str | None = None

    def describe(self) -> str:
        thing = f"digit {self.digit}" if self.kind == "digit" else self.kind
        return f"{article(self.colour).capitalize()} {self.colour} {thing} in the {self.corner} corner."


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def synthetic_sample(index: int, seed: int = 0, image_size: int = 112, questions: int = 1, vary_aspect: bool = False) -> tuple[Image.Image, dict]:
    """Image and record (image path not yet set) of synthetic sample `index`."""
    rng = random.Random(f"v2pe-synthetic:{seed}:{index}")
    columns, rows = rng.choice(ASPECTS) if vary_aspect else (1, 1)
    width, height = image_size * columns, image_size * rows
    background = tuple(rng.randint(225, 255) for _ in range(3))
    image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    count = rng.randint(1, 3)
    kinds = rng.sample([*SHAPES, "digit"], count)
    corners = rng.sample(CORNERS, count)
    objects = []
    for kind, corner in zip(kinds, corners, strict=True):
        colour = rng.choice(list(COLOURS))
        digit = str(rng.randint(0, 9)) if kind == "digit" else None
        objects.append(DrawnObject(kind, colour, corner, digit))
        left = 0 if "left" in corner else width / 2
        top = 0 if "top" in corner else height / 2
        side = min(width, height) / 2
        cx, cy = left + width / 4, top + height / 4
        half = side * 0.36
        draw_shape(draw, f"digit:{digit}" if digit else kind, COLOURS[colour], (cx - half, cy - half, cx + half, cy + half))
    pairs = [_question(rng, objects) for _ in range(questions)]
    conversations = []
    for turn, (question, answer, _) in enumerate(pairs):
        conversations.append({"from": "human", "value": f"<image>\n{question}" if turn == 0 else question})
        conversations.append({"from": "gpt", "value": answer})
    record = {
        "id": f"synthetic-{index:06d}",
        "conversations": conversations,
        "metadata": {
            "caption": " ".join(o.describe() for o in objects),
            "question_types": [kind for _, _, kind in pairs],
            "objects": [o.__dict__ for o in objects],
            "size": [width, height],
        },
    }
    return image, record


def _question(rng: random.Random, objects: list[DrawnObject]) -> tuple[str, str, str]:
    shapes = [o for o in objects if o.kind != "digit"]
    digits = [o for o in objects if o.kind == "digit"]
    options = ["count", "corner"] + (["colour"] * 2 if shapes else []) + (["digit"] * 2 if digits else [])
    kind = rng.choice(options)
    if kind == "colour":
        target = rng.choice(shapes)
        return f"What colour is the {target.kind}?", target.colour, kind
    if kind == "digit":
        return "Which digit is drawn?", digits[0].digit, kind
    if kind == "corner":
        target = rng.choice(objects)
        name = "digit" if target.kind == "digit" else target.kind
        return f"In which corner is the {name}?", target.corner, kind
    return "How many objects are drawn?", str(len(objects)), kind


def iter_synthetic(n: int, seed: int = 0, **options) -> Iterator[tuple[Image.Image, dict]]:
    for index in range(n):
        yield synthetic_sample(index, seed, **options)


def write_synthetic(
    out: str | PathLike,
    n: int,
    seed: int = 0,
    *,
    image_size: int = 112,
    questions: int = 1,
    vary_aspect: bool = False,
    name: str = "synthetic",
) -> Path:
    """Write `n` samples to out/{name}.jsonl with images in out/images/, and out/meta.json.
    Returns the JSONL path."""
    if n < 1:
        raise ConfigError(f"--n must be >= 1, got {n}")
    if image_size < 16:
        raise ConfigError(f"image_size must be >= 16 px, got {image_size}")
    if questions < 1:
        raise ConfigError(f"questions must be >= 1, got {questions}")
    out = Path(out)
    make_output_folder(out / "images")
    records = []
    for index, (image, record) in enumerate(iter_synthetic(n, seed, image_size=image_size, questions=questions, vary_aspect=vary_aspect)):
        relative = f"images/{index:06d}.png"
        with output_file(out / relative) as temporary:
            image.save(temporary, format="PNG", optimize=False)
        records.append({"id": record["id"], "image": relative, "conversations": record["conversations"], "metadata": record["metadata"]})
    path = write_jsonl(out / f"{name}.jsonl", records)
    write_meta(out / "meta.json", {name: {"root": ".", "annotation": f"{name}.jsonl", "data_augment": False, "repeat_time": 1, "length": n}})
    return path
