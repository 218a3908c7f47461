"""`v2pe eval report --official BENCH PATH`: the official scripts' result files, scored again and
reported as a v2pe run; report.json holds every aggregate. Expected values are computed by hand
from the official rules (calculate_scores.py, evaluate.py, Long-VQA calculate_scores.py)."""

from __future__ import annotations

import json

import pytest

from v2pe.cli import main


def write_jsonl(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def make_run(folder, benchmark, tasks):
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"benchmark": benchmark, "model": "m", "delta": 0.25, "tasks": list(tasks)}))
    for name, lines in tasks.items():
        write_jsonl(folder / f"{name}.jsonl", lines)
    return folder


# ----------------------------------------------------------------------------- the predictions
# (question_id, answer, response, context_length, placed_depth, hand score by the official is_correct)
MMNIAH = {
    "retrieval-text-val": [
        (0, "apple", "apple", 1500, 0.1, 1.0),
        (1, "apple", "banana", 1500, 0.1, 0.0),
        (2, "red", "red.", 5000, 1.0, 1.0),  # '.' stripped; depth 1.0 -> 0.99 (last depth bin)
        (3, "x", "x", 800, 0.5, 1.0),  # under 1K: dropped from the bins
    ],
    "counting-image-val": [
        (0, [1, 2], "[1, 3]", 2500, [0.2, 0.4], 0.5),  # partial credit 1/2; depth = mean 0.3
        (1, "[2, 2]", "```json\n[2, 2]\n```", 2500, 0.25, 1.0),  # answer stored as a JSON string: parsed
    ],
    "reasoning-image-val": [
        (0, 1, "B", 70000, 0.5, 1.0),  # letter b -> option 1; >= 64K bin
        (1, 0, "None", 70000, 0.5, 0.0),  # the official out-of-memory response
    ],
}


def official_mmniah(root):
    for task, rows in MMNIAH.items():
        write_jsonl(root / f"InternVL2-2B_{task}.jsonl", [
            {"question_id": q, "question": "Q?", "answer": a, "response": r, "context_length": n, "placed_depth": d}
            for q, a, r, n, d, _ in rows])
    # per-rank partial files of the official run: not read
    write_jsonl(root / "temp_InternVL2-2B_retrieval-text-val" / "0_1_InternVL2-2B_retrieval-text-val.jsonl", [{"bad": 1}])
    return root


def v2pe_mmniah(folder):
    return make_run(folder, "mm-niah", {task: [
        {"id": q, "context_length": n, "placed_depth": d, "prediction": None if r == "None" else r,
         "answer": json.loads(a) if isinstance(a, str) and a.startswith("[") else a, "score": s,
         "error": "out of memory" if r == "None" else None, "delta": 0.25}
        for q, a, r, n, d, s in rows] for task, rows in MMNIAH.items()})


# dataset: (question_type, choice_list, [(sample_id, gt, prediction, n_images, level, hand score)])
MILEBENCH = {
    "ObjectShuffle": ("multi-choice", ["cat", "dog", "bird"], [
        (0, "dog", "B", 2, "Few", 1), (1, "dog", "A", 2, "Few", 0), (2, "dog", "C", 3, "Few", 0), (3, "dog", "B", 3, "Few", 1)]),
    "ALFRED": ("open-ended", None, [  # ROUGE-L F: identical text 1, empty prediction 0
        (0, "open the door", "open the door", 8, "Medium", 1.0), (1, "open the door", "", 40, "Many", 0.0)]),
    "TextNeedleInAHaystack": ("open-ended", None, [  # gt must be a whitespace token of the prediction
        (0, "1234", "the code is 1234", 2, "Few", 1), (1, "1234", "12345", 2, "Few", 0)]),
    "MMCoQA": ("open-ended", None, [(5, "paris", "It is Paris.", 2, "Few", 1)]),  # substring
}


def official_milebench(root):
    for dataset, (question_type, choices, rows) in MILEBENCH.items():
        folder = root / dataset
        folder.mkdir(parents=True)
        data = []
        for sample_id, gt, _, n, level, _ in rows:
            instance = {"context": "".join(f"{{image#{k}}}" for k in range(1, n + 1)) + " question",
                        "images_path": [f"{sample_id}_{k}.jpg" for k in range(n)]}
            if choices:
                instance["choice_list"] = choices
            data.append({"sample_id": sample_id, "task_instruction_id": 0, "task_instance": instance, "response": gt,
                         "image_quantity_level": level})
        (folder / f"{dataset}.json").write_text(json.dumps({"meta_data": {"task_instruction": ["Look."], "question_type": question_type},
                                                            "data": data}))
        (folder / "pred.json").write_text(json.dumps([
            {"sample_id": sample_id, "question": "Look.\n<image>...", "gt_response": gt,
             "gen_kwargs": {"do_sample": False, "num_beams": 1, "max_new_tokens": 32}, "pred_response": pred}
            for sample_id, gt, pred, *_ in rows], indent=4))
    return root


