"""Small helpers shared by the scorers: the error type and argument coercion."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from v2pe.errors import DataError


class ScoringError(DataError):
    """A prediction/answer pair that a scorer cannot score (wrong type, bad JSON...).

    `score_file` turns it into a score of 0 with the reason kept in the line.
    """


def require_text(value: Any, what: str) -> str:
    """Return `value` if it is a string, else raise ScoringError naming `what`."""
    if not isinstance(value, str):
        raise ScoringError(f"{what} must be a string, got {type(value).__name__}: {value!r}")
    return value


def as_answer_list(answer: Any, what: str = "answer") -> list[str]:
    """A gold answer given as one string or a non-empty list of strings -> list."""
    if isinstance(answer, str):
        return [answer]
    if isinstance(answer, Sequence) and answer and all(isinstance(a, str) for a in answer):
        return list(answer)
    raise ScoringError(f"{what} must be a string or a non-empty list of strings, got {answer!r}")
