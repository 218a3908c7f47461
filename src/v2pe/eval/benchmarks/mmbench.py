"""MMBench / CCBench runner (reference-spec 5.4; InternVL `eval/mmbench/evaluate_mmbench.py`).

Data (`--data`): InternVL's `data/mmbench` folder (or `data/`, then `data/mmbench/...`) with the
released TSV files; each found file is one task, named as the official dataset:

| task | file | language |
|---|---|---|
| mmbench_dev_20230712 | mmbench_dev_20230712.tsv | en |
| mmbench_dev_cn_20231003 | mmbench_dev_cn_20231003.tsv | cn |
| mmbench_dev_en_20231003 | mmbench_dev_en_20231003.tsv | en |
| mmbench_test_cn_20231003 | mmbench_test_cn_20231003.tsv | cn |
| mmbench_test_en_20231003 | mmbench_test_en_20231003.tsv | en |
| ccbench_dev_cn | CCBench_legacy.tsv | cn |

Columns: `index, question, hint, A..E, answer (dev only), category, image (base64), source,
l2-category, comment, split` (as released). Images are decoded once into a cache folder
(`$V2PE_CACHE_DIR`, default `~/.cache/v2pe`, under `images/mmbench/<file>-<hash>/<index>.<ext>`),
as the raw bytes, so they decode to exactly what `Image.open(BytesIO(b64decode(...)))` gives.

Prompt: `[hint + "\\n"] + question + "\\nA. x" ... (non-empty columns A-E, in order) + "\\n" +
prompt`, prompt en `Answer with the option's letter from the given choices directly.`, cn
`请直接回答选项字母。`; one image, tiles up to 6, `<image>\\n` prepended as `chat()` does;
greedy, min_new_tokens 1, max_new_tokens 100. Sample id = `index`.

Scoring: the official script scores nothing: it writes a submission xlsx with the post-processed
answer (`post_process`: one character kept as is, else a leading option letter, else the first
option whose text occurs in the answer, else the answer unchanged) for the MMBench server. Here
each line is scored with `mc_mmbench` (that letter == the `answer` column) where the file has
answers (dev); `v2pe eval report` gives this local per-row accuracy, per category, and the
circular accuracy of the MMBench server rule (rows whose `index % 1e6` agree are one question,
right only when all its passes are right; `circular`). Test files have
no answers: their lines score 0 with `answer` null and the report shows no accuracy.

Submission file (`write_submission`, written by `v2pe eval report` for every MMBench task, or by
hand): the TSV without `hint, category, source, image, comment, l2-category` (CCBench: without
`category, image`), with `prediction` inserted as column 7 (CCBench: 9), one row per TSV row
(rows not run keep an empty prediction), as `pandas.to_excel(engine='openpyxl')` writes it.
With openpyxl installed the file is `<task>.xlsx` like the official one; without it, the same
columns are written as `<task>.tsv` (say so when submitting: the server takes xlsx). Control
characters that an xlsx cell cannot hold (a raw prediction may carry them) are dropped from the
xlsx, where `pandas.to_excel` would raise; the result lines keep the prediction as generated.

Official quirks:
* The TSV is read by pandas: a cell that is empty or one of pandas' default NA strings ("NA",
  "N/A", "None", "null", "nan", ...; "None" since pandas 2.0) is missing, so such an option is
  dropped and such a hint unused. Reproduced (`PANDAS_NA`). Not reproduced: pandas' per-column
  number parsing (a column made only of numbers would print options as `1.0`).
* The hint and question are not stripped; missing options are skipped but the letters of the
  others are kept (A, B, D possible).
* `drop(columns=[...])` raises KeyError officially when one of the dropped columns is absent;
  here absent columns are skipped.
* An empty answer crashes the official run (`pred[0]`); here it is scored wrong / written empty.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from v2pe.errors import DataError
from v2pe.eval.benchmarks.base import Benchmark
from v2pe.eval.report_format import fmt, pct, table
from v2pe.eval.runners.base import Sample, Task, image_folder, refuse_unknown, write_once
from v2pe.eval.scorers.multiple_choice import mmbench_answer

PROMPTS = {"en": "Answer with the option's letter from the given choices directly.", "cn": "请直接回答选项字母。"}
OPTION_LETTERS = "ABCDE"
MAX_NEW_TOKENS = 100
MAX_TILES = 6
#: pandas.read_csv's default NA strings (pandas >= 2.0).
PANDAS_NA = frozenset({"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
                       "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"})


@dataclass(frozen=True)
class MMBenchFile:
    file: str
    language: str
    dropped: tuple[str, ...]
    prediction_column: int  # 0-based position of 'prediction' in the submission

    @property
    def is_mmbench(self) -> bool:
        return self.file.startswith("mmbench")


_MMBENCH_DROP = ("hint", "category", "source", "image", "comment", "l2-category")
DATASETS = {
    "mmbench_dev_20230712": MMBenchFile("mmbench_dev_20230712.tsv", "en", _MMBENCH_DROP, 6),
    "mmbench_dev_cn_20231003": MMBenchFile("mmbench_dev_cn_20231003.tsv", "cn", _MMBENCH_DROP, 6),
    "mmbench_dev_en_20231003": MMBenchFile("mmbench_dev_en_20231003.tsv", "en", _MMBENCH_DROP, 6),
    "mmbench_test_cn_20231003": MMBenchFile("mmbench_test_cn_20231003.tsv", "cn", _MMBENCH_DROP, 6),
    "mmbench_test_en_20231003": MMBenchFile("mmbench_test_en_20231003.tsv", "en", _MMBENCH_DROP, 6),
    "ccbench_dev_cn": MMBenchFile("CCBench_legacy.tsv", "cn", ("category", "image"), 8),
}


# ----------------------------------------------------------------------------- embedded images


def image_suffix(data: bytes) -> str:
    for magic, suffix in ((b"\xff\xd8", ".jpg"), (b"\x89PNG", ".png"), (b"GIF8", ".gif"), (b"BM", ".bmp"),
                          (b"RIFF", ".webp"), (b"II*\x00", ".tif"), (b"MM\x00*", ".tif")):
        if data.startswith(magic):
            return suffix
    return ".img"


# ----------------------------------------------------------------------------- reading


def read_tsv(path: Path, limit: int | None = None) -> tuple[list[str], list[tuple[int, dict[str, str | None]]]]:
    """(header, [(line number, {column: value or None (pandas NA)})]) of a TSV as pandas reads it
    (tab separated, '"' quoting)."""
    old_limit = csv.field_size_limit()
    csv.field_size_limit(sys.maxsize)  # base64 images are far beyond csv's default 128 KiB field limit
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle, delimiter="\t")
            try:
                header = next(reader)
            except StopIteration:
                raise DataError(f"{path}: empty TSV file") from None
            rows = []
            for values in reader:
                if limit is not None and len(rows) >= limit:
                    break
                if not values:
                    continue
                if len(values) != len(header):
                    raise DataError(f"{path}:{reader.line_num}: {len(values)} fields for {len(header)} columns")
                rows.append((reader.line_num, {k: (None if v in PANDAS_NA else v) for k, v in zip(header, values)}))
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 ({error})") from None
    except csv.Error as error:
        raise DataError(f"{path}: malformed TSV ({error})") from None
    finally:
        csv.field_size_limit(old_limit)
    return header, rows


def build_prompt(question: str, hint: str | None, options: Mapping[str, str], language: str) -> str:
    prompt = question if hint is None else hint + "\n" + question
    for key, item in options.items():
        prompt += f"\n{key}. {item}"
    return prompt + "\n" + PROMPTS[language]


def load_tasks(data: str | Path, processor=None, tasks: Sequence[str] | None = None, limit: int | None = None,
               max_tiles: int | None = None, **_) -> list[Task]:
    data = Path(data)
    if not data.is_dir():
        raise DataError(f"MMBench data folder {data} does not exist")
    refuse_unknown(tasks, DATASETS, "MMBench dataset(s)")
    folder = data / "mmbench" if not any((data / d.file).is_file() for d in DATASETS.values()) else data
    present = [name for name, d in DATASETS.items() if (folder / d.file).is_file()]
    names = list(tasks) if tasks else present
    missing = [n for n in names if n not in present]
    if missing or not names:
        raise DataError(", ".join(f"{n}: {folder / DATASETS[n].file} not found" for n in missing)
                        or f"{data}: no MMBench TSV found (expected e.g. {folder / DATASETS['mmbench_dev_20230712'].file})")
    return [read_task(name, folder / DATASETS[name].file, limit, max_tiles) for name in names]


def read_task(name: str, path: Path, limit: int | None, max_tiles: int | None) -> Task:
    dataset = DATASETS[name]
    header, rows = read_tsv(path, limit)
    for column in ("index", "question", "image"):
        if column not in header:
            raise DataError(f"{path}: missing column {column!r}")
    has_answers = "answer" in header
    images = image_folder("mmbench", path)
    samples = []
    indexes = set()
    for number, row in rows:
        where = f"{path}:{number}"
        try:
            index = int(row["index"])
        except (TypeError, ValueError):
            raise DataError(f"{where}: index must be an integer, got {row['index']!r}") from None
        if index in indexes:
            raise DataError(f"{where}: index {index} repeats")
        indexes.add(index)
        if row["question"] is None or row["image"] is None:
            raise DataError(f"{where}: empty {'question' if row['question'] is None else 'image'}")
        try:
            image_bytes = base64.b64decode(row["image"], validate=False)
        except (binascii.Error, ValueError) as error:
            raise DataError(f"{where}: image is not base64 ({error})") from None
        image = write_once(images / f"{index}{image_suffix(image_bytes)}", image_bytes)
        options = {k: row[k] for k in OPTION_LETTERS if row.get(k) is not None}
        prompt = build_prompt(row["question"], row.get("hint"), options, dataset.language)
        answer = row.get("answer") if has_answers else None
        samples.append(Sample(
            id=index,
            prompt=prompt,
            images=[image],
            answer=answer,
            scorer="mc_mmbench",
            max_new_tokens=MAX_NEW_TOKENS,
            max_tiles=max_tiles or MAX_TILES,
            extra={"options": options},
            fields={"index": index, "question": prompt, "category": row.get("category"),
                    "l2_category": row.get("l2-category"), "row": {k: v for k, v in row.items() if k != "image"}},
            generate_kwargs={"min_new_tokens": 1},
        ))
    return Task(name, path, samples, {"scorer": "mc_mmbench", "language": dataset.language, "has_answers": has_answers,
                                      "columns": header})


# ----------------------------------------------------------------------------- submission


def submission_rows(task: str, header: Sequence[str], records: Sequence[Mapping]) -> tuple[list[str], list[list]]:
    """(columns, rows) of the official submission from result lines (each with `row`,
    `prediction`, `extra.options`)."""
    dataset = DATASETS.get(task)
    if dataset is None:
        raise DataError(f"{task!r} is not an MMBench dataset ({', '.join(DATASETS)})")
    columns = [c for c in header if c not in dataset.dropped]
    columns.insert(dataset.prediction_column, "prediction")
    rows = []
    for record in records:
        row = dict(record.get("row") or {})
        prediction = record.get("prediction")
        options = (record.get("extra") or {}).get("options") or {}
        row["prediction"] = mmbench_answer(prediction, options) if isinstance(prediction, str) else None
        if "index" in row and row["index"] is not None:
            row["index"] = int(row["index"])
        rows.append([row.get(c) for c in columns])
    return columns, rows


def write_submission(task: str, records: Sequence[Mapping], folder: str | Path) -> Path:
    """The submission file of one MMBench task from its result lines: `<task>.xlsx` with
    openpyxl, else `<task>.tsv` with the same columns. Rows follow the result lines."""
    if not records:
        raise DataError(f"{task}: no result lines")
    header = list(records[0].get("row") or {})  # the TSV's columns in order, less the (dropped) image
    columns, rows = submission_rows(task, header, records)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import openpyxl
    except ImportError:
        path = folder / f"{task}.tsv"
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter="\t", lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(["" if v is None else v for v in row] for row in rows)
        path.write_text(buffer.getvalue(), encoding="utf-8")
        return path
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    path = folder / f"{task}.xlsx"
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(columns)
    for row in rows:
        # control characters an xlsx cell cannot hold are dropped (pandas.to_excel, as the official
        # script writes, raises on them); the result lines keep the raw prediction
        sheet.append([ILLEGAL_CHARACTERS_RE.sub("", v) if isinstance(v, str) else v for v in row])
    workbook.save(path)
    return path


# ----------------------------------------------------------------------------- report

CIRCULAR_MOD = 1_000_000


def circular(samples: Iterable[Mapping]) -> dict:
    """MMBench circular evaluation (the MMBench server / VLMEvalKit rule; the InternVL script
    only writes the submission file): rows whose `index % 1e6` agree are the circular passes of
    one question, and the question counts as right only when every pass is right. Samples:
    {'index', 'score', 'category'}. Returns overall and per-category accuracies (0..1) of the
    plain per-row score and of the circular score, with the number of questions."""
    rows: list[tuple[int, float, str]] = [(int(s["index"]), float(s["score"]), s.get("category") or "?") for s in samples]
    groups: dict[int, list[tuple[float, str]]] = {}
    for index, score, category in rows:
        groups.setdefault(index % CIRCULAR_MOD, []).append((score, category))
    def per_category(items):
        scores: dict[str, list[float]] = {}
        for score, category in items:
            scores.setdefault(category, []).append(score)
        return {c: sum(v) / len(v) for c, v in sorted(scores.items())}
    passes = [(float(all(s == 1.0 for s, _ in members)), members[0][1]) for members in groups.values()]
    return {
        "vanilla": sum(s for _, s, _ in rows) / len(rows) if rows else None,
        "vanilla_categories": per_category([(s, c) for _, s, c in rows]),
        "circular": sum(s for s, _ in passes) / len(passes) if passes else None,
        "circular_categories": per_category(passes),
        "questions": len(groups),
        "rows": len(rows),
        "has_circular_passes": any(len(m) > 1 for m in groups.values()),
    }


def numbers(run) -> dict:
    tasks, headline = {}, {}
    for name, records in run.tasks.items():
        has_answers = any(r.get("answer") is not None for r in records)
        entry = {"has_answers": has_answers, "samples": len(records), "errors": sum(1 for r in records if r.get("error"))}
        if has_answers:
            c = circular({"index": r.get("index", r["id"]), "score": float(r.get("score") or 0.0),
                          "category": r.get("category")} for r in records)
            entry.update({"accuracy": pct(c["vanilla"]), "circular": pct(c["circular"]) if c["has_circular_passes"] else None,
                          "questions": c["questions"],
                          "categories": {k: pct(v) for k, v in c["vanilla_categories"].items()},
                          "circular_categories": {k: pct(v) for k, v in c["circular_categories"].items()}})
            headline[f"{name} accuracy"] = entry["accuracy"]
            if entry["circular"] is not None:
                headline[f"{name} circular"] = entry["circular"]
        tasks[name] = entry
    datasets = {n: {"score": t.get("accuracy"), "samples": t["samples"], "errors": t["errors"]} for n, t in tasks.items()}
    return {"tasks": tasks, "datasets": datasets, "headline": headline}


def markdown(numbers: dict) -> str:
    rows = [[name, fmt(t.get("accuracy")) if t["has_answers"] else "- (no answers)", fmt(t.get("circular")),
             t.get("questions", "-"), t["samples"], t["errors"]] for name, t in numbers["tasks"].items()]
    parts = [("Local scores where the file has answers (x100): accuracy per row, and circular accuracy (the MMBench "
              "server rule: all passes of a question right; '-' without circular passes). The official numbers come "
              "from the server, from the submission files written beside this report."),
             table(["dataset", "accuracy", "circular", "questions", "rows", "errors"], rows)]
    for name, t in numbers["tasks"].items():
        if t["has_answers"] and t["categories"]:
            parts.append(f"Per category of `{name}` (x100):")
            parts.append(table(["category", "accuracy", "circular"],
                               [[c, fmt(v), fmt(t["circular_categories"].get(c)) if t["circular"] is not None else "-"]
                                for c, v in t["categories"].items()]))
    return "\n\n".join(parts)


def files(run, numbers: dict, folder: Path) -> list[Path]:
    """The official submission file of every task (`write_submission`)."""
    return [write_submission(name, records, folder) for name, records in run.tasks.items()]


BENCHMARK = Benchmark(
    "mmbench", load_tasks, "MMBench / CCBench TSVs (dev: local and circular accuracy; test: submission file)",
    help="run MMBench / CCBench (the released TSV files in DATA, e.g. DATA/mmbench_dev_20230712.tsv)",
    tasks_help="datasets such as mmbench_dev_20230712 mmbench_test_en_20231003",
    numbers=numbers, markdown=markdown, files=files,
)
