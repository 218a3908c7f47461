"""`SupervisedDataset`: a meta JSON's datasets as one map-style torch Dataset.

Item i is a pure function of (meta, processor settings, seed, i): the order (repeat_time
draws, optional shuffle), the per-image deltas (delta="random": one draw per image from a
generator seeded with (seed, i)) and the JPEG augmentation quality are all derived from the
seed and the index, so a run is reproducible and can resume at any index, in any worker.

Bad samples: annotation lines are validated when the dataset is built; images and lengths
when an item is loaded. Without `skip_bad` the first problem raises a DataError naming the
file, line and field. With `skip_bad` the sample is counted in `report` (by reason) and
`__getitem__` returns the next good sample instead (deterministically i+1, i+2, ..., at most
`max_retries` times, like the official retry); `load(i)` returns None instead. Each item also
carries `skipped`, the reasons skipped on the way to it, so counts made in DataLoader worker
processes reach the main process through the batches.

Conversation text is prepared as the official training code prepares it (`training_conversation`,
reference-spec 4.4), whatever the sample's last turn: a one-image sample whose FIRST human turn
has no `<image>` gets `<image>\\n` prepended to that turn (the official `multi_modal_get_item`
looks only there), then every value is stripped (`preprocess_internlm`). A one-image sample
whose placeholder stands only in a later human turn would then have two placeholders for one
image (the official code would train on the second as plain text); it is refused instead, as
an `image_count_mismatch` SampleError naming file, line and id (skipped and counted with
`skip_bad`).
"""

from __future__ import annotations

import io
import random
from collections.abc import Sequence
from os import PathLike
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from v2pe.data.annotations import (
    CORRUPT_IMAGE,
    IMAGE_COUNT_MISMATCH,
    INVALID_CONVERSATION,
    MISSING_IMAGE,
    TOO_LONG,
    DatasetSpec,
    Sample,
    SampleError,
    SkipReport,
    image_field,
    load_meta,
    read_annotations,
    repeat_indices,
    repeated_count,
    sample_byte_limit,
)
from v2pe.data.lengths import LengthMeter
from v2pe.errors import ConfigError, DataError, SampleTooLongError
from v2pe.positions import DEFAULT_DELTA_CHOICES, TRAINING_DELTA_WORDS, parse_delta, resolve_deltas
from v2pe.processing.tiling import load_image


