"""Readers of the official evaluation scripts' result files, as in-memory report `Run`s.

    v2pe eval report --official mm-niah outputs/ --official milebench outputs/milebench runs/v2pe --out reports/

Each line is scored again with v2pe's official scorers (the same scorer, answer handling and
fields a v2pe runner writes), so the report's numbers, Markdown and plots are those of a v2pe
run of the same predictions. Formats read (reference-spec 5.1-5.3):

* MM-NIAH (`eval/mm_niah/eval_mm_niah.py`): JSONL files `{model}_{task}.jsonl` (task e.g.
  `retrieval-text-val`; the official `calculate_scores.py` splits the name at the last `_`)
  directly in PATH or one folder below (`{outputs}/{task}/{model}_{task}.jsonl`; `temp_*`
  per-rank folders and `results/` are skipped), or PATH is one such file. Lines:
  `question_id`, `question`, `answer` (str | int | list; a counting answer stored as a JSON
  string is parsed, as calculate_scores.py does), `response` ('None' when the official run
  ran out of memory), `context_length` (or `total_tokens`), `placed_depth` (float or list).
  The last line of a question_id counts.
* MileBench (`eval/milebench/eval_milebench.py`): `<Dataset>/pred.json` folders under PATH (or
  PATH is one): a JSON list of {`sample_id`, `question`, `gt_response`, `gen_kwargs`,
  `pred_response`}. The dataset's annotation `<Dataset>/<Dataset>.json` must sit beside it
  (as in the benchmark folder): evaluate.py takes `question_type`, `choice_list` and
  `image_quantity_level` from it, matching predictions by `int(sample_id)`.
* Long-VQA (`eval/longvqa/`): `result_<task>.jsonl` files under PATH (or PATH is one): lines
  {`id`, `an` (answer), `pr` (prediction), `le` (context length)}. `<task>` is a Long-VQA task
  (`chartqa`), optionally with its length group (`chartqa_16_32`, `val_long_vqa_chartqa_16_32`);
  without one the group comes from a parent folder `long_vqa_<G>k` (G-8..G; 16..32 for 32K),
  else it is `all`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from v2pe.errors import DataError
from v2pe.eval.reports import Run
from v2pe.eval.runners.base import DEFAULT_SCORER_SOURCE, read_json, read_jsonl
from v2pe.eval.score_file import score_record
from v2pe.eval.scorers import get_scorer

BENCHMARK_ALIASES = {"mm-niah": "mm-niah", "mmniah": "mm-niah", "milebench": "milebench",
                     "long-vqa": "long-vqa", "longvqa": "long-vqa"}
OOM_RESPONSE = "None"  # what the official scripts write for a sample that ran out of memory


def official_benchmarks() -> list[str]:
    return sorted(set(BENCHMARK_ALIASES.values()))


def load_official(benchmark: str, path: str | Path, scorer_source: str = DEFAULT_SCORER_SOURCE) -> Run:
    """The official result files of `benchmark` under `path` as a scored `Run`."""
    name = BENCHMARK_ALIASES.get(benchmark.lower())
    if name is None:
        raise DataError(f"--official: unknown benchmark {benchmark!r}; one of {', '.join(official_benchmarks())}")
    path = Path(path)
    if not path.exists():
        raise DataError(f"--official {benchmark}: {path} does not exist")
    tasks, model = READERS[name](path, scorer_source)
    if not tasks:
        raise DataError(f"--official {benchmark}: no official {name} result files found in {path}")
    info = {"benchmark": name, "model": model or "?", "delta": "official", "scorer_source": scorer_source,
            "tasks": list(tasks), "official": True, "source": str(path)}
    return Run(path, info, tasks, f"official-{path.stem if path.is_file() else path.name}")


def _scored(record: dict, scorer_name: str, scorer_source: str, scorers: dict) -> dict:
    if scorer_name not in scorers:
        scorers[scorer_name] = get_scorer(scorer_name, scorer_source)
    prediction = record["prediction"]
    score, error = 0.0, record.get("error")
    if isinstance(prediction, str):
        scored = score_record({"prediction": prediction, "answer": record["answer"], "extra": record["extra"]}, scorers[scorer_name])
        score, error = scored["score"], error or scored.get("score_error")
    elif error is None:
        error = "no prediction"
    record.update({"score": score, "error": error, "scorer": scorer_name, "source": scorer_source, "delta": None})
    return record


# ----------------------------------------------------------------------------- MM-NIAH

MMNIAH_TASK = re.compile(r"^(?P<model>.+)_(?P<task>[^_]+)$")


def _mmniah_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    files = sorted(p for p in path.glob("*.jsonl"))
    for folder in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("temp_") and p.name != "results"):
        files += sorted(folder.glob("*.jsonl"))
    return files


def read_mmniah(path: Path, scorer_source: str) -> tuple[dict[str, list[dict]], str | None]:
    from v2pe.eval.runners.mmniah import TASKS, _scored_answer

    tasks: dict[str, list[dict]] = {}
    models = []
    where_of: dict[str, Path] = {}
    scorers: dict = {}
    for file in _mmniah_files(path):
        match = MMNIAH_TASK.match(file.stem)
        if not match or not any(base in match["task"] for base in TASKS):
            if path.is_file():
                raise DataError(f"{file}: not an official MM-NIAH output name {{model}}_{{task}}.jsonl (task e.g. retrieval-text-val)")
            continue
        task = match["task"]
        if task in tasks:
            raise DataError(f"two official MM-NIAH output files of task {task}: {where_of[task]} and {file}")
        models.append(match["model"])
        where_of[task] = file
        lines: dict[str, dict] = {}
        for number, line in read_jsonl(file):
            where = f"{file}:{number}"
            for key in ("question_id", "answer", "response", "placed_depth"):
                if key not in line:
                    raise DataError(f"{where}: official MM-NIAH output line without {key!r}")
            length = line.get("context_length", line.get("total_tokens"))
            if not isinstance(length, (int, float)):
                raise DataError(f"{where}: official MM-NIAH output line without a numeric 'context_length' (or 'total_tokens')")
            answer = line["answer"]
            if "counting" in task and not isinstance(answer, list):
                answer = _scored_answer(task, answer)  # calculate_scores.py: json.loads of a non-list counting answer
            kind = "int" if isinstance(answer, int) and not isinstance(answer, bool) else "list" if isinstance(answer, list) else "str"
            response = line["response"]
            record = {"id": line["question_id"], "task": task, "question_id": line["question_id"],
                      "question": line.get("question"), "context_length": length, "placed_depth": line["placed_depth"],
                      "prediction": response if isinstance(response, str) else None, "answer": answer, "extra": {},
                      "error": "official response 'None' (out of memory in the official run)" if response == OOM_RESPONSE else None}
            lines[str(line["question_id"])] = _scored(record, f"mmniah_is_correct_{kind}", scorer_source, scorers)
        if lines:
            tasks[task] = list(lines.values())
    return tasks, _one_model(models)


def _one_model(models: list[str]) -> str | None:
    unique = list(dict.fromkeys(models))
    return unique[0] if len(unique) == 1 else ", ".join(unique) if unique else None


# ----------------------------------------------------------------------------- MileBench


def _milebench_folders(path: Path) -> list[Path]:
    if (path / "pred.json").is_file():
        return [path]
    return sorted(p.parent for p in path.glob("*/pred.json"))


def read_milebench(path: Path, scorer_source: str) -> tuple[dict[str, list[dict]], str | None]:
    from v2pe.eval.runners.milebench import SCORERS
    from v2pe.eval.scorers.aggregate import milebench_metric

    if path.is_file():
        path = path.parent
    tasks: dict[str, list[dict]] = {}
    scorers: dict = {}
    for folder in _milebench_folders(path):
        dataset = folder.name
        annotation_path = folder / f"{dataset}.json"
        if not annotation_path.is_file():
            raise DataError(f"{folder / 'pred.json'}: the annotation {annotation_path.name} must be beside it "
                            "(evaluate.py takes question_type, choice_list and image_quantity_level from it)")
        annotation = read_json(annotation_path)
        if not isinstance(annotation, dict) or not isinstance(annotation.get("data"), list):
            raise DataError(f"{annotation_path}: not a MileBench annotation ({{'meta_data', 'data'}})")
        question_type = (annotation.get("meta_data") or {}).get("question_type")
        try:
            metric = milebench_metric(dataset, question_type)
        except DataError as error:
            raise DataError(f"{annotation_path}: {error}") from None
        items = {}
        for i, item in enumerate(annotation["data"]):
            try:
                items[int(item["sample_id"])] = item
            except (KeyError, TypeError, ValueError):
                raise DataError(f"{annotation_path}: data[{i}] has no integer sample_id") from None
        predictions = read_json(folder / "pred.json")
        if not isinstance(predictions, list):
            raise DataError(f"{folder / 'pred.json'}: expected a JSON list of predictions")
        records: dict[str, dict] = {}
        for i, pred in enumerate(predictions):
            where = f"{folder / 'pred.json'}: [{i}]"
            if not isinstance(pred, dict) or "sample_id" not in pred or "pred_response" not in pred:
                raise DataError(f"{where}: an official MileBench prediction has sample_id and pred_response")
            try:
                item = items[int(pred["sample_id"])]
            except (KeyError, TypeError, ValueError):
                raise DataError(f"{where}: sample_id {pred['sample_id']!r} is not in {annotation_path.name}") from None
            instance = item.get("task_instance") or {}
            paths = instance.get("images_path") or []
            context = instance.get("context") or ""
            answer = pred.get("gt_response", item.get("response"))
            if isinstance(answer, (int, float)) and not isinstance(answer, bool):
                answer = str(answer)
            choice_list = [str(c) for c in instance.get("choice_list") or []] if "choice_list" in instance else None
            response = pred["pred_response"]
            record = {"id": item["sample_id"], "task": dataset, "sample_id": item["sample_id"], "question": pred.get("question"),
                      "image_quantity_level": item.get("image_quantity_level"), "num_images": len(paths),
                      "placeholders": sum(context.count(f"{{image#{k}}}") + context.count(f"{{table#{k}}}")
                                          for k in range(1, len(paths) + 1)),
                      "prediction": response if isinstance(response, str) else None, "answer": answer,
                      "extra": {"choice_list": choice_list} if metric == "multichoice" else {},
                      "error": "official response 'None' (out of memory in the official run)" if response == OOM_RESPONSE else None}
            records[str(item["sample_id"])] = _scored(record, SCORERS[metric], scorer_source, scorers)
        if records:
            tasks[dataset] = list(records.values())
    return tasks, None


# ----------------------------------------------------------------------------- Long-VQA

RESULT_NAME = re.compile(r"^result_(?:(?:val_)?long_vqa_)?(?P<task>[a-z]+)(?:_(?P<lo>\d+)_(?P<hi>\d+))?$")
GROUP_FOLDER = re.compile(r"long_vqa_(?P<g>\d+)k$")


def _longvqa_group(file: Path, lo: str | None, hi: str | None) -> str:
    if lo is not None:
        return f"{lo}_{hi}"
    for folder in file.parents:
        match = GROUP_FOLDER.search(folder.name)
        if match:
            g = int(match["g"])
            return "16_32" if g == 32 else f"{g - 8}_{g}"
    return "all"


def read_longvqa(path: Path, scorer_source: str) -> tuple[dict[str, list[dict]], str | None]:
    from v2pe.eval.runners.longvqa import SCORERS
    from v2pe.eval.scorers.longvqa import LONGVQA_TASK_METRICS, rectified_pair

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
        group = _longvqa_group(file, match["lo"], match["hi"])
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
            lines[str(line["id"])] = _scored(record, SCORERS[metric], scorer_source, scorers)
        if lines:
            tasks[name] = list(lines.values())
    return tasks, None


READERS = {"mm-niah": read_mmniah, "milebench": read_milebench, "long-vqa": read_longvqa}
