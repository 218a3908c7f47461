"""Reports of benchmark runs: Markdown tables, PNG plots, and a side-by-side summary.

    v2pe eval report runs/delta1 runs/v2pe --out reports/
    v2pe eval report runs/v2pe --official mm-niah outputs/mm_niah --out reports/

reads run folders written by the runners (`run.json` + one `<task>.jsonl` per task; the last
line of each sample id counts) and, with `--official BENCH PATH` (repeatable; BENCH mm-niah,
milebench or long-vqa), the official evaluation scripts' result files (read and scored again
line by line with v2pe's official scorers by `v2pe.eval.official_outputs`; reported after the
run folders, labelled `official-<folder>`), and writes to `--out`:

* `report.md`: a runs table (benchmark, model, delta, samples, errors), then for every run
  its benchmark's tables, and, with several runs of a benchmark, comparison tables (one
  column per run, e.g. delta=1 vs V2PE);
* `report.json`: every aggregate, machine-readable (`format` "v2pe-report/1"): `labels`
  (MM-NIAH length / depth bin names), `runs` [{label, path, benchmark, model, delta, source
  ("v2pe" | "official"), scorer_source, samples, errors, numbers}] with `numbers` the
  benchmark's numbers function's result (MM-NIAH: per task `scores` per length bin, `cells`
  length x depth, `mean`, and per split `overall` per length bin, Text / Image / Avg;
  MileBench: per dataset `score` and levels, `groups` T / S / NI / IR / Avg; Long-VQA: `tasks`
  {task: {group: score}}, `task_avg`, `group_avg`, `avg`; the other benchmarks' `datasets` and
  `headline`), and `comparisons` {benchmark: {runs, rows}} where a benchmark has several runs.
  `summary.json` is the same file under its earlier name;
* PNGs (matplotlib, optional): `<run>/mmniah_heatmap_<task>.png` (length x depth),
  `<run>/mmniah_accuracy_vs_length.png`, `<run>/longvqa_accuracy_vs_length.png`, and
  `compare_mmniah_accuracy_vs_length.png` / `compare_longvqa_accuracy_vs_length.png` across runs.

Aggregation is the official one (`scorers.aggregate`, `scorers.longvqa`):

* MM-NIAH: 11 context-length bins (1-2K ... 48-64K, >=64K; under 1K dropped) x 5 depth bins;
  a cell is the mean score (empty cell: 0), a task's score per length bin is the mean of its 5
  depth cells (empty cells count as 0), `overall` the mean over the 6 tasks (only with exactly
  6). Tables also give the per-task mean over the length bins that have samples, and V2PE's
  Text / Image / Avg (mean over text-needle tasks, image-needle tasks, and of the two). Heat
  maps leave empty cells blank (marked "-").
* MileBench: dataset score = mean sample score; groups T / S / NI / IR = mean over the group's
  datasets present (x100); Avg = mean(T, S, NI) when all three are present.
* Long-VQA: per task and length group (`<lo>_<hi>` of the file name), the official task score
  (x100): per-item means, corpus BLEU-4 / F1 over the task's lines; a sample that failed
  (error, no prediction) counts as an empty prediction. Avg = mean over tasks.
* VQA: per dataset mean score (x100).
* ScienceQA: Acc@1. POPE: per category accuracy / precision / recall / F1 / yes-ratio and the
  Overall F1 (mean over categories), as `eval_pope.py`. SEED: Acc@1 by first letter
  (`calculation.py`) and exact (`evaluate_seed.py`), per question type, image / video.
  MMBench: local per-row and circular accuracy where answers exist, per category, and the
  official submission file (`<run>/<task>.xlsx`, or `.tsv` without openpyxl). MMMU: per subject,
  instance-level per domain and Overall, as `main_eval_only.py`.

All scores are shown x100. A sample that failed (missing image, ...) counts as wrong.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from v2pe.errors import DataError
from v2pe.eval.runners.resumable import read_results, read_run_info
from v2pe.eval.scorers import ScoringError
from v2pe.eval.scorers.aggregate import (
    MILEBENCH_GROUPS,
    MMNIAH_DEPTH_BINS,
    MMNIAH_LENGTH_BINS,
    milebench_dataset_scores,
    milebench_summary,
    mmniah_overall,
    mmniah_task_scores,
    pope_overall_f1,
)
from v2pe.eval.scorers.longvqa import score_longvqa_task
from v2pe.eval.scorers.pope import pope_metrics

MMNIAH_LENGTH_LABELS = tuple(
    f"{lo // 1000}-{hi // 1000}K" for lo, hi in zip(MMNIAH_LENGTH_BINS, MMNIAH_LENGTH_BINS[1:])
) + (f">={MMNIAH_LENGTH_BINS[-1] // 1000}K",)
MMNIAH_DEPTH_LABELS = tuple(f"{20 * i}-{20 * (i + 1)}%" for i in range(MMNIAH_DEPTH_BINS))
MMNIAH_TASK_ORDER = ("retrieval-text", "retrieval-image", "counting-text", "counting-image", "reasoning-text", "reasoning-image")


@dataclass
class Run:
    """One run folder: run.json and the result lines of each task."""

    path: Path
    info: dict
    tasks: dict[str, list[dict]]
    label: str = ""

    @property
    def benchmark(self) -> str:
        return self.info.get("benchmark", "?")

    @property
    def samples(self) -> int:
        return sum(len(r) for r in self.tasks.values())

    @property
    def errors(self) -> int:
        return sum(1 for records in self.tasks.values() for r in records if r.get("error"))

    @property
    def delta(self) -> str:
        """The delta setting, with the deltas actually used when it was automatic."""
        setting = self.info.get("delta")
        used = sorted({r["delta"] for records in self.tasks.values() for r in records if r.get("delta") is not None})
        if setting == "auto" and used:
            return "auto (" + ", ".join(_delta_text(d) for d in used) + ")"
        return _delta_text(setting)


def _delta_text(delta) -> str:
    if isinstance(delta, (int, float)) and 0 < delta < 1 and abs(1 / delta - round(1 / delta)) < 1e-9:
        return f"1/{round(1 / delta)}"
    return f"{delta:g}" if isinstance(delta, (int, float)) else str(delta)


def load_run(path: str | Path) -> Run:
    path = Path(path)
    info = read_run_info(path)
    names = list(dict.fromkeys(info.get("tasks", [])))
    names += [p.stem for p in sorted(path.glob("*.jsonl")) if p.stem not in names]
    tasks = {}
    for name in names:
        records = list(read_results(path / f"{name}.jsonl").values())
        if records:
            tasks[name] = records
    return Run(path, info, tasks, path.name)


# ----------------------------------------------------------------------------- numbers


def _pct(value: float | None) -> float | None:
    return None if value is None else 100.0 * value


def mmniah_numbers(run: Run) -> dict:
    """Per task: cells, per-length scores, sample counts, mean; per split: overall, Text/Image/Avg."""
    tasks = {}
    for name in _ordered_mmniah_tasks(run.tasks):
        scores = mmniah_task_scores(
            {"context_length": r["context_length"], "placed_depth": r["placed_depth"], "score": float(r.get("score") or 0.0)}
            for r in run.tasks[name]
        )
        filled = [s for s, n in zip(scores.scores, scores.sample_numbers) if n]
        tasks[name] = {
            "cells": [[_pct(c) for c in row] for row in scores.cells],
            "cell_counts": _mmniah_cell_counts(run.tasks[name]),
            "scores": [_pct(s) for s in scores.scores],
            "sample_numbers": scores.sample_numbers,
            "mean": _pct(sum(filled) / len(filled)) if filled else None,
            "weighted_avg_acc": _pct(scores.weighted_avg_acc),
            "samples": len(run.tasks[name]),
            "dropped_under_1k": len(run.tasks[name]) - sum(scores.sample_numbers),
            "errors": sum(1 for r in run.tasks[name] if r.get("error")),
        }
    splits: dict[str, dict] = {}
    for name, numbers in tasks.items():
        base, split = _mmniah_split(name)
        splits.setdefault(split, {})[base] = numbers
    summary = {}
    for split, members in splits.items():
        overall = mmniah_overall({b: [s / 100 for s in n["scores"]] for b, n in members.items()})
        text = [n["mean"] for b, n in members.items() if b.endswith("-text") and n["mean"] is not None]
        image = [n["mean"] for b, n in members.items() if b.endswith("-image") and n["mean"] is not None]
        text_mean = sum(text) / len(text) if text else None
        image_mean = sum(image) / len(image) if image else None
        summary[split] = {
            "overall": [_pct(v) for v in overall] if overall is not None else None,
            "Text": text_mean,
            "Image": image_mean,
            "Avg": (text_mean + image_mean) / 2 if text and image else None,
            "tasks": sorted(members),
        }
    return {"tasks": tasks, "splits": summary}


def _mmniah_cell_counts(records: Sequence[Mapping]) -> list[list[int]]:
    from v2pe.eval.scorers.aggregate import mmniah_depth_bin, mmniah_length_bin

    counts = [[0] * MMNIAH_DEPTH_BINS for _ in MMNIAH_LENGTH_BINS]
    for r in records:
        x = mmniah_length_bin(r["context_length"])
        if x >= 1:
            counts[x - 1][mmniah_depth_bin(r["placed_depth"])] += 1
    return counts


def _mmniah_split(name: str) -> tuple[str, str]:
    for base in sorted(MMNIAH_TASK_ORDER, key=len, reverse=True):
        if name.startswith(base + "-"):
            return base, name[len(base) + 1:]
    return name, ""


def _ordered_mmniah_tasks(tasks: Mapping) -> list[str]:
    def key(name):
        base, split = _mmniah_split(name)
        order = MMNIAH_TASK_ORDER.index(base) if base in MMNIAH_TASK_ORDER else len(MMNIAH_TASK_ORDER)
        return split, order, name
    return sorted(tasks, key=key)


def milebench_numbers(run: Run) -> dict:
    datasets = {}
    for name, records in run.tasks.items():
        scores = milebench_dataset_scores(
            {"score": float(r.get("score") or 0.0), "image_quantity_level": r.get("image_quantity_level"),
             "num_images": r.get("num_images", 0)} for r in records
        )
        datasets[name] = {
            "score": _pct(scores["score"]),
            "levels": {k: _pct(v) for k, v in scores["image_quantity_level"].items()},
            "level_counts": scores["image_quantity_level_counts"],
            "samples": len(records),
            "errors": sum(1 for r in records if r.get("error")),
            # fewer {image#k} placeholders than images: run as the official code runs them (images shift)
            "shifted_images": sum(1 for r in records if r.get("placeholders", r.get("num_images", 0)) < r.get("num_images", 0)),
        }
    groups = milebench_summary({name: d["score"] / 100 for name, d in datasets.items()})
    return {"datasets": datasets, "groups": {k: groups[k] for k in ("T", "S", "NI", "IR", "Avg")}, "missing": groups["missing"]}


def longvqa_numbers(run: Run) -> dict:
    """{"tasks": {task: {group: score}}, "groups": [...], "group_avg": {group: mean over tasks},
    "task_avg": {task: mean over groups}, "avg": mean of everything, "notes": [...]}"""
    table: dict[str, dict[str, float]] = {}
    notes = []
    for name, records in run.tasks.items():
        task = records[0].get("extra", {}).get("task") or name.split("_")[0]
        group = records[0].get("group") or "all"
        items = [{"id": str(r["id"]), "pr": r["prediction"] if isinstance(r.get("prediction"), str) else "", "an": r["answer"]} for r in records]
        try:
            score = score_longvqa_task(task, items)
        except ScoringError as error:
            score = sum(float(r.get("score") or 0.0) for r in records) / len(records)
            notes.append(f"{name}: official corpus score impossible ({error}); mean of per-sample scores shown")
        table.setdefault(task, {})[group] = score
    groups = sorted({g for row in table.values() for g in row}, key=_group_order)
    group_avg = {g: _mean([row[g] for row in table.values() if g in row]) for g in groups}
    task_avg = {t: _mean(list(row.values())) for t, row in table.items()}
    return {"tasks": table, "groups": groups, "group_avg": group_avg, "task_avg": task_avg,
            "avg": _mean([v for row in table.values() for v in row.values()]), "notes": notes}


def _group_order(group: str):
    parts = group.split("_")
    return (0, int(parts[-1])) if parts[-1].isdigit() else (1, group)


def group_label(group: str) -> str:
    parts = group.split("_")
    return f"{parts[0]}-{parts[1]}K" if len(parts) == 2 and all(p.isdigit() for p in parts) else group


def vqa_numbers(run: Run) -> dict:
    return {"datasets": {name: {"score": _pct(sum(float(r.get("score") or 0.0) for r in records) / len(records)),
                                "samples": len(records), "errors": sum(1 for r in records if r.get("error"))}
                         for name, records in run.tasks.items()}}


NUMBERS = {"mm-niah": mmniah_numbers, "milebench": milebench_numbers, "long-vqa": longvqa_numbers, "vqa": vqa_numbers}


# General image benchmarks (runners scienceqa, pope, mmbench, mmmu, seed). Every numbers dict has
# "datasets" {task: {"score", "samples", "errors"}} (the comparison rows) and "headline" {label: value}.


def _task_rows(run: Run) -> dict:
    return {name: {"score": _pct(sum(float(r.get("score") or 0.0) for r in records) / len(records)),
                   "samples": len(records), "errors": sum(1 for r in records if r.get("error"))}
            for name, records in run.tasks.items()}


def scienceqa_numbers(run: Run) -> dict:
    datasets = _task_rows(run)
    return {"datasets": datasets, "headline": {f"{name} Acc@1": d["score"] for name, d in datasets.items()}}


def pope_numbers(run: Run) -> dict:
    """Per category (task) eval_pope.py's accuracy / precision / recall / F1 / yes-ratio; a
    failed sample (no prediction) counts as the wrong answer. Overall F1 = mean F1."""
    categories = {}
    for name, records in run.tasks.items():
        predictions = [r["prediction"] if isinstance(r.get("prediction"), str) and not r.get("error")
                       else ("no" if r["answer"] != "no" else "yes") for r in records]
        metrics = pope_metrics(predictions, [r["answer"] for r in records])
        categories[name] = {**{k: _pct(v) if k in ("accuracy", "precision", "recall", "f1", "yes_ratio") else v
                               for k, v in metrics.items()},
                            "samples": len(records), "errors": sum(1 for r in records if r.get("error"))}
    overall = pope_overall_f1(categories)
    datasets = {name: {"score": c["accuracy"], "samples": c["samples"], "errors": c["errors"]} for name, c in categories.items()}
    headline = {f"{name} F1": c["f1"] for name, c in categories.items()}
    headline["Overall F1"] = overall
    headline["mean accuracy"] = _mean([c["accuracy"] for c in categories.values()])
    return {"categories": categories, "overall_f1": overall, "datasets": datasets, "headline": headline}


def seed_numbers(run: Run) -> dict:
    from v2pe.eval.scorers.aggregate import SEED_QUESTION_TYPES, seed_type_scores

    tasks, headline = {}, {}
    for name, records in run.tasks.items():
        scores = seed_type_scores({"question_type_id": r.get("question_type_id"), "score": float(r.get("score") or 0.0)}
                                  for r in records)
        exact = sum(1 for r in records if isinstance(r.get("prediction"), str) and r["prediction"] == r["answer"]) / len(records)
        names = {r.get("question_type_id"): r.get("question_type") for r in records}
        tasks[name] = {
            "acc1_exact": _pct(exact), "acc1_first_char": _pct(scores["total"]),
            "image": _pct(scores["image"]), "video": _pct(scores["video"]),
            "types": {str(t): {"name": names.get(t) or SEED_QUESTION_TYPES.get(t) or "unknown", "accuracy": _pct(v["accuracy"]),
                               "n": v["n"]} for t, v in scores["types"].items()},
            "samples": len(records), "errors": sum(1 for r in records if r.get("error")),
        }
        headline[f"{name} Acc@1 (first letter)"] = tasks[name]["acc1_first_char"]
        headline[f"{name} Acc@1 (exact)"] = tasks[name]["acc1_exact"]
    datasets = {n: {"score": t["acc1_first_char"], "samples": t["samples"], "errors": t["errors"]} for n, t in tasks.items()}
    return {"tasks": tasks, "datasets": datasets, "headline": headline}


def mmbench_numbers(run: Run) -> dict:
    from v2pe.eval.scorers.aggregate import mmbench_circular

    tasks, headline = {}, {}
    for name, records in run.tasks.items():
        has_answers = any(r.get("answer") is not None for r in records)
        entry = {"has_answers": has_answers, "samples": len(records), "errors": sum(1 for r in records if r.get("error"))}
        if has_answers:
            c = mmbench_circular({"index": r.get("index", r["id"]), "score": float(r.get("score") or 0.0),
                                  "category": r.get("category")} for r in records)
            entry.update({"accuracy": _pct(c["vanilla"]), "circular": _pct(c["circular"]) if c["has_circular_passes"] else None,
                          "questions": c["questions"],
                          "categories": {k: _pct(v) for k, v in c["vanilla_categories"].items()},
                          "circular_categories": {k: _pct(v) for k, v in c["circular_categories"].items()}})
            headline[f"{name} accuracy"] = entry["accuracy"]
            if entry["circular"] is not None:
                headline[f"{name} circular"] = entry["circular"]
        tasks[name] = entry
    datasets = {n: {"score": t.get("accuracy"), "samples": t["samples"], "errors": t["errors"]} for n, t in tasks.items()}
    return {"tasks": tasks, "datasets": datasets, "headline": headline}


def mmmu_numbers(run: Run) -> dict:
    from v2pe.eval.scorers.aggregate import mmmu_summary

    subjects = {name: (sum(float(r.get("score") or 0.0) for r in records), len(records)) for name, records in run.tasks.items()}
    summary = mmmu_summary(subjects)
    datasets = _task_rows(run)
    headline = {"Overall": _pct(summary["overall"]["acc"])}
    headline.update({f"Overall-{d}": _pct(v["acc"]) for d, v in summary["domains"].items() if v["num"]})
    return {"datasets": datasets, "domains": {d: {"acc": _pct(v["acc"]), "num": v["num"]} for d, v in summary["domains"].items()},
            "overall": {"acc": _pct(summary["overall"]["acc"]), "num": summary["overall"]["num"]}, "headline": headline}


def mvbench_numbers(run: Run) -> dict:
    from v2pe.eval.runners.mvbench import aggregate

    final = aggregate(run.tasks)
    return {"datasets": _task_rows(run), "headline": {f"{name}": value for name, value in final.items()}}


def videomme_numbers(run: Run) -> dict:
    from v2pe.eval.runners.videomme import aggregate

    durations = aggregate(run.tasks)
    headline = {}
    for name, d in durations.items():
        headline[f"{name} accuracy"] = d["accuracy"]
        headline[f"{name} accuracy (answered only, eval_your_results.py)"] = d["accuracy_answered"]
    return {"datasets": _task_rows(run), "durations": durations, "headline": headline}


NUMBERS.update({"mvbench": mvbench_numbers, "videomme": videomme_numbers})
NUMBERS.update({"scienceqa": scienceqa_numbers, "pope": pope_numbers, "seed": seed_numbers, "mmbench": mmbench_numbers,
                "mmmu": mmmu_numbers})


def run_numbers(run: Run) -> dict:
    if run.benchmark not in NUMBERS:
        raise DataError(f"{run.path}: unknown benchmark {run.benchmark!r} in run.json")
    if not run.tasks:
        return {}
    return NUMBERS[run.benchmark](run)


def _mean(values: Sequence[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


# ----------------------------------------------------------------------------- markdown


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence], align_first_left: bool = True) -> str:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join([":---" if align_first_left else "---:"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def mmniah_markdown(numbers: dict) -> str:
    parts = ["Score per context-length bin (mean of the 5 depth cells, empty cells count as 0; x100). "
             "Mean: over the bins with samples."]
    header = ["task", *MMNIAH_LENGTH_LABELS, "mean", "n"]
    rows = [[name, *(_fmt(s) if c else "-" for s, c in zip(n["scores"], n["sample_numbers"])), _fmt(n["mean"]), n["samples"]]
            for name, n in numbers["tasks"].items()]
    for split, s in numbers["splits"].items():
        if s["overall"] is not None:
            label = f"**overall {split}**" if split else "**overall**"
            rows.append([label, *(_fmt(v) for v in s["overall"]), _fmt(_mean(s["overall"])), ""])
    parts.append(_table(header, rows))
    parts.append("Samples per length bin (under 1K dropped, as the official script):")
    parts.append(_table(["task", *MMNIAH_LENGTH_LABELS, "<1K"],
                        [[name, *n["sample_numbers"], n["dropped_under_1k"]] for name, n in numbers["tasks"].items()]))
    summary_rows = [[split or "-", _fmt(s["Text"]), _fmt(s["Image"]), _fmt(s["Avg"])] for split, s in numbers["splits"].items()]
    parts.append("V2PE Table 5 style (mean of the text-needle / image-needle tasks):")
    parts.append(_table(["split", "Text", "Image", "Avg"], summary_rows))
    for name, n in numbers["tasks"].items():
        parts.append(f"Length x depth cells of `{name}` (x100; '-' = no sample, counted as 0 above):")
        rows = []
        for label, row, counts in zip(MMNIAH_LENGTH_LABELS, n["cells"], n["cell_counts"]):
            if any(counts):
                rows.append([label, *(_fmt(v) if c else "-" for v, c in zip(row, counts))])
        parts.append(_table(["length \\ depth", *MMNIAH_DEPTH_LABELS], rows) if rows else "(no sample of 1K tokens or more)")
    return "\n\n".join(parts)


def milebench_markdown(numbers: dict) -> str:
    group_of = {d: g for g, members in MILEBENCH_GROUPS.items() for d in members}
    rows = [[name, group_of.get(name, "?"), _fmt(d["score"]),
             *(f"{_fmt(d['levels'][lvl])} ({d['level_counts'][lvl]})" for lvl in ("Few", "Medium", "Many")),
             d["samples"], d["errors"]]
            for name, d in sorted(numbers["datasets"].items(), key=lambda kv: (group_of.get(kv[0], "~"), kv[0]))]
    parts = ["Per dataset (x100; image-quantity levels with their sample counts):",
             _table(["dataset", "group", "score", "Few", "Medium", "Many", "n", "errors"], rows),
             "Groups (mean over the group's datasets present; Avg = mean(T, S, NI)):",
             _table(["T", "S", "NI", "IR", "Avg"], [[_fmt(numbers["groups"][g]) for g in ("T", "S", "NI", "IR", "Avg")]])]
    if numbers["missing"]:
        parts.append(f"Datasets not in this run ({len(numbers['missing'])}): {', '.join(numbers['missing'])}.")
    shifted = {name: d["shifted_images"] for name, d in numbers["datasets"].items() if d.get("shifted_images")}
    if shifted:
        parts.append("Samples with fewer `{image#k}` placeholders than images, run as the official code runs them "
                     "(images shift; the earliest may be dropped): " + ", ".join(f"{n} {c}" for n, c in sorted(shifted.items())) + ".")
    return "\n\n".join(parts)


def longvqa_markdown(numbers: dict) -> str:
    groups = numbers["groups"]
    rows = [[task, *(_fmt(row.get(g)) for g in groups), _fmt(numbers["task_avg"][task])] for task, row in sorted(numbers["tasks"].items())]
    rows.append(["**avg**", *(_fmt(numbers["group_avg"][g]) for g in groups), _fmt(numbers["avg"])])
    parts = ["Official task score per length group (x100; BLEU-4 and F1 corpus-level):",
             _table(["task", *(group_label(g) for g in groups), "avg"], rows)]
    parts += [f"Note: {note}" for note in numbers["notes"]]
    return "\n\n".join(parts)


def vqa_markdown(numbers: dict) -> str:
    rows = [[name, _fmt(d["score"]), d["samples"], d["errors"]] for name, d in numbers["datasets"].items()]
    return _table(["dataset", "score", "n", "errors"], rows)


MARKDOWN = {"mm-niah": mmniah_markdown, "milebench": milebench_markdown, "long-vqa": longvqa_markdown, "vqa": vqa_markdown}


def _headline_table(numbers: dict) -> str:
    return _table(["", "score"], [[label, _fmt(value)] for label, value in numbers["headline"].items()])


def scienceqa_markdown(numbers: dict) -> str:
    rows = [[name, _fmt(d["score"]), d["samples"], d["errors"]] for name, d in numbers["datasets"].items()]
    return "Acc@1 (post-processed letter == gold letter; x100):\n\n" + _table(["task", "Acc@1", "n", "errors"], rows)


def pope_markdown(numbers: dict) -> str:
    rows = [[name, *(_fmt(c[k]) for k in ("accuracy", "precision", "recall", "f1", "yes_ratio")),
             f"{c['tp']}/{c['fp']}/{c['tn']}/{c['fn']}", c["samples"], c["errors"]] for name, c in numbers["categories"].items()]
    return ("Per category, as eval_pope.py (positive class 'yes'; x100; a failed sample counts as the wrong answer):\n\n"
            + _table(["category", "accuracy", "precision", "recall", "F1", "yes ratio", "TP/FP/TN/FN", "n", "errors"], rows)
            + f"\n\nOverall F1 (mean over the categories): {_fmt(numbers['overall_f1'])}")


def seed_markdown(numbers: dict) -> str:
    parts = []
    for name, t in numbers["tasks"].items():
        parts.append(_table(["task", "Acc@1 first letter (calculation.py)", "Acc@1 exact (evaluate_seed.py)", "image", "video", "n", "errors"],
                            [[name, _fmt(t["acc1_first_char"]), _fmt(t["acc1_exact"]), _fmt(t["image"]), _fmt(t["video"]),
                              t["samples"], t["errors"]]]))
        parts.append(f"Per question type of `{name}` (first letter; x100):")
        parts.append(_table(["type", "name", "accuracy", "n"], [[k, v["name"], _fmt(v["accuracy"]), v["n"]] for k, v in t["types"].items()]))
    return "\n\n".join(parts)


def mmbench_markdown(numbers: dict) -> str:
    rows = [[name, _fmt(t.get("accuracy")) if t["has_answers"] else "- (no answers)", _fmt(t.get("circular")),
             t.get("questions", "-"), t["samples"], t["errors"]] for name, t in numbers["tasks"].items()]
    parts = ["Local scores where the file has answers (x100): accuracy per row, and circular accuracy (the MMBench "
             "server rule: all passes of a question right; '-' without circular passes). The official numbers come "
             "from the server, from the submission files written beside this report.",
             _table(["dataset", "accuracy", "circular", "questions", "rows", "errors"], rows)]
    for name, t in numbers["tasks"].items():
        if t["has_answers"] and t["categories"]:
            parts.append(f"Per category of `{name}` (x100):")
            parts.append(_table(["category", "accuracy", "circular"],
                                [[c, _fmt(v), _fmt(t["circular_categories"].get(c)) if t["circular"] is not None else "-"]
                                 for c, v in t["categories"].items()]))
    return "\n\n".join(parts)


def mmmu_markdown(numbers: dict) -> str:
    rows = [[f"Overall-{d}", v["num"], _fmt(v["acc"]) if v["num"] else "-"] for d, v in numbers["domains"].items()]
    rows.append(["**Overall**", numbers["overall"]["num"], _fmt(numbers["overall"]["acc"])])
    return ("As main_eval_only.py (instance-level accuracy; x100):\n\n" + _table(["", "num", "acc"], rows)
            + "\n\nPer subject:\n\n" + _table(["subject", "acc", "n", "errors"],
                                               [[n, _fmt(d["score"]), d["samples"], d["errors"]] for n, d in numbers["datasets"].items()]))


def mvbench_markdown(numbers: dict) -> str:
    return "Accuracy per task and Avg (all correct / all samples), as evaluate_mvbench.py's final_res (x100):\n\n" + _headline_table(numbers)


def videomme_markdown(numbers: dict) -> str:
    rows = [[name, d["n"], d["answered"], _fmt(d["accuracy"]), _fmt(d["accuracy_answered"])] for name, d in numbers["durations"].items()]
    return ("Accuracy per duration (x100): over all questions, and over answered ones only as Video-MME's "
            "eval_your_results.py divides:\n\n" + _table(["duration", "n", "answered", "accuracy", "answered only"], rows))


MARKDOWN.update({"mvbench": mvbench_markdown, "videomme": videomme_markdown})
MARKDOWN.update({"scienceqa": scienceqa_markdown, "pope": pope_markdown, "seed": seed_markdown, "mmbench": mmbench_markdown,
                 "mmmu": mmmu_markdown})


def run_files(run: Run, numbers: dict, folder: Path) -> list[Path]:
    """Files a benchmark's official evaluation writes besides scores: MMBench submission files."""
    if run.benchmark != "mmbench" or not numbers:
        return []
    from v2pe.eval.runners.mmbench import write_submission

    return [write_submission(name, records, folder) for name, records in run.tasks.items()]


