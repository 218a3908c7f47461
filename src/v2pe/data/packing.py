"""Packing: several samples in one row up to a token budget, never splitting a sample.

* `plan_packs(lengths, budget)`: greedy first-fit over a bounded set of open packs, in data
  order (the official `PackedDataset` keeps up to `max_buffer_size` buffers and puts each
  sample in the first one where it fits). A pack is closed when it is full (or reaches
  `max_images`); when too many packs are open the fullest one is closed. Deterministic.
  A sample longer than the budget is a DataError, or a counted skip (`over_budget`).
* `pack_samples(samples)`: one row: concatenated input_ids, labels, `sequence_ids`
  (0, 0, ..., 1, 1, ...), per-image deltas, pixel values and tiles in sample order. The model
  computes the row's positions from the ids, the deltas and `sequence_ids`, restarting at 0 at
  each sample: each sample gets the positions it would get alone (tested).
* rows are batched by `v2pe.processing.collate.collate` (padding: labels -100, attention 0,
  sequence id -1). The model keeps samples apart when given `sequence_ids`.
* `PackedDataset`: a map-style Dataset of packs over a `SupervisedDataset`, planned from
  exact lengths measured without pixel work, so pack p is the same in every run and worker.
* the loss of packed batches (each sub-sample weighted on its own, no prediction across a
  sample boundary) is `v2pe.train.loss`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from v2pe.data.annotations import OVER_BUDGET, SampleError, SkipReport
from v2pe.errors import ConfigError, DataError

# --------------------------------------------------------------------------------------------
# planning


@dataclass
class PackPlan:
    """Packs as lists of sample indices, with their token counts."""

    packs: list[list[int]]
    pack_lengths: list[int]
    budget: int
    skipped: SkipReport = field(default_factory=SkipReport)

    @property
    def efficiency(self) -> float:
        return packing_efficiency(self.pack_lengths, self.budget)

    def __len__(self) -> int:
        return len(self.packs)


def plan_packs(
    lengths: Sequence[int | None],
    budget: int,
    *,
    num_images: Sequence[int] | None = None,
    max_images: int | None = None,
    max_open: int = 20,
    skip_over_budget: bool = False,
    report: SkipReport | None = None,
    names: Sequence[str] | None = None,
) -> PackPlan:
    """Greedy first-fit packing of samples (by index) into rows of at most `budget` tokens.

    `lengths[i]` None means sample i was already skipped; it is left out. `num_images` and
    `max_images` also bound the images per pack (the official `num_images_expected`).
    """
    if budget < 1:
        raise ConfigError(f"the packing budget must be >= 1 token, got {budget}")
    if max_open < 1:
        raise ConfigError(f"max_open must be >= 1, got {max_open}")
    report = report if report is not None else SkipReport()
    images = list(num_images) if num_images is not None else [0] * len(lengths)
    open_packs: list[list[int]] = []
    open_tokens: list[int] = []
    open_images: list[int] = []
    done, done_tokens = [], []

    def close(k: int) -> None:
        done.append(open_packs.pop(k))
        done_tokens.append(open_tokens.pop(k))
        open_images.pop(k)

    for index, length in enumerate(lengths):
        if length is None:
            continue
        name = names[index] if names is not None else f"sample {index}"
        over_images = max_images is not None and images[index] > max_images
        if length > budget or over_images:
            what = f"{length} tokens, more than the packing budget of {budget}" if length > budget else f"{images[index]} images, more than max_images={max_images}"
            error = SampleError(f"{what} (samples are never split)", OVER_BUDGET, name)
            if not skip_over_budget:
                raise error
            report.add_error(error)
            continue
        target = next(
            (k for k in range(len(open_packs)) if open_tokens[k] + length <= budget and (max_images is None or open_images[k] + images[index] <= max_images)),
            None,
        )
        if target is None:
            open_packs.append([])
            open_tokens.append(0)
            open_images.append(0)
            target = len(open_packs) - 1
        open_packs[target].append(index)
        open_tokens[target] += length
        open_images[target] += images[index]
        if open_tokens[target] == budget or (max_images is not None and open_images[target] == max_images):
            close(target)
        elif len(open_packs) > max_open:
            close(max(range(len(open_packs)), key=lambda k: open_tokens[k]))
    while open_packs:
        close(0)
    return PackPlan(done, done_tokens, budget, report)


def packing_efficiency(pack_lengths: Sequence[int], budget: int) -> float:
    """Real tokens / (packs x budget)."""
    if not pack_lengths:
        return 0.0
    return sum(pack_lengths) / (len(pack_lengths) * budget)


# --------------------------------------------------------------------------------------------
# rows and batches


def pack_samples(samples: Sequence[dict]) -> dict:
    """Samples (1-D tensors as from `Processor.encode` / `SupervisedDataset`) to one packed row."""
    if not samples:
        raise DataError("cannot pack an empty list of samples")
    lengths = [len(s["input_ids"]) for s in samples]
    row = {
        "input_ids": torch.cat([s["input_ids"] for s in samples]),
        "labels": torch.cat([s["labels"] for s in samples]),
        "attention_mask": torch.ones(sum(lengths), dtype=torch.long),
        "sequence_ids": torch.repeat_interleave(torch.arange(len(samples)), torch.tensor(lengths)),
        "pixel_values": _cat([s["pixel_values"] for s in samples]),
        "num_tiles": torch.cat([s["num_tiles"] for s in samples]),
        "sample_lengths": torch.tensor(lengths),
    }
    if all("image_deltas" in s for s in samples):
        row["image_deltas"] = torch.cat([s["image_deltas"] for s in samples])
    if all("index" in s for s in samples):
        row["index"] = torch.tensor([s["index"] for s in samples])
    row["skipped"] = [reason for s in samples for reason in s.get("skipped", ())]
    return row


def _cat(tensors: list[torch.Tensor]) -> torch.Tensor:
    """torch.cat without the copy for a single tensor (pixel values of a 32K row are ~300 MB)."""
    return tensors[0] if len(tensors) == 1 else torch.cat(tensors)


MODEL_INPUT_KEYS = ("input_ids", "attention_mask", "sequence_ids", "pixel_values")


def model_inputs(batch: dict) -> dict:
    """What the model's forward takes from a (packed) batch: the keys of MODEL_INPUT_KEYS, and
    the per-image deltas as `delta` (the model computes the V2PE positions from them)."""
    inputs = {key: batch[key] for key in MODEL_INPUT_KEYS if key in batch}
    if "image_deltas" in batch:
        inputs["delta"] = batch["image_deltas"]
    return inputs


class PackedDataset(torch.utils.data.Dataset):
    """Packs of a `SupervisedDataset`, planned once from exact lengths (no pixel work).

    Item p is `pack_samples` of the plan's p-th pack. Samples found bad while measuring are
    left out of the plan (counted when the dataset skips bad samples); a sample found bad only
    when loaded (a corrupt image) is dropped from its pack and counted.
    """

    def __init__(
        self,
        dataset,
        budget: int,
        *,
        max_images: int | None = None,
        max_open: int = 20,
        lengths: Sequence[int | None] | None = None,
        progress: bool = False,
    ):
        self.dataset = dataset
        self.budget = budget
        self.lengths = list(lengths) if lengths is not None else dataset.lengths(progress=progress)
        num_images = [len(dataset.sample(i).images) for i in range(len(dataset))]
        names = [dataset.sample(i).where() for i in range(len(dataset))]
        self.plan = plan_packs(
            self.lengths,
            budget,
            num_images=num_images,
            max_images=max_images,
            max_open=max_open,
            skip_over_budget=dataset.skip_bad,
            report=dataset.report,
            names=names,
        )

    @property
    def efficiency(self) -> float:
        return self.plan.efficiency

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, pack: int) -> dict:
        for attempt in range(len(self)):
            indices = self.plan.packs[(pack + attempt) % len(self)]
            skipped: list[str] = []
            samples = []
            for index in indices:
                item = self.dataset.load(index, _skipped=skipped)
                if item is None:
                    continue
                if len(item["input_ids"]) != self.lengths[index]:
                    raise DataError(f"{self.dataset.sample(index).where()}: planned {self.lengths[index]} tokens, loaded {len(item['input_ids'])} (lengths passed in do not match the processor)")
                samples.append(item)
            if samples:
                row = pack_samples(samples)
                row["skipped"] = skipped + row["skipped"]
                return row
        raise DataError("every sample of every pack was skipped")
