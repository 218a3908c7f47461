"""MMMU validation runner (reference-spec 5.4; InternVL `eval/mmmu/evaluate_mmmu.py` + `main_eval_only.py`).

Data (`--data`): a local copy of the Hugging Face dataset `MMMU/MMMU` (no hub access): any
`validation-*.parquet` below the folder, one per subject (`<Subject>/validation-00000-of-00001.parquet`
as the hub stores them; the subject is the folder name, else the id's middle part). Columns
used: `id`, `question`, `options` (a Python list literal), `answer`, `question_type`
(`multiple-choice` / `open`), `image_1`..`image_7` (`{"bytes", "path"}` or null). Read with
pyarrow (`pip install 'v2pe[eval]'`). Each subject is one task; sample id = `id`.
When `answer_dict_val.json` (the file InternVL's `main_eval_only.py` scores against) lies in
the data folder, the gold answers come from it; otherwise from the `answer` column (an open
answer written as a list literal, e.g. "['24/7', '3.429']", becomes that list). Result lines
say which (`answer_source`).

Prompt (the V2PE evaluation as run, benchmarks.md section 6): `"The <image 1> is <image>, The
<image 2> is <image>, ..."` (one per non-null image column k, `<image k>`) + "\\n" +
question.strip() + ["\\n" + "A. o1\\nB. o2..." (options stripped, letters A-M)] + "\\n" + prompt,
the whole stripped; prompt = "Answer with the option's letter from the given choices
directly." for multiple-choice, "Answer the question using a single word or phrase." for open.
Greedy, min_new_tokens 1, max_new_tokens 10.

Images: `image_1` is upscaled x2 (PIL bilinear, in its own mode) and then tiled with up to 6
tiles (`--max-tiles`), thumbnail on; every other image is one tile (`dynamic_preprocess(max_num=1)`:
resized to the tile size with PIL's default filter). `Sample` has one tile limit for all its
images, so both are done when the task is read: the upscaled image and the one-tile images are
written as PNG to the cache (`$V2PE_CACHE_DIR`, default `~/.cache/v2pe`, `images/mmmu/...`), the
latter already at the processor's tile size, where the tiler keeps them as one tile unchanged.
Pixel-exact for RGB images; for other modes the processor converts to RGB before its resizes
(the official code converts after), a difference of rounding only.

Scoring (`--mmmu-parse`):
* `official` (default, what V2PE reports): multiple choice `mc_mmmu_post_process` (InternVL's
  `post_process` letter rule shared with MMBench/ScienceQA, then exact comparison with the gold
  letter, `eval_multi_choice`); open `mmmu_open` (`parse_open_response` + `eval_open`).
* `mmmu`: MMMU's own `parse_multi_choice_response` (`mc_mmmu`; where MMMU draws a random letter
  for an unparseable answer it is scored wrong here); open questions as above.
The report gives per-subject accuracy, the instance-level accuracy per domain and `Overall`, as
`main_eval_only.py` prints them.

Official quirks:
* Spec quirk 22: the spec (section 7) reads the official code as prepending a single `<image>`
  while passing one patch count per image, so that multi-image questions fail under `v2pe_*`;
  the V2PE evaluation as run (benchmarks.md) gives each image its own `<image>` in the "The
  <image k> is <image>" prefix. Here every question runs, each image with its own placeholder,
  V2PE positions per image.
* Only the image in column `image_1` is upscaled (the code tests the list position 0): when
  `image_1` is null, the first present image gets one tile like the others.
* `options` is read with `eval()` officially; here with `ast.literal_eval` (same lists).
* A multiple-choice answer that matches no option is kept unchanged and scored wrong; an empty
  answer crashes the official `post_process` (`pred[0]`), here it is scored wrong.
* `answer_dict_val.json` calls open questions `short-answer`; only `multiple-choice` matters.
"""

from __future__ import annotations

import ast
import io
from collections.abc import Mapping, Sequence
from pathlib import Path

