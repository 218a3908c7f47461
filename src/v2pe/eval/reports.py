"""Reports of benchmark runs: Markdown tables, PNG plots, and a side-by-side summary.

    v2pe eval report runs/delta1 runs/v2pe --out reports/
    v2pe eval report runs/v2pe --official mm-niah outputs/mm_niah --out reports/

reads run folders written by the runners (`run.json` + one `<task>.jsonl` per task; the last
line of each sample id counts) and, with `--official BENCH PATH` (repeatable; BENCH mm-niah,
milebench or long-vqa), the official evaluation scripts' result files (read and scored again
line by line with v2pe's official scorers by `v2pe.eval.official_outputs`; reported after the
run folders, labelled `official-<folder>`), and writes to `--out`:

* `report.md`: a runs table (benchmark, model, delta, samples, errors), then for every run
  its benchmark's tables, and, with several runs of a benchmark, comparison tables (one
  column per run, e.g. delta=1 vs V2PE);
* `report.json`: every aggregate, machine-readable (`format` "v2pe-report/1"): `labels`
  (MM-NIAH length / depth bin names), `runs` [{label, path, benchmark, model, delta, source
  ("v2pe" | "official"), scorer_source, samples, errors, numbers}] with `numbers` the
  benchmark's numbers function's result (MM-NIAH: per task `scores` per length bin, `cells`
  length x depth, `mean`, and per split `overall` per length bin, Text / Image / Avg;
  MileBench: per dataset `score` and levels, `groups` T / S / NI / IR / Avg; Long-VQA: `tasks`
  {task: {group: score}}, `task_avg`, `group_avg`, `avg`; the other benchmarks' `datasets` and
  `headline`), and `comparisons` {benchmark: {runs, rows}} where a benchmark has several runs.
  `summary.json` is the same file under its earlier name;
* PNGs (matplotlib, optional): `<run>/mmniah_heatmap_<task>.png` (length x depth),
  `<run>/mmniah_accuracy_vs_length.png`, `<run>/longvqa_accuracy_vs_length.png`, and
  `compare_mmniah_accuracy_vs_length.png` / `compare_longvqa_accuracy_vs_length.png` across runs.

Each benchmark's module (`v2pe.eval.benchmarks.<name>`) computes its numbers, tables and plots
with the official aggregation (its docstring says how); this module reads the runs, asks the
registry (`v2pe.eval.benchmarks.BENCHMARKS`) for each run's benchmark, and writes the files.
All scores are shown x100. A sample that failed (missing image, ...) counts as wrong.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from v2pe.errors import DataError
from v2pe.eval.benchmarks import BENCHMARKS, Benchmark
from v2pe.eval.report_format import fmt, pyplot, table
from v2pe.eval.runners.resumable import read_results, read_run_info


@dataclass
class Run:
    """One run folder: run.json and the result lines of each task."""

    path: Path
    info: dict
    tasks: dict[str, list[dict]]
    label: str = ""

    @property
    def benchmark(self) -> str:
        return self.info.get("benchmark", "?")

    @property
    def samples(self) -> int:
        return sum(len(r) for r in self.tasks.values())

    @property
    def errors(self) -> int:
        return sum(1 for records in self.tasks.values() for r in records if r.get("error"))

    @property
    def delta(self) -> str:
        """The delta setting, with the deltas actually used when it was automatic."""
        setting = self.info.get("delta")
        used = sorted({r["delta"] for records in self.tasks.values() for r in records if r.get("delta") is not None})
        if setting == "auto" and used:
            return "auto (" + ", ".join(_delta_text(d) for d in used) + ")"
        return _delta_text(setting)


def _delta_text(delta) -> str:
    if isinstance(delta, (int, float)) and 0 < delta < 1 and abs(1 / delta - round(1 / delta)) < 1e-9:
        return f"1/{round(1 / delta)}"
    return f"{delta:g}" if isinstance(delta, (int, float)) else str(delta)


def load_run(path: str | Path) -> Run:
    path = Path(path)
    info = read_run_info(path)
    names = list(dict.fromkeys(info.get("tasks", [])))
    names += [p.stem for p in sorted(path.glob("*.jsonl")) if p.stem not in names]
    tasks = {}
    for name in names:
        records = list(read_results(path / f"{name}.jsonl").values())
        if records:
            tasks[name] = records
    return Run(path, info, tasks, path.name)


# ----------------------------------------------------------------------------- numbers


def benchmark_of(run: Run) -> Benchmark:
    if run.benchmark not in BENCHMARKS:
        raise DataError(f"{run.path}: unknown benchmark {run.benchmark!r} in run.json")
    return BENCHMARKS[run.benchmark]


def run_numbers(run: Run) -> dict:
    benchmark = benchmark_of(run)
    if not run.tasks:
        return {}
    return benchmark.numbers(run)


def comparison_rows(benchmark: str, numbers: Sequence[dict]) -> tuple[list[str], list[list]]:
    """(row labels, values per run) of the headline numbers of runs of one benchmark: the
    benchmark's `comparison` rows (default: its `datasets` scores, then its `headline`), in
    first-appearance order, stably sorted by the rows' order key."""
    rows: dict[str, list] = {}
    order: dict[str, int] = {}
    hook = BENCHMARKS[benchmark].comparison or _default_comparison
    for i, n in enumerate(numbers):
        if not n:
            continue
        for row in hook(n):
            label, value = row[0], row[1]
            rows.setdefault(label, [None] * len(numbers))[i] = value
            order.setdefault(label, row[2] if len(row) > 2 else 0)
    labels = sorted(rows, key=lambda label: order[label])
    return labels, [rows[label] for label in labels]


