"""MM-NIAH runner: official prompts and limits, end to end on the tiny model, bad input."""

from __future__ import annotations

import json

import pytest

from tests.eval.runners.conftest import mmniah_rows, write_jsonl
from v2pe.errors import ConfigError, DataError
from v2pe.eval.runners import load_tasks, run_benchmark
from v2pe.eval.score_file import score_file


def read_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_prompts_follow_the_v2pe_get_input(mmniah_data, scripted_chat):
    tasks = {t.name: t for t in load_tasks("mm-niah", mmniah_data, scripted_chat.processor)}
    assert sorted(tasks) == ["counting-text-val", "reasoning-image-val", "retrieval-image-val", "retrieval-text-val"]
    text = tasks["retrieval-text-val"].samples[0]
    assert text.prompt == "Some text <image> about town 2. Which city is mentioned?\nAnswer the question using a single word or phrase."
    assert (text.max_new_tokens, text.max_tiles, text.scorer) == (16, 5, "mmniah_is_correct_str")
    counting = tasks["counting-text-val"].samples[0]
    assert counting.prompt.endswith("Which city is mentioned?")  # no suffix for counting in the V2PE copy
    assert (counting.max_new_tokens, counting.scorer) == (320, "mmniah_is_correct_list")
    choice = tasks["retrieval-image-val"].samples[0]
    assert choice.prompt.endswith("mentioned?\nA. a cat\nB. a dog\nC. a car\nD. a tree\n"
                                  "Answer with the option's letter from the given choices directly.")
    reasoning = tasks["reasoning-image-val"].samples[0]
    assert reasoning.prompt.count("<image>") == 3 and "\nA. <image>\nB. <image>\nAnswer with" in reasoning.prompt
    assert [p.name for p in reasoning.images] == ["reasoning-image-2.png", "choice-2-0.png", "choice-2-1.png"]
    # longest first, as the official sorted(...)[::-1]
    assert [s.fields["context_length"] for s in tasks["retrieval-text-val"].samples] == [7500, 4500, 1500]


def test_task_selection_and_limit(mmniah_data, scripted_chat):
    tasks = load_tasks("mm-niah", mmniah_data, scripted_chat.processor, tasks=["retrieval-text"], limit=2)
    assert [t.name for t in tasks] == ["retrieval-text-val"] and len(tasks[0].samples) == 2
    with pytest.raises(ConfigError, match="unknown MM-NIAH task"):
        load_tasks("mm-niah", mmniah_data, scripted_chat.processor, tasks=["retrieval-audio"])


def test_end_to_end_on_the_tiny_model(mmniah_data, tiny_chat, tmp_path):
    out = tmp_path / "run"
    summary = run_benchmark("mm-niah", tiny_chat, mmniah_data, out, tasks=["retrieval-image", "reasoning-image"], limit=2)
    assert set(summary) == {"retrieval-image-val", "reasoning-image-val"}
    lines = read_lines(out / "retrieval-image-val.jsonl")
    assert [line["question_id"] for line in lines] == [1, 0]
    for line in lines:
        assert {"question", "answer", "prediction", "context_length", "placed_depth", "score", "delta"} <= set(line)
        assert isinstance(line["prediction"], str) and line["delta"] == 1.0 and line["prompt_tokens"] > 0
    # every line is re-scorable by `v2pe eval score` and gives the same score
    rescored = score_file(out / "reasoning-image-val.jsonl")
    assert [r["score"] for r in rescored] == [r["score"] for r in read_lines(out / "reasoning-image-val.jsonl")]
    info = json.loads((out / "run.json").read_text())
    assert info["benchmark"] == "mm-niah" and info["delta"] == "auto" and info["scorer_source"] == "official"


def test_scores_use_the_official_rules(mmniah_data, scripted_chat, tmp_path):
    def script(prompt):
        if "letter" in prompt:
            return "B."  # option index 1
        if prompt.endswith("mentioned?"):
            return "[1, 5]"  # counting: half right
        return "The answer is Paris."
    scripted_chat.script = script
    run_benchmark("mm-niah", scripted_chat, mmniah_data, tmp_path / "run")
    scores = {name: [line["score"] for line in read_lines(tmp_path / "run" / f"{name}.jsonl")]
              for name in ("retrieval-text-val", "counting-text-val", "retrieval-image-val", "reasoning-image-val")}
    assert scores["retrieval-text-val"] == [1.0, 1.0, 1.0]
    assert scores["counting-text-val"] == [0.5, 0.5, 0.5]
    assert scores["reasoning-image-val"] == [1.0, 1.0, 1.0]
    assert scores["retrieval-image-val"] == [0.0, 1.0, 0.0]  # answers 2, 1, 0 (longest first)
    calls = {c["prompt"][-30:]: c for c in scripted_chat.calls}
    assert {c["max_tiles"] for c in scripted_chat.calls} == {5}
    assert {c["max_new_tokens"] for c in calls.values() if c["prompt"].endswith("mentioned?")} == {320}