from v2pe.errors import ConfigError, DataError
from v2pe.eval.benchmarks.base import Benchmark, Option
from v2pe.eval.report_format import fmt, pct, table, task_rows
from v2pe.eval.runners.base import Sample, Task, image_folder, read_json, refuse_unknown, require, write_once

LETTERS = "ABCDEFGHIJKLM"
PROMPTS = {"multiple-choice": "Answer with the option's letter from the given choices directly.",
           "open": "Answer the question using a single word or phrase."}
MAX_NEW_TOKENS = 10
MAX_TILES = 6
IMAGE_COLUMNS = tuple(f"image_{k}" for k in range(1, 8))
ANSWER_FILE = "answer_dict_val.json"
PARSERS = {"official": "mc_mmmu_post_process", "mmmu": "mc_mmmu"}
DEFAULT_TILE_SIZE = 448


def parquet_files(data: Path) -> dict[str, Path]:
    """subject -> validation parquet file."""
    files = sorted(data.rglob("validation-*.parquet"))
    if not files:
        raise DataError(f"{data}: no validation-*.parquet file (a local copy of the MMMU/MMMU dataset, "
                        "one <Subject>/validation-00000-of-00001.parquet per subject)")
    subjects: dict[str, Path] = {}
    for path in files:
        subject = path.parent.name if path.parent != data else path.stem
        if subject in subjects:
            raise DataError(f"two validation files for subject {subject}: {subjects[subject]} and {path}")
        subjects[subject] = path
    return subjects


def read_parquet(path: Path, limit: int | None) -> list[dict]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError("MMMU parquet files need pyarrow: pip install 'v2pe[eval]' (or pip install pyarrow)") from None
    try:
        table = pq.read_table(path)
    except (OSError, ValueError, pa.ArrowException) as error:  # a damaged or non-parquet file
        raise DataError(f"{path}: cannot read parquet ({type(error).__name__}: {error})") from None
    if limit is not None:
        table = table.slice(0, limit)
    for column in ("id", "question", "options", "answer", "question_type"):
        if column not in table.column_names:
            raise DataError(f"{path}: missing column {column!r}")
    return table.to_pylist()


def load_tasks(data: str | Path, processor=None, tasks: Sequence[str] | None = None, limit: int | None = None,
               max_tiles: int | None = None, mmmu_parse: str | None = None, **_) -> list[Task]:
    data = Path(data)
    if not data.is_dir():
        raise DataError(f"MMMU data folder {data} does not exist")
    parse = mmmu_parse or "official"
    if parse not in PARSERS:
        raise ConfigError(f"--mmmu-parse must be one of {', '.join(PARSERS)}, got {parse!r}")
    subjects = parquet_files(data)
    refuse_unknown(tasks, subjects, "MMMU subject(s)", "found")
    answers = _answer_dict(data / ANSWER_FILE) if (data / ANSWER_FILE).is_file() else None
    tile_size = getattr(processor, "tile_size", DEFAULT_TILE_SIZE)
    return [read_task(name, subjects[name], limit, max_tiles or MAX_TILES, PARSERS[parse], answers, tile_size)
            for name in (tasks or list(subjects))]


def _answer_dict(path: Path) -> dict:
    answers = read_json(path)
    if not isinstance(answers, dict):
        raise DataError(f"{path}: expected {{id: {{question_type, ground_truth}}}}")
    return answers


def _gold(record: dict, answers: dict | None, where: str):
    if answers is not None:
        if record["id"] not in answers:
            raise DataError(f"{where}: id {record['id']!r} is not in {ANSWER_FILE}")
        return require(answers[record["id"]], "ground_truth", f"{ANSWER_FILE}: {record['id']}", (str, list)), ANSWER_FILE
    answer = record["answer"]
    if not isinstance(answer, str):
        raise DataError(f"{where}: answer must be a string, got {answer!r}")
    if record["question_type"] != "multiple-choice" and answer.startswith("["):
        try:
            parsed = ast.literal_eval(answer)
        except (ValueError, SyntaxError):
            parsed = None
        if isinstance(parsed, list) and parsed and all(isinstance(a, str) for a in parsed):
            return parsed, "parquet"
    return answer, "parquet"


