"""The benchmarks run end to end through `v2pe bench` at a tiny size and write their ratios.

`data` is left out: its packing-efficiency set alone builds 60 samples of up to 32K tokens.

Figures are not asserted (they are machine-dependent and belong in benchmarks/RESULTS.md);
what is checked is that each command still runs and reports the baseline comparison.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

RUNS = {
    "positions": (["--lengths", "4096", "--repeats", "1"], "slowdown_vs_arange"),
    "model_overhead": (["--lengths", "256", "--hidden", "64", "--layers", "1", "--repeats", "1"], "v2pe_overhead_pct"),
    "inference": (["--lengths", "256", "--new-tokens", "2", "--hidden", "64", "--layers", "1", "--repeats", "1"], "prefill_ratio"),
    "train": (["--lengths", "512", "--repeats", "1", "--sequence-parallel", "2"], "speed_vs_plain"),
    "long_prefill": (["--lengths", "1024", "--chunk", "512"], "tokens_per_s"),
    "eval": (["--samples", "8", "--batch-sizes", "1", "4"], "speedup"),
}


@pytest.mark.parametrize("name", sorted(RUNS))
def test_benchmark_runs_and_writes_its_ratio(name, tmp_path):
    arguments, ratio = RUNS[name]
    command = [sys.executable, "-m", "v2pe.cli", "bench", name, *arguments]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env={**os.environ, "V2PE_BENCH_RESULTS": str(tmp_path)})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / f"{name}.json").read_text())
    assert result["machine"]["torch"]
    assert result["rows"] and all(row[ratio] is not None for row in result["rows"])
    if name == "train":
        assert {row["sequence_parallel"] for row in result["rows"]} == {1, 2}
        assert {row["checkpointing"] for row in result["rows"]} == {False, True}
