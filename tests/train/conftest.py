"""Shared fixtures for the training tests: the tiny recipe, one-process reference runs, and one
multi-process launch (torchrun, 2 processes, gloo) that trains every distributed setup."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
TINY_RECIPE = HERE / "tiny.yaml"


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: multi-process or multi-run training tests (run by default)")


def needs_trainer():
    pytest.importorskip("accelerate", reason="the HF Trainer needs accelerate: pip install 'v2pe[train]'")


def needs_deepspeed():
    try:
        import deepspeed  # noqa: F401
    except ImportError:
        pytest.skip("DeepSpeed is not installed (pip install 'v2pe[deepspeed]'): ZeRO and Ulysses tests need it")


def torchrun(script: Path, *args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    """Launch `script` on 2 CPU processes with torchrun; fail with its output on error."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script), *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=HERE.parents[1])
    if done.returncode != 0:
        pytest.fail(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-8000:]}")
    return done


def train_tiny(output_dir: Path, **overrides):
    """One in-process run of the tiny recipe; returns the TrainResult."""
    needs_trainer()
    from v2pe.train import load_recipe, train

    config = load_recipe(TINY_RECIPE, {"train.output_dir": str(output_dir), **overrides})
    return train(config)


def losses(result) -> list[float]:
    return [entry["loss"] for entry in result.log_history if "loss" in entry]


@pytest.fixture(scope="session")
def reference_batch2(tmp_path_factory):
    """One process, 2 rows per step: the global batch of 2 processes x 1 row."""
    return train_tiny(tmp_path_factory.mktemp("ref2"), **{"train.per_device_batch_size": 2})


@pytest.fixture(scope="session")
def reference_batch1(tmp_path_factory):
    """One process, 1 row per step: the global batch of a 2-process sequence-parallel group."""
    return train_tiny(tmp_path_factory.mktemp("ref1"))


DIST_JOBS = {
    "ddp": {},
    "zero1": {"parallel.zero_stage": 1},
    "zero2": {"parallel.zero_stage": 2},
    "zero3": {"parallel.zero_stage": 3},
    "ulysses": {"parallel.sequence_parallel_size": 2},
}


def cpu_bf16() -> bool:
    from v2pe.train.config import _cpu_has_bf16

    return _cpu_has_bf16()


@pytest.fixture(scope="session")
def distributed_runs(tmp_path_factory):
    """Every distributed setup, trained in one 2-process launch (see dist_worker.py)."""
    needs_trainer()
    needs_deepspeed()
    root = tmp_path_factory.mktemp("dist")
    setups = dict(DIST_JOBS)
    if cpu_bf16():
        setups["zero2_bf16"] = {"parallel.zero_stage": 2, "train.precision": "bf16"}
    jobs = [{"name": name, "output_dir": str(root / name), "overrides": overrides} for name, overrides in setups.items()]
    (root / "jobs.json").write_text(json.dumps(jobs))
    torchrun(HERE / "dist_worker.py", str(root / "jobs.json"), str(root / "results.json"))
    return json.loads((root / "results.json").read_text())