def v2pe_milebench(folder):
    return make_run(folder, "milebench", {dataset: [
        {"id": i, "sample_id": i, "prediction": p, "answer": gt, "score": s, "image_quantity_level": level, "num_images": n,
         "placeholders": n, "error": None}
        for i, gt, p, n, level, s in rows] for dataset, (_, _, rows) in MILEBENCH.items()})


# (group folder, task, [(id, an, pr)])
LONGVQA = [
    ("long_vqa_32k", "chartqa", [(0, "12", "12"), (1, "12", "5")]),  # relaxed accuracy: 1, 0
    ("long_vqa_40k", "chartqa", [(0, "12", "12.3")]),  # within 5%: 1
    ("long_vqa_32k", "deepform", [(0, "ACME", "acme"), (1, "X", "Y")]),  # DUE F1 (lowercased): P = R = 1/2
]
GROUPS = {"long_vqa_32k": "16_32", "long_vqa_40k": "32_40"}


def official_longvqa(root):
    for folder, task, rows in LONGVQA:
        write_jsonl(root / folder / f"result_{task}.jsonl", [{"id": i, "an": an, "pr": pr, "le": 20000} for i, an, pr in rows])
    return root


def v2pe_longvqa(folder):
    return make_run(folder, "long-vqa", {f"{task}_{GROUPS[g]}": [
        {"id": i, "prediction": pr, "answer": an, "score": 0, "group": GROUPS[g], "extra": {"task": task}, "context_length": 20000}
        for i, an, pr in rows] for g, task, rows in LONGVQA})


def report(tmp_path, *args):
    out = tmp_path / "report"
    assert main(["eval", "report", *map(str, args), "--out", str(out)]) == 0
    return json.loads((out / "report.json").read_text()), out


def assert_same(a, b, where="numbers"):
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), where
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, abs=1e-6), where  # ROUGE-L F of identical texts is 1 - 5e-9 (rouge's epsilon)
    else:
        assert a == b, where


# ----------------------------------------------------------------------------- tests


def test_official_mmniah_outputs(tmp_path):
    data, out = report(tmp_path, "--official", "mm-niah", official_mmniah(tmp_path / "outputs"))
    (run,) = data["runs"]
    assert run["source"] == "official" and run["benchmark"] == "mm-niah" and run["model"] == "InternVL2-2B"
    assert run["label"] == "official-outputs" and run["samples"] == 8 and run["errors"] == 1
    tasks = run["numbers"]["tasks"]
    text = tasks["retrieval-text-val"]
    # 1-2K: depth cell 0 = (1 + 0) / 2, the other 4 cells empty = 0 -> 0.5 / 5; 4-8K: cell 4 = 1 -> 1 / 5
    assert text["scores"][0] == pytest.approx(10.0) and text["scores"][2] == pytest.approx(20.0)
    assert text["sample_numbers"] == [2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0] and text["dropped_under_1k"] == 1
    assert text["cells"][2][4] == pytest.approx(100.0) and text["mean"] == pytest.approx(15.0)
    counting = tasks["counting-image-val"]  # 2-4K, depth bin 1: (0.5 + 1) / 2 -> 0.75 / 5
    assert counting["scores"][1] == pytest.approx(15.0) and counting["cells"][1][1] == pytest.approx(75.0)
    reasoning = tasks["reasoning-image-val"]  # >= 64K, depth bin 2: (1 + 0) / 2 -> 0.5 / 5
    assert reasoning["scores"][10] == pytest.approx(10.0) and reasoning["errors"] == 1
    val = run["numbers"]["splits"]["val"]
    assert val["overall"] is None  # only with the 6 tasks, as calculate_scores.py
    assert val["Text"] == pytest.approx(15.0) and val["Image"] == pytest.approx(12.5) and val["Avg"] == pytest.approx(13.75)
    assert data["labels"]["mm-niah"]["length_bins"][0] == "1-2K" and data["format"] == "v2pe-report/1"
    markdown = (out / "report.md").read_text()
    assert "## official-outputs: mm-niah (delta official)" in markdown
    assert "| retrieval-text-val | 10.0 | - | 20.0 |" in markdown
    assert json.loads((out / "summary.json").read_text()) == data


