"""Long-VQA runner (reference-spec 5.3; V2PE `eval/longvqa/`).

Data: JSONL files `val_long_vqa_<task>_<lo>_<hi>.jsonl` (e.g. `long_vqa_32k/val_long_vqa_chartqa_16_32.jsonl`)
anywhere under `DATA` (or `DATA` is one such file). A file whose name does not follow that
pattern must be named `<task>.jsonl`. Lines: `id`, `image` (list of paths; relative paths are
looked up under `--image-root`, `DATA`, then the file's folder), `conversations`
(`[0].value` the question with one `<image>` per image, `[1].value` the answer), and
`metadata.context_length`.

The question is used as is (a single image without placeholder gets `<image>\\n` prepended,
as the official chat does); each image: at most 12 tiles. max_new_tokens per task as the
official script. Result files are named `<task>_<lo>_<hi>.jsonl`; lines add the official
`an`-/`pr`-/`le`-equivalents `answer`, `prediction` and `context_length`, plus `group`
(`<lo>_<hi>`).

Scorer by task metric (`scorers.longvqa.LONGVQA_TASK_METRICS`, x100): RACC
relaxed_accuracy_longvqa, EACC exact_accuracy_longvqa, ANLS anls_longvqa_owl, TEXTVQA
vqa_accuracy_longvqa, BLEU4 bleu4_longvqa, WTQ wtq, F1 due_f1 (on the rectified pair). BLEU-4
and F1 are corpus-level: reports recompute them over the task's lines.

Aggregation (`numbers`): per task and length group (`<lo>_<hi>` of the file name), the official
task score (x100): per-item means, corpus BLEU-4 / F1 over the task's lines
(`scorers.longvqa.score_longvqa_task`); a sample that failed (error, no prediction) counts as an
empty prediction. Avg = mean over tasks; also per group and per task. Plots: score vs context
length group per task.

Official outputs (`read_official`, `v2pe eval report --official long-vqa PATH`):
`result_<task>.jsonl` files under PATH (or PATH is one) of `eval/longvqa/`: lines {`id`, `an`
(answer), `pr` (prediction), `le` (context length)}. `<task>` is a Long-VQA task (`chartqa`),
optionally with its length group (`chartqa_16_32`, `val_long_vqa_chartqa_16_32`); without one
the group comes from a parent folder `long_vqa_<G>k` (G-8..G; 16..32 for 32K), else it is `all`.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from v2pe.errors import ConfigError, DataError
from v2pe.eval.benchmarks.base import IMAGE_ROOT, Benchmark
from v2pe.eval.report_format import fmt, mean, plot_lines, table
from v2pe.eval.runners.base import IMAGE, Sample, Task, read_jsonl, require, resolve_image, unique_ids
from v2pe.eval.scorers import ScoringError
from v2pe.eval.scorers.longvqa import LONGVQA_TASK_METRICS, rectified_pair, score_longvqa_task

MAX_TILES = 12
MAX_NEW_TOKENS = {
    "chartqa": 32, "clevr": 8, "deepform": 32, "docvqa": 32, "dvqa": 8, "gqa": 8, "infovqa": 32,
    "kleistercharity": 32, "ocrvqa": 128, "okvqa": 16, "svqa": 8, "tabfact": 8, "textcaps": 64,
    "textvqa": 64, "visualmrc": 256, "vizwiz": 32, "wikitablequestions": 128,
}
SCORERS = {
    "RACC": "relaxed_accuracy_longvqa", "EACC": "exact_accuracy_longvqa", "ANLS": "anls_longvqa_owl",
    "TEXTVQA": "vqa_accuracy_longvqa", "BLEU4": "bleu4_longvqa", "WTQ": "wtq", "F1": "due_f1",
}
FILE_PATTERN = re.compile(r"^(?:val_)?long_vqa_(?P<task>[a-z]+)_(?P<lo>\d+)_(?P<hi>\d+)$")


def parse_file_name(path: Path) -> tuple[str, str | None]:
    """(task, group 'lo_hi' or None) from a Long-VQA file name."""
    match = FILE_PATTERN.match(path.stem)
    if match:
        return match["task"], f"{match['lo']}_{match['hi']}"
    if path.stem in LONGVQA_TASK_METRICS:
        return path.stem, None
    raise DataError(f"{path}: cannot tell the Long-VQA task from the file name; name it "
                    f"val_long_vqa_<task>_<lo>_<hi>.jsonl with <task> one of {', '.join(sorted(LONGVQA_TASK_METRICS))}")


def discover(data: Path) -> dict[str, tuple[Path, str, str | None]]:
    """{result name: (file, task, group)} for the Long-VQA files under data."""
    if data.is_file():
        files = [data]
    elif data.is_dir():
        files = sorted(p for p in data.rglob("*.jsonl") if FILE_PATTERN.match(p.stem) or p.stem in LONGVQA_TASK_METRICS)
    else:
        raise DataError(f"Long-VQA data {data} does not exist")
    found = {}
    for path in files:
        task, group = parse_file_name(path)
        if task not in LONGVQA_TASK_METRICS:
            raise DataError(f"{path}: unknown Long-VQA task {task!r}; known: {', '.join(sorted(LONGVQA_TASK_METRICS))}")
        name = f"{task}_{group}" if group else task
        if name in found:
            raise DataError(f"two Long-VQA files give the task {name}: {found[name][0]} and {path}")
        found[name] = (path, task, group)
    if not found:
        raise DataError(f"{data}: no Long-VQA file (val_long_vqa_<task>_<lo>_<hi>.jsonl) found")
    return found


def load_tasks(data: str | Path, processor=None, tasks: Sequence[str] | None = None, limit: int | None = None,
               image_root: str | Path | None = None, max_tiles: int = MAX_TILES, **_) -> list[Task]:
    data = Path(data)
    found = discover(data)
    wanted = list(tasks or [])
    unknown = [w for w in wanted if w not in found and not any(task == w for _, task, _ in found.values())]
    if unknown:
        raise ConfigError(f"unknown Long-VQA task(s) {', '.join(unknown)}; available: {', '.join(found)}")
    names = [n for n, (_, task, _) in found.items() if not wanted or n in wanted or task in wanted]
    base = data if data.is_dir() else data.parent
    roots = [Path(image_root)] if image_root else []
    result = []
    for name in names:
        path, task, group = found[name]
        result.append(read_task(name, path, task, group, roots + [base, path.parent], limit, max_tiles))
    return result


def read_task(name: str, path: Path, task: str, group: str | None, roots: list[Path], limit: int | None,
              max_tiles: int = MAX_TILES) -> Task:
    rows = []
    for number, record in read_jsonl(path):
        if limit is not None and len(rows) >= limit:
            break
        rows.append((number, record))
    ids = unique_ids([require(r, "id", f"{path}:{n}") for n, r in rows], [n for n, _ in rows])
    samples = [make_sample(task, group, record, sample_id, roots, f"{path}:{number}", max_tiles)
               for (number, record), sample_id in zip(rows, ids)]
    return Task(name, path, samples, {"task": task, "group": group, "metric": LONGVQA_TASK_METRICS[task]})


def make_sample(task: str, group: str | None, record: dict, sample_id, roots: list[Path], where: str,
                max_tiles: int = MAX_TILES) -> Sample:
    images = require(record, "image", where, (list, str))
    images = [images] if isinstance(images, str) else images
    if not all(isinstance(p, str) for p in images):
        raise DataError(f"{where}: field 'image' must be a list of paths")
    conversations = require(record, "conversations", where, list)
    if len(conversations) < 2:
        raise DataError(f"{where}: conversations needs the question and the answer turn, got {len(conversations)} turn(s)")
    question = require(conversations[0], "value", f"{where}: conversations[0]", str)
    answer = require(conversations[1], "value", f"{where}: conversations[1]")
    metadata = require(record, "metadata", where, dict)
    context_length = require(metadata, "context_length", f"{where}: metadata", (int, float))
    placeholders = question.count(IMAGE)
    if placeholders != len(images) and not (placeholders == 0 and len(images) == 1):
        raise DataError(f"{where}: {placeholders} `<image>` placeholders in the question but {len(images)} images")
    metric = LONGVQA_TASK_METRICS[task]
    return Sample(
        id=sample_id,
        prompt=question,
        images=[resolve_image(p, roots) for p in images],
        answer=answer,
        scorer=SCORERS[metric],
        max_new_tokens=MAX_NEW_TOKENS[task],
        max_tiles=max_tiles,
        extra={"task": task},
        fields={"context_length": context_length, "group": group, "metric": metric},
        extra_for_prediction=_f1_annotations(task, sample_id, answer) if metric == "F1" else None,
    )


def _f1_annotations(task: str, sample_id, answer):
    """DUE F1 of one item: the rectified prediction and answers as the scorer's annotations."""
    def build(prediction: str) -> dict:
        pred, golds = rectified_pair(task, prediction, answer)
        return {"annotations": [{"id": str(sample_id), "pr": pred, "an": golds}]}
    return build




