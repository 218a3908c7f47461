"""The official data format: a meta JSON naming datasets, and JSONL annotation files.

Meta JSON (reference-spec 4.3): a dict name -> dataset entry with keys

| key | type | meaning |
| --- | --- | --- |
| `annotation` | str, `.jsonl` (required) | the annotation file |
| `root` | str | prefix of relative image paths |
| `data_augment` | bool | training transform: random JPEG re-encode, quality 75..100 |
| `repeat_time` | number > 0 | < 1 subsamples, > 1 repeats, with a random fractional remainder |
| `length` | int | informational (number of lines); unused |
| `max_dynamic_patch` | int >= 1 | per-dataset tile limit |
| `dynamic_image_size` | bool | False: one tile per image |
| `allow_outside_root` | bool | v2pe's own key: let image paths leave `root` (default false) |

Any other key is a ConfigError naming the file, the dataset and the key. Relative `root` and
`annotation` paths are resolved against the meta file's folder (the official code uses the
working directory; resolving against the file keeps a data folder movable). `repeat_time`
must leave at least one sample and at most MAX_EXPANDED_SAMPLES (checked when the dataset is
built, naming the meta file and the dataset).

Image paths stay inside the dataset's `root` (the annotation file's folder when a JSONL is
read on its own): a path that leaves it (`../../etc/passwd`, an absolute path elsewhere) is an
`outside_root` SampleError unless `allow_outside_root` is set (`resolve_image_path`, the one
place that turns an annotation's image string into a file).

JSONL line (reference-spec 4.4): `{"id": ..., "image": str | [str, ...] (absent: pure
text), "conversations": [{"from": "human", "value": "...<image>..."}, {"from": "gpt", ...},
...], "metadata": {...}}`. The number of `<image>` placeholders must equal the number of
images, except that a single image with no placeholder is allowed (the processor prepends
`<image>\\n`, as the official code does). Videos and remote (http, s3) images are not supported.

Every problem with a line raises `SampleError` (a DataError) naming the file, the 1-based
line and the field, and carrying a `reason` key; with `skip_bad=True` the line is dropped and
counted in a `SkipReport` instead. Lines are read by `v2pe.files.iter_json_lines` (bad UTF-8
and bad JSON name file:line) and a line longer than `sample_byte_limit` bytes is refused as
`too_long` before it is parsed or tokenised.
"""

from __future__ import annotations

import json
import math
import os
import random
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

from v2pe.errors import (  # noqa: F401  (reasons and SampleError re-exported)
    INVALID_JSON,
    INVALID_UTF8,
    NOT_AN_OBJECT,
    TOO_LONG,
    ConfigError,
    DataError,
    SampleError,
)
from v2pe.files import (  # noqa: F401  (parse_json_object re-exported)
    iter_json_lines,
    output_file,
    parse_json_object,
    read_json_file,
    write_json_file,
)
from v2pe.tokens import IMAGE_PLACEHOLDER  # re-exported for the builders

META_KEYS = ("root", "annotation", "data_augment", "repeat_time", "length", "max_dynamic_patch", "dynamic_image_size", "allow_outside_root")

#: The most items repeat_time may expand one dataset to: the index alone takes 16 bytes per item.
MAX_EXPANDED_SAMPLES = 10**8

#: Bytes one annotation line may take per token of max_length. Generous: UTF-8 CJK text with
#: JSON \u escapes stays under 10 bytes per token; the point is to refuse a 50 MB line before
#: tokenising it (minutes and gigabytes), not to trim real samples.
BYTES_PER_TOKEN = 16
#: The line limit when no max_length is set (about a million tokens of text).
DEFAULT_MAX_SAMPLE_BYTES = 16 * 2**20
LINE_LIMIT_HINT = "raise max_length, or max_sample_bytes (--max-sample-bytes), to read it"

# Skip reasons (the keys of SkipReport.counts); the reader's own (INVALID_UTF8, INVALID_JSON,
# NOT_AN_OBJECT, TOO_LONG) are imported from v2pe.errors and re-exported here.
MISSING_FIELD = "missing_field"
WRONG_TYPE = "wrong_type"
INVALID_CONVERSATION = "invalid_conversation"
IMAGE_COUNT_MISMATCH = "image_count_mismatch"
UNSUPPORTED = "unsupported"
MISSING_IMAGE = "missing_image"
CORRUPT_IMAGE = "corrupt_image"
OUTSIDE_ROOT = "outside_root"
OVER_BUDGET = "over_budget"


