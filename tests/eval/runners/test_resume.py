"""Resume: a killed run loses at most the sample in flight; a rerun runs only the rest and ends
with the same results as an uninterrupted run."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

from v2pe.errors import ConfigError, DataError
from v2pe.eval.runners import run_benchmark
from v2pe.eval.runners.resumable import ResumableWriter, read_results

TASKS = ["retrieval-text", "retrieval-image"]


def lines_of(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def comparable(line):
    return {k: v for k, v in line.items() if k != "seconds"}


@pytest.fixture
def counted_chat(tiny_chat, monkeypatch):
    """tiny_chat whose model counts its generate calls."""
    calls = []
    original = tiny_chat.model.generate

    def generate(*args, **kwargs):
        calls.append(kwargs["input_ids"].shape)
        return original(*args, **kwargs)

    monkeypatch.setattr(tiny_chat.model, "generate", generate)
    return tiny_chat, calls


def test_killed_run_resumes_and_matches_an_uninterrupted_run(mmniah_data, counted_chat, tmp_path):
    chat, calls = counted_chat
    full = tmp_path / "full"
    run_benchmark("mm-niah", chat, mmniah_data, full, tasks=TASKS, limit=2)
    assert len(calls) == 4

    # kill simulated after k = 1 finished line of the first task, in the middle of writing the
    # second; the second task never started
    killed = tmp_path / "killed"
    killed.mkdir()
    shutil.copy(full / "run.json", killed / "run.json")
    first = (full / "retrieval-image-val.jsonl").read_text().splitlines(keepends=True)
    (killed / "retrieval-image-val.jsonl").write_text(first[0] + first[1][: len(first[1]) // 2])
    calls.clear()
    summary = run_benchmark("mm-niah", chat, mmniah_data, killed, tasks=TASKS, limit=2)
    assert len(calls) == 3  # the one in flight of the first task + the 2 of the second
    assert {name: s["ran"] for name, s in summary.items()} == {"retrieval-image-val": 1, "retrieval-text-val": 2}
    for name in ("retrieval-image-val", "retrieval-text-val"):
        resumed, reference = lines_of(killed / f"{name}.jsonl"), lines_of(full / f"{name}.jsonl")
        assert [comparable(line) for line in resumed] == [comparable(line) for line in reference]

    calls.clear()
    run_benchmark("mm-niah", chat, mmniah_data, killed, tasks=TASKS, limit=2)
    assert calls == []  # everything finished: nothing runs again


def test_resume_refuses_a_folder_of_another_configuration(mmniah_data, scripted_chat, tmp_path):
    run_benchmark("mm-niah", scripted_chat, mmniah_data, tmp_path / "run", tasks=["retrieval-text"], limit=1)
    other = dataclasses.replace(scripted_chat, delta=0.5)
    with pytest.raises(ConfigError, match="delta: 1.0 there, 0.5 now"):
        run_benchmark("mm-niah", other, mmniah_data, tmp_path / "run", tasks=["retrieval-text"])
    with pytest.raises(ConfigError, match="settings"):
        run_benchmark("mm-niah", scripted_chat, mmniah_data, tmp_path / "run", tasks=["retrieval-text"], max_tiles=2)
    # --limit may grow between runs; --overwrite starts again
    summary = run_benchmark("mm-niah", scripted_chat, mmniah_data, tmp_path / "run", tasks=["retrieval-text"], limit=2)
    assert summary["retrieval-text-val"]["ran"] == 1
    summary = run_benchmark("mm-niah", other, mmniah_data, tmp_path / "run", tasks=["retrieval-text"], overwrite=True)
    assert summary["retrieval-text-val"]["ran"] == 3
    assert json.loads((tmp_path / "run" / "run.json").read_text())["delta"] == 0.5


def test_retry_errors_reruns_failed_samples_only(mmniah_data, scripted_chat, tmp_path):
    image = mmniah_data / "val" / "images" / "retrieval-text-1.png"
    moved = image.rename(tmp_path / "away.png")
    scripted_chat.script = lambda prompt: "paris"
    run_benchmark("mm-niah", scripted_chat, mmniah_data, tmp_path / "run", tasks=["retrieval-text"])
    assert len(scripted_chat.calls) == 2
    moved.rename(image)
    run_benchmark("mm-niah", scripted_chat, mmniah_data, tmp_path / "run", tasks=["retrieval-text"])
    assert len(scripted_chat.calls) == 2  # a plain rerun keeps the failed line
    summary = run_benchmark("mm-niah", scripted_chat, mmniah_data, tmp_path / "run", tasks=["retrieval-text"], retry_errors=True)
    assert len(scripted_chat.calls) == 3 and summary["retrieval-text-val"] == {"n": 3, "mean": 1.0, "errors": 0, "ran": 1}
    path = tmp_path / "run" / "retrieval-text-val.jsonl"
    assert len(path.read_text().splitlines()) == 4  # the failed line stays; the last line of an id wins
    assert read_results(path)["1"]["error"] is None


def test_writer_repairs_a_partial_last_line_and_rejects_other_damage(tmp_path):
    path = tmp_path / "task.jsonl"
    path.write_text('{"id": 1, "score": 1}\n{"id": 2, "sco')
    with ResumableWriter(path) as writer:
        assert writer.finished() == {"1"}
        writer.write({"id": 2, "score": 0})
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == [1, 2]
    path.write_text('{"id": 1}\n{"id": 2}')  # a complete last line that only lacks its newline
    assert set(ResumableWriter(path).finished()) == {"1", "2"} and path.read_text().endswith("}\n")
    path.write_text('{"id": 1}\nnot json\n{"id": 3}\n')
    with pytest.raises(DataError, match=f"{path}:2: result line is not valid JSON"):
        ResumableWriter(path)


def test_overwrite_with_another_configuration_clears_the_whole_folder(mmniah_data, scripted_chat, tmp_path):
    scripted_chat.script = lambda prompt: "paris"
    run_benchmark("mm-niah", scripted_chat, mmniah_data, tmp_path / "run", tasks=["retrieval-text", "counting-text"], limit=1)
    other = dataclasses.replace(scripted_chat, delta=0.5)
    run_benchmark("mm-niah", other, mmniah_data, tmp_path / "run", tasks=["retrieval-text"], limit=1, overwrite=True)
    assert sorted(p.name for p in (tmp_path / "run").glob("*.jsonl")) == ["retrieval-text-val.jsonl"]
    # same configuration: --overwrite reruns the selected tasks only and keeps the others
    run_benchmark("mm-niah", other, mmniah_data, tmp_path / "run", tasks=["counting-text"], limit=1)
    run_benchmark("mm-niah", other, mmniah_data, tmp_path / "run", tasks=["retrieval-text"], limit=1, overwrite=True)
    assert sorted(p.name for p in (tmp_path / "run").glob("*.jsonl")) == ["counting-text-val.jsonl", "retrieval-text-val.jsonl"]
    assert json.loads((tmp_path / "run" / "run.json").read_text())["tasks"] == ["counting-text-val", "retrieval-text-val"]


def test_a_full_disk_while_writing_results_is_one_line_and_resumable(tmp_path, monkeypatch):
    import errno
    import os

    from v2pe.errors import DataError
    from v2pe.eval.runners.resumable import ResumableWriter, read_results

    path = tmp_path / "task.jsonl"
    with ResumableWriter(path) as writer:
        writer.write({"id": "a", "prediction": "x"})
        monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device")))
        with pytest.raises(DataError, match="task.jsonl: cannot write results \\(No space left on device\\)"):
            writer.write({"id": "b", "prediction": "y"})
    monkeypatch.undo()
    assert "a" in {str(k) for k in read_results(path, repair=True)}
