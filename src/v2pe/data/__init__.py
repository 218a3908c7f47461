"""The data layer: the official meta-JSON + JSONL format, a Dataset with per-image deltas (the model computes positions),
packing, a synthetic VQA source and long-context builders
(Long-VQA, MM-NIAH-style needles)."""

from v2pe.data.annotations import (
    META_KEYS,
    DatasetSpec,
    Sample,
    SampleError,
    SkipReport,
    load_meta,
    read_annotations,
    repeat_indices,
    write_jsonl,
    write_meta,
)
from v2pe.data.builders import NEEDLE_TASKS, build_long_vqa, build_needle, load_source, mmniah_prompt, mmniah_to_conversation
from v2pe.data.dataset import SupervisedDataset, sample_generator
from v2pe.data.lengths import LengthMeter, format_histogram, length_histogram
from v2pe.data.packing import (
    PackedDataset,
    PackPlan,
    model_inputs,
    pack_samples,
    packing_efficiency,
    plan_packs,
)
from v2pe.data.stats import collect_stats
from v2pe.data.synthetic import write_synthetic

__all__ = [
    "META_KEYS",
    "NEEDLE_TASKS",
    "DatasetSpec",
    "LengthMeter",
    "PackPlan",
    "PackedDataset",
    "Sample",
    "SampleError",
    "SkipReport",
    "SupervisedDataset",
    "build_long_vqa",
    "build_needle",
    "collect_stats",
    "format_histogram",
    "length_histogram",
    "load_meta",
    "load_source",
    "mmniah_prompt",
    "mmniah_to_conversation",
    "model_inputs",
    "pack_samples",
    "packing_efficiency",
    "plan_packs",
    "read_annotations",
    "repeat_indices",
    "sample_generator",
    "write_jsonl",
    "write_meta",
    "write_synthetic",
]
