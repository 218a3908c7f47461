"""The benchmarks, one module each, in one registry that the CLI, the runner and the report read.

    from v2pe.eval.benchmarks import BENCHMARKS, get_benchmark
    BENCHMARKS["mm-niah"].load_tasks("data/MM-NIAH", tasks=["retrieval-text"])

Each module (`mmniah`, `milebench`, `longvqa`, `vqa`, `scienceqa`, `pope`, `mmbench`, `mmmu`,
`seed`, `mvbench`, `videomme`) defines `BENCHMARK`, a `base.Benchmark` holding everything about
its benchmark (files, prompts, settings, scorers, report numbers, tables, plots, official
outputs, CLI help; see `base`). Adding a benchmark: write its module and add it to `MODULES`.
Modules import nothing heavy at import time (no torch), so `v2pe --help` stays instant.
"""

from __future__ import annotations

from v2pe.errors import ConfigError
from v2pe.eval.benchmarks import longvqa, milebench, mmbench, mmmu, mmniah, mvbench, pope, scienceqa, seed, videomme, vqa
from v2pe.eval.benchmarks.base import Benchmark, Option

MODULES = (mmniah, milebench, longvqa, vqa, mvbench, videomme, scienceqa, pope, mmbench, mmmu, seed)
BENCHMARKS: dict[str, Benchmark] = {module.BENCHMARK.name: module.BENCHMARK for module in MODULES}

__all__ = ["BENCHMARKS", "Benchmark", "Option", "get_benchmark"]


def get_benchmark(name: str, official: bool = False) -> Benchmark:
    """The benchmark called `name` (or, with official=True, one of its aliases; case ignored);
    a ConfigError naming the choices otherwise."""
    wanted = name.lower() if official else name
    for benchmark in BENCHMARKS.values():
        if wanted == benchmark.name or official and wanted in benchmark.aliases:
            return benchmark
    raise ConfigError(f"unknown benchmark {name!r}; choose one of {', '.join(BENCHMARKS)}")
