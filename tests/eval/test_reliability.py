"""Bad input to `v2pe eval score`: answers whose type does not fit a type-suffixed scorer,
non-UTF-8 bytes, unwritable --out. Each is one line naming file:line (or the output file),
exit code 2, nothing written."""

from __future__ import annotations

import errno
import json
import types

import pytest

from v2pe.cli import main
from v2pe.errors import DataError
from v2pe.eval.score_file import score_file
from v2pe.eval.scorers import ScoringError, get_scorer, scorer_names
from v2pe.eval.scorers.registry import ANSWER_TYPE_SUFFIXES

POPE = {"scorer": "pope", "prediction": "yes", "answer": "yes"}


def write_lines(path, lines) -> object:
    path.write_bytes(b"".join((line if isinstance(line, bytes) else json.dumps(line).encode()) + b"\n" for line in lines))
    return path


def last_error_line(capsys) -> str:
    return capsys.readouterr().err.strip().splitlines()[-1]


# ---------------------------------------------------------------------------- 2. type suffixes


@pytest.mark.parametrize(
    ("scorer", "answer", "advice"),
    [
        ("mmniah_is_correct_str", 1, "use mmniah_is_correct_int"),
        ("mmniah_is_correct_int", "1", "use mmniah_is_correct_str"),
        ("mmniah_is_correct_list", 2, "use mmniah_is_correct_int"),
        ("mmniah_is_correct_int", [1], "use mmniah_is_correct_list"),
        ("mmniah_is_correct_int", True, "no scorer of this family"),
        ("mmniah_is_correct_str", 3.5, "no scorer of this family"),
    ],
)
def test_an_answer_that_does_not_fit_the_scorer_suffix_stops_the_file(tmp_path, capsys, scorer, answer, advice):
    path = write_lines(tmp_path / "in.jsonl", [POPE, {"scorer": scorer, "prediction": "b", "answer": answer}])
    out = tmp_path / "out.jsonl"
    with pytest.raises(DataError, match=rf"in\.jsonl:2: the answer must be .* for scorer '{scorer}'") as error:
        score_file(path, out)
    assert advice in str(error.value) and not out.exists()
    assert main(["eval", "score", str(path), "--out", str(out)]) == 2
    line = last_error_line(capsys)
    assert line.startswith(f"v2pe eval: error: {path}:2: the answer must be ") and not out.exists()


def test_calling_a_suffixed_scorer_with_another_type_raises_instead_of_switching_rules():
    scorer = get_scorer("mmniah_is_correct_str")
    with pytest.raises(ScoringError, match="the answer must be a string"):
        scorer("b", 1)  # the int rule would score this 1.0
    assert scorer("the answer is paris", "paris") == 1.0
    assert get_scorer("mmniah_is_correct_int")("b", 1) == 1.0


def test_every_scorer_named_for_a_type_checks_it():
    suffixed = [name for name in scorer_names() if name.rsplit("_", 1)[-1] in ANSWER_TYPE_SUFFIXES]
    assert suffixed == ["mmniah_is_correct_int", "mmniah_is_correct_list", "mmniah_is_correct_str"]
    for name in suffixed:
        assert get_scorer(name).answer_type is ANSWER_TYPE_SUFFIXES[name.rsplit("_", 1)[-1]]
    assert all(get_scorer(name).answer_type is None for name in scorer_names() if name not in suffixed)


# ---------------------------------------------------------------------------- 6. non-UTF-8 bytes


def test_non_utf8_bytes_in_a_score_file_name_file_and_line(tmp_path, capsys):
    path = write_lines(tmp_path / "in.jsonl", [POPE, b'{"scorer": "pope", "prediction": "y\xe9s", "answer": "yes"}'])
    with pytest.raises(DataError, match=r"in\.jsonl:2: not valid UTF-8 \(byte 0xe9 at column 36\)"):
        score_file(path)
    assert main(["eval", "score", str(path)]) == 2
    assert last_error_line(capsys) == f"v2pe eval: error: {path}:2: not valid UTF-8 (byte 0xe9 at column 36)"


def test_a_missing_score_file_is_one_line(tmp_path, capsys):
    assert main(["eval", "score", str(tmp_path / "none.jsonl")]) == 2
    assert last_error_line(capsys) == f"v2pe eval: error: {tmp_path / 'none.jsonl'}: score file not found"


# ---------------------------------------------------------------------------- 10. unwritable --out


def test_an_out_path_under_a_file_is_one_line(tmp_path, capsys):
    path = write_lines(tmp_path / "in.jsonl", [POPE])
    (tmp_path / "a_file").write_text("x")
    out = tmp_path / "a_file" / "sub" / "out.jsonl"
    assert main(["eval", "score", str(path), "--out", str(out)]) == 2
    assert last_error_line(capsys) == f"v2pe eval: error: cannot create output folder {out.parent}: Not a directory"


def test_a_full_disk_is_one_line_and_leaves_no_partial_file(tmp_path, capsys, monkeypatch):
    import os

    import v2pe.files

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(v2pe.files, "os", types.SimpleNamespace(replace=no_space, getpid=os.getpid, PathLike=os.PathLike))
    path = write_lines(tmp_path / "in.jsonl", [POPE])
    out = tmp_path / "out" / "scored.jsonl"
    assert main(["eval", "score", str(path), "--out", str(out)]) == 2
    assert last_error_line(capsys) == f"v2pe eval: error: cannot write {out}: No space left on device"
    assert list(out.parent.iterdir()) == []