def test_official_milebench_outputs(tmp_path):
    data, out = report(tmp_path, "--official", "milebench", official_milebench(tmp_path / "milebench_out"))
    numbers = data["runs"][0]["numbers"]
    datasets = numbers["datasets"]
    assert datasets["ObjectShuffle"]["score"] == pytest.approx(50.0)
    assert datasets["ALFRED"]["score"] == pytest.approx(50.0)
    assert datasets["ALFRED"]["levels"] == {"Few": 0, "Medium": pytest.approx(100.0), "Many": pytest.approx(0.0)}
    assert datasets["TextNeedleInAHaystack"]["score"] == pytest.approx(50.0)
    assert datasets["MMCoQA"]["score"] == pytest.approx(100.0)
    # T = ObjectShuffle; S = mean(ALFRED, MMCoQA); NI = TextNeedle; IR: no GPR1200; Avg = mean(T, S, NI)
    assert numbers["groups"] == {"T": pytest.approx(50.0), "S": pytest.approx(75.0), "NI": pytest.approx(50.0),
                                 "IR": None, "Avg": pytest.approx(175 / 3)}
    assert "| 50.0 | 75.0 | 50.0 | - | 58.3 |" in (out / "report.md").read_text()


def test_official_longvqa_outputs(tmp_path):
    data, _ = report(tmp_path, "--official", "long-vqa", official_longvqa(tmp_path / "lv_out"))
    numbers = data["runs"][0]["numbers"]
    assert numbers["tasks"] == {"chartqa": {"16_32": pytest.approx(50.0), "32_40": pytest.approx(100.0)},
                                "deepform": {"16_32": pytest.approx(50.0)}}
    assert numbers["task_avg"] == {"chartqa": pytest.approx(75.0), "deepform": pytest.approx(50.0)}
    assert numbers["group_avg"] == {"16_32": pytest.approx(50.0), "32_40": pytest.approx(100.0)}
    assert numbers["avg"] == pytest.approx(200 / 3) and numbers["groups"] == ["16_32", "32_40"]


def test_longvqa_file_name_with_group(tmp_path):
    write_jsonl(tmp_path / "lv" / "result_val_long_vqa_chartqa_48_56.jsonl", [{"id": 0, "an": "3", "pr": "3", "le": 50000}])
    data, _ = report(tmp_path, "--official", "longvqa", tmp_path / "lv")
    assert data["runs"][0]["numbers"]["tasks"] == {"chartqa": {"48_56": pytest.approx(100.0)}}


@pytest.mark.parametrize("bench, official, v2pe", [
    ("mm-niah", official_mmniah, v2pe_mmniah),
    ("milebench", official_milebench, v2pe_milebench),
    ("long-vqa", official_longvqa, v2pe_longvqa),
])
def test_official_and_v2pe_runs_of_the_same_predictions_agree(tmp_path, bench, official, v2pe):
    run_dir = v2pe(tmp_path / "v2pe")
    data, out = report(tmp_path, run_dir, "--official", bench, official(tmp_path / "official"))
    mine, theirs = data["runs"]
    assert (mine["source"], theirs["source"]) == ("v2pe", "official")
    assert_same(mine["numbers"], theirs["numbers"])
    comparison = data["comparisons"][bench]
    assert comparison["runs"] == ["v2pe", "official-official"]
    for label, (a, b) in comparison["rows"].items():
        assert a == pytest.approx(b), label
    assert f"## Comparison: {bench}" in (out / "report.md").read_text()


def test_several_official_runs_and_v2pe_runs_of_other_benchmarks(tmp_path):
    data, _ = report(tmp_path, v2pe_longvqa(tmp_path / "lv"), "--official", "mm-niah", official_mmniah(tmp_path / "a"),
                     "--official", "milebench", official_milebench(tmp_path / "b"))
    assert [(r["label"], r["benchmark"]) for r in data["runs"]] == [("lv", "long-vqa"), ("official-a", "mm-niah"),
                                                                     ("official-b", "milebench")]
    assert data["comparisons"] == {}


def test_report_json_for_v2pe_runs(tmp_path):
    data, out = report(tmp_path, v2pe_milebench(tmp_path / "mile"))
    (run,) = data["runs"]
    assert run["source"] == "v2pe" and run["numbers"]["groups"]["S"] == pytest.approx(75.0)
    assert (out / "summary.json").is_file()


def test_official_errors(tmp_path, capsys):
    out = str(tmp_path / "r")
    assert main(["eval", "report", "--official", "nope", str(tmp_path), "--out", out]) == 2
    assert "unknown benchmark 'nope'" in capsys.readouterr().err
    root = official_milebench(tmp_path / "m")
    (root / "ALFRED" / "ALFRED.json").unlink()
    assert main(["eval", "report", "--official", "milebench", str(root), "--out", out]) == 2
    assert "ALFRED.json must be beside it" in capsys.readouterr().err
    assert main(["eval", "report", "--official", "mm-niah", str(tmp_path / "missing"), "--out", out]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["eval", "report", "--out", out]) == 2
    assert "--official BENCH PATH" in capsys.readouterr().err
