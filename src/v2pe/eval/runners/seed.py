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

from collections.abc import Sequence
from pathlib import Path

from v2pe.errors import ConfigError, DataError
from v2pe.eval.runners.base import Benchmark, Sample, Task, read_json, read_jsonl, require, resolve_image, unique_ids
from v2pe.eval.runners.scienceqa import find_file
from v2pe.eval.scorers.aggregate import SEED_QUESTION_TYPES

FILE = "seed.jsonl"
ANNOTATION = "SEED-Bench.json"
TASK = "SEEDv1"
MAX_NEW_TOKENS = 100
MAX_TILES = 6


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


BENCHMARK = Benchmark("seed", load_tasks, "SEED-Bench image (seed.jsonl), first-letter accuracy per question type")
