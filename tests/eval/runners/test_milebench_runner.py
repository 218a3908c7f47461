"""MileBench runner: choice list, placeholders, official left truncation, end to end, bad input."""

from __future__ import annotations

import json

import pytest

from tests.eval.runners.conftest import make_image, milebench_dataset
from v2pe.errors import DataError
from v2pe.eval.benchmarks.milebench import truncate_left
from v2pe.eval.runners import load_tasks, run_benchmark
from v2pe.processing.tokenizer import byte_tokenizer

INSTRUCTION = "Answer about the images."


def read_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_prompt_with_choice_list_and_image_placeholders(milebench_data, scripted_chat):
    tasks = {t.name: t for t in load_tasks("milebench", milebench_data, scripted_chat.processor)}
    sample = tasks["ObjectShuffle"].samples[0]
    assert sample.prompt == (f"{INSTRUCTION}\nLook: <image> then <image> Question 0?\nChoice list: \n"
                             "A. left\nB. right\nC. up\nAnswer with the option's letter from the given choices directly.")
    assert [p.name for p in sample.images] == ["0_0.png", "0_1.png"]
    assert (sample.max_new_tokens, sample.max_tiles, sample.scorer) == (32, 1, "milebench_multichoice")
    assert sample.extra == {"choice_list": ["left", "right", "up"]}
    assert tasks["ALFRED"].samples[0].scorer == "milebench_rouge_l"
    assert tasks["TextNeedleInAHaystack"].samples[0].scorer == "milebench_needle"


def test_gpr1200_options_have_no_letters(tmp_path, scripted_chat):
    milebench_dataset(tmp_path, "GPR1200", "multi-choice", n=1, choices=True)
    sample = load_tasks("milebench", tmp_path, scripted_chat.processor)[0].samples[0]
    assert "\nChoice list: \nleft\nright\nup\nAnswer with" in sample.prompt


@pytest.mark.parametrize("budget, kept, images, starts", [
    (1000, "one <image> two <image> three", ["a", "b"], False),
    (6, " three", [], False),  # the last text fits, its image does not
    (10, " three", ["b"], True),  # the last image fits too: the prompt starts with <image>
    (15, " two <image> three", ["b"], False),
    (3, "ree", [], False),  # the last text alone is too long: its tail is kept
])
def test_official_left_truncation(budget, kept, images, starts):
    tokenizer = byte_tokenizer()  # one token per byte
    instruction = "Hi"
    text, kept_images, starts_with_image = truncate_left(
        "one <image> two <image> three", ["a", "b"], instruction, tokenizer, budget + len(instruction), 4)
    assert (text, kept_images, starts_with_image) == (kept, images, starts)


def test_truncated_prompt_and_images_reach_the_model(tmp_path, scripted_chat):
    milebench_dataset(tmp_path, "ALFRED", "open-ended", n=1, images_per_sample=3)
    # instruction 24 bytes; keep " Question 0?" (12) + one image (4 tokens) and nothing more
    task = load_tasks("milebench", tmp_path, scripted_chat.processor, max_context_len=24 + 12 + 4 + 5)[0]
    sample = task.samples[0]
    assert sample.prompt == f"{INSTRUCTION}\n<image> Question 0?" and [p.name for p in sample.images] == ["0_2.png"]
    assert sample.fields["num_images"] == 3 and sample.fields["kept_images"] == 1
    scripted_chat.script = lambda prompt: "the ball moves"
    run_benchmark("milebench", scripted_chat, tmp_path, tmp_path / "run", max_context_len=24 + 12 + 4 + 5)
    assert scripted_chat.calls[0]["images"] == [str(sample.images[0])] and scripted_chat.calls[0]["max_tiles"] == 1


def test_end_to_end_on_the_tiny_model(milebench_data, tiny_chat, tmp_path):
    summary = run_benchmark("milebench", tiny_chat, milebench_data, tmp_path / "run", tasks=["ObjectShuffle"], limit=2)
    assert {name: s["n"] for name, s in summary.items()} == {"ObjectShuffle": 2}
    for line in read_lines(tmp_path / "run" / "ObjectShuffle.jsonl"):
        assert isinstance(line["prediction"], str) and line["sample_id"] in (0, 1)
        assert line["image_quantity_level"] == "Few" and line["num_images"] == 2


