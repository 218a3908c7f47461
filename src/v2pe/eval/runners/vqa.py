"""General single-image VQA runner (reference-spec 5.4; InternVL `eval/vqa/evaluate_vqa.py`).

Data: the InternVL `data/` folder (`--data path/to/data`): each dataset's test JSONL at its
official place (table below), lines `{"image", "question", "question_id", "answer"?}`. Image
paths are relative to the folder holding `data/` (InternVL runs from its repo root); they are
also looked up under `--image-root` and `DATA`. Datasets scored with VQA accuracy read the 10
human answers from the official annotation JSON (`{"annotations": [{"question_id", "answers":
[{"answer"}]}]}`) when a line has no `answer`.

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

Result lines add `question_id` and `question` (with the prompt).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from v2pe.errors import ConfigError, DataError
from v2pe.eval.runners.base import Benchmark, Sample, Task, read_json, read_jsonl, require, resolve_image, unique_ids

BASE_PROMPT = "Answer the question using a single word or phrase."
VIZWIZ_PROMPT = "When the provided information is insufficient, respond with 'Unanswerable'. "


@dataclass(frozen=True)
class VQADataset:
    test: str  # relative to the data folder
    max_new_tokens: int
    scorer: str
    max_tiles: int = 6
    annotation: str | None = None  # VQA-format answers (vqa_score datasets)

    def prompt(self, name: str) -> str:
        if "vizwiz" in name:
            return VIZWIZ_PROMPT + BASE_PROMPT
        if "ai2d" in name:
            return ""
        return BASE_PROMPT


DATASETS = {
    "vqav2_val": VQADataset("vqav2/vqav2_val.jsonl", 10, "vqa_accuracy_textvqa", annotation="vqav2/v2_mscoco_val2014_annotations.json"),
    "okvqa_val": VQADataset("okvqa/okvqa_val.jsonl", 10, "vqa_accuracy_textvqa", annotation="okvqa/mscoco_val2014_annotations.json"),
    "textvqa_val": VQADataset("textvqa/textvqa_val.jsonl", 10, "vqa_accuracy_textvqa", annotation="textvqa/textvqa_val_annotations.json"),
    "vizwiz_val": VQADataset("vizwiz/vizwiz_val.jsonl", 10, "vqa_accuracy_textvqa", annotation="vizwiz/vizwiz_val_annotations.json"),
    "docvqa_val": VQADataset("docvqa/val.jsonl", 100, "anls_infographicsvqa", max_tiles=18),
    "chartqa_test_human": VQADataset("chartqa/test_human.jsonl", 100, "relaxed_accuracy_vqa", max_tiles=12),
    "chartqa_test_augmented": VQADataset("chartqa/test_augmented.jsonl", 100, "relaxed_accuracy_vqa", max_tiles=12),
    "gqa_testdev_llava": VQADataset("gqa/llava_gqa_testdev_balanced_qwen_format.jsonl", 10, "exact_match_vqa"),
    "ocrvqa_val": VQADataset("ocrvqa/ocrvqa_val.jsonl", 100, "exact_match_vqa"),
    "ocrvqa_test": VQADataset("ocrvqa/ocrvqa_test.jsonl", 100, "exact_match_vqa"),
    "ai2diagram_test": VQADataset("ai2diagram/test_vlmevalkit.jsonl", 10, "mc_ai2d"),
    "infographicsvqa_val": VQADataset("infographicsvqa/val.jsonl", 100, "anls_infographicsvqa", max_tiles=24),
}


def load_tasks(data: str | Path, processor=None, tasks: Sequence[str] | None = None, limit: int | None = None,
               image_root: str | Path | None = None, max_tiles: int | None = None, **_) -> list[Task]:
    data = Path(data)
    if not data.is_dir():
        raise DataError(f"VQA data folder {data} does not exist")
    unknown = [t for t in tasks or [] if t not in DATASETS]
    if unknown:
        raise ConfigError(f"unknown VQA dataset(s) {', '.join(unknown)}; known: {', '.join(DATASETS)}")
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
    annotations = None
    if dataset.annotation and any("answer" not in r for _, r in rows):
        annotations = _vqa_answers(data / dataset.annotation)
    ids = unique_ids([require(r, "question_id", f"{path}:{n}") for n, r in rows], [n for n, _ in rows])
    prompt = dataset.prompt(name)
    samples = []
    for (number, record), sample_id in zip(rows, ids):
        where = f"{path}:{number}"
        image = require(record, "image", where, str)
        question = require(record, "question", where, str)
        if "answer" in record:
            answer = record["answer"]
        elif annotations is not None:
            if record["question_id"] not in annotations:
                raise DataError(f"{where}: question_id {record['question_id']!r} has no answers in {data / dataset.annotation}")
            answer = annotations[record["question_id"]]
        else:
            raise DataError(f"{where}: missing field 'answer'")
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
            fields={"question_id": record["question_id"], "question": question},
            generate_kwargs={"min_new_tokens": 1},
        ))
    return Task(name, path, samples, {"scorer": dataset.scorer})


def _vqa_answers(path: Path) -> dict:
    annotation = read_json(path)
    items = require(annotation, "annotations", str(path), list)
    answers = {}
    for index, item in enumerate(items):
        where = f"{path}: annotations[{index}]"
        entries = require(item, "answers", where, list)
        answers[require(item, "question_id", where)] = [require(e, "answer", f"{where}: answers", str) for e in entries]
    return answers


BENCHMARK = Benchmark("vqa", load_tasks, "general single-image VQA (TextVQA, DocVQA, ChartQA, InfoVQA, AI2D, ...)")
