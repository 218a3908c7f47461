"""Data built by `v2pe data build needle` runs through the MM-NIAH runner as it is."""

from __future__ import annotations

import json

from v2pe.data.builders.common import load_source
from v2pe.data.builders.needle import build_needle
from v2pe.data.synthetic import write_synthetic
from v2pe.eval.runners import run_benchmark


def test_built_needle_folder_is_an_mm_niah_benchmark(tmp_path, scripted_chat):
    source_file = write_synthetic(tmp_path / "source", n=12, seed=0)
    source = load_source(source_file)
    for task in ("retrieval-text", "counting-image"):
        build_needle(task, source, scripted_chat.processor, tmp_path / "niah", n=2, target_tokens=[1500])
    scripted_chat.script = lambda prompt: "A"
    run_benchmark("mm-niah", scripted_chat, tmp_path / "niah", tmp_path / "run")
    for task in ("retrieval-text", "counting-image"):
        lines = [json.loads(line) for line in (tmp_path / "run" / f"{task}.jsonl").read_text().splitlines()]
        assert len(lines) == 2
        assert all("not found" not in (line.get("error") or "") for line in lines)  # every image path resolved
    assert len(scripted_chat.calls) == 4
