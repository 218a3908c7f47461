"""MileBench runner (reference-spec 5.2; V2PE `eval/milebench/eval_milebench.py` + `utils.MileBenchDataset`).

Data: `DATA/<Task>/<Task>.json` = {"meta_data": {"task_instruction": [...], "question_type":
"open-ended" | "multi-choice"}, "data": [{"sample_id", "task_instruction_id", "task_instance":
{"context" with {image#k} / {table#k}, "images_path", optional "choice_list"}, "response",
"image_quantity_level"}]}; images under `DATA/<Task>/images/`.

Prompt, as the V2PE dataset class:
* with a `choice_list`: context + `\\nChoice list: \\n` + `A. x` lines (GPR1200: options without
  letters) + `\\nAnswer with the option's letter from the given choices directly.`;
* `{image#k}` / `{table#k}` (k = 1..#images) become `<image>`. A sample with fewer placeholders
  than images runs as the official code runs it: the truncation below pairs placeholders with
  images from the end and puts one more image before the text, so images shift and any beyond
  those are dropped (result lines keep `placeholders` and `num_images`; the report counts such
  samples). More placeholders than
  images is refused, naming the sample (the official code would leave the surplus as text);
* left truncation to `max_context_len` (512000) tokens: text pieces and images are taken from
  the end, an image counting `n_tokens_per_image` tokens (256 in the official run, here the
  processor's tokens per tile by default); the kept text is re-decoded from its tokens as the
  official code does;
* prompt = instruction + `\\n` + (`<image>` when the kept part starts with an image) + context.
Each image is 1 tile (dynamic resolution off). max_new_tokens 32. Samples run grouped by
image count, ascending.

Scorer by dataset (`metric`): needle / mmcoqa / rouge_l / multichoice
(extra `choice_list`). Result lines add `sample_id`, `question` (the full prompt),
`image_quantity_level`, `num_images` (in the annotation) and `kept_images` (after truncation).

Aggregation (`score.py`, benchmarks.md section 5; `numbers`): dataset score = mean sample score
(a failed sample scores 0), also per image-quantity level (the annotation's
`image_quantity_level`, else V2PE's level from the image count: Few < 6, Medium 6..31, Many >
31; empty levels report 0, as upstream). Datasets are grouped into Realistic Temporal (T),
Realistic Semantic (S), Needle-in-a-haystack (NI) and Image Retrieval (IR); a group score is the
mean of its datasets present (x100), and V2PE's Avg is mean(T, S, NI) when all three are there.
The report counts the samples with fewer placeholders than images (`shifted_images`).

Official outputs (`read_official`, `v2pe eval report --official milebench PATH`):
`<Dataset>/pred.json` folders under PATH (or PATH is one) of `eval/milebench/eval_milebench.py`:
a JSON list of {`sample_id`, `question`, `gt_response`, `gen_kwargs`, `pred_response`}. The
dataset's annotation `<Dataset>/<Dataset>.json` must sit beside it (as in the benchmark folder):
evaluate.py takes `question_type`, `choice_list` and `image_quantity_level` from it, matching
predictions by `int(sample_id)`.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from v2pe.errors import ConfigError, DataError
from v2pe.eval.benchmarks.base import Benchmark, Option
from v2pe.eval.report_format import fmt, pct, table
from v2pe.eval.runners.base import IMAGE, Sample, Task, read_json, refuse_unknown, require, unique_ids

MAX_CONTEXT_LEN = 512000
MAX_NEW_TOKENS = 32
MAX_TILES = 1
LETTER_PROMPT = "\nAnswer with the option's letter from the given choices directly."
SCORERS = {"needle": "milebench_needle", "mmcoqa": "milebench_mmcoqa", "rouge_l": "milebench_rouge_l", "multichoice": "milebench_multichoice"}


def discover(data: Path) -> dict[str, Path]:
    """{dataset: annotation file} for every `<Task>/<Task>.json` under data (or data itself)."""
    if not data.is_dir():
        raise DataError(f"MileBench data folder {data} does not exist")
    if (data / f"{data.name}.json").is_file():
        return {data.name: data / f"{data.name}.json"}
    found = {p.name: p / f"{p.name}.json" for p in sorted(data.iterdir()) if (p / f"{p.name}.json").is_file()}
    if not found:
        raise DataError(f"{data}: no MileBench dataset (<Task>/<Task>.json) found")
    return found


def load_tasks(
    data: str | Path,
    processor=None,
    tasks: Sequence[str] | None = None,
    limit: int | None = None,
    max_context_len: int = MAX_CONTEXT_LEN,
    n_tokens_per_image: int | None = None,
    max_tiles: int = MAX_TILES,
    **_,
) -> list[Task]:
    if processor is None:
        raise ConfigError("the MileBench runner needs the processor (its tokenizer truncates long contexts)")
    found = discover(Path(data))
    refuse_unknown(tasks, found, "MileBench dataset(s)", "available")
    names = [n for n in found if not tasks or n in tasks]
    per_image = n_tokens_per_image if n_tokens_per_image is not None else processor.tokens_per_tile
    return [read_task(n, found[n], processor.tokenizer, limit, max_context_len, per_image, max_tiles) for n in names]


def read_task(name: str, path: Path, tokenizer, limit: int | None, max_context_len: int, n_tokens_per_image: int, max_tiles: int = MAX_TILES) -> Task:
    annotation = read_json(path)
    where = str(path)
    meta = require(annotation, "meta_data", where, dict)
    instructions = require(meta, "task_instruction", f"{where}: meta_data", list)
    question_type = meta.get("question_type")
    try:
        metric = metric_of(name, question_type)
    except DataError as error:
        raise DataError(f"{where}: {error}") from None
    items = require(annotation, "data", where, list)
    if limit is not None:
        items = items[:limit]
    # "lines" of a JSON file: the item index, named as data[i]
    ids = unique_ids([require(item, "sample_id", f"{where}: data[{i}]") for i, item in enumerate(items)], list(range(len(items))))
    samples = [
        make_sample(name, item, sample_id, instructions, metric, path.parent / "images", tokenizer,
                    max_context_len, n_tokens_per_image, f"{where}: data[{i}]", max_tiles)
        for i, (item, sample_id) in enumerate(zip(items, ids))
    ]
    # official order: grouped by number of images, ascending (stable within a group)
    samples.sort(key=lambda s: s.fields["num_images"])
    return Task(name, path, samples, {"question_type": question_type, "metric": metric})


def make_sample(dataset: str, item: dict, sample_id, instructions: list, metric: str, image_dir: Path, tokenizer,
                max_context_len: int, n_tokens_per_image: int, where: str, max_tiles: int = MAX_TILES) -> Sample:
    instance = require(item, "task_instance", where, dict)
    instruction_id = require(item, "task_instruction_id", where, int)
    if not 0 <= instruction_id < len(instructions) or not isinstance(instructions[instruction_id], str):
        raise DataError(f"{where}: task_instruction_id {instruction_id} is not one of the {len(instructions)} task instructions")
    instruction = instructions[instruction_id]
    context = require(instance, "context", f"{where}: task_instance", str)
    paths = require(instance, "images_path", f"{where}: task_instance", list)
    if not all(isinstance(p, str) for p in paths):
        raise DataError(f"{where}: task_instance.images_path must be a list of paths")
    answer = require(item, "response", where)
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        answer = str(answer)  # the official code reads str(response)
    choice_list = instance.get("choice_list")
    if "choice_list" in instance:
        if not (isinstance(choice_list, list) and all(isinstance(c, (str, int, float)) for c in choice_list)):
            raise DataError(f"{where}: task_instance.choice_list must be a list of strings")
        choice_list = [str(c) for c in choice_list]
        lines = [(f"{chr(65 + i)}. " if dataset != "GPR1200" else "") + c for i, c in enumerate(choice_list)]
        context += "\nChoice list: \n" + "\n".join(lines) + LETTER_PROMPT
    if IMAGE in context:
        raise DataError(f"{where}: the context already contains a literal {IMAGE!r}")
    for k in range(1, len(paths) + 1):
        context = context.replace(f"{{image#{k}}}", IMAGE).replace(f"{{table#{k}}}", IMAGE)
    if context.count(IMAGE) > len(paths):
        raise DataError(f"{where}: {context.count(IMAGE)} {{image#k}}/{{table#k}} placeholders but {len(paths)} images in images_path "
                        "(the official code would leave the surplus placeholders in the text as literal '<image>')")
    placeholders = context.count(IMAGE)  # fewer than images: the official truncation keeps the last ones (images shift)
    kept_context, kept_images, starts_with_image = truncate_left(
        context, [str(image_dir / p) for p in paths], instruction, tokenizer, max_context_len, n_tokens_per_image)
    prompt = instruction + "\n" + (IMAGE if starts_with_image else "") + kept_context
    extra = {"choice_list": choice_list} if metric == "multichoice" else {}
    return Sample(
        id=sample_id,
        prompt=prompt,
        images=[Path(p) for p in kept_images],
        answer=answer,
        scorer=SCORERS[metric],
        max_new_tokens=MAX_NEW_TOKENS,
        max_tiles=max_tiles,
        extra=extra,
        fields={
            "sample_id": item["sample_id"],
            "question": prompt,
            "image_quantity_level": item.get("image_quantity_level"),
            "num_images": len(paths),
            "kept_images": len(kept_images),
            "placeholders": placeholders,
        },
        diagnose=_diagnose_choice(choice_list) if metric == "multichoice" else None,
    )


def truncate_left(context: str, images: list[str], instruction: str, tokenizer, max_context_len: int,
                  n_tokens_per_image: int) -> tuple[str, list[str], bool]:
    """The official left truncation: (kept context with `<image>`s, kept images, starts with an image).

    Text pieces between images are taken from the end while they fit `max_context_len` minus
    the instruction's tokens; after each piece the image before it is taken when it fits too.
    A first piece longer than the budget keeps its last tokens. Kept text is decoded back
    from its tokens.
    """
    def ids(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    budget = max_context_len - len(ids(instruction))
    remaining = list(images)
    kept_images: list[str] = []
    chunks: list[list[int]] = []
    used = 0
    starts_with_image = False
    for fragment in context.split(IMAGE)[::-1]:
        piece = ids(fragment)
        if len(piece) + used > budget:
            if not chunks:
                chunks.insert(0, piece[-budget:] if budget > 0 else [])
            break
        starts_with_image = False
        chunks.insert(0, piece)
        used += len(piece)
        if n_tokens_per_image + used > budget:
            break
        if remaining:
            starts_with_image = True
            kept_images.insert(0, remaining.pop(-1))
            used += n_tokens_per_image
    text = "".join(tokenizer.decode(chunk) + IMAGE for chunk in chunks[:-1]) + tokenizer.decode(chunks[-1])
    return text, kept_images, starts_with_image


def _diagnose_choice(choice_list: list[str] | None):
    def diagnose(prediction: str) -> str | None:
        from v2pe.eval.scorers.milebench import milebench_multichoice, option_letter

        if not choice_list:
            return None
        try:
            _, extracted = milebench_multichoice(prediction, choice_list[0], choice_list, "v2pe")
        except Exception:  # the scorer itself reports problems of the sample
            return None
        letters = {option_letter(i, "v2pe") for i in range(len(choice_list))} | {chr(65 + i) for i in range(len(choice_list))}
        if extracted not in letters:
            return f"unparseable prediction: no option of the choice list found in {prediction[:200]!r}"
        return None
    return diagnose




# ----------------------------------------------------------------------------- aggregation

GROUPS: dict[str, tuple[str, ...]] = {
    "T": (
        "ActionLocalization", "ActionPrediction", "ActionSequence", "CharacterOrder",
        "CounterfactualInference", "EgocentricNavigation", "MovingAttribute", "MovingDirection",
        "ObjectExistence", "ObjectInteraction", "ObjectShuffle", "SceneTransition", "StateChange",
    ),
    "S": (
        "ALFRED", "CLEVR-Change", "DocVQA", "IEdit", "MMCoQA", "MultiModalQA", "nuscenes",
        "OCR-VQA", "SlideVQA", "Spot-the-Diff", "TQA", "WebQA", "WikiVQA",
    ),
    "NI": ("TextNeedleInAHaystack", "ImageNeedleInAHaystack"),
    "IR": ("GPR1200",),
}
IMAGE_QUANTITY_LEVELS = ("Few", "Medium", "Many")


def metric_of(dataset: str, question_type: str) -> str:
    """Which MileBench rule scores a dataset: needle, mmcoqa, rouge_l or multichoice."""
    if "NeedleInAHaystack" in dataset:
        return "needle"
    if "MMCoQA" in dataset:
        return "mmcoqa"
    if question_type == "open-ended":
        return "rouge_l"
    if question_type == "multi-choice":
        return "multichoice"
    raise DataError(f"MileBench dataset {dataset!r} has unsupported question_type {question_type!r}")


def image_quantity_level(num_images: int) -> str:
    """V2PE's level from the image count: Few < 6, Medium 6..31, Many > 31."""
    if num_images < 6:
        return "Few"
    return "Many" if num_images > 31 else "Medium"


