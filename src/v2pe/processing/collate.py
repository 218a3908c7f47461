"""The one collate: encoded samples or packed rows to a padded batch.

A row is a dict of 1-D tensors as `Processor.encode`, `SupervisedDataset` or `pack_samples`
make them. Token-aligned keys are padded to the longest row (or to `pad_to`), on the right
(training) or on the left (generation appends after the last column):

| key | padding |
| --- | --- |
| input_ids | the pad token |
| attention_mask | 0 |
| labels | IGNORE_INDEX (-100) |
| sequence_ids | -1 (packed rows: a sample id per token) |
| position_ids | 1.0 (explicit positions only; the official padding position) |

Per-image and per-sample values (`pixel_values`, `num_tiles`, `image_deltas`, `sample_lengths`,
`index`) are concatenated in row order, so per-image deltas stay in row-major image order;
`skipped` (the reasons samples were skipped on the way to each row) becomes reason -> count.
None rows (samples a dataset skipped) are dropped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from v2pe.errors import DataError
from v2pe.tokens import IGNORE_INDEX

#: Token-aligned keys and their padding value (the pad token id is given per call).
PADDING = {"input_ids": None, "attention_mask": 0, "labels": IGNORE_INDEX, "sequence_ids": -1, "position_ids": 1.0}
#: Keys concatenated in row order.
CONCATENATED = ("pixel_values", "num_tiles", "image_deltas", "sample_lengths", "index")


def collate(
    rows: Sequence[Mapping | None],
    pad_token_id: int = 0,
    *,
    pad_to: int | None = None,
    padding_side: str = "right",
) -> dict:
    """A batch [B, L] of `rows` (see the module docstring)."""
    if padding_side not in ("right", "left"):
        raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
    kept = [row for row in rows if row is not None]
    if not kept:
        raise DataError("cannot collate an empty batch" + (" (every sample of it was skipped)" if rows else ""))
    length = max(len(row["input_ids"]) for row in kept)
    if pad_to is not None:
        if pad_to < length:
            raise DataError(f"a row has {length} tokens, more than pad_to={pad_to}")
        length = pad_to
    batch = {}
    for key, value in PADDING.items():
        if key not in kept[0]:
            continue
        out = torch.full((len(kept), length), pad_token_id if value is None else value, dtype=kept[0][key].dtype)
        for index, row in enumerate(kept):
            n = len(row[key])
            target = out[index, length - n :] if padding_side == "left" else out[index, :n]
            target.copy_(row[key])
        batch[key] = out
    for key in CONCATENATED:
        if all(key in row for row in kept):
            parts = [torch.as_tensor(row[key]).reshape(-1) if key == "index" else row[key] for row in kept]
            batch[key] = parts[0] if len(parts) == 1 else torch.cat(parts)  # no copy of a single row's pixels
    counts: dict[str, int] = {}
    for row in kept:
        for reason in row.get("skipped", ()):
            counts[reason] = counts.get(reason, 0) + 1
    if any("skipped" in row for row in kept):
        batch["skipped"] = counts
    return batch
