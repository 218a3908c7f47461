"""Exact sample lengths without pixel work, and length histograms.

`LengthMeter.measure` is `Processor.plan` (what `Processor.encode` decides before the pixels:
placeholder rule, template, tiles per image, tokenisation with the real tokenizer) with each
image's tile count read from its file header once and cached, so it returns exactly
`len(processor.encode(...)["input_ids"])` at a fraction of the cost. Builders use it to hit
target lengths; the packer uses it to plan packs before loading any pixels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from os import PathLike

from PIL import Image

from v2pe.errors import DataError
from v2pe.files import write_json_file
from v2pe.tokens import IGNORE_INDEX

# Histogram bin edges in tokens: 1K steps at the short end, MM-NIAH-like steps up to 64K, then doubling.
_K = 1024
DEFAULT_EDGES: tuple[int, ...] = (0, 1 * _K, 2 * _K, 4 * _K, 8 * _K, 12 * _K, 16 * _K, 24 * _K, 32 * _K, 40 * _K, 48 * _K, 64 * _K, 128 * _K, 256 * _K, 512 * _K, 1024 * _K)


@dataclass(frozen=True)
class SampleLength:
    """Token counts of one encoded sample: total = text + image (image: the `<img>..</img>` spans)."""

    total: int
    text: int
    image: int
    labels: int
    num_images: int
    num_tiles: tuple[int, ...]


class LengthMeter:
    """Exact token counts for a Processor's settings (tokenizer, template, tiling)."""

    def __init__(self, processor):
        self.processor = processor
        self._tiles: dict[tuple, int] = {}
        self._text: dict[str, int] = {}

    def tiles(self, image: str | PathLike | Image.Image) -> int:
        """Tiles `image_to_tiles` makes for this image (thumbnail included)."""
        p = self.processor
        key = None if isinstance(image, Image.Image) else (str(image), p.min_tiles, p.max_tiles, p.use_thumbnail, p.tile_size)
        if key is not None and key in self._tiles:
            return self._tiles[key]
        count = p.num_tiles(image)
        if key is not None:
            self._tiles[key] = count
        return count

    def image_tokens(self, image) -> int:
        """Tokens of one image in the sequence: `<img>` + tokens_per_tile x tiles + `</img>`."""
        return self.processor.tokens_per_tile * self.tiles(image) + 2

    def text_tokens(self, text: str) -> int:
        """Tokens of a piece of text on its own (no BOS); additive for byte-level tokenizers,
        an estimate across piece boundaries for BPE tokenizers (use `measure` for exact counts)."""
        if text not in self._text:
            if len(self._text) > 100_000:
                self._text.clear()
            self._text[text] = len(self.processor.tokenizer(text, add_special_tokens=False)["input_ids"])
        return self._text[text]

    def measure(self, conversation: Sequence[Mapping[str, str]] | str, images: Sequence = (), sample_id: str | None = None) -> SampleLength:
        """Exactly the token counts of `processor.encode(conversation, images)`: its `plan`."""
        plan = self.processor.plan(conversation, images, sample_id, tiles=self.tiles)
        total = len(plan.input_ids)
        labelled = sum(1 for label in plan.labels if label != IGNORE_INDEX)
        return SampleLength(total, total - plan.image_tokens, plan.image_tokens, labelled, len(plan.num_tiles), plan.num_tiles)

    def measure_text(self, text: str, images: Sequence = ()) -> SampleLength:
        """Token counts of a bare text with `<image>` placeholders (no template, no BOS): the
        MM-NIAH `context_length`, `context_length_text` and `context_length_image`."""
        from v2pe.tokens import IMAGE_PLACEHOLDER

        p = self.processor
        images = list(images)
        parts = text.split(IMAGE_PLACEHOLDER)
        if len(parts) - 1 != len(images):
            raise DataError(f"{len(parts) - 1} `<image>` placeholders but {len(images)} images")
        num_tiles = tuple(self.tiles(image) for image in images)
        expanded = parts[0] + "".join(p.image_tokens(n) + part for n, part in zip(num_tiles, parts[1:]))
        total = len(p.tokenizer(expanded, add_special_tokens=False)["input_ids"])
        image_tokens = sum(p.tokens_per_tile * n + 2 for n in num_tiles)
        return SampleLength(total, total - image_tokens, image_tokens, 0, len(images), num_tiles)


# --------------------------------------------------------------------------------------------
# histograms


def length_histogram(lengths: Sequence[int], edges: Sequence[int] = DEFAULT_EDGES) -> dict:
    """Counts per bin [edges[k], edges[k+1]) plus a last bin >= edges[-1], and summary numbers."""
    edges = list(edges)
    counts = [0] * len(edges)
    for length in lengths:
        bin_index = 0
        for k, edge in enumerate(edges):
            if length >= edge:
                bin_index = k
        counts[bin_index] += 1
    bins = [
        {"low": edges[k], "high": edges[k + 1] if k + 1 < len(edges) else None, "count": counts[k]}
        for k in range(len(edges))
    ]
    ordered = sorted(lengths)
    summary = {
        "count": len(ordered),
        "min": ordered[0] if ordered else None,
        "max": ordered[-1] if ordered else None,
        "mean": sum(ordered) / len(ordered) if ordered else None,
        "median": _median(ordered),
        "total_tokens": sum(ordered),
    }
    return {**summary, "bins": bins}


def format_histogram(histogram: Mapping, width: int = 40) -> str:
    """A text table of the non-empty bins with bars."""
    bins = [b for b in histogram["bins"] if b["count"]]
    if not bins:
        return "no samples"
    most = max(b["count"] for b in bins)
    lines = [f"{'tokens':>17}  {'count':>7}"]
    for b in bins:
        label = f"{_k(b['low'])}-{_k(b['high'])}" if b["high"] is not None else f">={_k(b['low'])}"
        bar = "#" * max(1, round(width * b["count"] / most))
        lines.append(f"{label:>17}  {b['count']:>7}  {bar}")
    lines.append(
        f"{histogram['count']} samples, {histogram['total_tokens']} tokens; min {histogram['min']}, "
        f"median {histogram['median']:g}, max {histogram['max']}"
    )
    return "\n".join(lines)


def write_histogram(path: str | PathLike, lengths: Sequence[int], extra: Mapping | None = None, edges: Sequence[int] = DEFAULT_EDGES) -> dict:
    """Write the histogram (plus `extra` fields) as JSON and return it; OutputError naming the
    file when it cannot be written."""
    histogram = {**(dict(extra) if extra else {}), **length_histogram(lengths, edges)}
    write_json_file(path, histogram)
    return histogram


def _k(value: int) -> str:
    return f"{value // _K}K" if value % _K == 0 and value else str(value)


def _median(ordered: Sequence[int]) -> float | None:
    if not ordered:
        return None
    mid = len(ordered) // 2
    return float(ordered[mid]) if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
