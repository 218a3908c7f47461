"""DUE-benchmark scorers as driven by the V2PE Long-VQA `DueEvaluator`: F1, ANLS, WTQ.

The DueEvaluator lowercases, strips and strips trailing periods from every
value (`due_normalize`). Each item becomes one annotation keyed by its id:
the prediction contributes one value (the first one when a list is given; an
empty list contributes nothing) and the gold answers become the accepted
variants of one reference value.

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
    key: str
    value: str
    variants: tuple[str, ...] = field(default=())

    def same_as(self, other: _Annotation) -> bool:
        """DUE `Annotation.__eq__`: same key and value equal or listed as a variant."""
        if self.key != other.key:
            return False
        return self.value == other.value or self.value in other.variants or other.value in self.variants


def _values(value: object, what: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise ScoringError(f"{what} must be a string or a list of strings, got {value!r}")


def _prediction_annotations(key: str, prediction: object) -> list[_Annotation]:
    values = _values(prediction, f"prediction of {key!r}")
    return [_Annotation(key, due_normalize(values[0]))] if values else []


def _reference_annotations(key: str, answer: object) -> list[_Annotation]:
    variants = tuple(due_normalize(v) for v in _values(answer, f"answer of {key!r}"))
    if not variants:
        raise ScoringError(f"answer of {key!r} is an empty list")
    return [_Annotation(key, variants[0], variants)]


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
    / references (each annotation can be matched once); F1 = 2PR/(P+R), 0 when
    both are 0.
    """
    predictions: list[_Annotation] = []
    references: list[_Annotation] = []
    for item in annotations:
        if not isinstance(item, dict) or not {"id", "pr", "an"} <= item.keys():
            raise ScoringError(f"each DUE annotation needs 'id', 'pr' and 'an', got {item!r}")
        key = str(item["id"])
        predictions += _prediction_annotations(key, item["pr"])
        references += _reference_annotations(key, item["an"])
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
