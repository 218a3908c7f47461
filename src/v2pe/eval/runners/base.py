"""Shared machinery of the benchmark runners: samples, the resumable run loop, scoring.

Every runner turns a benchmark's own files into `Task`s of `Sample`s (prompt text with
`<image>` placeholders, image paths, gold answer, scorer name, generation limits). Reading
checks everything that can be checked without the model, so a malformed file (bad JSON line,
missing field, `<image>` count not matching the images) fails with its file and line BEFORE
any generation starts.

`run_tasks` then generates each unfinished sample with `Chat` (V2PE delta), scores it with the
registered official scorer (`v2pe.eval.scorers.get_scorer`) and appends one JSONL line per
sample (`resumable.ResumableWriter`); with `batch_size` > 1 samples of the same settings and
similar length share one `Chat.generate` call (`plan_batches`), with the same answers. A sample
with a `forced_answer` is scored by teacher forcing instead (`teacher_forcing`: the argmax at
each token of that answer appended to the prompt; MM-NIAH's long split). Problems of one sample
never stop the run: a missing or unreadable image, a prompt that does not fit the window, an answer of an unexpected type, a
prediction that cannot be parsed, running out of memory: the sample scores 0 and the reason is
kept in the line's `error` field.

Result line fields (all benchmarks): `id` (resume key), `task`, `prediction`, `answer`, `score`,
`error` (null or the reason), `scorer`, `source` (scorer variant), `extra` (scorer arguments),
`delta`, `prompt_tokens`, `new_tokens` (teacher forcing: the answer tokens), `seconds`, plus the
benchmark's own fields (see each benchmark's module). The `scorer/source/prediction/answer/extra` fields make every line re-scorable with
`v2pe eval score`.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

from v2pe.errors import ConfigError, DataError, V2PEError
from v2pe.eval.runners.resumable import ResumableWriter, check_run_info, stale_result_files
from v2pe.eval.score_file import score_record
from v2pe.eval.scorers import ScoringError, get_scorer
from v2pe.files import iter_json_lines, read_json_file
from v2pe.tokens import IMAGE_PLACEHOLDER as IMAGE

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
    # teacher forcing: score this answer text appended to the prompt (argmax per answer token,
    # `teacher_forcing`) instead of generating; max_new_tokens then only reserves room for delta "auto"
    forced_answer: str | None = None


@dataclass
class Task:
    """The samples of one annotation file (one result file `<name>.jsonl`)."""

    name: str
    source: Path
    samples: list[Sample]
    info: dict = field(default_factory=dict)  # benchmark-level facts for reports


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


def find_file(data: Path, name: str, subfolder: str) -> Path:
    """`data/name` or `data/subfolder/name` (a benchmark folder, or InternVL's data/ folder)."""
    for candidate in (data / name, data / subfolder / name):
        if candidate.is_file():
            return candidate
    raise DataError(f"{data}: {name} not found (looked for {data / name} and {data / subfolder / name})")


def cache_root() -> Path:
    """Where images decoded from benchmark files go: $V2PE_CACHE_DIR, else ~/.cache/v2pe."""
    return Path(os.environ.get("V2PE_CACHE_DIR") or Path.home() / ".cache" / "v2pe")


def image_folder(benchmark: str, source: Path, variant: str = "") -> Path:
    """A cache folder for the images embedded in `source`, keyed by its path, size and mtime
    (and `variant`, e.g. a tile size), so an edited file never reuses stale images."""
    stat = source.stat()
    key = hashlib.sha1(f"{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{variant}".encode()).hexdigest()[:12]
    return cache_root() / "images" / benchmark / f"{source.stem}-{key}"


def write_once(path: Path, data: bytes) -> Path:
    """Write `data` to `path` unless an identical-size file is there (atomic rename)."""
    if path.is_file() and path.stat().st_size == len(data):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    temporary.replace(path)
    return path


def refuse_unknown(wanted: Sequence[str] | None, known: Sequence[str], what: str, listed: str = "known") -> None:
    """The `--tasks` check of every runner: a ConfigError naming the wanted names not in `known`."""
    unknown = [name for name in wanted or [] if name not in known]
    if unknown:
        raise ConfigError(f"unknown {what} {', '.join(unknown)}; {listed}: {', '.join(known)}")


# ----------------------------------------------------------------------------- running


def chat_for_tiles(chat, max_tiles: int, cache: dict):
    """`chat` with its processor's tile limit set to max_tiles (`Chat.with_tiles`; copies are cached)."""
    if chat.processor.max_tiles == max_tiles:
        return chat
    if max_tiles not in cache:
        cache[max_tiles] = chat.with_tiles(max_tiles)
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
    batch_size: int = 1,
) -> dict[str, dict]:
    """Generate, score and write every unfinished sample; returns per-task summaries
    {task: {"n", "mean", "errors", "ran"}} over all result lines of the task.

    batch_size > 1 generates up to that many samples of the same settings and similar length
    per `Chat.generate` call (`plan_batches`): the answers and scores equal batch 1's, lines are
    written in the order the batches complete (sorted by length, not file order). It is not a
    setting of the run: a run may be resumed at another batch size."""
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")  # before anything is written
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
            started, index = time.monotonic(), 0
            for batch in plan_batches(chat, todo, batch_size, chats):
                for record in run_batch(chat_for_tiles(chat, batch[0].max_tiles, chats), task.name, batch, scorers, scorer_source):
                    writer.write(record)  # each line as soon as it is scored
                    index += 1
                    if index == len(todo) or index % 25 == 0:
                        elapsed = time.monotonic() - started
                        say(f"{benchmark} {task.name}: {index}/{len(todo)} ({elapsed / index:.2f} s/sample)")
            records = [writer.records[str(s.id)] for s in task.samples if str(s.id) in writer.records]
        summaries[task.name] = summarize(records)
        summaries[task.name]["ran"] = len(todo)
    return summaries


