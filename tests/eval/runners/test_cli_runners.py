"""`v2pe eval mm-niah|milebench|long-vqa|vqa` and `v2pe eval report` on a saved tiny checkpoint."""

from __future__ import annotations

import json

import pytest

from v2pe.cli import main
from v2pe.model.tiny import tiny_model
from v2pe.processing.tokenizer import byte_tokenizer


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-native")
    tiny_model(seed=6).save_pretrained(folder)
    byte_tokenizer().save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps({"size": {"height": 56, "width": 56}, "crop_to_patches": True,
                                                                  "min_patches": 1, "max_patches": 12}))
    return folder


def test_runner_resume_and_report_from_the_command_line(checkpoint, mmniah_data, tmp_path, capsys):
    out = tmp_path / "run"
    command = ["eval", "mm-niah", "--model", str(checkpoint), "--data", str(mmniah_data), "--out", str(out),
               "--delta", "0.5", "--tasks", "retrieval-image", "--limit", "1"]
    assert main(command) == 0
    assert "retrieval-image-val: 1 samples" in capsys.readouterr().out
    line = json.loads((out / "retrieval-image-val.jsonl").read_text())
    assert line["delta"] == 0.5 and line["question_id"] == 0 and isinstance(line["prediction"], str)
    assert main(command[:-1] + ["2"]) == 0  # resumes: one more sample
    assert "(1 run now)" in capsys.readouterr().out
    assert main(["eval", "report", str(out), "--out", str(tmp_path / "report")]) == 0
    assert "| retrieval-image-val |" in (tmp_path / "report" / "report.md").read_text()


def test_malformed_file_stops_before_the_model_loads(checkpoint, mmniah_data, tmp_path, capsys, monkeypatch):
    import v2pe.model

    monkeypatch.setattr(v2pe.model, "load_model", lambda *a, **k: pytest.fail("the model must not load"))
    annotation = mmniah_data / "val" / "annotations" / "counting-text.jsonl"
    annotation.write_text(annotation.read_text() + "{oops\n")
    code = main(["eval", "mm-niah", "--model", str(checkpoint), "--data", str(mmniah_data), "--out", str(tmp_path / "run")])
    assert code == 2
    assert f"{annotation}:4: not valid JSON" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("delta", ["0", "1.5", "half"])
def test_bad_delta_is_refused(checkpoint, mmniah_data, tmp_path, capsys, delta):
    assert main(["eval", "mm-niah", "--model", str(checkpoint), "--data", str(mmniah_data), "--out", str(tmp_path), "--delta", delta]) == 2
    assert "--delta" in capsys.readouterr().err