# ----------------------------------------------------------------------------- report


def numbers(run) -> dict:
    """{"tasks": {task: {group: score}}, "groups": [...], "group_avg": {group: mean over tasks},
    "task_avg": {task: mean over groups}, "avg": mean of everything, "notes": [...]}"""
    scores: dict[str, dict[str, float]] = {}
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
        scores.setdefault(task, {})[group] = score
    groups = sorted({g for row in scores.values() for g in row}, key=_group_order)
    group_avg = {g: mean([row[g] for row in scores.values() if g in row]) for g in groups}
    task_avg = {t: mean(list(row.values())) for t, row in scores.items()}
    return {"tasks": scores, "groups": groups, "group_avg": group_avg, "task_avg": task_avg,
            "avg": mean([v for row in scores.values() for v in row.values()]), "notes": notes}


def _group_order(group: str):
    parts = group.split("_")
    return (0, int(parts[-1])) if parts[-1].isdigit() else (1, group)


def group_label(group: str) -> str:
    parts = group.split("_")
    return f"{parts[0]}-{parts[1]}K" if len(parts) == 2 and all(p.isdigit() for p in parts) else group


def markdown(numbers: dict) -> str:
    groups = numbers["groups"]
    rows = [[task, *(fmt(row.get(g)) for g in groups), fmt(numbers["task_avg"][task])] for task, row in sorted(numbers["tasks"].items())]
    rows.append(["**avg**", *(fmt(numbers["group_avg"][g]) for g in groups), fmt(numbers["avg"])])
    parts = ["Official task score per length group (x100; BLEU-4 and F1 corpus-level):",
             table(["task", *(group_label(g) for g in groups), "avg"], rows)]
    parts += [f"Note: {note}" for note in numbers["notes"]]
    return "\n\n".join(parts)


