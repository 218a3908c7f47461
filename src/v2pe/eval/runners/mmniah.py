"""MM-NIAH runner (reference-spec 5.1; V2PE `eval/mm_niah/eval_mm_niah.py` + `tools.get_input`).

Data: `DATA/<split>/annotations/<task>.jsonl` with images under `DATA/<split>/images/` (the
official `mm_niah.json` layout; a split folder named `mm_niah_val` gives the split `val`), or a
folder written by `v2pe data build needle` (`DATA/<task>.jsonl`, image paths relative to DATA).
`DATA` may also be one split folder. Task names are `<task>-<split>`, e.g. `retrieval-text-val`;
`--tasks retrieval-text` selects that task in every split.

Prompt, as the V2PE copy of `get_input`:
* `#<image>` in context + question must equal len(images_list) (checked before generation);
* `meta.choices` (retrieval-image): `\\nA. c1\\nB. c2...` + the letter prompt;
* `meta.choices_image_path` (reasoning-image): `\\nA. <image>...` lines (those images are
  appended to the image list) + the letter prompt;
* list answer (counting): no suffix (the V2PE copy comments the phrase prompt out); a counting
  answer stored as a JSON string ("[1, 2]") is scored by the list rule, as the official scorer
  parses it (the prompt follows the answer as stored);
* otherwise `\\nAnswer the question using a single word or phrase.`;
* query = context + question (no separator). Every image: at most 5 tiles (thumbnail on).
max_new_tokens 320 for counting tasks, else 16. Samples run longest first (the official
`sorted(context_length)[::-1]`).

Result lines add the official output fields `question_id`, `question` (question + suffixes,
without the context), `context_length`, `placed_depth`. Scorer: `mmniah_is_correct_<int|list|str>`
by the answer's JSON type.
"""

from __future__ import annotations

import json

from pathlib import Path
from typing import Any

from v2pe.errors import ConfigError, DataError
from v2pe.eval.runners.base import IMAGE, Benchmark, Sample, Task, read_jsonl, require, unique_ids
from v2pe.eval.scorers.aggregate import mmniah_depth_bin

MAX_TILES = 5
LETTER_PROMPT = "\nAnswer with the option's letter from the given choices directly."
PHRASE_PROMPT = "\nAnswer the question using a single word or phrase."
TASKS = ("retrieval-text", "retrieval-image", "counting-text", "counting-image", "reasoning-text", "reasoning-image")


def split_folders(data: Path) -> list[Path]:
    """Split folders under `data` (folders holding `annotations/`), or `data` itself."""
    if (data / "annotations").is_dir():
        return [data]
    if not data.is_dir():
        raise DataError(f"MM-NIAH data folder {data} does not exist")
    splits = sorted(p for p in data.iterdir() if (p / "annotations").is_dir())
    if not splits:
        raise DataError(f"{data}: no MM-NIAH split folder (<split>/annotations/<task>.jsonl) found")
    return splits


def is_built_folder(data: Path) -> bool:
    """A folder written by `v2pe data build needle`: `<task>.jsonl` files, image paths relative to it."""
    return data.is_dir() and not (data / "annotations").is_dir() and bool(built_task_files(data))


def built_task_files(data: Path) -> list[Path]:
    # `<task>_train.jsonl` beside them is the same data as training conversations.
    return sorted(p for p in data.glob("*.jsonl") if p.stem in TASKS)


def split_name(folder: Path) -> str:
    name = folder.name
    return name[len("mm_niah_"):] if name.startswith("mm_niah_") else name


def discover(data: Path) -> dict[str, tuple[Path, Path, str]]:
    """{task name: (annotation file, image root, base task)} in sorted order."""
    if is_built_folder(data):
        return {path.stem: (path, data, path.stem) for path in built_task_files(data)}
    found = {}
    for folder in split_folders(data):
        for path in sorted((folder / "annotations").glob("*.jsonl")):
            found[f"{path.stem}-{split_name(folder)}"] = (path, folder / "images", path.stem)
    return found


def load_tasks(data: str | Path, processor=None, tasks=None, limit: int | None = None, max_tiles: int = MAX_TILES, **_) -> list[Task]:
    data = Path(data)
    found = discover(data)
    wanted = list(tasks or [])
    names = [n for n, (_, _, base) in found.items() if not wanted or n in wanted or base in wanted]
    unknown = [w for w in wanted if w not in found and not any(base == w for _, _, base in found.values())]
    if unknown:
        raise ConfigError(f"unknown MM-NIAH task(s) {', '.join(unknown)}; available: {', '.join(found) or 'none'}")
    return [read_task(name, *found[name][:2], limit=limit, max_tiles=max_tiles) for name in names]


