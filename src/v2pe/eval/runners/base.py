"""Shared machinery of the benchmark runners: samples, the resumable run loop, scoring.

Every runner turns a benchmark's own files into `Task`s of `Sample`s (prompt text with
`<image>` placeholders, image paths, gold answer, scorer name, generation limits). Reading
checks everything that can be checked without the model, so a malformed file (bad JSON line,
missing field, `<image>` count not matching the images) fails with its file and line BEFORE
any generation starts.

`run_tasks` then generates each unfinished sample with `Chat` (V2PE delta), scores it with the
registered official scorer (`v2pe.eval.scorers.get_scorer`) and appends one JSONL line per
sample (`resumable.ResumableWriter`). Problems of one sample never stop the run: a missing or
unreadable image, a prompt that does not fit the window, an answer of an unexpected type, a
prediction that cannot be parsed, running out of memory: the sample scores 0 and the reason is
kept in the line's `error` field.

Result line fields (all benchmarks): `id` (resume key), `task`, `prediction`, `answer`, `score`,
`error` (null or the reason), `scorer`, `source` (scorer variant), `extra` (scorer arguments),
`delta`, `prompt_tokens`, `new_tokens`, `seconds`, plus the benchmark's own fields (see each
runner). The `scorer/source/prediction/answer/extra` fields make every line re-scorable with
`v2pe eval score`.
"""

from __future__ import annotations

import copy
import json
import dataclasses
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

from v2pe.errors import ConfigError, DataError, V2PEError
from v2pe.files import iter_json_lines, read_json_file
from v2pe.eval.runners.resumable import ResumableWriter, check_run_info, stale_result_files
from v2pe.eval.score_file import score_record
from v2pe.eval.scorers import ScoringError, get_scorer

IMAGE = "<image>"
DEFAULT_SCORER_SOURCE = "official"  # the benchmark repository's own scoring; "v2pe" reproduces the paper's numbers


@dataclass
class Sample:
    """One benchmark question, ready to generate and score."""

    id: Any  # unique within its task (the resume key is str(id))
    prompt: str  # the human turn, with one `<image>` per image
    images: list  # image paths, or video frames (`v2pe.processing.video.VideoFrame`)
    answer: Any
    scorer: str
    max_new_tokens: int
    max_tiles: int
    extra: dict = field(default_factory=dict)  # scorer arguments
    fields: dict = field(default_factory=dict)  # benchmark fields copied to the result line
    generate_kwargs: dict = field(default_factory=dict)
    # builds scorer arguments that depend on the prediction (Long-VQA F1); may raise ScoringError
    extra_for_prediction: Callable[[str], dict] | None = None
    # explains why a prediction scores 0 because it could not be parsed (None: it could)
    diagnose: Callable[[str], str | None] | None = None


@dataclass
class Task:
    """The samples of one annotation file (one result file `<name>.jsonl`)."""

    name: str
    source: Path
    samples: list[Sample]
    info: dict = field(default_factory=dict)  # benchmark-level facts for reports


@dataclass
class Benchmark:
    """A runner: its CLI name and how to read its files."""

    name: str
    load_tasks: Callable[..., list[Task]]
    description: str = ""


# ----------------------------------------------------------------------------- reading