def build_prompt(question: str, options: list[str], question_type: str, image_numbers: Sequence[int]) -> str:
    prefix = ", ".join(f"The <image {k}> is <image>" for k in image_numbers)
    prompt = question.strip()
    if options:
        prompt += "\n" + "\n".join(f"{LETTERS[i]}. {o.strip()}" for i, o in enumerate(options))
    prompt += "\n" + PROMPTS[question_type]
    return (prefix + "\n" + prompt).strip() if prefix else prompt.strip()


def read_task(name: str, path: Path, limit: int | None, max_tiles: int, mc_scorer: str, answers: dict | None,
              tile_size: int) -> Task:
    records = read_parquet(path, limit)
    folder = image_folder("mmmu", path, f"tile{tile_size}")
    samples = []
    seen = set()
    for row, record in enumerate(records):
        where = f"{path}: row {row} (id {record.get('id')!r})"
        sample_id = require(record, "id", where, str)
        if sample_id in seen:
            raise DataError(f"{where}: id repeats")
        seen.add(sample_id)
        question = require(record, "question", where, str)
        question_type = require(record, "question_type", where, str)
        if question_type not in PROMPTS:
            raise DataError(f"{where}: question_type must be multiple-choice or open, got {question_type!r}")
        try:
            options = ast.literal_eval(require(record, "options", where, str))
        except (ValueError, SyntaxError):
            raise DataError(f"{where}: options is not a list literal: {record['options']!r}") from None
        if not isinstance(options, list) or not all(isinstance(o, str) for o in options) or len(options) > len(LETTERS):
            raise DataError(f"{where}: options must be a list of at most {len(LETTERS)} strings, got {options!r}")
        gold, source = _gold(record, answers, where)
        option_map = {LETTERS[i]: o.strip() for i, o in enumerate(options)}
        numbers, images = [], []
        for k, column in enumerate(IMAGE_COLUMNS, start=1):
            value = record.get(column)
            if value is None:
                continue
            data = value.get("bytes") if isinstance(value, dict) else None
            if not data:
                raise DataError(f"{where}: {column} has no image bytes")
            numbers.append(k)
            images.append(_prepared_image(folder, sample_id, k, data, tile_size, where))
        if question_type == "multiple-choice":
            scorer, extra = mc_scorer, {"options": option_map}
        else:
            scorer, extra = "mmmu_open", ({"options": option_map} if option_map else {})
        prompt = build_prompt(question, options, question_type, numbers)
        samples.append(Sample(
            id=sample_id,
            prompt=prompt,
            images=images,
            answer=gold,
            scorer=scorer,
            max_new_tokens=MAX_NEW_TOKENS,
            max_tiles=max_tiles,
            extra=extra,
            fields={"subject": name, "question_type": question_type, "question": prompt, "answer_source": source,
                    "image_columns": [f"image_{k}" for k in numbers]},
            generate_kwargs={"min_new_tokens": 1},
        ))
    return Task(name, path, samples, {"scorer": mc_scorer, "answers": ANSWER_FILE if answers is not None else "parquet"})


def _prepared_image(folder: Path, sample_id: str, k: int, data: bytes, tile_size: int, where: str) -> Path:
    """image_1: upscaled x2 bilinear; others: resized to one tile. Saved once as PNG."""
    from PIL import Image

    target = folder / f"{sample_id}_{k}_{'x2' if k == 1 else 'tile'}.png"
    if target.is_file():
        return target
    try:
        with Image.open(io.BytesIO(data)) as opened:
            image = opened.copy() if opened.mode in _PNG_MODES else opened.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise DataError(f"{where}: image_{k} cannot be decoded ({error})") from None
    if k == 1:
        image = image.resize((image.width * 2, image.height * 2), Image.Resampling.BILINEAR)
    else:
        image = image.resize((tile_size, tile_size))  # PIL's default filter, as dynamic_preprocess(max_num=1)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return write_once(target, buffer.getvalue())


