"""`score_file` and `v2pe eval score` end to end."""

from __future__ import annotations

import json

import pytest

from v2pe.cli import main
from v2pe.errors import DataError
from v2pe.eval.score_file import score_file

pytestmark = pytest.mark.filterwarnings("ignore:NLTK 'words' corpus not found")


def write_jsonl(path, lines):
    path.write_text("".join(line if isinstance(line, str) else json.dumps(line) + "\n" for line in lines))
    return path


GOOD = [
    {"scorer": "anls_stvqa", "prediction": "coca  cola", "answer": ["coca cola"], "extra": {}},
    {"scorer": "mmniah_is_correct_int", "prediction": "right", "answer": 1, "source": "v2pe:eval/mm_niah"},
    {"scorer": "mmniah_is_correct_int", "prediction": "right", "answer": 1, "source": "mmniah:calculate_scores.py"},
    {"scorer": "milebench_needle", "prediction": "The password is 6578!", "answer": "6578"},
    {"scorer": "mmniah_is_correct_str", "prediction": 42, "answer": "forty two"},  # not a string
    {"scorer": "milebench_multichoice", "prediction": "A", "answer": "x", "extra": {}},  # no choice_list
    {"scorer": "vqa_accuracy_textvqa", "prediction": "2", "answer": ["2", "2"]},  # needs 10 answers
]


def test_score_file_scores_every_line_and_keeps_fields(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [GOOD[0], "\n", *GOOD[1:]])  # blank line skipped
    out = tmp_path / "out.jsonl"
    scored = score_file(src, out)
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert written == scored
    assert [r["score"] for r in scored] == pytest.approx([0.9, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0])
    assert scored[1]["source"] == "v2pe:eval/mm_niah"  # input fields kept
    assert all("score_error" not in r for r in scored[:4])


def test_unparseable_predictions_score_zero_with_a_reason(tmp_path):
    scored = score_file(write_jsonl(tmp_path / "in.jsonl", GOOD[4:]))
    assert [r["score"] for r in scored] == [0.0, 0.0, 0.0]
    assert "must be a string" in scored[0]["score_error"]
    assert "choice_list" in scored[1]["score_error"]
    assert "10 gold answers" in scored[2]["score_error"]


def test_score_file_without_out_writes_nothing(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", GOOD[:1])
    score_file(src)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


@pytest.mark.parametrize(("bad_line", "message"), [
    ("{not json\n", "not valid JSON"),
    ("[1, 2]\n", "expected a JSON object"),
    (json.dumps({"scorer": "anls_stvqa", "answer": ["a"]}) + "\n", "missing field(s) prediction"),
    (json.dumps({"scorer": "no_such", "prediction": "a", "answer": "a"}) + "\n", "unknown scorer 'no_such'"),
    (json.dumps({"scorer": "anls_stvqa", "prediction": "a", "answer": "a", "source": "x:y"}) + "\n",
     "unknown scorer source"),
])
def test_malformed_line_names_file_and_line(tmp_path, bad_line, message):
    src = write_jsonl(tmp_path / "in.jsonl", [GOOD[0], GOOD[1], bad_line])
    out = tmp_path / "out.jsonl"
    with pytest.raises(DataError) as error:
        score_file(src, out)
    assert f"{src}:3:" in str(error.value)
    assert message in str(error.value)
    assert not out.exists()  # nothing is written when the file is malformed


def test_cli_eval_score_writes_out_file(tmp_path, capsys):
    src = write_jsonl(tmp_path / "in.jsonl", GOOD[:2])
    out = tmp_path / "out.jsonl"
    assert main(["eval", "score", str(src), "--out", str(out)]) == 0
    assert [json.loads(line)["score"] for line in out.read_text().splitlines()] == pytest.approx([0.9, 1.0])
    assert "anls_stvqa: 1 lines" in capsys.readouterr().err


def test_cli_eval_score_prints_to_stdout(tmp_path, capsys):
    src = write_jsonl(tmp_path / "in.jsonl", GOOD[:1])
    assert main(["eval", "score", str(src)]) == 0
    assert json.loads(capsys.readouterr().out)["score"] == pytest.approx(0.9)


def test_cli_eval_score_malformed_file_exits_2(tmp_path, capsys):
    src = write_jsonl(tmp_path / "in.jsonl", [GOOD[0], "oops\n"])
    assert main(["eval", "score", str(src)]) == 2
    assert f"{src}:2:" in capsys.readouterr().err


def test_missing_wordnet_data_is_a_config_error_not_a_zero_score(tmp_path, monkeypatch):
    from v2pe.errors import ConfigError
    from v2pe.eval.scorers import wordnet

    monkeypatch.setattr(wordnet, "find_wordnet_dir", lambda: None)
    monkeypatch.setattr(wordnet, "PACKAGED_NOUNS", tmp_path / "wordnet3_nouns.txt.gz")  # the packaged copy lost
    wordnet.default_noun_lemmatizer.cache_clear()
    try:
        line = {"scorer": "relaxed_accuracy_longvqa", "prediction": "5 apples", "answer": "5",
                "extra": {"task": "chartqa"}}
        with pytest.raises(ConfigError, match="wordnet3_nouns.txt.gz is missing"):
            score_file(write_jsonl(tmp_path / "in.jsonl", [line]))
    finally:
        wordnet.default_noun_lemmatizer.cache_clear()