def dataset_scores(samples: Iterable[Mapping]) -> dict:
    """Mean score (0..1) of one dataset and its per-image-quantity-level means.

    Each sample has 'score' and either 'image_quantity_level' (the annotation's
    field, as the official evaluate.py) or 'num_images' (V2PE counts images).
    Empty levels report 0, as upstream.
    """
    scores: list[float] = []
    by_level: dict[str, list[float]] = {level: [] for level in IMAGE_QUANTITY_LEVELS}
    for sample in samples:
        level = sample.get("image_quantity_level") or image_quantity_level(int(sample["num_images"]))
        if level not in by_level:
            raise DataError(f"unknown MileBench image_quantity_level {level!r}")
        scores.append(float(sample["score"]))
        by_level[level].append(float(sample["score"]))
    if not scores:
        raise DataError("no MileBench samples to aggregate")
    return {
        "score": sum(scores) / len(scores),
        "image_quantity_level": {k: sum(v) / len(v) if v else 0 for k, v in by_level.items()},
        "image_quantity_level_counts": {k: len(v) for k, v in by_level.items()},
    }


def summary(scores_by_dataset: Mapping[str, float]) -> dict:
    """Group scores x100 (mean over the group's datasets present) and V2PE Avg.

    Returns {'T', 'S', 'NI', 'IR', 'Avg', 'missing'}: a group with none of its
    datasets is None, and Avg = mean(T, S, NI) needs all three.
    """
    result: dict = {}
    missing = []
    for group, datasets in GROUPS.items():
        present = [scores_by_dataset[d] for d in datasets if d in scores_by_dataset]
        missing += [d for d in datasets if d not in scores_by_dataset]
        result[group] = 100.0 * sum(present) / len(present) if present else None
    main_groups = [result[g] for g in ("T", "S", "NI")]
    result["Avg"] = sum(main_groups) / 3 if None not in main_groups else None
    result["missing"] = missing
    return result