def comparison_rows(benchmark: str, numbers: Sequence[dict]) -> tuple[list[str], list[list]]:
    """(row labels, values per run) of the headline numbers of runs of one benchmark."""
    rows: dict[str, list] = {}

    def put(label, index, value):
        rows.setdefault(label, [None] * len(numbers))[index] = value

    for i, n in enumerate(numbers):
        if not n:
            continue
        if benchmark == "mm-niah":
            for name, t in n["tasks"].items():
                put(name, i, t["mean"])
            for split, s in n["splits"].items():
                suffix = f" ({split})" if split else ""
                for key in ("Text", "Image", "Avg"):
                    put(f"{key}{suffix}", i, s[key])
                if s["overall"] is not None:
                    for label, value in zip(MMNIAH_LENGTH_LABELS, s["overall"]):
                        put(f"overall {label}{suffix}", i, value)
        elif benchmark == "milebench":
            for name, d in sorted(n["datasets"].items()):
                put(name, i, d["score"])
            for g in ("T", "S", "NI", "IR", "Avg"):
                put(f"group {g}", i, n["groups"][g])
        elif benchmark == "long-vqa":
            for task, avg in sorted(n["task_avg"].items()):
                put(task, i, avg)
            for g in n["groups"]:
                put(f"avg {group_label(g)}", i, n["group_avg"][g])
            put("avg", i, n["avg"])
        else:
            for name, d in n["datasets"].items():
                put(name, i, d["score"])
            for label, value in n.get("headline", {}).items():  # general image benchmarks' official aggregates
                put(label, i, value)
    def category(label: str) -> int:
        if benchmark != "mm-niah":
            return 0
        return 2 if label.startswith("overall ") else 1 if label.split(" ")[0] in ("Text", "Image", "Avg") else 0

    labels = sorted(rows, key=lambda label: category(label))  # stable: first appearance within a category
    return labels, [rows[label] for label in labels]


