"""Batched runs (`run_tasks(..., batch_size=N)`): same predictions and scores as batch 1 with the
real tiny model, one generate call per batch, per-sample errors after a failed batch, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from v2pe.errors import ConfigError
from v2pe.eval.runners import load_tasks, run_benchmark
from v2pe.eval.runners.base import Sample, plan_batches, prompt_layout, run_tasks

from .conftest import make_image, write_jsonl

KEYS = ("prediction", "score", "error", "delta", "prompt_tokens", "new_tokens", "answer")


def lines(folder: Path) -> dict[str, dict]:
    """{task/id: result line} of a run folder."""
    out = {}
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            out[f"{path.stem}/{record['id']}"] = record
    return out


def vqa_folder(root: Path, n: int) -> Path:
    """A TextVQA folder of n questions of varied length, images of varied sizes (tiles)."""
    data = root / "data"
    rows = []
    sizes = [(112, 56), (56, 56), (168, 56), (56, 112)]
    for i in range(n):
        make_image(data / "textvqa" / "train_images" / f"{i}.png", i, size=sizes[i % len(sizes)])
        question = "What is written" + " here" * (i % 5) + f" {i}?"
        rows.append({"image": f"data/textvqa/train_images/{i}.png", "question": question, "question_id": 100 + i})
    write_jsonl(data / "textvqa" / "textvqa_val.jsonl", rows)
    annotations = {"annotations": [{"question_id": 100 + i, "answers": [{"answer": "stop"}] * 10} for i in range(n)]}
    (data / "textvqa" / "textvqa_val_annotations.json").write_text(json.dumps(annotations))
    return data


def test_batched_vqa_equals_batch_one_with_the_tiny_model(tiny_chat, tmp_path):
    data = vqa_folder(tmp_path, 9)
    samples = load_tasks("vqa", data, tiny_chat.processor, image_root=tmp_path)[0].samples
    assert [len(batch) for batch in plan_batches(tiny_chat, samples, 4)] == [4, 4, 1]  # real batches
    one = run_benchmark("vqa", tiny_chat, data, tmp_path / "b1", image_root=tmp_path, batch_size=1)
    four = run_benchmark("vqa", tiny_chat, data, tmp_path / "b4", image_root=tmp_path, batch_size=4)
    first, batched = lines(tmp_path / "b1"), lines(tmp_path / "b4")
    assert sorted(first) == sorted(batched) and len(first) == 9
    for key in first:
        assert {k: batched[key][k] for k in KEYS} == {k: first[key][k] for k in KEYS}, key
    assert one == four
    assert any(record["prediction"] for record in first.values())  # the tiny model answers something


def test_batched_mmniah_equals_batch_one_with_the_tiny_model(tiny_chat, mmniah_data, tmp_path):
    # one task (3 samples, three images each: context + two choices): the model is slow on long prompts
    samples = load_tasks("mm-niah", mmniah_data, tiny_chat.processor, tasks=["reasoning-image"])[0].samples
    assert [len(batch) for batch in plan_batches(tiny_chat, samples, 4)] == [3]
    run_benchmark("mm-niah", tiny_chat, mmniah_data, tmp_path / "b1", tasks=["reasoning-image"], batch_size=1)
    run_benchmark("mm-niah", tiny_chat, mmniah_data, tmp_path / "b4", tasks=["reasoning-image"], batch_size=4)
    first, batched = lines(tmp_path / "b1"), lines(tmp_path / "b4")
    assert sorted(first) == sorted(batched) and len(first) == 3
    assert {key: {k: r[k] for k in KEYS} for key, r in batched.items()} == {key: {k: r[k] for k in KEYS} for key, r in first.items()}


def test_one_generate_call_per_batch_of_equal_settings(scripted_chat, vqa_data, tmp_path):
    scripted_chat.script = lambda prompt: "stop"
    run_benchmark("vqa", scripted_chat, vqa_data, tmp_path / "run", image_root=vqa_data.parent, batch_size=2)
    # textvqa: 3 samples -> batches of 2 + 1; chartqa: 2 samples -> one batch of 2
    assert sorted(call["batch"] for call in scripted_chat.calls) == [1, 2, 2, 2, 2]
    records = lines(tmp_path / "run")
    assert len(records) == 5 and all(r["error"] is None for r in records.values())


def test_batches_group_settings_and_sort_by_length(scripted_chat, tmp_path):
    image = tmp_path / "a.png"
    make_image(image, 0)

    def sample(i, prompt, max_new_tokens=10, **kwargs):
        return Sample(i, prompt, [str(image)], "x", "vqa_accuracy_textvqa", max_new_tokens, 6, generate_kwargs=kwargs)

    samples = [sample(0, "<image> " + "long " * 20), sample(1, "<image> a"), sample(2, "<image> b", 5),
               sample(3, "<image>" + " medium" * 3), sample(4, "<image> c", num_beams=2), sample(5, "<image> dd")]
    batches = plan_batches(scripted_chat, samples, 3)
    assert [[s.id for s in batch] for batch in batches] == [[2], [4], [1, 5, 3], [0]]
    assert [[s.id for s in batch] for batch in plan_batches(scripted_chat, samples, 1)] == [[i] for i in range(6)]
    with pytest.raises(ConfigError, match="batch_size"):
        plan_batches(scripted_chat, samples, 0)


def test_prompt_layout_matches_prepare(tiny_chat, vqa_data):
    tasks = load_tasks("vqa", vqa_data, tiny_chat.processor, image_root=vqa_data.parent)
    for sample in [s for task in tasks for s in task.samples]:
        text, visual = prompt_layout(tiny_chat, sample)
        inputs = tiny_chat.prepare([[{"from": "human", "value": sample.prompt}]], [[str(p) for p in sample.images]], sample.max_new_tokens)
        assert text + sum(visual) == int(inputs["attention_mask"].sum())
        assert sum(visual) == int((inputs["input_ids"] == tiny_chat.processor.image_context_id).sum())


def test_auto_delta_batches_only_samples_of_the_same_delta(tiny_chat, tmp_path):
    # a window in which the long prompt needs a smaller delta than the short ones: batched, the
    # long one would pull the batch's delta down; it must run in a batch of its own delta
    import dataclasses

    big, small = tmp_path / "big.png", tmp_path / "small.png"
    make_image(big, 0, size=(168, 112))
    make_image(small, 1, size=(56, 56))
    samples = [Sample(0, "<image> a?", [str(small)], "x", "vqa_accuracy_textvqa", 4, 6),
               Sample(1, "<image> b?", [str(big)], "x", "vqa_accuracy_textvqa", 4, 6),
               Sample(2, "<image> c?", [str(small)], "x", "vqa_accuracy_textvqa", 4, 6)]
    layouts = [prompt_layout(tiny_chat, s) for s in samples]
    longest = max(text + sum(visual) for text, visual in layouts)
    chat = dataclasses.replace(tiny_chat, window=longest - 8, history=[])
    deltas = []
    for sample in samples:
        inputs = chat.prepare([[{"from": "human", "value": sample.prompt}]], [sample.images], 4)
        deltas.append(inputs["delta"])
    assert deltas[0] == deltas[2] and deltas[1] < deltas[0]
    batches = plan_batches(chat, samples, 3)
    assert sorted(sorted(s.id for s in batch) for batch in batches) == [[0, 2], [1]]
    from v2pe.eval.runners.base import Task

    task = Task("t", tmp_path, samples)
    run_tasks(chat, "vqa", [task], tmp_path / "b1", batch_size=1)
    run_tasks(chat, "vqa", [task], tmp_path / "b3", batch_size=3)
    first, batched = lines(tmp_path / "b1"), lines(tmp_path / "b3")
    assert {k: {f: r[f] for f in KEYS} for k, r in batched.items()} == {k: {f: r[f] for f in KEYS} for k, r in first.items()}
    assert [first[f"t/{i}"]["delta"] for i in range(3)] == deltas


def test_failed_batch_falls_back_to_one_line_per_sample(scripted_chat, vqa_data, tmp_path):
    scripted_chat.script = lambda prompt: "stop"
    (vqa_data / "textvqa" / "train_images" / "1.png").write_bytes(b"not a png")  # unreadable: the batch fails
    run_benchmark("vqa", scripted_chat, vqa_data, tmp_path / "run", image_root=vqa_data.parent, tasks=["textvqa_val"], batch_size=4)
    records = lines(tmp_path / "run")
    assert len(records) == 3
    errors = {key: r["error"] for key, r in records.items()}
    assert errors["textvqa_val/101"] and "cannot read image" in errors["textvqa_val/101"]
    assert errors["textvqa_val/100"] is None and errors["textvqa_val/102"] is None
    assert records["textvqa_val/100"]["score"] == 1.0


def test_missing_image_runs_alone_with_its_error(scripted_chat, vqa_data, tmp_path):
    scripted_chat.script = lambda prompt: "stop"
    (vqa_data / "textvqa" / "train_images" / "0.png").unlink()
    run_benchmark("vqa", scripted_chat, vqa_data, tmp_path / "run", image_root=vqa_data.parent, tasks=["textvqa_val"], batch_size=4)
    records = lines(tmp_path / "run")
    assert "image file not found" in records["textvqa_val/100"]["error"]
    assert [call["batch"] for call in scripted_chat.calls] == [2, 2]  # the two others in one batch


def test_resume_at_another_batch_size(scripted_chat, vqa_data, tmp_path):
    scripted_chat.script = lambda prompt: "stop"
    run_benchmark("vqa", scripted_chat, vqa_data, tmp_path / "run", image_root=vqa_data.parent, limit=1, batch_size=1)
    scripted_chat.calls.clear()
    summaries = run_benchmark("vqa", scripted_chat, vqa_data, tmp_path / "run", image_root=vqa_data.parent, batch_size=4)
    assert {name: s["ran"] for name, s in summaries.items()} == {"chartqa_test_human": 1, "textvqa_val": 2}
    assert len(lines(tmp_path / "run")) == 5


def test_cli_passes_batch_size(monkeypatch, tmp_path):
    from v2pe.cli import eval as cli_eval

    seen = {}

    def fake_run_loaded(*args, **kwargs):
        seen.update(kwargs)
        return {}

    import argparse

    parser = argparse.ArgumentParser()
    cli_eval.register(parser.add_subparsers())
    args = parser.parse_args(["eval", "vqa", "--model", "m", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--batch-size", "8"])
    assert args.batch_size == 8
    assert parser.parse_args(["eval", "vqa", "--model", "m", "--data", "d", "--out", "o"]).batch_size == 1
    monkeypatch.setattr("v2pe.eval.runners.run_loaded", fake_run_loaded)
    monkeypatch.setattr("v2pe.eval.runners.load_tasks", lambda *a, **k: [])
    monkeypatch.setattr("v2pe.processing.Processor.from_pretrained", classmethod(lambda cls, path: None))
    monkeypatch.setattr("v2pe.model.load_model", lambda *a, **k: None)
    cli_eval.run_runner(args)
    assert seen["batch_size"] == 8
