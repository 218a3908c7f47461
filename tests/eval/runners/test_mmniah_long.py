"""MM-NIAH's long split (V2PE-Data val/long_mr_*): layout, prompts, teacher-forced scoring equal to
the official single forward, the generate option, --dry-run, and report bins past 64K."""

from __future__ import annotations

import json

import pytest
import torch

from tests.eval.runners.conftest import make_image, write_jsonl
from v2pe.cli import main
from v2pe.errors import ConfigError, DataError
from v2pe.eval.reports import write_report
from v2pe.eval.runners import load_tasks, run_benchmark
from v2pe.eval.runners.base import chat_for_tiles
from v2pe.eval.score_file import score_file
from v2pe.eval.scorers import ScoringError, get_scorer
from v2pe.positions import v2pe_position_ids

SIZES = {"128k": ("64", "128"), "1m": ("512", "1200")}


def read_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def long_rows(images, kind: str, modality: str, lengths) -> list[dict]:
    """MM-NIAH-format lines of a long task (image paths relative to V2PE-Data's image/long_mr)."""
    rows = []
    for i, length in enumerate(lengths):
        name = f"{kind}_{modality}/{length}-{i}.png"
        make_image(images / name, i)
        meta = {"context_length": length, "placed_depth": [0.1, 0.5, 0.9][i % 3], "choices": None, "choices_image_path": None}
        if modality == "image" and kind == "retrieval":
            answer = i % 3
            meta["choices"] = ["a cat", "a dog", "a car"]
        else:
            answer = "paris"
        rows.append({"id": i, "images_list": [name], "context": f"  Long text <image> about town {i}. ",
                     "question": "Which city is mentioned?", "answer": answer, "meta": meta})
    return rows


@pytest.fixture
def long_data(tmp_path):
    """V2PE-Data's layout: data/val/long_mr_<size>/test_long_mr_<modality>_<kind>_<lo>_<hi>.jsonl, images in data/image/long_mr."""
    data = tmp_path / "V2PE-Data" / "data"
    images = data / "image" / "long_mr"
    lengths = {"128k": [100_000, 70_000, 127_000], "1m": [1_100_000, 600_000]}
    for size, (lo, hi) in SIZES.items():
        for kind, modality in (("retrieval", "image"), ("retrieval", "text")):
            write_jsonl(data / "val" / f"long_mr_{size}" / f"test_long_mr_{modality}_{kind}_{lo}_{hi}.jsonl",
                        long_rows(images, kind, modality, lengths[size]))
    return data


def test_long_tasks_read_from_the_v2pe_data_layout(long_data, scripted_chat):
    for data in (long_data, long_data / "val", long_data / "val" / "long_mr_128k"):
        names = [t.name for t in load_tasks("mm-niah", data, scripted_chat.processor)]
        assert {"retrieval-image-test-128k", "retrieval-text-test-128k"} <= set(names)
    tasks = {t.name: t for t in load_tasks("mm-niah", long_data, scripted_chat.processor)}
    assert sorted(tasks) == ["retrieval-image-test-128k", "retrieval-image-test-1M", "retrieval-text-test-128k", "retrieval-text-test-1M"]
    choice = tasks["retrieval-image-test-128k"]
    assert choice.info == {"split": "test-128k", "scoring": "teacher-forced"}
    assert [s.fields["context_length"] for s in choice.samples] == [70_000, 100_000, 127_000]  # shortest first, as the long script
    first = choice.samples[0]
    assert first.prompt == ("Long text <image> about town 1. Which city is mentioned?\nA. a cat\nB. a dog\nC. a car\n"
                            "Answer with the option's letter from the given choices directly.")  # stripped, as preprocess_internlm
    assert (first.max_tiles, first.scorer, first.forced_answer, first.answer) == (12, "mmniah_teacher_forced", "1", 1)
    assert first.images == [long_data / "image" / "long_mr" / "retrieval_image" / "70000-1.png"]
    text = tasks["retrieval-text-test-1M"].samples[0]
    assert (text.forced_answer, text.max_new_tokens) == ("paris", 16)
    # a task, a base task (every size) or a split
    assert [t.name for t in load_tasks("mm-niah", long_data, tasks=["test-1M"])] == ["retrieval-image-test-1M", "retrieval-text-test-1M"]
    assert len(load_tasks("mm-niah", long_data, tasks=["retrieval-text"])) == 2
    with pytest.raises(ConfigError, match="unknown MM-NIAH task"):
        load_tasks("mm-niah", long_data, tasks=["retrieval-text-test-2M"])
    with pytest.raises(ConfigError, match="--long-scoring must be one of"):
        load_tasks("mm-niah", long_data, long_scoring="guess")