# --------------------------------------------------------------------------------------------
# skip accounting (SampleError lives in v2pe.errors, beside the reader that raises it)


@dataclass
class SkipReport:
    """Skipped samples, counted by reason, with the first few locations of each."""

    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    max_examples: int = 3

    def add(self, reason: str, message: str = "") -> None:
        self.counts[reason] += 1
        examples = self.examples.setdefault(reason, [])
        if message and len(examples) < self.max_examples:
            examples.append(message)

    def add_error(self, error: SampleError) -> None:
        self.add(error.reason, str(error))

    def on_bad(self, skip_bad: bool):
        """The reader's `on_bad`: count (skip_bad) or None (raise)."""
        return self.add_error if skip_bad else None

    def merge(self, other: SkipReport | Mapping[str, int]) -> None:
        if isinstance(other, SkipReport):
            for reason, count in other.counts.items():
                self.counts[reason] += count
                room = self.max_examples - len(self.examples.setdefault(reason, []))
                self.examples[reason].extend(other.examples.get(reason, [])[: max(room, 0)])
        else:
            self.counts.update(dict(other))

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __bool__(self) -> bool:
        return self.total > 0

    def summary(self) -> str:
        """One line with the counts, then one line per example location."""
        if not self.total:
            return "skipped 0 samples"
        parts = ", ".join(f"{reason} {count}" for reason, count in sorted(self.counts.items()))
        lines = [f"skipped {self.total} samples: {parts}"]
        for reason in sorted(self.examples):
            lines += [f"  {reason}: {example}" for example in self.examples[reason]]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"total": self.total, "counts": dict(sorted(self.counts.items())), "examples": self.examples}


# --------------------------------------------------------------------------------------------
# meta JSON


@dataclass(frozen=True)
class DatasetSpec:
    """One entry of a meta JSON, with paths resolved."""

    name: str
    annotation: Path
    root: Path
    data_augment: bool = False
    repeat_time: float = 1.0
    length: int | None = None
    max_dynamic_patch: int | None = None
    dynamic_image_size: bool | None = None
    meta_file: Path | None = None
    allow_outside_root: bool = False

    def where(self) -> str:
        """"meta.json: dataset 'name'" for error messages."""
        return f"{self.meta_file}: dataset {self.name!r}" if self.meta_file else f"dataset {self.name!r}"


def load_meta(path: str | PathLike) -> list[DatasetSpec]:
    """The datasets of a meta JSON file, in file order; ConfigError on anything unexpected."""
    path = Path(path)
    meta = read_json_file(path, "meta file", ConfigError)
    if not isinstance(meta, dict) or not meta:
        raise ConfigError(f"{path}: a meta file is a non-empty JSON object of dataset name -> entry")
    return [parse_meta_entry(name, entry, path) for name, entry in meta.items()]


