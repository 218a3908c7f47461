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


# ----------------------------------------------------------------------------- general benchmarks
# POPE per-category metrics are `pope.pope_metrics`; the official `eval_pope.py` ends with
# "Overall F1" = the mean F1 over the category files.


def pope_overall_f1(category_metrics: Mapping[str, Mapping[str, float]]) -> float | None:
    """`eval_pope.py`'s Overall F1: mean of the categories' F1 (None without categories)."""
    values = [m["f1"] for m in category_metrics.values()]
    return sum(values) / len(values) if values else None


#: SEED-Bench v1 question types (`SEED-Bench.json` "question_type"); 1-9 image, 10-12 video.
SEED_QUESTION_TYPES = {
    1: "Scene Understanding", 2: "Instance Identity", 3: "Instance Attributes", 4: "Instance Location",
    5: "Instances Counting", 6: "Spatial Relation", 7: "Instance Interaction", 8: "Visual Reasoning",
    9: "Text Understanding", 10: "Action Recognition", 11: "Action Prediction", 12: "Procedure Understanding",
}


def seed_type_scores(samples: Iterable[Mapping]) -> dict:
    """SEED `calculation.py`: accuracy per question type id, and image (types 1-9) / video
    (10-12) / total accuracy over all samples (0..1). Samples: {'question_type_id', 'score'};
    a missing type id counts under None. The official script divides by zero (and stops) for a
    type without samples; types without samples are simply absent here, and image/video are
    None when they have no samples."""
    by_type: dict = {}
    for sample in samples:
        by_type.setdefault(sample.get("question_type_id"), []).append(float(sample["score"]))
    def mean(values):
        return sum(values) / len(values) if values else None
    image = [s for t, v in by_type.items() if isinstance(t, int) and 1 <= t <= 9 for s in v]
    video = [s for t, v in by_type.items() if not (isinstance(t, int) and 1 <= t <= 9) for s in v]
    return {
        "types": {t: {"accuracy": mean(v), "n": len(v)} for t, v in sorted(by_type.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))},
        "image": mean(image), "video": mean(video), "total": mean(image + video),
    }


MMBENCH_CIRCULAR_MOD = 1_000_000


def mmbench_circular(samples: Iterable[Mapping]) -> dict:
    """MMBench circular evaluation (the MMBench server / VLMEvalKit rule; the InternVL script
    only writes the submission file): rows whose `index % 1e6` agree are the circular passes of
    one question, and the question counts as right only when every pass is right. Samples:
    {'index', 'score', 'category'}. Returns overall and per-category accuracies (0..1) of the
    plain per-row score and of the circular score, with the number of questions."""
    rows: list[tuple[int, float, str]] = [(int(s["index"]), float(s["score"]), s.get("category") or "?") for s in samples]
    groups: dict[int, list[tuple[float, str]]] = {}
    for index, score, category in rows:
        groups.setdefault(index % MMBENCH_CIRCULAR_MOD, []).append((score, category))
    def per_category(items):
        table: dict[str, list[float]] = {}
        for score, category in items:
            table.setdefault(category, []).append(score)
        return {c: sum(v) / len(v) for c, v in sorted(table.items())}
    circular = [(float(all(s == 1.0 for s, _ in members)), members[0][1]) for members in groups.values()]
    return {
        "vanilla": sum(s for _, s, _ in rows) / len(rows) if rows else None,
        "vanilla_categories": per_category([(s, c) for _, s, c in rows]),
        "circular": sum(s for s, _ in circular) / len(circular) if circular else None,
        "circular_categories": per_category(circular),
        "questions": len(groups),
        "rows": len(rows),
        "has_circular_passes": any(len(m) > 1 for m in groups.values()),
    }


#: MMMU `data_utils.DOMAIN_CAT2SUB_CAT`.
MMMU_DOMAINS: dict[str, tuple[str, ...]] = {
    "Art and Design": ("Art", "Art_Theory", "Design", "Music"),
    "Business": ("Accounting", "Economics", "Finance", "Manage", "Marketing"),
    "Science": ("Biology", "Chemistry", "Geography", "Math", "Physics"),
    "Health and Medicine": ("Basic_Medical_Science", "Clinical_Medicine", "Diagnostics_and_Laboratory_Medicine",
                            "Pharmacy", "Public_Health"),
    "Humanities and Social Science": ("History", "Literature", "Sociology", "Psychology"),
    "Tech and Engineering": ("Agriculture", "Architecture_and_Engineering", "Computer_Science", "Electronics",
                             "Energy_and_Power", "Materials", "Mechanical_Engineering"),
}


def mmmu_summary(subjects: Mapping[str, tuple[float, int]]) -> dict:
    """`main_eval_only.py`: per subject (summed score, samples) -> per-domain and overall
    instance-level accuracy (sample-weighted, 0..1; a domain without subjects is 0 with num 0,
    as `calculate_ins_level_acc`). Subjects outside the 30 MMMU subjects count only in Overall."""
    def level(names):
        correct = sum(subjects[n][0] for n in names)
        number = sum(subjects[n][1] for n in names)
        return {"acc": correct / number if number else 0.0, "num": number}
    domains = {domain: level([n for n in members if n in subjects]) for domain, members in MMMU_DOMAINS.items()}
    return {"domains": domains, "overall": level(list(subjects))}