def sample_seed(seed: int, index: int, stream: int = 0) -> int:
    """A well-mixed 63-bit seed for (seed, index, stream)."""
    state = np.random.SeedSequence([int(seed), int(index), int(stream)]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def sample_generator(seed: int, index: int) -> torch.Generator:
    """The torch generator of sample `index` (its random deltas)."""
    return torch.Generator().manual_seed(sample_seed(seed, index))


def processor_for_dataset(processor, spec: DatasetSpec):
    """The processor with a dataset's tile overrides (`dynamic_image_size`, `max_dynamic_patch`): a copy."""
    if spec.dynamic_image_size is False:
        return processor.with_tiles(max_tiles=1, min_tiles=1)
    if spec.max_dynamic_patch is not None:
        return processor.with_tiles(max_tiles=spec.max_dynamic_patch)
    return processor


def training_conversation(sample: Sample) -> list[dict]:
    """The sample's turns as the official training code renders them (reference-spec 4.4): the
    training placeholder rule (`<image>\\n` + the first human turn when a one-image sample has
    none there), then every value stripped. SampleError (image_count_mismatch) when the rule
    leaves more placeholders than images: a one-image sample with `<image>` only in a later turn."""
    from v2pe.processing.processor import add_missing_image_placeholder
    from v2pe.tokens import IMAGE_PLACEHOLDER

    prepared = add_missing_image_placeholder(sample.conversations, len(sample.images), training=True)
    turns = [{**turn, "value": turn["value"].strip()} for turn in prepared]
    placeholders = sum(turn["value"].count(IMAGE_PLACEHOLDER) for turn in turns)
    if placeholders != len(sample.images):
        message = f"{placeholders} `<image>` placeholders but {len(sample.images)} images after the official training placeholder rule"
        if len(sample.images) == 1 and IMAGE_PLACEHOLDER not in sample.conversations[_first_human(sample.conversations)]["value"]:
            message = (
                "one image whose `<image>` placeholder is not in the first human turn: the official training code prepends"
                " `<image>\\n` to the first human turn whenever that turn has none (it does not look at later turns), which"
                f" gives {placeholders} placeholders for 1 image (it would keep the later `<image>` as plain text);"
                " move the placeholder into the first human turn"
            )
        raise SampleError(message, IMAGE_COUNT_MISMATCH, sample.where("conversations"))
    return turns


def load_sample_image(path: str | PathLike, where: str) -> Image.Image:
    """The one check of an image file, used by training and by `v2pe data stats` alike: a full
    decode (a header alone does not show a truncated PNG or JPEG); SampleError missing_image or
    corrupt_image naming `where` otherwise."""
    try:
        return load_image(path)
    except DataError as err:
        raise image_error(err, path, where) from err


def image_error(err: DataError, path: str | PathLike, where: str) -> SampleError:
    """An unreadable image as a SampleError: missing_image when the file is absent, else corrupt_image."""
    return SampleError(str(err), MISSING_IMAGE if not Path(path).exists() else CORRUPT_IMAGE, where)


def _first_human(conversations: Sequence[dict]) -> int:
    return next(i for i, turn in enumerate(conversations) if turn.get("from") == "human")


def jpeg_augment(image: Image.Image, rng: random.Random) -> Image.Image:
    """The official training transform's random JPEG re-encode (quality uniform in 75..100)."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=rng.randint(75, 100))
    buffer.seek(0)
    with Image.open(buffer) as reopened:
        return reopened.convert("RGB")


class _Source:
    """One dataset of the meta file: its samples and its processor."""

    def __init__(self, spec: DatasetSpec, samples: list[Sample], processor):
        self.spec = spec
        self.samples = samples
        self.processor = processor
        self.meter = LengthMeter(processor)


class SupervisedDataset(torch.utils.data.Dataset):
    """Samples of a meta JSON, processed into model inputs with their per-image deltas
    (`image_deltas`, float32, row-major image order; the model computes the positions).

    Args:
        meta: a meta JSON path, or DatasetSpecs.
        processor: a `v2pe.processing.Processor` (its `max_length` bounds every sample).
        delta: "random" (one draw per image from `delta_choices`, seeded per sample) or a float.
        seed: drives repeat_time draws, shuffling, deltas and augmentation.
        shuffle: a seeded permutation of all items (else datasets in meta order, lines in file order).
        skip_bad: skip and count bad samples instead of raising.
        check_images: check at build time that every image file exists (one stat per image).
        max_sample_bytes: the longest annotation line read (default: 16 bytes per token of the
            processor's max_length; see `annotations.sample_byte_limit`).

    Every dataset must give at least one item and at most MAX_EXPANDED_SAMPLES after
    repeat_time (ConfigError naming the meta file and the dataset).
    """

    def __init__(
        self,
        meta: str | PathLike | Sequence[DatasetSpec],
        processor,
        *,
        delta: float | str = "random",
        delta_choices: Sequence[float] = DEFAULT_DELTA_CHOICES,
        seed: int = 0,
        shuffle: bool = False,
        skip_bad: bool = False,
        max_retries: int = 10,
        check_images: bool = False,
        report: SkipReport | None = None,
        max_sample_bytes: int | None = None,
    ):
        self.delta = parse_delta(delta, "delta", words=TRAINING_DELTA_WORDS, error=ConfigError)  # now, not at the first item
        self.delta_choices = tuple(delta_choices)
        self.seed, self.skip_bad, self.max_retries = int(seed), skip_bad, max_retries
        self.report = report if report is not None else SkipReport()
        specs = load_meta(meta) if isinstance(meta, (str, PathLike)) else list(meta)
        line_limit = sample_byte_limit(processor.max_length, max_sample_bytes)
        self.sources = [
            _Source(spec, self._read(spec, check_images, line_limit), processor_for_dataset(processor, spec))
            for spec in specs
        ]
        self.index = self._build_index(shuffle)

    def _read(self, spec: DatasetSpec, check_images: bool, line_limit: int) -> list[Sample]:
        samples = read_annotations(
            spec.annotation, spec.root, skip_bad=self.skip_bad, report=self.report, check_images=check_images,
            allow_outside_root=spec.allow_outside_root, max_sample_bytes=line_limit,
        )
        repeated_count(spec, len(samples))  # empty, rounds to 0 or too many: say so now, not in the sampler
        return samples

    def _build_index(self, shuffle: bool) -> np.ndarray:
        rows = []
        for source_index, source in enumerate(self.sources):
            rng = random.Random(sample_seed(self.seed, source_index, stream=1))
            lines = repeat_indices(len(source.samples), source.spec.repeat_time, rng)
            rows.append(np.stack([np.full(len(lines), source_index), np.asarray(lines, dtype=np.int64)], axis=1) if lines else np.zeros((0, 2), dtype=np.int64))
        index = np.concatenate(rows) if rows else np.zeros((0, 2), dtype=np.int64)
        if shuffle:
            index = index[np.random.default_rng(sample_seed(self.seed, 0, stream=2)).permutation(len(index))]
        return index

    def __len__(self) -> int:
        return len(self.index)

    def sample(self, index: int) -> Sample:
        """The annotation line behind item `index`."""
        source_index, line_index = self.index[index]
        return self.sources[source_index].samples[line_index]

    def source(self, index: int) -> _Source:
        return self.sources[self.index[index][0]]

    def __getitem__(self, index: int) -> dict:
        skipped: list[str] = []
        current = index
        for _ in range(self.max_retries + 1):
            item = self.load(current, _skipped=skipped)
            if item is not None:
                item["skipped"] = skipped
                return item
            current = (current + 1) % len(self)
        raise DataError(f"{self.max_retries + 1} bad samples in a row from item {index}; see the skip report:\n{self.report.summary()}")

    def load(self, index: int, _skipped: list[str] | None = None) -> dict | None:
        """Item `index` exactly (no substitution): None if it is bad and skip_bad is set."""
        if not 0 <= index < len(self):
            raise IndexError(f"item {index} out of range for {len(self)} items")
        try:
            return self._process(index)
        except SampleError as error:
            if not self.skip_bad:
                raise
            self.report.add_error(error)
            if _skipped is not None:
                _skipped.append(error.reason)
            return None

    def _process(self, index: int) -> dict:
        sample, source = self.sample(index), self.source(index)
        images = [self._load_image(sample, k, index, source.spec.data_augment) for k in range(len(sample.images))]
        generator = sample_generator(self.seed, index)
        if self.delta == "random":
            deltas = resolve_deltas("random", len(images), generator=generator, delta_choices=self.delta_choices)
        else:
            deltas = torch.full((len(images),), self.delta, dtype=torch.float64)
        conversation = training_conversation(sample)
        try:
            item = source.processor.encode(conversation, images, sample_id=sample.id)
        except DataError as err:
            reason = TOO_LONG if isinstance(err, SampleTooLongError) else INVALID_CONVERSATION
            field_name = "conversations"
            raise SampleError(str(err), reason, sample.where(field_name)) from err
        item["image_deltas"] = deltas.to(torch.float32)  # the model computes the positions from them
        item["index"] = index
        item["id"] = sample.id
        return item

    def _load_image(self, sample: Sample, k: int, index: int, augment: bool) -> Image.Image:
        image = load_sample_image(sample.images[k], sample.where(image_field(sample, k)))
        if augment:
            image = jpeg_augment(image, random.Random(sample_seed(self.seed, index, stream=3 + k)))
        return image

    # ---- lengths, for packing -----------------------------------------------------------

    def measure(self, index: int) -> int | None:
        """The exact token count of item `index` (reads image headers, no pixels: a truncated
        image is found when the item is loaded); None if it is bad and skip_bad is set
        (counted), else SampleError."""
        sample, source = self.sample(index), self.source(index)
        try:
            for k, path in enumerate(sample.images):
                try:
                    source.meter.tiles(path)
                except DataError as err:
                    raise image_error(err, path, sample.where(image_field(sample, k))) from err
            length = source.meter.measure(training_conversation(sample), sample.images, sample_id=sample.id).total
            max_length = source.processor.max_length
            if max_length is not None and length > max_length:
                raise SampleError(f"{length} tokens, more than max_length={max_length} (samples are never truncated; drop it or raise max_length)", TOO_LONG, sample.where("conversations"))
            return length
        except SampleError as error:
            if not self.skip_bad:
                raise
            self.report.add_error(error)
            return None

    def lengths(self, progress: bool = False) -> list[int | None]:
        """`measure` for every item (None for skipped ones)."""
        indices = range(len(self))
        if progress:
            from tqdm import tqdm

            indices = tqdm(indices, desc="measuring samples", unit="sample")
        return [self.measure(i) for i in indices]