def _default_comparison(numbers: dict) -> list[tuple[str, float | None]]:
    rows = [(name, d["score"]) for name, d in numbers["datasets"].items()]
    return rows + list(numbers.get("headline", {}).items())


# ----------------------------------------------------------------------------- plots and files


def run_plots(run: Run, numbers: dict, folder: Path) -> list[Path]:
    if not numbers or pyplot() is None:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    plots = benchmark_of(run).plots
    return plots(run, numbers, folder) if plots is not None else []


def run_files(run: Run, numbers: dict, folder: Path) -> list[Path]:
    """Files a benchmark's official evaluation writes besides scores (MMBench submission files)."""
    files = benchmark_of(run).files
    if files is None or not numbers:
        return []
    return files(run, numbers, folder)


def comparison_plots(runs: Sequence[Run], numbers: Sequence[dict], folder: Path) -> list[Path]:
    """Per benchmark with several runs (with results) and a `compare_plots` hook, its plots."""
    if pyplot() is None:
        return []
    paths = []
    for name, benchmark in BENCHMARKS.items():
        members = [(r, n) for r, n in zip(runs, numbers) if r.benchmark == name and n]
        if benchmark.compare_plots is not None and len(members) > 1:
            paths += benchmark.compare_plots(members, folder)
    return paths


# ----------------------------------------------------------------------------- report


REPORT_FORMAT = "v2pe-report/1"


def _unique_labels(runs: Sequence[Run]) -> None:
    seen: dict[str, int] = {}
    for run in runs:
        label = run.label or run.path.name or "run"
        seen[label] = seen.get(label, 0) + 1
        run.label = label if seen[label] == 1 else f"{label}-{seen[label]}"


