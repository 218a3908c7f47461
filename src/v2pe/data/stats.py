"""Statistics of annotation files: counts, exact token lengths (histogram) and skipped samples.

Works on a meta JSON (every dataset, with its tile overrides), an official JSONL file, or an
MM-NIAH JSONL file (detected by its `context` / `images_list` fields; measured as its
evaluation prompt plus answer). Bad samples are counted by reason, never silently dropped.

Stats and training agree on what is broken: every image is fully decoded with the check
training uses (`dataset.load_sample_image`; once per file), so a truncated PNG or JPEG that
training would skip is a `corrupt_image` here too; and lines longer than the training byte
limit (`annotations.sample_byte_limit`) are `too_long` before they are tokenised.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

from v2pe.data.annotations import (
    LINE_LIMIT_HINT,
    MISSING_FIELD,
    TOO_LONG,
    WRONG_TYPE,
    DatasetSpec,
    SampleError,
    SkipReport,
    image_field,
    iter_annotations,
    load_meta,
    resolve_image_path,
    sample_byte_limit,
)
from v2pe.data.lengths import LengthMeter, format_histogram, length_histogram
from v2pe.errors import DataError
from v2pe.files import iter_json_lines, write_json_file
from v2pe.tokens import IMAGE_PLACEHOLDER

MMNIAH_FIELDS = {"id": (str, int), "images_list": list, "context": str, "question": str, "answer": (str, int, list), "meta": dict}


@dataclass
class FileStats:
    name: str
    path: Path
    format: str
    lengths: list[int] = field(default_factory=list)
    images: int = 0
    repeat_time: float = 1.0

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "path": str(self.path),
            "format": self.format,
            "samples": len(self.lengths),
            "images": self.images,
            "tokens": sum(self.lengths),
            "repeat_time": self.repeat_time,
            "effective_samples": int(len(self.lengths) * self.repeat_time),
        }


@dataclass
class Stats:
    files: list[FileStats]
    report: SkipReport

    @property
    def lengths(self) -> list[int]:
        return [length for f in self.files for length in f.lengths]

    def to_dict(self) -> dict:
        return {"files": [f.to_dict() for f in self.files], "histogram": length_histogram(self.lengths), "skipped": self.report.to_dict()}

    def table(self) -> str:
        rows = [f"{'dataset':<32} {'format':<9} {'samples':>8} {'images':>8} {'tokens':>12} {'mean':>9}"]
        for f in self.files:
            mean = sum(f.lengths) / len(f.lengths) if f.lengths else 0
            rows.append(f"{f.name[:32]:<32} {f.format:<9} {len(f.lengths):>8} {f.images:>8} {sum(f.lengths):>12} {mean:>9.0f}")
        return "\n".join(rows + ["", format_histogram(length_histogram(self.lengths)), "", self.report.summary()])


@dataclass(frozen=True)
class _Reading:
    """How one file is read: its image root, whether images may leave it, the line limit."""

    root: Path
    allow_outside_root: bool
    max_line_bytes: int


def collect_stats(
    path: str | PathLike,
    processor,
    *,
    skip_bad: bool = True,
    progress: bool = False,
    allow_outside_root: bool = False,
    max_sample_bytes: int | None = None,
) -> Stats:
    """Stats of a meta JSON or a JSONL file, lengths measured exactly with the processor's
    settings (its max_length, if set, turns longer samples into `too_long` skips). Image paths
    must stay inside the dataset root unless `allow_outside_root` (or the meta entry's own
    `allow_outside_root`); lines over `sample_byte_limit` are `too_long`."""
    from v2pe.data.dataset import processor_for_dataset

    path = Path(path)
    report = SkipReport()
    limit = sample_byte_limit(processor.max_length, max_sample_bytes)
    if path.suffix == ".json":
        files = [
            _file_stats(spec.name, spec.annotation, _Reading(spec.root, allow_outside_root or spec.allow_outside_root, limit), processor_for_dataset(processor, spec), report, skip_bad, progress, spec)
            for spec in load_meta(path)
        ]
    elif path.suffix == ".jsonl":
        files = [_file_stats(path.stem, path, _Reading(path.parent, allow_outside_root, limit), processor, report, skip_bad, progress)]
    else:
        raise DataError(f"{path}: expected a meta .json or an annotation .jsonl file")
    return Stats(files, report)


def detect_format(path: Path, max_line_bytes: int | None = None) -> str:
    """"mmniah" when the first JSON object line has MM-NIAH fields, else "official"."""
    for _, record in iter_json_lines(path, max_line_bytes=max_line_bytes, on_bad=lambda error: None):
        return "mmniah" if "context" in record and "images_list" in record else "official"
    return "official"


def _file_stats(name, path: Path, reading: _Reading, processor, report: SkipReport, skip_bad: bool, progress: bool, spec: DatasetSpec | None = None) -> FileStats:
    fmt = detect_format(path, reading.max_line_bytes)
    stats = FileStats(name, path, fmt, repeat_time=spec.repeat_time if spec else 1.0)
    meter = LengthMeter(processor)
    items = _mmniah_items(path, reading, report, skip_bad) if fmt == "mmniah" else _official_items(path, reading, report, skip_bad)
    if progress:
        from tqdm import tqdm

        items = tqdm(items, desc=name, unit="sample")
    decoded: dict[str, SampleError | None] = {}  # image path -> its problem (None: fine), each decoded once
    for where, conversation, images, fields in items:
        try:
            length = _measure(meter, decoded, where, conversation, images, fields)
            if processor.max_length is not None and length > processor.max_length:
                raise SampleError(f"{length} tokens, more than max_length={processor.max_length}", TOO_LONG, f"{where}, field 'conversations'")
        except SampleError as error:
            if not skip_bad:
                raise
            report.add_error(error)
            continue
        stats.lengths.append(length)
        stats.images += len(images)
    return stats


def _measure(meter: LengthMeter, decoded: dict, where: str, conversation, images, fields: list[str]) -> int:
    for k, image in enumerate(images):
        _check_image(decoded, image, f"{where}, field {fields[k]!r}")
    try:
        return meter.measure(conversation, images).total
    except DataError as err:
        raise SampleError(str(err), "invalid_conversation", f"{where}, field 'conversations'") from err


def _check_image(decoded: dict, image: Path, where: str) -> None:
    """Training's image check (a full decode), remembered per file: many samples share images."""
    from v2pe.data.dataset import load_sample_image

    key = str(image)
    if key not in decoded:
        try:
            load_sample_image(image, "")
            decoded[key] = None
        except SampleError as error:
            decoded[key] = error
    if decoded[key] is not None:
        raise SampleError(str(decoded[key]), decoded[key].reason, where)


