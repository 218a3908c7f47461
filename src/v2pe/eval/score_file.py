"""Score a JSONL file of predictions line by line with the registered scorers.

Input lines: {"scorer": NAME, "prediction": ..., "answer": ..., "extra": {...}
(optional), "source": "v2pe:..." (optional, picks the variant)}. Each line is
written back unchanged plus "score". A prediction the scorer cannot read
(wrong type, bad JSON, missing choices...) scores 0 and the reason is kept in
"score_error"; a line that is not such an object (bad UTF-8, bad JSON, missing
fields, an answer whose type does not fit the scorer's type suffix) fails the whole
file with a `DataError` naming the file and line, before anything is written.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from v2pe.errors import DataError, V2PEError
from v2pe.files import iter_json_lines, write_text_file
from v2pe.eval.scorers import ScoringError, get_scorer
from v2pe.eval.scorers.registry import Scorer

REQUIRED_FIELDS = ("scorer", "prediction", "answer")


def _read_records(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for every non-blank line; DataError on malformed ones."""
    for number, record in iter_json_lines(path, what="score file"):
        yield number, _checked_record(record, path, number)


def _checked_record(record: dict, path: Path, number: int) -> dict:
    missing = [field for field in REQUIRED_FIELDS if field not in record]
    if missing:
        raise DataError(f"{path}:{number}: missing field(s) {', '.join(missing)}")
    if not isinstance(record["scorer"], str):
        raise DataError(f"{path}:{number}: 'scorer' must be a string")
    if record.get("extra") is not None and not isinstance(record["extra"], dict):
        raise DataError(f"{path}:{number}: 'extra' must be an object")
    if record.get("source") is not None and not isinstance(record["source"], str):
        raise DataError(f"{path}:{number}: 'source' must be a string")
    return record


def _scorer_for(record: dict, path: Path, number: int) -> Scorer:
    try:
        scorer = get_scorer(record["scorer"], record.get("source"))
    except (KeyError, ValueError) as error:
        message = error.args[0] if error.args else str(error)
        raise DataError(f"{path}:{number}: {message}") from None
    problem = scorer.answer_problem(record["answer"])
    if problem is not None:
        raise DataError(f"{path}:{number}: {problem}")
    return scorer


def score_record(record: dict, scorer: Scorer) -> dict:
    """A copy of `record` with "score" (and "score_error" when it could not be scored)."""
    scored = {key: value for key, value in record.items() if key != "score_error"}
    try:
        scored["score"] = scorer(record["prediction"], record["answer"], record.get("extra") or {})
    except ScoringError as error:
        scored["score"], scored["score_error"] = 0.0, str(error)
    except V2PEError:
        raise  # configuration problems (e.g. missing WordNet data) are not the prediction's fault
    except (TypeError, ValueError, AttributeError) as error:
        scored["score"], scored["score_error"] = 0.0, f"{type(error).__name__}: {error}"
    return scored


def score_file(in_path: str | Path, out_path: str | Path | None = None) -> list[dict]:
    """Score every line of `in_path`; write them to `out_path` (if given) and return them."""
    in_path = Path(in_path)
    jobs = [(record, _scorer_for(record, in_path, number)) for number, record in _read_records(in_path)]
    scored = [score_record(record, scorer) for record, scorer in jobs]
    if out_path is not None:
        write_text_file(out_path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in scored))
    return scored


def summarize(scored: list[dict]) -> dict[str, dict[str, float]]:
    """Per scorer: number of lines, mean score and number of unscorable lines."""
    summary: dict[str, dict[str, float]] = {}
    for record in scored:
        entry = summary.setdefault(record["scorer"], {"n": 0, "mean": 0.0, "errors": 0})
        entry["n"] += 1
        entry["mean"] += (record["score"] - entry["mean"]) / entry["n"]
        entry["errors"] += "score_error" in record
    return summary
