"""WikiTableQuestions denotation accuracy (official WTQ evaluator rules, via DUE `WtqScorer`).

A prediction and a gold answer are *lists* of values (a denotation). Each
string becomes a number, a date or a string value; after de-duplication the two
lists must have the same size and every gold value must match some predicted
value:

* numbers match when their normalized strings are equal or |a - b| < 1e-6;
* dates (``yyyy-mm-dd`` with ``xx`` placeholders) match on (year, month, day);
  a date with only a year ("2001-xx-xx") is the *number* 2001;
* strings match on the WTQ-normalized form (diacritics removed, unicode quotes
  and dashes unified, trailing citations / "(details)" / surrounding quotes /
  final period removed, whitespace collapsed, lowercased).
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass

_SINGLE_QUOTES = re.compile("[\u2018\u2019\u00b4`]")
_DOUBLE_QUOTES = re.compile("[\u201c\u201d]")
_DASHES = re.compile("[\u2010\u2011\u2012\u2013\u2014\u2212]")
# Trailing citation marks: "[1]", "[note]" (not at the very start), bullets, daggers, '*', '#', '+'.
_TRAILING_CITATIONS = re.compile("((?<!^)\\[[^\\]]*\\]|\\[\\d+\\]|[\u2022\u2666\u2020\u2021*#+])*$")
# Trailing " (details)" groups, not at the very start.
_TRAILING_PARENTHESES = re.compile(r"(?<!^)( \([^)]*\))*$")
_SURROUNDING_QUOTES = re.compile(r'^"([^"]*)"$')


def wtq_normalize(text: str) -> str:
    """WTQ string normalization (see module docstring)."""
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if unicodedata.category(c) != "Mn")
    text = _DASHES.sub("-", _DOUBLE_QUOTES.sub('"', _SINGLE_QUOTES.sub("'", text)))
    while True:
        before = text
        text = _TRAILING_CITATIONS.sub("", text.strip())
        text = _TRAILING_PARENTHESES.sub("", text.strip())
        text = _SURROUNDING_QUOTES.sub(r"\1", text.strip())
        if text == before:
            break
    if text.endswith("."):
        text = text[:-1]
    return re.sub(r"\s+", " ", text).lower().strip()


@dataclass(frozen=True)
class WtqValue:
    """A typed value: kind is 'number', 'date' or 'string'; `key` decides equality."""

    kind: str
    normalized: str
    key: object

    def matches(self, other: WtqValue) -> bool:
        if self.normalized == other.normalized:
            return True
        if self.kind == "number" and other.kind == "number":
            return abs(self.key - other.key) < 1e-6
        if self.kind == "date" and other.kind == "date":
            return self.key == other.key
        return False


def _parse_number(text: str) -> int | float | None:
    """int(text), else a finite float(text), else None (Python's own parsing)."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        amount = float(text)
    except ValueError:
        return None
    return None if math.isnan(amount) or math.isinf(amount) else amount


def _parse_date(text: str) -> tuple[int, int, int] | None:
    """'yyyy-mm-dd' with 'xx' (or 'xxxx' year) placeholders -> (y, m, d), -1 for placeholders."""
    parts = text.lower().split("-")
    if len(parts) != 3:
        return None
    try:
        year = -1 if parts[0] in ("xx", "xxxx") else int(parts[0])
        month = -1 if parts[1] == "xx" else int(parts[1])
        day = -1 if parts[2] == "xx" else int(parts[2])
    except ValueError:
        return None
    if year == month == day == -1:
        return None
    if not (month == -1 or 1 <= month <= 12) or not (day == -1 or 1 <= day <= 31):
        return None
    return year, month, day


def _integral(amount: int | float) -> int | float:
    return int(amount) if abs(amount - round(amount)) < 1e-6 else float(amount)


def to_wtq_value(text: str) -> WtqValue:
    """Number if it parses as one, else a date, else a string (WTQ `to_value`)."""
    normalized = wtq_normalize(text)
    amount = _parse_number(text)
    if amount is not None:
        return WtqValue("number", normalized, _integral(amount))
    ymd = _parse_date(text)
    if ymd is not None:
        if ymd[1] == ymd[2] == -1:
            return WtqValue("number", normalized, ymd[0])
        return WtqValue("date", normalized, ymd)
    return WtqValue("string", normalized, normalized)


def _unique_values(texts: list[str]) -> list[WtqValue]:
    """De-duplicate like the official `set()`: first of equal values wins."""
    seen: dict[tuple[str, object], WtqValue] = {}
    for text in texts:
        value = to_wtq_value(text)
        seen.setdefault((value.kind, value.key), value)
    return list(seen.values())


def wtq_denotation_match(predicted: list[str], gold: list[str]) -> bool:
    """WTQ `check_denotation`: same size after de-duplication, every gold matched."""
    predicted_values, gold_values = _unique_values(predicted), _unique_values(gold)
    if len(predicted_values) != len(gold_values):
        return False
    return all(any(g.matches(p) for p in predicted_values) for g in gold_values)
