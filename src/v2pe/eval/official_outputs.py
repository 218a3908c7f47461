"""The official evaluation scripts' result files, as in-memory report `Run`s.

    v2pe eval report --official mm-niah outputs/ --official milebench outputs/milebench runs/v2pe --out reports/

Each benchmark with a `read_official` hook (MM-NIAH, MileBench, Long-VQA; its module docstring
gives the files it reads) turns the files into result lines; each line is scored again with
v2pe's official scorers (the same scorer, answer handling and fields a v2pe runner writes,
`scored`), so the report's numbers, Markdown and plots are those of a v2pe run of the same
predictions.
"""

from __future__ import annotations

from pathlib import Path

from v2pe.errors import ConfigError, DataError
from v2pe.eval.runners.base import DEFAULT_SCORER_SOURCE
from v2pe.eval.score_file import score_record
from v2pe.eval.scorers import get_scorer

OOM_RESPONSE = "None"  # what the official scripts write for a sample that ran out of memory


def official_benchmarks() -> list[str]:
    """The benchmarks whose official result files `load_official` reads."""
    from v2pe.eval.benchmarks import BENCHMARKS

    return sorted(name for name, benchmark in BENCHMARKS.items() if benchmark.read_official is not None)


def load_official(benchmark: str, path: str | Path, scorer_source: str = DEFAULT_SCORER_SOURCE):
    """The official result files of `benchmark` (its name or an alias) under `path` as a scored `Run`."""
    from v2pe.eval.benchmarks import get_benchmark
    from v2pe.eval.reports import Run

    try:
        found = get_benchmark(benchmark, official=True)
    except ConfigError:
        found = None
    if found is None or found.read_official is None:
        raise DataError(f"--official: unknown benchmark {benchmark!r}; one of {', '.join(official_benchmarks())}")
    path = Path(path)
    if not path.exists():
        raise DataError(f"--official {benchmark}: {path} does not exist")
    tasks, model = found.read_official(path, scorer_source)
    if not tasks:
        raise DataError(f"--official {benchmark}: no official {found.name} result files found in {path}")
    info = {"benchmark": found.name, "model": model or "?", "delta": "official", "scorer_source": scorer_source,
            "tasks": list(tasks), "official": True, "source": str(path)}
    return Run(path, info, tasks, f"official-{path.stem if path.is_file() else path.name}")


def scored(record: dict, scorer_name: str, scorer_source: str, scorers: dict) -> dict:
    """`record` (a result line with `prediction`, `answer`, `extra`, `error`) scored with
    `scorer_name`; `scorers` caches the scorers of one file."""
    if scorer_name not in scorers:
        scorers[scorer_name] = get_scorer(scorer_name, scorer_source)
    prediction = record["prediction"]
    score, error = 0.0, record.get("error")
    if isinstance(prediction, str):
        result = score_record({"prediction": prediction, "answer": record["answer"], "extra": record["extra"]}, scorers[scorer_name])
        score, error = result["score"], error or result.get("score_error")
    elif error is None:
        error = "no prediction"
    record.update({"score": score, "error": error, "scorer": scorer_name, "source": scorer_source, "delta": None})
    return record


def one_model(models: list[str]) -> str | None:
    """The model name of a run from its files' names (several: joined by commas)."""
    unique = list(dict.fromkeys(models))
    return unique[0] if len(unique) == 1 else ", ".join(unique) if unique else None
