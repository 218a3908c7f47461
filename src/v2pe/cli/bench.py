"""`v2pe bench NAME [ARGS ...]`: run one of the checkout's benchmarks (`python -m benchmarks.NAME`).

The benchmarks live beside the package in a source checkout (`benchmarks/`), not in the wheel:
they measure this code against baselines and write `benchmarks/results/NAME.json`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from v2pe.errors import ConfigError

BENCHMARKS = ("positions", "model_overhead", "data", "train", "inference", "long_prefill", "eval")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="run a benchmark from the source checkout: " + ", ".join(BENCHMARKS),
        description="Runs `python -m benchmarks.NAME ARGS` from the source checkout; `v2pe bench NAME --help` lists its options.",
    )
    parser.add_argument("name", choices=BENCHMARKS)
    parser.add_argument("arguments", nargs=argparse.REMAINDER, help="everything after NAME is passed to the benchmark")
    parser.set_defaults(handler=run)


def checkout_root() -> Path:
    """The folder holding `benchmarks/` for an editable install (src layout) or a run from the checkout."""
    for root in (Path(__file__).resolve().parents[3], Path.cwd()):
        if (root / "benchmarks" / "__init__.py").is_file():
            return root
    raise ConfigError("v2pe bench needs a source checkout: no benchmarks/ folder beside the installed package or in the current folder")


def run(args) -> int:
    command = [sys.executable, "-m", f"benchmarks.{args.name}", *args.arguments]
    return subprocess.run(command, cwd=checkout_root()).returncode
