"""POPE runner (reference-spec 5.4; InternVL `eval/pope/evaluate_pope.py` + `eval_pope.py`).

Data (`--data`): InternVL's `data/pope` folder (or `data/`, then `data/pope/...`):

    llava_pope_test.jsonl        {"question_id", "image", "text", "category"} per line
    coco/coco_pope_<category>.json   POPE's label files, one JSON object per line with "label" (and question_id, ...)
    val2014/                     COCO val2014 images (the official image root)

Image paths are relative to `val2014/` (also looked up under `--image-root` and the data folder).

Tasks: one per label file `coco/coco_pope_<category>.json` (adversarial, popular, random), as
`eval_pope.py` walks the annotation folder; a task holds the questions of that category in
file order. Sample id = `question_id`.

Prompt: `text + " "`: the official script builds its dataset with `prompt=''` and then does
`question + ' ' + self.prompt`, so the question ends with one space and the variable
`prompt = 'Answer the question using a single word or phrase.'` of `evaluate_chat_model` is
never used (LLaVA's `llava_pope_test.jsonl` questions already end with that phrase). One image,
tiles up to 6, `<image>\\n` prepended as `chat()` does; greedy, min_new_tokens 1,
max_new_tokens 100.

Scoring: scorer `pope` (`eval_pope.py`): keep the text before the first '.', drop commas, split
on single spaces; "no" when a word is exactly `No`, `no` or `not`, else "yes"; compared with the
label. Per category the report gives accuracy, precision, recall, F1 (positive class "yes") and
the yes-ratio, and the official "Overall F1" (mean F1 over the categories).

Official quirks:
* Labels are matched to answers by position within a category (`zip(pred_list, label_list)`),
  not by question id. Reproduced; the label line's `question_id` is kept in the result as
  `label_question_id` so that a misalignment is visible. A label file with fewer labels than
  the category has questions is a DataError here (the official zip silently drops the extra
  answers from accuracy/P/R/F1 but not from the yes-ratio); extra labels are ignored, as there.
* Questions of a category without a label file are generated but never scored officially;
  here they are not run (counted in the task info).
* The question ends with a space (see above).
* A sample that failed (no prediction) counts as a wrong answer in every metric.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from v2pe.errors import DataError
from v2pe.eval.benchmarks.base import IMAGE_ROOT, Benchmark
from v2pe.eval.report_format import fmt, mean, pct, table
from v2pe.eval.runners.base import Sample, Task, find_file, read_jsonl, refuse_unknown, require, resolve_image, unique_ids
from v2pe.eval.scorers.pope import pope_metrics

QUESTIONS = "llava_pope_test.jsonl"
LABEL_FILE = re.compile(r"^coco_pope_(.+)\.json$")
MAX_NEW_TOKENS = 100
MAX_TILES = 6


def label_files(folder: Path) -> dict[str, Path]:
    """category -> label file, as `eval_pope.py` takes them from the annotation folder."""
    if not folder.is_dir():
        raise DataError(f"POPE label folder {folder} does not exist (expected coco/coco_pope_<category>.json)")
    files = {}
    for path in sorted(folder.iterdir()):
        match = LABEL_FILE.match(path.name)
        if match:
            files[match.group(1)] = path
    if not files:
        raise DataError(f"{folder}: no coco_pope_<category>.json label file")
    return files


def load_tasks(data: str | Path, processor=None, tasks: Sequence[str] | None = None, limit: int | None = None,
               image_root: str | Path | None = None, max_tiles: int | None = None, **_) -> list[Task]:
    data = Path(data)
    path = find_file(data, QUESTIONS, "pope")
    labels = label_files(path.parent / "coco")
    refuse_unknown(tasks, labels, "POPE categor(y/ies)", "label files found for")
    roots = ([Path(image_root)] if image_root else []) + [path.parent / "val2014", path.parent, data]
    by_category: dict[str, list[tuple[int, dict]]] = {}
    for number, record in read_jsonl(path):
        category = require(record, "category", f"{path}:{number}", str)
        by_category.setdefault(category, []).append((number, record))
    unlabelled = {c: len(rows) for c, rows in by_category.items() if c not in labels}
    result = []
    for category in tasks or list(labels):
        rows = by_category.get(category, [])
        if limit is not None:
            rows = rows[:limit]
        label_path = labels[category]
        label_rows = [r for _, r in read_jsonl(label_path)]
        if len(label_rows) < len(rows):
            raise DataError(f"{label_path}: {len(label_rows)} labels for {len(rows)} '{category}' questions in {path} "
                            "(labels are matched by position, as eval_pope.py does)")
        ids = unique_ids([require(r, "question_id", f"{path}:{n}") for n, r in rows], [n for n, _ in rows])
        samples = []
        for position, ((number, record), sample_id) in enumerate(zip(rows, ids)):
            where = f"{path}:{number}"
            label = require(label_rows[position], "label", f"{label_path}: line {position + 1}", str)
            text = require(record, "text", where, str)
            image = require(record, "image", where, str)
            prompt = text + " "
            samples.append(Sample(
                id=sample_id,
                prompt=prompt,
                images=[resolve_image(image, roots)],
                answer=label,
                scorer="pope",
                max_new_tokens=MAX_NEW_TOKENS,
                max_tiles=max_tiles or MAX_TILES,
                fields={"question_id": record["question_id"], "category": category, "question": prompt,
                        "label_question_id": label_rows[position].get("question_id")},
                generate_kwargs={"min_new_tokens": 1},
            ))
        result.append(Task(category, path, samples, {"scorer": "pope", "labels": str(label_path),
                                                     "questions_without_label_file": unlabelled}))
    return result


def overall_f1(category_metrics: Mapping[str, Mapping[str, float]]) -> float | None:
    """`eval_pope.py`'s Overall F1: mean of the categories' F1 (None without categories)."""
    values = [m["f1"] for m in category_metrics.values()]
    return sum(values) / len(values) if values else None


def numbers(run) -> dict:
    """Per category (task) eval_pope.py's accuracy / precision / recall / F1 / yes-ratio; a
    failed sample (no prediction) counts as the wrong answer. Overall F1 = mean F1."""
    categories = {}
    for name, records in run.tasks.items():
        predictions = [r["prediction"] if isinstance(r.get("prediction"), str) and not r.get("error")
                       else ("no" if r["answer"] != "no" else "yes") for r in records]
        metrics = pope_metrics(predictions, [r["answer"] for r in records])
        categories[name] = {**{k: pct(v) if k in ("accuracy", "precision", "recall", "f1", "yes_ratio") else v
                               for k, v in metrics.items()},
                            "samples": len(records), "errors": sum(1 for r in records if r.get("error"))}
    overall = overall_f1(categories)
    datasets = {name: {"score": c["accuracy"], "samples": c["samples"], "errors": c["errors"]} for name, c in categories.items()}
    headline = {f"{name} F1": c["f1"] for name, c in categories.items()}
    headline["Overall F1"] = overall
    headline["mean accuracy"] = mean([c["accuracy"] for c in categories.values()])
    return {"categories": categories, "overall_f1": overall, "datasets": datasets, "headline": headline}


def markdown(numbers: dict) -> str:
    rows = [[name, *(fmt(c[k]) for k in ("accuracy", "precision", "recall", "f1", "yes_ratio")),
             f"{c['tp']}/{c['fp']}/{c['tn']}/{c['fn']}", c["samples"], c["errors"]] for name, c in numbers["categories"].items()]
    return ("Per category, as eval_pope.py (positive class 'yes'; x100; a failed sample counts as the wrong answer):\n\n"
            + table(["category", "accuracy", "precision", "recall", "F1", "yes ratio", "TP/FP/TN/FN", "n", "errors"], rows)
            + f"\n\nOverall F1 (mean over the categories): {fmt(numbers['overall_f1'])}")


BENCHMARK = Benchmark(
    "pope", load_tasks, "POPE (llava_pope_test.jsonl + coco_pope_<category>.json), P/R/F1 per category",
    help="run POPE (DATA/llava_pope_test.jsonl, labels in DATA/coco/coco_pope_<category>.json, images in DATA/val2014)",
    tasks_help="categories such as adversarial popular random",
    options=(IMAGE_ROOT,), numbers=numbers, markdown=markdown,
)
