"""What a benchmark module declares: one `Benchmark` with its hooks, read by the CLI, the runner
and the report (`v2pe.eval.benchmarks.BENCHMARKS`).

A benchmark module (`v2pe.eval.benchmarks.<name>`) holds everything about its benchmark: its
files and how they are read (`load_tasks`), prompts, tile and generation settings, scorer choice,
the numbers of `report.json` (`numbers`), its Markdown tables (`markdown`) and plots (`plots`),
the reader of the official scripts' result files where there is one (`read_official`), its
command-line help and options, and its official quirks in the module docstring. The run loop,
resuming, report writing and the per-item scorers stay generic (`runners.base`,
`runners.resumable`, `reports`, `scorers`).

Hook signatures (`Run` is `v2pe.eval.reports.Run`: `.tasks` {task: result lines}, `.label`,
`.info`, `.benchmark`):

* `load_tasks(data, processor=None, tasks=None, limit=None, **options) -> list[Task]`;
* `numbers(run) -> dict`: every aggregate of one run (called only for runs with results);
* `markdown(numbers) -> str`: the run's section of `report.md`;
* `comparison(numbers) -> [(label, value)] or [(label, value, order)]`: the rows of the
  comparison table of several runs (first appearance order, stably sorted by `order`, default
  0); None: the `datasets` scores then the `headline` numbers;
* `plots(run, numbers, folder) -> [png paths]`, `compare_plots([(run, numbers)], folder) -> [png
  paths]` (matplotlib is there when they are called);
* `files(run, numbers, folder) -> [paths]`: files the official evaluation writes beside scores
  (MMBench's submission file);
* `read_official(path, scorer_source) -> ({task: result lines}, model name or None)`: the
  official scripts' result files, scored again with v2pe's official scorers;
* `labels`: fixed names for `report.json["labels"][name]` (MM-NIAH's bins).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Option:
    """A command-line option of `v2pe eval BENCH` beyond the common ones: `flag` and the
    `argparse.add_argument` keywords (`default` None: the benchmark's official setting). Its
    value reaches `load_tasks` as the keyword `dest`; `informative` options (paths) may change
    when a run is resumed, the others must match."""

    flag: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    informative: bool = False

    @property
    def dest(self) -> str:
        return self.kwargs.get("dest") or self.flag.lstrip("-").replace("-", "_")


#: `--image-root`, shared by the benchmarks whose files hold relative image paths.
IMAGE_ROOT = Option("--image-root", {"type": Path, "default": None, "help": "folder that relative image paths start from"},
                    informative=True)


@dataclass(frozen=True)
class Benchmark:
    """A benchmark: its CLI name, how to read its files, and how to report its runs (module doc)."""

    name: str
    load_tasks: Callable[..., list]
    description: str
    help: str  # one line for `v2pe eval --help`: what it runs and the files it reads
    tasks_help: str  # what `--tasks` takes
    numbers: Callable[[Any], dict]
    markdown: Callable[[dict], str]
    options: tuple[Option, ...] = ()
    comparison: Callable[[dict], list] | None = None
    plots: Callable[[Any, dict, Any], list] | None = None
    compare_plots: Callable[[list, Any], list] | None = None
    files: Callable[[Any, dict, Any], list] | None = None
    read_official: Callable[[Any, str], tuple[dict, str | None]] | None = None
    official_help: str = ""  # the result files `--official NAME PATH` reads
    aliases: tuple[str, ...] = ()  # other spellings accepted by `--official`
    labels: Mapping[str, Any] | None = None
