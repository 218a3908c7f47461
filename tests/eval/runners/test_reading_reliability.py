"""Benchmark and result files with non-UTF-8 bytes: one DataError naming file:line, before
any generation (benchmark files) or before resuming (result files)."""

from __future__ import annotations

import json

import pytest

from v2pe.errors import DataError
from v2pe.eval.runners import load_tasks
from v2pe.eval.runners.resumable import ResumableWriter, read_results


def test_non_utf8_in_a_jsonl_benchmark_file_names_file_and_line(mmniah_data, scripted_chat):
    annotation = mmniah_data / "val" / "annotations" / "retrieval-text.jsonl"
    lines = annotation.read_bytes().splitlines()
    annotation.write_bytes(b"\n".join([lines[0], lines[1].replace(b"Some text", b"Some t\xe9xt"), *lines[2:]]) + b"\n")
    with pytest.raises(DataError, match=rf"{annotation}:2: not valid UTF-8 \(byte 0xe9 at column \d+\)"):
        load_tasks("mm-niah", mmniah_data, scripted_chat.processor, tasks=["retrieval-text"])


def test_non_utf8_in_a_json_benchmark_file_names_file_and_line(milebench_data, scripted_chat):
    path = milebench_data / "ALFRED" / "ALFRED.json"
    text = json.dumps(json.loads(path.read_text()), indent=1)
    path.write_bytes(text.replace("Question 1?", "Questi\u00f3n 1?").encode("latin-1"))
    line = text[: text.index("Question 1?")].count("\n") + 1
    with pytest.raises(DataError, match=rf"ALFRED\.json:{line}: not valid UTF-8 \(byte 0xf3 at column \d+\)"):
        load_tasks("milebench", milebench_data, scripted_chat.processor, tasks=["ALFRED"])


def test_non_utf8_in_a_result_file_names_file_and_line(tmp_path):
    path = tmp_path / "task.jsonl"
    path.write_bytes(b'{"id": 1}\n{"id": "\xff"}\n{"id": 3}\n')
    with pytest.raises(DataError, match=rf"{path}:2: not valid UTF-8 \(byte 0xff at column 9\)"):
        read_results(path)


def test_a_prediction_with_a_line_separator_character_resumes(tmp_path):
    # json.dumps(ensure_ascii=False) writes U+2028 raw; a resume must not split the line there
    path = tmp_path / "task.jsonl"
    with ResumableWriter(path) as writer:
        writer.write({"id": 1, "prediction": "a\u2028b\x85c"})
        writer.write({"id": 2, "prediction": "d"})
    assert {key: r["prediction"] for key, r in read_results(path).items()} == {"1": "a\u2028b\x85c", "2": "d"}
