"""Running benchmarks (those of `v2pe.eval.benchmarks.BENCHMARKS`): resumable, scored per sample.

    from v2pe.eval.runners import run_benchmark, load_chat
    chat = load_chat("path/to/checkpoint", delta="auto")          # or Chat(model, processor, ...)
    run_benchmark("mm-niah", chat, "data/MM-NIAH", "runs/v2pe", tasks=["retrieval-text"], limit=10)

Each run folder holds `run.json` (what made it) and one `<task>.jsonl` per task, one line per
sample written as soon as it is scored; running again resumes (see `runners.base` and
`runners.resumable`). `v2pe eval report RUN_DIR ...` turns run folders into tables and plots.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from v2pe.errors import ConfigError
from v2pe.eval.runners.base import DEFAULT_SCORER_SOURCE, Sample, Task, run_tasks

__all__ = ["Sample", "Task", "load_chat", "load_tasks", "run_benchmark", "run_loaded"]


def load_tasks(benchmark: str, data: str | Path, processor=None, tasks: Sequence[str] | None = None,
               limit: int | None = None, **options) -> list[Task]:
    """Read and check a benchmark's files (no model needed except MileBench's tokenizer)."""
    from v2pe.eval.benchmarks import get_benchmark

    found = get_benchmark(benchmark)
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be >= 1, got {limit}")
    options = {k: v for k, v in options.items() if v is not None}  # None: the benchmark's official setting
    return found.load_tasks(data, processor=processor, tasks=tasks, limit=limit, **options)


def run_benchmark(
    benchmark: str,
    chat,
    data: str | Path,
    out_dir: str | Path,
    *,
    tasks: Sequence[str] | None = None,
    limit: int | None = None,
    model: str | None = None,
    scorer_source: str = DEFAULT_SCORER_SOURCE,
    retry_errors: bool = False,
    overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
    batch_size: int = 1,
    **options,
) -> dict[str, dict]:
    """Run `benchmark` with an already-built `Chat` and write/resume `out_dir`.

    options: benchmark settings (`max_tiles`, MileBench `max_context_len` /
    `n_tokens_per_image`, Long-VQA / VQA `image_root`). Everything is read and checked before
    the first generation. batch_size: samples per `Chat.generate` call (`runners.base.plan_batches`;
    same answers as 1, not a setting of the run). Returns {task: {"n", "mean", "errors", "ran"}}.
    """
    loaded = load_tasks(benchmark, data, chat.processor, tasks, limit, **options)
    return run_loaded(chat, benchmark, loaded, out_dir, data=data, limit=limit, model=model, scorer_source=scorer_source,
                      retry_errors=retry_errors, overwrite=overwrite, progress=progress, batch_size=batch_size, **options)


def run_loaded(chat, benchmark: str, tasks: Sequence[Task], out_dir: str | Path, *, data: str | Path, limit: int | None = None,
               model: str | None = None, scorer_source: str = DEFAULT_SCORER_SOURCE, retry_errors: bool = False,
               overwrite: bool = False, progress: Callable[[str], None] | None = None, batch_size: int = 1,
               **options) -> dict[str, dict]:
    """Run tasks from `load_tasks` (same options) with `chat`: the CLI reads and checks the
    benchmark files before it loads the model."""
    from v2pe.eval.benchmarks import get_benchmark

    # settings that change results must match on resume; paths and --limit may change
    informative = [option.dest for option in get_benchmark(benchmark).options if option.informative]
    settings = {k: v for k, v in sorted(options.items()) if v is not None and k not in informative}
    notes = {"data": str(data), "limit": limit, **{k: str(options[k]) for k in informative if options.get(k)}}
    return run_tasks(
        chat, benchmark, tasks, out_dir,
        model=model or _model_name(chat), scorer_source=scorer_source, settings=settings, notes=notes,
        retry_errors=retry_errors, overwrite=overwrite, progress=progress, batch_size=batch_size,
    )


def load_chat(path: str | Path, delta="auto", window: int | None = None, dtype="float32", device: str = "cpu"):
    """`Chat.from_pretrained` with the evaluation's defaults (automatic delta, float32)."""
    from v2pe.inference import Chat

    return Chat.from_pretrained(path, delta=delta, window=window, dtype=dtype, device=device)


def _model_name(chat) -> str:
    config = getattr(chat.model, "config", None)
    return str(getattr(config, "_name_or_path", "") or type(chat.model).__name__)
