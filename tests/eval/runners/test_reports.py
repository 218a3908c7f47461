"""Reports: the right numbers from hand-made result files, Markdown tables, PNG plots."""

from __future__ import annotations

import json

import pytest

from v2pe.eval.reports import load_run, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_run(folder, benchmark, tasks, delta=1.0):
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"benchmark": benchmark, "model": "m", "delta": delta, "tasks": list(tasks)}))
    for name, lines in tasks.items():
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return folder


def niah(i, length, depth, score, error=None):
    return {"id": i, "context_length": length, "placed_depth": depth, "score": score, "error": error, "delta": 0.25}


@pytest.fixture
def runs(tmp_path):
    retrieval_text = [
        niah(0, 1500, 0.1, 1.0), niah(1, 1500, 0.05, 0.5), niah(2, 1500, 0.5, 0.0, error="image file not found: x.png"),
        niah(3, 5000, 0.9, 1.0), niah(4, 500, 0.3, 1.0),  # < 1K: dropped
        niah(5, 70000, 1.0, 1.0),  # >= 64K, depth 1.0 counts as 0.99
        niah(2, 1500, 0.5, 0.0),  # a re-run of id 2 (--retry-errors): the last line wins
    ]
    others = {f"{t}-val": [niah(0, 1500, [0.1, 0.3], 1.0)]
              for t in ("retrieval-image", "counting-text", "counting-image", "reasoning-text", "reasoning-image")}
    mmniah = make_run(tmp_path / "v2pe", "mm-niah", {"retrieval-text-val": retrieval_text, **others}, delta="auto")
    baseline = make_run(tmp_path / "delta1", "mm-niah", {"retrieval-text-val": [niah(0, 1500, 0.1, 0.0)]})
    mile = make_run(tmp_path / "mile", "milebench", {
        "ObjectShuffle": [{"id": i, "score": s, "image_quantity_level": "Few"} for i, s in enumerate([1, 0, 1, 1])],
        "ALFRED": [{"id": 0, "score": 0.5, "num_images": 8}, {"id": 1, "score": 0.3, "num_images": 40}],
        "TextNeedleInAHaystack": [{"id": 0, "score": 1, "num_images": 2}, {"id": 1, "score": 0, "num_images": 2}],
        "GPR1200": [{"id": 0, "score": 1, "num_images": 2}],
    })
    def lv(i, pr, an, group):
        return {"id": i, "prediction": pr, "answer": an, "score": 0, "group": group, "extra": {"task": "x"}}
    longvqa = make_run(tmp_path / "lv", "long-vqa", {
        "chartqa_16_32": [{**lv(0, "12", "12", "16_32"), "extra": {"task": "chartqa"}}, {**lv(1, "5", "12", "16_32"), "extra": {"task": "chartqa"}}],
        "chartqa_32_40": [{**lv(0, "12", "12", "32_40"), "extra": {"task": "chartqa"}}],
        "deepform_16_32": [{**lv(0, "acme", "ACME", "16_32"), "extra": {"task": "deepform"}},
                           {**lv(1, None, "X", "16_32"), "extra": {"task": "deepform"}, "error": "out of memory"}],
    })
    return {"mmniah": mmniah, "baseline": baseline, "mile": mile, "longvqa": longvqa}