def read_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) of every non-blank line; DataError naming file:line for bad
    UTF-8, bad JSON or a line that is not an object (the shared reader, `v2pe.errors`)."""
    return iter_json_lines(path, what="benchmark file")


def read_json(path: Path) -> Any:
    """A whole JSON benchmark file; DataError naming file:line for bad UTF-8 or bad JSON."""
    return read_json_file(path, "benchmark file")


def require(record: Mapping, name: str, where: str, types: type | tuple[type, ...] | None = None) -> Any:
    """record[name], a DataError naming `where` when missing (or not of `types`)."""
    if not isinstance(record, Mapping) or name not in record:
        raise DataError(f"{where}: missing field {name!r}")
    value = record[name]
    if types is not None and (not isinstance(value, types) or isinstance(value, bool) and bool not in _as_tuple(types)):
        expected = " or ".join(t.__name__ for t in _as_tuple(types))
        raise DataError(f"{where}: field {name!r} must be {expected}, got {type(value).__name__}")
    return value


def _as_tuple(types) -> tuple:
    return types if isinstance(types, tuple) else (types,)


def check_placeholders(prompt: str, num_images: int, where: str) -> None:
    count = prompt.count(IMAGE)
    if count != num_images:
        raise DataError(f"{where}: {count} `<image>` placeholders but {num_images} images")


def unique_ids(ids: Sequence[Any], lines: Sequence[int]) -> list[Any]:
    """Sample ids made unique within a file: a repeated id becomes 'id@line<n>'."""
    seen: dict[str, int] = {}
    for value in ids:
        seen[str(value)] = seen.get(str(value), 0) + 1
    return [value if seen[str(value)] == 1 else f"{value}@line{line}" for value, line in zip(ids, lines)]


def resolve_image(path: str, roots: Sequence[Path]) -> Path:
    """An image path: absolute as is, else the first root under which it exists (else the first
    root's candidate, reported as missing when the sample runs)."""
    candidate = Path(path)
    if candidate.is_absolute() or not roots:
        return candidate
    options = [root / candidate for root in roots]
    return next((option for option in options if option.exists()), options[0])


def select_tasks(available: Sequence[str], wanted: Sequence[str] | None, what: str) -> list[str]:
    """The wanted task names (all when None); a ConfigError names unknown ones."""
    if not wanted:
        return list(available)
    unknown = [name for name in wanted if name not in available]
    if unknown:
        raise ConfigError(f"unknown {what} {', '.join(unknown)}; available: {', '.join(available) or 'none'}")
    return [name for name in available if name in wanted]


# ----------------------------------------------------------------------------- running


def chat_for_tiles(chat, max_tiles: int, cache: dict):
    """`chat` with its processor's tile limit set to max_tiles (copies are cached)."""
    if chat.processor.max_tiles == max_tiles:
        return chat
    if max_tiles not in cache:
        processor = copy.copy(chat.processor)
        processor.max_tiles = max_tiles
        processor.min_tiles = min(processor.min_tiles, max_tiles)
        cache[max_tiles] = dataclasses.replace(chat, processor=processor, history=[])
    return cache[max_tiles]


def run_tasks(
    chat,
    benchmark: str,
    tasks: Sequence[Task],
    out_dir: str | Path,
    *,
    model: str = "model",
    scorer_source: str = DEFAULT_SCORER_SOURCE,
    settings: Mapping | None = None,
    notes: Mapping | None = None,
    retry_errors: bool = False,
    overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
) -> dict[str, dict]:
    """Generate, score and write every unfinished sample; returns per-task summaries
    {task: {"n", "mean", "errors", "ran"}} over all result lines of the task."""
    out_dir = Path(out_dir)
    info = {
        "benchmark": benchmark,
        "model": model,
        "delta": chat.delta,
        "window": chat.window,
        "scorer_source": scorer_source,
        "settings": dict(settings or {}),
        "tasks": [task.name for task in tasks],
        **dict(notes or {}),
    }
    scorers = {name: get_scorer(name, scorer_source) for name in sorted({s.scorer for t in tasks for s in t.samples})}
    preflight_scorers(tasks, scorer_source)  # a scorer that cannot run fails before anything is written
    if overwrite:
        for path in stale_result_files(out_dir, info, [task.name for task in tasks]):
            path.unlink(missing_ok=True)
    check_run_info(out_dir, info, overwrite=overwrite)
    say = progress or (lambda message: None)
    chats: dict[int, Any] = {}
    summaries = {}
    for task in tasks:
        with ResumableWriter(out_dir / f"{task.name}.jsonl") as writer:
            done = writer.finished(retry_errors)
            todo = [s for s in task.samples if str(s.id) not in done]
            say(f"{benchmark} {task.name}: {len(task.samples) - len(todo)} done, {len(todo)} to run")
            started = time.monotonic()
            for index, sample in enumerate(todo, start=1):
                record = run_sample(chat_for_tiles(chat, sample.max_tiles, chats), task.name, sample, scorers[sample.scorer], scorer_source)
                writer.write(record)
                if index == len(todo) or index % 25 == 0:
                    elapsed = time.monotonic() - started
                    say(f"{benchmark} {task.name}: {index}/{len(todo)} ({elapsed / index:.2f} s/sample)")
            records = [writer.records[str(s.id)] for s in task.samples if str(s.id) in writer.records]
        summaries[task.name] = summarize(records)
        summaries[task.name]["ran"] = len(todo)
    return summaries


def dry_run_line(sample: Sample, delta: float | None = None, processor=None) -> dict:
    """What a run would ask for one sample: the user text as the chat template receives it (after
    the official `chat()` rule that prepends `<image>\\n` to a one-image question without one),
    the images in prompt order (video frames as `VIDEO#frame=N`), tiles and generation settings."""
    prompt = sample.prompt
    if len(sample.images) == 1 and IMAGE not in prompt:
        prompt = f"{IMAGE}\n{prompt}"
    line = {"id": sample.id, "prompt": prompt, "images": [str(image) for image in sample.images],
            "max_tiles": sample.max_tiles, "max_new_tokens": sample.max_new_tokens}
    tiles = _tiles_per_image(sample, processor)
    if tiles is not None:
        line["tiles"] = tiles
    for key in ("min_new_tokens", "num_beams", "do_sample"):
        if key in sample.generate_kwargs:
            line[key] = sample.generate_kwargs[key]
    if delta is not None:
        line["delta"] = delta
    return line


def _tiles_per_image(sample: Sample, processor) -> list[int] | None:
    """Tiles of each image from its header (no decoding); None where a file cannot be read."""
    from PIL import Image

    from v2pe.processing.tiling import num_tiles_for_size

    tiles = []
    use_thumbnail = getattr(processor, "use_thumbnail", True)
    min_tiles = getattr(processor, "min_tiles", 1)
    for image in sample.images:
        if not isinstance(image, (str, PathLike)):
            tiles.append(1)  # a video frame: one tile, as the official video evaluation
            continue
        try:
            with Image.open(image) as handle:
                width, height = handle.size
        except OSError:
            return None
        kwargs = {"tile_size": processor.tile_size} if processor is not None else {}
        tiles.append(num_tiles_for_size(width, height, min_tiles, sample.max_tiles, use_thumbnail, **kwargs))
    return tiles


def write_dry_run(tasks: Sequence[Task], folder: Path, delta: float | None = None, processor=None) -> list[Path]:
    """`folder/<task>.jsonl`: one `dry_run_line` per sample."""
    from v2pe.files import make_output_folder, write_text_file

    make_output_folder(folder)
    paths = []
    for task in tasks:
        lines = (json.dumps(dry_run_line(sample, delta, processor), ensure_ascii=False) for sample in task.samples)
        paths.append(write_text_file(folder / f"{task.name}.jsonl", "".join(line + "\n" for line in lines)))
    return paths


def summarize(records: Iterable[Mapping]) -> dict:
    records = list(records)
    n = len(records)
    return {
        "n": n,
        "mean": sum(float(r.get("score") or 0.0) for r in records) / n if n else 0.0,
        "errors": sum(1 for r in records if r.get("error")),
    }


def run_sample(chat, task: str, sample: Sample, scorer, scorer_source: str) -> dict:
    """Generate and score one sample; every per-sample problem becomes `error`."""
    started = time.monotonic()
    reply, error = None, None
    # image paths are checked here; video frames (not paths) report a missing video when loaded
    missing = [str(p) for p in sample.images if isinstance(p, (str, PathLike)) and not Path(p).is_file()]
    if missing:
        error = f"image file not found: {', '.join(missing)}"
    else:
        try:
            conversation = [{"from": "human", "value": sample.prompt}]
            images = [str(p) if isinstance(p, PathLike) else p for p in sample.images]
            reply = chat.generate([conversation], [images], sample.max_new_tokens, **sample.generate_kwargs)[0]
        except V2PEError as problem:  # unreadable image, prompt beyond the window, ...
            error = f"{type(problem).__name__}: {problem}"
        except _out_of_memory_errors() as problem:
            error = f"out of memory: {problem}"
            _empty_cache()
    prediction = reply.text if reply is not None else None
    record = {"id": sample.id, "task": task, **sample.fields}
    score, score_error, extra = 0.0, None, dict(sample.extra)
    if prediction is not None:
        try:
            if sample.extra_for_prediction is not None:
                extra.update(sample.extra_for_prediction(prediction))
            scored = score_record({"prediction": prediction, "answer": sample.answer, "extra": extra}, scorer)
            score, score_error = scored["score"], scored.get("score_error")
        except ScoringError as problem:
            score_error = str(problem)
        if score_error is None and sample.diagnose is not None and score == 0:
            score_error = sample.diagnose(prediction)
    record.update({
        "prediction": prediction,
        "answer": sample.answer,
        "score": score,
        "error": error or score_error,
        "scorer": sample.scorer,
        "source": scorer_source,
        "extra": extra,
        "delta": reply.delta if reply is not None else None,
        "prompt_tokens": reply.prompt_tokens if reply is not None else None,
        "new_tokens": reply.new_tokens if reply is not None else None,
        "seconds": round(time.monotonic() - started, 3),
    })
    return record


def _out_of_memory_errors() -> tuple[type[BaseException], ...]:
    import torch

    errors: list[type[BaseException]] = [MemoryError]
    for name in ("OutOfMemoryError",):
        if hasattr(torch, name):
            errors.append(getattr(torch, name))
    if hasattr(torch, "cuda") and hasattr(torch.cuda, "OutOfMemoryError"):
        errors.append(torch.cuda.OutOfMemoryError)
    return tuple(dict.fromkeys(errors))


def _empty_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def preflight_scorers(tasks: Sequence[Task], scorer_source: str) -> None:
    """Score one dummy prediction per (task, scorer) so that a scorer that cannot run at all
    (missing WordNet data, ...) fails before generation rather than after the first sample."""
    seen = set()
    for task in tasks:
        for sample in task.samples:
            if sample.scorer in seen:
                continue
            seen.add(sample.scorer)
            scorer = get_scorer(sample.scorer, scorer_source)
            extra = dict(sample.extra)
            try:
                if sample.extra_for_prediction is not None:
                    extra.update(sample.extra_for_prediction("0"))
                score_record({"prediction": "0", "answer": sample.answer, "extra": extra}, scorer)
            except ScoringError:
                pass  # a problem of this sample only; reported when it runs


def stderr_progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
