"""One registry of benchmarks, read by the CLI, the runner and the report: every registered
benchmark is complete, and a benchmark added to the registry alone is run and reported."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from v2pe.eval import benchmarks
from v2pe.eval.benchmarks import BENCHMARKS, Benchmark, Option, get_benchmark
from v2pe.eval.runners.base import Sample, Task


def test_every_benchmark_module_is_registered_and_complete():
    assert list(BENCHMARKS) == ["mm-niah", "milebench", "long-vqa", "vqa", "mvbench", "videomme", "scienceqa", "pope",
                                "mmbench", "mmmu", "seed"]
    for name, benchmark in BENCHMARKS.items():
        assert benchmark.name == name and benchmark.help and benchmark.tasks_help and benchmark.description
        assert callable(benchmark.load_tasks) and callable(benchmark.numbers) and callable(benchmark.markdown)
        assert sys.modules[benchmark.load_tasks.__module__].BENCHMARK is benchmark  # one module per benchmark
    assert {n for n, b in BENCHMARKS.items() if b.read_official} == {"mm-niah", "milebench", "long-vqa"}
    assert get_benchmark("mmniah", official=True).name == "mm-niah" and get_benchmark("LongVQA", official=True).name == "long-vqa"


def test_the_registry_imports_nothing_heavy():
    code = "import sys, v2pe.cli, v2pe.eval.benchmarks; v2pe.cli.build_parser(); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def _toy_tasks(data, processor=None, tasks=None, limit=None, shout=None, **_):
    text = (data / "q.txt").read_text()
    return [Task("only", data / "q.txt", [Sample(0, text.upper() if shout else text, [], "yes", "pope", 4, 1)])]


def _toy_numbers(run):
    return {"datasets": {name: {"score": 100.0 * sum(r["score"] for r in lines) / len(lines), "samples": len(lines), "errors": 0}
                         for name, lines in run.tasks.items()}, "headline": {"toy": 1.0}}


TOY = Benchmark("toy", _toy_tasks, "a toy benchmark", help="run the toy benchmark (DATA/q.txt)", tasks_help="the task only",
                numbers=_toy_numbers, markdown=lambda numbers: f"toy table {numbers['headline']['toy']}",
                options=(Option("--shout", {"action": "store_true", "default": None, "help": "upper-case the question"}),))


@pytest.fixture
def toy_registered(monkeypatch):
    monkeypatch.setitem(BENCHMARKS, "toy", TOY)
    return TOY


def test_a_benchmark_added_to_the_registry_alone_is_run_and_reported(toy_registered, tmp_path, scripted_chat):
    from v2pe.cli import build_parser, main
    from v2pe.eval.reports import write_report
    from v2pe.eval.runners import run_benchmark

    (tmp_path / "q.txt").write_text("is it a toy?")
    args = build_parser().parse_args(["eval", "toy", "--data", str(tmp_path), "--out", "o", "--shout"])
    assert args.benchmark == "toy" and args.shout is True
    assert main(["eval", "toy", "--data", str(tmp_path), "--out", str(tmp_path / "dry"), "--dry-run", "--shout"]) == 0
    assert json.loads((tmp_path / "dry" / "dry-run" / "only.jsonl").read_text())["prompt"] == "IS IT A TOY?"
    scripted_chat.script = lambda prompt: "Yes."
    run_benchmark("toy", scripted_chat, tmp_path, tmp_path / "run", shout=True)
    assert json.loads((tmp_path / "run" / "run.json").read_text())["settings"] == {"shout": True}
    report = write_report([tmp_path / "run", tmp_path / "run"], tmp_path / "report")
    assert report["runs"][0]["numbers"]["datasets"]["only"]["score"] == 100.0
    assert report["comparisons"]["toy"]["rows"] == {"only": [100.0, 100.0], "toy": [1.0, 1.0]}
    assert "toy table 1.0" in (tmp_path / "report" / "report.md").read_text()
    assert benchmarks.get_benchmark("toy") is TOY