# ----------------------------------------------------------------------------- plots


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_mmniah_heatmap(name: str, numbers: dict, path: Path, title_prefix: str = "") -> Path:
    import numpy as np

    plt = _pyplot()
    cells = np.array([[np.nan if c == 0 else v for v, c in zip(row, counts)]
                      for row, counts in zip(numbers["cells"], numbers["cell_counts"])], dtype=float).T  # depth x length
    fig, ax = plt.subplots(figsize=(11, 4.2))
    cmap = plt.get_cmap("RdYlGn").with_extremes(bad="#e6e6e6")
    image = ax.imshow(np.ma.masked_invalid(cells), cmap=cmap, vmin=0, vmax=100, aspect="auto")
    for (d, x), value in np.ndenumerate(cells):
        colour = "#555555" if np.isnan(value) else "white" if value < 15 or value > 85 else "black"
        ax.text(x, d, "-" if np.isnan(value) else f"{value:.0f}", ha="center", va="center", fontsize=8, color=colour)
    ax.set_xticks(range(len(MMNIAH_LENGTH_LABELS)), MMNIAH_LENGTH_LABELS, rotation=30, ha="right")
    ax.set_yticks(range(MMNIAH_DEPTH_BINS), MMNIAH_DEPTH_LABELS)
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("needle depth")
    ax.set_title(f"{title_prefix}{name}: accuracy (%) by context length and needle depth")
    fig.colorbar(image, ax=ax, label="accuracy (%)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_lines(series: Mapping[str, Sequence[float | None]], labels: Sequence[str], path: Path, title: str,
               xlabel: str, ylabel: str = "score (%)") -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.5))
    xs = list(range(len(labels)))
    for name, values in series.items():
        points = [(x, v) for x, v in zip(xs, values) if v is not None]
        if points:
            style = {"color": "black", "linestyle": "--", "linewidth": 2.2, "zorder": 3} if name == "avg" else {"linewidth": 1.3, "alpha": 0.85}
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=name, **style)
    ax.set_xticks(xs, labels, rotation=30, ha="right")
    ax.set_ylim(-2, 102)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _mmniah_series(numbers: dict) -> dict[str, list[float | None]]:
    return {name: [s if c else None for s, c in zip(t["scores"], t["sample_numbers"])] for name, t in numbers["tasks"].items()}


