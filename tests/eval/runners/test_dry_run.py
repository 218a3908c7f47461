"""`v2pe eval BENCH --dry-run`: what a run would ask, per sample, without loading weights."""

from __future__ import annotations

import json

import pytest

from tests.eval.runners.conftest import mmniah_rows, write_jsonl
from v2pe.cli import main


def read_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def tokenizer_only_checkpoint(tmp_path):
    """A folder with a config and a tokenizer and no weights: enough for a dry run."""
    from v2pe.model.tiny import tiny_config
    from v2pe.processing.tokenizer import byte_tokenizer

    folder = tmp_path / "no-weights"
    config = tiny_config(delta=0.25)
    config.save_pretrained(folder)
    byte_tokenizer().save_pretrained(folder)
    return folder


def test_mmniah_dry_run_writes_the_prompts_without_weights(tmp_path, tokenizer_only_checkpoint, monkeypatch, capsys):
    import v2pe.model

    monkeypatch.setattr(v2pe.model, "load_model", lambda *a, **k: pytest.fail("a dry run loads no weights"))
    root = tmp_path / "MM-NIAH"
    write_jsonl(root / "val" / "annotations" / "retrieval-text.jsonl", mmniah_rows(root / "val" / "images", "retrieval-text", n=2))
    out = tmp_path / "out"
    assert main(["eval", "mm-niah", "--model", str(tokenizer_only_checkpoint), "--data", str(root), "--out", str(out), "--dry-run"]) == 0
    lines = read_lines(out / "dry-run" / "retrieval-text-val.jsonl")
    assert sorted(line["id"] for line in lines) == [0, 1]  # in the runner's order
    first = next(line for line in lines if line["id"] == 0)
    assert first["images"] == [str(root / "val" / "images" / "retrieval-text-0.png")]
    assert first["prompt"].count("<image>") == 1 and "Which city is mentioned?" in first["prompt"]
    assert first["delta"] == 0.25  # the checkpoint's (config.v2pe.delta)
    assert first["tiles"] == [3]  # a 112 x 56 image: 2 x 1 grid + thumbnail
    assert {"max_tiles", "max_new_tokens"} <= set(first)
    assert not (out / "retrieval-text-val.jsonl").exists()  # no results were written


def test_dry_run_needs_no_model_for_vqa_and_prepends_the_placeholder(tmp_path, capsys):
    from PIL import Image

    data = tmp_path / "data"
    (data / "textvqa").mkdir(parents=True)
    Image.new("RGB", (448, 448), "red").save(data / "textvqa" / "a.png")
    write_jsonl(data / "textvqa" / "textvqa_val.jsonl", [{"image": "data/textvqa/a.png", "question": "What colour?\n",
                                                          "question_id": 7, "answer": "red"}])
    assert main(["eval", "vqa", "--data", str(data), "--out", str(tmp_path / "out"), "--dry-run", "--delta", "1/4"]) == 0
    (line,) = read_lines(tmp_path / "out" / "dry-run" / "textvqa_val.jsonl")
    assert line["id"] == 7
    assert line["prompt"] == "<image>\nWhat colour?\n Answer the question using a single word or phrase."
    assert line["tiles"] == [1] and line["max_new_tokens"] == 10 and line["min_new_tokens"] == 1 and line["delta"] == 0.25


def test_a_real_run_still_needs_a_model(tmp_path, capsys):
    assert main(["eval", "vqa", "--data", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "--model is required" in capsys.readouterr().err
