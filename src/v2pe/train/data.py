"""Training data from `v2pe.data`: the official meta JSON (or synthetic samples written on the fly),
`SupervisedDataset` with per-sample random deltas, optional packing, and the collator that adds
next-token targets with the official loss weights.

Both datasets are map-style and item i is a pure function of (data, seed, i), so the Trainer's
seeded sampler fixes the data order and a resumed run skips exactly the batches it had seen.
"""

from __future__ import annotations

from pathlib import Path

from v2pe.data.dataset import SupervisedDataset
from v2pe.data.packing import PackedDataset, model_inputs
from v2pe.files import read_json_object, write_json_file
from v2pe.processing.collate import collate
from v2pe.train.config import TrainConfig
from v2pe.train.loss import shift_targets


def synthetic_meta(folder: Path, options: dict) -> Path:
    """Write the synthetic source into `folder` once (again only if the options changed)."""
    from v2pe.data.synthetic import write_synthetic

    options = {"n": 64, "seed": 0, **options}
    stamp = folder / "options.json"
    meta = folder / "meta.json"
    if meta.is_file() and read_json_object(stamp, "synthetic data stamp", optional=True) == options:
        return meta
    write_synthetic(folder, **options)
    write_json_file(stamp, options, indent=None, sort_keys=True)
    return meta


def build_dataset(config: TrainConfig, processor, args=None):
    """The training dataset of a recipe. With `args` (TrainingArguments) the synthetic data is
    written by the main process while the others wait."""
    data = config.data
    if data.source == "synthetic":
        folder = Path(config.train.output_dir) / "synthetic-data"
        if args is not None:
            with args.main_process_first(desc="writing synthetic data", local=False):
                meta = synthetic_meta(folder, data.synthetic)
        else:
            meta = synthetic_meta(folder, data.synthetic)
    else:
        meta = Path(data.meta_path)
    dataset = SupervisedDataset(
        meta,
        processor,
        delta=config.v2pe.delta,
        delta_choices=config.v2pe.delta_choices,
        seed=config.v2pe.seed,
        shuffle=True,
        skip_bad=data.skip_bad_samples,
    )
    if not data.packing:
        return dataset
    return PackedDataset(dataset, data.max_packed_tokens, max_images=data.num_images_expected, max_open=data.max_buffer_size)


class TrainCollator:
    """Batches for `V2PETrainer`: model inputs, and `shift_labels` / `shift_weights`.

    The per-image deltas come from the dataset (drawn per sample, float32) and go to the model
    as `delta`: the model computes the positions. Targets are shifted here, on whole rows, so
    that sequence parallelism can shard them like the tokens. A prediction across a
    packed-sample boundary is never scored.
    """

    def __init__(self, pad_token_id: int, loss_reduction: str = "token"):
        self.pad_token_id = pad_token_id
        self.loss_reduction = loss_reduction

    def __call__(self, items: list[dict]) -> dict:
        return finish_batch(collate(items, pad_token_id=self.pad_token_id), self.loss_reduction)


def finish_batch(batch: dict, loss_reduction: str) -> dict:
    """Model inputs + shifted targets and weights (+ `skipped` counts for reporting)."""
    out = model_inputs(batch)
    out["shift_labels"], out["shift_weights"] = shift_targets(batch["labels"], batch.get("sequence_ids"), loss_reduction)
    out["skipped"] = batch.get("skipped", {})
    return out
