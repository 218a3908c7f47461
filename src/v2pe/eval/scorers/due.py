"""DUE-benchmark scorers as driven by the V2PE Long-VQA `DueEvaluator`: F1, ANLS, WTQ.

The DueEvaluator (`due_evaluator.DueEvaluator.evalute`) wraps a string `pr`/`an`
in a list, then lowercases, strips and strips trailing periods every value
(`due_normalize`). The V2PE `due_scorer.FScorer` then makes, per item, ONE
prediction annotation whose value is the whole `pr` list and ONE reference
annotation whose value is the whole `an` list (key = the item's `id`, as
given). Two annotations are equal when their keys are equal and at least one
value of one list is in the other list (`Annotation.__eq__`: `for v in
self.value: if v in other.value`). So a list-valued answer is a set of accepted
values, a list-valued prediction matches if any of its values is accepted, and
an empty list never matches (but still counts as one prediction / reference).

`due_f1` is *corpus-level*: precision and recall are pooled over all
annotations of a group before F1 is taken, so it is computed on a list of
items, not item by item.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from v2pe.eval.scorers.anls import due_normalize
from v2pe.eval.scorers.base import ScoringError
from v2pe.eval.scorers.wtq import wtq_denotation_match


@dataclass(frozen=True)
class _Annotation:
    key: object
    values: tuple[str, ...] = field(default=())

    def same_as(self, other: _Annotation) -> bool:
        """V2PE due_scorer `Annotation.__eq__`: same key and a value of one list is in the other."""
        return self.key == other.key and any(v in other.values for v in self.values)


def _values(value: object, what: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise ScoringError(f"{what} must be a string or a list of strings, got {value!r}")


def _annotation(key: object, value: object, what: str) -> _Annotation:
    """One annotation per item: all its (normalized) values, an empty list included."""
    return _Annotation(key, tuple(due_normalize(v) for v in _values(value, f"{what} of {key!r}")))


def _matched_flags(items: list[_Annotation], pool: list[_Annotation]) -> list[int]:
    """1 for each item that consumes an equal, not yet consumed, annotation of `pool`."""
    remaining = list(pool)
    flags = []
    for item in items:
        hit = next((i for i, other in enumerate(remaining) if other.same_as(item)), None)
        flags.append(0 if hit is None else 1)
        if hit is not None:
            del remaining[hit]
    return flags


def due_f1(annotations: Iterable[dict]) -> float:
    """Corpus F1 (x100) of DUE `FScorer` over items {'id', 'pr', 'an'}.

    Precision = matched predictions / predictions, recall = matched references
    / references (each annotation can be matched once, first equal one in
    order); F1 = 2PR/(P+R), 0 when both are 0. Every item adds exactly one
    prediction and one reference.
    """
    predictions: list[_Annotation] = []
    references: list[_Annotation] = []
    for item in annotations:
        if not isinstance(item, dict) or not {"id", "pr", "an"} <= item.keys():
            raise ScoringError(f"each DUE annotation needs 'id', 'pr' and 'an', got {item!r}")
        key = item["id"]  # compared as given (the official code does not cast ids)
        predictions.append(_annotation(key, item["pr"], "prediction"))
        references.append(_annotation(key, item["an"], "answer"))
    precision_flags = _matched_flags(predictions, references)
    recall_flags = _matched_flags(references, predictions)
    precision = sum(precision_flags) / len(precision_flags) if precision_flags else 0.0
    recall = sum(recall_flags) / len(recall_flags) if recall_flags else 0.0
    if not precision and not recall:
        return 0.0
    return 100.0 * 2 * precision * recall / (precision + recall)


def due_wtq(prediction: str, answers: list[str]) -> float:
    """DUE `WtqScorer` on one item (x100): the prediction is a one-value denotation."""
    predicted = [due_normalize(prediction)]
    gold = [due_normalize(answer) for answer in answers]
    return 100.0 * wtq_denotation_match(predicted, gold)
