"""Small PIL drawings shared by the synthetic source and the image needles.

Everything is drawn with plain PIL primitives (and PIL's built-in font for digits), so it is
fast, needs no assets and is byte-for-byte deterministic for the same arguments.
"""

from __future__ import annotations

import math
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

#: Colour names and their RGB values (names are the answers to colour questions).
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (30, 150, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 200, 30),
    "purple": (140, 60, 180),
    "orange": (245, 140, 20),
    "black": (20, 20, 20),
}

#: Plain shapes of the synthetic source.
SHAPES = ("circle", "square", "triangle")

#: Cartoon-style objects used as image needles (pasted into haystack images).
NEEDLE_OBJECTS = ("star", "heart", "diamond", "cross", "arrow", "moon")

Box = tuple[float, float, float, float]


def draw_shape(draw: ImageDraw.ImageDraw, kind: str, colour: tuple[int, int, int], box: Box) -> None:
    """Draw a shape, a needle object or a digit ("digit:7") filling box (left, top, right, bottom)."""
    left, top, right, bottom = box
    if kind.startswith("digit:"):
        _draw_digit(draw, kind.split(":", 1)[1], colour, box)
    elif kind == "circle":
        draw.ellipse(box, fill=colour)
    elif kind == "square":
        draw.rectangle(box, fill=colour)
    elif kind == "triangle":
        draw.polygon([((left + right) / 2, top), (right, bottom), (left, bottom)], fill=colour)
    elif kind == "diamond":
        cx, cy = (left + right) / 2, (top + bottom) / 2
        draw.polygon([(cx, top), (right, cy), (cx, bottom), (left, cy)], fill=colour)
    elif kind == "star":
        draw.polygon(_star_points(box), fill=colour)
    elif kind == "heart":
        _draw_heart(draw, colour, box)
    elif kind == "cross":
        w, h = right - left, bottom - top
        draw.rectangle((left + w / 3, top, right - w / 3, bottom), fill=colour)
        draw.rectangle((left, top + h / 3, right, bottom - h / 3), fill=colour)
    elif kind == "arrow":
        w, h = right - left, bottom - top
        draw.rectangle((left, top + h * 0.35, left + w * 0.55, bottom - h * 0.35), fill=colour)
        draw.polygon([(left + w * 0.5, top), (right, top + h / 2), (left + w * 0.5, bottom)], fill=colour)
    elif kind == "moon":
        draw.polygon(_crescent_points(box), fill=colour)
    else:
        raise ValueError(f"unknown shape {kind!r}")


def object_image(kind: str, colour: str, size: int = 64) -> Image.Image:
    """A needle object alone on a white square (the image of a needle or of a choice)."""
    image = Image.new("RGB", (size, size), (255, 255, 255))
    margin = size * 0.12
    draw_shape(ImageDraw.Draw(image), kind, COLOURS[colour], (margin, margin, size - margin, size - margin))
    return image


def paste_objects(image: Image.Image, objects: list[tuple[str, str]], cells: list[int], grid: int = 3) -> Image.Image:
    """A copy of image with each (kind, colour) object drawn in its cell of a grid x grid layout
    (cells numbered row-major); objects keep a white backing square so they stand out."""
    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    cell_w, cell_h = out.width / grid, out.height / grid
    for (kind, colour), cell in zip(objects, cells, strict=True):
        col, row = cell % grid, cell // grid
        box = (col * cell_w, row * cell_h, (col + 1) * cell_w - 1, (row + 1) * cell_h - 1)
        draw.rectangle(box, fill=(255, 255, 255))
        pad_w, pad_h = cell_w * 0.12, cell_h * 0.12
        draw_shape(draw, kind, COLOURS[colour], (box[0] + pad_w, box[1] + pad_h, box[2] - pad_w, box[3] - pad_h))
    return out


def _star_points(box: Box) -> list[tuple[float, float]]:
    left, top, right, bottom = box
    cx, cy = (left + right) / 2, (top + bottom) / 2
    outer = min(right - left, bottom - top) / 2
    points = []
    for k in range(10):
        radius = outer if k % 2 == 0 else outer * 0.45
        angle = -math.pi / 2 + k * math.pi / 5
        points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
    return points


def _crescent_points(box: Box, steps: int = 24) -> list[tuple[float, float]]:
    """A crescent opening to the right: the left half of the disc minus a narrower half-ellipse."""
    left, top, right, bottom = box
    cx, cy = (left + right) / 2, (top + bottom) / 2
    rx, ry = (right - left) / 2, (bottom - top) / 2
    angles = [math.pi / 2 + math.pi * k / steps for k in range(steps + 1)]
    outer = [(cx + rx * math.cos(a), cy + ry * math.sin(a)) for a in angles]
    inner = [(cx + 0.35 * rx * math.cos(a), cy + ry * math.sin(a)) for a in reversed(angles)]
    return outer + inner


def _draw_heart(draw: ImageDraw.ImageDraw, colour, box: Box) -> None:
    left, top, right, bottom = box
    w, h = right - left, bottom - top
    draw.ellipse((left, top, left + w / 2 + 1, top + h / 2), fill=colour)
    draw.ellipse((left + w / 2 - 1, top, right, top + h / 2), fill=colour)
    draw.polygon([(left, top + h / 4), (right, top + h / 4), (left + w / 2, bottom)], fill=colour)


@lru_cache(maxsize=32)
def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=max(size, 6))


def _draw_digit(draw: ImageDraw.ImageDraw, digit: str, colour, box: Box) -> None:
    left, top, right, bottom = box
    font = _font(int(bottom - top))
    x0, y0, x1, y1 = draw.textbbox((0, 0), digit, font=font)
    x = left + (right - left - (x1 - x0)) / 2 - x0
    y = top + (bottom - top - (y1 - y0)) / 2 - y0
    draw.text((x, y), digit, fill=colour, font=font)
