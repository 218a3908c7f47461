"""MM-NIAH (reference-spec 5.1; V2PE `eval/mm_niah/eval_mm_niah.py` + `tools.get_input`), and its
long split at 128K-1M tokens (V2PE `eval/mm_niah/eval_mm_niah_long.py`, see "Long split" below).

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

Aggregation (`calculate_scores.py`, `numbers`): each sample falls in a context-length bin
(`np.digitize` over `LENGTH_BINS`: bin j >= 1 covers [bins[j-1], bins[j]), bin 0 is < 1000
tokens and is dropped, the last bin is >= 64000) and a depth bin ``int(depth / 0.2)`` (a list of
depths is averaged first; depth 1.0 counts as 0.99; the float division is kept, so 0.6 lands in
bin 2). Cell accuracy = summed score / samples, 0 for an empty cell. The task's per-length score
is the mean of its 5 depth cells (empty cells count as 0), rounded to 6 digits. `overall` is the
element-wise mean of the 6 tasks' lists (only with exactly 6 tasks of a split). The V2PE copy
also reports sample-weighted accuracies. Reports add the per-task mean over the length bins that
have samples, and V2PE's Text / Image / Avg (mean over text-needle tasks, image-needle tasks, and
of the two); heat maps leave empty cells blank (marked "-").

Long split (128K-1M; V2PE-Data `data/val/long_mr_{128k,256k,512k,1m}/`): the files
`test_long_mr_<image|text>_<retrieval|reasoning>_<lo>_<hi>.jsonl` (lo_hi in K tokens: 64_128,
128_256, 256_512, 512_1200), lines in the MM-NIAH annotation format above (`id`, `images_list`,
`context`, `question`, `answer`, `meta` with `context_length`, `placed_depth`, `choices`,
`choices_image_path`). `DATA` may be V2PE-Data's `data/` folder, its `val/` folder, one
`long_mr_<size>` folder or one such file; they run through the same runner, beside any official
splits found. Task names follow the official `retrieval-image-test-{128k,256k,512k,1M}`:
`<retrieval|reasoning>-<text|image>-test-<size>` (hi 1200 is `1M`); `--tasks` takes a task, a
base task (every split) or a split (`test-128k`). Relative image paths are looked up under
`--image-root`, then `image/long_mr/` and `image/` of each of the four folders above the file
(V2PE-Data's `data/image/long_mr.tar.gz.part*` unpacked in place), then the file's folder.
Prompt: the same `get_input` query; at most 12 tiles per image (the long script's
`load_image(max_num=12)`); samples run shortest first (its `sorted(context_length)`).

Scoring of the long split (`--long-scoring`):
* `teacher-forced` (default; the official rule as the spec describes it): no generation. The
  sample is encoded as `[human: context + question, gpt: str(answer)]` as the script's
  `preprocess_internlm` does (both turns stripped), one pass gives the argmax at every answer
  token (`runners.teacher_forcing`), and scorer `mmniah_teacher_forced` decides: an int answer is
  right when the predicted answer tokens but the last, decoded and stripped (the line's
  `prediction`, the official `response`), equal the letter `chr(ord('A') + answer)`; any other
  answer when every predicted token but the last (the end-of-turn token) equals the gold one.
  The line's `extra` keeps `predicted_ids` and `answer_ids`, so `v2pe eval score` re-scores it.
* `generate`: v2pe's option, generated and scored like the official splits
  (`mmniah_is_correct_<type>`, max_new_tokens 16 / 320 for counting), 12 tiles.
Report (`numbers`): the official bins end at >=64K, so every long sample lands in their last
bin; as an explicit extension the long split's tasks are binned over `LONG_LENGTH_BINS`
(64-128K, 128-256K, 256-512K, 512K-1M, >=1M; under 64K dropped) with the official rule
(depth cells, empty cells 0, mean of 5 cells), and their numbers keep `official` (the scores
per official bin). Long tasks get their own table and plots; `overall` needs 6 tasks of a split
(the long split has 4), Text / Image / Avg are given.

Official quirks of the long split, none of which lets the script run as released:
* `eval_mm_niah_long.py` takes each task's annotation and image root from
  `eval/mm_niah/mm_niah_long.json`, which the release lacks, and calls `get_rope_pos_id` with
  `boxes=`, `orig_size=`, `images=`, which the released copy does not take (a TypeError; spec
  section 1.1 and section 7, quirk 20; benchmarks.md: "a missing task file and an argument the
  script rejects"). The file layout and task names here are read from V2PE-Data and the script;
  the image root it would have read from that json is unknown (hence the roots above).
* Its task names cover `retrieval-image` only; V2PE-Data has four tasks per size, all run here.
* The appended answer is `str(answer)`: for an image-choice question the option index as a
  digit, while the question asks for a letter; the verdict then compares the predicted first
  token(s) with the letter. Reproduced.
* The last answer token (the end-of-turn token) is left out of the comparison. Reproduced.
* After its own verdict (`correct` in its output lines) the script runs `calculate_scores.py`,
  which scores `response` with `is_correct`; rescoring the result lines with
  `mmniah_is_correct_<type>` (`v2pe eval score`) gives that number. Its output lines are read by
  `read_official` below, scored that way.
* Ring attention pads the sequence to a multiple of 2 x world size; on one device nothing is
  padded. 20 consecutive out-of-memory samples make it write 'None' for all the rest; here each
  such sample has its own error.

Official outputs (`read_official`, `v2pe eval report --official mm-niah PATH`): JSONL files
`{model}_{task}.jsonl` of `eval/mm_niah/eval_mm_niah.py` (task e.g. `retrieval-text-val`; the
official `calculate_scores.py` splits the name at the last `_`) directly in PATH or one folder
below (`{outputs}/{task}/{model}_{task}.jsonl`; `temp_*` per-rank folders and `results/` are
skipped), or PATH is one such file. Lines: `question_id`, `question`, `answer` (str | int |
list; a counting answer stored as a JSON string is parsed, as calculate_scores.py does),
`response` ('None' when the official run ran out of memory), `context_length` (or
`total_tokens`), `placed_depth` (float or list). The last line of a question_id counts.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from v2pe.errors import ConfigError, DataError
from v2pe.eval.benchmarks.base import Benchmark, Option
from v2pe.eval.report_format import fmt, mean, pct, plot_lines, pyplot, table
from v2pe.eval.runners.base import IMAGE, Sample, Task, read_jsonl, require, resolve_image, unique_ids

MAX_TILES = 5
LONG_MAX_TILES = 12  # eval_mm_niah_long.py: load_image(max_num=12)
LONG_SCORINGS = ("teacher-forced", "generate")
LONG_FILE = re.compile(r"^test_long_mr_(?P<modality>text|image)_(?P<kind>retrieval|reasoning|counting)_(?P<lo>\d+)_(?P<hi>\d+)$")
LONG_SPLIT = re.compile(r"^test-\d+[kM]$")
LETTER_PROMPT = "\nAnswer with the option's letter from the given choices directly."
PHRASE_PROMPT = "\nAnswer the question using a single word or phrase."
TASKS = ("retrieval-text", "retrieval-image", "counting-text", "counting-image", "reasoning-text", "reasoning-image")


def split_folders(data: Path, required: bool = True) -> list[Path]:
    """Split folders under `data` (folders holding `annotations/`), or `data` itself; with
    required=False an empty list where there are none (the long split may be there instead)."""
    if (data / "annotations").is_dir():
        return [data]
    if not data.is_dir():
        raise DataError(f"MM-NIAH data folder {data} does not exist")
    splits = sorted(p for p in data.iterdir() if (p / "annotations").is_dir())
    if not splits and required:
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


@dataclass(frozen=True)
class Found:
    """One task file: its annotation, the folders its relative image paths start from, its base
    task and split, and whether it belongs to the long split."""

    annotation: Path
    roots: tuple[Path, ...]
    base: str
    split: str
    long: bool = False


def long_files(data: Path) -> list[Path]:
    """The long split's files (`test_long_mr_<modality>_<kind>_<lo>_<hi>.jsonl`) in `data`, in
    its `long_mr_*` folders, or in those of its `val/` folder (V2PE-Data's `data/`)."""
    if data.is_file():
        return [data] if LONG_FILE.match(data.stem) else []
    if not data.is_dir():
        return []
    files = []
    for pattern in ("*.jsonl", "long_mr_*/*.jsonl", "val/long_mr_*/*.jsonl"):
        files += sorted(p for p in data.glob(pattern) if LONG_FILE.match(p.stem))
    return files


def long_split(lo: str, hi: str) -> str:
    """`test-<size>` of a long file covering lo..hi K tokens, as the official task names
    `retrieval-image-test-{128k,256k,512k,1M}` spell the size (hi 1200 -> 1M)."""
    size = int(hi)
    return f"test-{round(size / 1000)}M" if size >= 1000 else f"test-{size}k"


def is_long_split(split: str) -> bool:
    return LONG_SPLIT.match(split) is not None


def long_image_roots(annotation: Path, image_root: str | Path | None) -> tuple[Path, ...]:
    """Where the long split's relative image paths are looked up, in order (module docstring)."""
    roots = [Path(image_root)] if image_root else []
    for folder in list(annotation.parents)[:4]:
        roots += [folder / "image" / "long_mr", folder / "image"]
    return (*roots, annotation.parent)


def discover(data: Path, image_root: str | Path | None = None) -> dict[str, Found]:
    """{task name: Found} in sorted order: the official splits, then the long split."""
    if is_built_folder(data):
        return {path.stem: Found(path, (data,), path.stem, "") for path in built_task_files(data)}
    longs = long_files(data)
    found = {}
    for folder in split_folders(data, required=not longs) if data.is_dir() or not longs else []:
        for path in sorted((folder / "annotations").glob("*.jsonl")):
            found[f"{path.stem}-{split_name(folder)}"] = Found(path, (folder / "images",), path.stem, split_name(folder))
    for path in longs:
        match = LONG_FILE.match(path.stem)
        base, split = f"{match['kind']}-{match['modality']}", long_split(match["lo"], match["hi"])
        name = f"{base}-{split}"
        if name in found:
            raise DataError(f"two MM-NIAH long-split files give the task {name}: {found[name].annotation} and {path}")
        found[name] = Found(path, long_image_roots(path, image_root), base, split, long=True)
    return found


def load_tasks(data: str | Path, processor=None, tasks=None, limit: int | None = None, max_tiles: int | None = None,
               image_root: str | Path | None = None, long_scoring: str | None = None, **_) -> list[Task]:
    data = Path(data)
    scoring = long_scoring or LONG_SCORINGS[0]
    if scoring not in LONG_SCORINGS:
        raise ConfigError(f"--long-scoring must be one of {', '.join(LONG_SCORINGS)}, got {scoring!r}")
    found = discover(data, image_root)
    wanted = list(tasks or [])
    names = [n for n, f in found.items() if not wanted or n in wanted or f.base in wanted or f.split in wanted]
    unknown = [w for w in wanted if w not in found and not any(w in (f.base, f.split) for f in found.values())]
    if unknown:
        raise ConfigError(f"unknown MM-NIAH task(s) {', '.join(unknown)}; available: {', '.join(found) or 'none'}")
    result = []
    for name in names:
        task = found[name]
        tiles = max_tiles or (LONG_MAX_TILES if task.long else MAX_TILES)
        result.append(read_task(name, task.annotation, task.roots, limit=limit, max_tiles=tiles,
                                teacher_forced=task.long and scoring == "teacher-forced", split=task.split, long=task.long))
    return result


def read_task(name: str, annotation: Path, roots, limit: int | None = None, max_tiles: int = MAX_TILES,
              teacher_forced: bool = False, split: str | None = None, long: bool = False) -> Task:
    roots = (roots,) if isinstance(roots, Path) else tuple(roots)
    rows = []
    for number, record in read_jsonl(annotation):
        if limit is not None and len(rows) >= limit:
            break
        rows.append((number, record))
    ids = unique_ids([require(r, "id", f"{annotation}:{n}") for n, r in rows], [n for n, _ in rows])
    samples = [make_sample(name, record, sample_id, roots, f"{annotation}:{number}", max_tiles, teacher_forced)
               for (number, record), sample_id in zip(rows, ids)]
    samples = sorted(samples, key=lambda s: s.fields["context_length"])
    if not long:
        samples = samples[::-1]  # eval_mm_niah.py: sorted by context length, then reversed (longest first)
    info = {"split": split if split is not None else split_name(annotation.parent.parent)}
    if long:
        info["scoring"] = "teacher-forced" if teacher_forced else "generate"
    return Task(name, annotation, samples, info)


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


def make_sample(task: str, record: dict, sample_id, roots, where: str, max_tiles: int = MAX_TILES,
                teacher_forced: bool = False) -> Sample:
    """One sample; `roots`: the folders relative image paths start from (a folder, or several
    tried in order); teacher_forced: scored as the official long evaluation scores (module doc)."""
    roots = (roots,) if isinstance(roots, Path) else tuple(roots)
    images = list(require(record, "images_list", where, list))
    context = require(record, "context", where, str)
    question = require(record, "question", where, str)
    answer = require(record, "answer", where)
    meta = require(record, "meta", where, dict)
    context_length = require(meta, "context_length", f"{where}: meta", (int, float))
    placed_depth = require(meta, "placed_depth", f"{where}: meta", (int, float, list))
    try:
        depth_bin(placed_depth)
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
    fields = {"question_id": record["id"], "question": question, "context_length": context_length, "placed_depth": placed_depth}
    paths = [roots[0] / p for p in images] if len(roots) == 1 else [resolve_image(p, roots) for p in images]
    if teacher_forced:
        # eval_mm_niah_long.py: preprocess_internlm strips both turns; the answer is appended as str(answer)
        return Sample(id=sample_id, prompt=(context + question).strip(), images=paths, answer=answer, scorer="mmniah_teacher_forced",
                      max_new_tokens=320 if "counting" in task else 16, max_tiles=max_tiles, fields=fields,
                      forced_answer=str(answer))
    answer = _scored_answer(task, answer)
    kind = "int" if isinstance(answer, int) else "list" if isinstance(answer, list) else "str"
    return Sample(
        id=sample_id,
        prompt=context + question,
        images=paths,
        answer=answer,
        scorer=f"mmniah_is_correct_{kind}",
        max_new_tokens=320 if "counting" in task else 16,
        max_tiles=max_tiles,
        fields=fields,
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




# ----------------------------------------------------------------------------- aggregation

LENGTH_BINS = (1000, 2000, 4000, 8000, 12000, 16000, 24000, 32000, 40000, 48000, 64000)
DEPTH_INTERVAL = 0.2
DEPTH_BINS = 5
CONTEXT_RANGES = tuple(f"{b // 1000}k" for b in LENGTH_BINS)
LENGTH_LABELS = tuple(f"{lo // 1000}-{hi // 1000}K" for lo, hi in zip(LENGTH_BINS, LENGTH_BINS[1:])) + (f">={LENGTH_BINS[-1] // 1000}K",)
DEPTH_LABELS = tuple(f"{20 * i}-{20 * (i + 1)}%" for i in range(DEPTH_BINS))
#: v2pe's extension for the long split (the official bins end at >=64K): the same rule over these edges.
LONG_LENGTH_BINS = (64000, 128000, 256000, 512000, 1000000)
LONG_LENGTH_LABELS = ("64-128K", "128-256K", "256-512K", "512K-1M", ">=1M")


def length_bin(context_length: float, bins: Sequence[int] = LENGTH_BINS) -> int:
    """np.digitize(x, bins): 0 below the first edge (1000), len(bins) at or above the last (64000)."""
    return bisect.bisect_right(bins, context_length)


def depth_bin(placed_depth: float | list[float]) -> int:
    """int(depth / 0.2) of the (mean) needle depth, with 1.0 counted as 0.99."""
    depth = sum(placed_depth) / len(placed_depth) if isinstance(placed_depth, list) else placed_depth
    if depth == 1.0:
        depth = 0.99
    index = int(depth / DEPTH_INTERVAL)
    if not 0 <= index < DEPTH_BINS:
        raise DataError(f"MM-NIAH placed_depth {placed_depth!r} is outside [0, 1]")
    return index


@dataclass
class TaskScores:
    """One task's table: per length bin (11, <1K dropped) and per depth bin (5)."""

    cells: list[list[float]]  # [length bin][depth bin] accuracy, 0 when empty
    scores: list[float]  # per length bin: mean over the 5 depth cells, rounded to 6 digits
    sample_numbers: list[int]  # samples per length bin
    weighted_acc: list[float]  # per length bin: summed score / samples (0 when empty)
    weighted_avg_acc: float  # summed score / samples over all kept bins


def task_scores(samples: Iterable[Mapping], bins: Sequence[int] = LENGTH_BINS) -> TaskScores:
    """Aggregate one task's samples {'context_length', 'placed_depth', 'score'} (bins: the
    official edges; the long split's `LONG_LENGTH_BINS` drop samples under 64K instead of 1K)."""
    rows = len(bins) + 1
    total = [[0] * DEPTH_BINS for _ in range(rows)]
    correct = [[0.0] * DEPTH_BINS for _ in range(rows)]
    for sample in samples:
        x = length_bin(sample["context_length"], bins)
        y = depth_bin(sample["placed_depth"])
        total[x][y] += 1
        correct[x][y] += float(sample["score"])
    kept = range(1, rows)  # bin 0 (below the first edge) is dropped
    cells = [[c / t if t else 0.0 for c, t in zip(correct[x], total[x], strict=True)] for x in kept]
    sample_numbers = [sum(total[x]) for x in kept]
    summed = [sum(correct[x]) for x in kept]
    return TaskScores(
        cells=cells,
        scores=[round(sum(row) / DEPTH_BINS, 6) for row in cells],
        sample_numbers=sample_numbers,
        weighted_acc=[s / n if n else 0.0 for s, n in zip(summed, sample_numbers, strict=True)],
        weighted_avg_acc=sum(summed) / sum(sample_numbers) if sum(sample_numbers) else 0.0,
    )


def overall(scores_by_task: Mapping[str, list[float]]) -> list[float] | None:
    """Element-wise mean over the tasks' per-length lists (rounded to 6 digits).

    The official script only reports it with exactly 6 tasks; otherwise None.
    """
    if len(scores_by_task) != 6:
        return None
    columns = zip(*scores_by_task.values(), strict=True)
    return [round(sum(column) / len(scores_by_task), 6) for column in columns]


# ----------------------------------------------------------------------------- report


def _is_long(name: str) -> bool:
    return is_long_split(_split(name)[1])


def numbers(run) -> dict:
    """Per task: cells, per-length scores, sample counts, mean; per split: overall, Text/Image/Avg.
    Long-split tasks use `LONG_LENGTH_BINS` (their numbers name them in `length_bins`) and add
    `official`: the scores per official bin, where all their samples fall in >=64K."""
    tasks = {}
    for name in _ordered_tasks(run.tasks):
        records = run.tasks[name]
        long = _is_long(name)
        bins = LONG_LENGTH_BINS if long else LENGTH_BINS
        samples = [{"context_length": r["context_length"], "placed_depth": r["placed_depth"], "score": float(r.get("score") or 0.0)}
                   for r in records]
        scores = task_scores(samples, bins)
        filled = [s for s, n in zip(scores.scores, scores.sample_numbers) if n]
        tasks[name] = {
            "cells": [[pct(c) for c in row] for row in scores.cells],
            "cell_counts": _cell_counts(records, bins),
            "scores": [pct(s) for s in scores.scores],
            "sample_numbers": scores.sample_numbers,
            "mean": pct(sum(filled) / len(filled)) if filled else None,
            "weighted_avg_acc": pct(scores.weighted_avg_acc),
            "samples": len(records),
            "dropped_under_1k": len(records) - sum(scores.sample_numbers),
            "errors": sum(1 for r in records if r.get("error")),
        }
        if long:
            official = task_scores(samples)
            tasks[name].update({"length_bins": list(LONG_LENGTH_LABELS),
                                "official": {"scores": [pct(s) for s in official.scores], "sample_numbers": official.sample_numbers}})
    splits: dict[str, dict] = {}
    for name, task in tasks.items():
        base, split = _split(name)
        splits.setdefault(split, {})[base] = task
    summary = {}
    for split, members in splits.items():
        across = overall({b: [s / 100 for s in n["scores"]] for b, n in members.items()})
        text = [n["mean"] for b, n in members.items() if b.endswith("-text") and n["mean"] is not None]
        image = [n["mean"] for b, n in members.items() if b.endswith("-image") and n["mean"] is not None]
        text_mean = sum(text) / len(text) if text else None
        image_mean = sum(image) / len(image) if image else None
        summary[split] = {
            "overall": [pct(v) for v in across] if across is not None else None,
            "Text": text_mean,
            "Image": image_mean,
            "Avg": (text_mean + image_mean) / 2 if text and image else None,
            "tasks": sorted(members),
        }
    return {"tasks": tasks, "splits": summary}


def _labels(task: Mapping) -> tuple[str, ...]:
    return tuple(task.get("length_bins") or LENGTH_LABELS)


def _cell_counts(records: Sequence[Mapping], bins: Sequence[int] = LENGTH_BINS) -> list[list[int]]:
    counts = [[0] * DEPTH_BINS for _ in bins]
    for r in records:
        x = length_bin(r["context_length"], bins)
        if x >= 1:
            counts[x - 1][depth_bin(r["placed_depth"])] += 1
    return counts


def _split(name: str) -> tuple[str, str]:
    for base in sorted(TASKS, key=len, reverse=True):
        if name.startswith(base + "-"):
            return base, name[len(base) + 1:]
    return name, ""


def _ordered_tasks(tasks: Mapping) -> list[str]:
    def key(name):
        base, split = _split(name)
        order = TASKS.index(base) if base in TASKS else len(TASKS)
        return split, order, name
    return sorted(tasks, key=key)


def markdown(numbers: dict) -> str:
    standard = {name: n for name, n in numbers["tasks"].items() if "length_bins" not in n}
    long = {name: n for name, n in numbers["tasks"].items() if "length_bins" in n}
    parts = []
    if standard:
        parts.append("Score per context-length bin (mean of the 5 depth cells, empty cells count as 0; x100). "
                     "Mean: over the bins with samples.")
        header = ["task", *LENGTH_LABELS, "mean", "n"]
        rows = [[name, *(fmt(s) if c else "-" for s, c in zip(n["scores"], n["sample_numbers"])), fmt(n["mean"]), n["samples"]]
                for name, n in standard.items()]
        for split, s in numbers["splits"].items():
            if s["overall"] is not None and not is_long_split(split):
                label = f"**overall {split}**" if split else "**overall**"
                rows.append([label, *(fmt(v) for v in s["overall"]), fmt(mean(s["overall"])), ""])
        parts.append(table(header, rows))
        parts.append("Samples per length bin (under 1K dropped, as the official script):")
        parts.append(table(["task", *LENGTH_LABELS, "<1K"],
                           [[name, *n["sample_numbers"], n["dropped_under_1k"]] for name, n in standard.items()]))
    if long:
        parts.append("Long split, 128K-1M (teacher-forced unless run with --long-scoring generate): score per length bin "
                     "past 64K, v2pe's extension of the official bins, which end at >=64K; 'official >=64K' is the "
                     "official script's number, all samples in its last bin (x100).")
        rows = [[name, *(fmt(s) if c else "-" for s, c in zip(n["scores"], n["sample_numbers"])),
                 fmt(n["official"]["scores"][-1]) if n["official"]["sample_numbers"][-1] else "-", fmt(n["mean"]), n["samples"]]
                for name, n in long.items()]
        for split, s in numbers["splits"].items():
            if s["overall"] is not None and is_long_split(split):
                rows.append([f"**overall {split}**", *(fmt(v) for v in s["overall"]), "", fmt(mean(s["overall"])), ""])
        parts.append(table(["task", *LONG_LENGTH_LABELS, "official >=64K", "mean", "n"], rows))
        parts.append("Samples per length bin of the long split (under 64K dropped):")
        parts.append(table(["task", *LONG_LENGTH_LABELS, "<64K"],
                           [[name, *n["sample_numbers"], n["dropped_under_1k"]] for name, n in long.items()]))
    summary_rows = [[split or "-", fmt(s["Text"]), fmt(s["Image"]), fmt(s["Avg"])] for split, s in numbers["splits"].items()]
    parts.append("V2PE Table 5 style (mean of the text-needle / image-needle tasks):")
    parts.append(table(["split", "Text", "Image", "Avg"], summary_rows))
    for name, n in numbers["tasks"].items():
        parts.append(f"Length x depth cells of `{name}` (x100; '-' = no sample, counted as 0 above):")
        rows = []
        for label, row, counts in zip(_labels(n), n["cells"], n["cell_counts"]):
            if any(counts):
                rows.append([label, *(fmt(v) if c else "-" for v, c in zip(row, counts))])
        floor = "64K" if "length_bins" in n else "1K"
        parts.append(table(["length \\ depth", *DEPTH_LABELS], rows) if rows else f"(no sample of {floor} tokens or more)")
    return "\n\n".join(parts)


def comparison(numbers: dict) -> list[tuple[str, float | None, int]]:
    """Per task means, then Text / Image / Avg per split, then the overall per length bin."""
    rows = [(name, t["mean"], 0) for name, t in numbers["tasks"].items()]
    for split, s in numbers["splits"].items():
        suffix = f" ({split})" if split else ""
        rows += [(f"{key}{suffix}", s[key], 1) for key in ("Text", "Image", "Avg")]
        if s["overall"] is not None:
            labels = LONG_LENGTH_LABELS if is_long_split(split) else LENGTH_LABELS
            rows += [(f"overall {label}{suffix}", value, 2) for label, value in zip(labels, s["overall"])]
    return rows


def plot_heatmap(name: str, numbers: dict, path: Path, title_prefix: str = "") -> Path:
    import numpy as np

    plt = pyplot()
    labels = _labels(numbers)
    cells = np.array([[np.nan if c == 0 else v for v, c in zip(row, counts)]
                      for row, counts in zip(numbers["cells"], numbers["cell_counts"])], dtype=float).T  # depth x length
    fig, ax = plt.subplots(figsize=(11, 4.2))
    cmap = plt.get_cmap("RdYlGn").with_extremes(bad="#e6e6e6")
    image = ax.imshow(np.ma.masked_invalid(cells), cmap=cmap, vmin=0, vmax=100, aspect="auto")
    for (d, x), value in np.ndenumerate(cells):
        colour = "#555555" if np.isnan(value) else "white" if value < 15 or value > 85 else "black"
        ax.text(x, d, "-" if np.isnan(value) else f"{value:.0f}", ha="center", va="center", fontsize=8, color=colour)
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_yticks(range(DEPTH_BINS), DEPTH_LABELS)
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("needle depth")
    ax.set_title(f"{title_prefix}{name}: accuracy (%) by context length and needle depth")
    fig.colorbar(image, ax=ax, label="accuracy (%)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _series(numbers: dict, long: bool = False) -> dict[str, list[float | None]]:
    return {name: [s if c else None for s, c in zip(t["scores"], t["sample_numbers"])]
            for name, t in numbers["tasks"].items() if ("length_bins" in t) == long}


def _mean_series(numbers: dict, long: bool = False) -> list[float | None]:
    """Per length bin: the official `overall` (6 tasks of one split), else the mean over the
    tasks with samples in the bin; None where no task has samples."""
    series = list(_series(numbers, long).values())
    labels = LONG_LENGTH_LABELS if long else LENGTH_LABELS
    filled = [any(s[i] is not None for s in series) for i in range(len(labels))]
    splits = numbers["splits"]
    if len(splits) == 1 and next(iter(splits.values()))["overall"] is not None:
        across = next(iter(splits.values()))["overall"]
        return [v if f else None for v, f in zip(across, filled)]
    return [mean([s[i] for s in series]) for i in range(len(labels))]


def plots(run, numbers: dict, folder: Path) -> list[Path]:
    """A length x depth heat map per task and the accuracy vs context length of every task (the
    long split's tasks in a plot of their own, over its bins)."""
    paths = [plot_heatmap(name, task, folder / f"mmniah_heatmap_{name}.png", f"{run.label} - ")
             for name, task in numbers["tasks"].items()]
    for long, labels, stem, what in ((False, LENGTH_LABELS, "mmniah_accuracy_vs_length", "MM-NIAH"),
                                     (True, LONG_LENGTH_LABELS, "mmniah_long_accuracy_vs_length", "MM-NIAH long split")):
        if _series(numbers, long):
            series = {**_series(numbers, long), "avg": _mean_series(numbers, long)}
            paths.append(plot_lines(series, labels, folder / f"{stem}.png", f"{run.label}: {what} accuracy vs context length",
                                    "context length (tokens)"))
    return paths


def compare_plots(members: Sequence[tuple[Any, dict]], folder: Path) -> list[Path]:
    paths = []
    for long, labels, stem, what in ((False, LENGTH_LABELS, "compare_mmniah_accuracy_vs_length", "MM-NIAH"),
                                     (True, LONG_LENGTH_LABELS, "compare_mmniah_long_accuracy_vs_length", "MM-NIAH long split")):
        with_tasks = [(r, n) for r, n in members if _series(n, long)]
        if with_tasks:
            series = {f"{r.label} (delta {r.delta})": _mean_series(n, long) for r, n in with_tasks}
            paths.append(plot_lines(series, labels, folder / f"{stem}.png",
                                    f"{what}: accuracy vs context length (overall of the 6 tasks, else mean of the tasks run)",
                                    "context length (tokens)"))
    return paths


# ----------------------------------------------------------------------------- official outputs

OFFICIAL_FILE = re.compile(r"^(?P<model>.+)_(?P<task>[^_]+)$")


def _official_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    files = sorted(p for p in path.glob("*.jsonl"))
    for folder in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("temp_") and p.name != "results"):
        files += sorted(folder.glob("*.jsonl"))
    return files


def read_official(path: Path, scorer_source: str) -> tuple[dict[str, list[dict]], str | None]:
    from v2pe.eval.official_outputs import OOM_RESPONSE, one_model, scored

    tasks: dict[str, list[dict]] = {}
    models = []
    where_of: dict[str, Path] = {}
    scorers: dict = {}
    for file in _official_files(path):
        match = OFFICIAL_FILE.match(file.stem)
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
            lines[str(line["question_id"])] = scored(record, f"mmniah_is_correct_{kind}", scorer_source, scorers)
        if lines:
            tasks[task] = list(lines.values())
    return tasks, one_model(models)


BENCHMARK = Benchmark(
    "mm-niah", load_tasks, "MM-NIAH needle-in-a-haystack (retrieval / counting / reasoning x text / image)",
    help="run MM-NIAH (DATA/<split>/annotations/<task>.jsonl, images in DATA/<split>/images) and its 128K-1M long "
         "split (V2PE-Data val/long_mr_<size>/test_long_mr_*.jsonl)",
    tasks_help="tasks such as retrieval-text (every split), retrieval-text-val, retrieval-image-test-1M or a split (test-128k)",
    options=(
        Option("--image-root", {"type": Path, "default": None, "help": "long split: folder its relative image paths start "
                                "from (default: image/long_mr of V2PE-Data's data/ folder, found above the files)"},
               informative=True),
        Option("--long-scoring", {"default": None, "choices": list(LONG_SCORINGS),
                                  "help": "long split: teacher-forced (default, as eval_mm_niah_long.py: argmax tokens of the "
                                          "appended answer) or generate (generated and scored as the official splits)"}),
    ),
    numbers=numbers, markdown=markdown, comparison=comparison, plots=plots, compare_plots=compare_plots,
    read_official=read_official, aliases=("mmniah",),
    official_help="the {model}_{task}.jsonl outputs folder of eval_mm_niah.py",
    labels={"length_bins": list(LENGTH_LABELS), "depth_bins": list(DEPTH_LABELS), "long_length_bins": list(LONG_LENGTH_LABELS)},
)