_PNG_MODES = {"1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16"}


# ----------------------------------------------------------------------------- report

#: MMMU `data_utils.DOMAIN_CAT2SUB_CAT`.
DOMAINS: dict[str, tuple[str, ...]] = {
    "Art and Design": ("Art", "Art_Theory", "Design", "Music"),
    "Business": ("Accounting", "Economics", "Finance", "Manage", "Marketing"),
    "Science": ("Biology", "Chemistry", "Geography", "Math", "Physics"),
    "Health and Medicine": ("Basic_Medical_Science", "Clinical_Medicine", "Diagnostics_and_Laboratory_Medicine",
                            "Pharmacy", "Public_Health"),
    "Humanities and Social Science": ("History", "Literature", "Sociology", "Psychology"),
    "Tech and Engineering": ("Agriculture", "Architecture_and_Engineering", "Computer_Science", "Electronics",
                             "Energy_and_Power", "Materials", "Mechanical_Engineering"),
}


def summary(subjects: Mapping[str, tuple[float, int]]) -> dict:
    """`main_eval_only.py`: per subject (summed score, samples) -> per-domain and overall
    instance-level accuracy (sample-weighted, 0..1; a domain without subjects is 0 with num 0,
    as `calculate_ins_level_acc`). Subjects outside the 30 MMMU subjects count only in Overall."""
    def level(names):
        correct = sum(subjects[n][0] for n in names)
        number = sum(subjects[n][1] for n in names)
        return {"acc": correct / number if number else 0.0, "num": number}
    domains = {domain: level([n for n in members if n in subjects]) for domain, members in DOMAINS.items()}
    return {"domains": domains, "overall": level(list(subjects))}


def numbers(run) -> dict:
    subjects = {name: (sum(float(r.get("score") or 0.0) for r in records), len(records)) for name, records in run.tasks.items()}
    levels = summary(subjects)
    headline = {"Overall": pct(levels["overall"]["acc"])}
    headline.update({f"Overall-{d}": pct(v["acc"]) for d, v in levels["domains"].items() if v["num"]})
    return {"datasets": task_rows(run.tasks), "domains": {d: {"acc": pct(v["acc"]), "num": v["num"]} for d, v in levels["domains"].items()},
            "overall": {"acc": pct(levels["overall"]["acc"]), "num": levels["overall"]["num"]}, "headline": headline}


def markdown(numbers: dict) -> str:
    rows = [[f"Overall-{d}", v["num"], fmt(v["acc"]) if v["num"] else "-"] for d, v in numbers["domains"].items()]
    rows.append(["**Overall**", numbers["overall"]["num"], fmt(numbers["overall"]["acc"])])
    return ("As main_eval_only.py (instance-level accuracy; x100):\n\n" + table(["", "num", "acc"], rows)
            + "\n\nPer subject:\n\n" + table(["subject", "acc", "n", "errors"],
                                              [[n, fmt(d["score"]), d["samples"], d["errors"]] for n, d in numbers["datasets"].items()]))


BENCHMARK = Benchmark(
    "mmmu", load_tasks, "MMMU validation (local MMMU/MMMU parquet files), per subject / domain",
    help="run MMMU validation (a local MMMU/MMMU copy: DATA/<Subject>/validation-*.parquet; needs pyarrow)",
    tasks_help="subjects such as Art Physics",
    options=(Option("--mmmu-parse", {"default": None, "choices": ["official", "mmmu"],
                                     "help": "multiple-choice answer parsing: official (default: InternVL's post_process letter, exact "
                                             "match) or mmmu (MMMU's parse_multi_choice_response)"}),),
    numbers=numbers, markdown=markdown,
)