# ----------------------------------------------------------------------------- report


def numbers(run) -> dict:
    datasets = {}
    for name, records in run.tasks.items():
        scores = dataset_scores(
            {"score": float(r.get("score") or 0.0), "image_quantity_level": r.get("image_quantity_level"),
             "num_images": r.get("num_images", 0)} for r in records
        )
        datasets[name] = {
            "score": pct(scores["score"]),
            "levels": {k: pct(v) for k, v in scores["image_quantity_level"].items()},
            "level_counts": scores["image_quantity_level_counts"],
            "samples": len(records),
            "errors": sum(1 for r in records if r.get("error")),
            # fewer {image#k} placeholders than images: run as the official code runs them (images shift)
            "shifted_images": sum(1 for r in records if r.get("placeholders", r.get("num_images", 0)) < r.get("num_images", 0)),
        }
    groups = summary({name: d["score"] / 100 for name, d in datasets.items()})
    return {"datasets": datasets, "groups": {k: groups[k] for k in ("T", "S", "NI", "IR", "Avg")}, "missing": groups["missing"]}


def markdown(numbers: dict) -> str:
    group_of = {d: g for g, members in GROUPS.items() for d in members}
    rows = [[name, group_of.get(name, "?"), fmt(d["score"]),
             *(f"{fmt(d['levels'][lvl])} ({d['level_counts'][lvl]})" for lvl in ("Few", "Medium", "Many")),
             d["samples"], d["errors"]]
            for name, d in sorted(numbers["datasets"].items(), key=lambda kv: (group_of.get(kv[0], "~"), kv[0]))]
    parts = ["Per dataset (x100; image-quantity levels with their sample counts):",
             table(["dataset", "group", "score", "Few", "Medium", "Many", "n", "errors"], rows),
             "Groups (mean over the group's datasets present; Avg = mean(T, S, NI)):",
             table(["T", "S", "NI", "IR", "Avg"], [[fmt(numbers["groups"][g]) for g in ("T", "S", "NI", "IR", "Avg")]])]
    if numbers["missing"]:
        parts.append(f"Datasets not in this run ({len(numbers['missing'])}): {', '.join(numbers['missing'])}.")
    shifted = {name: d["shifted_images"] for name, d in numbers["datasets"].items() if d.get("shifted_images")}
    if shifted:
        parts.append("Samples with fewer `{image#k}` placeholders than images, run as the official code runs them "
                     "(images shift; the earliest may be dropped): " + ", ".join(f"{n} {c}" for n, c in sorted(shifted.items())) + ".")
    return "\n\n".join(parts)