def test_mmniah_numbers_follow_the_official_aggregation(runs, tmp_path):
    summary = write_report([runs["mmniah"]], tmp_path / "report")
    numbers = summary["runs"][0]["numbers"]
    task = numbers["tasks"]["retrieval-text-val"]
    # 1-2K: depth cell 0 = (1 + 0.5) / 2, depth cell 2 = 0, others empty -> (0.75 + 0) / 5
    assert task["scores"][0] == pytest.approx(15.0)
    assert task["scores"][2] == pytest.approx(20.0) and task["scores"][10] == pytest.approx(20.0)
    assert task["scores"][1] == 0.0 and task["sample_numbers"] == [3, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1]
    assert task["dropped_under_1k"] == 1 and task["errors"] == 0
    assert task["cells"][0][:3] == [pytest.approx(75.0), 0.0, 0.0] and task["cells"][10][4] == pytest.approx(100.0)
    assert task["mean"] == pytest.approx((15 + 20 + 20) / 3)
    val = numbers["splits"]["val"]
    assert val["overall"][0] == pytest.approx(100 * round((0.15 + 5 * 0.2) / 6, 6))  # official: 6 tasks, rounded
    assert val["overall"][2] == pytest.approx(100 * round(0.2 / 6, 6))
    assert val["Text"] == pytest.approx(((15 + 20 + 20) / 3 + 20 + 20) / 3) and val["Image"] == pytest.approx(20.0)
    report = (tmp_path / "report" / "report.md").read_text()
    assert "| retrieval-text-val | 15.0 | - | 20.0 | - | - | - | - | - | - | - | 20.0 | 18.3 | 7 |" not in report  # 6 ids
    assert "| retrieval-text-val | 15.0 | - | 20.0 | - | - | - | - | - | - | - | 20.0 | 18.3 | 6 |" in report
    assert "| **overall val** | 19.2 | 0.0 | 3.3 |" in report
    assert "| val | 19.4 | 20.0 | 19.7 |" in report
    assert "| 1-2K | 75.0 | - | 0.0 | - | - |" in report


def test_milebench_and_longvqa_numbers(runs, tmp_path):
    summary = write_report([runs["mile"], runs["longvqa"]], tmp_path / "report")
    mile, longvqa = (run["numbers"] for run in summary["runs"])
    assert mile["datasets"]["ObjectShuffle"]["score"] == pytest.approx(75.0)
    assert mile["datasets"]["ALFRED"]["levels"] == {"Few": 0, "Medium": pytest.approx(50.0), "Many": pytest.approx(30.0)}
    assert mile["groups"] == {"T": pytest.approx(75.0), "S": pytest.approx(40.0), "NI": pytest.approx(50.0),
                              "IR": pytest.approx(100.0), "Avg": pytest.approx(55.0)}
    assert longvqa["tasks"]["chartqa"] == {"16_32": pytest.approx(50.0), "32_40": pytest.approx(100.0)}
    # DUE F1 pooled over the task: the failed sample predicts "" (wrong): P = R = 1/2
    assert longvqa["tasks"]["deepform"]["16_32"] == pytest.approx(50.0)
    assert longvqa["group_avg"]["16_32"] == pytest.approx(50.0) and longvqa["avg"] == pytest.approx(200 / 3)
    report = (tmp_path / "report" / "report.md").read_text()
    assert "| T | S | NI | IR | Avg |" in report and "| 75.0 | 40.0 | 50.0 | 100.0 | 55.0 |" in report
    assert "| chartqa | 50.0 | 100.0 | 75.0 |" in report and "16-32K" in report


def test_comparison_of_runs_and_plots(runs, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "report"
    summary = write_report([runs["baseline"], runs["mmniah"], runs["longvqa"]], out)
    comparison = summary["comparisons"]["mm-niah"]
    assert comparison["runs"] == ["delta1", "v2pe"]
    assert comparison["rows"]["retrieval-text-val"] == [0.0, pytest.approx(55 / 3)]
    report = (out / "report.md").read_text()
    assert "## Comparison: mm-niah" in report and "| delta1 (delta 1) | v2pe (delta auto (1/4)) |" in report.replace("|  |", "|")
    pngs = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert "compare_mmniah_accuracy_vs_length.png" in pngs
    assert "v2pe/mmniah_heatmap_retrieval-text-val.png" in pngs and "v2pe/mmniah_accuracy_vs_length.png" in pngs
    assert "lv/longvqa_accuracy_vs_length.png" in pngs
    for name in pngs:
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000
        assert f"({name})" in report  # every plot is linked from the report


def test_load_run_keeps_the_last_line_per_id(runs):
    run = load_run(runs["mmniah"])
    assert len(run.tasks["retrieval-text-val"]) == 6 and run.errors == 0
    assert run.delta == "auto (1/4)"


def test_report_cli(runs, tmp_path, capsys):
    from v2pe.cli import main

    assert main(["eval", "report", str(runs["mile"]), "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "report.md").is_file() and (tmp_path / "r" / "summary.json").is_file()
    assert main(["eval", "report", str(tmp_path / "nothing"), "--out", str(tmp_path / "r")]) == 2
    assert "run.json is missing" in capsys.readouterr().err