def read_task(name: str, annotation: Path, image_root: Path, limit: int | None = None, max_tiles: int = MAX_TILES) -> Task:
    rows = []
    for number, record in read_jsonl(annotation):
        if limit is not None and len(rows) >= limit:
            break
        rows.append((number, record))
    ids = unique_ids([require(r, "id", f"{annotation}:{n}") for n, r in rows], [n for n, _ in rows])
    samples = [make_sample(name, record, sample_id, image_root, f"{annotation}:{number}", max_tiles)
               for (number, record), sample_id in zip(rows, ids)]
    # official order: sorted by context length, then reversed (longest first)
    samples = sorted(samples, key=lambda s: s.fields["context_length"])[::-1]
    return Task(name, annotation, samples, {"split": split_name(annotation.parent.parent)})


def build_question(question: str, answer: Any, choices, choices_image, images: list[str]) -> str:
    """The V2PE `get_input` suffixes (appends choice images to `images`)."""
    if choices:
        for index, choice in enumerate(choices):
            question = f"{question}\n{chr(index + ord('A'))}. {choice}"
        question += LETTER_PROMPT
    elif choices_image:
        for index, path in enumerate(choices_image):
            question = f"{question}\n{chr(index + ord('A'))}. {IMAGE}"
            images.append(path)
        question += LETTER_PROMPT
    elif isinstance(answer, list):
        pass  # counting: the V2PE copy drops the phrase prompt
    else:
        question += PHRASE_PROMPT
    return question


def make_sample(task: str, record: dict, sample_id, image_root: Path, where: str, max_tiles: int = MAX_TILES) -> Sample:
    images = list(require(record, "images_list", where, list))
    context = require(record, "context", where, str)
    question = require(record, "question", where, str)
    answer = require(record, "answer", where)
    meta = require(record, "meta", where, dict)
    context_length = require(meta, "context_length", f"{where}: meta", (int, float))
    placed_depth = require(meta, "placed_depth", f"{where}: meta", (int, float, list))
    try:
        mmniah_depth_bin(placed_depth)
    except (DataError, TypeError, ZeroDivisionError) as error:
        raise DataError(f"{where}: bad meta.placed_depth {placed_depth!r} ({error})") from None
    if not all(isinstance(p, str) for p in images):
        raise DataError(f"{where}: images_list must be a list of paths")
    placeholders = context.count(IMAGE) + question.count(IMAGE)
    if placeholders != len(images):
        raise DataError(f"{where}: {placeholders} `<image>` placeholders in context + question but {len(images)} images in images_list")
    choices, choices_image = meta.get("choices"), meta.get("choices_image_path")
    if choices is not None and choices_image is not None:
        raise DataError(f"{where}: meta has both choices and choices_image_path")
    for name, value in (("choices", choices), ("choices_image_path", choices_image)):
        if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise DataError(f"{where}: meta.{name} must be a list of strings or null")
    question = build_question(question, answer, choices, choices_image, images)
    answer = _scored_answer(task, answer)
    kind = "int" if isinstance(answer, int) else "list" if isinstance(answer, list) else "str"
    return Sample(
        id=sample_id,
        prompt=context + question,
        images=[image_root / p for p in images],
        answer=answer,
        scorer=f"mmniah_is_correct_{kind}",
        max_new_tokens=320 if "counting" in task else 16,
        max_tiles=max_tiles,
        fields={"question_id": record["id"], "question": question, "context_length": context_length, "placed_depth": placed_depth},
        diagnose=_diagnose_list if kind == "list" else _diagnose_int if kind == "int" else None,
    )


def _scored_answer(task: str, answer: Any) -> Any:
    """A counting answer stored as a JSON string ("[1, 2]") is scored as the list it spells, as the
    official calculate_scores.py parses it; the prompt is still built from the answer as stored."""
    if "counting" in task and isinstance(answer, str):
        try:
            parsed = json.loads(answer)
        except json.JSONDecodeError:
            return answer
        if isinstance(parsed, list):
            return parsed
    return answer


def _diagnose_list(prediction: str) -> str | None:
    from v2pe.eval.scorers.mmniah import _parse_counting_response

    if _parse_counting_response(prediction.strip(".")) is None:
        return f"unparseable prediction: not a JSON list of counts: {prediction[:200]!r}"
    return None


def _diagnose_int(prediction: str) -> str | None:
    from v2pe.eval.scorers.mmniah import _simplify_response

    response = prediction.strip(".")
    if response.isdigit():
        return None
    text = _simplify_response(response).strip()
    if len(text) == 1 or "the camera is moving" in text or text in ("left", "right"):
        return None
    return f"unparseable prediction: no single option letter in {prediction[:200]!r}"


BENCHMARK = Benchmark("mm-niah", load_tasks, "MM-NIAH needle-in-a-haystack (retrieval / counting / reasoning x text / image)")