def _mmniah_mean_series(numbers: dict) -> list[float | None]:
    """Per length bin: the official `overall` (6 tasks of one split), else the mean over the
    tasks with samples in the bin; None where no task has samples."""
    series = list(_mmniah_series(numbers).values())
    filled = [any(s[i] is not None for s in series) for i in range(len(MMNIAH_LENGTH_LABELS))]
    splits = numbers["splits"]
    if len(splits) == 1 and next(iter(splits.values()))["overall"] is not None:
        overall = next(iter(splits.values()))["overall"]
        return [v if f else None for v, f in zip(overall, filled)]
    return [_mean([s[i] for s in series]) for i in range(len(MMNIAH_LENGTH_LABELS))]


def run_plots(run: Run, numbers: dict, folder: Path) -> list[Path]:
    if not numbers or _pyplot() is None:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    if run.benchmark == "mm-niah":
        for name, task in numbers["tasks"].items():
            paths.append(plot_mmniah_heatmap(name, task, folder / f"mmniah_heatmap_{name}.png", f"{run.label} - "))
        series = {**_mmniah_series(numbers), "avg": _mmniah_mean_series(numbers)}
        paths.append(plot_lines(series, MMNIAH_LENGTH_LABELS, folder / "mmniah_accuracy_vs_length.png",
                                f"{run.label}: MM-NIAH accuracy vs context length", "context length (tokens)"))
    elif run.benchmark == "long-vqa" and numbers["groups"]:
        series = {task: [row.get(g) for g in numbers["groups"]] for task, row in sorted(numbers["tasks"].items())}
        series["avg"] = [numbers["group_avg"][g] for g in numbers["groups"]]
        paths.append(plot_lines(series, [group_label(g) for g in numbers["groups"]], folder / "longvqa_accuracy_vs_length.png",
                                f"{run.label}: Long-VQA score vs context length", "context length group (tokens)"))
    return paths


