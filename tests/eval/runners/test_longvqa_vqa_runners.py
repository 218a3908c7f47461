"""Long-VQA and general VQA runners: file formats, limits, scoring, end to end, bad input."""

from __future__ import annotations

import json

import pytest

from tests.eval.runners.conftest import longvqa_rows, write_jsonl
from v2pe.errors import DataError
from v2pe.eval.runners import load_tasks, run_benchmark


def read_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


# ----------------------------------------------------------------------------- Long-VQA


def test_longvqa_files_tasks_and_limits(longvqa_data, scripted_chat):
    tasks = {t.name: t for t in load_tasks("long-vqa", longvqa_data, scripted_chat.processor)}
    assert sorted(tasks) == ["chartqa_16_32", "deepform_16_32"]
    chart = tasks["chartqa_16_32"].samples[0]
    assert chart.prompt == "<image> and <image>: how many apples? (0)" and chart.answer == "12"
    assert (chart.max_tiles, chart.max_new_tokens, chart.scorer) == (12, 32, "relaxed_accuracy_longvqa")
    assert all(p.is_file() for p in chart.images)  # relative paths found under the data folder
    assert chart.fields == {"context_length": 17000, "group": "16_32", "metric": "RACC"}
    assert tasks["deepform_16_32"].samples[0].scorer == "due_f1"


def test_longvqa_scores_per_task_metric(longvqa_data, scripted_chat, tmp_path):
    scripted_chat.script = lambda prompt: "12 apples." if "(0)" in prompt else "acme" if "(1)" in prompt else "13"
    summary = run_benchmark("long-vqa", scripted_chat, longvqa_data, tmp_path / "run")
    chart = [line["score"] for line in read_lines(tmp_path / "run" / "chartqa_16_32.jsonl")]
    assert chart == [100.0, 0.0, 0.0]  # rectify drops the unit word; 13 is not within 5% of 12
    deepform = read_lines(tmp_path / "run" / "deepform_16_32.jsonl")
    assert [line["score"] for line in deepform] == [0.0, 100.0, 0.0]  # DUE F1 lowercases
    assert deepform[1]["extra"]["annotations"][0]["pr"] == "acme"
    assert summary["chartqa_16_32"]["n"] == 3


def test_longvqa_end_to_end_on_the_tiny_model(longvqa_data, tiny_chat, tmp_path):
    summary = run_benchmark("long-vqa", tiny_chat, longvqa_data, tmp_path / "run", tasks=["chartqa"], limit=2, max_tiles=2)
    assert list(summary) == ["chartqa_16_32"]
    lines = read_lines(tmp_path / "run" / "chartqa_16_32.jsonl")
    assert len(lines) == 2 and all(isinstance(line["prediction"], str) and line["group"] == "16_32" for line in lines)


def test_longvqa_bad_files_fail_before_generation(longvqa_data, scripted_chat, tmp_path):
    path = longvqa_data / "long_vqa_32k" / "val_long_vqa_chartqa_16_32.jsonl"
    rows = longvqa_rows(longvqa_data / "images", "chartqa")
    rows[2]["image"] = rows[2]["image"][:1]
    write_jsonl(path, rows)
    scripted_chat.script = lambda prompt: pytest.fail("no generation may start")
    with pytest.raises(DataError, match=f"{path}:3: 2 `<image>` placeholders in the question but 1 images"):
        run_benchmark("long-vqa", scripted_chat, longvqa_data, tmp_path / "run")
    del rows[2]["metadata"]
    write_jsonl(path, rows)
    with pytest.raises(DataError, match=f"{path}:3: missing field 'metadata'"):
        run_benchmark("long-vqa", scripted_chat, longvqa_data, tmp_path / "run")
    write_jsonl(longvqa_data / "val_long_vqa_unknowntask_1_2.jsonl", [])
    with pytest.raises(DataError, match="unknown Long-VQA task 'unknowntask'"):
        load_tasks("long-vqa", longvqa_data, scripted_chat.processor)


def test_longvqa_answer_of_unexpected_type_is_counted_wrong(longvqa_data, scripted_chat, tmp_path):
    path = longvqa_data / "long_vqa_32k" / "val_long_vqa_chartqa_16_32.jsonl"
    rows = longvqa_rows(longvqa_data / "images", "chartqa")
    rows[0]["conversations"][1]["value"] = {"value": 12}
    write_jsonl(path, rows)
    scripted_chat.script = lambda prompt: "12"
    run_benchmark("long-vqa", scripted_chat, longvqa_data, tmp_path / "run", tasks=["chartqa"])
    lines = read_lines(tmp_path / "run" / "chartqa_16_32.jsonl")
    assert lines[0]["score"] == 0 and "answer" in lines[0]["error"]
    assert [line["score"] for line in lines[1:]] == [100.0, 100.0]


# ----------------------------------------------------------------------------- general VQA


def test_vqa_prompts_answers_and_limits(vqa_data, scripted_chat):
    tasks = {t.name: t for t in load_tasks("vqa", vqa_data, scripted_chat.processor)}
    assert sorted(tasks) == ["chartqa_test_human", "textvqa_val"]
    text = tasks["textvqa_val"].samples[0]
    assert text.prompt == "What is written 0? Answer the question using a single word or phrase."
    assert text.answer == ["stop"] * 10  # from the VQA-format annotation file
    assert (text.max_new_tokens, text.max_tiles, text.generate_kwargs) == (10, 6, {"min_new_tokens": 1})
    chart = tasks["chartqa_test_human"].samples[0]
    assert (chart.max_new_tokens, chart.max_tiles, chart.scorer) == (100, 12, "relaxed_accuracy_vqa")


def test_vqa_scores(vqa_data, scripted_chat, tmp_path):
    scripted_chat.script = lambda prompt: "Stop" if "written" in prompt else "43"
    summary = run_benchmark("vqa", scripted_chat, vqa_data, tmp_path / "run")
    assert summary["textvqa_val"]["mean"] == 1.0
    assert summary["chartqa_test_human"]["mean"] == 1.0  # 43 within 5% of 42
    images = [call["images"][0] for call in scripted_chat.calls]
    assert images[0].endswith("data/textvqa/train_images/0.png") and images[-1].endswith("data/chartqa/test/1.png")


def test_vqa_end_to_end_on_the_tiny_model(vqa_data, tiny_chat, tmp_path):
    summary = run_benchmark("vqa", tiny_chat, vqa_data, tmp_path / "run", tasks=["textvqa_val"], limit=2, max_tiles=2)
    assert summary["textvqa_val"]["n"] == 2
    line = read_lines(tmp_path / "run" / "textvqa_val.jsonl")[0]
    assert line["question_id"] == 100 and line["new_tokens"] >= 1 and line["answer"] == ["stop"] * 10


def test_vqa_question_without_answers_fails_before_generation(vqa_data, scripted_chat, tmp_path):
    (vqa_data / "textvqa" / "textvqa_val_annotations.json").write_text(json.dumps({"annotations": []}))
    with pytest.raises(DataError, match="textvqa_val.jsonl:1: question_id 100 has no answers"):
        run_benchmark("vqa", scripted_chat, vqa_data, tmp_path / "run")
    assert scripted_chat.calls == []
