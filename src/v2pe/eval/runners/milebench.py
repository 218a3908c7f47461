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

Scorer by dataset (`aggregate.milebench_metric`): needle / mmcoqa / rouge_l / multichoice
(extra `choice_list`). Result lines add `sample_id`, `question` (the full prompt),
`image_quantity_level`, `num_images` (in the annotation) and `kept_images` (after truncation).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from v2pe.errors import ConfigError, DataError
from v2pe.eval.runners.base import Benchmark, IMAGE, Sample, Task, read_json, refuse_unknown, require, unique_ids
from v2pe.eval.scorers.aggregate import milebench_metric

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
        metric = milebench_metric(name, question_type)
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


BENCHMARK = Benchmark("milebench", load_tasks, "MileBench multi-image long-context benchmark (29 datasets)")