def write_report(run_dirs: Sequence[str | Path | Run], out_dir: str | Path,
                 official: Sequence[tuple[str, str | Path]] = (), scorer_source: str | None = None) -> dict:
    """Tables (`report.md`), every aggregate (`report.json`, also as `summary.json`) and plots of
    the runs; returns the report with the written paths under "files".

    `run_dirs`: v2pe run folders (or loaded `Run`s); `official`: (benchmark, path) pairs of the
    official scripts' result files (`official_outputs.load_official`, scored with
    `scorer_source`, default the runners' default), reported after the run folders."""
    runs = [p if isinstance(p, Run) else load_run(p) for p in run_dirs]
    if official:
        from v2pe.eval.official_outputs import load_official

        runs += [load_official(benchmark, path, **({"scorer_source": scorer_source} if scorer_source else {}))
                 for benchmark, path in official]
    if not runs:
        raise DataError("nothing to report: give run folders and/or --official BENCH PATH")
    _unique_labels(runs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    numbers = [run_numbers(run) for run in runs]
    files: list[Path] = []
    plots_available = pyplot() is not None

    lines = ["# V2PE evaluation report", ""]
    lines.append(table(["run", "benchmark", "model", "delta", "tasks", "samples", "errors"],
                        [[r.label, r.benchmark, f"`{r.info.get('model', '?')}`", r.delta, len(r.tasks), r.samples, r.errors] for r in runs]))
    lines.append("")
    if not plots_available:
        lines += ["(matplotlib is not installed: no plots; `pip install matplotlib`)", ""]

    benchmarks = list(dict.fromkeys(r.benchmark for r in runs))
    comparisons = {}
    for benchmark in benchmarks:
        members = [(r, n) for r, n in zip(runs, numbers) if r.benchmark == benchmark]
        if len(members) < 2:
            continue
        labels, values = comparison_rows(benchmark, [n for _, n in members])
        comparisons[benchmark] = {"runs": [r.label for r, _ in members], "rows": dict(zip(labels, values))}
        lines += [f"## Comparison: {benchmark}", ""]
        lines.append(table(["", *(f"{r.label} (delta {r.delta})" for r, _ in members)],
                            [[label, *(fmt(v) for v in row)] for label, row in zip(labels, values)]))
        lines.append("")
    compare_paths = comparison_plots(runs, numbers, out)
    files += compare_paths
    lines += [f"![{p.stem}]({p.name})" for p in compare_paths] + ([""] if compare_paths else [])

    for run, n in zip(runs, numbers):
        lines += [f"## {run.label}: {run.benchmark} (delta {run.delta})", "",
                  (f"Model `{run.info.get('model', '?')}`, scorer variant `{run.info.get('scorer_source', '?')}`, "
                   f"{run.samples} samples, {run.errors} with an error (counted as wrong)."), ""]
        if not n:
            lines += ["(no results yet)", ""]
            continue
        lines += [benchmark_of(run).markdown(n), ""]
        plot_paths = run_plots(run, n, out / run.label)
        files += plot_paths
        extra_files = run_files(run, n, out / run.label)
        files += extra_files
        lines += [f"Submission file: `{p.relative_to(out).as_posix()}`" for p in extra_files] + ([""] if extra_files else [])
        lines += [f"![{p.stem}]({p.relative_to(out).as_posix()})" for p in plot_paths] + ([""] if plot_paths else [])

    report = out / "report.md"
    report.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    summary = {
        "format": REPORT_FORMAT,
        "labels": {name: dict(benchmark.labels) for name, benchmark in BENCHMARKS.items() if benchmark.labels},
        "runs": [{"label": r.label, "path": str(r.path), "benchmark": r.benchmark, "model": r.info.get("model"),
                  "delta": r.info.get("delta"), "source": "official" if r.info.get("official") else "v2pe",
                  "scorer_source": r.info.get("scorer_source"), "samples": r.samples, "errors": r.errors, "numbers": n}
                 for r, n in zip(runs, numbers)],
        "comparisons": comparisons,
    }
    text = json.dumps(summary, indent=2, ensure_ascii=False) + "\n"
    (out / "report.json").write_text(text, encoding="utf-8")
    (out / "summary.json").write_text(text, encoding="utf-8")  # the earlier name, same content
    summary["files"] = [report, out / "report.json", out / "summary.json", *files]
    return summary