def test_scores_use_the_official_rules(milebench_data, scripted_chat, tmp_path):
    scripted_chat.script = lambda prompt: "B" if "Choice list" in prompt else "the ball moves"
    summary = run_benchmark("milebench", scripted_chat, milebench_data, tmp_path / "run")
    assert summary["ObjectShuffle"]["mean"] == 1.0 and summary["ALFRED"]["mean"] == pytest.approx(1.0)
    assert summary["TextNeedleInAHaystack"]["mean"] == 0.0  # "the ball moves" is not one token of the answer's


def test_fewer_placeholders_than_images_run_as_the_official_code_with_images_shifted(tmp_path, scripted_chat):
    from v2pe.eval.reports import write_report

    path = milebench_dataset(tmp_path, "ALFRED", "open-ended", n=2)
    annotation = json.loads(path.read_text())
    make_image(tmp_path / "ALFRED" / "images" / "extra.png", 0)
    annotation["data"][1]["task_instance"]["images_path"].append("extra.png")
    path.write_text(json.dumps(annotation))
    scripted_chat.script = lambda prompt: "the ball moves"
    run_benchmark("milebench", scripted_chat, tmp_path, tmp_path / "run")
    call = next(c for c in scripted_chat.calls if c["prompt"].endswith("Question 1?"))
    # From the end: extra.png fills {image#2}, 1_1.png fills {image#1}, 1_0.png goes before the text.
    assert call["prompt"] == "Answer about the images.\n<image>Look: <image> then <image> Question 1?"
    assert [p.rsplit("/", 1)[-1] for p in map(str, call["images"])] == ["1_0.png", "1_1.png", "extra.png"]
    write_report([tmp_path / "run"], tmp_path / "report")
    assert "fewer `{image#k}` placeholders than images" in (tmp_path / "report" / "report.md").read_text()


def test_more_placeholders_than_images_is_refused_naming_the_sample(tmp_path, scripted_chat):
    path = milebench_dataset(tmp_path, "ALFRED", "open-ended", n=2)
    annotation = json.loads(path.read_text())
    instance = annotation["data"][1]["task_instance"]
    instance["images_path"].pop()  # {image#2} is left as text, as the official code leaves it
    instance["context"] = "Look: {image#1} then {image#1} Question 1?"  # one image, placed twice
    path.write_text(json.dumps(annotation))
    with pytest.raises(DataError, match=r"ALFRED.json: data\[1\]: 2 \{image#k\}/\{table#k\} placeholders but 1 images"):
        run_benchmark("milebench", scripted_chat, tmp_path, tmp_path / "run")


def test_unknown_question_type_fails_before_generation(tmp_path, scripted_chat):
    path = milebench_dataset(tmp_path, "ALFRED", "essay", n=1)
    with pytest.raises(DataError, match="ALFRED.json.*unsupported question_type 'essay'"):
        run_benchmark("milebench", scripted_chat, tmp_path, tmp_path / "run")
    assert path.exists()


def test_missing_image_and_unparseable_choice_are_recorded(milebench_data, scripted_chat, tmp_path):
    (milebench_data / "ObjectShuffle" / "images" / "1_0.png").unlink()
    scripted_chat.script = lambda prompt: "xyz"  # no option letter or text anywhere
    run_benchmark("milebench", scripted_chat, milebench_data, tmp_path / "run", tasks=["ObjectShuffle"])
    lines = {line["id"]: line for line in read_lines(tmp_path / "run" / "ObjectShuffle.jsonl")}
    assert "image file not found" in lines[1]["error"] and "1_0.png" in lines[1]["error"] and lines[1]["score"] == 0
    assert lines[0]["error"].startswith("unparseable prediction") and lines[0]["score"] == 0