def test_long_and_official_splits_side_by_side_and_image_root(long_data, tmp_path, scripted_chat):
    from tests.eval.runners.conftest import mmniah_rows

    write_jsonl(long_data / "val" / "annotations" / "retrieval-text.jsonl", mmniah_rows(long_data / "val" / "images", "retrieval-text", n=1))
    tasks = {t.name: t for t in load_tasks("mm-niah", long_data / "val", scripted_chat.processor)}
    assert tasks["retrieval-text-val"].samples[0].max_tiles == 5 and tasks["retrieval-text-test-128k"].samples[0].max_tiles == 12
    moved = tmp_path / "elsewhere"
    (long_data / "image").rename(moved)
    (task,) = load_tasks("mm-niah", long_data, tasks=["retrieval-image-test-1M"], image_root=moved / "long_mr")
    assert all(path.is_file() for sample in task.samples for path in sample.images)


def test_long_dry_run_writes_the_forced_answer(long_data, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["eval", "mm-niah", "--data", str(long_data), "--out", str(out), "--dry-run", "--delta", "1/16",
                 "--tasks", "retrieval-image-test-128k"]) == 0
    lines = read_lines(out / "dry-run" / "retrieval-image-test-128k.jsonl")
    assert [line["id"] for line in lines] == [1, 0, 2]
    first = lines[0]
    assert first["forced_answer"] == "1" and first["max_tiles"] == 12 and first["delta"] == 0.0625
    assert first["images"] == [str(long_data / "image" / "long_mr" / "retrieval_image" / "70000-1.png")]
    assert first["prompt"].startswith("Long text <image> about town 1.") and first["tiles"] == [3]
    assert not (out / "retrieval-image-test-128k.jsonl").exists()


def official_single_forward(chat, sample, delta):
    """eval_mm_niah_long.py's scoring pass: one forward over prompt + answer, argmax at the answer positions."""
    processor = chat.processor
    encoded = processor.encode([{"from": "human", "value": sample.prompt}, {"from": "gpt", "value": sample.forced_answer}],
                               [str(p) for p in sample.images])
    labelled = (encoded["labels"] != -100).nonzero().flatten().tolist()
    start, count = labelled[0], len(labelled)
    ids = encoded["input_ids"][None, : start + count]
    mask = torch.ones_like(ids)
    positions = v2pe_position_ids(ids, mask, image_start_id=processor.image_start_id, image_end_id=processor.image_end_id, delta=delta)
    with torch.inference_mode():
        logits = chat.model(input_ids=ids, attention_mask=mask, position_ids=positions, pixel_values=encoded["pixel_values"]).logits
    return logits[0, start - 1 : start + count - 1].argmax(-1).tolist(), ids[0, start:].tolist()


@pytest.mark.parametrize("chunked", [False, True])
def test_teacher_forcing_equals_the_official_single_forward(long_data, tiny_chat, tmp_path, chunked):
    import dataclasses

    chat = dataclasses.replace(tiny_chat, chunked_prefill_above=16, prefill_chunk_size=32) if chunked else tiny_chat
    out = tmp_path / "run"
    summary = run_benchmark("mm-niah", chat, long_data, out, tasks=["test-128k"], limit=2)
    assert summary["retrieval-image-test-128k"]["errors"] == 0
    tasks = {t.name: t for t in load_tasks("mm-niah", long_data, tiny_chat.processor, tasks=["test-128k"], limit=2)}
    big = chat_for_tiles(tiny_chat, 12, {})
    for name in ("retrieval-image-test-128k", "retrieval-text-test-128k"):
        samples = {s.id: s for s in tasks[name].samples}
        for line in read_lines(out / f"{name}.jsonl"):
            sample = samples[line["id"]]
            predicted, answer_ids = official_single_forward(big, sample, line["delta"])
            assert line["extra"]["predicted_ids"] == predicted and line["extra"]["answer_ids"] == answer_ids
            assert line["new_tokens"] == len(answer_ids) and line["scorer"] == "mmniah_teacher_forced"
            assert line["prediction"] == big.processor.tokenizer.decode(predicted[:-1]).strip()
            expected = (line["prediction"] == chr(65 + line["answer"]) if isinstance(line["answer"], int)
                        else predicted[:-1] == answer_ids[:-1])
            assert line["score"] == float(expected)
        # every line re-scores to the same score with `v2pe eval score`
        assert [r["score"] for r in score_file(out / f"{name}.jsonl")] == [r["score"] for r in read_lines(out / f"{name}.jsonl")]


def test_teacher_forced_scorer_rules():
    scorer = get_scorer("mmniah_teacher_forced")
    assert scorer(" B ", 1, {"predicted_ids": [7, 9], "answer_ids": [5, 9]}) == 1.0  # int answers: the letter
    assert scorer("A", 1) == 0.0
    assert scorer("paris", "paris", {"predicted_ids": [1, 2, 3], "answer_ids": [1, 2, 4]}) == 1.0  # the last token is left out
    assert scorer("pari", "paris", {"predicted_ids": [1, 5, 3], "answer_ids": [1, 2, 3]}) == 0.0
    with pytest.raises(ScoringError, match="predicted_ids"):
        scorer("paris", "paris", {})
    with pytest.raises(ScoringError, match="2 predicted ids for 3"):
        scorer("paris", "paris", {"predicted_ids": [1, 2], "answer_ids": [1, 2, 3]})