def comparison(numbers: dict) -> list[tuple[str, float | None]]:
    rows = [(task, avg) for task, avg in sorted(numbers["task_avg"].items())]
    rows += [(f"avg {group_label(g)}", numbers["group_avg"][g]) for g in numbers["groups"]]
    return rows + [("avg", numbers["avg"])]


def plots(run, numbers: dict, folder: Path) -> list[Path]:
    if not numbers["groups"]:
        return []
    series = {task: [row.get(g) for g in numbers["groups"]] for task, row in sorted(numbers["tasks"].items())}
    series["avg"] = [numbers["group_avg"][g] for g in numbers["groups"]]
    return [plot_lines(series, [group_label(g) for g in numbers["groups"]], folder / "longvqa_accuracy_vs_length.png",
                       f"{run.label}: Long-VQA score vs context length", "context length group (tokens)")]


def compare_plots(members: Sequence[tuple[Any, dict]], folder: Path) -> list[Path]:
    groups = sorted({g for _, n in members for g in n["groups"]}, key=_group_order)
    series = {f"{r.label} (delta {r.delta})": [n["group_avg"].get(g) for g in groups] for r, n in members}
    return [plot_lines(series, [group_label(g) for g in groups], folder / "compare_longvqa_accuracy_vs_length.png",
                       "Long-VQA: mean task score vs context length", "context length group (tokens)")]


