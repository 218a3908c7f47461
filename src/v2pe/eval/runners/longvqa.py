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
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from v2pe.errors import ConfigError, DataError
from v2pe.eval.runners.base import IMAGE, Benchmark, Sample, Task, read_jsonl, require, resolve_image, unique_ids
from v2pe.eval.scorers.longvqa import LONGVQA_TASK_METRICS, rectified_pair

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


BENCHMARK = Benchmark("long-vqa", load_tasks, "Long-VQA (17 pasted / concatenated VQA sources, 16K-64K groups)")
