"""General single-image VQA runner (reference-spec 5.4; InternVL `eval/vqa/evaluate_vqa.py`).

Data: the InternVL `data/` folder (`--data path/to/data`): each dataset's test JSONL at its
official place (table below), lines `{"image", "question", "question_id", "answer"?}`. Image
paths are relative to the folder holding `data/` (InternVL runs from its repo root); they are
also looked up under `--image-root` and `DATA`.

Gold answers, as the official scoring takes them: the VQA-accuracy datasets (VQAv2, OK-VQA,
TextVQA, VizWiz) score against the 10 human answers of the annotation JSON (`{"annotations":
[{"question_id", "answers": [{"answer"}]}]}`, `question_id2answers` in `evaluate_vqa.py`), and
DocVQA / InfographicVQA against the answers of their ground-truth JSON (`{"data":
[{"questionId", "answers": [...]}]}`, read by `infographicsvqa_eval.py -g`), whatever `answer` a
test line carries (InternVL's TextVQA lines carry a single one). Only when that annotation file
is absent are the line's own answers used, and then every result line and the task info say so
(`answer_source`: "annotation" or "line"). A question missing from an annotation file that
exists is a DataError before generation (the official code raises KeyError after it).

| dataset | annotation file (under DATA) |
|---|---|
| vqav2_val | vqav2/v2_mscoco_val2014_annotations.json |
| okvqa_val | okvqa/mscoco_val2014_annotations.json |
| textvqa_val | textvqa/textvqa_val_annotations.json |
| vizwiz_val | vizwiz/vizwiz_val_annotations.json |
| docvqa_val | docvqa/val/val_v1.0.json (the current `evaluate_vqa.py`), else docvqa/val/val_v1.0_withQT.json |
| infographicsvqa_val | infographicsvqa/infographicsVQA_val_v1.0_withQT.json |

Prompt: question + ' ' + prompt, with prompt 'Answer the question using a single word or
phrase.' (VizWiz: "When the provided information is insufficient, respond with
'Unanswerable'. " before it; AI2D: none). The image is tiled with the dataset's tile limit
(`scripts/evaluate.sh --max-num`: ChartQA 12, DocVQA 18, InfoVQA 24, others 6), thumbnail on;
`<image>\\n` is prepended as the official single-image chat does. Greedy, min_new_tokens 1,
max_new_tokens 10 or 100 per dataset.

| dataset | scorer |
|---|---|
| vqav2_val, okvqa_val, textvqa_val, vizwiz_val | vqa_accuracy_textvqa (10 answers) |
| docvqa_val, infographicsvqa_val | anls_infographicsvqa |
| chartqa_test_human, chartqa_test_augmented | relaxed_accuracy_vqa |
| ocrvqa_val, ocrvqa_test | exact_match_vqa |
| ai2diagram_test | mc_ai2d |
| gqa_testdev_llava | exact_match_vqa (approximation: the official score is GQA's own eval.py) |

Result lines add `question_id`, `question` (with the prompt) and `answer_source`. The report
gives the mean score per dataset (x100; a failed sample scores 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from v2pe.errors import DataError
from v2pe.eval.benchmarks.base import IMAGE_ROOT, Benchmark
from v2pe.eval.report_format import fmt, table, task_rows
from v2pe.eval.runners.base import Sample, Task, read_json, read_jsonl, refuse_unknown, require, resolve_image, unique_ids

BASE_PROMPT = "Answer the question using a single word or phrase."
VIZWIZ_PROMPT = "When the provided information is insufficient, respond with 'Unanswerable'. "


@dataclass(frozen=True)
class VQADataset:
    test: str  # relative to the data folder
    max_new_tokens: int
    scorer: str
    max_tiles: int = 6
    annotation: tuple[str, ...] = ()  # official ground-truth files (the first one present is read)
    annotation_format: str = "vqa"  # "vqa": annotations[].answers[].answer; "docvqa": data[].questionId/answers

    def prompt(self, name: str) -> str:
        if "vizwiz" in name:
            return VIZWIZ_PROMPT + BASE_PROMPT
        if "ai2d" in name:
            return ""
        return BASE_PROMPT


DATASETS = {
    "vqav2_val": VQADataset("vqav2/vqav2_val.jsonl", 10, "vqa_accuracy_textvqa", annotation=("vqav2/v2_mscoco_val2014_annotations.json",)),
    "okvqa_val": VQADataset("okvqa/okvqa_val.jsonl", 10, "vqa_accuracy_textvqa", annotation=("okvqa/mscoco_val2014_annotations.json",)),
    "textvqa_val": VQADataset("textvqa/textvqa_val.jsonl", 10, "vqa_accuracy_textvqa", annotation=("textvqa/textvqa_val_annotations.json",)),
    "vizwiz_val": VQADataset("vizwiz/vizwiz_val.jsonl", 10, "vqa_accuracy_textvqa", annotation=("vizwiz/vizwiz_val_annotations.json",)),
    "docvqa_val": VQADataset("docvqa/val.jsonl", 100, "anls_infographicsvqa", max_tiles=18,
                             annotation=("docvqa/val/val_v1.0.json", "docvqa/val/val_v1.0_withQT.json"), annotation_format="docvqa"),
    "chartqa_test_human": VQADataset("chartqa/test_human.jsonl", 100, "relaxed_accuracy_vqa", max_tiles=12),
    "chartqa_test_augmented": VQADataset("chartqa/test_augmented.jsonl", 100, "relaxed_accuracy_vqa", max_tiles=12),
    "gqa_testdev_llava": VQADataset("gqa/llava_gqa_testdev_balanced_qwen_format.jsonl", 10, "exact_match_vqa"),
    "ocrvqa_val": VQADataset("ocrvqa/ocrvqa_val.jsonl", 100, "exact_match_vqa"),
    "ocrvqa_test": VQADataset("ocrvqa/ocrvqa_test.jsonl", 100, "exact_match_vqa"),
    "ai2diagram_test": VQADataset("ai2diagram/test_vlmevalkit.jsonl", 10, "mc_ai2d"),
    "infographicsvqa_val": VQADataset("infographicsvqa/val.jsonl", 100, "anls_infographicsvqa", max_tiles=24,
                                      annotation=("infographicsvqa/infographicsVQA_val_v1.0_withQT.json",),
                                      annotation_format="docvqa"),
}


def load_tasks(data: str | Path, processor=None, tasks: Sequence[str] | None = None, limit: int | None = None,
               image_root: str | Path | None = None, max_tiles: int | None = None, **_) -> list[Task]:
    data = Path(data)
    if not data.is_dir():
        raise DataError(f"VQA data folder {data} does not exist")
    refuse_unknown(tasks, DATASETS, "VQA dataset(s)")
    present = [n for n, d in DATASETS.items() if (data / d.test).is_file()]
    names = list(tasks) if tasks else present
    missing = [n for n in names if n not in present]
    if missing:
        raise DataError(", ".join(f"{n}: {data / DATASETS[n].test} not found" for n in missing))
    if not names:
        raise DataError(f"{data}: no VQA test file found (expected e.g. {data / DATASETS['textvqa_val'].test})")
    roots = ([Path(image_root)] if image_root else []) + [data.parent, data]
    return [read_task(n, data, roots, limit, max_tiles) for n in names]


def read_task(name: str, data: Path, roots: list[Path], limit: int | None, max_tiles: int | None = None) -> Task:
    dataset = DATASETS[name]
    path = data / dataset.test
    rows = []
    for number, record in read_jsonl(path):
        if limit is not None and len(rows) >= limit:
            break
        rows.append((number, record))
    annotation_path = next((data / a for a in dataset.annotation if (data / a).is_file()), None)
    annotations = None
    if annotation_path is not None:
        annotations = _docvqa_answers(annotation_path) if dataset.annotation_format == "docvqa" else _vqa_answers(annotation_path)
        annotations.update({str(k): v for k, v in list(annotations.items()) if str(k) not in annotations})
    source = "annotation" if annotations is not None else "line"
    ids = unique_ids([require(r, "question_id", f"{path}:{n}") for n, r in rows], [n for n, _ in rows])
    prompt = dataset.prompt(name)
    samples = []
    for (number, record), sample_id in zip(rows, ids):
        where = f"{path}:{number}"
        image = require(record, "image", where, str)
        question = require(record, "question", where, str)
        if annotations is not None:
            answer = annotations.get(record["question_id"], annotations.get(str(record["question_id"])))  # "12" and 12 alike
            if answer is None:
                raise DataError(f"{where}: question_id {record['question_id']!r} has no answers in {annotation_path}")
        elif "answer" in record:
            answer = record["answer"]
        else:
            expected = " or ".join(str(data / a) for a in dataset.annotation)
            raise DataError(f"{where}: missing field 'answer'" + (f" and no annotation file ({expected})" if expected else ""))
        if prompt:
            question = question + " " + prompt
        samples.append(Sample(
            id=sample_id,
            prompt=question,
            images=[resolve_image(image, roots)],
            answer=answer,
            scorer=dataset.scorer,
            max_new_tokens=dataset.max_new_tokens,
            max_tiles=max_tiles or dataset.max_tiles,
            fields={"question_id": record["question_id"], "question": question, "answer_source": source},
            generate_kwargs={"min_new_tokens": 1},
        ))
    info = {"scorer": dataset.scorer, "answer_source": source}
    if annotation_path is not None:
        info["annotation"] = str(annotation_path)
    return Task(name, path, samples, info)


def _vqa_answers(path: Path) -> dict:
    annotation = read_json(path)
    items = require(annotation, "annotations", str(path), list)
    answers = {}
    for index, item in enumerate(items):
        where = f"{path}: annotations[{index}]"
        entries = require(item, "answers", where, list)
        answers[require(item, "question_id", where)] = [require(e, "answer", f"{where}: answers", str) for e in entries]
    return answers


def _docvqa_answers(path: Path) -> dict:
    """questionId -> answers of a DocVQA / InfographicVQA ground-truth file."""
    annotation = read_json(path)
    items = require(annotation, "data", str(path), list)
    answers = {}
    for index, item in enumerate(items):
        where = f"{path}: data[{index}]"
        entries = require(item, "answers", where, list)
        if not entries or not all(isinstance(e, str) for e in entries):
            raise DataError(f"{where}: answers must be a non-empty list of strings")
        answers[require(item, "questionId", where)] = entries
    return answers


def numbers(run) -> dict:
    return {"datasets": task_rows(run.tasks)}


def markdown(numbers: dict) -> str:
    rows = [[name, fmt(d["score"]), d["samples"], d["errors"]] for name, d in numbers["datasets"].items()]
    return table(["dataset", "score", "n", "errors"], rows)


BENCHMARK = Benchmark(
    "vqa", load_tasks, "general single-image VQA (TextVQA, DocVQA, ChartQA, InfoVQA, AI2D, ...)",
    help="run general VQA sets (InternVL data/ layout, e.g. DATA/textvqa/textvqa_val.jsonl)",
    tasks_help="datasets such as textvqa_val docvqa_val chartqa_test_human",
    options=(IMAGE_ROOT,), numbers=numbers, markdown=markdown,
)