# ----------------------------------------------------------------------------- official outputs

RESULT_NAME = re.compile(r"^result_(?:(?:val_)?long_vqa_)?(?P<task>[a-z]+)(?:_(?P<lo>\d+)_(?P<hi>\d+))?$")
GROUP_FOLDER = re.compile(r"long_vqa_(?P<g>\d+)k$")


def _official_group(file: Path, lo: str | None, hi: str | None) -> str:
    if lo is not None:
        return f"{lo}_{hi}"
    for folder in file.parents:
        match = GROUP_FOLDER.search(folder.name)
        if match:
            g = int(match["g"])
            return "16_32" if g == 32 else f"{g - 8}_{g}"
    return "all"


def read_official(path: Path, scorer_source: str) -> tuple[dict[str, list[dict]], str | None]:
    from v2pe.eval.official_outputs import scored

    files = [path] if path.is_file() else sorted(p for p in path.rglob("result_*.jsonl"))
    tasks: dict[str, list[dict]] = {}
    where_of: dict[str, Path] = {}
    scorers: dict = {}
    for file in files:
        match = RESULT_NAME.match(file.stem)
        if not match or match["task"] not in LONGVQA_TASK_METRICS:
            raise DataError(f"{file}: not an official Long-VQA result name result_<task>.jsonl with <task> one of "
                            f"{', '.join(sorted(LONGVQA_TASK_METRICS))} (optionally _<lo>_<hi>)")
        task = match["task"]
        group = _official_group(file, match["lo"], match["hi"])
        name = f"{task}_{group}" if group != "all" else task
        if name in tasks:
            raise DataError(f"two official Long-VQA result files give {name}: {where_of[name]} and {file}")
        where_of[name] = file
        metric = LONGVQA_TASK_METRICS[task]
        lines: dict[str, dict] = {}
        for number, line in read_jsonl(file):
            for key in ("id", "an", "pr"):
                if key not in line:
                    raise DataError(f"{file}:{number}: official Long-VQA result line without {key!r}")
            prediction = line["pr"] if isinstance(line["pr"], str) else None
            extra: dict[str, Any] = {"task": task}
            if metric == "F1" and prediction is not None:
                pred, golds = rectified_pair(task, prediction, line["an"])
                extra["annotations"] = [{"id": str(line["id"]), "pr": pred, "an": golds}]
            record = {"id": line["id"], "task": name, "context_length": line.get("le"), "group": None if group == "all" else group,
                      "metric": metric, "prediction": prediction, "answer": line["an"], "extra": extra, "error": None}
            lines[str(line["id"])] = scored(record, SCORERS[metric], scorer_source, scorers)
        if lines:
            tasks[name] = list(lines.values())
    return tasks, None


BENCHMARK = Benchmark(
    "long-vqa", load_tasks, "Long-VQA (17 pasted / concatenated VQA sources, 16K-64K groups)",
    help="run Long-VQA (val_long_vqa_<task>_<lo>_<hi>.jsonl files under DATA)",
    tasks_help="tasks such as chartqa (every group) or chartqa_16_32",
    options=(IMAGE_ROOT,), numbers=numbers, markdown=markdown, comparison=comparison, plots=plots,
    compare_plots=compare_plots, read_official=read_official, aliases=("longvqa",),
    official_help="result_<task>.jsonl files {id, an, pr, le}",
)