def _official_items(path: Path, reading: _Reading, report: SkipReport, skip_bad: bool):
    samples = iter_annotations(path, reading.root, skip_bad=skip_bad, report=report, allow_outside_root=reading.allow_outside_root, max_sample_bytes=reading.max_line_bytes)
    for sample in samples:  # lazily: errors in file order
        yield sample.where(), sample.conversations, sample.images, [image_field(sample, k) for k in range(len(sample.images))]


def _mmniah_items(path: Path, reading: _Reading, report: SkipReport, skip_bad: bool):
    from v2pe.data.builders.needle import mmniah_prompt, mmniah_to_conversation

    lines = iter_json_lines(path, max_line_bytes=reading.max_line_bytes, limit_hint=LINE_LIMIT_HINT, on_bad=report.on_bad(skip_bad))
    for line, record in lines:
        where = f"{path}:{line}"
        try:
            where += f" (id {record['id']})" if "id" in record else ""
            check_mmniah_record(record, where)
            _, images = mmniah_prompt(record)
            conversation = mmniah_to_conversation(record)
            n_context = len(record["images_list"])
            fields = [f"images_list[{k}]" if k < n_context else f"meta.choices_image_path[{k - n_context}]" for k in range(len(images))]
            paths = [resolve_image_path(reading.root, p, f"{where}, field {fields[k]!r}", reading.allow_outside_root) for k, p in enumerate(images)]
        except SampleError as error:
            if not skip_bad:
                raise
            report.add_error(error)
            continue
        yield where, conversation, paths, fields




def check_mmniah_record(record: dict, where: str) -> None:
    """MM-NIAH fields present with the right types, and `<image>` count = len(images_list)."""
    for key, types in MMNIAH_FIELDS.items():
        if key not in record:
            raise SampleError("missing", MISSING_FIELD, f"{where}, field {key!r}")
        if not isinstance(record[key], types) or isinstance(record[key], bool):
            raise SampleError(f"has the wrong type ({type(record[key]).__name__})", WRONG_TYPE, f"{where}, field {key!r}")
    for key in ("choices", "choices_image_path"):
        value = record["meta"].get(key)
        if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise SampleError("must be null or a list of strings", WRONG_TYPE, f"{where}, field 'meta.{key}'")
    placeholders = record["context"].count(IMAGE_PLACEHOLDER) + record["question"].count(IMAGE_PLACEHOLDER)
    if placeholders != len(record["images_list"]):
        raise SampleError(f"{placeholders} `<image>` placeholders but {len(record['images_list'])} images", "image_count_mismatch", f"{where}, field 'images_list'")


def write_stats(path: str | PathLike, stats: Stats) -> Path:
    """Write the statistics as JSON; OutputError naming the file when that fails."""
    return write_json_file(path, stats.to_dict())
