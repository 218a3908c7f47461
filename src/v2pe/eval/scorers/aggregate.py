"""Benchmark-level aggregation: MM-NIAH length x depth tables and MileBench groups.

MM-NIAH (`calculate_scores.py`): each sample falls in a context-length bin
(`np.digitize` over `MMNIAH_LENGTH_BINS`: bin j >= 1 covers
[bins[j-1], bins[j]), bin 0 is < 1000 tokens and is dropped, the last bin is
>= 64000) and a depth bin ``int(depth / 0.2)`` (a list of depths is averaged
first; depth 1.0 counts as 0.99; the float division is kept, so 0.6 lands in
bin 2). Cell accuracy = summed score / samples, 0 for an empty cell. The
task's per-length score is the mean of its 5 depth cells (empty cells count as
0), rounded to 6 digits. `overall` is the element-wise mean of the 6 tasks'
lists. The V2PE copy also reports sample-weighted accuracies.

MileBench (`score.py`, benchmarks.md section 5): datasets are grouped into
Realistic Temporal (T), Realistic Semantic (S), Needle-in-a-haystack (NI) and
Image Retrieval (IR); a group score is the mean of its datasets' scores (x100),
and V2PE's Avg is mean(T, S, NI).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from v2pe.errors import DataError

MMNIAH_LENGTH_BINS = (1000, 2000, 4000, 8000, 12000, 16000, 24000, 32000, 40000, 48000, 64000)
MMNIAH_DEPTH_INTERVAL = 0.2
MMNIAH_DEPTH_BINS = 5
MMNIAH_CONTEXT_RANGES = tuple(f"{b // 1000}k" for b in MMNIAH_LENGTH_BINS)


def mmniah_length_bin(context_length: float) -> int:
    """np.digitize(x, MMNIAH_LENGTH_BINS): 0 below 1000, 11 at or above 64000."""
    return bisect.bisect_right(MMNIAH_LENGTH_BINS, context_length)


def mmniah_depth_bin(placed_depth: float | list[float]) -> int:
    """int(depth / 0.2) of the (mean) needle depth, with 1.0 counted as 0.99."""
    depth = sum(placed_depth) / len(placed_depth) if isinstance(placed_depth, list) else placed_depth
    if depth == 1.0:
        depth = 0.99
    index = int(depth / MMNIAH_DEPTH_INTERVAL)
    if not 0 <= index < MMNIAH_DEPTH_BINS:
        raise DataError(f"MM-NIAH placed_depth {placed_depth!r} is outside [0, 1]")
    return index


@dataclass
class MmniahTaskScores:
    """One task's table: per length bin (11, <1K dropped) and per depth bin (5)."""

    cells: list[list[float]]  # [length bin][depth bin] accuracy, 0 when empty
    scores: list[float]  # per length bin: mean over the 5 depth cells, rounded to 6 digits
    sample_numbers: list[int]  # samples per length bin
    weighted_acc: list[float]  # per length bin: summed score / samples (0 when empty)
    weighted_avg_acc: float  # summed score / samples over all kept bins


def mmniah_task_scores(samples: Iterable[Mapping]) -> MmniahTaskScores:
    """Aggregate one task's samples {'context_length', 'placed_depth', 'score'}."""
    rows = len(MMNIAH_LENGTH_BINS) + 1
    total = [[0] * MMNIAH_DEPTH_BINS for _ in range(rows)]
    correct = [[0.0] * MMNIAH_DEPTH_BINS for _ in range(rows)]
    for sample in samples:
        x = mmniah_length_bin(sample["context_length"])
        y = mmniah_depth_bin(sample["placed_depth"])
        total[x][y] += 1
        correct[x][y] += float(sample["score"])
    kept = range(1, rows)  # bin 0 (< 1000 tokens) is dropped
    cells = [[c / t if t else 0.0 for c, t in zip(correct[x], total[x], strict=True)] for x in kept]
    sample_numbers = [sum(total[x]) for x in kept]
    summed = [sum(correct[x]) for x in kept]
    return MmniahTaskScores(
        cells=cells,
        scores=[round(sum(row) / MMNIAH_DEPTH_BINS, 6) for row in cells],
        sample_numbers=sample_numbers,
        weighted_acc=[s / n if n else 0.0 for s, n in zip(summed, sample_numbers, strict=True)],
        weighted_avg_acc=sum(summed) / sum(sample_numbers) if sum(sample_numbers) else 0.0,
    )


