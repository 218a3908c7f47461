"""SEED-Bench (image) runner (reference-spec 5.4; InternVL `eval/seed/evaluate_seed.py` + `calculation.py`).

Data (`--data`): the folder holding `seed.jsonl` (InternVL's `data/SEED`, images under
`SEED-Bench-image/`), or InternVL's `data/` folder (then `data/SEED/seed.jsonl`). Lines:
`{"question_id", "image", "text", "answer", "question_type_id"?}`; the image path is relative
to the folder of `seed.jsonl` (the official root `data/SEED/`), also looked up under
`--image-root`.

Prompt: `text` exactly as given (it already holds the options and the letter prompt); one
image, tiles up to 6, `<image>\\n` prepended as `chat()` does; greedy, min_new_tokens 1,
max_new_tokens 100. One task `SEEDv1` (the official dataset name); sample id = `question_id`.

Scoring: scorer `mc_seed` = `calculation.py`'s rule: the first character of the prediction
equals the gold letter. The report also gives `evaluate_seed.py`'s printed `Acc@1`, an exact
comparison of the whole prediction with the answer, and `calculation.py`'s per-question-type,
image (types 1-9) and video (10-12) accuracies.

Question types: the line's `question_type_id` when present, else `SEED-Bench.json` next to
`seed.jsonl` (`{"questions": [{"question_id", "question_type_id"}], "question_type": {name:
id}}`, what `calculation.py --anno_path` reads) when that file exists, else unknown. Result
lines add `question_id`, `question_type_id`, `question_type` and `question`.

Official quirks:
* `calculation.py` takes the gold answer from `SEED-Bench.json`, not from `seed.jsonl`; here the
  line's `answer` is the gold (the two agree in the released files).
* `calculation.py`'s default annotation path is `data/SEED/SEED-Bench.json`, and the V2PE copy
  points at `dataset/tSEED/SEED-Bench.json` (spec 5.4), a folder that does not exist.
* `calculation.py` divides by zero for a question type without samples: with the image-only
  `seed.jsonl` it stops at the first video type after printing the image types. Here types
  without samples are left out and image/video are given where they have samples.
* An empty prediction crashes `calculation.py` (`pred[0]`); here it is scored wrong.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from v2pe.errors import ConfigError, DataError
from v2pe.eval.benchmarks.base import IMAGE_ROOT, Benchmark
from v2pe.eval.report_format import fmt, pct, table
from v2pe.eval.runners.base import Sample, Task, find_file, read_json, read_jsonl, require, resolve_image, unique_ids

FILE = "seed.jsonl"
ANNOTATION = "SEED-Bench.json"
TASK = "SEEDv1"
MAX_NEW_TOKENS = 100
MAX_TILES = 6
#: SEED-Bench v1 question types (`SEED-Bench.json` "question_type"); 1-9 image, 10-12 video.
SEED_QUESTION_TYPES = {
    1: "Scene Understanding", 2: "Instance Identity", 3: "Instance Attributes", 4: "Instance Location",
    5: "Instances Counting", 6: "Spatial Relation", 7: "Instance Interaction", 8: "Visual Reasoning",
    9: "Text Understanding", 10: "Action Recognition", 11: "Action Prediction", 12: "Procedure Understanding",
}


def _question_types(path: Path) -> tuple[dict, dict[int, str]]:
    """question_id (str) -> question_type_id, and type id -> name, from SEED-Bench.json."""
    annotation = read_json(path)
    names = dict(SEED_QUESTION_TYPES)
    questions = annotation
    if isinstance(annotation, dict):
        names.update({v: k for k, v in (annotation.get("question_type") or {}).items() if isinstance(v, int)})
        questions = require(annotation, "questions", str(path), list)
    types = {}
    for index, item in enumerate(questions):
        where = f"{path}: questions[{index}]"
        types[str(require(item, "question_id", where))] = require(item, "question_type_id", where, int)
    return types, names


def load_tasks(data: str | Path, processor=None, tasks: Sequence[str] | None = None, limit: int | None = None,
               image_root: str | Path | None = None, max_tiles: int | None = None, **_) -> list[Task]:
    data = Path(data)
    if tasks and list(tasks) != [TASK]:
        raise ConfigError(f"unknown SEED task(s) {', '.join(t for t in tasks if t != TASK)}; known: {TASK}")
    path = find_file(data, FILE, "SEED")
    roots = ([Path(image_root)] if image_root else []) + [path.parent]
    annotation = path.parent / ANNOTATION
    types, names = _question_types(annotation) if annotation.is_file() else ({}, dict(SEED_QUESTION_TYPES))
    rows = []
    for number, record in read_jsonl(path):
        if limit is not None and len(rows) >= limit:
            break
        rows.append((number, record))
    ids = unique_ids([require(r, "question_id", f"{path}:{n}") for n, r in rows], [n for n, _ in rows])
    samples = []
    for (number, record), sample_id in zip(rows, ids):
        where = f"{path}:{number}"
        image = require(record, "image", where, str)
        text = require(record, "text", where, str)
        answer = require(record, "answer", where, str)
        type_id = record.get("question_type_id", types.get(str(record["question_id"])))
        if type_id is not None and not isinstance(type_id, int):
            raise DataError(f"{where}: question_type_id must be an integer, got {type_id!r}")
        samples.append(Sample(
            id=sample_id,
            prompt=text,
            images=[resolve_image(image, roots)],
            answer=answer,
            scorer="mc_seed",
            max_new_tokens=MAX_NEW_TOKENS,
            max_tiles=max_tiles or MAX_TILES,
            fields={"question_id": record["question_id"], "question_type_id": type_id,
                    "question_type": names.get(type_id), "question": text},
            generate_kwargs={"min_new_tokens": 1},
        ))
    source = "line" if any("question_type_id" in r for _, r in rows) else (str(annotation) if types else None)
    return [Task(TASK, path, samples, {"scorer": "mc_seed", "question_types": source})]


# ----------------------------------------------------------------------------- report


def type_scores(samples: Iterable[Mapping]) -> dict:
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


def numbers(run) -> dict:
    tasks, headline = {}, {}
    for name, records in run.tasks.items():
        scores = type_scores({"question_type_id": r.get("question_type_id"), "score": float(r.get("score") or 0.0)}
                             for r in records)
        exact = sum(1 for r in records if isinstance(r.get("prediction"), str) and r["prediction"] == r["answer"]) / len(records)
        names = {r.get("question_type_id"): r.get("question_type") for r in records}
        tasks[name] = {
            "acc1_exact": pct(exact), "acc1_first_char": pct(scores["total"]),
            "image": pct(scores["image"]), "video": pct(scores["video"]),
            "types": {str(t): {"name": names.get(t) or SEED_QUESTION_TYPES.get(t) or "unknown", "accuracy": pct(v["accuracy"]),
                               "n": v["n"]} for t, v in scores["types"].items()},
            "samples": len(records), "errors": sum(1 for r in records if r.get("error")),
        }
        headline[f"{name} Acc@1 (first letter)"] = tasks[name]["acc1_first_char"]
        headline[f"{name} Acc@1 (exact)"] = tasks[name]["acc1_exact"]
    datasets = {n: {"score": t["acc1_first_char"], "samples": t["samples"], "errors": t["errors"]} for n, t in tasks.items()}
    return {"tasks": tasks, "datasets": datasets, "headline": headline}


def markdown(numbers: dict) -> str:
    parts = []
    for name, t in numbers["tasks"].items():
        parts.append(table(["task", "Acc@1 first letter (calculation.py)", "Acc@1 exact (evaluate_seed.py)", "image", "video", "n", "errors"],
                           [[name, fmt(t["acc1_first_char"]), fmt(t["acc1_exact"]), fmt(t["image"]), fmt(t["video"]),
                             t["samples"], t["errors"]]]))
        parts.append(f"Per question type of `{name}` (first letter; x100):")
        parts.append(table(["type", "name", "accuracy", "n"], [[k, v["name"], fmt(v["accuracy"]), v["n"]] for k, v in t["types"].items()]))
    return "\n\n".join(parts)


BENCHMARK = Benchmark(
    "seed", load_tasks, "SEED-Bench image (seed.jsonl), first-letter accuracy per question type",
    help="run SEED-Bench image (DATA/seed.jsonl, images relative to DATA)", tasks_help="the task SEEDv1",
    options=(IMAGE_ROOT,), numbers=numbers, markdown=markdown,
)