def comparison_plots(runs: Sequence[Run], numbers: Sequence[dict], folder: Path) -> list[Path]:
    if _pyplot() is None:
        return []
    paths = []
    mmniah = [(r, n) for r, n in zip(runs, numbers) if r.benchmark == "mm-niah" and n]
    if len(mmniah) > 1:
        series = {f"{r.label} (delta {r.delta})": _mmniah_mean_series(n) for r, n in mmniah}
        paths.append(plot_lines(series, MMNIAH_LENGTH_LABELS, folder / "compare_mmniah_accuracy_vs_length.png",
                                "MM-NIAH: accuracy vs context length (overall of the 6 tasks, else mean of the tasks run)", "context length (tokens)"))
    longvqa = [(r, n) for r, n in zip(runs, numbers) if r.benchmark == "long-vqa" and n]
    if len(longvqa) > 1:
        groups = sorted({g for _, n in longvqa for g in n["groups"]}, key=_group_order)
        series = {f"{r.label} (delta {r.delta})": [n["group_avg"].get(g) for g in groups] for r, n in longvqa}
        paths.append(plot_lines(series, [group_label(g) for g in groups], folder / "compare_longvqa_accuracy_vs_length.png",
                                "Long-VQA: mean task score vs context length", "context length group (tokens)"))
    return paths