def parse_meta_entry(name: str, entry: object, meta_file: Path) -> DatasetSpec:
    where = f"{meta_file}: dataset {name!r}"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: an entry is a JSON object, got {type(entry).__name__}")
    unknown = sorted(set(entry) - set(META_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known keys: {', '.join(META_KEYS)})")
    if "annotation" not in entry:
        raise ConfigError(f"{where}: missing key 'annotation'")
    annotation = _meta_value(entry, "annotation", str, where)
    if not annotation.endswith(".jsonl"):
        raise ConfigError(f"{where}: key 'annotation' must name a .jsonl file, got {annotation!r}")
    base = meta_file.parent
    annotation_path = _resolve(base, annotation)
    if not annotation_path.is_file():
        raise ConfigError(f"{where}: key 'annotation': file not found: {annotation_path}")
    root = _meta_value(entry, "root", str, where, default="")
    repeat_time = _meta_value(entry, "repeat_time", (int, float), where, default=1.0)
    if not math.isfinite(repeat_time) or repeat_time <= 0:
        raise ConfigError(f"{where}: key 'repeat_time' must be a number > 0, got {repeat_time!r}")
    if repeat_time > MAX_EXPANDED_SAMPLES:
        raise ConfigError(f"{where}: key 'repeat_time' {repeat_time:g} would make more than {MAX_EXPANDED_SAMPLES:.0e} samples of even one line")
    length = _meta_value(entry, "length", int, where, default=None)
    if length is not None and length < 0:
        raise ConfigError(f"{where}: key 'length' must be >= 0, got {length}")
    max_patch = _meta_value(entry, "max_dynamic_patch", int, where, default=None)
    if max_patch is not None and max_patch < 1:
        raise ConfigError(f"{where}: key 'max_dynamic_patch' must be >= 1, got {max_patch}")
    return DatasetSpec(
        name=name,
        annotation=annotation_path,
        root=_resolve(base, root),
        data_augment=_meta_value(entry, "data_augment", bool, where, default=False),
        repeat_time=float(repeat_time),
        length=length,
        max_dynamic_patch=max_patch,
        dynamic_image_size=_meta_value(entry, "dynamic_image_size", bool, where, default=None),
        meta_file=meta_file,
        allow_outside_root=_meta_value(entry, "allow_outside_root", bool, where, default=False),
    )


def write_meta(path: str | PathLike, datasets: Mapping[str, Mapping[str, object]]) -> Path:
    """Write a meta JSON (values checked against META_KEYS)."""
    path = Path(path)
    for name, entry in datasets.items():
        unknown = sorted(set(entry) - set(META_KEYS))
        if unknown:
            raise ConfigError(f"{path}: dataset {name!r}: unknown key {unknown[0]!r}")
    return write_json_file(path, dict(datasets))


def _meta_value(entry: dict, key: str, types, where: str, default=...):
    if key not in entry:
        if default is ...:
            raise ConfigError(f"{where}: missing key {key!r}")
        return default
    value = entry[key]
    types = types if isinstance(types, tuple) else (types,)
    # JSON true/false are bools, which Python also counts as ints: keep them apart.
    ok = isinstance(value, types) and (bool in types or not isinstance(value, bool))
    if not ok:
        names = " or ".join(t.__name__ for t in types)
        raise ConfigError(f"{where}: key {key!r} must be {names}, got {json.dumps(value)}")
    return value


def _resolve(base: Path, value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() else base / path


# --------------------------------------------------------------------------------------------
# JSONL samples


@dataclass
class Sample:
    """One annotation line, validated; `images` are resolved paths."""

    file: Path
    line: int
    conversations: list[dict]
    images: list[Path] = field(default_factory=list)
    id: str | None = None
    metadata: dict | None = None

    def where(self, field_name: str | None = None) -> str:
        """"file:line (id X), field 'f'" for error messages."""
        text = f"{self.file}:{self.line}"
        if self.id is not None:
            text += f" (id {self.id})"
        if field_name:
            text += f", field {field_name!r}"
        return text


def read_annotations(
    path: str | PathLike,
    root: str | PathLike | None = None,
    *,
    skip_bad: bool = False,
    report: SkipReport | None = None,
    check_images: bool = False,
    allow_outside_root: bool = False,
    max_sample_bytes: int | None = DEFAULT_MAX_SAMPLE_BYTES,
) -> list[Sample]:
    """All samples of a JSONL annotation file, validated line by line.

    `root` prefixes relative image paths (default: the file's folder); image paths must stay
    inside it unless `allow_outside_root`. A line longer than `max_sample_bytes` is refused
    (too_long; None: no limit). A bad line raises SampleError naming file, line and field, or
    with `skip_bad` is counted in `report` and dropped. `check_images` also checks that every
    image file exists (missing_image).
    """
    path = Path(path)
    root = Path(root) if root is not None else path.parent
    report = report if report is not None else SkipReport()
    samples = []
    lines = iter_annotations(path, root, skip_bad=skip_bad, report=report, allow_outside_root=allow_outside_root, max_sample_bytes=max_sample_bytes)
    for sample in lines:
        if check_images:
            missing = next((k for k, image in enumerate(sample.images) if not image.is_file()), None)
            if missing is not None:
                error = SampleError(f"image file not found: {sample.images[missing]}", MISSING_IMAGE, sample.where(image_field(sample, missing)))
                if not skip_bad:
                    raise error
                report.add_error(error)
                continue
        samples.append(sample)
    return samples


def iter_annotations(
    path: Path,
    root: Path,
    *,
    skip_bad: bool = False,
    report: SkipReport | None = None,
    allow_outside_root: bool = False,
    max_sample_bytes: int | None = DEFAULT_MAX_SAMPLE_BYTES,
) -> Iterator[Sample]:
    report = report if report is not None else SkipReport()
    records = iter_json_lines(path, max_line_bytes=max_sample_bytes, limit_hint=LINE_LIMIT_HINT, on_bad=report.on_bad(skip_bad), what="annotation file")
    for line_number, record in records:
        try:
            yield sample_from_record(record, path, line_number, root, allow_outside_root)
        except SampleError as error:
            if not skip_bad:
                raise
            report.add_error(error)


def sample_byte_limit(max_length: int | None, max_sample_bytes: int | None = None) -> int:
    """Bytes one annotation line may take: `max_sample_bytes` if given, else BYTES_PER_TOKEN
    per token of max_length, else DEFAULT_MAX_SAMPLE_BYTES."""
    if max_sample_bytes is not None:
        if max_sample_bytes < 1:
            raise ConfigError(f"max_sample_bytes must be >= 1, got {max_sample_bytes}")
        return int(max_sample_bytes)
    return BYTES_PER_TOKEN * int(max_length) if max_length else DEFAULT_MAX_SAMPLE_BYTES


def parse_sample(text: str | bytes, file: Path, line: int, root: Path, allow_outside_root: bool = False) -> Sample:
    """Validate one JSONL line; SampleError names file, line and field."""
    return sample_from_record(parse_json_object(text, f"{file}:{line}"), file, line, root, allow_outside_root)


def sample_from_record(record: dict, file: Path, line: int, root: Path, allow_outside_root: bool = False) -> Sample:
    """Validate one parsed JSONL object; SampleError names file, line and field."""
    where = f"{file}:{line}"
    sample_id = record.get("id")
    if sample_id is not None:
        if not isinstance(sample_id, (str, int)) or isinstance(sample_id, bool):
            raise SampleError(f"must be a string or an integer, got {json.dumps(sample_id)}", WRONG_TYPE, f"{where}, field 'id'")
        sample_id = str(sample_id)
        where = f"{where} (id {sample_id})"
    if "video" in record:
        raise SampleError("video samples are not supported", UNSUPPORTED, f"{where}, field 'video'")
    conversations = _conversations(record, where)
    images = _images(record, where, root, allow_outside_root)
    metadata = record.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise SampleError(f"must be an object, got {type(metadata).__name__}", WRONG_TYPE, f"{where}, field 'metadata'")
    placeholders = sum(turn["value"].count(IMAGE_PLACEHOLDER) for turn in conversations)
    if placeholders != len(images) and not (len(images) == 1 and placeholders == 0):
        raise SampleError(
            f"{placeholders} `<image>` placeholders in 'conversations' but {len(images)} images in 'image'",
            IMAGE_COUNT_MISMATCH,
            f"{where}, field 'image'",
        )
    return Sample(file=file, line=line, conversations=conversations, images=images, id=sample_id, metadata=metadata)


def _conversations(record: dict, where: str) -> list[dict]:
    if "conversations" not in record:
        raise SampleError("missing", MISSING_FIELD, f"{where}, field 'conversations'")
    conversations = record["conversations"]
    if not isinstance(conversations, list) or not conversations:
        raise SampleError(f"must be a non-empty list of turns, got {json.dumps(conversations)[:80]}", WRONG_TYPE, f"{where}, field 'conversations'")
    for index, turn in enumerate(conversations):
        field_name = f"{where}, field 'conversations[{index}]'"
        if not isinstance(turn, dict):
            raise SampleError(f"a turn is an object, got {type(turn).__name__}", WRONG_TYPE, field_name)
        for key in ("from", "value"):
            if key not in turn:
                raise SampleError("missing", MISSING_FIELD, f"{where}, field 'conversations[{index}].{key}'")
            if not isinstance(turn[key], str):
                raise SampleError(f"must be a string, got {json.dumps(turn[key])[:80]}", WRONG_TYPE, f"{where}, field 'conversations[{index}].{key}'")
    from v2pe.processing.templates import parse_conversation  # light: no torch

    try:
        _, turns = parse_conversation(conversations)
    except DataError as err:
        raise SampleError(str(err), INVALID_CONVERSATION, f"{where}, field 'conversations'") from err
    if not any(turn.role == "assistant" and turn.text for turn in turns):
        raise SampleError("no non-empty 'gpt' answer: nothing to train on", INVALID_CONVERSATION, f"{where}, field 'conversations'")
    return conversations


def _images(record: dict, where: str, root: Path, allow_outside_root: bool) -> list[Path]:
    value = record.get("image")
    if value is None:
        return []
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list):
        raise SampleError(f"must be a path or a list of paths, got {json.dumps(value)[:80]}", WRONG_TYPE, f"{where}, field 'image'")
    images = []
    for index, item in enumerate(values):
        field_name = f"{where}, field 'image'" if isinstance(value, str) else f"{where}, field 'image[{index}]'"
        if not isinstance(item, str) or not item:
            raise SampleError(f"must be a non-empty path string, got {json.dumps(item)[:80]}", WRONG_TYPE, field_name)
        if "://" in item or item.startswith("s3:"):
            raise SampleError(f"remote images are not supported: {item}", UNSUPPORTED, field_name)
        images.append(resolve_image_path(root, item, field_name, allow_outside_root))
    return images


def resolve_image_path(root: Path, value: str, where: str, allow_outside_root: bool = False) -> Path:
    """The file an annotation's image path names: `root / value` (absolute paths as they are),
    refused (outside_root) when it leaves `root` and `allow_outside_root` is not set.

    The check is on the path as written (`..` folded, symlinks not followed): a symlinked
    image folder inside the root is the data owner's choice; `../../etc/passwd` in an
    annotation line is not."""
    path = _resolve(root, value)
    if not allow_outside_root and not is_inside(path, root):
        raise SampleError(
            f"image path {value!r} resolves outside the data root {root}; set \"allow_outside_root\": true for this dataset "
            "in the meta file (or pass --allow-outside-root) if that is intended",
            OUTSIDE_ROOT,
            where,
        )
    return path


def is_inside(path: Path, root: Path) -> bool:
    """Whether `path`, with `..` folded (no symlinks followed), lies inside `root`."""
    return Path(os.path.abspath(path)).is_relative_to(os.path.abspath(root))


def image_field(sample: Sample, index: int) -> str:
    """The field name of a sample's index-th image in error messages: 'image' or 'image[k]'."""
    return f"image[{index}]" if len(sample.images) > 1 else "image"


# --------------------------------------------------------------------------------------------
# repeat_time


def repeat_indices(num_lines: int, repeat_time: float, rng: random.Random) -> list[int]:
    """Line indices after `repeat_time`, as the official sampler: int(repeat_time) full passes,
    plus int(num_lines * fraction) distinct lines drawn at random (kept in file order).
    repeat_time 0.3 keeps 30% of the lines; 2.5 gives every line twice and half of them thrice."""
    if repeat_time <= 0:
        raise ConfigError(f"repeat_time must be > 0, got {repeat_time}")
    whole = int(repeat_time)
    fraction = repeat_time - whole
    indices = list(range(num_lines)) * whole
    extra = int(num_lines * fraction)
    if extra:
        indices += sorted(rng.sample(range(num_lines), extra))
    return indices


def repeated_count(spec: DatasetSpec, num_lines: int) -> int:
    """How many items `repeat_indices` makes of a dataset's lines; ConfigError naming the meta
    file and the dataset when that is none (an empty file, or a repeat_time that rounds to 0)
    or more than MAX_EXPANDED_SAMPLES."""
    if num_lines == 0:
        raise ConfigError(f"{spec.where()}: no usable samples in {spec.annotation} (an empty file, or every line skipped)")
    whole = int(spec.repeat_time)
    count = num_lines * whole + int(num_lines * (spec.repeat_time - whole))
    if count == 0:
        raise ConfigError(
            f"{spec.where()}: repeat_time {spec.repeat_time:g} of {num_lines} samples keeps 0 samples; "
            f"use a repeat_time of at least {1 / num_lines:.3g}"
        )
    if count > MAX_EXPANDED_SAMPLES:
        raise ConfigError(f"{spec.where()}: repeat_time {spec.repeat_time:g} of {num_lines} samples makes {count} samples, more than {MAX_EXPANDED_SAMPLES}")
    return count


def write_jsonl(path: str | PathLike, records: Iterable[Mapping]) -> Path:
    """Write records one JSON object per line (UTF-8, non-ASCII kept); OutputError naming the
    file when it cannot be written (no partial file is left)."""
    path = Path(path)
    with output_file(path) as temporary, temporary.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path