# ----------------------------------------------------------------------------- batching


def plan_batches(chat, samples: Sequence[Sample], batch_size: int, chats: dict | None = None) -> list[list[Sample]]:
    """The samples in batches of up to `batch_size` for one `Chat.generate` call each.

    batch_size 1: one sample per batch, in file order. Larger: the samples are sorted (stably) by
    generation settings (max_tiles, max_new_tokens, generate_kwargs) and prompt length (from the
    image headers and the tokenizer, no decoding), and consecutive samples with the same settings
    form a batch. With `delta="auto"` a batch shares one delta (`Chat.prepare` picks the smallest
    its rows need), so samples are batched only with samples of the same automatic delta: every
    answer equals its batch-1 answer. A sample with a missing image, or whose automatic delta
    cannot be known before decoding (video frames, an unreadable image, a prompt beyond the
    window), or that is scored by teacher forcing, runs alone.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if batch_size == 1:
        return [[sample] for sample in samples]
    chats = {} if chats is None else chats
    auto = chat.delta == "auto"
    keyed = []
    for sample in samples:
        settings = (sample.max_tiles, sample.max_new_tokens, repr(sorted(sample.generate_kwargs.items(), key=lambda kv: kv[0])))
        layout = None if _missing_images(sample) else prompt_layout(chat_for_tiles(chat, sample.max_tiles, chats), sample)
        delta = _auto_delta(chat, layout, sample.max_new_tokens) if auto and layout is not None else None
        alone = bool(_missing_images(sample)) or (auto and delta is None) or sample.forced_answer is not None
        length = layout[0] + sum(layout[1]) if layout is not None else None
        keyed.append(((settings, delta if delta is not None else -1.0, length is None, length or 0), alone, sample))
    keyed.sort(key=lambda item: item[0])  # stable: equal keys keep file order
    batches: list[list[Sample]] = []
    previous = None
    for key, alone, sample in keyed:
        group = key[:2]
        if alone or not batches or previous != group or len(batches[-1]) >= batch_size:
            batches.append([sample])
        else:
            batches[-1].append(sample)
        previous = None if alone else group
    return batches


def prompt_layout(chat, sample: Sample) -> tuple[int, list[int]] | None:
    """(text tokens, [visual tokens per image]) of the sample's prompt as `Chat.prepare` builds
    it, from image headers and the tokenizer only; None where that needs decoding (video frames)
    or an image header cannot be read."""
    if any(not isinstance(image, (str, PathLike)) for image in sample.images):
        return None
    processor = chat.processor
    try:
        tiles = _tiles_per_image(sample, processor)
        if tiles is None:
            return None
        counts = iter(tiles)
        plan = processor.plan([{"from": "human", "value": sample.prompt}], sample.images, tiles=lambda _image: next(counts))
    except Exception:  # noqa: BLE001 - a prompt the processor refuses: reported when the sample runs
        return None
    visual = [processor.tokens_per_tile * n for n in tiles]
    return len(plan.input_ids) - sum(visual), visual


def _auto_delta(chat, layout: tuple[int, list[int]], max_new_tokens: int) -> float | None:
    """The delta `choose_delta` picks for this one prompt; None when none fits (it runs alone)."""
    from v2pe.positions import DEFAULT_DELTA_CHOICES, max_position

    window = chat.trained_window()
    for delta in sorted(DEFAULT_DELTA_CHOICES, reverse=True):
        if max_position(layout[0], layout[1], delta) + max_new_tokens < window:
            return float(delta)
    return None


def _missing_images(sample: Sample) -> list[str]:
    # image paths are checked here; video frames (not paths) report a missing video when loaded
    return [str(p) for p in sample.images if isinstance(p, (str, PathLike)) and not Path(p).is_file()]


def _chat_images(sample: Sample) -> list:
    return [str(p) if isinstance(p, PathLike) else p for p in sample.images]


def run_batch(chat, task: str, samples: Sequence[Sample], scorers: Mapping, scorer_source: str) -> Iterator[dict]:
    """The result lines of one batch (samples sharing max_tiles, max_new_tokens and
    generate_kwargs), from one `chat.generate` call; when that call fails (an unreadable image,
    a prompt beyond the window, out of memory, ...) each sample runs alone, so that each gets
    its own line and error."""
    if len(samples) == 1:
        yield run_sample(chat, task, samples[0], scorers[samples[0].scorer], scorer_source)
        return
    started = time.monotonic()
    try:
        conversations = [[{"from": "human", "value": sample.prompt}] for sample in samples]
        first = samples[0]
        replies = chat.generate(conversations, [_chat_images(s) for s in samples], first.max_new_tokens, **first.generate_kwargs)
        if len(replies) != len(samples):
            raise RuntimeError(f"{len(replies)} replies for {len(samples)} prompts")
    except Exception as problem:  # noqa: BLE001 - any failure of the batch: each sample alone reports its own
        if isinstance(problem, _out_of_memory_errors()):
            _empty_cache()
        for sample in samples:
            yield run_sample(chat, task, sample, scorers[sample.scorer], scorer_source)
        return
    share = (time.monotonic() - started) / len(samples)  # each sample's share of the batch's generation
    for sample, reply in zip(samples, replies):
        scored = time.monotonic()
        yield score_sample(task, sample, reply, None, scorers[sample.scorer], scorer_source, share + time.monotonic() - scored)


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
    if sample.forced_answer is not None:
        line["forced_answer"] = sample.forced_answer  # scored by teacher forcing, not generated
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
    missing = _missing_images(sample)
    if missing:
        error = f"image file not found: {', '.join(missing)}"
    else:
        try:
            if sample.forced_answer is not None:
                from v2pe.eval.runners.teacher_forcing import teacher_forced_reply

                reply = teacher_forced_reply(chat, sample.prompt, sample.forced_answer, _chat_images(sample))
            else:
                conversation = [{"from": "human", "value": sample.prompt}]
                reply = chat.generate([conversation], [_chat_images(sample)], sample.max_new_tokens, **sample.generate_kwargs)[0]
        except V2PEError as problem:  # unreadable image, prompt beyond the window, ...
            error = f"{type(problem).__name__}: {problem}"
        except _out_of_memory_errors() as problem:
            error = f"out of memory: {problem}"
            _empty_cache()
    return score_sample(task, sample, reply, error, scorer, scorer_source, started=started)


def score_sample(task: str, sample: Sample, reply, error: str | None, scorer, scorer_source: str,
                 seconds: float | None = None, started: float | None = None) -> dict:
    """The result line of one sample from its reply (None when generation failed with `error`):
    `seconds` as given, else the time since `started`."""
    prediction = reply.text if reply is not None else None
    record = {"id": sample.id, "task": task, **sample.fields}
    score, score_error, extra = 0.0, None, dict(sample.extra)
    extra.update(getattr(reply, "extra", None) or {})  # a teacher-forced reply's token ids
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
    if seconds is None:
        seconds = time.monotonic() - (started if started is not None else time.monotonic())
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
        "seconds": round(seconds, 3),
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