# ----------------------------------------------------------------------------- report


REPORT_FORMAT = "v2pe-report/1"


def _unique_labels(runs: Sequence[Run]) -> None:
    seen: dict[str, int] = {}
    for run in runs:
        label = run.label or run.path.name or "run"
        seen[label] = seen.get(label, 0) + 1
        run.label = label if seen[label] == 1 else f"{label}-{seen[label]}"


def write_report(run_dirs: Sequence[str | Path | Run], out_dir: str | Path,
                 official: Sequence[tuple[str, str | Path]] = (), scorer_source: str | None = None) -> dict:
    """Tables (`report.md`), every aggregate (`report.json`, also as `summary.json`) and plots of
    the runs; returns the report with the written paths under "files".

    `run_dirs`: v2pe run folders (or loaded `Run`s); `official`: (benchmark, path) pairs of the
    official scripts' result files (`official_outputs.load_official`, scored with
    `scorer_source`, default the runners' default), reported after the run folders."""
    runs = [p if isinstance(p, Run) else load_run(p) for p in run_dirs]
    if official:
        from v2pe.eval.official_outputs import load_official

        runs += [load_official(benchmark, path, **({"scorer_source": scorer_source} if scorer_source else {}))
                 for benchmark, path in official]
    if not runs:
        raise DataError("nothing to report: give run folders and/or --official BENCH PATH")
    _unique_labels(runs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    numbers = [run_numbers(run) for run in runs]
    files: list[Path] = []
    plots_available = _pyplot() is not None

    lines = ["# V2PE evaluation report", ""]
    lines.append(_table(["run", "benchmark", "model", "delta", "tasks", "samples", "errors"],
                        [[r.label, r.benchmark, f"`{r.info.get('model', '?')}`", r.delta, len(r.tasks), r.samples, r.errors] for r in runs]))
    lines.append("")
    if not plots_available:
        lines += ["(matplotlib is not installed: no plots; `pip install matplotlib`)", ""]

    benchmarks = list(dict.fromkeys(r.benchmark for r in runs))
    comparisons = {}
    for benchmark in benchmarks:
        members = [(r, n) for r, n in zip(runs, numbers) if r.benchmark == benchmark]
        if len(members) < 2:
            continue
        labels, values = comparison_rows(benchmark, [n for _, n in members])
        comparisons[benchmark] = {"runs": [r.label for r, _ in members], "rows": dict(zip(labels, values))}
        lines += [f"## Comparison: {benchmark}", ""]
        lines.append(_table(["", *(f"{r.label} (delta {r.delta})" for r, _ in members)],
                            [[label, *(_fmt(v) for v in row)] for label, row in zip(labels, values)]))
        lines.append("")
    compare_paths = comparison_plots(runs, numbers, out)
    files += compare_paths
    lines += [f"![{p.stem}]({p.name})" for p in compare_paths] + ([""] if compare_paths else [])

    for run, n in zip(runs, numbers):
        lines += [f"## {run.label}: {run.benchmark} (delta {run.delta})", "",
                  f"Model `{run.info.get('model', '?')}`, scorer variant `{run.info.get('scorer_source', '?')}`, "
                  f"{run.samples} samples, {run.errors} with an error (counted as wrong).", ""]
        if not n:
            lines += ["(no results yet)", ""]
            continue
        lines += [MARKDOWN[run.benchmark](n), ""]
        plot_paths = run_plots(run, n, out / run.label)
        files += plot_paths
        extra_files = run_files(run, n, out / run.label)
        files += extra_files
        lines += [f"Submission file: `{p.relative_to(out).as_posix()}`" for p in extra_files] + ([""] if extra_files else [])
        lines += [f"![{p.stem}]({p.relative_to(out).as_posix()})" for p in plot_paths] + ([""] if plot_paths else [])

    report = out / "report.md"
    report.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    summary = {
        "format": REPORT_FORMAT,
        "labels": {"mm-niah": {"length_bins": list(MMNIAH_LENGTH_LABELS), "depth_bins": list(MMNIAH_DEPTH_LABELS)}},
        "runs": [{"label": r.label, "path": str(r.path), "benchmark": r.benchmark, "model": r.info.get("model"),
                  "delta": r.info.get("delta"), "source": "official" if r.info.get("official") else "v2pe",
                  "scorer_source": r.info.get("scorer_source"), "samples": r.samples, "errors": r.errors, "numbers": n}
                 for r, n in zip(runs, numbers)],
        "comparisons": comparisons,
    }
    text = json.dumps(summary, indent=2, ensure_ascii=False) + "\n"
    (out / "report.json").write_text(text, encoding="utf-8")
    (out / "summary.json").write_text(text, encoding="utf-8")  # the earlier name, same content
    summary["files"] = [report, out / "report.json", out / "summary.json", *files]
    return summary