def test_malformed_files_fail_before_any_generation(mmniah_data, scripted_chat, tmp_path):
    annotation = mmniah_data / "val" / "annotations" / "retrieval-text.jsonl"
    rows = annotation.read_text().splitlines()
    scripted_chat.script = lambda prompt: pytest.fail("no generation may start")
    cases = {
        "not valid JSON": rows[:1] + ['{"id": 1, "context": '] + rows[2:],
        "missing field 'question'": rows[:1] + [json.dumps({k: v for k, v in json.loads(rows[1]).items() if k != "question"})],
        "1 `<image>` placeholders in context \\+ question but 2 images": rows[:1] + [json.dumps({**json.loads(rows[1]), "images_list": ["a.png", "b.png"]})],
        "missing field 'context_length'": [json.dumps({**json.loads(rows[0]), "meta": {"placed_depth": 0.3}})],
    }
    for message, lines in cases.items():
        annotation.write_text("\n".join(lines) + "\n")
        with pytest.raises(DataError, match=message) as error:
            run_benchmark("mm-niah", scripted_chat, mmniah_data, tmp_path / "run", tasks=["retrieval-text"])
        assert str(annotation) in str(error.value)
        line = 2 if len(lines) > 1 else 1
        assert f"{annotation}:{line}" in str(error.value)
    assert scripted_chat.calls == []


def test_bad_samples_are_counted_wrong_with_the_reason(mmniah_data, scripted_chat, tmp_path):
    annotation = mmniah_data / "val" / "annotations" / "retrieval-text.jsonl"
    rows = mmniah_rows(mmniah_data / "val" / "images", "retrieval-text")
    rows[0]["images_list"] = ["does-not-exist.png"]
    rows[1]["answer"] = 3.5  # neither int, list nor str
    write_jsonl(annotation, rows)
    scripted_chat.script = lambda prompt: "paris"
    summary = run_benchmark("mm-niah", scripted_chat, mmniah_data, tmp_path / "run", tasks=["retrieval-text"])
    lines = {line["id"]: line for line in read_lines(tmp_path / "run" / "retrieval-text-val.jsonl")}
    assert lines[0]["score"] == 0 and "image file not found" in lines[0]["error"] and lines[0]["prediction"] is None
    assert lines[1]["score"] == 0 and "must be a string" in lines[1]["error"]
    assert lines[2]["score"] == 1 and lines[2]["error"] is None
    assert summary["retrieval-text-val"]["errors"] == 2


def test_unparseable_predictions_keep_a_reason(mmniah_data, scripted_chat, tmp_path):
    scripted_chat.script = lambda prompt: "I think there are several"
    run_benchmark("mm-niah", scripted_chat, mmniah_data, tmp_path / "run", tasks=["counting-text", "retrieval-image"], limit=1)
    counting = read_lines(tmp_path / "run" / "counting-text-val.jsonl")[0]
    assert counting["score"] == 0 and counting["error"].startswith("unparseable prediction: not a JSON list")
    choice = read_lines(tmp_path / "run" / "retrieval-image-val.jsonl")[0]
    assert choice["score"] == 0 and choice["error"].startswith("unparseable prediction: no single option letter")


def test_counting_answer_stored_as_a_json_string_is_scored_as_a_list(tmp_path):
    from tests.eval.runners.conftest import mmniah_rows, write_jsonl
    from v2pe.eval.runners import load_tasks

    root = tmp_path / "MM-NIAH"
    rows = mmniah_rows(root / "val" / "images", "counting-text", n=1)
    rows[0]["answer"] = "[1, 2]"
    write_jsonl(root / "val" / "annotations" / "counting-text.jsonl", rows)
    (task,) = load_tasks("mm-niah", root, tasks=["counting-text"])
    (sample,) = task.samples
    assert sample.answer == [1, 2] and sample.scorer == "mmniah_is_correct_list"
