"""POPE yes/no parsing and metrics (V2PE/InternVL `eval/pope/eval_pope.py`).

Parsing: keep the text before the first '.', drop commas, split on single
spaces; the answer is "no" when one of the words is exactly "No", "not" or
"no", else "yes". Labels other than "no" count as "yes".

Metrics over a category file, with "yes" as the positive class: accuracy,
precision TP/(TP+FP), recall TP/(TP+FN), F1 and the ratio of "yes" answers.
Where the official code would divide by zero (no positive prediction or
label, empty file) the value is 0.0 here.
"""

from __future__ import annotations

from collections.abc import Iterable


def pope_says_yes(text: str) -> bool:
    """True when the response is parsed as "yes" (see module docstring)."""
    first_sentence = text.split(".")[0] if "." in text else text
    words = first_sentence.replace(",", "").split(" ")
    return not ("No" in words or "not" in words or "no" in words)


def pope_item_correct(prediction: str, label: str) -> float:
    """1.0 when the parsed answer equals the label (accuracy contribution)."""
    return float(pope_says_yes(prediction) == (label != "no"))


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


def pope_metrics(predictions: Iterable[str], labels: Iterable[str]) -> dict[str, float]:
    """accuracy, precision, recall, f1, yes_ratio and the TP/FP/TN/FN counts."""
    said_yes = [pope_says_yes(p) for p in predictions]
    is_yes = [label != "no" for label in labels]
    if len(said_yes) != len(is_yes):
        raise ValueError(f"{len(said_yes)} predictions for {len(is_yes)} labels")
    tp = sum(p and g for p, g in zip(said_yes, is_yes, strict=True))
    fp = sum(p and not g for p, g in zip(said_yes, is_yes, strict=True))
    tn = sum(not p and not g for p, g in zip(said_yes, is_yes, strict=True))
    fn = sum(not p and g for p, g in zip(said_yes, is_yes, strict=True))
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    return {
        "accuracy": _ratio(tp + tn, len(is_yes)),
        "precision": precision,
        "recall": recall,
        "f1": _ratio(2 * precision * recall, precision + recall),
        "yes_ratio": _ratio(sum(said_yes), len(said_yes)),
        "tp": tp, "fp": fp, "tn": tn, "fn": fn,
    }
