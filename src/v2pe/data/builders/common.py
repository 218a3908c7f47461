"""Shared pieces of the long-context builders: source items, greedy filling, outputs."""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

from v2pe.data.annotations import IMAGE_PLACEHOLDER, SampleError, SkipReport, is_inside, read_annotations, write_jsonl
from v2pe.data.lengths import format_histogram, write_histogram
from v2pe.errors import ConfigError, DataError
from v2pe.files import output_file, read_json_file, write_json_file

DEFAULT_TOLERANCE = 0.05


@dataclass(frozen=True)
class SourceItem:
    """One single-image VQA sample of a source file."""

    id: str
    image: Path
    pairs: tuple[tuple[str, str], ...]  # (question without <image>, answer)
    caption: str


def load_source(
    path: str | PathLike,
    root: str | PathLike | None = None,
    *,
    skip_bad: bool = False,
    report: SkipReport | None = None,
    allow_outside_root: bool = False,
) -> list[SourceItem]:
    """Single-image VQA samples of an official JSONL file (other samples are errors, or
    counted skips with skip_bad). Image files must exist, inside `root` (default: the file's
    folder) unless `allow_outside_root`."""
    report = report if report is not None else SkipReport()
    items = []
    for sample in read_annotations(path, root, skip_bad=skip_bad, report=report, check_images=True, allow_outside_root=allow_outside_root):
        if len(sample.images) != 1:
            error = SampleError(f"a source sample needs exactly one image, got {len(sample.images)}", "wrong_type", sample.where("image"))
            if not skip_bad:
                raise error
            report.add_error(error)
            continue
        turns = [t for t in sample.conversations if t["from"] != "system"]
        pairs = tuple(
            (_clean(turns[k]["value"]), turns[k + 1]["value"].strip())
            for k in range(0, len(turns) - 1, 2)
            if turns[k + 1]["value"].strip()
        )
        metadata = sample.metadata or {}
        caption = metadata.get("caption") if isinstance(metadata.get("caption"), str) else " ".join(f"{q} {a}." for q, a in pairs)
        items.append(SourceItem(sample.id or f"{Path(path).name}:{sample.line}", sample.images[0], pairs, " ".join(caption.split())))
    if not items:
        raise DataError(f"{path}: no usable source samples (single-image VQA samples are needed)")
    return items


def _clean(question: str) -> str:
    return " ".join(question.replace(IMAGE_PLACEHOLDER, " ").split())


def cycled(items: Sequence, rng: random.Random, exclude: int | None = None) -> Iterator[int]:
    """Indices of items in a random order, reshuffled and repeated when exhausted (never `exclude`)."""
    indices = [k for k in range(len(items)) if k != exclude]
    if not indices:
        return
    while True:
        rng.shuffle(indices)
        yield from list(indices)


def greedy_fill(
    candidates: Iterator,
    cost: Callable[[object, int], int],
    room: int,
    *,
    max_misses: int = 64,
) -> list:
    """Take candidates in order while their cost fits `room` (cost gets the candidate and how
    many were taken); skip ones that do not fit, stop after `max_misses` misses in a row."""
    taken, misses = [], 0
    for candidate in candidates:
        need = cost(candidate, len(taken))
        if need <= room:
            taken.append(candidate)
            room -= need
            misses = 0
        else:
            misses += 1
            if misses >= max_misses:
                break
    return taken


def check_targets(targets: Sequence[int], tolerance: float) -> list[int]:
    targets = [int(t) for t in targets]
    if not targets or any(t < 1 for t in targets):
        raise ConfigError(f"target lengths must be positive token counts, got {list(targets)}")
    if not 0 < tolerance < 1:
        raise ConfigError(f"tolerance must be in (0, 1), got {tolerance}")
    return targets


def within(length: int, target: int, tolerance: float) -> bool:
    return abs(length - target) <= tolerance * target


def relative_path(path: Path, out_dir: Path) -> str:
    """A path as written in the outputs: relative to the output folder."""
    return os.path.relpath(os.path.abspath(path), os.path.abspath(out_dir))


def save_image(image, path: Path) -> Path:
    """Save a PIL image as PNG; OutputError naming the file when it cannot be written."""
    with output_file(path) as temporary:
        image.save(temporary, format="PNG")
    return path


@dataclass
class BuildResult:
    """What a builder wrote."""

    annotation: Path
    histogram_path: Path
    histogram: dict
    records: list[dict] = field(repr=False)
    lengths: list[int] = field(repr=False)
    extra_files: list[Path] = field(default_factory=list)

    def table(self) -> str:
        return format_histogram(self.histogram)


def write_outputs(out_dir: Path, name: str, records: list[dict], lengths: list[int], targets: Sequence[int], tolerance: float, train_records: list[dict] | None = None) -> BuildResult:
    """JSONL (+ training JSONL), length histogram JSON and the meta.json entry."""
    annotation = write_jsonl(out_dir / f"{name}.jsonl", records)
    extra = []
    train_name = name
    if train_records is not None:
        train_name = f"{name}_train"
        extra.append(write_jsonl(out_dir / f"{train_name}.jsonl", train_records))
    deviations = [abs(length - target) / target for length, target in zip(lengths, _targets_for(len(lengths), targets), strict=True)]
    histogram_path = out_dir / f"{name}_lengths.json"
    histogram = write_histogram(
        histogram_path,
        lengths,
        extra={"file": annotation.name, "targets": list(targets), "tolerance": tolerance, "max_relative_deviation": max(deviations, default=0.0)},
    )
    _update_meta(out_dir / "meta.json", train_name, len(records), _reads_outside(train_records or records, out_dir))
    return BuildResult(annotation, histogram_path, histogram, records, lengths, extra)


def _targets_for(n: int, targets: Sequence[int]) -> list[int]:
    return [targets[i % len(targets)] for i in range(n)]


def _reads_outside(records: list[dict], out_dir: Path) -> bool:
    """Whether any image of the training records lies outside the output folder (the source
    images usually do: records point at them rather than copying them)."""
    paths = (p for record in records for p in record.get("image") or [])
    return any(not is_inside(out_dir / p, out_dir) for p in paths)


def _update_meta(path: Path, name: str, length: int, outside_root: bool) -> None:
    meta = read_json_file(path, "meta file") if path.is_file() else {}
    if not isinstance(meta, dict):
        raise DataError(f"{path}: a meta file is a JSON object of dataset name -> entry; move it away to build here")
    meta[name] = {"root": ".", "annotation": f"{name}.jsonl", "data_augment": False, "repeat_time": 1, "length": length}
    if outside_root:
        # The builder chose these paths (the source images, not copied): say so in the meta file.
        meta[name]["allow_outside_root"] = True
    write_json_file(path, meta)