def mmniah_overall(task_scores: Mapping[str, list[float]]) -> list[float] | None:
    """Element-wise mean over the tasks' per-length lists (rounded to 6 digits).

    The official script only reports it with exactly 6 tasks; otherwise None.
    """
    if len(task_scores) != 6:
        return None
    columns = zip(*task_scores.values(), strict=True)
    return [round(sum(column) / len(task_scores), 6) for column in columns]


MILEBENCH_GROUPS: dict[str, tuple[str, ...]] = {
    "T": (
        "ActionLocalization", "ActionPrediction", "ActionSequence", "CharacterOrder",
        "CounterfactualInference", "EgocentricNavigation", "MovingAttribute", "MovingDirection",
        "ObjectExistence", "ObjectInteraction", "ObjectShuffle", "SceneTransition", "StateChange",
    ),
    "S": (
        "ALFRED", "CLEVR-Change", "DocVQA", "IEdit", "MMCoQA", "MultiModalQA", "nuscenes",
        "OCR-VQA", "SlideVQA", "Spot-the-Diff", "TQA", "WebQA", "WikiVQA",
    ),
    "NI": ("TextNeedleInAHaystack", "ImageNeedleInAHaystack"),
    "IR": ("GPR1200",),
}
IMAGE_QUANTITY_LEVELS = ("Few", "Medium", "Many")


def milebench_metric(dataset: str, question_type: str) -> str:
    """Which MileBench rule scores a dataset: needle, mmcoqa, rouge_l or multichoice."""
    if "NeedleInAHaystack" in dataset:
        return "needle"
    if "MMCoQA" in dataset:
        return "mmcoqa"
    if question_type == "open-ended":
        return "rouge_l"
    if question_type == "multi-choice":
        return "multichoice"
    raise DataError(f"MileBench dataset {dataset!r} has unsupported question_type {question_type!r}")


def image_quantity_level(num_images: int) -> str:
    """V2PE's level from the image count: Few < 6, Medium 6..31, Many > 31."""
    if num_images < 6:
        return "Few"
    return "Many" if num_images > 31 else "Medium"


def milebench_dataset_scores(samples: Iterable[Mapping]) -> dict:
    """Mean score (0..1) of one dataset and its per-image-quantity-level means.

    Each sample has 'score' and either 'image_quantity_level' (the annotation's
    field, as the official evaluate.py) or 'num_images' (V2PE counts images).
    Empty levels report 0, as upstream.
    """
    scores: list[float] = []
    by_level: dict[str, list[float]] = {level: [] for level in IMAGE_QUANTITY_LEVELS}
    for sample in samples:
        level = sample.get("image_quantity_level") or image_quantity_level(int(sample["num_images"]))
        if level not in by_level:
            raise DataError(f"unknown MileBench image_quantity_level {level!r}")
        scores.append(float(sample["score"]))
        by_level[level].append(float(sample["score"]))
    if not scores:
        raise DataError("no MileBench samples to aggregate")
    return {
        "score": sum(scores) / len(scores),
        "image_quantity_level": {k: sum(v) / len(v) if v else 0 for k, v in by_level.items()},
        "image_quantity_level_counts": {k: len(v) for k, v in by_level.items()},
    }


def milebench_summary(dataset_scores: Mapping[str, float]) -> dict:
    """Group scores x100 (mean over the group's datasets present) and V2PE Avg.

    Returns {'T', 'S', 'NI', 'IR', 'Avg', 'missing'}: a group with none of its
    datasets is None, and Avg = mean(T, S, NI) needs all three.
    """
    summary: dict = {}
    missing = []
    for group, datasets in MILEBENCH_GROUPS.items():
        present = [dataset_scores[d] for d in datasets if d in dataset_scores]
        missing += [d for d in datasets if d not in dataset_scores]
        summary[group] = 100.0 * sum(present) / len(present) if present else None
    main_groups = [summary[g] for g in ("T", "S", "NI")]
    summary["Avg"] = sum(main_groups) / 3 if None not in main_groups else None
    summary["missing"] = missing
    return summary