def comparison(numbers: dict) -> list[tuple[str, float | None]]:
    rows = [(name, d["score"]) for name, d in sorted(numbers["datasets"].items())]
    return rows + [(f"group {g}", numbers["groups"][g]) for g in ("T", "S", "NI", "IR", "Avg")]


# ----------------------------------------------------------------------------- official outputs


def _official_folders(path: Path) -> list[Path]:
    if (path / "pred.json").is_file():
        return [path]
    return sorted(p.parent for p in path.glob("*/pred.json"))


def read_official(path: Path, scorer_source: str) -> tuple[dict[str, list[dict]], str | None]:
    from v2pe.eval.official_outputs import OOM_RESPONSE, scored

    if path.is_file():
        path = path.parent
    tasks: dict[str, list[dict]] = {}
    scorers: dict = {}
    for folder in _official_folders(path):
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
            metric = metric_of(dataset, question_type)
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
            records[str(item["sample_id"])] = scored(record, SCORERS[metric], scorer_source, scorers)
        if records:
            tasks[dataset] = list(records.values())
    return tasks, None


BENCHMARK = Benchmark(
    "milebench", load_tasks, "MileBench multi-image long-context benchmark (29 datasets)",
    help="run MileBench (DATA/<Task>/<Task>.json, images in DATA/<Task>/images)", tasks_help="datasets such as ALFRED",
    options=(
        Option("--max-context-len", {"type": int, "default": None, "help": "left-truncation budget in tokens (default 512000)"}),
        Option("--n-tokens-per-image", {"type": int, "default": None,
                                        "help": "tokens an image counts for truncation (default: the model's tokens per tile)"}),
    ),
    numbers=numbers, markdown=markdown, comparison=comparison, read_official=read_official,
    official_help="a folder of <Dataset>/{<Dataset>.json, pred.json}",
)