def test_long_scoring_generate_is_an_option(long_data, scripted_chat, tmp_path):
    scripted_chat.script = lambda prompt: "B." if "letter" in prompt else "The answer is Paris."
    run_benchmark("mm-niah", scripted_chat, long_data, tmp_path / "run", tasks=["test-1M"], long_scoring="generate")
    assert {c["max_tiles"] for c in scripted_chat.calls} == {12}
    choice = read_lines(tmp_path / "run" / "retrieval-image-test-1M.jsonl")
    assert [line["scorer"] for line in choice] == ["mmniah_is_correct_int"] * 2
    assert [line["score"] for line in choice] == [1.0, 0.0]  # answers 1 (600K, run first) and 0
    assert json.loads((tmp_path / "run" / "run.json").read_text())["settings"] == {"long_scoring": "generate"}


def niah_line(i, task, length, depth, score):
    return {"id": i, "task": task, "context_length": length, "placed_depth": depth, "score": score, "prediction": "x",
            "answer": "paris", "error": None, "delta": 0.25}


def make_run(folder, tasks):
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"benchmark": "mm-niah", "model": "m", "delta": 0.25, "tasks": list(tasks)}))
    for name, lines in tasks.items():
        write_jsonl(folder / f"{name}.jsonl", lines)
    return folder


def test_report_bins_cover_128k_to_1m(tmp_path):
    long = [niah_line(0, "t", 70_000, 0.1, 1.0), niah_line(1, "t", 100_000, 0.5, 0.0), niah_line(2, "t", 130_000, 0.1, 1.0),
            niah_line(3, "t", 50_000, 0.1, 1.0)]
    million = [niah_line(0, "m", 600_000, 0.9, 1.0), niah_line(1, "m", 1_100_000, 0.9, 0.0)]
    standard = [niah_line(0, "s", 1500, 0.1, 1.0)]
    run = make_run(tmp_path / "v2pe", {"retrieval-image-test-128k": long, "retrieval-text-test-1M": million, "retrieval-text-val": standard})
    summary = write_report([run, make_run(tmp_path / "other", {"retrieval-image-test-128k": long[:1]})], tmp_path / "report")
    assert summary["labels"]["mm-niah"]["long_length_bins"] == ["64-128K", "128-256K", "256-512K", "512K-1M", ">=1M"]
    tasks = summary["runs"][0]["numbers"]["tasks"]
    image = tasks["retrieval-image-test-128k"]
    assert image["length_bins"][0] == "64-128K" and image["sample_numbers"] == [2, 1, 0, 0, 0] and image["dropped_under_1k"] == 1
    assert image["scores"][0] == pytest.approx(20.0)  # depth cells 100 and 0 of 5, mean 20
    assert image["official"]["sample_numbers"][-1] == 3 and image["official"]["scores"][-1] == pytest.approx(20.0)
    assert tasks["retrieval-text-test-1M"]["sample_numbers"] == [0, 0, 0, 1, 1]
    assert "length_bins" not in tasks["retrieval-text-val"] and len(tasks["retrieval-text-val"]["scores"]) == 11
    splits = summary["runs"][0]["numbers"]["splits"]
    assert splits["test-128k"]["Image"] == pytest.approx(image["mean"]) and splits["test-1M"]["overall"] is None
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "Long split, 128K-1M" in markdown and "| task | 64-128K | 128-256K | 256-512K | 512K-1M | >=1M | official >=64K |" in markdown
    assert "| task | 1-2K |" in markdown  # the official splits keep the official table
    assert "retrieval-image-test-128k" in summary["comparisons"]["mm-niah"]["rows"]
    plots = {p.name for p in summary["files"]}
    if "mmniah_accuracy_vs_length.png" in plots:  # matplotlib installed
        assert {"mmniah_long_accuracy_vs_length.png", "compare_mmniah_long_accuracy_vs_length.png",
                "mmniah_heatmap_retrieval-text-test-1M.png"} <= plots


def test_two_files_of_one_long_task_are_refused(long_data):
    source = long_data / "val" / "long_mr_128k" / "test_long_mr_text_retrieval_64_128.jsonl"
    (long_data / "val" / "long_mr_128k_copy").mkdir()
    (long_data / "val" / "long_mr_128k_copy" / source.name).write_text(source.read_text())
    with pytest.raises(DataError, match="two MM-NIAH long-split files give the task retrieval-text-test-128k"):
        load_tasks("mm-niah", long_data / "val")
