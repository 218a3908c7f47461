"""ScienceQA (image test set) runner (reference-spec 5.4; InternVL `eval/scienceqa/evaluate_scienceqa.py`).

Data (`--data`): the folder holding `scienceqa_test_img.jsonl` (InternVL's `data/scienceqa`),
or InternVL's `data/` folder (then `data/scienceqa/scienceqa_test_img.jsonl`). Lines:
`{"image", "question", "hint"?, "choices": [...], "answer": <0-based index>}`. Image paths are
opened as written, relative to InternVL's working directory (`internvl_chat/`, the folder
holding `data/`); they are looked up under `--image-root`, then the folders above the file.

Prompt, as the official dataset builds it: `[hint + "\\n"] + question + "\\n" + "A. c1\\nB. c2..."
+ "\\n" + "Answer with the option's letter from the given choices directly."`; one image,
tiles up to 6 (`evaluate.sh --max-num 6`, thumbnail on), `<image>\\n` prepended as `chat()`
does; greedy, min_new_tokens 1, max_new_tokens 100.

Scoring: scorer `mc_scienceqa` = the shared option-letter rule of `post_process` (one
character kept as is, else a leading option letter, else the first option whose text occurs
in the answer), compared exactly with the gold letter (`Acc@1`). One task `sqa_test` (the
official dataset name); sample id = the 0-based index of the line; result lines add `index`,
`question` (the prompt) and `image`.

Official quirks, kept unless said:
* The hint is used when truthy (`data['hint'] if data['hint'] else None`): an empty string or
  null hint adds nothing. A line without a `hint` key raises KeyError officially; here it
  counts as no hint.
* Choices are lettered A-E only: a sixth choice raises IndexError officially (a DataError
  naming the line here).
* The question is not stripped (later InternVL versions strip the whole prompt).
* An answer that matches no rule: early InternVL draws a random letter, the version V2PE forked
  keeps the answer unchanged (scored wrong); here it is scored wrong. A one-character answer is
  kept as is, so a lower-case `a` is wrong. An empty answer crashes the official run
  (`pred[0]`); here it is scored wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from v2pe.errors import ConfigError, DataError
from v2pe.eval.benchmarks.base import IMAGE_ROOT, Benchmark
from v2pe.eval.report_format import fmt, table, task_rows
from v2pe.eval.runners.base import Sample, Task, find_file, read_jsonl, require, resolve_image

LETTER_PROMPT = "Answer with the option's letter from the given choices directly."
LETTERS = "ABCDE"
FILE = "scienceqa_test_img.jsonl"
TASK = "sqa_test"
MAX_NEW_TOKENS = 100
MAX_TILES = 6


def image_roots(path: Path, image_root: str | Path | None) -> list[Path]:
    """--image-root, then the file's folder and the folders above it (InternVL opens paths
    relative to the folder holding `data/`)."""
    roots = [Path(image_root)] if image_root else []
    return roots + [path.parent, *list(path.parent.parents)[:3]]


def build_prompt(question: str, hint, choices: Sequence) -> tuple[str, dict[str, str]]:
    options = {LETTERS[i]: str(c) for i, c in enumerate(choices)}
    prompt = question
    if hint:
        prompt = hint + "\n" + prompt
    prompt += "\n" + "\n".join(f"{k}. {v}" for k, v in options.items())
    prompt += "\n" + LETTER_PROMPT
    return prompt, options


def load_tasks(data: str | Path, processor=None, tasks: Sequence[str] | None = None, limit: int | None = None,
               image_root: str | Path | None = None, max_tiles: int | None = None, **_) -> list[Task]:
    data = Path(data)
    if tasks and list(tasks) != [TASK]:
        raise ConfigError(f"unknown ScienceQA task(s) {', '.join(t for t in tasks if t != TASK)}; known: {TASK}")
    path = find_file(data, FILE, "scienceqa")
    roots = image_roots(path, image_root)
    samples = []
    for index, (number, record) in enumerate(read_jsonl(path)):
        if limit is not None and index >= limit:
            break
        where = f"{path}:{number}"
        image = require(record, "image", where, str)
        question = require(record, "question", where, str)
        choices = require(record, "choices", where, list)
        answer = require(record, "answer", where, int)
        if not choices or len(choices) > len(LETTERS):
            raise DataError(f"{where}: {len(choices)} choices; ScienceQA letters only A-E (1 to 5 choices)")
        if not 0 <= answer < len(choices):
            raise DataError(f"{where}: answer index {answer} is outside the {len(choices)} choices")
        prompt, options = build_prompt(question, record.get("hint"), choices)
        samples.append(Sample(
            id=index,
            prompt=prompt,
            images=[resolve_image(image, roots)],
            answer=LETTERS[answer],
            scorer="mc_scienceqa",
            max_new_tokens=MAX_NEW_TOKENS,
            max_tiles=max_tiles or MAX_TILES,
            extra={"options": options},
            fields={"index": index, "question": prompt, "image": image},
            generate_kwargs={"min_new_tokens": 1},
        ))
    return [Task(TASK, path, samples, {"scorer": "mc_scienceqa"})]


def numbers(run) -> dict:
    datasets = task_rows(run.tasks)
    return {"datasets": datasets, "headline": {f"{name} Acc@1": d["score"] for name, d in datasets.items()}}


def markdown(numbers: dict) -> str:
    rows = [[name, fmt(d["score"]), d["samples"], d["errors"]] for name, d in numbers["datasets"].items()]
    return "Acc@1 (post-processed letter == gold letter; x100):\n\n" + table(["task", "Acc@1", "n", "errors"], rows)


BENCHMARK = Benchmark(
    "scienceqa", load_tasks, "ScienceQA image test set (scienceqa_test_img.jsonl), Acc@1",
    help="run ScienceQA (DATA/scienceqa_test_img.jsonl, InternVL data/scienceqa layout)", tasks_help="the task sqa_test",
    options=(IMAGE_ROOT,), numbers=numbers, markdown=markdown,
)
